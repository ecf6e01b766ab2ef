//! Run leases when several nodes share one KurrentDB log (`--store`): a node drives a
//! run only while it holds the run's lease ([`crate::domain::lease`]). [`Leases`]
//! takes, keeps and gives up this node's leases; [`keep`] runs the node's loops:
//!
//! - every third of the lease time, on a loop of its own, it renews the leases of the
//!   runs it drives (in the term it holds) and gives up those it no longer drives; a
//!   lease it cannot keep (another node has it, or the store stays silent while it
//!   would lapse) halts the run here without a terminal event, for the new holder;
//! - it takes the unfinished runs nobody holds (their holder stopped renewing) while
//!   the server-wide cap has room, and resumes them from the log;
//! - it follows the log for cancels and deletions recorded by other nodes and carries
//!   them out on the runs it drives.
//!
//! Every lease event is appended with the stream's expected revision, so of two nodes
//! that decide at once one is refused: a run never has two holders. Nodes' clocks must
//! agree to well within the lease time (NTP), since expiry is wall-clock time.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use chrono::Utc;
use futures::StreamExt;
use parking_lot::Mutex;

use super::registry::{CancelRun, HaltRun, IsActive, Registry, StartRun};
use super::{Gym, GymError};
use crate::domain::events::Event;
use crate::domain::ids::lease_stream;
use crate::domain::lease::{decide, LeaseCommand, LeaseRefusal, LeaseState};
use crate::journal;
use crate::metrics::Metrics;
use crate::projections::Projections;
use crate::store::{subscribe_all, EventStore, StoreError};

/// Appends refused by a concurrent writer before an operation gives up for this time.
const CONFLICT_RETRIES: usize = 3;
/// Lease streams renewed at once per tick.
const RENEW_CONCURRENCY: usize = 64;

/// This node's view of one run's lease; one operation at a time.
#[derive(Default)]
struct Slot {
    state: LeaseState,
    /// This node holds the lease, as far as its last append tells.
    held: bool,
}

pub struct Leases {
    store: Arc<dyn EventStore>,
    metrics: Metrics,
    node_id: String,
    ttl: chrono::Duration,
    period: Duration,
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>,
}

impl Leases {
    pub fn new(
        store: Arc<dyn EventStore>,
        metrics: Metrics,
        node_id: String,
        ttl: Duration,
    ) -> Arc<Leases> {
        Arc::new(Leases {
            store,
            metrics,
            node_id,
            ttl: chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(10)),
            period: ttl / 3,
            slots: Mutex::default(),
        })
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    fn slot(&self, run_id: &str) -> Arc<tokio::sync::Mutex<Slot>> {
        self.slots
            .lock()
            .entry(run_id.to_string())
            .or_default()
            .clone()
    }

    /// Drops the slot of a run this node no longer holds, unless an operation has it.
    fn forget(&self, run_id: &str) {
        let mut slots = self.slots.lock();
        if let Some(slot) = slots.get(run_id) {
            let idle = Arc::strong_count(slot) == 1 && slot.try_lock().is_ok_and(|s| !s.held);
            if idle {
                slots.remove(run_id);
            }
        }
    }

    /// Decides `command` on the slot's state and appends the outcome, expecting the
    /// stream unchanged. The cached state is tried first; a refusal or a conflict
    /// reads what it has not seen of the stream and decides again.
    async fn apply(
        &self,
        run_id: &str,
        slot: &mut Slot,
        command: impl Fn() -> LeaseCommand,
    ) -> Result<Result<(), LeaseRefusal>, StoreError> {
        let mut refreshed = false;
        let mut conflicts = 0;
        loop {
            let events = match decide(&slot.state, run_id, command()) {
                Ok(events) => events,
                Err(refusal) if refreshed => return Ok(Err(refusal)),
                Err(_) => {
                    journal::refresh_lease(self.store.as_ref(), run_id, &mut slot.state).await?;
                    refreshed = true;
                    continue;
                }
            };
            if events.is_empty() {
                return Ok(Ok(()));
            }
            let stream = lease_stream(run_id);
            match journal::append(self.store.as_ref(), &stream, slot.state.revision, &events).await
            {
                Ok(result) => {
                    let first = result.next_expected_revision + 1 - events.len() as u64;
                    for (i, event) in events.iter().enumerate() {
                        slot.state.evolve(event, first + i as u64);
                    }
                    return Ok(Ok(()));
                }
                Err(StoreError::WrongExpectedVersion { .. }) if conflicts < CONFLICT_RETRIES => {
                    conflicts += 1;
                    journal::refresh_lease(self.store.as_ref(), run_id, &mut slot.state).await?;
                    refreshed = true;
                }
                Err(StoreError::WrongExpectedVersion { .. }) => {
                    return Ok(Err(LeaseRefusal::NotHeld))
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn acquire_command(&self) -> impl Fn() -> LeaseCommand + '_ {
        || LeaseCommand::Acquire {
            node_id: self.node_id.clone(),
            now: Utc::now(),
            ttl: self.ttl,
        }
    }

    /// Records whether this node holds the slot's lease, keeping the gauge in step.
    fn set_held(&self, slot: &mut Slot, held: bool) {
        if slot.held != held {
            slot.held = held;
            if held {
                self.metrics.leases_held.inc();
            } else {
                self.metrics.leases_held.dec();
            }
        }
    }

    /// Takes the lease into the locked slot; answers whether this node holds it.
    async fn acquire_locked(&self, run_id: &str, slot: &mut Slot) -> Result<bool, StoreError> {
        match self.apply(run_id, slot, self.acquire_command()).await? {
            Ok(()) => {
                self.set_held(slot, true);
                Ok(true)
            }
            Err(refusal) => {
                tracing::debug!(run_id, %refusal, "run not started here");
                Ok(false)
            }
        }
    }

    /// Takes the run's lease (or keeps it, if this node holds it), then starts the run
    /// here; answers whether it did. The slot stays locked in between, so the lease
    /// is not given up under the starting actor.
    pub(super) async fn start(
        &self,
        registry: &Addr<Registry>,
        start: StartRun,
    ) -> Result<bool, StoreError> {
        let run_id = start.run.run_id.clone();
        let slot = self.slot(&run_id);
        let started = {
            let mut guard = slot.lock().await;
            let held = self.acquire_locked(&run_id, &mut guard).await?;
            if held {
                registry.do_send(start);
            }
            held
        };
        drop(slot);
        if !started {
            self.forget(&run_id);
        }
        Ok(started)
    }

    /// Takes over a run no node holds: the lease first, then `prepare` reads from the
    /// log what to start, so nothing recorded before the lease (a pause, a cancel) is
    /// missed. Skipped if the run already has an actor here. Answers whether it
    /// started; a lease taken for nothing is given up by the next tick.
    async fn take_over<F, Fut>(
        &self,
        registry: &Addr<Registry>,
        run_id: &str,
        prepare: F,
    ) -> Result<bool, GymError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<StartRun>, GymError>>,
    {
        let slot = self.slot(run_id);
        let mut guard = slot.lock().await;
        if !self.acquire_locked(run_id, &mut guard).await? || is_active(registry, run_id).await {
            return Ok(false);
        }
        match prepare().await? {
            Some(start) => {
                registry.do_send(start);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Appends the release of the lease held in the locked slot.
    async fn release_locked(&self, run_id: &str, slot: &mut Slot) {
        let release = || LeaseCommand::Release {
            node_id: self.node_id.clone(),
            now: Utc::now(),
        };
        match self.apply(run_id, slot, release).await {
            Ok(_) => self.set_held(slot, false),
            // It lapses by itself; the next tick tries again meanwhile.
            Err(error) => tracing::warn!(run_id, %error, "could not release a run's lease"),
        }
    }

    /// Gives the lease up once the run has no actor here (it ended or paused).
    pub(super) async fn release_if_idle(&self, run_id: &str, registry: &Addr<Registry>) {
        let slot = self.slot(run_id);
        let mut guard = slot.lock().await;
        if !guard.held || is_active(registry, run_id).await {
            return;
        }
        self.release_locked(run_id, &mut guard).await;
        drop(guard);
        drop(slot);
        self.forget(run_id);
    }

    /// Renews the lease of a run this node holds; a lease it cannot keep
    /// is given up here and the run's actor halted. Out of reach of the store, the
    /// lease counts as lost as soon as it would lapse before the next renewal.
    async fn renew(&self, run_id: &str, registry: &Addr<Registry>) {
        let slot = self.slot(run_id);
        let mut guard = slot.lock().await;
        if !guard.held {
            drop(guard);
            drop(slot);
            return self.forget(run_id);
        }
        if !is_active(registry, run_id).await {
            drop(guard);
            return self.release_if_idle(run_id, registry).await;
        }
        let renew = || LeaseCommand::Renew {
            node_id: self.node_id.clone(),
            now: Utc::now(),
            ttl: self.ttl,
        };
        let renewed = tokio::time::timeout(self.period, self.apply(run_id, &mut guard, renew));
        let lost = match renewed.await {
            Ok(Ok(Ok(()))) => false,
            Ok(Ok(Err(refusal))) => {
                tracing::warn!(run_id, %refusal, "lease lost");
                true
            }
            outcome => {
                let error = match outcome {
                    Ok(Err(error)) => error.to_string(),
                    _ => "the store did not answer in time".to_string(),
                };
                let next_renewal =
                    Utc::now() + chrono::Duration::from_std(self.period).unwrap_or_default();
                let lapsing = guard
                    .state
                    .holder_at(next_renewal)
                    .is_none_or(|lease| lease.node_id != self.node_id);
                tracing::warn!(run_id, %error, lapsing, "could not renew a run's lease");
                lapsing
            }
        };
        if lost {
            self.set_held(&mut guard, false);
            self.metrics.leases_lost.inc();
            registry.do_send(HaltRun {
                run_id: run_id.to_string(),
            });
        }
    }

    /// Halts every run this node holds and releases its lease (the node stops).
    pub(super) async fn give_up_all(&self, registry: &Addr<Registry>) {
        let release = |run_id: String| async move {
            let slot = self.slot(&run_id);
            let mut guard = slot.lock().await;
            if !guard.held {
                return;
            }
            let _ = registry
                .send(HaltRun {
                    run_id: run_id.clone(),
                })
                .await;
            self.release_locked(&run_id, &mut guard).await;
        };
        futures::stream::iter(self.runs())
            .for_each_concurrent(RENEW_CONCURRENCY, release)
            .await;
    }

    fn runs(&self) -> Vec<String> {
        self.slots.lock().keys().cloned().collect()
    }
}

async fn is_active(registry: &Addr<Registry>, run_id: &str) -> bool {
    registry
        .send(IsActive {
            run_id: run_id.to_string(),
        })
        .await
        .unwrap_or(true)
}

/// The node's lease loops (see the module's documentation); they run until the store
/// closes. Renewals have a loop of their own, so a long takeover never delays them.
pub async fn keep(leases: Arc<Leases>, gym: Gym, projections: Projections) {
    actix::spawn(follow_commands(gym.clone()));
    actix::spawn(renew_all(leases.clone(), gym.registry.clone()));
    let mut tick = tokio::time::interval(leases.period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        take_orphans(&leases, &gym, &projections).await;
    }
}

async fn renew_all(leases: Arc<Leases>, registry: Addr<Registry>) {
    let mut tick = tokio::time::interval(leases.period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        futures::stream::iter(leases.runs())
            .for_each_concurrent(RENEW_CONCURRENCY, |run_id| {
                let (leases, registry) = (&leases, &registry);
                async move { leases.renew(&run_id, registry).await }
            })
            .await;
    }
}

/// Takes over unfinished runs that no node holds, as many rollouts as the server-wide
/// cap has room for.
async fn take_orphans(leases: &Leases, gym: &Gym, projections: &Projections) {
    let mut room = gym.deps.global.available_permits();
    if room == 0 {
        return;
    }
    let orphans =
        projections.read(|views| views.orphaned_runs(Utc::now(), &leases.node_id, leases.ttl));
    for (run_id, rollout_ids) in orphans {
        if is_active(&gym.registry, &run_id).await {
            continue;
        }
        let count = rollout_ids.len();
        let prepare = || gym.prepare_resume(&run_id, rollout_ids);
        match leases.take_over(&gym.registry, &run_id, prepare).await {
            Ok(true) => {
                leases.metrics.lease_takeovers.inc();
                tracing::info!(run_id, rollouts = count, "took over a run no node holds");
                room = room.saturating_sub(count);
                if room == 0 {
                    return;
                }
            }
            Ok(false) => {}
            Err(error) => tracing::warn!(run_id, %error, "could not take over a run"),
        }
    }
}

/// Carries out the cancels and deletions other nodes record for the runs this node
/// drives (this node's own are carried out as they are recorded; twice is harmless).
/// A deleted run's keys are forgotten here too, where they were sealed.
async fn follow_commands(gym: Gym) {
    let store = gym.deps.store.clone();
    let mut from = store.next_position();
    loop {
        let mut subscription = subscribe_all(store.clone(), from);
        loop {
            let recorded = match subscription.next().await {
                Ok(recorded) => recorded,
                Err(StoreError::Closed) => return,
                Err(error) => {
                    tracing::warn!(%error, "following the log for commands failed; following again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            };
            from = recorded.position + 1;
            if !matches!(
                recorded.event_type.as_str(),
                "RunCancelRequested" | "RunDeleted"
            ) {
                continue;
            }
            let run_id = match journal::decode_record(&recorded) {
                Ok(Event::RunCancelRequested(e)) => e.run_id,
                Ok(Event::RunDeleted(e)) => {
                    if let Err(error) = gym.deps.secrets.forget(&e.run_id) {
                        tracing::warn!(run_id = e.run_id, %error, "could not forget a deleted run's keys");
                    }
                    e.run_id
                }
                _ => continue,
            };
            let _ = gym.registry.send(CancelRun { run_id }).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    fn node(store: &Arc<MemoryStore>, name: &str, ttl_ms: u64) -> Arc<Leases> {
        Leases::new(
            store.clone(),
            Metrics::new(),
            name.to_string(),
            Duration::from_millis(ttl_ms),
        )
    }

    async fn acquire(leases: &Leases, run_id: &str) -> bool {
        let slot = leases.slot(run_id);
        let mut slot = slot.lock().await;
        leases.acquire_locked(run_id, &mut slot).await.unwrap()
    }

    async fn lease_events(store: &MemoryStore, run_id: &str) -> Vec<String> {
        store
            .read_stream(&lease_stream(run_id), 0)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    }

    #[tokio::test]
    async fn given_two_nodes_racing_for_a_run_then_exactly_one_takes_it() {
        let store = Arc::new(MemoryStore::new());
        let (a, b) = (node(&store, "a", 10_000), node(&store, "b", 10_000));
        let attempts = (0..16).map(|i| {
            let leases = if i % 2 == 0 { a.clone() } else { b.clone() };
            async move {
                (
                    leases.node_id().to_string(),
                    acquire(&leases, "run_1").await,
                )
            }
        });
        let outcomes = futures::future::join_all(attempts).await;
        let winners: std::collections::HashSet<&str> = outcomes
            .iter()
            .filter(|(_, won)| *won)
            .map(|(node, _)| node.as_str())
            .collect();
        assert_eq!(winners.len(), 1, "{outcomes:?}");
        let events = lease_events(&store, "run_1").await;
        assert_eq!(events[0], "RunLeaseAcquired");
        assert!(
            events[1..].iter().all(|e| e == "RunLeaseRenewed"),
            "one term only, renewed by its holder: {events:?}"
        );
    }

    #[tokio::test]
    async fn given_a_lapsed_lease_then_another_node_takes_the_next_term_and_the_old_holder_is_refused(
    ) {
        let store = Arc::new(MemoryStore::new());
        let (a, b) = (node(&store, "a", 300), node(&store, "b", 300));
        assert!(acquire(&a, "run_1").await);
        assert!(!acquire(&b, "run_1").await, "held by a");
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(acquire(&b, "run_1").await, "a stopped renewing");
        assert!(!acquire(&a, "run_1").await, "b holds it now");
        let slot = b.slot("run_1");
        let held = slot.lock().await.state.lease.clone().unwrap();
        assert_eq!((held.node_id.as_str(), held.term), ("b", 2));
    }

    #[tokio::test]
    async fn given_a_released_lease_then_another_node_takes_it_at_once() {
        let store = Arc::new(MemoryStore::new());
        let (a, b) = (node(&store, "a", 60_000), node(&store, "b", 60_000));
        assert!(acquire(&a, "run_1").await);
        let slot = a.slot("run_1");
        let release = || LeaseCommand::Release {
            node_id: "a".into(),
            now: Utc::now(),
        };
        a.apply("run_1", &mut *slot.lock().await, release)
            .await
            .unwrap()
            .unwrap();
        assert!(acquire(&b, "run_1").await);
        assert_eq!(
            lease_events(&store, "run_1").await,
            ["RunLeaseAcquired", "RunLeaseReleased", "RunLeaseAcquired"]
        );
    }
}
