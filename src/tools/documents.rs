//! The scenario's seed documents as tool servers serve them to the agent: the HRMS's
//! `list_documents` / `read_document` and the knowledge bases (`search_kb` /
//! `read_kb_article`) of the service desk, the shop and the finance team. One reading
//! of a title, one keyword search and one "not found, here is what exists" answer, so
//! every server that serves documents behaves the same way.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// A document's title: its first Markdown heading, else its file name.
pub fn title<'a>(name: &'a str, text: &'a str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with('#'))
        .map(|l| l.trim_start_matches('#').trim())
        .unwrap_or(name)
}

/// The document named `name` (with or without its `.md`): its file name and text, or
/// an in-band error naming every document that exists (`noun`: "document", "article").
pub fn find<'a>(
    documents: &'a BTreeMap<String, String>,
    name: &str,
    noun: &str,
) -> Result<(&'a str, &'a str), String> {
    let name = name.trim();
    documents
        .get_key_value(name)
        .or_else(|| documents.get_key_value(&format!("{name}.md")))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .ok_or_else(|| missing(documents, name, noun))
}

/// The in-band answer for a document that does not exist: every one that does.
pub fn missing(documents: &BTreeMap<String, String>, name: &str, noun: &str) -> String {
    format!(
        "no {noun} `{name}`. Available: {}",
        documents.keys().cloned().collect::<Vec<_>>().join(", ")
    )
}

/// `search_kb`: articles containing the query's words, best first (by how many words
/// they contain, the name breaking ties so the order is stable), each with its title
/// and the first line that mentions a word; no words lists every article.
pub fn search(documents: &BTreeMap<String, String>, query: Option<&str>) -> Value {
    let words: Vec<String> = query
        .unwrap_or("")
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 1)
        .map(str::to_lowercase)
        .collect();
    let mut hits: Vec<(usize, &String, Value)> = documents
        .iter()
        .filter_map(|(name, text)| {
            let haystack = format!("{name}\n{text}").to_lowercase();
            let score = words
                .iter()
                .filter(|w| haystack.contains(w.as_str()))
                .count();
            (words.is_empty() || score > 0).then(|| {
                let snippet: String = text
                    .lines()
                    .find(|l| {
                        !l.starts_with('#') && {
                            let l = l.to_lowercase();
                            words.iter().any(|w| l.contains(w.as_str()))
                        }
                    })
                    .unwrap_or_default()
                    .chars()
                    .take(240)
                    .collect();
                let article = json!({
                    "article_id": name,
                    "title": title(name, text),
                    "snippet": snippet,
                });
                (score, name, article)
            })
        })
        .collect();
    hits.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let articles: Vec<Value> = hits.into_iter().map(|(_, _, v)| v).collect();
    json!({
        "total": articles.len(),
        "articles": articles,
        "all_articles": documents.keys().collect::<Vec<_>>(),
    })
}

/// `read_kb_article`: one article in full.
pub fn read_article(documents: &BTreeMap<String, String>, id: &str) -> Result<Value, String> {
    let (name, text) = find(documents, id, "article")?;
    Ok(json!({"article_id": name, "title": title(name, text), "content": text}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs() -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "refund_policy.md".to_string(),
                "# Refund policy\n\nRefunds above $200 need approval.".to_string(),
            ),
            (
                "returns_policy.md".to_string(),
                "# Returns\n\nThe return window is 30 days; refunds follow.".to_string(),
            ),
        ])
    }

    #[test]
    fn search_ranks_by_words_found_then_name_and_quotes_a_line() {
        let found = search(&docs(), Some("return window refunds"));
        assert_eq!(found["total"], 2);
        assert_eq!(found["articles"][0]["article_id"], "returns_policy.md");
        assert_eq!(
            found["articles"][0]["snippet"],
            "The return window is 30 days; refunds follow."
        );
        assert_eq!(found["articles"][1]["title"], "Refund policy");
        assert_eq!(search(&docs(), None)["total"], 2);
        assert_eq!(search(&docs(), Some("payroll"))["total"], 0);
    }

    #[test]
    fn articles_are_found_with_or_without_their_extension_and_never_outside() {
        let read = read_article(&docs(), " refund_policy ").unwrap();
        assert_eq!(read["article_id"], "refund_policy.md");
        assert_eq!(read["title"], "Refund policy");
        let missing = read_article(&docs(), "../../etc/passwd").unwrap_err();
        assert_eq!(
            missing,
            "no article `../../etc/passwd`. Available: refund_policy.md, returns_policy.md"
        );
        assert!(find(&docs(), "x", "document")
            .unwrap_err()
            .starts_with("no document `x`"));
    }
}
