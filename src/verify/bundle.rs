//! The verifier bundle: a scenario's programmatic checks as a standalone Python
//! package, so users can score rollouts offline exactly as the server does.
//!
//! The archive holds one importable package `<scenario_id>_verifiers/`: the check
//! language ported to Python (`src/verify/python/*.py`, embedded here verbatim) and a
//! `tasks.json` serialised from the very checks and scoring rules [`super::verify`] scores
//! with, so the data cannot drift from the server; only the two implementations of
//! the language can, and the API tests run both on every task to catch it. The archive
//! is deterministic (fixed order, timestamps and permissions): the same scenario and
//! server version always give the same bytes.

use std::collections::BTreeMap;
use std::io::{Cursor, Write};

use serde::Serialize;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use super::{Check, ScoringRule};

/// The Python sources of the package, by file name. `PACKAGE_NAME` in them is
/// replaced by the package's name (only docstrings use it: imports are relative).
const PYTHON_SOURCES: &[(&str, &str)] = &[
    ("__init__.py", include_str!("python/__init__.py")),
    ("__main__.py", include_str!("python/__main__.py")),
    ("checks.py", include_str!("python/checks.py")),
    ("family.py", include_str!("python/family.py")),
    ("paths.py", include_str!("python/paths.py")),
    ("text.py", include_str!("python/text.py")),
];

const README_TEMPLATE: &str = include_str!("python/README.md");

/// Version of the `tasks.json` layout, for readers other than the bundled package.
const TASKS_FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("Scenario '{0}' has no programmatic checks to bundle")]
    NoChecks(String),
    #[error("could not write the verifier archive: {0}")]
    Archive(#[from] zip::result::ZipError),
    #[error("could not write the verifier archive: {0}")]
    Io(#[from] std::io::Error),
    #[error("could not serialise the checks: {0}")]
    Json(#[from] serde_json::Error),
}

/// A built archive and the names it goes by.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The Python package inside, e.g. `hr_verifiers`.
    pub package: String,
    /// What to save it as, e.g. `hr_verifiers.zip`.
    pub file_name: String,
    pub bytes: Vec<u8>,
}

/// `tasks.json`: the scenario's checks and scoring rules.
#[derive(Serialize)]
struct TasksFile<'a> {
    format: u32,
    scenario_id: &'a str,
    generator: String,
    tasks: Vec<TaskEntry<'a>>,
}

/// One task as the package scores it.
#[derive(Serialize)]
pub struct TaskEntry<'a> {
    pub task_id: &'a str,
    pub name: &'a str,
    pub checks: &'a [Check],
    pub scoring: &'a ScoringRule,
    /// A family's parameters: the package renders a rollout's instance from them
    /// (`family.py`), as the server does.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: &'a BTreeMap<String, Vec<serde_json::Value>>,
}

/// The Python package name for a scenario: `<scenario_id>_verifiers`, with every
/// character that cannot appear in a Python identifier replaced by `_` (and a
/// leading `_` if the id starts with a digit).
pub fn package_name(scenario_id: &str) -> String {
    let mut name: String = scenario_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name + "_verifiers"
}

/// Builds the archive of a scenario's tasks; refuses a scenario without any check.
pub fn build(
    scenario_id: &str,
    scenario_name: &str,
    tasks: Vec<TaskEntry>,
) -> Result<Bundle, BundleError> {
    if tasks.iter().all(|t| t.checks.is_empty()) {
        return Err(BundleError::NoChecks(scenario_id.to_string()));
    }
    let package = package_name(scenario_id);
    let generator = format!("rl-gym {}", env!("CARGO_PKG_VERSION"));
    let table = task_table(&tasks);
    let tasks_json = serde_json::to_vec_pretty(&TasksFile {
        format: TASKS_FORMAT,
        scenario_id,
        generator: generator.clone(),
        tasks,
    })?;
    let readme = fill(
        README_TEMPLATE,
        &[
            ("PACKAGE_NAME", &package),
            ("SCENARIO_ID", scenario_id),
            ("SCENARIO_NAME", scenario_name),
            ("TASK_TABLE", &table),
            ("GENERATOR", &generator),
        ],
    );

    let mut files: Vec<(&str, Vec<u8>)> = PYTHON_SOURCES
        .iter()
        .map(|(name, source)| (*name, fill(source, &[("PACKAGE_NAME", &package)]).into()))
        .collect();
    files.push(("tasks.json", tasks_json));
    files.push(("README.md", readme.into()));

    // Fixed timestamps and modes: the archive depends on its content alone.
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .last_modified_time(DateTime::default())
        .unix_permissions(0o644);
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    for (name, content) in files {
        zip.start_file(format!("{package}/{name}"), options)?;
        zip.write_all(&content)?;
    }
    let bytes = zip.finish()?.into_inner();
    Ok(Bundle {
        file_name: format!("{scenario_id}_verifiers.zip"),
        package,
        bytes,
    })
}

/// The README's task list, a Markdown table.
fn task_table(tasks: &[TaskEntry]) -> String {
    let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let mut table = String::from("| task_id | name | checks |\n|---|---|---|");
    for task in tasks {
        table.push_str(&format!(
            "\n| `{}` | {} | {} |",
            task.task_id,
            cell(task.name),
            task.checks.len()
        ));
    }
    table
}

/// Replaces each placeholder in one pass, so a value that happens to contain another
/// placeholder is left as it is.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some((at, key, value)) = values
        .iter()
        .filter_map(|(key, value)| rest.find(key).map(|at| (at, *key, *value)))
        .min_by_key(|(at, key, _)| (*at, std::cmp::Reverse(key.len())))
    {
        out.push_str(&rest[..at]);
        out.push_str(value);
        rest = &rest[at + key.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_are_python_identifiers() {
        assert_eq!(package_name("hr"), "hr_verifiers");
        assert_eq!(package_name("hr_recruiting"), "hr_recruiting_verifiers");
        assert_eq!(package_name("it-ops.v2"), "it_ops_v2_verifiers");
        assert_eq!(package_name("2024q1"), "_2024q1_verifiers");
    }

    #[test]
    fn fill_replaces_in_one_pass() {
        assert_eq!(
            fill("A and B", &[("A", "B"), ("B", "A")]),
            "B and A".to_string()
        );
        assert_eq!(fill("no keys", &[("X", "y")]), "no keys");
    }
}
