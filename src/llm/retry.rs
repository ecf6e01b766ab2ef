//! Sending a provider request: one timeout per attempt, retries (`backon`, as the
//! KurrentDB backend's) with exponential backoff and jitter on 408, 429, 5xx, timeouts
//! and connection errors (honouring `Retry-After` in seconds), at most [`RetryPolicy::max_retries`] times, after which
//! the call fails with the provider's own message. Every provider goes through here so
//! they all fail the same way.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use serde_json::Value;

use super::ModelError;

/// How hard to try one model call.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The first backoff; each retry doubles it, plus up to as much again of jitter.
    pub base_backoff: Duration,
    /// The limit on one attempt, from sending to the last byte of the answer.
    pub timeout: Duration,
}

pub const MAX_RETRIES: u32 = 3;

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: MAX_RETRIES,
            base_backoff: Duration::from_millis(500),
            timeout: Duration::from_secs(120),
        }
    }
}

/// Longest wait a `Retry-After` may impose; a provider asking for more is answered
/// by failing after the bounded retries rather than hanging a rollout.
const MAX_RETRY_AFTER: f64 = 60.0;

/// Sends the request that `build` makes (called again for each attempt, so a signed
/// request carries a fresh date) and returns the body of the first successful answer.
pub async fn send(
    policy: &RetryPolicy,
    build: impl Fn() -> Result<reqwest::RequestBuilder, ModelError>,
) -> Result<bytes::Bytes, ModelError> {
    let attempt = || async {
        let request = build().map_err(Failed::fatal)?.timeout(policy.timeout);
        let response = request.send().await.map_err(Failed::transport)?;
        if response.status().is_redirection() {
            // Never followed (see `net::outbound_client`): only where it points.
            let message = format!(
                "a redirect to {}, not followed",
                crate::net::redirect_host(&response)
            );
            let error = ModelError::from_status(response.status().as_u16(), message);
            return Err(Failed::fatal(error));
        }
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let content_type = content_type(&response);
        let bytes = response.bytes().await.map_err(|e| Failed {
            retry_after,
            ..Failed::transport(e)
        })?;
        if status.is_success() {
            return Ok(bytes);
        }
        let message = provider_message(&bytes, &content_type);
        Err(Failed {
            error: ModelError::from_status(status.as_u16(), message),
            retryable: retryable_status(status.as_u16()),
            retry_after,
        })
    };
    attempt
        .retry(backoff(policy))
        .when(|failed| failed.retryable)
        // A provider's `Retry-After` replaces the planned wait, never a last attempt.
        .adjust(|failed, planned| planned.map(|wait| failed.retry_after.unwrap_or(wait)))
        .notify(|failed, wait| {
            // Its kind only: the provider's message may quote the key (callers redact it).
            let error_type = failed.error.error_type();
            tracing::debug!(?wait, error_type, "model call retried");
        })
        .await
        .map_err(|failed| failed.error)
}

/// An attempt that failed: whether another may follow, and when the provider said.
struct Failed {
    error: ModelError,
    retryable: bool,
    retry_after: Option<Duration>,
}

impl Failed {
    fn fatal(error: ModelError) -> Failed {
        Failed {
            error,
            retryable: false,
            retry_after: None,
        }
    }

    fn transport(e: reqwest::Error) -> Failed {
        Failed {
            error: transport_error(e),
            retryable: true,
            retry_after: None,
        }
    }
}

/// The waits between attempts: `base · 2^attempt` (capped at 64 times the base), plus
/// up to as much again of random jitter so that many rollouts throttled together do
/// not retry together; `max_retries` of them.
fn backoff(policy: &RetryPolicy) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(policy.base_backoff)
        .with_factor(2.0)
        .with_max_delay(policy.base_backoff.saturating_mul(64))
        .with_max_times(policy.max_retries as usize)
        .with_jitter()
}

fn retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

fn transport_error(e: reqwest::Error) -> ModelError {
    if e.is_timeout() {
        ModelError::Timeout(e.without_url().to_string())
    } else {
        ModelError::Connection(e.without_url().to_string())
    }
}

fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .chars()
        .take(100)
        .collect()
}

/// The provider's own message from its documented error body: OpenAI and Azure
/// `{"error":{"message"}}`, Anthropic `{"type":"error","error":{"type","message"}}`,
/// Vertex `{"error":{"code","message","status"}}`, Bedrock `{"message"}` (or
/// `{"Message"}`). Any other body is described by its content type and size, never
/// shown: a `base_url` pointed at an internal page must not read it out.
pub fn provider_message(body: &[u8], content_type: &str) -> String {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    let found = parsed.as_ref().and_then(|v| {
        let text = |p: &str| v.pointer(p).and_then(Value::as_str);
        let message = text("/error/message")
            .or_else(|| text("/message"))
            .or_else(|| text("/Message"))?;
        // Anthropic's and Vertex's error kind says more than the status code.
        let kind = text("/error/type").or_else(|| text("/error/status"));
        Some(match kind {
            Some(kind) => format!("{kind}: {message}"),
            None => message.to_string(),
        })
    });
    found.unwrap_or_else(|| {
        if body.iter().all(u8::is_ascii_whitespace) {
            "(empty body)".to_string()
        } else {
            format!(
                "(no error message: a {}-byte body of content type {content_type})",
                body.len()
            )
        }
    })
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let seconds = value.trim().parse::<f64>().ok()?;
    seconds
        .is_finite()
        .then(|| Duration::from_secs_f64(seconds.clamp(0.0, MAX_RETRY_AFTER)))
}

/// Parses a JSON answer body, or says why it is malformed without quoting it (the
/// body may be an internal page): a missing field by name, else where the JSON
/// departs from the expected shape, else only the size of a body that is not JSON.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ModelError> {
    serde_json::from_slice(body).map_err(|e| {
        let size = body.len();
        let message = e.to_string();
        ModelError::Malformed(if !e.is_data() {
            format!("a {size}-byte body that is not JSON")
        } else if message.starts_with("missing field") {
            format!("{message} (in a {size}-byte JSON body)")
        } else {
            format!(
                "a {size}-byte JSON body not in the expected shape at line {} column {}",
                e.line(),
                e.column()
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_providers_error_body_gives_its_message() {
        assert_eq!(
            provider_message(
                br#"{"error":{"message":"bad key","type":"invalid_request_error"}}"#,
                "application/json"
            ),
            "invalid_request_error: bad key"
        );
        assert_eq!(
            provider_message(
                br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
                "application/json"
            ),
            "overloaded_error: Overloaded"
        );
        assert_eq!(
            provider_message(
                br#"{"message":"Too many requests, please wait."}"#,
                "application/json"
            ),
            "Too many requests, please wait."
        );
        assert_eq!(
            provider_message(
                br#"{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED"}}"#,
                "application/json"
            ),
            "RESOURCE_EXHAUSTED: Quota exceeded"
        );
        assert_eq!(
            provider_message(b"<html>internal secrets</html>", "text/html"),
            "(no error message: a 29-byte body of content type text/html)"
        );
        assert_eq!(provider_message(b"", "none"), "(empty body)");
    }

    #[test]
    fn a_malformed_answer_is_described_never_quoted() {
        #[derive(Debug, serde::Deserialize)]
        struct Answer {
            #[allow(dead_code)]
            choices: Vec<u8>,
        }
        let said = |body: &[u8]| parse::<Answer>(body).unwrap_err().to_string();
        assert_eq!(
            said(b"<html>internal</html>"),
            "the provider's answer could not be read: a 21-byte body that is not JSON"
        );
        assert!(said(b"{}").contains("missing field `choices`"));
        let shaped = said(br#"{"choices": "internal"}"#);
        assert!(
            !shaped.contains("internal") && shaped.contains("column"),
            "{shaped}"
        );
    }

    #[test]
    fn backoff_doubles_with_at_most_as_much_again_of_jitter_max_retries_times() {
        use backon::BackoffBuilder;
        let policy = RetryPolicy {
            max_retries: 8,
            base_backoff: Duration::from_millis(100),
            timeout: Duration::from_secs(1),
        };
        let waits: Vec<Duration> = backoff(&policy).build().collect();
        assert_eq!(waits.len(), 8);
        for (attempt, wait) in waits.iter().enumerate() {
            let exp = policy.base_backoff * (1 << attempt.min(6));
            assert!(*wait >= exp && *wait <= exp * 2, "{attempt}: {wait:?}");
        }
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_bounded() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after", "9999".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(60)));
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }
}
