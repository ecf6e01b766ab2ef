//! Running a tool call the way a rollout does, from the model's raw arguments text.
//! The step loop uses it for live calls and to rebuild an environment from recorded
//! calls; the rollout view uses it to show the final state. One function for all
//! three, so a rebuilt environment is the one the rollout saw.

use serde_json::Value;

use super::email::IncomingEmail;
use super::{Environment, ToolError};
use crate::domain::events::{NpcEmail, NpcReplied};

/// What a call came to: the server it went to (if any), the observation, whether
/// it was an error.
#[derive(Debug, Clone, PartialEq)]
pub struct CallOutcome {
    pub server: Option<String>,
    pub observation: String,
    pub is_error: bool,
}

/// Parses the model's arguments (JSON text, possibly invalid) into parameters.
pub fn parse_arguments(arguments: &str) -> Result<Value, String> {
    if arguments.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_str(arguments)
        .map_err(|e| format!("Error: the arguments are not valid JSON ({e}); send a JSON object"))
}

/// Runs one call against a local environment.
pub fn execute(env: &mut Environment, tool_name: &str, arguments: &str) -> CallOutcome {
    let Some(server) = env.server_of(tool_name).map(str::to_string) else {
        let available = env
            .all_tools()
            .into_iter()
            .map(|t| t.name)
            .collect::<Vec<_>>()
            .join(", ");
        return CallOutcome {
            server: None,
            observation: format!("Error: unknown tool `{tool_name}`. Available tools: {available}"),
            is_error: true,
        };
    };
    let parameters = match parse_arguments(arguments) {
        Ok(parameters) => parameters,
        Err(observation) => {
            return CallOutcome {
                server: Some(server),
                observation,
                is_error: true,
            }
        }
    };
    match env.step(&server, tool_name, &parameters) {
        Some(result) => CallOutcome {
            server: Some(server),
            observation: result.observation,
            is_error: result.is_error,
        },
        None => CallOutcome {
            observation: format!("Error: tool server `{server}` is not available"),
            server: Some(server),
            is_error: true,
        },
    }
}

/// The email a recorded `NpcReplied` delivers.
pub fn incoming(email: &NpcEmail) -> IncomingEmail {
    IncomingEmail {
        from: email.from.clone(),
        to: email.to.clone(),
        cc: email.cc.clone(),
        subject: email.subject.clone(),
        body: email.body.clone(),
        in_reply_to: email.in_reply_to.clone(),
    }
}

/// One recorded tool call as a rebuild replays it: the tool name and the raw
/// arguments, or `None` for a call that failed by injection (`tool_faults`) and never
/// reached the environment. It still counts, because replies are placed by count.
pub type RecordedCall<'a> = Option<(&'a str, &'a str)>;

/// The recorded call of a `ToolCalled`-shaped record.
pub fn recorded<'a>(
    tool_name: &'a str,
    arguments: &'a str,
    fault: Option<&str>,
) -> RecordedCall<'a> {
    fault.is_none().then_some((tool_name, arguments))
}

/// The environment of a rollout after the given recorded calls and the recorded
/// replies of simulated people (each delivered after its number of calls), rebuilt
/// over the world's seed. Replies are inputs, never recomputed, so a model-written
/// reply replays exactly. `watch` sees the environment after each number of calls: 0
/// (the seed state), then 1, 2, … with the replies each call was followed by.
pub fn rebuild<'a>(
    world: &super::World,
    seed: u64,
    calls: impl IntoIterator<Item = RecordedCall<'a>>,
    replies: &[NpcReplied],
    mut watch: impl FnMut(u32, &Environment),
) -> Result<Environment, ToolError> {
    let mut env = Environment::new(world, seed)?;
    watch(0, &env);
    for (done, call) in calls.into_iter().enumerate() {
        if let Some((tool_name, arguments)) = call {
            execute(&mut env, tool_name, arguments);
        }
        let done = done as u32 + 1;
        for reply in replies.iter().filter(|r| r.after_tool_calls == done) {
            // A reply that was delivered live delivers again: same state, same input.
            let _ = env.deliver_email(&incoming(&reply.email));
        }
        watch(done, &env);
    }
    Ok(env)
}
