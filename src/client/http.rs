//! The one HTTP client of the command line: the server's URL and token, and the
//! mapping of every failure to a [`ClientError`].

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;

use super::{ClientError, ServerArgs};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// For answers that are not streams; a stream (events, export) has no overall limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    pub fn new(server: &ServerArgs) -> Result<Client, ClientError> {
        let base = server.server.trim_end_matches('/').to_string();
        match reqwest::Url::parse(&base) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            _ => {
                return Err(ClientError::Usage(format!(
                    "--server / RL_GYM_URL must be an http(s) URL, not {base:?}"
                )))
            }
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("rl-gym-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Usage(format!("cannot set up HTTP: {e}")))?;
        let token = server
            .token
            .as_deref()
            .and_then(|t| t.split(',').map(str::trim).find(|t| !t.is_empty()))
            .map(String::from);
        Ok(Client { http, base, token })
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends a request; a 2xx answer is returned, anything else is an error.
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, ClientError> {
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let (code, detail) = match serde_json::from_str::<Value>(&text) {
            Ok(body) if body.get("detail").is_some() => (
                body["code"].as_str().map(String::from),
                body["detail"].clone(),
            ),
            _ => (None, Value::String(text.trim().chars().take(500).collect())),
        };
        Err(ClientError::Refused {
            status,
            code,
            detail,
        })
    }

    /// A request answered with JSON, within [`REQUEST_TIMEOUT`].
    pub async fn json(&self, request: RequestBuilder) -> Result<Value, ClientError> {
        let response = self.send(request.timeout(REQUEST_TIMEOUT)).await?;
        let url = response.url().to_string();
        let bytes = response.bytes().await.map_err(|e| self.unreachable(&e))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::BadAnswer {
            url,
            reason: format!("not JSON ({e})"),
        })
    }

    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.json(self.request(Method::GET, path)).await
    }

    /// The failure to exchange anything with the server, with its innermost cause
    /// (e.g. "Connection refused (os error 111)").
    pub fn unreachable(&self, error: &reqwest::Error) -> ClientError {
        let mut cause: &dyn std::error::Error = error;
        while let Some(source) = cause.source() {
            cause = source;
        }
        let reason = if error.is_timeout() {
            "timed out".to_string()
        } else {
            cause.to_string()
        };
        ClientError::Unreachable {
            url: self.base.clone(),
            reason,
        }
    }
}
