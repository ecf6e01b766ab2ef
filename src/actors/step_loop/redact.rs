//! Redaction of what a rollout records: the run's and the server's secrets hidden in
//! every text that came from outside, before the event is folded and appended.

use crate::config::secrets::Redactor;
use crate::domain::chat::Message;
use crate::domain::events::Event;
use crate::verify::rubric;

/// Hides the run's and the server's secrets in what came from outside (a model's
/// or person's words and tool calls, a tool server's answer, a judge's grade, an
/// error quoting a provider) before the event is folded and recorded: a provider
/// that echoes the headers it got puts the key there. The calls the model asked for
/// are executed as recorded, so a rebuilt environment sees what the live one did.
pub(super) fn redact_event(redactor: &Redactor, event: &mut Event) {
    let redact = |text: &mut String| redactor.redact_in_place(text);
    match event {
        Event::ModelCalled(e) => redact_message(redactor, &mut e.message),
        Event::ContextSummarized(e) => redact(&mut e.summary),
        Event::ToolCalled(e) => {
            redact(&mut e.arguments);
            redact(&mut e.observation);
        }
        Event::NpcReplied(e) => {
            redact(&mut e.email.subject);
            redact(&mut e.email.body);
        }
        Event::RubricGraded(e) => rubric::redact(&mut e.rubric, redactor),
        Event::RolloutFailed(e) => redact(&mut e.error),
        _ => {}
    }
}

fn redact_message(redactor: &Redactor, message: &mut Message) {
    if let Some(content) = &mut message.content {
        redactor.redact_in_place(content);
    }
    for call in &mut message.tool_calls {
        redactor.redact_in_place(&mut call.function.arguments);
    }
}
