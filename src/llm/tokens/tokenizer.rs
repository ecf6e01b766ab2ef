//! A model's tokenizer as Hugging Face saves it: a directory with `tokenizer.json` (the
//! vocabulary, merges and pre-tokenizer, read by the `tokenizers` crate),
//! `tokenizer_config.json` (the special tokens) and the chat template, either in
//! `chat_template.jinja` (transformers v5 writes it there) or as `chat_template` inside
//! `tokenizer_config.json` (older transformers, and most models on the hub).
//!
//! Ids are `u32` everywhere, as the `tokenizers` crate and every inference server use
//! them. Errors name the file that was wrong, because the directory is something an
//! operator assembled by hand.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Why a tokenizer directory could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a valid tokenizer file: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("{}: `{field}` names the token `{token}`, which is not in the vocabulary", path.display())]
    UnknownSpecialToken {
        path: PathBuf,
        field: &'static str,
        token: String,
    },
    #[error("could not encode the text: {0}")]
    Encode(String),
    #[error("could not decode the ids: {0}")]
    Decode(String),
}

/// A special token named by `tokenizer_config.json`, with its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialToken {
    pub text: String,
    pub id: u32,
}

/// The special tokens a chat template is given (transformers passes its
/// `special_tokens_map` to the template: `bos_token`, `eos_token`, …).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    pub bos: Option<SpecialToken>,
    pub eos: Option<SpecialToken>,
    pub unk: Option<SpecialToken>,
    pub pad: Option<SpecialToken>,
}

/// A loaded tokenizer directory.
pub struct ChatTokenizer {
    dir: PathBuf,
    tokenizer: tokenizers::Tokenizer,
    special: SpecialTokens,
    /// Templates by name. A single template is stored as `default`; a config's list of
    /// `{name, template}` keeps its names (`default`, `tool_use`, …).
    templates: BTreeMap<String, String>,
}

impl std::fmt::Debug for ChatTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTokenizer")
            .field("dir", &self.dir)
            .field("special", &self.special)
            .field("templates", &self.templates.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ChatTokenizer {
    /// Loads `dir/tokenizer.json`, `dir/tokenizer_config.json` (optional: without it
    /// there are no special tokens and no template unless `chat_template.jinja` exists)
    /// and `dir/chat_template.jinja` (which wins over the config's `chat_template`, as in
    /// transformers).
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let dir = dir.as_ref().to_path_buf();
        let tokenizer_path = dir.join("tokenizer.json");
        let bytes = read(&tokenizer_path)?;
        let tokenizer =
            tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| TokenizerError::Invalid {
                path: tokenizer_path.clone(),
                message: e.to_string(),
            })?;

        let config_path = dir.join("tokenizer_config.json");
        let config: Value = match std::fs::read(&config_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| TokenizerError::Invalid {
                path: config_path.clone(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Value::Null,
            Err(source) => {
                return Err(TokenizerError::Read {
                    path: config_path,
                    source,
                })
            }
        };

        let special_token = |field: &'static str| -> Result<Option<SpecialToken>, TokenizerError> {
            let Some(text) = token_text(config.get(field)) else {
                return Ok(None);
            };
            match tokenizer.token_to_id(&text) {
                Some(id) => Ok(Some(SpecialToken { text, id })),
                None => Err(TokenizerError::UnknownSpecialToken {
                    path: config_path.clone(),
                    field,
                    token: text,
                }),
            }
        };
        let special = SpecialTokens {
            bos: special_token("bos_token")?,
            eos: special_token("eos_token")?,
            unk: special_token("unk_token")?,
            pad: special_token("pad_token")?,
        };

        let mut templates = config_templates(&config, &config_path)?;
        let jinja_path = dir.join("chat_template.jinja");
        match std::fs::read_to_string(&jinja_path) {
            Ok(source) => {
                templates.insert("default".to_string(), source);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(TokenizerError::Read {
                    path: jinja_path,
                    source,
                })
            }
        }

        Ok(ChatTokenizer {
            dir,
            tokenizer,
            special,
            templates,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    /// The chat template transformers would pick: with tools, a template named
    /// `tool_use` if there is one; otherwise `default`; otherwise the only one.
    pub fn chat_template(&self, with_tools: bool) -> Option<&str> {
        if with_tools {
            if let Some(t) = self.templates.get("tool_use") {
                return Some(t);
            }
        }
        if let Some(t) = self.templates.get("default") {
            return Some(t);
        }
        match self.templates.len() {
            1 => self.templates.values().next().map(String::as_str),
            _ => None,
        }
    }

    /// The template of that name (`default`, `tool_use`, …).
    pub fn named_chat_template(&self, name: &str) -> Option<&str> {
        self.templates.get(name).map(String::as_str)
    }

    /// The ids of a text, without adding special tokens: a rendered chat template
    /// already holds them (transformers' `apply_chat_template(tokenize=True)` does the
    /// same). Special tokens written in the text (`<|im_start|>`) become their ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        self.encode_with(text, false)
    }

    /// The ids of a text, adding the tokenizer's own special tokens (its
    /// post-processor's BOS, …) when `add_special_tokens` is true.
    pub fn encode_with(
        &self,
        text: &str,
        add_special_tokens: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        self.tokenizer
            .encode(text, add_special_tokens)
            .map(|encoding| encoding.get_ids().to_vec())
            .map_err(|e| TokenizerError::Encode(e.to_string()))
    }

    /// The text of ids. Byte-level tokens that are only part of a character decode to
    /// U+FFFD on their own; decode whole runs to get the character.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokenizerError> {
        self.tokenizer
            .decode(ids, skip_special_tokens)
            .map_err(|e| TokenizerError::Decode(e.to_string()))
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.tokenizer.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.tokenizer.id_to_token(id)
    }

    /// Whether the id is an added special token (`<|im_end|>`): the tokenizer splits the
    /// text on those before anything else, so a token boundary always falls on both
    /// sides of one.
    pub fn is_special(&self, id: u32) -> bool {
        self.tokenizer
            .get_added_tokens_decoder()
            .get(&id)
            .is_some_and(|t| t.special)
    }

    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TokenizerError> {
    std::fs::read(path).map_err(|source| TokenizerError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// A special token in `tokenizer_config.json` is either its text or a saved
/// `AddedToken` object (`{"content": "<s>", "lstrip": false, …}`).
fn token_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// `chat_template` in the config: a string, or a list of `{"name", "template"}`.
fn config_templates(
    config: &Value,
    path: &Path,
) -> Result<BTreeMap<String, String>, TokenizerError> {
    let invalid = |message: &str| TokenizerError::Invalid {
        path: path.to_path_buf(),
        message: message.to_string(),
    };
    let mut templates = BTreeMap::new();
    match config.get("chat_template") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            templates.insert("default".to_string(), s.clone());
        }
        Some(Value::Array(entries)) => {
            for entry in entries {
                let name = entry.get("name").and_then(Value::as_str);
                let template = entry.get("template").and_then(Value::as_str);
                match (name, template) {
                    (Some(name), Some(template)) => {
                        templates.insert(name.to_string(), template.to_string());
                    }
                    _ => {
                        return Err(invalid(
                            "each `chat_template` entry needs a string `name` and `template`",
                        ))
                    }
                }
            }
        }
        Some(_) => {
            return Err(invalid(
                "`chat_template` must be a string or a list of {name, template}",
            ))
        }
    }
    Ok(templates)
}

/// The SmolLM2-135M-Instruct fixture (tests/fixtures/tokenizers/smollm2/), loaded once
/// for all of this module's tests.
#[cfg(test)]
pub(crate) fn smollm2() -> &'static ChatTokenizer {
    static TOKENIZER: std::sync::LazyLock<ChatTokenizer> = std::sync::LazyLock::new(|| {
        ChatTokenizer::from_dir(smollm2_dir()).expect("the SmolLM2 fixture loads")
    });
    &TOKENIZER
}

#[cfg(test)]
pub(crate) fn smollm2_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizers/smollm2")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Golden {
        strings: Vec<GoldenString>,
    }

    #[derive(serde::Deserialize)]
    struct GoldenString {
        text: String,
        ids: Vec<u32>,
    }

    fn golden() -> Golden {
        let text = std::fs::read_to_string(smollm2_dir().join("golden.json")).expect("golden");
        serde_json::from_str(&text).expect("golden parses")
    }

    #[test]
    fn smollm2_special_tokens_come_from_its_config() {
        let tok = smollm2();
        let s = tok.special_tokens();
        assert_eq!(
            s.bos,
            Some(SpecialToken {
                text: "<|im_start|>".into(),
                id: 1
            })
        );
        assert_eq!(
            s.eos,
            Some(SpecialToken {
                text: "<|im_end|>".into(),
                id: 2
            })
        );
        assert_eq!(s.unk.as_ref().map(|t| t.id), Some(0));
        assert_eq!(tok.vocab_size(), 49152);
        assert!(tok.is_special(2) && tok.is_special(1));
        assert!(!tok.is_special(198), "a newline is an ordinary token");
    }

    #[test]
    fn smollm2_encodes_as_the_python_tokenizer_does() {
        let tok = smollm2();
        for case in golden().strings {
            assert_eq!(tok.encode(&case.text).unwrap(), case.ids, "{:?}", case.text);
            // SmolLM2 adds nothing around a text, so both ways agree.
            assert_eq!(tok.encode_with(&case.text, true).unwrap(), case.ids);
        }
    }

    #[test]
    fn decoding_keeps_bytes_of_multibyte_characters_together() {
        let tok = smollm2();
        let ids = tok.encode("🌟").unwrap();
        assert_eq!(ids, vec![10813, 230, 249]);
        assert_eq!(tok.decode(&ids, false).unwrap(), "🌟");
        assert_eq!(tok.decode(&[1, 4093, 198, 2], true).unwrap(), "user\n");
        assert_eq!(
            tok.decode(&[1, 4093, 198, 2], false).unwrap(),
            "<|im_start|>user\n<|im_end|>"
        );
    }

    #[test]
    fn the_template_file_wins_over_the_config_and_tool_use_is_picked_with_tools() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            smollm2_dir().join("tokenizer.json"),
            dir.path().join("tokenizer.json"),
        )
        .unwrap();
        let config = serde_json::json!({
            "eos_token": {"content": "<|im_end|>", "lstrip": false},
            "chat_template": [
                {"name": "default", "template": "D"},
                {"name": "tool_use", "template": "T"}
            ]
        });
        std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
        let tok = ChatTokenizer::from_dir(dir.path()).unwrap();
        assert_eq!(tok.special_tokens().eos.as_ref().map(|t| t.id), Some(2));
        assert_eq!(tok.special_tokens().bos, None);
        assert_eq!(tok.chat_template(false), Some("D"));
        assert_eq!(tok.chat_template(true), Some("T"));

        std::fs::write(dir.path().join("chat_template.jinja"), "J").unwrap();
        let tok = ChatTokenizer::from_dir(dir.path()).unwrap();
        assert_eq!(tok.chat_template(false), Some("J"));
        assert_eq!(tok.named_chat_template("tool_use"), Some("T"));
    }

    #[test]
    fn errors_name_the_file_that_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let err = ChatTokenizer::from_dir(dir.path()).unwrap_err();
        assert!(matches!(err, TokenizerError::Read { .. }));
        assert!(err.to_string().contains("tokenizer.json"), "{err}");

        std::fs::write(dir.path().join("tokenizer.json"), "{not json").unwrap();
        let err = ChatTokenizer::from_dir(dir.path()).unwrap_err();
        assert!(matches!(err, TokenizerError::Invalid { .. }), "{err}");
        assert!(err.to_string().contains("tokenizer.json"), "{err}");

        std::fs::copy(
            smollm2_dir().join("tokenizer.json"),
            dir.path().join("tokenizer.json"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"eos_token": "<|no_such_token|>"}"#,
        )
        .unwrap();
        let err = ChatTokenizer::from_dir(dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: `eos_token` names the token `<|no_such_token|>`, which is not in the vocabulary",
                dir.path().join("tokenizer_config.json").display()
            )
        );

        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"chat_template": 3}"#,
        )
        .unwrap();
        let err = ChatTokenizer::from_dir(dir.path()).unwrap_err();
        assert!(err.to_string().contains("tokenizer_config.json"), "{err}");
    }
}
