//! Test harness: the real service through the one app factory on a random loopback
//! port with its own data directory, or the real binary as a child process when a
//! test must kill it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

use rl_gym::actors::breakpoints::Breakpoints;
use rl_gym::config::Settings;
use rl_gym::startup::Application;

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub data_dir: PathBuf,
    /// The points its actors reach: subscribe before the action to wait for one.
    pub breakpoints: Breakpoints,
    handle: ServerHandle,
    shutdown: tokio_util::sync::CancellationToken,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _temp: Option<tempfile::TempDir>,
}

pub fn settings_for(data_dir: &Path) -> Settings {
    let mut settings = Settings::defaults();
    settings.bind = "127.0.0.1:0".parse().unwrap();
    settings.data_dir = data_dir.to_path_buf();
    settings.shutdown_timeout_secs = 1;
    settings
}

/// A fresh service with its own empty data directory.
pub async fn spawn_app() -> TestApp {
    let temp = tempfile::tempdir().unwrap();
    let mut app = spawn_app_with(settings_for(temp.path())).await;
    app._temp = Some(temp);
    app
}

/// A fresh service with its own data directory (kept alive by the returned guard)
/// and these changes to the default settings.
pub async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> (TestApp, tempfile::TempDir) {
    let temp = tempfile::tempdir().unwrap();
    let mut settings = settings_for(temp.path());
    configure(&mut settings);
    (spawn_app_with(settings).await, temp)
}

pub async fn spawn_app_with(settings: Settings) -> TestApp {
    let data_dir = settings.data_dir.clone();
    let app = Application::build(settings)
        .await
        .expect("the service starts");
    let address = format!("http://{}", app.address());
    let handle = app.handle();
    let breakpoints = app.breakpoints();
    let shutdown = app.shutdown_token();
    let task = actix_rt::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: http_client(),
        data_dir,
        breakpoints,
        handle,
        shutdown,
        task: Some(task),
        _temp: None,
    }
}

/// The tests' HTTP client: it drops idle connections before the server's keep-alive
/// (5 s) closes them, since a request sent on one the server is closing fails
/// mid-flight (`IncompleteMessage`).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(std::time::Duration::from_secs(2))
        .build()
        .expect("an HTTP client")
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.unwrap()
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.client.delete(self.url(path)).send().await.unwrap()
    }

    /// Launches a run and returns the launch response body.
    pub async fn launch(&self, body: &Value) -> Value {
        launch_at(&self.client, &self.address, body).await
    }

    /// `GET /runs/{run_id}`: the run's status with its rollouts.
    pub async fn run(&self, run_id: &str) -> Value {
        self.get_json(&format!("/runs/{run_id}")).await
    }

    /// `GET /runs/{run_id}?rollouts=false`: the run's status alone.
    pub async fn run_summary(&self, run_id: &str) -> Value {
        self.get_json(&format!("/runs/{run_id}?rollouts=false"))
            .await
    }

    /// Polls the run's status (without its rollouts) until `done` says so.
    pub async fn run_until(&self, run_id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = self.run_summary(run_id).await;
            if done(&status) {
                return status;
            }
            assert!(Instant::now() < deadline, "{status}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `GET /runs/{run_id}/rollouts/{rollout_id}`: one rollout in full.
    pub async fn rollout(&self, run_id: &str, rollout_id: &str) -> Value {
        self.get_json(&format!("/runs/{run_id}/rollouts/{rollout_id}"))
            .await
    }

    /// `POST /runs`: a launch, answered as it is.
    pub async fn post_run(&self, body: &Value) -> Response {
        self.post("/runs", body).await
    }

    /// `POST /runs/{run_id}/cancel`.
    pub async fn cancel(&self, run_id: &str) -> Response {
        self.post(&format!("/runs/{run_id}/cancel"), &json!({}))
            .await
    }

    /// `POST /runs/{run_id}/resume` with `body` (a budget, or none).
    pub async fn resume(&self, run_id: &str, body: &Value) -> Response {
        self.post(&format!("/runs/{run_id}/resume"), body).await
    }

    /// `POST /runs/{run_id}/reverify` with `body`.
    pub async fn reverify(&self, run_id: &str, body: &Value) -> Response {
        self.post(&format!("/runs/{run_id}/reverify"), body).await
    }

    /// `POST /runs/{run_id}/rollouts/{rollout_id}/fork` with `body` (`at_step`, …).
    pub async fn fork(&self, run_id: &str, rollout_id: &str, body: &Value) -> Response {
        self.post(&format!("/runs/{run_id}/rollouts/{rollout_id}/fork"), body)
            .await
    }

    /// `GET /runs/{run_id}/export?{query}`.
    pub async fn export(&self, run_id: &str, query: &str) -> Response {
        self.get(&format!("/runs/{run_id}/export?{query}")).await
    }

    /// `GET /runs/{run_id}/groups?{query}`: one poll of the run's feed.
    pub async fn groups(&self, run_id: &str, query: &str) -> Response {
        self.get(&format!("/runs/{run_id}/groups?{query}")).await
    }

    /// `POST /runs/{run_id}/policy` with `body` (`version`, `base_url`).
    pub async fn post_policy(&self, run_id: &str, body: &Value) -> Response {
        self.post(&format!("/runs/{run_id}/policy"), body).await
    }

    /// `POST /environments` with `body`, answered as it is.
    pub async fn post_environment(&self, body: &Value) -> Response {
        self.post("/environments", body).await
    }

    /// A new environment of the `hr` task `task_id` (201).
    pub async fn create_environment(&self, task_id: &str) -> Value {
        let response = self
            .post_environment(&json!({"scenario_id": "hr", "task_id": task_id}))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.unwrap()
    }

    /// `POST {server_url}/step`: a tool call on one tool server of an environment
    /// (`server_url` is its `tool_server_url`).
    pub async fn step(&self, server_url: &str, body: &Value) -> Response {
        self.client
            .post(format!("{server_url}/step"))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// `GET {server_url}/snapshot`: the state of one tool server of an environment.
    pub async fn snapshot(&self, server_url: &str) -> Value {
        get_json_at(&self.client, server_url, "/snapshot").await
    }

    /// Polls the run until every rollout has finished.
    pub async fn wait_until_finished(&self, run_id: &str) -> Value {
        wait_until_finished(&self.client, &self.address, run_id).await
    }

    /// The view of the first rollout of a launched run, once the run has finished.
    pub async fn only_rollout(&self, launched: &Value) -> Value {
        let run_id = launched["run_id"].as_str().unwrap();
        let status = self.wait_until_finished(run_id).await;
        self.get_json(&format!(
            "/runs/{run_id}/rollouts/{}",
            status["rollout_ids"][0].as_str().unwrap()
        ))
        .await
    }

    /// Stops the server and waits for the log to be closed.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        self.handle.stop(true).await;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Stops the server but keeps its data directory alive for a restart.
    pub async fn stop_keep_data(mut self) -> Option<tempfile::TempDir> {
        let temp = self._temp.take();
        self.shutdown.cancel();
        self.handle.stop(true).await;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        temp
    }
}

pub async fn wait_until_finished(client: &reqwest::Client, address: &str, run_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status: Value = client
            .get(format!("{address}/runs/{run_id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let total = status["total"].as_u64().unwrap();
        let done = status["completed"].as_u64().unwrap()
            + status["failed"].as_u64().unwrap()
            + status["cancelled"].as_u64().unwrap();
        if done == total {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "run {run_id} did not finish: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `GET address+path` as JSON, for tests that talk to a server process.
pub async fn get_json_at(client: &reqwest::Client, address: &str, path: &str) -> Value {
    client
        .get(format!("{address}{path}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Launches a run on the server at `address` (a [`TestApp`]'s or a [`ServerProcess`]'s)
/// and returns the launch response body.
pub async fn launch_at(client: &reqwest::Client, address: &str, body: &Value) -> Value {
    let response = client
        .post(format!("{address}/runs"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "launch failed: {body}");
    body
}

/// One poll of a run's feed at `address` (a [`TestApp`]'s or a [`ServerProcess`]'s):
/// up to `limit` complete groups `consumer` has not acknowledged, waiting up to 10 s.
pub async fn poll_groups(
    client: &reqwest::Client,
    address: &str,
    run_id: &str,
    consumer: &str,
    limit: u32,
) -> Value {
    let response = client
        .get(format!(
            "{address}/runs/{run_id}/groups?consumer={consumer}&wait=10&limit={limit}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// `POST /runs/{run_id}/groups/ack` at `address`: `consumer` took the groups `ids`.
pub async fn ack_groups(
    client: &reqwest::Client,
    address: &str,
    run_id: &str,
    consumer: &str,
    ids: &[u64],
) -> Value {
    let response = client
        .post(format!("{address}/runs/{run_id}/groups/ack"))
        .json(&json!({"consumer": consumer, "group_ids": ids}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// The catalog the test service loads, for what a test needs of a task directly.
pub fn bundled_catalog() -> rl_gym::scenarios::Catalog {
    rl_gym::scenarios::Catalog::load(&Settings::defaults().resolved_scenarios_dir())
        .expect("the catalog loads")
}

/// A launch body for the builtin provider.
pub fn builtin_run(model: &str, task_ids: &[&str], rollout_count: u32) -> Value {
    json!({
        "scenario_id": "hr",
        "task_ids": task_ids,
        "rollout_count": rollout_count,
        "model_config": { "model": model, "provider": "builtin" }
    })
}

/// A bundled `hr` task's definition, as its file has it.
pub fn hr_task_file(task_id: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("config/scenarios/hr/tasks/{task_id}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The `hr` task most tests run (approve a leave request): listed by the server, so a
/// test fails here if the catalog loses it.
pub async fn first_hr_task(app: &TestApp) -> String {
    const TASK: &str = "hr__101_approve_leave_request";
    let tasks = app.get_json("/scenarios/hr/tasks").await;
    let listed = tasks["tasks"].as_array().unwrap();
    assert!(
        listed.iter().any(|t| t["task_id"] == TASK),
        "{TASK} is listed"
    );
    TASK.to_string()
}

/// The real binary, serving on a random port; killed on drop.
pub struct ServerProcess {
    pub child: Child,
    pub address: String,
}

impl ServerProcess {
    pub fn start(data_dir: &Path) -> ServerProcess {
        Self::spawn(data_dir, "warn", Stdio::inherit(), &[])
    }

    /// With debug logs appended to `log`.
    pub fn start_logged(data_dir: &Path, log: &Path) -> ServerProcess {
        Self::start_with(data_dir, log, &[])
    }

    /// With debug logs appended to `log` and more arguments to `serve`.
    pub fn start_with(data_dir: &Path, log: &Path, args: &[&str]) -> ServerProcess {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        Self::spawn(data_dir, "debug", Stdio::from(file), args)
    }

    fn spawn(data_dir: &Path, level: &str, stderr: Stdio, args: &[&str]) -> ServerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rl-gym"))
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env("RUST_LOG", level)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("the binary starts");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let address = line
            .trim()
            .strip_prefix("rl-gym listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_string();
        ServerProcess { child, address }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for a graceful exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().unwrap()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary with `args` and returns (exit code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    run_cli_with(args, &[])
}

/// The variables the binary reads; cleared so the caller's shell cannot leak in.
const CLI_ENV: &[&str] = &[
    "RL_GYM_URL",
    "RL_GYM_API_TOKEN",
    "RL_GYM_MODEL_API_KEY",
    "RL_GYM_USER_MODEL_API_KEY",
    "RL_GYM_JUDGE_MODEL_API_KEY",
];

/// [`run_cli`] with these environment variables set (and no other of the binary's),
/// stdin not a terminal.
pub fn run_cli_with(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rl-gym"));
    command.args(args);
    for name in CLI_ENV {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    let output = command.output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

/// [`run_cli_with`] off the test's thread, so that a service spawned in this test
/// (whose actors live on that thread) keeps working while the binary runs.
pub async fn run_cli_async(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_cli_with(&args, &env)
    })
    .await
    .unwrap()
}

pub use rl_gym::load::fake_model::{Behaviour, FakeServer as FakeModel};

/// A rollout of [`Behaviour::ToolThenAnswer`] finished with nothing repeated: its two
/// assistant turns, two steps and one tool call, each once.
pub fn assert_tool_then_answer_once(detail: &Value) {
    let assistant_turns = detail["trajectory"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "assistant")
        .count();
    assert_eq!(assistant_turns, 2, "no duplicated step: {detail}");
    assert_eq!(detail["steps"], 2, "{detail}");
    assert_eq!(
        detail["tool_calls"].as_array().unwrap().len(),
        1,
        "no duplicated tool call: {detail}"
    );
    assert_eq!(detail["status"], "completed", "{detail}");
}

/// A fake model on a random loopback port, recording every request it gets.
pub async fn start_fake_model(behaviour: Behaviour) -> FakeModel {
    let bind = "127.0.0.1:0".parse().unwrap();
    let (server, fake) = rl_gym::load::fake_model::start(behaviour, bind, true).unwrap();
    actix_rt::spawn(server);
    fake
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: u64,
    pub event: String,
    pub data: Value,
}

/// A reader of a `text/event-stream` response.
pub struct Sse {
    response: reqwest::Response,
    buffer: String,
}

impl Sse {
    /// Opens `path`, resuming after `last_event_id` when given.
    pub async fn open(app: &TestApp, path: &str, last_event_id: Option<u64>) -> Sse {
        let mut request = app.client.get(app.url(path));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Sse {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (comments skipped); `None` when the server ended the stream.
    /// Panics after 30 s of silence.
    pub async fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, None, None);
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.parse().unwrap());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(v).unwrap());
                    }
                }
                match (id, event, data) {
                    (Some(id), Some(event), Some(data)) => {
                        return Some(SseEvent { id, event, data })
                    }
                    _ => continue,
                }
            }
            let chunk =
                tokio::time::timeout(std::time::Duration::from_secs(30), self.response.chunk())
                    .await
                    .expect("the event stream went silent")
                    .unwrap();
            match chunk {
                Some(bytes) => self.buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
                None => return None,
            }
        }
    }

    /// Every event until the server ends the stream.
    pub async fn rest(&mut self) -> Vec<SseEvent> {
        let mut events = Vec::new();
        while let Some(e) = self.next_event().await {
            events.push(e);
        }
        events
    }
}
