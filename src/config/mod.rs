//! Settings, layered: the defaults in `config/default.toml` (compiled in, so the file
//! documents every key), then a `--config` file, then `RL_GYM_*` environment
//! variables and flags (which clap merges, flags first). Unknown keys are errors.

pub mod secrets;

use crate::domain::budget::{Price, PriceTable};
use crate::domain::events::ModelSettings;
use crate::domain::secret::ApiKey;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

const DEFAULTS: &str = include_str!("../../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    /// A KurrentDB URL, or empty for the embedded log under `data_dir`.
    pub store: String,
    /// This node's name in run leases (several nodes on one store).
    pub node_id: String,
    pub lease_secs: u64,
    pub scenarios_dir: PathBuf,
    pub max_concurrent_rollouts: usize,
    pub max_open_environments: usize,
    /// Hosted environments unused this long are closed.
    pub environment_idle_secs: u64,
    /// Largest `parameters` of one tool call to a hosted environment, in bytes (JSON).
    pub max_tool_argument_bytes: usize,
    /// Bytes of state-changing arguments one hosted environment accepts in all.
    pub max_environment_state_bytes: usize,
    /// Rollouts launched and not started yet, across all runs; more get 429.
    pub max_pending_rollouts: usize,
    /// `format=preference` export: pairs per task unless the query asks otherwise.
    pub max_pairs_per_task: usize,
    /// Seconds a client has to send a request's body once its headers are in.
    pub request_timeout_secs: u64,
    /// Open client connections at once; requests on more get 503.
    pub max_connections: usize,
    /// The base URL clients reach this server at (environment URLs are built on it);
    /// empty: the bound address. Env: RL_GYM_PUBLIC_URL.
    pub public_url: String,
    pub shutdown_timeout_secs: u64,
    pub max_body_bytes: usize,
    pub model_timeout_secs: u64,
    pub tool_timeout_secs: u64,
    pub provider_concurrency: std::collections::HashMap<String, usize>,
    pub api_tokens: Vec<String>,
    pub open_metrics: bool,
    pub allow_unauthenticated_public_bind: bool,
    pub log_format: LogFormat,
    pub log_level: String,
    pub judge: JudgeSettings,
    pub prices: Vec<PriceEntry>,
}

/// One row of the price table (`[[prices]]`): what a provider charges for a model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceEntry {
    pub provider: String,
    pub model: String,
    pub prompt_usd_per_mtok: f64,
    pub completion_usd_per_mtok: f64,
}

/// Every price finite and not negative, one row per provider and model.
fn check_prices(entries: &[PriceEntry]) -> Result<(), ConfigError> {
    let mut seen = std::collections::HashSet::new();
    for entry in entries {
        let invalid = |message: String| ConfigError::Invalid {
            origin: "prices".into(),
            message: format!("{}/{}: {message}", entry.provider, entry.model),
        };
        if !crate::domain::events::PROVIDERS.contains(&entry.provider.as_str()) {
            return Err(invalid(format!(
                "unknown provider; use one of {}",
                crate::domain::events::PROVIDERS.join(", ")
            )));
        }
        for value in [entry.prompt_usd_per_mtok, entry.completion_usd_per_mtok] {
            if !value.is_finite() || value < 0.0 {
                return Err(invalid(
                    "prices must be finite and not negative (USD per million tokens)".into(),
                ));
            }
        }
        if !seen.insert((&entry.provider, &entry.model)) {
            return Err(invalid("listed twice".into()));
        }
    }
    Ok(())
}

/// The server's rubric judge (`judge = {...}`); its key is `RL_GYM_JUDGE_API_KEY`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeSettings {
    pub provider: Option<String>,
    pub model: Option<String>,
    pub base_url: Option<String>,
    #[serde(default)]
    pub temperature: f64,
    #[serde(skip)]
    pub api_key: Option<ApiKey>,
}

impl JudgeSettings {
    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| {
            Err(ConfigError::Invalid {
                origin: "judge".into(),
                message,
            })
        };
        match (&self.provider, &self.model) {
            (None, None) => Ok(()),
            (Some(provider), Some(_)) => {
                if provider == "builtin"
                    || !crate::domain::events::PROVIDERS.contains(&provider.as_str())
                {
                    return invalid(format!(
                        "`{provider}` cannot judge; use one of the providers"
                    ));
                }
                if provider == "custom" && self.base_url.is_none() {
                    return invalid("provider `custom` needs a `base_url`".into());
                }
                if !(0.0..=2.0).contains(&self.temperature) {
                    return invalid("`temperature` must be between 0 and 2".into());
                }
                Ok(())
            }
            _ => invalid("needs both `provider` and `model`, or neither".into()),
        }
    }

    /// The judge as a model config with its key, when one is configured.
    pub fn model_settings(&self) -> Option<(ModelSettings, Option<ApiKey>)> {
        let (provider, model) = (self.provider.clone()?, self.model.clone()?);
        Some((
            ModelSettings {
                base_url: self.base_url.clone(),
                temperature: self.temperature,
                max_steps: 1,
                context_stride: 1,
                has_api_key: self.api_key.is_some(),
                ..ModelSettings::new(&provider, &model)
            },
            self.api_key.clone(),
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config {origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// Values given on the command line or through `RL_GYM_*`, which win over files.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub bind: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub store: Option<String>,
    pub node_id: Option<String>,
    pub scenarios_dir: Option<PathBuf>,
    /// Added to the configured tokens (`RL_GYM_API_TOKEN`, comma-separated).
    pub api_tokens: Vec<String>,
}

impl Overrides {
    /// Tokens from `RL_GYM_API_TOKEN`.
    pub fn tokens_from_env() -> Vec<String> {
        std::env::var("RL_GYM_API_TOKEN")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Settings {
    /// The defaults alone (what tests start from).
    pub fn defaults() -> Settings {
        Self::load(None, Overrides::default()).expect("the compiled-in defaults are valid")
    }

    /// The server's own secrets (its API tokens and the judge's key), to be hidden
    /// in every text from outside.
    pub fn redactor(&self) -> secrets::Redactor {
        let judge = self.judge.api_key.as_ref().map(ApiKey::expose);
        secrets::Redactor::new(self.api_tokens.iter().map(String::as_str).chain(judge))
    }

    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Settings, ConfigError> {
        let mut merged: toml::Table = parse(DEFAULTS, "defaults")?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let origin = path.display().to_string();
            let table = parse(&text, &origin)?;
            for (key, value) in table {
                if !merged.contains_key(&key) {
                    return Err(ConfigError::Invalid {
                        origin,
                        message: format!("unknown key `{key}`"),
                    });
                }
                merged.insert(key, value);
            }
        }
        let mut settings: Settings =
            toml::Value::Table(merged)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    origin: file.map_or("defaults".into(), |p| p.display().to_string()),
                    message: e.to_string(),
                })?;
        if let Some(bind) = overrides.bind {
            settings.bind = bind;
        }
        if let Some(dir) = overrides.data_dir {
            settings.data_dir = dir;
        }
        if let Some(store) = overrides.store {
            settings.store = store;
        }
        if !settings.store.is_empty() && !crate::store::is_kurrent_url(&settings.store) {
            return Err(ConfigError::Invalid {
                origin: "store".into(),
                message: format!(
                    "`{}` is not a KurrentDB URL (kurrentdb://host:2113?tls=false); leave it empty for the embedded log",
                    settings.store
                ),
            });
        }
        if let Some(node_id) = overrides.node_id {
            settings.node_id = node_id;
        }
        if settings.node_id.is_empty() {
            settings.node_id = default_node_id();
        }
        if settings.lease_secs < 2 {
            return Err(ConfigError::Invalid {
                origin: "lease_secs".into(),
                message: "must be at least 2 (a lease is renewed every third of it)".into(),
            });
        }
        if let Some(dir) = overrides.scenarios_dir {
            settings.scenarios_dir = dir;
        }
        settings.api_tokens.extend(overrides.api_tokens);
        if let Ok(url) = std::env::var("RL_GYM_PUBLIC_URL") {
            settings.public_url = url;
        }
        settings.public_url = check_public_url(&settings.public_url)?;
        check_limits(&settings)?;
        settings.judge.api_key = std::env::var("RL_GYM_JUDGE_API_KEY")
            .ok()
            .filter(|k| !k.is_empty())
            .map(ApiKey::new);
        settings.judge.check()?;
        check_prices(&settings.prices)?;
        if settings.api_tokens.is_empty()
            && !settings.bind.ip().is_loopback()
            && !settings.allow_unauthenticated_public_bind
        {
            return Err(ConfigError::Invalid {
                origin: "settings".into(),
                message: format!(
                    "refusing to serve {} without an API token: set RL_GYM_API_TOKEN (or api_tokens), \
                     bind a loopback address, or set allow_unauthenticated_public_bind = true",
                    settings.bind
                ),
            });
        }
        if settings.max_concurrent_rollouts == 0 {
            return Err(ConfigError::Invalid {
                origin: "settings".into(),
                message: "max_concurrent_rollouts must be at least 1".into(),
            });
        }
        Ok(settings)
    }

    /// The price table the budgets use.
    pub fn price_table(&self) -> PriceTable {
        PriceTable::new(self.prices.iter().map(|p| {
            (
                p.provider.clone(),
                p.model.clone(),
                Price {
                    prompt_usd_per_mtok: p.prompt_usd_per_mtok,
                    completion_usd_per_mtok: p.completion_usd_per_mtok,
                },
            )
        }))
    }

    /// The scenario folder to load: the configured one, or the templates bundled with
    /// the source tree when the configured relative folder does not exist here.
    pub fn resolved_scenarios_dir(&self) -> PathBuf {
        if self.scenarios_dir.is_dir() || self.scenarios_dir.is_absolute() {
            return self.scenarios_dir.clone();
        }
        Path::new(env!("CARGO_MANIFEST_DIR")).join(&self.scenarios_dir)
    }
}

/// An absolute http(s) URL without a trailing slash, or empty (the bound address).
fn check_public_url(url: &str) -> Result<String, ConfigError> {
    let url = url.trim().trim_end_matches('/');
    if url.is_empty() {
        return Ok(String::new());
    }
    let valid = reqwest::Url::parse(url).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.host().is_some()
            && u.query().is_none()
            && u.fragment().is_none()
    });
    if !valid {
        return Err(ConfigError::Invalid {
            origin: "public_url".into(),
            message: format!("`{url}` is not an http(s) URL such as https://gym.example.com"),
        });
    }
    Ok(url.to_string())
}

/// The resource limits that make no sense at 0.
fn check_limits(settings: &Settings) -> Result<(), ConfigError> {
    for (key, value) in [
        (
            "environment_idle_secs",
            settings.environment_idle_secs as usize,
        ),
        ("max_tool_argument_bytes", settings.max_tool_argument_bytes),
        (
            "max_environment_state_bytes",
            settings.max_environment_state_bytes,
        ),
        ("max_pending_rollouts", settings.max_pending_rollouts),
        ("max_pairs_per_task", settings.max_pairs_per_task),
        (
            "request_timeout_secs",
            settings.request_timeout_secs as usize,
        ),
        ("max_connections", settings.max_connections),
    ] {
        if value == 0 {
            return Err(ConfigError::Invalid {
                origin: key.into(),
                message: "must be at least 1".into(),
            });
        }
    }
    Ok(())
}

/// `<hostname>-<random>`: new at every start and unique even among containers that
/// share a hostname and a pid (only a given `node_id` means "the same node again").
fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_string());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}", &suffix[..8])
}

fn parse(text: &str, origin: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::Invalid {
            origin: origin.to_string(),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load() {
        let s = Settings::defaults();
        assert_eq!(s.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(s.data_dir, PathBuf::from("./data"));
    }

    #[test]
    fn a_judge_is_checked_when_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        for (text, expected) in [
            ("judge = { provider = \"openai\" }", "needs both"),
            (
                "judge = { provider = \"builtin\", model = \"oracle\" }",
                "cannot judge",
            ),
            (
                "judge = { provider = \"custom\", model = \"m\" }",
                "needs a `base_url`",
            ),
            (
                "[judge]\nprovider = \"openai\"\nmodel = \"m\"\ncolour = 1",
                "colour",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = Settings::load(Some(&path), Overrides::default()).unwrap_err();
            assert!(err.to_string().contains(expected), "{text}: {err}");
        }
        std::fs::write(
            &path,
            "judge = { provider = \"openai\", model = \"gpt-4.1-mini\" }",
        )
        .unwrap();
        let settings = Settings::load(Some(&path), Overrides::default()).unwrap();
        let (judge, _) = settings.judge.model_settings().unwrap();
        assert_eq!(
            (judge.provider.as_str(), judge.temperature),
            ("openai", 0.0)
        );
    }

    #[test]
    fn the_price_table_is_checked_when_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let row = |provider: &str, prompt: &str, extra: &str| {
            format!(
                "[[prices]]\nprovider = \"{provider}\"\nmodel = \"m\"\n\
                 prompt_usd_per_mtok = {prompt}\ncompletion_usd_per_mtok = 1.0\n{extra}"
            )
        };
        for (text, expected) in [
            (row("nope", "1.0", ""), "unknown provider"),
            (row("openai", "-1.0", ""), "not negative"),
            (row("openai", "1.0", "colour = 1\n"), "colour"),
            (
                row("openai", "1.0", "") + &row("openai", "2.0", ""),
                "twice",
            ),
        ] {
            std::fs::write(&path, &text).unwrap();
            let err = Settings::load(Some(&path), Overrides::default()).unwrap_err();
            assert!(err.to_string().contains(expected), "{text}: {err}");
        }
        std::fs::write(&path, row("custom", "0.5", "")).unwrap();
        let settings = Settings::load(Some(&path), Overrides::default()).unwrap();
        let price = settings.price_table().get("custom", "m").unwrap();
        assert_eq!(price.prompt_usd_per_mtok, 0.5);
        assert!(Settings::defaults()
            .price_table()
            .get("openai", "gpt-4o-mini")
            .is_some());
    }

    #[test]
    fn the_public_url_and_the_limits_are_checked_when_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        for (text, expected) in [
            ("public_url = \"gym.example.com\"", "not an http(s) URL"),
            (
                "public_url = \"ftp://gym.example.com\"",
                "not an http(s) URL",
            ),
            (
                "public_url = \"https://gym.example.com/?a=1\"",
                "not an http(s) URL",
            ),
            ("max_pending_rollouts = 0", "at least 1"),
            ("request_timeout_secs = 0", "at least 1"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = Settings::load(Some(&path), Overrides::default()).unwrap_err();
            assert!(err.to_string().contains(expected), "{text}: {err}");
        }
        std::fs::write(&path, "public_url = \"https://gym.example.com/rl/\"\n").unwrap();
        let settings = Settings::load(Some(&path), Overrides::default()).unwrap();
        assert_eq!(settings.public_url, "https://gym.example.com/rl");
    }

    #[test]
    fn unknown_keys_in_a_file_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "bnid = \"127.0.0.1:1\"\n").unwrap();
        let err = Settings::load(Some(&path), Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("unknown key `bnid`"), "{err}");
    }

    #[test]
    fn overrides_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "bind = \"127.0.0.1:1\"\nmax_concurrent_rollouts = 7\n",
        )
        .unwrap();
        let s = Settings::load(
            Some(&path),
            Overrides {
                bind: Some("127.0.0.1:2".parse().unwrap()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.bind.port(), 2);
        assert_eq!(s.max_concurrent_rollouts, 7);
    }
}
