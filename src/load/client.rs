//! The load client's HTTP helpers and a reader of the service's Prometheus text.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use serde_json::Value;

#[derive(Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    pub base: String,
    token: Option<String>,
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Result<Client, String> {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .timeout(Duration::from_secs(600))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Client {
            http,
            base: base.to_string(),
            token,
        })
    }

    /// A lean connection of its own for timed requests ([`Connection`]).
    pub async fn connection(&self) -> Result<Connection, String> {
        Connection::open(&self.base, self.token.as_deref()).await
    }

    fn with_token(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// `GET path`, the body as JSON; a non-2xx status is an error.
    pub async fn get(&self, path: &str) -> Result<Value, String> {
        let response = self
            .with_token(self.http.get(format!("{}{path}", self.base)))
            .send()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        json_of(response, "GET", path).await
    }

    pub async fn text(&self, path: &str) -> Result<String, String> {
        self.with_token(self.http.get(format!("{}{path}", self.base)))
            .send()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?
            .text()
            .await
            .map_err(|e| e.to_string())
    }

    /// `GET path` with its body left to stream (a 2xx status, else an error).
    pub async fn stream(&self, path: &str) -> Result<reqwest::Response, String> {
        self.with_token(self.http.get(format!("{}{path}", self.base)))
            .timeout(Duration::from_secs(24 * 3600))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("GET {path}: {e}"))
    }

    /// `POST` to a path of the service or to a full URL.
    pub async fn post(&self, path_or_url: &str, body: &Value) -> Result<Value, String> {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_string()
        } else {
            format!("{}{path_or_url}", self.base)
        };
        let response = self
            .with_token(self.http.post(&url).json(body))
            .send()
            .await
            .map_err(|e| format!("POST {path_or_url}: {e}"))?;
        json_of(response, "POST", path_or_url).await
    }

    pub async fn delete(&self, url: &str) -> Result<(), String> {
        self.with_token(self.http.delete(url))
            .send()
            .await
            .map_err(|e| format!("DELETE {url}: {e}"))?;
        Ok(())
    }

    /// The ids of a scenario's tasks, in catalog order.
    pub async fn task_ids(&self, scenario: &str) -> Result<Vec<String>, String> {
        let body = self.get(&format!("/scenarios/{scenario}/tasks")).await?;
        let list = body
            .as_array()
            .or_else(|| body.get("tasks").and_then(Value::as_array))
            .ok_or("the task list has an unexpected shape")?;
        Ok(list
            .iter()
            .filter_map(|t| t.get("task_id").and_then(Value::as_str))
            .map(str::to_string)
            .collect())
    }

    /// `chosen`, or every task of the scenario when none is; never an empty list.
    pub async fn tasks(&self, scenario: &str, chosen: &[String]) -> Result<Vec<String>, String> {
        let tasks = if chosen.is_empty() {
            self.task_ids(scenario).await?
        } else {
            chosen.to_vec()
        };
        if tasks.is_empty() {
            return Err(format!("scenario {scenario} has no tasks"));
        }
        Ok(tasks)
    }
}

/// One keep-alive HTTP/1.1 connection to the service, for the timed requests: without
/// a client's URL parsing, pool and redirects, the load client spends its core on
/// sending, not on itself (through `reqwest` it took more CPU than the service).
pub(crate) struct Connection {
    sender: http1::SendRequest<Full<Bytes>>,
    host: HeaderValue,
    authorization: Option<HeaderValue>,
}

impl Connection {
    /// Connects to `base` (`http://host:port`).
    pub async fn open(base: &str, token: Option<&str>) -> Result<Connection, String> {
        let authority = base
            .strip_prefix("http://")
            .ok_or_else(|| format!("{base}: timed requests need an http:// address"))?
            .trim_end_matches('/');
        let stream = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(|e| format!("{authority}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("{authority}: {e}"))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "load connection closed");
            }
        });
        let header = |value: String| HeaderValue::from_str(&value).map_err(|e| e.to_string());
        Ok(Connection {
            sender,
            host: header(authority.to_string())?,
            authorization: token.map(|t| header(format!("Bearer {t}"))).transpose()?,
        })
    }

    /// Sends one request and reads the whole answer; a non-2xx status is an error.
    pub async fn send(&mut self, method: Method, path: &Uri, body: Bytes) -> Result<Bytes, String> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method.clone();
        *request.uri_mut() = path.clone();
        let headers = request.headers_mut();
        headers.insert(header::HOST, self.host.clone());
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(authorization) = &self.authorization {
            headers.insert(header::AUTHORIZATION, authorization.clone());
        }
        self.sender
            .ready()
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "{method} {path}: {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        Ok(body)
    }
}

async fn json_of(response: reqwest::Response, method: &str, path: &str) -> Result<Value, String> {
    let status = response.status();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!(
            "{method} {path}: {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{method} {path}: {e}"))
}

/// Samples of the service's `/metrics`: `name{labels}` → value.
pub(crate) struct Samples(HashMap<String, f64>);

impl Samples {
    pub fn parse(text: &str) -> Samples {
        Samples(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let (key, value) = l.rsplit_once(' ')?;
                    Some((key.to_string(), value.parse().ok()?))
                })
                .collect(),
        )
    }

    /// The sum of a metric over every label set matching `filter`.
    pub fn sum(&self, name: &str, filter: &str) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| metric_name(k) == name && k.contains(filter))
            .map(|(_, v)| v)
            .sum()
    }

    /// Cumulative bucket counts `(le, count)` of a histogram, summed over the label
    /// sets matching `filter`, sorted by bound.
    fn buckets(&self, name: &str, filter: &str) -> Vec<(f64, f64)> {
        let bucket = format!("{name}_bucket");
        let mut by_le: Vec<(f64, f64)> = Vec::new();
        for (key, value) in &self.0 {
            if metric_name(key) != bucket || !key.contains(filter) {
                continue;
            }
            let Some(le) = key
                .split("le=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .and_then(|s| s.parse::<f64>().ok())
            else {
                continue;
            };
            match by_le.iter_mut().find(|(l, _)| *l == le) {
                Some((_, c)) => *c += value,
                None => by_le.push((le, *value)),
            }
        }
        by_le.sort_by(|a, b| a.0.total_cmp(&b.0));
        by_le
    }
}

fn metric_name(key: &str) -> &str {
    key.split('{').next().unwrap_or(key)
}

/// The quantiles `qs` of what a histogram recorded between two samples, interpolated
/// linearly within a bucket (so they are as fine as the buckets), with the count.
pub(crate) fn histogram_quantiles(
    before: &Samples,
    after: &Samples,
    name: &str,
    filter: &str,
    qs: &[f64],
) -> (f64, Vec<f64>) {
    let old = before.buckets(name, filter);
    let delta: Vec<(f64, f64)> = after
        .buckets(name, filter)
        .into_iter()
        .map(|(le, count)| {
            let prior = old.iter().find(|(l, _)| *l == le).map_or(0.0, |(_, c)| *c);
            (le, count - prior)
        })
        .collect();
    let total = delta.last().map_or(0.0, |(_, c)| *c);
    let values = qs
        .iter()
        .map(|q| {
            if total <= 0.0 {
                return f64::NAN;
            }
            let target = q * total;
            let (mut lower, mut below) = (0.0, 0.0);
            for &(le, cum) in &delta {
                if cum >= target {
                    if le.is_infinite() {
                        return lower;
                    }
                    let within = cum - below;
                    let fraction = if within > 0.0 {
                        (target - below) / within
                    } else {
                        1.0
                    };
                    return lower + (le - lower) * fraction;
                }
                lower = le;
                below = cum;
            }
            lower
        })
        .collect();
    (total, values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let before =
            Samples::parse("h_bucket{k=\"a\",le=\"1\"} 0\nh_bucket{k=\"a\",le=\"+Inf\"} 0\n");
        let after = Samples::parse(
            "h_bucket{k=\"a\",le=\"1\"} 50\nh_bucket{k=\"a\",le=\"2\"} 100\nh_bucket{k=\"a\",le=\"+Inf\"} 100\n",
        );
        let (count, q) = histogram_quantiles(&before, &after, "h", "", &[0.25, 0.75]);
        assert_eq!(count, 100.0);
        assert!((q[0] - 0.5).abs() < 1e-9);
        assert!((q[1] - 1.5).abs() < 1e-9);
    }
}
