//! The oracle: a task's reference solution played call by call against its
//! environment, the scripted people answering between the calls as they do in a
//! rollout. Authoring checks (`validate`) and the worlds' tests play it.

use crate::domain::chat::{FunctionCall, Message, ToolCall};
use crate::npc::{respond_scripted, NpcReply};
use crate::tools::Environment;

use super::{Scenario, Task};

/// What replaying a task's reference solution came to.
#[derive(Debug, Clone, PartialEq)]
pub struct OracleRun {
    /// What an oracle agent leaves: the task, each call and its result, the answer.
    pub trajectory: Vec<Message>,
    /// Each NPC reply delivered, with the index of the step it answered.
    pub replies: Vec<(usize, NpcReply)>,
    /// Steps that came back as errors: (index, observation).
    pub errors: Vec<(usize, String)>,
}

/// Replays the task's reference solution, delivering the scripted NPC replies after
/// every step that sent mail when `with_replies` (exactly as the step loop does). It
/// does not stop at a failed step, so the caller can score a run without replies.
pub fn replay_reference_solution(
    env: &mut Environment,
    scenario: &Scenario,
    task: &Task,
    with_replies: bool,
) -> OracleRun {
    let cast = task.cast(scenario);
    let mut run = OracleRun {
        trajectory: vec![Message::user(task.description.clone())],
        replies: Vec::new(),
        errors: Vec::new(),
    };
    for (i, step) in task.reference_solution.iter().enumerate() {
        let before = env.sent_count();
        let obs = env.call(&step.tool_name, &step.parameters);
        if obs.is_error {
            run.errors.push((i, obs.observation.clone()));
        }
        let id = format!("call_{i:03}");
        run.trajectory.push(Message::assistant(
            None,
            vec![ToolCall {
                id: id.clone(),
                kind: "function".into(),
                function: FunctionCall {
                    name: step.tool_name.clone(),
                    arguments: step.parameters.to_string(),
                },
            }],
        ));
        run.trajectory
            .push(Message::tool_result(id, &step.tool_name, obs.observation));
        if with_replies {
            for sent in env.sent_since(before) {
                for reply in respond_scripted(env, &cast, &sent) {
                    run.replies.push((i, reply));
                }
            }
        }
    }
    let answer = task
        .final_answer
        .clone()
        .unwrap_or_else(|| "Done.".to_string());
    run.trajectory
        .push(Message::assistant(Some(answer), Vec::new()));
    run
}

/// The oracle with scripted NPCs: the task's reference solution played step by step, but
/// NPC replies arrive between steps, and the replies must be exactly the ones the task
/// marks in `reference_npc_replies`. Fails on the first failed step.
pub fn run_reference_solution(
    env: &mut Environment,
    scenario: &Scenario,
    task: &Task,
) -> Result<Vec<Message>, String> {
    let run = replay_reference_solution(env, scenario, task, true);
    if let Some((i, observation)) = run.errors.first() {
        return Err(format!(
            "reference_solution[{i}] `{}` failed: {observation}",
            task.reference_solution[*i].tool_name
        ));
    }
    let got: Vec<(usize, &str)> = run
        .replies
        .iter()
        .map(|(i, r)| (*i, r.profile_id.as_str()))
        .collect();
    let want: Vec<(usize, &str)> = task
        .reference_npc_replies
        .iter()
        .map(|e| (e.after_step, e.profile_id.as_str()))
        .collect();
    if got != want {
        return Err(format!(
            "NPC replies (after step, profile) were {got:?}, but reference_npc_replies says {want:?}"
        ));
    }
    Ok(run.trajectory)
}
