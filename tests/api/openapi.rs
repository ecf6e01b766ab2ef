//! The OpenAPI document: a valid OpenAPI 3.1 document, and complete — every route the
//! server registers is in it and everything in it is served.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

/// Every `(method, path)` the API registers, read from the route tables in
/// `src/api/*.rs` (`web::resource("…")` followed by its `.route(web::get())`s).
fn registered_routes() -> BTreeSet<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let mut routes = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        // `api/dashboard` serves the page's assets at the root, outside the API.
        if path.is_dir() {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        let mut pieces = text.split("web::resource(\"").skip(1);
        for piece in pieces.by_ref() {
            let (path, rest) = piece.split_once('"').unwrap();
            // Only this resource's own `.route(...)` calls, up to the next service.
            let own = rest.split(".service(").next().unwrap();
            let own = own.split("\n}").next().unwrap();
            // `{filename:.*}` is actix's pattern for a path parameter named `filename`.
            let path = path.replace(":.*}", "}");
            for method in ["get", "post", "put", "patch", "delete"] {
                if own.contains(&format!("web::{method}()")) {
                    routes.insert((method.to_string(), path.clone()));
                }
            }
        }
    }
    routes
}

fn documented_routes(doc: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            routes.insert((method.clone(), path.clone()));
        }
    }
    routes
}

/// Every `$ref` in `value` resolves within `doc`.
fn check_refs(doc: &Value, value: &Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                let pointer = target.strip_prefix('#').expect("a local reference");
                assert!(doc.pointer(pointer).is_some(), "{target} does not resolve");
            }
            map.values().for_each(|v| check_refs(doc, v));
        }
        Value::Array(items) => items.iter().for_each(|v| check_refs(doc, v)),
        _ => {}
    }
}

#[actix_web::test]
async fn the_openapi_document_is_valid_and_complete() {
    let app = spawn_app().await;
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();

    // A typed OpenAPI 3.1 reader accepts it.
    let spec = oas3::from_json(&text).expect("an OpenAPI 3.1 document");
    assert_eq!(spec.validate_version().unwrap().major, 3);
    assert!(spec.openapi.starts_with("3.1"));
    assert_eq!(spec.info.version, env!("CARGO_PKG_VERSION"));

    let doc: Value = serde_json::from_str(&text).unwrap();
    check_refs(&doc, &doc);
    let mut operation_ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let template: BTreeSet<&str> = path
            .split('{')
            .skip(1)
            .map(|p| p.split('}').next().unwrap())
            .collect();
        for (method, op) in item.as_object().unwrap() {
            assert!(
                operation_ids.insert(op["operationId"].as_str().unwrap().to_string()),
                "{method} {path}: operationId is not unique"
            );
            assert!(
                !op["responses"].as_object().unwrap().is_empty(),
                "{method} {path} documents no response"
            );
            let declared: BTreeSet<&str> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .map(|p| p["name"].as_str().unwrap())
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(declared, template, "{method} {path}: path parameters");
        }
    }

    let registered = registered_routes();
    assert!(
        registered.len() > 25,
        "the route tables were read: {registered:?}"
    );
    let documented = documented_routes(&doc);
    assert_eq!(
        registered.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "served but not documented"
    );
    assert_eq!(
        documented.difference(&registered).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "documented but not served"
    );

    // Every documented GET path reaches a handler (a 404 for a made-up id is the
    // handler's own, never "no such route"), at the root and under /v1.
    for (method, path) in &documented {
        if method != "get" || path.ends_with("/events") {
            continue;
        }
        let concrete = path
            .split('/')
            .map(|s| if s.starts_with('{') { "x" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        for prefix in ["", "/v1"] {
            let response = app.get(&format!("{prefix}{concrete}")).await;
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert_ne!(body["code"], "not_found", "{prefix}{concrete}");
        }
    }

    let page = app.get("/docs").await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = page.text().await.unwrap();
    for (_, path) in &documented {
        assert!(html.contains(&format!("<code>{path}</code>")), "{path}");
    }
    assert!(html.contains("id=\"schema-RunStatus\""));
    assert!(!html.contains("<script src=\"http"), "no outside script");
    app.stop().await;
}
