//! Access control, body limits, fuzzed input, a failing disk and hanging peers: bad
//! input gets a clear 4xx, failures become errors and events, nothing is ever a 5xx
//! by accident and nothing hangs.

use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

use rl_gym::startup::Application;
use rl_gym::store::file::FileStoreOptions;

use crate::helpers::*;

#[actix_web::test]
async fn with_tokens_every_endpoint_but_healthz_needs_one() {
    let (app, _temp) =
        spawn_with(|s| s.api_tokens = vec!["tok-one".into(), "tok-two".into()]).await;
    let c = &app.client;
    for path in [
        "/runs",
        "/v1/runs",
        "/scenarios",
        "/metrics",
        "/environments/env_x/email/tools",
        "/nope",
    ] {
        let response = c.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "unauthorized");
    }
    let wrong = c
        .get(app.url("/runs"))
        .bearer_auth("tok-three")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let prefix = c
        .get(app.url("/runs"))
        .bearer_auth("tok-on")
        .send()
        .await
        .unwrap();
    assert_eq!(prefix.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        c.get(app.url("/runs"))
            .bearer_auth("tok-one")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        c.get(app.url("/v1/runs"))
            .header("API-Key", "tok-two")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        c.get(app.url("/healthz")).send().await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        c.get(app.url("/v1/healthz")).send().await.unwrap().status(),
        StatusCode::OK
    );

    // A run pointed at one of this server's own environments authenticates to itself.
    let tasks: Value = c
        .get(app.url("/scenarios/hr/tasks"))
        .bearer_auth("tok-one")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let task = tasks["tasks"][0]["task_id"].as_str().unwrap();
    let env: Value = c
        .post(app.url("/environments"))
        .bearer_auth("tok-one")
        .json(&json!({"scenario_id": "hr", "task_id": task}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let launched: Value = c
        .post(app.url("/runs"))
        .bearer_auth("tok-one")
        .json(
            &json!({"scenario_id": "hr", "task_ids": [task], "model_config": {
            "model": "oracle", "provider": "builtin", "tool_server_url": env["environment_url"]}}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let run_id = launched["run_id"].as_str().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status: Value = c
            .get(app.url(&format!("/runs/{run_id}")))
            .bearer_auth("tok-one")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if status["completed"] == 1 {
            assert_eq!(status["rollouts"][0]["score"], 1.0, "{status}");
            break;
        }
        assert_eq!(status["failed"], 0, "{status}");
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.stop().await;

    let (app, _temp) = spawn_with(|s| {
        s.api_tokens = vec!["tok".into()];
        s.open_metrics = true;
    })
    .await;
    assert_eq!(app.get("/metrics").await.status(), StatusCode::OK);
    assert_eq!(app.get("/runs").await.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[test]
fn without_a_token_a_public_bind_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run_cli(&[
        "serve",
        "--bind",
        "0.0.0.0:0",
        "--data-dir",
        temp.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("without an API token"), "{stderr}");
}

#[actix_web::test]
async fn an_oversized_body_is_413() {
    let (app, _temp) = spawn_with(|s| s.max_body_bytes = 2048).await;
    let mut body = builtin_run("noop", &["x"], 1);
    body["run_name"] = json!("a".repeat(4096));
    let response = app.post("/runs", &body).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["code"], "payload_too_large");
    app.stop().await;
}

#[actix_web::test]
async fn environments_are_never_listed_and_a_guessed_id_finds_nothing() {
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let env: Value = app
        .post(
            "/environments",
            &json!({"scenario_id": "hr", "task_id": task}),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = env["environment_id"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/environments/{id}/email/health"))
            .await
            .status(),
        StatusCode::OK
    );
    let listing = app.get("/environments").await;
    assert!(listing.status().is_client_error(), "{}", listing.status());
    assert!(!listing.text().await.unwrap().contains("env_"));
    // Near misses of a live id: one character changed, truncated, upper-cased.
    let last = id.chars().last().unwrap();
    let flipped = format!(
        "{}{}",
        &id[..id.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    for guess in [
        flipped,
        id[..id.len() - 1].to_string(),
        id.to_uppercase(),
        "env_1".to_string(),
    ] {
        let response = app
            .get(&format!("/environments/{guess}/email/snapshot"))
            .await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{guess}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "environment_not_found", "{guess}");
    }
    app.stop().await;
}

/// A small deterministic generator (xorshift), so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn string(&mut self) -> String {
        let pieces = [
            "",
            "a",
            "hr",
            "../",
            "%00",
            "é",
            "run_",
            "rol_",
            "\u{202e}",
            "{}",
            " ",
            "x".repeat(300).leak(),
        ];
        (0..self.below(4)).map(|_| *self.pick(&pieces)).collect()
    }
    fn value(&mut self, depth: u32) -> Value {
        match self.below(if depth > 2 { 6 } else { 8 }) {
            0 => Value::Null,
            1 => json!(self.below(2) == 0),
            2 => json!(self.next() as i64),
            3 => json!(-(self.below(1000) as f64) / 7.0),
            4 => json!(self.string()),
            5 => json!(1e308),
            6 => Value::Array((0..self.below(4)).map(|_| self.value(depth + 1)).collect()),
            _ => {
                let keys = [
                    "scenario_id",
                    "task_ids",
                    "model_config",
                    "rollout_count",
                    "max_parallel",
                    "run_name",
                    "task_overrides",
                    "model",
                    "provider",
                    "temperature",
                    "max_steps",
                    "action",
                    "tool_name",
                    "parameters",
                    "task_id",
                    "seed",
                    "api_key",
                    "source",
                    "context_stride",
                ];
                Value::Object(
                    (0..self.below(6))
                        .map(|_| (self.pick(&keys).to_string(), self.value(depth + 1)))
                        .collect(),
                )
            }
        }
    }
}

#[actix_web::test]
async fn fuzzed_requests_never_get_a_5xx() {
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let env: Value = app
        .post(
            "/environments",
            &json!({"scenario_id": "hr", "task_id": task}),
        )
        .await
        .json()
        .await
        .unwrap();
    let env_id = env["environment_id"].as_str().unwrap().to_string();
    let valid = json!({"scenario_id": "hr", "task_ids": [task], "model_config": {"model": "noop", "provider": "builtin"}});
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let templates = [
        "/runs",
        "/runs/{}",
        "/runs/{}/cancel",
        "/runs/{}/rollouts/{}",
        "/scenarios",
        "/scenarios/{}/tasks",
        "/scenarios/{}/tasks/{}/rubric",
        "/scenarios/{}/npcs",
        "/scenarios/{}/seed_data/{}",
        "/environments",
        "/environments/{}",
        "/environments/ENV/{}/step",
        "/environments/ENV/{}/tools",
        "/v1/runs",
        "/{}",
    ];
    const REQUESTS: usize = 1500;
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..REQUESTS {
        let mut path = rng.pick(&templates).replace("ENV", &env_id);
        while path.contains("{}") {
            let segment = match rng.below(3) {
                0 => "hr".to_string(),
                1 => task.clone(),
                _ => urlencode(&rng.string()),
            };
            path = path.replacen("{}", &segment, 1);
        }
        let body = match rng.below(4) {
            0 => rng.value(0),
            1 => {
                // A valid launch with one field replaced by anything.
                let mut body = valid.clone();
                let field = *rng.pick(&[
                    "scenario_id",
                    "task_ids",
                    "model_config",
                    "rollout_count",
                    "task_overrides",
                    "run_name",
                ]);
                body[field] = rng.value(1);
                body
            }
            2 => {
                let mut body = valid.clone();
                let field = *rng.pick(&[
                    "model",
                    "provider",
                    "temperature",
                    "max_steps",
                    "context_stride",
                    "log_prob",
                    "base_url",
                ]);
                body["model_config"][field] = rng.value(1);
                body
            }
            _ => json!({"action": {"tool_name": rng.string(), "parameters": rng.value(1)}}),
        };
        let request = match rng.below(3) {
            0 => app.client.get(app.url(&path)),
            1 => app.client.delete(app.url(&path)),
            _ => app.client.post(app.url(&path)).json(&body),
        };
        let request = if i % 17 == 0 {
            request
                .header("content-type", "application/json")
                .body(vec![0xFF, b'{', 0, b'"'])
        } else {
            request
        };
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(!status.is_server_error(), "{path} {body} → {status} {text}");
        *statuses.entry(status.as_u16()).or_insert(0) += 1;
    }
    eprintln!("fuzzed {REQUESTS} requests: {statuses:?}");
    assert_eq!(app.get_json("/healthz").await["status"], "ok");
    app.stop().await;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[actix_web::test]
async fn a_failing_fsync_is_a_503_that_acknowledges_nothing_and_the_service_recovers() {
    let temp = tempfile::tempdir().unwrap();
    let options = FileStoreOptions::default();
    let faults = options.faults.clone();
    let app = Application::build_with(settings_for(temp.path()), options)
        .await
        .unwrap();
    let address = format!("http://{}", app.address());
    let handle = app.handle();
    let task = actix_rt::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    let tasks: Value = client
        .get(format!("{address}/scenarios/hr/tasks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let task_id = tasks["tasks"][0]["task_id"].as_str().unwrap();

    faults.fail_next_syncs(1);
    let response = client
        .post(format!("{address}/runs"))
        .json(&builtin_run("noop", &[task_id], 1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "store_unavailable");
    let list: Value = client
        .get(format!("{address}/runs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], 0, "nothing was acknowledged");

    let response = client
        .post(format!("{address}/runs"))
        .json(&builtin_run("noop", &[task_id], 1))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the service recovers when the disk does"
    );
    let launched: Value = response.json().await.unwrap();
    wait_until_finished(&client, &address, launched["run_id"].as_str().unwrap()).await;
    handle.stop(true).await;
    let _ = task.await;
}

#[actix_web::test]
async fn a_hanging_model_and_a_hanging_tool_server_are_cut_off_by_timeouts() {
    let model = start_fake_model(Behaviour::SlowAnswer(10_000)).await;
    let (app, _temp) = spawn_with(|s| {
        s.model_timeout_secs = 1;
        s.tool_timeout_secs = 1;
    })
    .await;
    let task = first_hr_task(&app).await;
    let launched = app
        .launch(&json!({"scenario_id": "hr", "task_ids": [task],
                        "model_config": {"model": "m", "provider": "custom", "base_url": model.address}}))
        .await;
    let status = app
        .wait_until_finished(launched["run_id"].as_str().unwrap())
        .await;
    assert_eq!(status["failed"], 1, "{status}");
    assert!(
        status["rollouts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("timed out after 1s"),
        "{status}"
    );

    // A tool server that lists the task's real tools, then never answers a step.
    let env: Value = app
        .post(
            "/environments",
            &json!({"scenario_id": "hr", "task_id": task}),
        )
        .await
        .json()
        .await
        .unwrap();
    let mut listed = serde_json::Map::new();
    for server in env["tool_servers"].as_array().unwrap() {
        let tools: Value = app
            .client
            .get(format!(
                "{}/tools",
                server["tool_server_url"].as_str().unwrap()
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        listed.insert(server["name"].as_str().unwrap().to_string(), tools);
    }
    let listed = std::sync::Arc::new(listed);
    let server = HttpServer::new(move || {
        let listed = listed.clone();
        App::new()
            .route(
                "/{server}/tools",
                web::get().to(move |path: web::Path<String>| {
                    let tools = listed
                        .get(path.as_str())
                        .cloned()
                        .unwrap_or(json!({"tools": []}));
                    async move { HttpResponse::Ok().json(tools) }
                }),
            )
            .route(
                "/{server}/step",
                web::post().to(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    HttpResponse::Ok().finish()
                }),
            )
            .route(
                "/{server}/snapshot",
                web::get().to(|| async { HttpResponse::Ok().json(json!({"data": {}})) }),
            )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let url = format!("http://{}", server.addrs()[0]);
    actix_rt::spawn(server.run());
    let launched = app
        .launch(&json!({"scenario_id": "hr", "task_ids": [task],
                        "model_config": {"model": "oracle", "provider": "builtin", "tool_server_url": url}}))
        .await;
    let run_id = launched["run_id"].as_str().unwrap();
    let status = app.wait_until_finished(run_id).await;
    let rollout_id = status["rollout_ids"][0].as_str().unwrap();
    let rollout = app
        .get_json(&format!("/runs/{run_id}/rollouts/{rollout_id}"))
        .await;
    let first = &rollout["tool_calls"][0];
    assert_eq!(first["is_error"], true, "{rollout}");
    assert!(
        first["observation"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{first}"
    );
    app.stop().await;
}
