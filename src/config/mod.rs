//! Settings, layered: the defaults in `config/default.toml` (compiled in, so the file
//! documents every key), then a `--config` file, then `RL_GYM_*` environment
//! variables and flags (which clap merges, flags first). Unknown keys are errors.

pub mod secrets;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

const DEFAULTS: &str = include_str!("../../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    pub scenarios_dir: PathBuf,
    pub max_concurrent_rollouts: usize,
    pub max_open_environments: usize,
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
        if let Some(dir) = overrides.scenarios_dir {
            settings.scenarios_dir = dir;
        }
        settings.api_tokens.extend(overrides.api_tokens);
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

    /// The scenario folder to load: the configured one, or the templates bundled with
    /// the source tree when the configured relative folder does not exist here.
    pub fn resolved_scenarios_dir(&self) -> PathBuf {
        if self.scenarios_dir.is_dir() || self.scenarios_dir.is_absolute() {
            return self.scenarios_dir.clone();
        }
        Path::new(env!("CARGO_MANIFEST_DIR")).join(&self.scenarios_dir)
    }
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
