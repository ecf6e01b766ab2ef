//! A client of the tool-server protocol, for rollouts whose `tool_server_url` points
//! at an environment elsewhere (ours or anyone's that speaks the protocol):
//! `GET {url}/{server}/tools`, `POST {url}/{server}/step`, `GET {url}/{server}/snapshot`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{Observation, ToolSpec};

pub struct RemoteEnvironment {
    http: reqwest::Client,
    base_url: String,
    tools: Vec<(String, ToolSpec)>,
    bearer: Option<String>,
    timeout: Duration,
}

#[derive(Deserialize)]
struct WireTools {
    tools: Vec<WireTool>,
}

#[derive(Deserialize)]
struct WireTool {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default = "empty_schema")]
    input_schema: Value,
    #[serde(default)]
    mutates_state: bool,
}

fn empty_schema() -> Value {
    json!({"type": "object", "properties": {}})
}

#[derive(Deserialize)]
struct WireStep {
    observation: Value,
    #[serde(default)]
    reward: f64,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    is_error: bool,
}

impl RemoteEnvironment {
    /// Lists the tools of every server of the task at `base_url`. `bearer` is sent
    /// as `Authorization` (only ever this server's own token, to itself); each call
    /// may take at most `timeout`.
    pub async fn connect(
        http: reqwest::Client,
        base_url: &str,
        servers: &[String],
        bearer: Option<String>,
        timeout: Duration,
    ) -> Result<RemoteEnvironment, String> {
        let mut env = RemoteEnvironment {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            tools: Vec::new(),
            bearer,
            timeout,
        };
        for server in servers {
            let url = format!("{}/{server}/tools", env.base_url);
            let response =
                env.request(env.http.get(&url)).send().await.map_err(|e| {
                    format!("tool server {url} is unreachable: {}", e.without_url())
                })?;
            if !response.status().is_success() {
                return Err(format!("tool server {url} answered {}", response.status()));
            }
            let listed: WireTools = response
                .json()
                .await
                .map_err(|e| format!("tool server {url} sent an unreadable tool list: {e}"))?;
            env.tools.extend(listed.tools.into_iter().map(|t| {
                (
                    server.clone(),
                    ToolSpec {
                        name: t.name,
                        description: t.description,
                        input_schema: t.input_schema,
                        mutates_state: t.mutates_state,
                    },
                )
            }));
        }
        Ok(env)
    }

    fn request(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let builder = builder.timeout(self.timeout);
        match &self.bearer {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    pub fn all_tools(&self) -> Vec<ToolSpec> {
        self.tools.iter().map(|(_, t)| t.clone()).collect()
    }

    pub fn server_of(&self, tool_name: &str) -> Option<&str> {
        self.tools
            .iter()
            .find(|(_, t)| t.name == tool_name)
            .map(|(s, _)| s.as_str())
    }

    /// One step; a failure to reach the server is an observation the agent sees.
    pub async fn step(&self, server: &str, tool_name: &str, parameters: &Value) -> Observation {
        let url = format!("{}/{server}/step", self.base_url);
        let body = json!({"action": {"tool_name": tool_name, "parameters": parameters}});
        let response = match self.request(self.http.post(&url)).json(&body).send().await {
            Ok(response) => response,
            Err(e) => {
                return Observation::error(format!("tool server unreachable: {}", e.without_url()))
            }
        };
        let status = response.status();
        match response.json::<WireStep>().await {
            Ok(step) => Observation {
                observation: match step.observation {
                    Value::String(s) => s,
                    other => other.to_string(),
                },
                is_error: step.is_error,
                reward: step.reward,
                done: step.done,
            },
            Err(_) => Observation::error(format!(
                "tool server answered {status} without a step result"
            )),
        }
    }

    /// The final state of every server, from their snapshots: what checks read.
    pub async fn state(&self) -> Result<Value, String> {
        let mut servers: Vec<&str> = self.tools.iter().map(|(s, _)| s.as_str()).collect();
        servers.dedup();
        let mut state = BTreeMap::new();
        for server in servers {
            let url = format!("{}/{server}/snapshot", self.base_url);
            let snapshot: Value = self
                .request(self.http.get(&url))
                .send()
                .await
                .map_err(|e| format!("snapshot of {url} failed: {}", e.without_url()))?
                .json()
                .await
                .map_err(|e| format!("snapshot of {url} is unreadable: {e}"))?;
            state.insert(
                server.to_string(),
                snapshot.get("data").cloned().unwrap_or(Value::Null),
            );
        }
        Ok(Value::Object(state.into_iter().collect::<Map<_, _>>()))
    }
}
