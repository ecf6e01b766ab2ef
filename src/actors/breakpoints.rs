//! Named points in the actors that a test can wait for instead of sleeping: the actors
//! call [`Breakpoints::reach`] at each, and a [`Subscriber`] (from
//! `Application::breakpoints`) receives every point reached after it subscribed.
//! Nobody subscribed (the service in production): a point costs one atomic load and
//! the breakpoint is never built.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::mpsc;

/// A point the actors reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Breakpoint {
    /// A rollout holds its slot under the server's cap and begins its step loop.
    RolloutStarted { run_id: String, rollout_id: String },
    /// A rollout's model call for turn `step` is being sent, under the policy already
    /// read for it.
    ModelCallSent { rollout_id: String, step: u32 },
    /// A rollout took a step of this kind (`model`, `tool`, `verify`, `rubric`).
    StepTaken {
        rollout_id: String,
        kind: &'static str,
    },
    /// A rollout's step loop ended and what it recorded is durable; `finished`: it
    /// reached a terminal state.
    RolloutEnded {
        run_id: String,
        rollout_id: String,
        finished: bool,
    },
    /// A run's scheduler started nothing more because too many complete groups wait
    /// for a consumer; `running` rollouts go on.
    HeldBackByConsumers { run_id: String, running: usize },
    /// A run's scheduler started nothing more because its budget is spent; `running`
    /// rollouts stop before their next model call.
    HeldBackByBudget { run_id: String, running: usize },
    /// A run's actor took a change of its feed (an acknowledgement, a policy update).
    FeedChanged { run_id: String },
    /// A run's pause is recorded; its actor ends.
    RunPaused { run_id: String },
    /// A run's actor ended: nothing of the run runs on this node any more.
    RunEnded { run_id: String },
}

impl Breakpoint {
    /// The run it is about, when it names one.
    pub fn run_id(&self) -> Option<&str> {
        match self {
            Breakpoint::RolloutStarted { run_id, .. }
            | Breakpoint::RolloutEnded { run_id, .. }
            | Breakpoint::HeldBackByConsumers { run_id, .. }
            | Breakpoint::HeldBackByBudget { run_id, .. }
            | Breakpoint::FeedChanged { run_id }
            | Breakpoint::RunPaused { run_id }
            | Breakpoint::RunEnded { run_id } => Some(run_id),
            Breakpoint::ModelCallSent { .. } | Breakpoint::StepTaken { .. } => None,
        }
    }
}

/// Where the actors report the points they reach; cloned into their shared context.
#[derive(Clone, Default)]
pub struct Breakpoints {
    inner: Arc<Subscribers>,
}

#[derive(Default)]
struct Subscribers {
    /// Read without the lock at every point: zero while nobody listens.
    count: AtomicUsize,
    senders: Mutex<Vec<mpsc::UnboundedSender<Breakpoint>>>,
}

impl Breakpoints {
    /// The actors reached `point` (built only when somebody listens).
    pub fn reach(&self, point: impl FnOnce() -> Breakpoint) {
        if self.inner.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let point = point();
        let mut senders = self.inner.senders.lock();
        senders.retain(|sender| sender.send(point.clone()).is_ok());
        self.inner.count.store(senders.len(), Ordering::Relaxed);
    }

    /// Every point reached from now on, in order. Unbounded, so that a slow test
    /// never misses one; dropped, it stops receiving at the next point.
    pub fn subscribe(&self) -> Subscriber {
        let (sender, receiver) = mpsc::unbounded_channel();
        let mut senders = self.inner.senders.lock();
        senders.push(sender);
        self.inner.count.store(senders.len(), Ordering::Relaxed);
        Subscriber { receiver }
    }
}

/// The points reached since [`Breakpoints::subscribe`].
pub struct Subscriber {
    receiver: mpsc::UnboundedReceiver<Breakpoint>,
}

/// Long enough for a slow, shared machine: a wait that fails is a bug, not a hurry.
const DEADLINE: Duration = Duration::from_secs(60);

impl Subscriber {
    /// Waits for the first point that `wanted` accepts; answers every point passed on
    /// the way, that one last. Panics after a minute without it.
    pub async fn advance_till(&mut self, wanted: impl Fn(&Breakpoint) -> bool) -> Vec<Breakpoint> {
        let mut passed = Vec::new();
        let waited = tokio::time::timeout(DEADLINE, async {
            while let Some(point) = self.receiver.recv().await {
                let found = wanted(&point);
                passed.push(point);
                if found {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(
            waited,
            Ok(true),
            "the wanted breakpoint was not reached; passed: {passed:#?}"
        );
        passed
    }
}
