//! Run ownership when several nodes share one log: a run is driven by the node that
//! holds its lease, a term-numbered claim with an expiry recorded in the stream
//! `lease-{run_id}`. Every lease event is appended with the stream's expected
//! revision, so of two nodes deciding from the same state only one append succeeds:
//! two nodes can never both hold a run. A holder renews before the expiry; a node that
//! cannot renew stops driving the run, and once the lease has expired any node may
//! take it (the next term) and resume the run's rollouts from the log.

use chrono::{DateTime, Duration, Utc};

use super::events::{Event, RunLeaseAcquired, RunLeaseReleased, RunLeaseRenewed};

/// A lease as it stands after the stream's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub node_id: String,
    pub term: u64,
    pub expires_at: DateTime<Utc>,
    pub released: bool,
}

#[derive(Debug, Clone, Default)]
pub struct LeaseState {
    pub lease: Option<Lease>,
    /// Revision of the last event of the lease stream, for the next append.
    pub revision: Option<u64>,
}

#[derive(Debug, Clone)]
pub enum LeaseCommand {
    /// Take the run if nobody holds it (or keep it, if this node does).
    Acquire {
        node_id: String,
        now: DateTime<Utc>,
        ttl: Duration,
    },
    /// Extend this node's lease; refused once it has expired or passed to another.
    Renew {
        node_id: String,
        now: DateTime<Utc>,
        ttl: Duration,
    },
    /// Give the run up (the run ended, or the node stops).
    Release { node_id: String, now: DateTime<Utc> },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseRefusal {
    #[error("run is held by node {node_id} until {until}")]
    HeldBy {
        node_id: String,
        until: DateTime<Utc>,
    },
    #[error("this node does not hold the run's lease")]
    NotHeld,
}

impl LeaseState {
    pub fn evolve(&mut self, event: &Event, revision: u64) {
        self.revision = Some(revision);
        match event {
            Event::RunLeaseAcquired(e) => {
                self.lease = Some(Lease {
                    node_id: e.node_id.clone(),
                    term: e.term,
                    expires_at: e.expires_at,
                    released: false,
                })
            }
            Event::RunLeaseRenewed(e) => {
                if let Some(lease) = self.lease.as_mut().filter(|l| l.term == e.term) {
                    lease.expires_at = e.expires_at;
                }
            }
            Event::RunLeaseReleased(e) => {
                if let Some(lease) = self.lease.as_mut().filter(|l| l.term == e.term) {
                    lease.released = true;
                }
            }
            _ => {}
        }
    }

    /// The lease in force at `now`: taken, not released, not expired.
    pub fn holder_at(&self, now: DateTime<Utc>) -> Option<&Lease> {
        self.lease
            .as_ref()
            .filter(|l| !l.released && now < l.expires_at)
    }

    fn next_term(&self) -> u64 {
        self.lease.as_ref().map_or(1, |l| l.term + 1)
    }
}

pub fn decide(
    state: &LeaseState,
    run_id: &str,
    command: LeaseCommand,
) -> Result<Vec<Event>, LeaseRefusal> {
    match command {
        LeaseCommand::Acquire { node_id, now, ttl } => match state.holder_at(now) {
            Some(held) if held.node_id != node_id => Err(LeaseRefusal::HeldBy {
                node_id: held.node_id.clone(),
                until: held.expires_at,
            }),
            Some(held) => Ok(vec![Event::RunLeaseRenewed(RunLeaseRenewed {
                run_id: run_id.to_string(),
                node_id,
                term: held.term,
                expires_at: now + ttl,
                renewed_at: now,
            })]),
            None => Ok(vec![Event::RunLeaseAcquired(RunLeaseAcquired {
                run_id: run_id.to_string(),
                node_id,
                term: state.next_term(),
                expires_at: now + ttl,
                acquired_at: now,
            })]),
        },
        LeaseCommand::Renew { node_id, now, ttl } => match state.holder_at(now) {
            Some(held) if held.node_id == node_id => {
                Ok(vec![Event::RunLeaseRenewed(RunLeaseRenewed {
                    run_id: run_id.to_string(),
                    node_id,
                    term: held.term,
                    expires_at: now + ttl,
                    renewed_at: now,
                })])
            }
            _ => Err(LeaseRefusal::NotHeld),
        },
        LeaseCommand::Release { node_id, now } => match &state.lease {
            Some(held) if held.node_id == node_id && !held.released => {
                Ok(vec![Event::RunLeaseReleased(RunLeaseReleased {
                    run_id: run_id.to_string(),
                    node_id,
                    term: held.term,
                    released_at: now,
                })])
            }
            _ => Ok(vec![]),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    fn ttl() -> Duration {
        Duration::seconds(10)
    }

    fn given(events: &[Event]) -> LeaseState {
        let mut state = LeaseState::default();
        for (i, e) in events.iter().enumerate() {
            state.evolve(e, i as u64);
        }
        state
    }

    fn acquire(node: &str, now: i64) -> LeaseCommand {
        LeaseCommand::Acquire {
            node_id: node.into(),
            now: at(now),
            ttl: ttl(),
        }
    }

    fn renew(node: &str, now: i64) -> LeaseCommand {
        LeaseCommand::Renew {
            node_id: node.into(),
            now: at(now),
            ttl: ttl(),
        }
    }

    #[test]
    fn given_no_lease_when_a_node_acquires_then_it_holds_term_1() {
        let events = decide(&given(&[]), "run_1", acquire("a", 0)).unwrap();
        let state = given(&events);
        let held = state.holder_at(at(5)).unwrap();
        assert_eq!((held.node_id.as_str(), held.term), ("a", 1));
        assert!(state.holder_at(at(10)).is_none(), "expired at the ttl");
    }

    #[test]
    fn given_a_live_lease_when_another_node_acquires_then_refused_until_it_expires() {
        let events = decide(&given(&[]), "run_1", acquire("a", 0)).unwrap();
        assert_eq!(
            decide(&given(&events), "run_1", acquire("b", 9)),
            Err(LeaseRefusal::HeldBy {
                node_id: "a".into(),
                until: at(10)
            })
        );
        let taken = decide(&given(&events), "run_1", acquire("b", 10)).unwrap();
        let mut all = events.clone();
        all.extend(taken);
        let state = given(&all);
        assert_eq!(state.holder_at(at(11)).unwrap().node_id, "b");
        assert_eq!(state.holder_at(at(11)).unwrap().term, 2);
        // The old holder has lost it: its renewal is refused.
        assert_eq!(
            decide(&state, "run_1", renew("a", 11)),
            Err(LeaseRefusal::NotHeld)
        );
    }

    #[test]
    fn given_a_held_lease_when_renewed_in_time_then_it_lasts_and_late_renewal_is_refused() {
        let mut events = decide(&given(&[]), "run_1", acquire("a", 0)).unwrap();
        events.extend(decide(&given(&events), "run_1", renew("a", 8)).unwrap());
        let state = given(&events);
        assert_eq!(state.holder_at(at(17)).unwrap().node_id, "a");
        assert_eq!(
            decide(&state, "run_1", renew("a", 18)),
            Err(LeaseRefusal::NotHeld)
        );
    }

    #[test]
    fn given_a_released_lease_when_another_node_acquires_then_it_takes_the_next_term() {
        let mut events = decide(&given(&[]), "run_1", acquire("a", 0)).unwrap();
        let release = LeaseCommand::Release {
            node_id: "a".into(),
            now: at(1),
        };
        events.extend(decide(&given(&events), "run_1", release.clone()).unwrap());
        assert!(decide(&given(&events), "run_1", release)
            .unwrap()
            .is_empty());
        let taken = decide(&given(&events), "run_1", acquire("b", 2)).unwrap();
        events.extend(taken);
        assert_eq!(given(&events).holder_at(at(3)).unwrap().term, 2);
    }
}
