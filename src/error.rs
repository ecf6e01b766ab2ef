//! The one error-code table of the HTTP API. Every module's errors are turned into
//! an [`ApiError`] whose [`ErrorCode`] fixes both the HTTP status and the `code`
//! string of the body; one `ResponseError` renders `{"detail", "code"}`, with
//! `detail` a list of `{loc, msg, type}` for request validation (422), as clients of
//! the original service expect.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    ValidationFailed,
    Unauthorized,
    MalformedBody,
    PayloadTooLarge,
    PathTraversal,
    RunNotFound,
    RolloutNotFound,
    ScenarioNotFound,
    TaskNotFound,
    SeedFileNotFound,
    VerifiersNotFound,
    EnvironmentNotFound,
    RouteNotFound,
    MethodNotAllowed,
    RunNameTaken,
    RunNotPaused,
    RunBusy,
    TooManyEnvironments,
    TooManyPendingRollouts,
    RequestTimeout,
    TooManyConnections,
    StoreUnavailable,
    Internal,
}

impl ErrorCode {
    /// The table: code → HTTP status → the `code` string of the body.
    pub fn status_and_name(self) -> (StatusCode, &'static str) {
        use ErrorCode::*;
        match self {
            ValidationFailed => (StatusCode::UNPROCESSABLE_ENTITY, "validation_error"),
            Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            MalformedBody => (StatusCode::BAD_REQUEST, "malformed_body"),
            PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            PathTraversal => (StatusCode::BAD_REQUEST, "invalid_path"),
            RunNotFound => (StatusCode::NOT_FOUND, "run_not_found"),
            RolloutNotFound => (StatusCode::NOT_FOUND, "rollout_not_found"),
            ScenarioNotFound => (StatusCode::NOT_FOUND, "scenario_not_found"),
            TaskNotFound => (StatusCode::NOT_FOUND, "task_not_found"),
            SeedFileNotFound => (StatusCode::NOT_FOUND, "seed_file_not_found"),
            VerifiersNotFound => (StatusCode::NOT_FOUND, "verifiers_not_found"),
            EnvironmentNotFound => (StatusCode::NOT_FOUND, "environment_not_found"),
            RouteNotFound => (StatusCode::NOT_FOUND, "not_found"),
            MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            RunNameTaken => (StatusCode::CONFLICT, "run_name_taken"),
            RunNotPaused => (StatusCode::CONFLICT, "run_not_paused"),
            RunBusy => (StatusCode::CONFLICT, "run_busy"),
            TooManyEnvironments => (StatusCode::TOO_MANY_REQUESTS, "too_many_environments"),
            TooManyPendingRollouts => (StatusCode::TOO_MANY_REQUESTS, "too_many_pending_rollouts"),
            RequestTimeout => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            TooManyConnections => (StatusCode::SERVICE_UNAVAILABLE, "too_many_connections"),
            StoreUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }
}

/// One invalid field of a request, FastAPI-style.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldError {
    pub loc: Vec<Value>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{code:?}: {detail}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub detail: Value,
}

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> ApiError {
        ApiError {
            code,
            detail: Value::String(detail.into()),
        }
    }

    /// A 422 naming one field (`loc`, e.g. `["body", "at_step"]`) whose value is wrong.
    pub fn invalid_field(loc: &[&str], msg: impl Into<String>) -> ApiError {
        ApiError::validation(vec![FieldError {
            loc: loc.iter().map(|part| Value::from(*part)).collect(),
            msg: msg.into(),
            kind: "value_error".to_string(),
        }])
    }

    pub fn validation(errors: Vec<FieldError>) -> ApiError {
        ApiError {
            code: ErrorCode::ValidationFailed,
            detail: serde_json::to_value(errors).unwrap_or(Value::Null),
        }
    }
}

/// An error answer: `detail` is a message, or for 422 a list of
/// `{"loc", "msg", "type"}`; `code` names the error (the table above).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub detail: Value,
    pub code: &'static str,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status_and_name().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, name) = self.code.status_and_name();
        let mut response = HttpResponse::build(status);
        if self.code == ErrorCode::TooManyPendingRollouts {
            // Queued rollouts start as running ones finish: worth asking again soon.
            response.insert_header((actix_web::http::header::RETRY_AFTER, "30"));
        }
        response.json(ErrorBody {
            detail: self.detail.clone(),
            code: name,
        })
    }
}
