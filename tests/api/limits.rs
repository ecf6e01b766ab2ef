//! Resource limits (issue 21): slow bodies time out, connections are capped, hosted
//! environments are bounded and expire, pending rollouts are capped across runs,
//! preference exports are capped per task, and environment URLs never come from a
//! request's Host or Forwarded headers.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;
use crate::stats::{FULL, NONE, TASK, THIRD};
use rl_gym::actors::breakpoints::Breakpoint;

/// A connection that sent a POST's headers and dribbles its body a byte at a time;
/// closed when dropped.
struct SlowPost {
    read: tokio::net::tcp::OwnedReadHalf,
    writer: tokio::task::JoinHandle<()>,
}

impl Drop for SlowPost {
    fn drop(&mut self) {
        self.writer.abort();
    }
}

/// A slow POST on a connection the server has served a request on first (so it has
/// been counted before this returns).
async fn slow_post(app: &TestApp) -> SlowPost {
    let address = app.address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before answering /healthz");
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if answer.len() >= end + 4 + length {
                assert!(text.starts_with("http/1.1 200"), "{text}");
                break;
            }
        }
    }
    let (read, mut write) = stream.into_split();
    write
        .write_all(
            b"POST /environments HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 1000\r\n\r\n{",
        )
        .await
        .unwrap();
    let writer = actix_rt::spawn(async move {
        for _ in 0..300 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if write.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    SlowPost { read, writer }
}

/// Everything the server sends until it closes the connection (or `deadline` passes).
async fn read_to_close(mut slow: SlowPost, deadline: Instant) -> String {
    let mut answer = Vec::new();
    let read = slow.read.read_to_end(&mut answer);
    let _ = tokio::time::timeout_at(deadline.into(), read).await;
    String::from_utf8_lossy(&answer).to_string()
}

/// A client that opens a new connection for every request.
fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// The value of an unlabelled metric (or of one series, `name{labels}`).
async fn metric(app: &TestApp, series: &str) -> f64 {
    let text = fresh_client()
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[actix_web::test]
async fn slow_bodies_are_answered_408_and_closed_while_healthz_keeps_answering() {
    let (app, _dir) = spawn_with(|s| s.request_timeout_secs = 1).await;
    let mut slow = Vec::new();
    for _ in 0..20 {
        slow.push(slow_post(&app).await);
    }
    let client = fresh_client();
    for _ in 0..5 {
        let health = client.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(health.status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Well past the 1 s deadline even on a slow machine; the same for every connection.
    let deadline = Instant::now() + Duration::from_secs(60);
    for read in slow {
        let answer = read_to_close(read, deadline).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
        assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
    }
    let health = client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert!(
        metric(
            &app,
            r#"rl_gym_http_requests_refused_total{reason="request_timeout"}"#
        )
        .await
            >= 20.0
    );
    // A body sent in time is not affected.
    let task = first_hr_task(&app).await;
    let created = app
        .post_environment(&json!({"scenario_id": "hr", "task_id": task}))
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    app.stop().await;
}

#[actix_web::test]
async fn connections_beyond_the_cap_are_answered_503_at_once() {
    let (app, _dir) = spawn_with(|s| {
        s.max_connections = 3;
        s.request_timeout_secs = 120;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(slow_post(&app).await);
    }
    let client = fresh_client();
    // The held connections are counted as the server accepts them: poll until it is full.
    let deadline = Instant::now() + Duration::from_secs(60);
    let refused = loop {
        let response = client.get(app.url("/runs")).send().await.unwrap();
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            break response;
        }
        assert!(
            Instant::now() < deadline,
            "never refused: {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let connection = refused.headers()["connection"]
        .to_str()
        .unwrap()
        .to_string();
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "too_many_connections", "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("at most 3"),
        "{body}"
    );
    assert_eq!(connection, "close");
    let health = client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(
        health.status(),
        StatusCode::OK,
        "a load balancer still sees it alive"
    );

    drop(held);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let response = client.get(app.url("/runs")).send().await.unwrap();
        if response.status() == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still refused once the held ones closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        metric(
            &app,
            r#"rl_gym_http_requests_refused_total{reason="too_many_connections"}"#
        )
        .await
            >= 1.0
    );
    app.stop().await;
}

/// An environment of a task with the email server; answers its email server's URL.
async fn email_environment(app: &TestApp) -> String {
    let tasks = app.get_json("/scenarios/hr/tasks").await;
    let task = tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tool_servers"].to_string().contains("\"email\""))
        .unwrap()["task_id"]
        .clone();
    let env = app.create_environment(task.as_str().unwrap()).await;
    env["tool_servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "email")
        .unwrap()["tool_server_url"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn send_email(app: &TestApp, email: &str, body: &str) -> Value {
    let response = app
        .step(
            email,
            &json!({"action": {"tool_name": "send_email", "parameters": {
                "to": ["someone@example.com"], "subject": "Hello", "body": body
            }}}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

#[actix_web::test]
async fn too_large_arguments_and_too_much_state_are_refused_in_band() {
    let (app, _dir) = spawn_with(|s| {
        s.max_tool_argument_bytes = 2_000;
        s.max_environment_state_bytes = 3_000;
    })
    .await;
    let email = email_environment(&app).await;
    let snapshot = || async { app.snapshot(&email).await };
    let before = snapshot().await;

    let answer = send_email(&app, &email, &"x".repeat(5_000)).await;
    assert_eq!(answer["is_error"], true, "{answer}");
    let observation = answer["observation"].as_str().unwrap();
    assert!(observation.starts_with("Error: "), "{observation}");
    assert!(observation.contains("at most 2000"), "{observation}");
    assert_eq!(snapshot().await, before, "a refused call changes nothing");

    // 1,700 bytes fit once in the 3,000 the environment may take, not twice.
    let first = send_email(&app, &email, &"y".repeat(1_600)).await;
    assert!(first.get("is_error").is_none(), "{first}");
    let second = send_email(&app, &email, &"z".repeat(1_600)).await;
    assert_eq!(second["is_error"], true, "{second}");
    assert!(
        second["observation"]
            .as_str()
            .unwrap()
            .contains("max_environment_state_bytes"),
        "{second}"
    );
    // Reading is not a change: still served.
    let tools = app
        .client
        .get(format!("{email}/tools"))
        .send()
        .await
        .unwrap();
    assert_eq!(tools.status(), StatusCode::OK);

    // A body beyond max_body_bytes is a 413 before any of this.
    let huge = app
        .client
        .post(format!("{email}/step"))
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"action":{{"tool_name":"send_email","parameters":{{"body":"{}"}}}}}}"#,
            "x".repeat(5 * 1024 * 1024)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), StatusCode::PAYLOAD_TOO_LARGE);
    app.stop().await;
}

#[actix_web::test]
async fn an_idle_environment_expires_and_is_counted() {
    let (app, _dir) = spawn_with(|s| s.environment_idle_secs = 3).await;
    let email = email_environment(&app).await;
    let kept = email_environment(&app).await;
    assert_eq!(metric(&app, "rl_gym_environments_open").await, 2.0);
    // Used every 500 ms, `kept` stays open while `email` goes idle.
    for _ in 0..8 {
        let health = app
            .client
            .get(format!("{kept}/health"))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let expired = app
        .client
        .get(format!("{email}/tools"))
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status(), StatusCode::NOT_FOUND);
    let body: Value = expired.json().await.unwrap();
    assert_eq!(body["code"], "environment_not_found");
    assert_eq!(metric(&app, "rl_gym_environments_expired_total").await, 1.0);
    assert_eq!(metric(&app, "rl_gym_environments_open").await, 1.0);
    app.stop().await;
}

fn assert_too_many_pending(response: &reqwest::Response) {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0);
}

#[actix_web::test]
async fn launches_and_forks_beyond_the_pending_cap_get_429() {
    let model = start_fake_model(Behaviour::answer_after(60_000)).await;
    let (app, _dir) = spawn_with(|s| s.max_pending_rollouts = 5).await;
    let task = first_hr_task(&app).await;

    let too_many = app.post("/runs", &builtin_run("oracle", &[&task], 6)).await;
    assert_too_many_pending(&too_many);
    let body: Value = too_many.json().await.unwrap();
    assert_eq!(body["code"], "too_many_pending_rollouts", "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("cap of 5"),
        "{body}"
    );
    assert_eq!(
        app.get_json("/runs").await["total"],
        0,
        "nothing was recorded"
    );

    // A fork queues its rollouts too.
    let source = app.launch(&builtin_run("oracle", &[&task], 1)).await;
    let status = app
        .wait_until_finished(source["run_id"].as_str().unwrap())
        .await;
    let fork = app
        .fork(
            source["run_id"].as_str().unwrap(),
            status["rollout_ids"][0].as_str().unwrap(),
            &json!({"at_step": 0, "count": 6}),
        )
        .await;
    assert_too_many_pending(&fork);

    // One rollout at a time of a slow model: four wait, for a minute.
    let mut points = app.breakpoints.subscribe();
    let slow = app
        .launch(&json!({
            "scenario_id": "hr", "task_ids": [task], "rollout_count": 5, "max_parallel": 1,
            "model_config": {"model": "m", "provider": "custom", "base_url": model.address}
        }))
        .await;
    let slow_id = slow["run_id"].as_str().unwrap();
    // The first one starts as the run's actor does.
    points
        .advance_till(
            |p| matches!(p, Breakpoint::RolloutStarted { run_id, .. } if run_id == slow_id),
        )
        .await;
    assert_eq!(metric(&app, "rl_gym_rollouts_pending").await, 4.0);
    let across_runs = app.post("/runs", &builtin_run("oracle", &[&task], 2)).await;
    assert_too_many_pending(&across_runs);
    let one_more = app.launch(&builtin_run("oracle", &[&task], 1)).await;
    app.wait_until_finished(one_more["run_id"].as_str().unwrap())
        .await;

    // Cancelled, the waiting rollouts no longer count.
    let cancelled = app.cancel(slow_id).await;
    assert_eq!(cancelled.status(), StatusCode::OK);
    assert_eq!(metric(&app, "rl_gym_rollouts_pending").await, 0.0);
    let full = app.launch(&builtin_run("oracle", &[&task], 5)).await;
    app.wait_until_finished(full["run_id"].as_str().unwrap())
        .await;
    app.stop().await;
}

#[actix_web::test]
async fn preference_exports_at_most_the_cap_of_pairs_per_task_the_same_every_time() {
    let model = start_fake_model(Behaviour::Answers(&[FULL, THIRD, NONE])).await;
    let app = spawn_app().await;
    let launched = app
        .launch(&json!({
            "scenario_id": "hr", "task_ids": [TASK], "rollout_count": 12,
            "model_config": {"model": "m", "provider": "custom", "base_url": model.address}
        }))
        .await;
    let run_id = launched["run_id"].as_str().unwrap();
    app.wait_until_finished(run_id).await;
    let export = |query: &'static str| {
        let url = app.url(&format!("/runs/{run_id}/export?format=preference{query}"));
        let client = app.client.clone();
        async move {
            let response = client.get(url).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{query}");
            response.text().await.unwrap()
        }
    };
    let first = export("").await;
    assert_eq!(first, export("").await, "the same pairs, byte for byte");
    let lines: Vec<Value> = first
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Three scores, four rollouts each: 48 pairs differ; 16 (the default) are kept.
    assert_eq!(lines.len(), 16);
    let mut seen = BTreeSet::new();
    for pair in &lines {
        assert!(pair["chosen_score"].as_f64() > pair["rejected_score"].as_f64());
        let p = &pair["provenance"];
        assert!(seen.insert((
            p["chosen_rollout_id"].to_string(),
            p["rejected_rollout_id"].to_string()
        )));
    }
    assert_eq!(export("&max_pairs_per_task=5").await.lines().count(), 5);
    assert_eq!(export("&max_pairs_per_task=1000").await.lines().count(), 48);
    for bad in ["0", "1001", "many"] {
        let response = app
            .get(&format!(
                "/runs/{run_id}/export?format=preference&max_pairs_per_task={bad}"
            ))
            .await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    app.stop().await;
}

#[actix_web::test]
async fn environment_urls_ignore_host_and_forwarded_headers() {
    let hostile = [
        ("host", "evil.example"),
        ("forwarded", "host=evil.example;proto=https"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "https"),
    ];
    let request = |builder: reqwest::RequestBuilder| {
        hostile
            .iter()
            .fold(builder, |b, (name, value)| b.header(*name, *value))
    };
    for public_url in [None, Some("https://gym.example.com")] {
        let (app, _dir) = spawn_with(|s| {
            if let Some(url) = public_url {
                s.public_url = url.to_string();
            }
        })
        .await;
        let base = public_url.map_or(app.address.clone(), str::to_string);
        let task = first_hr_task(&app).await;
        let created: Value = request(app.client.post(app.url("/environments")))
            .json(&json!({"scenario_id": "hr", "task_id": task}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["environment_id"].as_str().unwrap();
        assert_eq!(
            created["environment_url"],
            format!("{base}/environments/{id}"),
            "{created}"
        );
        for server in created["tool_servers"].as_array().unwrap() {
            let url = server["tool_server_url"].as_str().unwrap();
            assert!(
                url.starts_with(&format!("{base}/environments/{id}/")),
                "{url}"
            );
        }
        let tasks: Value = request(app.client.get(app.url("/scenarios/hr/tasks")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let text = tasks.to_string();
        assert!(!text.contains("evil.example"), "{text}");
        let url = tasks["tasks"][0]["tool_servers"][0]["tool_server_url"]
            .as_str()
            .unwrap();
        assert!(
            url.starts_with(&format!("{base}/environments/<environment-id>/")),
            "{url}"
        );
        app.stop().await;
    }
}
