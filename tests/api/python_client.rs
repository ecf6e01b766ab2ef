//! The Python client (`clients/python`, issue 24) against a real server: its unittest
//! suite (pure unit tests, runs, exports, errors and the group feed), and the async
//! GRPO example `examples/grpo_loop.py`, each run by `python3` with the standard
//! library only.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::*;

/// Longer than any of these should take; a hung python is killed and reported.
const PYTHON_LIMIT: Duration = Duration::from_secs(150);

/// What a python3 process did.
struct PythonRun {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl PythonRun {
    fn report(&self) -> String {
        format!(
            "python3 exited with {:?} after {:.1} s\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code,
            self.elapsed.as_secs_f64(),
            self.stdout,
            self.stderr
        )
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `python3 ARGS` from the repository root with the client on `PYTHONPATH` and
/// `RL_GYM_URL` = `url`, off the test's thread (the service spawned by the test lives
/// on it), killed after [`PYTHON_LIMIT`].
async fn python(url: &str, args: &[&str]) -> PythonRun {
    let url = url.to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = tempfile::tempdir().unwrap();
        let (stdout_path, stderr_path) = (out.path().join("stdout"), out.path().join("stderr"));
        let mut command = Command::new("python3");
        command
            .args(&args)
            .current_dir(repo())
            .env("PYTHONPATH", repo().join("clients/python/src"))
            .env("RL_GYM_URL", &url)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .env_remove("RL_GYM_API_TOKEN")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).unwrap())
            .stderr(std::fs::File::create(&stderr_path).unwrap());
        // The server is on loopback: no proxy of the caller's environment in between.
        for proxy in [
            "http_proxy",
            "HTTP_PROXY",
            "https_proxy",
            "HTTPS_PROXY",
            "all_proxy",
            "ALL_PROXY",
        ] {
            command.env_remove(proxy);
        }
        let started = Instant::now();
        let mut child = command
            .spawn()
            .expect("python3 runs (install python3 to run these tests)");
        let code = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status.code();
            }
            if started.elapsed() > PYTHON_LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        PythonRun {
            code,
            stdout: std::fs::read_to_string(&stdout_path).unwrap_or_default(),
            stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
            elapsed: started.elapsed(),
        }
    })
    .await
    .unwrap()
}

/// The example's `summary:` line holds each of `parts`; answers its run id.
fn example_run(run: &PythonRun, parts: &[&str]) -> String {
    let summary = run
        .stdout
        .lines()
        .find(|l| l.starts_with("summary:"))
        .unwrap_or_else(|| panic!("no summary line: {}", run.report()));
    for part in parts {
        assert!(
            summary.contains(part),
            "{part} in {summary:?}: {}",
            run.report()
        );
    }
    summary
        .split_whitespace()
        .find_map(|part| part.strip_prefix("run="))
        .unwrap_or_else(|| panic!("no run id in {summary:?}"))
        .to_string()
}

#[actix_web::test]
async fn python_client_unittests_pass_against_a_live_server() {
    let app = spawn_app().await;
    let run = python(
        &app.address,
        &[
            "-m",
            "unittest",
            "discover",
            "-s",
            "clients/python/tests",
            "-t",
            "clients/python/tests",
            "-v",
        ],
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.report());
    // unittest reports on stderr; with RL_GYM_URL set nothing may be skipped.
    assert!(run.stderr.contains("\nOK"), "{}", run.report());
    assert!(!run.stderr.contains("skipped"), "{}", run.report());
    for suite in ["test_unit.", "test_live.", "test_feed."] {
        assert!(run.stderr.contains(suite), "{suite} ran: {}", run.report());
    }
    app.stop().await;
}

#[actix_web::test]
async fn grpo_loop_example_trains_on_six_groups_and_prints_its_summary() {
    let app = spawn_app().await;
    let run = python(
        &app.address,
        &[
            "examples/grpo_loop.py",
            "--url",
            &app.address,
            "--groups",
            "6",
        ],
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.report());
    let run_id = example_run(
        &run,
        &[
            "groups=6",
            "acked=6",
            "rollouts=24",
            "mean_reward=1.000",
            "policy=step-6",
            "policy_updates=3",
        ],
    );
    // The server saw the same: six groups of four, each acknowledged by the example's
    // consumer, the third policy update in force, the run over.
    let status = app.run_summary(&run_id).await;
    assert_eq!(status["status"], "completed", "{status}");
    assert_eq!(status["total"], 24, "{status}");
    let feed = &status["feed"];
    assert_eq!(feed["groups_scheduled"], 6, "{status}");
    assert_eq!(feed["groups_unconsumed"], 0, "{status}");
    assert_eq!(feed["consumers"]["grpo-example"], 6, "{status}");
    assert_eq!(feed["policy_version"], "step-6", "{status}");
    app.stop().await;
}

/// `rl-gym load fake-model`: an OpenAI-compatible server answering after `latency_ms`
/// (one tool call, then a final answer); killed on drop.
struct FakeModelProcess {
    child: std::process::Child,
    url: String,
}

impl FakeModelProcess {
    fn start() -> FakeModelProcess {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_rl-gym"))
            .args([
                "load",
                "fake-model",
                "--latency-ms",
                "5",
                "--tool-turns",
                "1",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the fake model starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("fake model listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_string();
        FakeModelProcess { child, url }
    }
}

impl Drop for FakeModelProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[actix_web::test]
async fn grpo_loop_example_drives_a_model_server_and_switches_its_policy() {
    let model = FakeModelProcess::start();
    let app = spawn_app().await;
    let run = python(
        &app.address,
        &[
            "examples/grpo_loop.py",
            "--url",
            &app.address,
            "--model-url",
            &model.url,
            "--groups",
            "4",
            "--group-size",
            "2",
        ],
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.report());
    let run_id = example_run(
        &run,
        &["groups=4", "acked=4", "rollouts=8", "policy=step-4"],
    );
    // The model server answered every turn: each rollout called a tool, then answered,
    // and the policy in force at the end is the last one the example published.
    let status = app.run_summary(&run_id).await;
    assert_eq!(status["status"], "completed", "{status}");
    assert_eq!(status["completed"], 8, "{status}");
    assert_eq!(status["feed"]["policy_version"], "step-4", "{status}");
    assert_eq!(status["feed"]["policy_ordinal"], 2, "{status}");
    assert!(
        status["usage"]["total_tokens"].as_u64().unwrap() > 0,
        "{status}"
    );
    app.stop().await;
}

#[actix_web::test]
async fn baseline_example_scores_the_oracle_full_and_doing_nothing_zero_on_every_world() {
    let app = spawn_app().await;
    for (agent, score, full) in [("oracle", "1.000", "10"), ("noop", "0.000", "0")] {
        let run = python(
            &app.address,
            &[
                "examples/baseline.py",
                "--url",
                &app.address,
                "--agent",
                agent,
                "--tasks",
                "2",
            ],
        )
        .await;
        assert_eq!(run.code, Some(0), "{}", run.report());
        let lines: Vec<&str> = run.stdout.lines().collect();
        // One line per bundled scenario, then the summary.
        assert_eq!(lines.len(), 6, "{}", run.report());
        let summary = lines.last().unwrap();
        assert!(
            summary.contains(&format!(
                "rollouts=10 mean_score={score} full_credit={full}"
            )),
            "{agent}: {}",
            run.report()
        );
    }
    app.stop().await;
}
