//! Access control. With API tokens configured, every endpoint but `/healthz`, the
//! dashboard's static files (code, no data) and `/metrics` when `open_metrics` is set needs `Authorization: Bearer <token>` or
//! `API-Key: <token>`, compared in constant time; anything else is a 401.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, Error, ResponseError};

use crate::error::{ApiError, ErrorCode};

/// The configured tokens (empty: no access control).
#[derive(Clone, Default)]
pub struct AccessControl {
    pub tokens: Vec<String>,
    pub open_metrics: bool,
}

impl AccessControl {
    fn exempt(&self, path: &str) -> bool {
        if super::dashboard::is_asset(path) {
            return true;
        }
        let path = path.strip_prefix("/v1").unwrap_or(path);
        path == "/healthz" || (self.open_metrics && path == "/metrics")
    }

    fn accepts(&self, token: &str) -> bool {
        // Every token is compared, so the time taken does not tell which one matched.
        self.tokens.iter().fold(false, |found, t| {
            constant_time_eq::constant_time_eq(t.as_bytes(), token.as_bytes()) | found
        })
    }
}

fn presented(req: &ServiceRequest) -> Option<&str> {
    let headers = req.headers();
    if let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        let value = value.trim();
        if value.len() > 7 && value[..7].eq_ignore_ascii_case("bearer ") {
            return Some(value[7..].trim());
        }
    }
    headers
        .get("api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

pub async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let allowed = match req.app_data::<web::Data<AccessControl>>() {
        Some(access) if !access.tokens.is_empty() && !access.exempt(req.path()) => {
            presented(&req).is_some_and(|token| access.accepts(token))
        }
        _ => true,
    };
    if allowed {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let mut response = ApiError::new(
        ErrorCode::Unauthorized,
        "Missing or invalid API token: send `Authorization: Bearer <token>` or `API-Key: <token>`",
    )
    .error_response();
    response.headers_mut().insert(
        actix_web::http::header::WWW_AUTHENTICATE,
        actix_web::http::header::HeaderValue::from_static("Bearer"),
    );
    Ok(req.into_response(response).map_into_right_body())
}
