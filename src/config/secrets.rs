//! API keys at rest. A key is held in a type that never prints and never enters the
//! event log. Each run's keys are sealed (ChaCha20-Poly1305) with a server key created
//! on first start (`DATA_DIR/secrets/master.key`, owner-only), in one file per run
//! (`DATA_DIR/secrets/runs/<run_id>.key`) written and fsynced before the launch is
//! recorded, so runs resume across restarts. Deleting a run removes its file: the keys
//! are then unrecoverable from anything left on disk.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::domain::secret::ApiKey;

/// The keys a run was launched with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunKeys {
    pub model: Option<ApiKey>,
    pub user_model: Option<ApiKey>,
    #[serde(default)]
    pub judge_model: Option<ApiKey>,
}

impl RunKeys {
    pub fn is_empty(&self) -> bool {
        self.model.is_none() && self.user_model.is_none() && self.judge_model.is_none()
    }
}

/// Hides secrets in text that came from outside (a provider's error quoting the
/// headers it got, a judge's reason, a model's output, a tool server's answer)
/// before it is recorded or answered: the one redaction of the service. Each secret,
/// each part of an `ID:SECRET[:TOKEN]` key, and their JSON-escaped and
/// percent-encoded spellings become `***`. Anything shorter than
/// [`Redactor::MIN_LEN`] is left: it is no secret, and hiding it would garble text.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Longest first, so that a secret is hidden whole before any part of it.
    needles: Arc<[String]>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} spellings)", self.needles.len())
    }
}

impl Redactor {
    pub const MIN_LEN: usize = 4;

    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Redactor {
        Redactor::default().with(secrets)
    }

    /// These secrets and `more`.
    pub fn with<'a>(&self, more: impl IntoIterator<Item = &'a str>) -> Redactor {
        let mut needles = self.needles.to_vec();
        for secret in more {
            for part in std::iter::once(secret).chain(secret.split(':')) {
                let json = serde_json::to_string(part).unwrap_or_default();
                needles.extend([
                    part.to_string(),
                    json.trim_matches('"').to_string(),
                    percent_encode(part, false),
                    percent_encode(part, true),
                ]);
            }
        }
        needles.retain(|n| n.len() >= Self::MIN_LEN);
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        Redactor {
            needles: needles.into(),
        }
    }

    /// These secrets and a run's keys.
    pub fn with_keys(&self, keys: &RunKeys) -> Redactor {
        let keys = [&keys.model, &keys.user_model, &keys.judge_model];
        self.with(keys.into_iter().flatten().map(ApiKey::expose))
    }

    /// `text` with every secret hidden.
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_string();
        self.redact_in_place(&mut text);
        text
    }

    pub fn redact_in_place(&self, text: &mut String) {
        for needle in self.needles.iter() {
            if text.contains(needle.as_str()) {
                *text = text.replace(needle.as_str(), "***");
            }
        }
    }
}

/// Every byte but the unreserved ones as `%XX` (or `%xx`), as a URL would carry it.
fn percent_encode(text: &str, lower: bool) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ if lower => format!("%{b:02x}"),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret store I/O failed: {0}")]
    Io(#[from] io::Error),
    /// A run with this id already has keys (its name is taken).
    #[error("keys for run {0} already exist")]
    Exists(String),
    #[error("the keys of run {0} cannot be decrypted")]
    Undecryptable(String),
}

/// Sealed keys of every run, with a cache of the ones already opened and of the runs
/// found to have none (every rollout asks; most runs of the builtin agents have none).
#[derive(Clone)]
pub struct SecretStore {
    dir: Option<PathBuf>,
    cipher: Arc<ChaCha20Poly1305>,
    cache: Arc<RwLock<HashMap<String, Option<RunKeys>>>>,
}

const NONCE_LEN: usize = 12;

fn random_bytes<const N: usize>() -> io::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::getrandom(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(bytes)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

impl SecretStore {
    /// Opens (or creates, on first start) the secret store under `data_dir`.
    pub fn open(data_dir: &Path) -> Result<SecretStore, SecretError> {
        let dir = data_dir.join("secrets");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir.join("runs"))?;
        let master = dir.join("master.key");
        let key = match fs::read(&master) {
            Ok(bytes) if bytes.len() == 32 => bytes,
            Ok(_) => {
                return Err(SecretError::Io(io::Error::other(format!(
                    "{} is not a 32-byte key",
                    master.display()
                ))))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let key = random_bytes::<32>()?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&master)?;
                file.write_all(&key)?;
                file.sync_all()?;
                sync_dir(&dir)?;
                tracing::info!(path = %master.display(), "created the server key for API keys at rest");
                key.to_vec()
            }
            Err(e) => return Err(e.into()),
        };
        Ok(SecretStore {
            dir: Some(dir.join("runs")),
            cipher: Arc::new(ChaCha20Poly1305::new(Key::from_slice(&key))),
            cache: Arc::default(),
        })
    }

    /// A store that keeps sealed keys in memory only (tests).
    pub fn in_memory() -> SecretStore {
        let key = random_bytes::<32>().unwrap_or([7u8; 32]);
        SecretStore {
            dir: None,
            cipher: Arc::new(ChaCha20Poly1305::new(Key::from_slice(&key))),
            cache: Arc::default(),
        }
    }

    fn path(&self, run_id: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(format!("{run_id}.key")))
    }

    /// Seals and durably stores a run's keys; refuses to replace existing ones.
    pub fn put(&self, run_id: &str, keys: RunKeys) -> Result<(), SecretError> {
        if let Some(path) = self.path(run_id) {
            let plain = serde_json::to_vec(&keys).map_err(|e| io::Error::other(e.to_string()))?;
            let nonce = random_bytes::<NONCE_LEN>()?;
            let sealed = self
                .cipher
                .encrypt(Nonce::from_slice(&nonce), plain.as_slice())
                .map_err(|_| io::Error::other("encryption failed"))?;
            let mut file = match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(SecretError::Exists(run_id.to_string()))
                }
                Err(e) => return Err(e.into()),
            };
            file.write_all(&nonce)?;
            file.write_all(&sealed)?;
            file.sync_all()?;
            if let Some(dir) = path.parent() {
                sync_dir(dir)?;
            }
        } else if matches!(self.cache.read().get(run_id), Some(Some(_))) {
            return Err(SecretError::Exists(run_id.to_string()));
        }
        self.cache.write().insert(run_id.to_string(), Some(keys));
        Ok(())
    }

    /// A run's keys, if it has any and they still exist.
    pub fn get(&self, run_id: &str) -> Result<Option<RunKeys>, SecretError> {
        if let Some(keys) = self.cache.read().get(run_id) {
            return Ok(keys.clone());
        }
        let Some(path) = self.path(run_id) else {
            return Ok(None);
        };
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Keys are written before their launch is recorded, so a run whose
                // rollouts ask and find none never gets any.
                self.cache.write().insert(run_id.to_string(), None);
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        if bytes.len() < NONCE_LEN {
            return Err(SecretError::Undecryptable(run_id.to_string()));
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), sealed)
            .map_err(|_| SecretError::Undecryptable(run_id.to_string()))?;
        let keys: RunKeys = serde_json::from_slice(&plain)
            .map_err(|_| SecretError::Undecryptable(run_id.to_string()))?;
        self.cache
            .write()
            .insert(run_id.to_string(), Some(keys.clone()));
        Ok(Some(keys))
    }

    /// Destroys a run's keys (run deleted, or a launch that was not recorded).
    pub fn forget(&self, run_id: &str) -> Result<(), SecretError> {
        self.cache.write().remove(run_id);
        if let Some(path) = self.path(run_id) {
            match fs::remove_file(&path) {
                Ok(()) => {
                    if let Some(dir) = path.parent() {
                        sync_dir(dir)?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn keys(k: &str) -> RunKeys {
        RunKeys {
            model: Some(ApiKey::new(k.to_string())),
            user_model: None,
            judge_model: None,
        }
    }

    #[test]
    fn the_redactor_hides_each_key_each_part_and_their_spellings() {
        let r = Redactor::new(["sk-123"]);
        assert_eq!(
            r.redact("Incorrect API key provided: sk-123."),
            "Incorrect API key provided: ***."
        );
        let pair = Redactor::new(["AKIDEXAMPLE:s3cret/+key"]);
        assert_eq!(
            pair.redact("unknown access key AKIDEXAMPLE"),
            "unknown access key ***"
        );
        assert_eq!(pair.redact("got AKIDEXAMPLE:s3cret/+key"), "got ***");
        assert_eq!(pair.redact("sig=s3cret%2F%2Bkey"), "sig=***");
        assert_eq!(pair.redact("sig=s3cret%2f%2bkey"), "sig=***");
        let quoted = Redactor::new([r#"sk-"quoted"\key"#]);
        assert_eq!(
            quoted.redact(r#"{"key":"sk-\"quoted\"\\key"}"#),
            r#"{"key":"***"}"#
        );
        assert_eq!(Redactor::default().redact("no key"), "no key");
        // Too short to be a secret, and hiding it would garble every text.
        assert_eq!(Redactor::new(["tok", ""]).redact("tokens"), "tokens");
    }

    #[test]
    fn a_redactor_adds_a_runs_keys_to_the_servers_secrets() {
        let server = Redactor::new(["server-token"]);
        let run = server.with_keys(&RunKeys {
            model: Some(ApiKey::new("sk-model".into())),
            user_model: Some(ApiKey::new("sk-user".into())),
            judge_model: Some(ApiKey::new("sk-judge".into())),
        });
        assert_eq!(
            run.redact("server-token sk-model sk-user sk-judge"),
            "*** *** *** ***"
        );
        assert_eq!(server.redact("sk-model"), "sk-model");
        assert!(!format!("{run:?}").contains("sk-"));
    }

    #[test]
    fn keys_survive_a_reopen_and_are_sealed_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = SecretStore::open(dir.path()).unwrap();
        store.put("run_a", keys("sk-very-secret")).unwrap();
        let reopened = SecretStore::open(dir.path()).unwrap();
        assert_eq!(reopened.get("run_a").unwrap(), Some(keys("sk-very-secret")));
        let file = fs::read(dir.path().join("secrets/runs/run_a.key")).unwrap();
        assert!(!String::from_utf8_lossy(&file).contains("sk-very-secret"));
        let mode = fs::metadata(dir.path().join("secrets/master.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn forgotten_keys_are_gone_and_existing_ones_are_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = SecretStore::open(dir.path()).unwrap();
        store.put("run_a", keys("one")).unwrap();
        assert!(matches!(
            store.put("run_a", keys("two")),
            Err(SecretError::Exists(_))
        ));
        assert_eq!(store.get("run_a").unwrap(), Some(keys("one")));
        store.forget("run_a").unwrap();
        assert_eq!(
            SecretStore::open(dir.path()).unwrap().get("run_a").unwrap(),
            None
        );
    }

    #[test]
    fn a_run_found_without_keys_can_still_be_given_some() {
        let dir = tempfile::tempdir().unwrap();
        for store in [
            SecretStore::open(dir.path()).unwrap(),
            SecretStore::in_memory(),
        ] {
            assert_eq!(store.get("run_a").unwrap(), None);
            assert_eq!(store.get("run_a").unwrap(), None);
            store.put("run_a", keys("k")).unwrap();
            assert_eq!(store.get("run_a").unwrap(), Some(keys("k")));
            store.forget("run_a").unwrap();
            assert_eq!(store.get("run_a").unwrap(), None);
        }
    }

    #[test]
    fn a_run_found_without_keys_is_answered_from_memory() {
        let dir = tempfile::tempdir().unwrap();
        let store = SecretStore::open(dir.path()).unwrap();
        assert_eq!(store.get("run_a").unwrap(), None);
        // A file that appears afterwards (written by another store on the same folder)
        // is not read: the first answer is remembered.
        SecretStore::open(dir.path())
            .unwrap()
            .put("run_a", keys("k"))
            .unwrap();
        assert_eq!(store.get("run_a").unwrap(), None);
        assert_eq!(
            SecretStore::open(dir.path()).unwrap().get("run_a").unwrap(),
            Some(keys("k"))
        );
    }

    #[test]
    fn another_server_key_cannot_open_them() {
        let a = tempfile::tempdir().unwrap();
        let store = SecretStore::open(a.path()).unwrap();
        store.put("run_a", keys("x")).unwrap();
        fs::write(a.path().join("secrets/master.key"), [9u8; 32]).unwrap();
        let other = SecretStore::open(a.path()).unwrap();
        assert!(matches!(
            other.get("run_a"),
            Err(SecretError::Undecryptable(_))
        ));
    }

    #[test]
    fn keys_never_print() {
        let k = keys("sk-hidden");
        let shown = format!("{:?} {}", k.model, k.model.as_ref().unwrap());
        assert!(!shown.contains("sk-hidden"));
    }
}
