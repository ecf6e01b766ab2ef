//! `POST /test-model-config`: one minimal call with a ModelConfig, so that a wrong key,
//! endpoint or model name shows before a run is launched rather than as failed
//! rollouts. The config is checked exactly as `model_config` of a launch (422 naming
//! the field); the call goes through the same HTTP client, provider client, provider
//! limit and timeout as a rollout's, but is tried once.

use std::time::Instant;

use actix_web::{web, HttpResponse};
use serde::Serialize;
use serde_json::Value;

use super::model_config::{self, ModelConfigBody};
use super::AppState;
use crate::domain::chat::{Message, ToolSet};
use crate::domain::secret::ApiKey;
use crate::error::{ApiError, ErrorBody};
use crate::llm::{self, ModelError, ModelRequest, RetryPolicy};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/test-model-config").route(web::post().to(test_model_config)));
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Outcome {
    success: bool,
    message: String,
    /// One of [`ModelError::error_type`]'s; null on success.
    error_type: Option<&'static str>,
}

#[utoipa::path(post, path = "/test-model-config", tag = "models", summary = "One minimal call with a model config", request_body = ModelConfigBody, responses((status = 200, body = Outcome), (status = 422, description = "Invalid input, each bad field named", body = ErrorBody)))]
async fn test_model_config(
    state: web::Data<AppState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let (settings, key) = model_config::parse_model_config(&body)?;
    let name = format!("`{}` ({})", settings.model, settings.provider);
    if settings.provider == "builtin" {
        return Ok(HttpResponse::Ok().json(Outcome {
            success: true,
            message: format!("{name} is served by rl-gym itself; no call needed"),
            error_type: None,
        }));
    }
    // A provider may quote the key it refused (or the server's): the answer never does.
    let redactor = state.gym.redactor().with(key.as_ref().map(ApiKey::expose));
    let started = Instant::now();
    let outcome = match call(&state, &settings, key).await {
        Ok(()) => Outcome {
            success: true,
            message: format!("{name} answered in {} ms", started.elapsed().as_millis()),
            error_type: None,
        },
        Err(error) => Outcome {
            success: false,
            message: redactor.redact(&error.to_string()),
            error_type: Some(error.error_type()),
        },
    };
    tracing::info!(
        provider = %settings.provider,
        model = %settings.model,
        error_type = outcome.error_type.unwrap_or("none"),
        "model config tested"
    );
    Ok(HttpResponse::Ok().json(outcome))
}

/// One attempt (a retried 429 or outage would only hide the answer) with one short
/// user message and no tools, under the server's model timeout, which also bounds a
/// wait for the provider's concurrency limit.
async fn call(
    state: &AppState,
    settings: &crate::domain::events::ModelSettings,
    key: Option<ApiKey>,
) -> Result<(), ModelError> {
    let agents = &state.agents;
    let once = RetryPolicy {
        max_retries: 0,
        timeout: state.model_timeout,
        ..RetryPolicy::default()
    };
    let client = llm::client_with_retry(&agents.http, settings, key, &agents.limits, once)?;
    let messages = [Message::user("Reply with the word OK.")];
    let request = ModelRequest {
        messages: &messages,
        tools: ToolSet::none(),
        settings,
    };
    match tokio::time::timeout(state.model_timeout, client.complete(request)).await {
        Ok(reply) => reply.map(|_| ()),
        Err(_) => Err(ModelError::Timeout(format!(
            "no answer within {}s",
            state.model_timeout.as_secs()
        ))),
    }
}
