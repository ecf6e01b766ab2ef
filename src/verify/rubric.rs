//! The universal verifier: an LLM judge grades a rollout against the task's
//! `rubric_markdown`. It sees the task, the whole trajectory and the final state, and
//! must answer one JSON object with a label, a score and a reason per criterion.
//!
//! Unlike the checks this is not deterministic, so the grade is recorded as an event
//! (`RubricGraded`) and read back, never recomputed. An answer that is not in the
//! asked shape is an `error` grade with the reason, never a guessed score.

use serde::Deserialize;
use serde_json::Value;

use crate::config::secrets::Redactor;
use crate::domain::chat::{Message, Role, ToolSet};
use crate::domain::events::{ModelSettings, TokenUsage};
use crate::domain::verdict::{label_of, FULL_CREDIT, NO_CREDIT, PARTIAL_CREDIT};
use crate::domain::verdict::{CriterionGrade, RubricStatus, RubricVerdict};
use crate::llm::{ModelClient, ModelRequest};

/// Longest text of one message or observation shown to the judge.
const MAX_MESSAGE_CHARS: usize = 4_000;
/// Longest final state shown to the judge.
const MAX_STATE_CHARS: usize = 40_000;

const INSTRUCTIONS: &str = "You are a strict, fair grader of an AI agent's work. \
You are given a task, the rubric to grade it by, the agent's full trajectory (its \
messages, tool calls and what the tools answered) and the final state of the \
environment. Grade every criterion of the rubric from the evidence only: a claim the \
agent made that the trajectory or the final state does not support earns nothing.\n\n\
Answer with one JSON object and nothing else, in this shape:\n\
{\"criteria\": [{\"criterion\": \"<the criterion, briefly>\", \"label\": \"Full Credit\" | \
\"Partial Credit\" | \"No Credit\", \"score\": <number from 0 to 1>, \"reason\": \
\"<why, citing the evidence>\"}], \"label\": \"Full Credit\" | \"Partial Credit\" | \
\"No Credit\", \"score\": <overall number from 0 to 1>, \"reason\": \"<overall reason>\"}";

/// What the judge is shown.
pub struct Submission<'a> {
    pub task_name: &'a str,
    pub task_description: &'a str,
    pub rubric_markdown: &'a str,
    pub trajectory: &'a [Message],
    pub state: &'a Value,
}

/// The judge's conversation: the grading instructions, then the submission.
pub fn prompt(submission: &Submission) -> Vec<Message> {
    let mut text = format!(
        "# Task: {}\n\n{}\n\n# Rubric\n\n{}\n\n# Trajectory\n\n",
        submission.task_name,
        submission.task_description,
        submission.rubric_markdown.trim()
    );
    for message in submission.trajectory {
        if message.role == Role::System {
            continue;
        }
        let content = message.content.as_deref().unwrap_or_default();
        match message.role {
            Role::Tool => {
                let tool = message.name.as_deref().unwrap_or("tool");
                text.push_str(&format!("[{tool} answered] {}\n", clip(content)));
            }
            _ => {
                if !content.is_empty() {
                    text.push_str(&format!(
                        "[{}] {}\n",
                        role_name(message.role),
                        clip(content)
                    ));
                }
                for call in &message.tool_calls {
                    text.push_str(&format!(
                        "[assistant called {}] {}\n",
                        call.function.name,
                        clip(&call.function.arguments)
                    ));
                }
            }
        }
    }
    let state = serde_json::to_string(submission.state).unwrap_or_default();
    text.push_str(&format!("\n# Final state of the environment\n\n{}\n", {
        let (clipped, cut) = clip_to(&state, MAX_STATE_CHARS);
        if cut {
            format!("{clipped}… (cut at {MAX_STATE_CHARS} characters)")
        } else {
            clipped.to_string()
        }
    }));
    vec![Message::system(INSTRUCTIONS), Message::user(text)]
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

fn clip(text: &str) -> String {
    let (clipped, cut) = clip_to(text, MAX_MESSAGE_CHARS);
    if cut {
        format!("{clipped}…")
    } else {
        clipped.to_string()
    }
}

fn clip_to(text: &str, max: usize) -> (&str, bool) {
    match text.char_indices().nth(max) {
        Some((end, _)) => (&text[..end], true),
        None => (text, false),
    }
}

#[derive(Deserialize)]
struct Answer {
    criteria: Vec<AnswerCriterion>,
    score: Option<f64>,
    label: Option<String>,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
struct AnswerCriterion {
    criterion: String,
    label: Option<String>,
    score: f64,
    #[serde(default)]
    reason: String,
}

/// Reads the judge's answer (a JSON object, possibly in a code fence or with words
/// around it) into a grade, or says what is wrong with it.
pub fn parse(answer: &str, judge: &str) -> Result<RubricVerdict, String> {
    let (Some(start), Some(end)) = (answer.find('{'), answer.rfind('}')) else {
        return Err("the judge's answer has no JSON object".into());
    };
    if end < start {
        return Err("the judge's answer has no JSON object".into());
    }
    let parsed: Answer = serde_json::from_str(&answer[start..=end])
        .map_err(|e| format!("the judge's answer is not in the asked shape: {e}"))?;
    if parsed.criteria.is_empty() {
        return Err("the judge graded no criterion".into());
    }
    let mut criteria = Vec::with_capacity(parsed.criteria.len());
    for c in parsed.criteria {
        let score = in_unit(c.score, &format!("criterion `{}`", c.criterion))?;
        criteria.push(CriterionGrade {
            label: label(c.label.as_deref(), score)?,
            criterion: c.criterion,
            score,
            reason: c.reason,
        });
    }
    let score = match parsed.score {
        Some(s) => in_unit(s, "the overall score")?,
        None => criteria.iter().map(|c| c.score).sum::<f64>() / criteria.len() as f64,
    };
    Ok(RubricVerdict {
        status: RubricStatus::Graded,
        judge: Some(judge.to_string()),
        score: Some(score),
        label: Some(label(parsed.label.as_deref(), score)?),
        reason: parsed.reason,
        criteria,
    })
}

fn in_unit(score: f64, what: &str) -> Result<f64, String> {
    if (0.0..=1.0).contains(&score) {
        Ok(score)
    } else {
        Err(format!("{what} is {score}, outside [0, 1]"))
    }
}

/// The judge's label in its canonical spelling, or the one its score implies.
fn label(given: Option<&str>, score: f64) -> Result<String, String> {
    let Some(given) = given else {
        return Ok(label_of(score).to_string());
    };
    [FULL_CREDIT, PARTIAL_CREDIT, NO_CREDIT]
        .into_iter()
        .find(|l| l.eq_ignore_ascii_case(given.trim()))
        .map(str::to_string)
        .ok_or_else(|| format!("`{given}` is not a scoring label"))
}

/// A grade that could not be made, with the reason.
pub fn ungraded(status: RubricStatus, judge: Option<String>, reason: String) -> RubricVerdict {
    RubricVerdict {
        status,
        judge,
        score: None,
        label: None,
        reason,
        criteria: vec![],
    }
}

/// Hides secrets in the judge's words (reasons, criteria): a judge, or the provider
/// behind it, may quote the key it was called with. Labels are canonical already.
pub fn redact(verdict: &mut RubricVerdict, redactor: &Redactor) {
    redactor.redact_in_place(&mut verdict.reason);
    for grade in &mut verdict.criteria {
        redactor.redact_in_place(&mut grade.criterion);
        redactor.redact_in_place(&mut grade.reason);
    }
}

/// `provider/model`, how a judge is named in its grades.
pub fn judge_name(settings: &ModelSettings) -> String {
    format!("{}/{}", settings.provider, settings.model)
}

/// Asks `judge` to grade the submission. A failed call or an unusable answer is an
/// `error` grade; the token usage is returned whenever the judge answered.
pub async fn grade(
    judge: &dyn ModelClient,
    settings: &ModelSettings,
    submission: &Submission<'_>,
) -> (RubricVerdict, Option<TokenUsage>) {
    let name = judge_name(settings);
    let messages = prompt(submission);
    let reply = judge
        .complete(ModelRequest {
            messages: &messages,
            tools: ToolSet::none(),
            settings,
        })
        .await;
    match reply {
        Err(e) => (
            ungraded(
                RubricStatus::Error,
                Some(name),
                format!("the judge call failed: {e}"),
            ),
            None,
        ),
        Ok(reply) => {
            let text = reply.message.content.unwrap_or_default();
            let verdict = parse(&text, &name)
                .unwrap_or_else(|reason| ungraded(RubricStatus::Error, Some(name), reason));
            (verdict, reply.usage)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_judge_quoting_its_key_is_redacted_in_every_reason() {
        let answer = "{\"criteria\": [{\"criterion\": \"key sk-judge-1\", \"score\": 1, \
            \"reason\": \"saw sk-judge-1\"}], \"reason\": \"called with sk-judge-1\"}";
        let mut v = parse(answer, "openai/judge").unwrap();
        redact(&mut v, &Redactor::new(["sk-judge-1"]));
        assert_eq!(v.reason, "called with ***");
        assert_eq!(v.criteria[0].criterion, "key ***");
        assert_eq!(v.criteria[0].reason, "saw ***");
    }

    #[test]
    fn a_fenced_answer_with_words_around_it_is_read() {
        let answer = "Here is my grade:\n```json\n{\"criteria\": [{\"criterion\": \"tone\", \
            \"label\": \"full credit\", \"score\": 1, \"reason\": \"polite\"}, {\"criterion\": \
            \"facts\", \"score\": 0.5, \"reason\": \"one date wrong\"}], \"reason\": \"ok\"}\n```";
        let v = parse(answer, "openai/judge").unwrap();
        assert_eq!(v.status, RubricStatus::Graded);
        assert_eq!(
            v.score,
            Some(0.75),
            "the mean of the criteria when no overall"
        );
        assert_eq!(v.label.as_deref(), Some(PARTIAL_CREDIT));
        assert_eq!(v.criteria[0].label, FULL_CREDIT);
        assert_eq!(v.criteria[1].label, PARTIAL_CREDIT, "implied by 0.5");
        assert_eq!(v.judge.as_deref(), Some("openai/judge"));
    }

    #[test]
    fn answers_out_of_shape_are_errors_naming_the_problem() {
        for (answer, expected) in [
            ("I think it went well.", "no JSON object"),
            ("{\"criteria\": []}", "no criterion"),
            (
                "{\"criteria\": [{\"criterion\": \"c\", \"score\": 7}]}",
                "criterion `c` is 7",
            ),
            (
                "{\"criteria\": [{\"criterion\": \"c\", \"score\": 1, \"label\": \"Great\"}]}",
                "`Great` is not a scoring label",
            ),
            ("{\"score\": 1}", "not in the asked shape"),
        ] {
            let err = parse(answer, "j").unwrap_err();
            assert!(err.contains(expected), "{answer}: {err}");
        }
    }

    #[test]
    fn the_prompt_shows_task_rubric_trajectory_and_state_and_clips_long_text() {
        let long = "x".repeat(MAX_MESSAGE_CHARS + 10);
        let trajectory = vec![
            Message::system("secret system prompt"),
            Message::user("Answer Ana."),
            Message::assistant(Some(long), vec![]),
        ];
        let state = serde_json::json!({"email": {"sent": [{"to": ["ana@x.com"]}]}});
        let messages = prompt(&Submission {
            task_name: "Reply politely",
            task_description: "Answer Ana.",
            rubric_markdown: "- Be polite",
            trajectory: &trajectory,
            state: &state,
        });
        let text = messages[1].content.as_deref().unwrap();
        assert!(text.contains("# Task: Reply politely"));
        assert!(text.contains("- Be polite"));
        assert!(text.contains("ana@x.com"));
        assert!(!text.contains("secret system prompt"));
        assert!(text.contains(&format!("{}…", "x".repeat(MAX_MESSAGE_CHARS))));
        assert!(!text.contains(&"x".repeat(MAX_MESSAGE_CHARS + 1)));
    }
}
