//! The crate's layering, checked from the source: which top-level parts of `src/` may
//! name which (`crate::…` paths in `use` lines, code and doc links alike).
//!
//! Rules:
//! - `domain` names nothing of the crate;
//! - `store` never names `actors`, `api`, `projections`;
//! - `projections` never name `actors`, `llm`, `verify`;
//! - only `main`, `lib` and `startup` name `api`;
//! - `tools`, `llm`, `verify` never name `actors`, `api`, `scenarios`;
//! - no circle between parts.
//!
//! `STILL_TANGLED` lists the edges that break them today, each to be removed by
//! untangling, never added to: the test fails on a new one and on one that is gone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// (from, to) edges known to break a rule or to close a circle. Empty since the worlds'
/// scenario tests moved to `scenarios/worlds`, and it must stay empty: an edge against
/// the layering is untangled, not listed here.
const STILL_TANGLED: &[(&str, &str)] = &[];

/// part → every part it names, with a file that does.
type Edges = BTreeMap<String, BTreeMap<String, String>>;

fn part_of(relative: &Path) -> String {
    let first = relative.components().next().expect("a file under src");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_string()
}

/// The parts a file names: `crate::part` and each top-level name in `crate::{…}`.
fn named_parts(text: &str) -> BTreeSet<String> {
    let mut parts = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group: skip nested braces.
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        parts.insert(ident(item.trim()));
                        item.clear();
                    }
                    _ if depth == 0 => item.push(c),
                    _ => {}
                }
            }
            parts.insert(ident(item.trim()));
        } else {
            parts.insert(ident(rest));
        }
    }
    parts.retain(|p| !p.is_empty());
    parts
}

fn edges() -> Edges {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut edges = Edges::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(&src).expect("under src");
                let from = part_of(relative);
                let text = std::fs::read_to_string(&path).expect("a readable source file");
                for to in named_parts(&text) {
                    if to != from {
                        edges
                            .entry(from.clone())
                            .or_default()
                            .entry(to)
                            .or_insert_with(|| relative.display().to_string());
                    }
                }
            }
        }
    }
    edges
}

fn breaks_a_rule(from: &str, to: &str) -> bool {
    let never: &[&str] = match from {
        "domain" => return true,
        "store" => &["actors", "api", "projections"],
        "projections" => &["actors", "llm", "verify"],
        "tools" | "llm" | "verify" => &["actors", "api", "scenarios"],
        _ => &[],
    };
    never.contains(&to) || (to == "api" && !matches!(from, "main" | "lib" | "startup"))
}

/// Edges on a circle: `from → to` where `to` reaches `from` back.
fn circular(edges: &Edges) -> BTreeSet<(String, String)> {
    let reaches = |start: &str, goal: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![start.to_string()];
        while let Some(part) = todo.pop() {
            if part == goal {
                return true;
            }
            if seen.insert(part.clone()) {
                todo.extend(edges.get(&part).into_iter().flat_map(|e| e.keys().cloned()));
            }
        }
        false
    };
    edges
        .iter()
        .flat_map(|(from, tos)| tos.keys().map(move |to| (from.clone(), to.clone())))
        .filter(|(from, to)| reaches(to, from))
        .collect()
}

#[test]
fn parts_name_only_what_the_layering_allows_and_no_circle_closes() {
    let edges = edges();
    assert!(
        edges.contains_key("api"),
        "the scan found the crate's parts"
    );
    let tangled: BTreeSet<(String, String)> = STILL_TANGLED
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let ruled: BTreeSet<(String, String)> = edges
        .iter()
        .flat_map(|(from, tos)| tos.keys().map(move |to| (from.clone(), to.clone())))
        .filter(|(from, to)| breaks_a_rule(from, to))
        .collect();
    let file = |(from, to): &(String, String)| format!("{from} → {to} ({})", edges[from][to]);
    let broken: Vec<String> = ruled.difference(&tangled).map(file).collect();
    assert!(
        broken.is_empty(),
        "imports against the layering: {broken:#?}"
    );
    // Circles the known edges do not explain: the graph without them has none.
    let mut untangled = edges.clone();
    for (from, to) in &tangled {
        if let Some(tos) = untangled.get_mut(from) {
            tos.remove(to);
        }
    }
    let closing: Vec<String> = circular(&untangled).iter().map(file).collect();
    assert!(closing.is_empty(), "imports closing a circle: {closing:#?}");
    let circles = circular(&edges);
    let gone: Vec<&(String, String)> = tangled
        .iter()
        .filter(|e| !ruled.contains(*e) && !circles.contains(*e))
        .collect();
    assert!(
        gone.is_empty(),
        "untangled, so take them off STILL_TANGLED: {gone:?}"
    );
}

#[test]
fn the_scan_reads_grouped_and_plain_paths() {
    let text = "use crate::{domain::chat::{Message, Role}, tools};\nlet x = crate::verify::combine(a);\n/// [`crate::store`]";
    let parts: Vec<String> = named_parts(text).into_iter().collect();
    assert_eq!(parts, ["domain", "store", "tools", "verify"]);
    assert!(breaks_a_rule("projections", "verify"));
    assert!(breaks_a_rule("dashboard", "api"));
    assert!(!breaks_a_rule("startup", "api"));
    assert!(!breaks_a_rule("actors", "scenarios"));
}
