//! The dashboard at `/`: its assets as served, and a real headless Chromium (through
//! chromedriver) watching runs go on, reading a run and a rollout, and asking for the
//! token. The browser tests also write the README's screenshots to `docs/screenshots/`.
//!
//! Without chromium and chromedriver on the machine the browser tests skip with a loud
//! notice, unless `RL_GYM_BROWSER_TESTS=1` (set by `.ci/run`) makes that a failure.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use futures::FutureExt;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

const TOKEN: &str = "tok-dashboard";
/// Generous: Chromium on a busy 2-core machine can take seconds to lay out a page.
const WAIT: Duration = Duration::from_secs(90);

/// Chromium's flags on a headless machine with no network beyond loopback.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1366,768",
];

/// One browser at a time: a Chromium per parallel test would starve the services
/// under test on two cores.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// Chromium and chromedriver, or `None` (after a loud notice) when the machine has
/// none and the browser tests are not required.
fn browser_binaries() -> Option<(PathBuf, PathBuf)> {
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| on_path(name));
    let driver = on_path("chromedriver");
    if let (Some(chromium), Some(driver)) = (chromium, driver) {
        return Some((chromium, driver));
    }
    assert!(
        std::env::var("RL_GYM_BROWSER_TESTS").as_deref() != Ok("1"),
        "RL_GYM_BROWSER_TESTS=1 but chromium and chromedriver are not both on PATH"
    );
    eprintln!(
        "\n**********\nSKIPPED: the dashboard's browser test needs chromium and chromedriver \
         (Debian: apt-get install chromium chromium-driver); set RL_GYM_BROWSER_TESTS=1 to \
         make their absence a failure.\n**********\n"
    );
    None
}

/// A chromedriver child with one Chromium session in a fresh profile.
struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start(chromium: PathBuf, driver: PathBuf) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut driver = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + WAIT;
        while reqwest::get(format!("{url}/status")).await.is_err() {
            if Instant::now() > deadline {
                let _ = driver.kill();
                panic!("chromedriver did not listen on {url}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| f.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args}
        });
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities.as_object().unwrap().clone())
            .connect(&url)
            .await;
        let client = match client {
            Ok(client) => client,
            Err(e) => {
                let _ = driver.kill();
                panic!("no Chromium session: {e}");
            }
        };
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Runs `test` with a browser, then closes the session (Chromium with it) whether the
/// test passed or not. Returns without running it when the browser tests are skipped.
async fn with_browser<F, Fut>(test: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some((chromium, driver)) = browser_binaries() else {
        return;
    };
    let _one = ONE_BROWSER.lock().await;
    let browser = Browser::start(chromium, driver).await;
    let outcome = AssertUnwindSafe(test(browser.client.clone()))
        .catch_unwind()
        .await;
    let _ = browser.client.clone().close().await;
    drop(browser);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Polls a JavaScript expression until it is truthy, and returns its value.
async fn wait_for(c: &Client, what: &str, expression: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    let script = format!("return ({expression});");
    loop {
        let value = c.execute(&script, vec![]).await.unwrap_or(Value::Null);
        let truthy = match &value {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_f64() != Some(0.0),
            Value::String(s) => !s.is_empty(),
            _ => true,
        };
        if truthy {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: `{expression}` is {value}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn js(c: &Client, expression: &str) -> Value {
    c.execute(&format!("return ({expression});"), vec![])
        .await
        .unwrap()
}

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

async fn click(c: &Client, css: &str) {
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .click()
        .await
        .unwrap();
}

fn row(run_id: &str) -> String {
    format!("document.querySelector('tr[data-run-id=\"{run_id}\"] .bar')")
}

#[actix_web::test]
async fn the_dashboard_and_its_assets_are_served_without_a_token_and_nothing_external() {
    let (app, _data) = spawn_with(|s| s.api_tokens = vec![TOKEN.into()]).await;
    assert_eq!(app.get("/runs").await.status(), StatusCode::UNAUTHORIZED);
    let mut sources = vec![];
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/dashboard/app.js", "text/javascript; charset=utf-8"),
        ("/dashboard/app.css", "text/css; charset=utf-8"),
        ("/dashboard/favicon.svg", "image/svg+xml"),
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.headers()["content-type"], content_type, "{path}");
        let etag = response.headers()["etag"].to_str().unwrap().to_string();
        sources.push((path, response.text().await.unwrap()));
        let again = app
            .client
            .get(app.url(path))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
    }
    assert!(sources[0].1.contains("/dashboard/app.js"));
    // Offline: no file loads anything from another host. The SVG namespace is a name,
    // never fetched.
    for (path, text) in &sources {
        let external: Vec<&str> = text
            .match_indices("http")
            .map(|(i, _)| &text[i..(i + 40).min(text.len())])
            .filter(|s| s.starts_with("http://") || s.starts_with("https://"))
            .filter(|s| !s.starts_with("http://www.w3.org/2000/svg"))
            .collect();
        assert!(external.is_empty(), "{path} refers to {external:?}");
    }
    // Only the assets are open: the API and the dashboard's own data are not.
    for path in ["/v1/runs", "/dashboard/rollouts/rol_x/states"] {
        assert_eq!(
            app.get(path).await.status(),
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    app.stop().await;
}

#[actix_web::test]
async fn the_runs_list_shows_a_new_run_progress_live_without_reloading() {
    let model = start_fake_model(Behaviour::answer_after(1_000)).await;
    let service = spawn_app().await;
    let app = &service;
    let oracle = app
        .launch(&builtin_run(
            "oracle",
            &[
                "hr__101_approve_leave_request",
                "hr__104_schedule_phone_screen",
            ],
            3,
        ))
        .await;
    let oracle_id = oracle["run_id"].as_str().unwrap().to_string();
    app.wait_until_finished(&oracle_id).await;

    with_browser(|c| async move {
        c.goto(&app.url("/")).await.unwrap();
        wait_for(&c, "the finished run's row", &row(&oracle_id)).await;
        js(&c, "window.__sameDocument = true").await;

        // Launched after the page loaded: it must appear and progress by itself.
        let slow = app
            .launch(&json!({
                "scenario_id": "hr", "task_ids": ["hr__105_reporting_line_question"],
                "rollout_count": 4, "max_parallel": 1,
                "model_config": {"model": "slow", "provider": "custom", "base_url": model.address}
            }))
            .await;
        let slow_id = slow["run_id"].as_str().unwrap().to_string();
        let bar = row(&slow_id);
        wait_for(&c, "the new run's row", &bar).await;
        wait_for(
            &c,
            "a completed rollout",
            &format!("{bar} && Number({bar}.dataset.completed) >= 1"),
        )
        .await;
        screenshot(&c, "runs").await;
        wait_for(
            &c,
            "every rollout done",
            &format!("Number({bar}.dataset.done) === 4"),
        )
        .await;
        assert_eq!(js(&c, &format!("{bar}.dataset.completed")).await, "4");
        assert_eq!(
            js(&c, "window.__sameDocument === true").await,
            true,
            "the page reloaded"
        );
        // Live through the event stream, each touched run re-read at most once per
        // flush: a handful of reads, not a poll loop.
        let reads = js(
            &c,
            "performance.getEntriesByType('resource').filter(e => e.name.includes('/runs')).length",
        )
        .await;
        assert!(reads.as_u64().unwrap() <= 30, "{reads} reads of /runs");
        assert_eq!(
            js(&c, "document.getElementById('live').textContent").await,
            "live"
        );
    })
    .await;
    service.stop().await;
}

#[actix_web::test]
async fn the_run_page_and_a_rollout_story_show_figures_tool_calls_and_checks() {
    let service = spawn_app().await;
    let app = &service;
    let task = "hr__101_approve_leave_request";
    let launched = app
        .launch(&builtin_run(
            "oracle",
            &[task, "hr__104_schedule_phone_screen"],
            3,
        ))
        .await;
    let run_id = launched["run_id"].as_str().unwrap().to_string();
    let status = app.wait_until_finished(&run_id).await;
    let rollout_id = status["rollout_ids"][0].as_str().unwrap().to_string();
    let doomed = app.launch(&builtin_run("noop", &[task], 1)).await;
    let doomed_id = doomed["run_id"].as_str().unwrap().to_string();
    app.wait_until_finished(&doomed_id).await;
    let reference: Vec<String> = hr_task_file(task)["reference_solution"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["tool_name"].as_str().unwrap().to_string())
        .collect();
    let checks = hr_task_file(task)["checks"].as_array().unwrap().len();

    with_browser(|c| async move {
        c.goto(&app.url(&format!("/#/runs/{run_id}"))).await.unwrap();
        wait_for(
            &c,
            "the per-task table",
            "document.querySelectorAll('table.tasks tbody tr').length === 2",
        )
        .await;
        let headers = js(&c, "document.querySelector('table.tasks thead').textContent").await;
        assert!(headers.as_str().unwrap().contains("pass^3"), "{headers}");
        let bins = js(
            &c,
            "[...document.querySelectorAll('svg.histogram rect.bin')].map(r => Number(r.dataset.count))",
        )
        .await;
        assert_eq!(bins, json!([0, 0, 0, 0, 0, 0, 0, 0, 0, 6]), "every oracle score is 1");
        screenshot(&c, "run").await;

        // A real link, followed like a user would.
        click(&c, &format!("a[href='#/rollouts/{rollout_id}']")).await;
        wait_for(
            &c,
            "the rollout's tool calls",
            "document.querySelectorAll('.tool-call').length > 0 && document.querySelectorAll('tr.check').length > 0",
        )
        .await;
        let tools = js(
            &c,
            "[...document.querySelectorAll('.tool-call')].map(e => e.dataset.tool)",
        )
        .await;
        assert_eq!(tools, json!(reference), "the reference solution's calls, in order");
        let arguments = js(&c, "document.querySelector('.tool-call pre.args').textContent").await;
        assert!(arguments.as_str().unwrap().contains("msg_0001"), "{arguments}");
        let verdict = js(
            &c,
            "[...document.querySelectorAll('tr.check')].map(r => r.dataset.passed)",
        )
        .await;
        assert_eq!(verdict, json!(vec!["true"; checks]));
        let diff = js(&c, "document.getElementById('rollout-diff').textContent").await;
        assert!(diff.as_str().unwrap().contains("approved"), "{diff}");
        // Each step shows its own change: reading changes nothing, approving does.
        let step_changes = js(
            &c,
            "[...document.querySelectorAll('.tool-call')].map(e => e.querySelector('ul.diff') ? e.querySelector('ul.diff').textContent : '')",
        )
        .await;
        let step_changes: Vec<&str> = step_changes
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(step_changes[0], "", "read_email changes nothing");
        assert!(step_changes[2].contains("approved"), "{step_changes:?}");
        screenshot(&c, "rollout").await;

        // Delete behind a confirmation; keeping it first changes nothing.
        c.goto(&app.url(&format!("/#/runs/{doomed_id}"))).await.unwrap();
        click(&c, "#delete-run").await;
        wait_for(&c, "the confirmation", "document.getElementById('confirm-dialog').open").await;
        click(&c, "#confirm-dialog button[value=cancel]").await;
        assert_eq!(app.get(&format!("/runs/{doomed_id}")).await.status(), StatusCode::OK);
        click(&c, "#delete-run").await;
        click(&c, "#confirm-yes").await;
        wait_for(&c, "the runs list", "location.hash === '#/runs'").await;
        assert_eq!(
            app.get(&format!("/runs/{doomed_id}")).await.status(),
            StatusCode::NOT_FOUND
        );
    })
    .await;
    service.stop().await;
}

#[actix_web::test]
async fn with_a_token_configured_the_page_asks_for_it_once() {
    let (service, _data) = spawn_with(|s| s.api_tokens = vec![TOKEN.into()]).await;
    let app = &service;
    let launched: Value = app
        .client
        .post(app.url("/runs"))
        .bearer_auth(TOKEN)
        .json(&builtin_run("noop", &["hr__101_approve_leave_request"], 1))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let run_id = launched["run_id"].as_str().unwrap().to_string();

    with_browser(|c| async move {
        let asked = "document.getElementById('token-dialog').open";
        c.goto(&app.url("/")).await.unwrap();
        wait_for(&c, "the token dialog", asked).await;
        let input = c.find(Locator::Css("#token-input")).await.unwrap();
        input.send_keys("not-the-token\n").await.unwrap();
        wait_for(
            &c,
            "the refusal",
            &format!("{asked} && document.getElementById('token-reason').textContent.includes('refused')"),
        )
        .await;
        let input = c.find(Locator::Css("#token-input")).await.unwrap();
        input.send_keys(&format!("{TOKEN}\n")).await.unwrap();
        wait_for(&c, "the run's row", &row(&run_id)).await;
        assert_eq!(js(&c, asked).await, false);

        // Once: a fresh load uses the kept token.
        c.goto(&app.url(&format!("/#/runs/{run_id}"))).await.unwrap();
        c.refresh().await.unwrap();
        wait_for(&c, "the run page", "document.querySelector('table.tasks')").await;
        assert_eq!(js(&c, asked).await, false);
    })
    .await;
    service.stop().await;
}

/// The story's states: the seed state, then the state after each call that changed
/// it, keyed by the call's index, the last being the rollout's final environment.
#[actix_web::test]
async fn a_rollouts_states_are_its_seed_then_each_change_ending_at_its_final_environment() {
    let app = spawn_app().await;
    let launched = app
        .launch(&builtin_run(
            "oracle",
            &["hr__101_approve_leave_request"],
            1,
        ))
        .await;
    let rollout = app.only_rollout(&launched).await;
    let id = rollout["rollout_id"].as_str().unwrap();
    let states = app
        .get_json(&format!("/dashboard/rollouts/{id}/states"))
        .await;
    let calls = rollout["tool_calls"].as_array().unwrap();
    let changed = states["after_call"].as_object().unwrap();
    assert!(!changed.is_empty(), "{states}");
    assert_ne!(states["initial"], rollout["environment_state"]);
    for (i, call) in calls.iter().enumerate() {
        let name = call["tool_name"].as_str().unwrap();
        if ["get_", "list_", "search_"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            assert!(
                !changed.contains_key(&i.to_string()),
                "{name} changed nothing"
            );
        }
    }
    let last = changed
        .keys()
        .max_by_key(|k| k.parse::<usize>().unwrap())
        .unwrap();
    assert!(last.parse::<usize>().unwrap() < calls.len());
    assert_eq!(changed[last], rollout["environment_state"]);
    app.stop().await;
}
