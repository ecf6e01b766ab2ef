//! The rubric judge (the universal verifier): a finished rollout's grade, also asked
//! again by re-verification, and the status label its metric counts.

use std::time::Duration;

use crate::actors::Deps;
use crate::domain::chat::Message;
use crate::domain::events::{RunLaunched, TokenUsage};
use crate::domain::secret::ApiKey;
use crate::domain::verdict::{RubricStatus, RubricVerdict};
use crate::scenarios::Task;
use crate::verify::rubric;

/// The universal verifier's grade of a finished rollout: by the run's judge, else the
/// server's, else skipped with that reason. The judge failing is a grade with status
/// `error`, not a failed rollout: the checks' verdict stands. Its words are redacted
/// (a judge may quote the key it was called with).
pub(in crate::actors) async fn grade_rubric(
    deps: &Deps,
    run: &RunLaunched,
    task: &Task,
    key: Option<ApiKey>,
    trajectory: &[Message],
    state: &serde_json::Value,
) -> (RubricVerdict, Option<TokenUsage>) {
    let redactor = deps.redactor.with(key.as_ref().map(ApiKey::expose));
    let (mut verdict, usage) = ask_judge(deps, run, task, key, trajectory, state).await;
    rubric::redact(&mut verdict, &redactor);
    (verdict, usage)
}

async fn ask_judge(
    deps: &Deps,
    run: &RunLaunched,
    task: &Task,
    key: Option<ApiKey>,
    trajectory: &[Message],
    state: &serde_json::Value,
) -> (RubricVerdict, Option<TokenUsage>) {
    let judge = match deps.agents.judge_agent(run, key) {
        Ok(Some(judge)) => judge,
        Ok(None) => {
            let reason = "no judge model is configured: set `judge_model_config` on the run \
                          or `judge` in the server config";
            return (
                rubric::ungraded(RubricStatus::Skipped, None, reason.into()),
                None,
            );
        }
        Err(e) => {
            return (
                rubric::ungraded(RubricStatus::Error, None, format!("judge: {e}")),
                None,
            )
        }
    };
    let (client, settings) = judge;
    let submission = rubric::Submission {
        task_name: &task.name,
        task_description: &task.description,
        rubric_markdown: task.judge_rubric().unwrap_or_default(),
        trajectory,
        state,
    };
    let timeout = Duration::from_secs(deps.model_timeout_secs);
    tokio::time::timeout(
        timeout,
        rubric::grade(client.as_ref(), &settings, &submission),
    )
    .await
    .unwrap_or_else(|_| {
        (
            rubric::ungraded(
                RubricStatus::Error,
                Some(rubric::judge_name(&settings)),
                format!("the judge did not answer within {}s", timeout.as_secs()),
            ),
            None,
        )
    })
}

pub(super) fn rubric_status(rubric: &RubricVerdict) -> &'static str {
    match rubric.status {
        RubricStatus::Graded => "graded",
        RubricStatus::Skipped => "skipped",
        RubricStatus::Error => "error",
    }
}
