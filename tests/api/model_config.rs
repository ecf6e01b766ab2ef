//! `POST /test-model-config` against local servers that fail in each way a provider
//! can: each failure is named by its `error_type`, and the key is never in the answer.

use reqwest::StatusCode;
use serde_json::{json, Value};

use actix_web::HttpResponse;

use crate::helpers::*;
use crate::security::{recording_server, Seen};

const KEY: &str = "sk-probe-secret-4711";

fn config(base_url: &str) -> Value {
    json!({"model": "m", "provider": "custom", "base_url": base_url, "api_key": KEY})
}

async fn probe(app: &TestApp, body: &Value) -> Value {
    let response = app.post("/test-model-config", body).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(!text.contains(KEY), "the key was echoed: {text}");
    serde_json::from_str(&text).unwrap()
}

#[actix_web::test]
async fn a_working_model_succeeds_with_one_call_and_builtin_needs_none() {
    let model = start_fake_model(Behaviour::answer_after(0)).await;
    let app = spawn_app().await;
    let answer = probe(&app, &config(&model.address)).await;
    assert_eq!(answer["success"], true, "{answer}");
    assert_eq!(answer["error_type"], Value::Null);
    let requests = model.requests.lock().clone();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].0.as_deref(),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(requests[0].1["messages"][0]["role"], "user");

    let builtin = probe(&app, &json!({"model": "oracle", "provider": "builtin"})).await;
    assert_eq!(
        (builtin["success"].as_bool(), &builtin["error_type"]),
        (Some(true), &Value::Null)
    );
    let v1 = app
        .post(
            "/v1/test-model-config",
            &json!({"model": "noop", "provider": "builtin"}),
        )
        .await;
    assert_eq!(v1.status(), StatusCode::OK);
    app.stop().await;
}

#[actix_web::test]
async fn each_provider_failure_is_named_and_tried_once() {
    let app = spawn_app().await;
    for (status, error_type) in [
        (401, "authentication_error"),
        (404, "invalid_model"),
        (429, "rate_limit"),
        (400, "bad_request"),
    ] {
        let model = start_fake_model(Behaviour::Status(status)).await;
        let answer = probe(&app, &config(&model.address)).await;
        assert_eq!(answer["success"], false, "{answer}");
        assert_eq!(answer["error_type"], error_type, "{status}: {answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(
            message.contains(&status.to_string()) && message.contains("***"),
            "{message}"
        );
        assert_eq!(model.requests.lock().len(), 1, "{status} is not retried");
    }

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    let answer = probe(&app, &config(&address)).await;
    assert_eq!(answer["error_type"], "connection_error", "{answer}");
    app.stop().await;
}

#[actix_web::test]
async fn a_model_slower_than_the_server_timeout_is_a_timeout() {
    let model = start_fake_model(Behaviour::answer_after(10_000)).await;
    let temp = tempfile::tempdir().unwrap();
    let mut settings = settings_for(temp.path());
    settings.model_timeout_secs = 1;
    let app = spawn_app_with(settings).await;
    let started = std::time::Instant::now();
    let answer = probe(&app, &config(&model.address)).await;
    assert_eq!(answer["error_type"], "timeout", "{answer}");
    assert_eq!(answer["success"], false);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    app.stop().await;
}

#[actix_web::test]
async fn a_bad_config_is_422_naming_the_field_as_in_a_launch() {
    let app = spawn_app().await;
    let response = app
        .post(
            "/test-model-config",
            &json!({"provider": "openai", "temperature": 3}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = response.json().await.unwrap();
    let locs: Vec<Value> = body["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["loc"].clone())
        .collect();
    assert_eq!(
        locs,
        [
            json!(["body", "model"]),
            json!(["body", "api_key"]),
            json!(["body", "temperature"])
        ],
        "{body}"
    );

    let response = app
        .post(
            "/test-model-config",
            &json!({"model": "gpt", "provider": "builtin"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let response = app
        .post("/test-model-config", &json!(["not", "an", "object"]))
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["detail"][0]["loc"], json!(["body"]));
    app.stop().await;
}

/// A "model" that sends its caller elsewhere (`/redirect/…`: 302 to an internal page
/// on `localhost`) or answers with a page (`/html/{status}/…`); the internal page
/// (`/internal/…`) answers anyone who reaches it.
fn internal_pages(request: &Seen) -> HttpResponse {
    let port = request.header("host").rsplit(':').next().unwrap_or("80");
    let mut parts = request.path.split('/').skip(1);
    match parts.next() {
        Some("redirect") => HttpResponse::Found()
            .insert_header((
                "location",
                format!("http://localhost:{port}/internal/admin"),
            ))
            .finish(),
        Some("html") => {
            let code = parts.next().and_then(|c| c.parse().ok()).unwrap_or(200);
            HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap())
                .insert_header(("retry-after", "0"))
                .content_type("text/html")
                .body(format!("<html>{INTERNAL}</html>"))
        }
        _ => HttpResponse::Ok().content_type("text/plain").body(INTERNAL),
    }
}

const INTERNAL: &str = "INTERNAL-ONLY: db password hunter2";

#[actix_web::test]
async fn a_redirect_is_not_followed_and_a_page_is_never_read_out() {
    let (server, seen) = recording_server(internal_pages).await;
    let app = spawn_app().await;
    let redirect = probe(&app, &config(&format!("{server}/redirect/v1"))).await;
    assert_eq!(redirect["success"], false);
    let message = redirect["message"].as_str().unwrap();
    assert!(
        message.contains("302") && message.contains("localhost") && !message.contains("admin"),
        "only the status and the host it points to: {message}"
    );
    for status in [200, 500] {
        let page = probe(&app, &config(&format!("{server}/html/{status}/v1"))).await;
        assert_eq!(page["success"], false);
        let message = page["message"].as_str().unwrap();
        assert!(
            !message.contains("INTERNAL") && !message.contains("html>"),
            "{message}"
        );
        if status == 500 {
            assert!(
                message.contains("500") && message.contains("text/html"),
                "{message}"
            );
        }
    }

    // A run's model calls and their recorded errors alike.
    let task = first_hr_task(&app).await;
    for path in ["redirect/v1", "html/200/v1", "html/502/v1"] {
        let launched = app
            .launch(&json!({"scenario_id": "hr", "task_ids": [task],
                "model_config": config(&format!("{server}/{path}"))}))
            .await;
        let status = app
            .wait_until_finished(launched["run_id"].as_str().unwrap())
            .await;
        assert_eq!(status["failed"], 1, "{status}");
        let error = status["rollouts"][0]["error"].as_str().unwrap();
        assert!(
            !error.contains("INTERNAL") && !error.contains("html>"),
            "{error}"
        );
    }
    assert!(
        seen.lock().iter().all(|r| !r.path.starts_with("/internal")),
        "the internal page was never requested: {:?}",
        seen.lock()
    );
    app.stop().await;
}
