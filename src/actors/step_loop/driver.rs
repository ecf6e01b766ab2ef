//! A rollout's [`Driver`]: its state and how what it records reaches the log (batched
//! appends, one in flight at a time), and the errors a step ends with.

use std::sync::Arc;

use tokio::task::JoinHandle;

use super::redact::redact_event;
use super::RolloutJob;
use crate::actors::Deps;
use crate::config::secrets::Redactor;
use crate::domain::events::Event;
use crate::domain::ids::rollout_stream;
use crate::domain::rollout::RolloutState;
use crate::journal;
use crate::projections::RolloutContent;
use crate::store::StoreError;

/// Why a rollout cannot go on; recorded as `RolloutFailed`.
pub(super) struct Failure(pub(super) String);

pub(super) enum StepError {
    Failed(Failure),
    Cancelled,
    /// More than `max_staleness` policy versions behind (`on_stale: restart`), why.
    Stale(String),
    /// The run's budget is spent, with the reason.
    Paused(String),
    Store(StoreError),
}

impl From<StoreError> for StepError {
    fn from(e: StoreError) -> Self {
        StepError::Store(e)
    }
}

impl From<Failure> for StepError {
    fn from(f: Failure) -> Self {
        StepError::Failed(f)
    }
}

pub(super) struct Driver {
    pub(super) deps: Arc<Deps>,
    pub(super) job: RolloutJob,
    stream: String,
    pub(super) state: RolloutState,
    /// Events already folded into `state` whose append has not been started. Against
    /// a local environment everything a model reply leads to (its tool calls, the
    /// replies they caused, the verdict) is deterministic given the events before it,
    /// so it is recorded in one append with that reply, started when the next model
    /// call is and made durable while that call is in flight. A crash before it is
    /// durable loses the reply and what followed from it: resuming calls the model
    /// again, as after a crash during the call.
    unrecorded: Vec<Event>,
    /// The last revision handed to the log (durable or in flight).
    submitted: Option<u64>,
    in_flight: Option<JoinHandle<Result<(), StoreError>>>,
    /// A remote environment acts outside this process: every step is durable before
    /// the next one is taken.
    write_ahead: bool,
    /// The server's secrets, and the run's keys once they are read.
    pub(super) redactor: Redactor,
    /// A continuous run's rollout folds what it records into its content (what the
    /// feed delivers of it), left for the feed once the rollout is over (the feed
    /// reads it instead of the log).
    pub(super) content: Option<RolloutContent>,
}

impl Driver {
    pub(super) fn new(deps: Arc<Deps>, job: RolloutJob, state: RolloutState) -> Driver {
        Driver {
            stream: rollout_stream(&job.rollout.rollout_id),
            write_ahead: job.run.model.tool_server_url.is_some(),
            submitted: state.revision,
            redactor: deps.redactor.clone(),
            deps,
            job,
            state,
            unrecorded: Vec::new(),
            in_flight: None,
            content: None,
        }
    }

    /// Folds `events` (several of them are one atomic append: a tool call and the
    /// replies it caused) into the state and records them: at once against a remote
    /// environment, else with the next append ([`Driver::start_append`]).
    pub(super) async fn record_all(&mut self, events: Vec<Event>) -> Result<(), StoreError> {
        for mut event in events {
            redact_event(&self.redactor, &mut event);
            let revision = self.state.revision.map_or(0, |r| r + 1);
            self.state.evolve(&event, revision);
            self.job.budget.add(&event);
            if let Some(content) = self.content.as_mut() {
                content.fold_delivered(&event);
            }
            self.unrecorded.push(event);
        }
        if self.write_ahead {
            self.sync().await?;
        }
        Ok(())
    }

    pub(super) async fn record(&mut self, event: Event) -> Result<(), StoreError> {
        self.record_all(vec![event]).await
    }

    /// Starts appending what is unrecorded, once the append before it has finished
    /// (one in flight at a time keeps a stream's appends in order).
    pub(super) async fn start_append(&mut self) -> Result<(), StoreError> {
        self.settle().await?;
        if self.unrecorded.is_empty() {
            return Ok(());
        }
        let events = std::mem::take(&mut self.unrecorded);
        let after = self.submitted;
        self.submitted = self.state.revision;
        let store = self.deps.store.clone();
        let stream = self.stream.clone();
        self.in_flight = Some(tokio::spawn(async move {
            journal::append(store.as_ref(), &stream, after, &events)
                .await
                .map(drop)
        }));
        Ok(())
    }

    /// Before a call of a model that is free to ask again: starts the next append only
    /// if the log is idle, so steps never wait for a sync and what they record goes
    /// with the append after the one in flight. A crash loses at most the steps taken
    /// since the last durable append, and asking again repeats them exactly.
    pub(super) async fn start_append_if_idle(&mut self) -> Result<(), StoreError> {
        if self.in_flight.as_ref().is_some_and(|a| !a.is_finished()) {
            return Ok(());
        }
        self.start_append().await
    }

    /// Waits for the append in flight, if any.
    pub(super) async fn settle(&mut self) -> Result<(), StoreError> {
        match self.in_flight.take() {
            Some(append) => append.await.map_err(|e| {
                StoreError::Io(std::io::Error::other(format!("the append task died: {e}")))
            })?,
            None => Ok(()),
        }
    }

    /// Makes everything recorded so far durable.
    pub(super) async fn sync(&mut self) -> Result<(), StoreError> {
        self.start_append().await?;
        self.settle().await
    }
}
