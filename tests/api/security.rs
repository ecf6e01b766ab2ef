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
    let response = app.post_run(&body).await;
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
        .post_environment(&json!({"scenario_id": "hr", "task_id": task}))
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

/// A raw body: hostile JSON (deep nesting, numbers beyond any type, invalid UTF-8,
/// not JSON at all) or a value from the generator.
fn hostile_body(rng: &mut Rng, valid: &Value) -> Vec<u8> {
    match rng.below(10) {
        0 => {
            let depth = 1 + rng.below(20_000);
            format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
        }
        1 => {
            let depth = 1 + rng.below(2_000);
            format!(
                "{}1{}",
                "{\"model_config\":".repeat(depth),
                "}".repeat(depth)
            )
            .into_bytes()
        }
        2 => {
            let number = *rng.pick(&[
                "1e999",
                "-1e999",
                "18446744073709551616",
                "-9223372036854775809",
                "0.0000000000000000000000000000001e-400",
                "123456789012345678901234567890123456789",
                "NaN",
            ]);
            let field = *rng.pick(&["rollout_count", "max_parallel", "at_step", "count", "seed"]);
            let mut text = valid.to_string();
            text.insert_str(1, &format!("\"{field}\":{number},"));
            text.into_bytes()
        }
        3 => {
            let mut bytes = valid.to_string().into_bytes();
            let at = rng.below(bytes.len());
            bytes.insert(at, *rng.pick(&[0xFF, 0xC0, 0x80, 0xED, 0x00]));
            bytes
        }
        4 => {
            b"{\"scenario_id\": \"hr\", \"task_ids\": [\"x\"], \"run_name\": \"\\ud800\"}".to_vec()
        }
        5 => rng.string().into_bytes(),
        6 => Vec::new(),
        _ => rng.value(0).to_string().into_bytes(),
    }
}

/// Every route of the API (the documented ones from `/openapi.json`, the ones it
/// leaves out, and some that do not exist), at the root and under `/v1`, gets
/// malformed and hostile requests: wrong types, huge numbers, deep nesting, invalid
/// UTF-8, odd methods, path traversal, oversized headers. None is ever a 5xx, and the
/// service answers afterwards. The seed is fixed, so a failure reproduces.
#[actix_web::test]
async fn fuzzed_requests_never_get_a_5xx() {
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let env: Value = app
        .post_environment(&json!({"scenario_id": "hr", "task_id": task}))
        .await
        .json()
        .await
        .unwrap();
    let env_id = env["environment_id"].as_str().unwrap().to_string();
    // A real run and rollout, so that ids sometimes lead somewhere.
    let launched = app.launch(&builtin_run("noop", &[&task], 1)).await;
    let run_id = launched["run_id"].as_str().unwrap().to_string();
    let status = app.wait_until_finished(&run_id).await;
    let rollout_id = status["rollout_ids"][0].as_str().unwrap().to_string();
    let valid = json!({"scenario_id": "hr", "task_ids": [task], "model_config": {"model": "noop", "provider": "builtin"}});

    let openapi = app.get_json("/openapi.json").await;
    let mut routes: Vec<(String, Vec<String>)> = openapi["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(path, item)| {
            let methods = item.as_object().unwrap().keys().cloned().collect();
            (path.clone(), methods)
        })
        .collect();
    assert!(routes.len() > 30, "the documented table: {routes:?}");
    for extra in [
        "/",
        "/{x}",
        "/{x}/{x}",
        "/runs/{run_id}/{x}",
        "/environments/{x}/{x}/{x}",
    ] {
        routes.push((extra.to_string(), vec!["get".to_string()]));
    }
    let segments = |rng: &mut Rng, name: &str| -> String {
        match rng.below(12) {
            0 => "hr".to_string(),
            1 => task.clone(),
            2 => env_id.clone(),
            3 => run_id.clone(),
            4 => rollout_id.clone(),
            5 => "..%2F..%2F..%2Fetc%2Fpasswd".to_string(),
            6 => "%2e%2e".to_string(),
            7 => "%FF%FE%00".to_string(),
            8 => "a".repeat(1 + rng.below(5_000)),
            9 if name == "filename" => "../../../../etc/passwd".replace('/', "%2F"),
            _ => urlencode(&rng.string()),
        }
    };
    let queries = [
        "",
        "?limit=0",
        "?limit=%FF",
        "?limit=99999999999999999999&offset=-1",
        "?expand=rollouts&expand=%00",
        "?format=rl&min_score=NaN",
        "?dry_run=maybe",
        "?types=RunLaunched,%FF",
        "?run_id=..%2F..&status=bogus",
        "?after=-1",
    ];
    let odd_methods = ["PUT", "PATCH", "OPTIONS", "HEAD", "TRACE", "FUZZ"];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let unpooled = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    const REQUESTS: usize = 3_000;
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..REQUESTS {
        let (template, methods) = rng.pick(&routes).clone();
        let mut path = String::new();
        if rng.below(2) == 0 {
            path.push_str("/v1");
        }
        for part in template.split('/').skip(1) {
            path.push('/');
            match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(name) => path.push_str(&segments(&mut rng, name)),
                None => path.push_str(part),
            }
        }
        let query = rng.pick(&queries);
        path.push_str(query);
        let method = match rng.below(10) {
            0..=6 => rng.pick(&methods).to_uppercase(),
            7 | 8 => rng.pick(&["GET", "POST", "DELETE"]).to_string(),
            _ => rng.pick(&odd_methods).to_string(),
        };
        let body = match rng.below(5) {
            0 => rng.value(0).to_string().into_bytes(),
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
                body.to_string().into_bytes()
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
                    "tool_server_url",
                ]);
                body["model_config"][field] = rng.value(1);
                body.to_string().into_bytes()
            }
            3 => json!({"action": {"tool_name": rng.string(), "parameters": rng.value(1)}})
                .to_string()
                .into_bytes(),
            _ => hostile_body(&mut rng, &valid),
        };
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let huge = i % 97 == 0 || i % 89 == 0;
        // The server closes a connection after refusing its headers: not pooled.
        let client = if huge { &unpooled } else { &app.client };
        let mut request = client
            .request(method.clone(), app.url(&path))
            .header("content-type", "application/json")
            .body(body.clone());
        if i % 97 == 0 {
            // Far beyond any header limit: refused, never a crash.
            request = request.header("x-fuzz", "h".repeat(8_000 + rng.below(200_000)));
        } else if i % 89 == 0 {
            for n in 0..(50 + rng.below(200)) {
                request = request.header(format!("x-fuzz-{n}"), "h".repeat(rng.below(500)));
            }
        } else if i % 31 == 0 {
            request = request.header(
                "content-type",
                *rng.pick(&[
                    "text/plain",
                    "application/json; charset=latin1",
                    "multipart/form-data",
                    "application/x-www-form-urlencoded",
                ]),
            );
        }
        let shown = String::from_utf8_lossy(&body[..body.len().min(300)]).to_string();
        let response = match request.send().await {
            Ok(response) => response,
            // An oversized header may be answered by closing the connection.
            Err(e) if huge => {
                *statuses.entry(0).or_insert(0) += 1;
                eprintln!("{method} {path} with a huge header: {e}");
                continue;
            }
            Err(e) => panic!("{method} {path} {shown}: {e}"),
        };
        let status = response.status();
        let streaming = response
            .headers()
            .get("content-type")
            .is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream"));
        // A live event stream never ends: its status is the answer.
        let text = if streaming {
            String::new()
        } else {
            response.text().await.unwrap_or_default()
        };
        assert!(
            !status.is_server_error(),
            "{method} {path} {shown} → {status} {text}"
        );
        *statuses.entry(status.as_u16()).or_insert(0) += 1;
    }
    eprintln!("fuzzed {REQUESTS} requests: {statuses:?}");
    assert_eq!(app.get_json("/healthz").await["status"], "ok");
    assert_eq!(app.get_json("/v1/healthz").await["status"], "ok");
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
    let client = crate::helpers::http_client();
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
    let model = start_fake_model(Behaviour::answer_after(10_000)).await;
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
        .post_environment(&json!({"scenario_id": "hr", "task_id": task}))
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
    let rollout = app.rollout(run_id, rollout_id).await;
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

/// One request a loopback server got.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

pub type SeenLog = std::sync::Arc<parking_lot::Mutex<Vec<Seen>>>;

/// A loopback HTTP server that records every request (any method, any path) and
/// answers it with `answer`: a fake provider, tool server or attacker. Returns its
/// base URL (`http://127.0.0.1:PORT`) and what it got.
pub async fn recording_server(answer: fn(&Seen) -> HttpResponse) -> (String, SeenLog) {
    let seen = SeenLog::default();
    let log = seen.clone();
    let server = HttpServer::new(move || {
        let log = log.clone();
        App::new().default_service(web::to(move |req: actix_web::HttpRequest| {
            let log = log.clone();
            async move {
                let request = Seen {
                    method: req.method().to_string(),
                    path: req.path().to_string(),
                    headers: req
                        .headers()
                        .iter()
                        .map(|(n, v)| {
                            (
                                n.as_str().to_string(),
                                String::from_utf8_lossy(v.as_bytes()).to_string(),
                            )
                        })
                        .collect(),
                };
                log.lock().push(request.clone());
                answer(&request)
            }
        }))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let url = format!("http://{}", server.addrs()[0]);
    actix_rt::spawn(server.run());
    (url, seen)
}

/// A client that sends `token` with every request.
fn client_with(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

fn field_error(body: &Value, loc: &Value) -> Value {
    body["detail"]
        .as_array()
        .and_then(|errors| errors.iter().find(|e| &e["loc"] == loc).cloned())
        .unwrap_or_else(|| panic!("no error at {loc}: {body}"))
}

#[actix_web::test]
async fn the_servers_token_never_goes_to_a_url_that_only_looks_like_its_own() {
    const TOKEN: &str = "tok-never-leaves-8080";
    let (mut app, _temp) = spawn_with(|s| s.api_tokens = vec![TOKEN.into()]).await;
    app.client = client_with(TOKEN);
    let (attacker, seen) = recording_server(|_| HttpResponse::NotFound().finish()).await;
    let attacker_host = attacker.trim_start_matches("http://");
    let task = first_hr_task(&app).await;
    let run = |url: &str| {
        json!({"scenario_id": "hr", "task_ids": [task], "model_config": {
            "model": "oracle", "provider": "builtin", "tool_server_url": url}})
    };
    // Our own address as the user part of a URL whose host is the attacker's.
    let disguised = format!("{}@{attacker_host}/steal", app.address);
    for path in ["/runs", "/v1/runs"] {
        let response = app.post(path, &run(&disguised)).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path}"
        );
        let body: Value = response.json().await.unwrap();
        let error = field_error(&body, &json!(["body", "model_config", "tool_server_url"]));
        assert_eq!(error["type"], "url_parsing", "{body}");
    }
    assert!(
        seen.lock().is_empty(),
        "nothing was sent: {:?}",
        seen.lock()
    );

    // Anyone else's environment is called, without this server's token.
    let launched = app
        .launch(&run(&format!("{attacker}/environments/env_x")))
        .await;
    let status = app
        .wait_until_finished(launched["run_id"].as_str().unwrap())
        .await;
    assert_eq!(status["failed"], 1, "{status}");
    let seen = seen.lock().clone();
    assert_eq!(seen[0].method, "GET", "its tools were listed: {seen:?}");
    for request in &seen {
        for (name, value) in &request.headers {
            assert!(
                !value.contains(TOKEN),
                "{name} carried the token: {request:?}"
            );
        }
    }
    app.stop().await;
}

#[actix_web::test]
async fn names_and_urls_that_cannot_work_are_refused_at_launch_naming_the_field() {
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    for name in [
        ".", "..", "...", "a/b", "a\\b", "a\nb", "a\u{0}b", "a\u{7f}",
    ] {
        let mut body = builtin_run("noop", &[&task], 1);
        body["run_name"] = json!(name);
        let response = app.post_run(&body).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{name:?}"
        );
        let body: Value = response.json().await.unwrap();
        let error = field_error(&body, &json!(["body", "run_name"]));
        assert_eq!(error["type"], "string_pattern_mismatch", "{name:?}: {body}");
    }
    let bad_urls = [
        "http://",
        "not a url",
        "ftp://127.0.0.1/v1",
        "http://user:pw@127.0.0.1:1/v1",
        "http://127.0.0.1:1/v1?x=1",
    ];
    for url in bad_urls {
        for field in ["base_url", "tool_server_url"] {
            let mut model =
                json!({"model": "m", "provider": "custom", "base_url": "http://127.0.0.1:1/v1"});
            model[field] = json!(url);
            // A launch, a model config test and a fork share the one check.
            for (path, body, loc) in [
                (
                    "/runs",
                    json!({"scenario_id": "hr", "task_ids": [task], "model_config": model}),
                    json!(["body", "model_config", field]),
                ),
                (
                    "/v1/runs",
                    json!({"scenario_id": "hr", "task_ids": [task], "user_model_config": model,
                           "model_config": {"model": "noop", "provider": "builtin"}}),
                    json!(["body", "user_model_config", field]),
                ),
                ("/test-model-config", model.clone(), json!(["body", field])),
                (
                    "/runs/run_x/rollouts/rol_x/fork",
                    json!({"at_step": 0, "model_config": model}),
                    json!(["body", "model_config", field]),
                ),
            ] {
                let response = app.post(path, &body).await;
                assert_eq!(
                    response.status(),
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "{path} {field}={url:?}"
                );
                let answer: Value = response.json().await.unwrap();
                let error = field_error(&answer, &loc);
                assert_eq!(error["type"], "url_parsing", "{answer}");
                assert!(error["msg"].as_str().unwrap().contains("URL"), "{answer}");
            }
        }
    }
    let list = app.get_json("/runs").await;
    assert_eq!(list["total"], 0, "nothing was launched: {list}");
    app.stop().await;
}

const MODEL_KEY: &str = "sk-echoed-model-key-1111";
const ANTHROPIC_KEY: &str = "sk-ant-echoed-key-2222";
const OUTPUT_KEY: &str = "sk-echoed-output-key-3333";
const RUN_JUDGE_KEY: &str = "sk-run-judge-key-4444";
const SERVER_JUDGE_KEY: &str = "sk-server-judge-key-5555";
const USER_MODEL_KEY: &str = "sk-user-model-key-6666";
const SERVER_TOKEN: &str = "tok-server-token-7777";

/// A provider that quotes the credentials it got: in an error (`/fail/{status}/…`),
/// in a judge's reasons (`/judge/…`) or in its answer (`/echo/…`, with the server's
/// token too, as a model told it somehow would).
fn echoing_provider(request: &Seen) -> HttpResponse {
    let credentials = format!(
        "authorization={} x-api-key={} api-key={}",
        request.header("authorization"),
        request.header("x-api-key"),
        request.header("api-key")
    );
    let answer = |content: String| {
        HttpResponse::Ok().json(json!({
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]
        }))
    };
    let mut parts = request.path.split('/').skip(1);
    match parts.next() {
        Some("fail") => {
            let code = parts.next().and_then(|c| c.parse().ok()).unwrap_or(500);
            HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap())
                .insert_header(("retry-after", "0"))
                .json(json!({"error": {"message": format!("refused {credentials}")}}))
        }
        Some("judge") => answer(
            json!({"criteria": [{"criterion": "tone", "score": 1, "reason": format!("saw {credentials}")}],
                   "reason": format!("called with {credentials}")})
            .to_string(),
        ),
        _ => answer(format!(
            "I was called with {credentials}; the token is {SERVER_TOKEN}"
        )),
    }
}

/// Every file under `dir`, as bytes, with its path.
fn files_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            files.push((path, bytes));
        }
    }
    files
}

#[actix_web::test]
async fn a_key_a_provider_echoes_is_recorded_and_served_nowhere() {
    let (provider, seen) = recording_server(echoing_provider).await;
    let (mut app, temp) = spawn_with(|s| {
        s.api_tokens = vec![SERVER_TOKEN.into()];
        s.judge = rl_gym::config::JudgeSettings {
            provider: Some("custom".into()),
            model: Some("server-judge".into()),
            base_url: Some(format!("{provider}/judge/v1")),
            api_key: Some(rl_gym::domain::secret::ApiKey::new(SERVER_JUDGE_KEY.into())),
            ..Default::default()
        };
    })
    .await;
    app.client = client_with(SERVER_TOKEN);
    let task = first_hr_task(&app).await;
    let rubric = json!({task.clone(): {"rubric_markdown": "- Polite (100%)"}});
    let runs = [
        // A provider error quoting an OpenAI-style key, then an Anthropic one.
        json!({"scenario_id": "hr", "task_ids": [task], "model_config": {
            "model": "m", "provider": "custom", "base_url": format!("{provider}/fail/401/v1"),
            "api_key": MODEL_KEY}}),
        json!({"scenario_id": "hr", "task_ids": [task], "model_config": {
            "model": "m", "provider": "anthropic", "base_url": format!("{provider}/fail/500"),
            "api_key": ANTHROPIC_KEY}}),
        // A model that says its key, judged by a judge that quotes its own.
        json!({"scenario_id": "hr", "task_ids": [task], "task_overrides": rubric,
            "model_config": {"model": "m", "provider": "custom",
                "base_url": format!("{provider}/echo/v1"), "api_key": OUTPUT_KEY},
            "user_model_config": {"model": "u", "provider": "custom",
                "base_url": format!("{provider}/echo/v1"), "api_key": USER_MODEL_KEY},
            "judge_model_config": {"model": "j", "provider": "custom",
                "base_url": format!("{provider}/judge/v1"), "api_key": RUN_JUDGE_KEY}}),
        // The server's judge, with the server's key.
        json!({"scenario_id": "hr", "task_ids": [task], "task_overrides": rubric,
            "model_config": {"model": "oracle", "provider": "builtin"}}),
    ];
    let mut run_ids = Vec::new();
    for body in &runs {
        let launched = app.launch(body).await;
        run_ids.push(launched["run_id"].as_str().unwrap().to_string());
    }
    let mut served = String::new();
    let mut rollouts = Vec::new();
    for run_id in &run_ids {
        let status = app.wait_until_finished(run_id).await;
        served.push_str(&status.to_string());
        let rollout_id = status["rollout_ids"][0].as_str().unwrap();
        let rollout = app.rollout(run_id, rollout_id).await;
        served.push_str(&rollout.to_string());
        rollouts.push(rollout);
        // The run's event stream replays its events and ends with the run.
        let mut stream = Sse::open(&app, &format!("/runs/{run_id}/events"), None).await;
        for event in stream.rest().await {
            served.push_str(&event.data.to_string());
        }
        served.push_str(
            &app.get(&format!("/v1/runs/{run_id}"))
                .await
                .text()
                .await
                .unwrap(),
        );
        let export = app.export(run_id, "format=rl").await;
        assert_eq!(export.status(), StatusCode::OK);
        served.push_str(&export.text().await.unwrap());
    }
    served.push_str(&app.get_json("/rollouts?limit=200").await.to_string());
    served.push_str(&app.get_json("/runs?expand=rollouts").await.to_string());

    // Each key did reach the provider, and came back quoted: what is checked is real.
    let got: String = seen
        .lock()
        .iter()
        .map(|s| format!("{:?}", s.headers))
        .collect();
    for key in [
        MODEL_KEY,
        ANTHROPIC_KEY,
        OUTPUT_KEY,
        RUN_JUDGE_KEY,
        SERVER_JUDGE_KEY,
    ] {
        assert!(got.contains(key), "{key} was not sent");
    }
    let error = |i: usize| {
        rollouts[i]["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        error(0).contains("401") && error(0).contains("***"),
        "{}",
        rollouts[0]
    );
    assert!(
        error(1).contains("500") && error(1).contains("***"),
        "{}",
        rollouts[1]
    );
    let said = rollouts[2]["trajectory"].to_string();
    assert!(
        said.contains("called with authorization=Bearer *** ") && said.contains("the token is ***"),
        "{said}"
    );
    for rollout in &rollouts[2..] {
        let rubric = &rollout["rubric"];
        assert!(
            rubric["reason"]
                .as_str()
                .unwrap()
                .contains("called with authorization=Bearer ***"),
            "{rubric}"
        );
        assert!(
            rubric["criteria"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("***"),
            "{rubric}"
        );
    }

    let keys = [
        MODEL_KEY,
        ANTHROPIC_KEY,
        OUTPUT_KEY,
        RUN_JUDGE_KEY,
        SERVER_JUDGE_KEY,
        USER_MODEL_KEY,
        SERVER_TOKEN,
    ];
    for key in keys {
        assert!(!served.contains(key), "{key} was served: {served}");
    }
    app.stop().await;
    let files = files_under(temp.path());
    assert!(files.len() > 2, "{files:?}");
    for (path, bytes) in files {
        for key in keys {
            let found = bytes.windows(key.len()).any(|w| w == key.as_bytes());
            assert!(!found, "{key} is in {}", path.display());
        }
    }
}
