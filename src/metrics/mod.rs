//! Prometheus metrics. Names are `rl_gym_<noun>_<unit>`; labels are bounded
//! (provider, tool server, outcome), never an id. [`MeteredStore`] wraps any event
//! store to count appends and time them without the store knowing about metrics.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

use crate::store::{
    AppendResult, Connection, EventData, EventStore, ExpectedState, RecordedEvent, StoreError,
};

/// Every collector the service exports, registered in its own registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub runs_launched: IntCounter,
    pub runs_paused: IntCounter,
    pub groups_scheduled: IntCounter,
    pub groups_consumed: IntCounter,
    pub rollouts_restarted_stale: IntCounter,
    pub rollouts_finished: IntCounterVec,
    pub rollouts_active: IntGauge,
    pub step_duration: HistogramVec,
    pub step_overhead: HistogramVec,
    pub model_call_duration: HistogramVec,
    pub model_errors: IntCounterVec,
    pub tool_calls: IntCounterVec,
    pub rubric_grades: IntCounterVec,
    pub events_appended: IntCounter,
    pub append_failures: IntCounter,
    pub append_duration: Histogram,
    pub projection_lag: IntGauge,
    pub log_position: IntGauge,
    pub data_dir_available: IntGauge,
    pub data_dir_size: IntGauge,
    pub store_connected: IntGauge,
    pub store_reconnects: IntCounter,
    pub leases_held: IntGauge,
    pub leases_lost: IntCounter,
    pub lease_takeovers: IntCounter,
    pub environments_open: IntGauge,
    pub environments_expired: IntCounter,
    pub rollouts_pending: IntGauge,
    pub http_connections: IntGauge,
    pub http_refused: IntCounterVec,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Finer at the low end, where a step's own work is measured against 200 µs.
const OVERHEAD_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_075, 0.000_1, 0.000_15, 0.000_2, 0.000_25, 0.000_5, 0.001,
    0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let histogram_vec_with = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                labels,
            )
            .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let histogram_vec = |name: &str, help: &str, labels: &[&str]| {
            histogram_vec_with(name, help, labels, LATENCY_BUCKETS)
        };
        let append_duration = Histogram::with_opts(
            HistogramOpts::new(
                "rl_gym_event_append_duration_seconds",
                "Time for an append to become durable in the event log.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        registry
            .register(Box::new(append_duration.clone()))
            .expect("unique metric");
        Metrics {
            runs_launched: counter("rl_gym_runs_launched_total", "Runs launched."),
            runs_paused: counter(
                "rl_gym_runs_paused_total",
                "Runs paused because their budget was spent.",
            ),
            groups_scheduled: counter(
                "rl_gym_groups_scheduled_total",
                "Groups drawn by continuous runs.",
            ),
            groups_consumed: counter(
                "rl_gym_groups_consumed_total",
                "Group acknowledgements recorded, one per consumer and group.",
            ),
            rollouts_restarted_stale: counter(
                "rl_gym_rollouts_restarted_stale_total",
                "Rollouts restarted because they fell more than max_staleness policy versions behind.",
            ),
            rollouts_finished: counter_vec(
                "rl_gym_rollouts_finished_total",
                "Rollouts that reached a final state, by outcome.",
                &["outcome"],
            ),
            rollouts_active: gauge("rl_gym_rollouts_active", "Rollouts in their step loop now."),
            step_duration: histogram_vec(
                "rl_gym_step_duration_seconds",
                "Time of one step of the loop, by kind (model, tool, verify, rubric).",
                &["kind"],
            ),
            step_overhead: histogram_vec_with(
                "rl_gym_step_overhead_seconds",
                "Time of one step outside its model (or judge) call: the loop's own work \
                 and any wait for the log the call did not hide, by kind.",
                &["kind"],
                OVERHEAD_BUCKETS,
            ),
            model_call_duration: histogram_vec(
                "rl_gym_model_call_duration_seconds",
                "Latency of model calls, by provider.",
                &["provider"],
            ),
            model_errors: counter_vec(
                "rl_gym_model_errors_total",
                "Model calls that failed after their retries, by provider and error type \
                 (rate_limit, timeout, connection_error, authentication_error, ...).",
                &["provider", "error_type"],
            ),
            tool_calls: counter_vec(
                "rl_gym_tool_calls_total",
                "Tool calls made by rollouts, by tool server and outcome (ok, error).",
                &["server", "outcome"],
            ),
            rubric_grades: counter_vec(
                "rl_gym_rubric_grades_total",
                "Rubric grades by the universal verifier, by status (graded, skipped, error).",
                &["status"],
            ),
            events_appended: counter(
                "rl_gym_events_appended_total",
                "Events appended to the log.",
            ),
            append_failures: counter(
                "rl_gym_event_append_failures_total",
                "Appends the log could not make durable.",
            ),
            append_duration,
            projection_lag: gauge(
                "rl_gym_projection_lag_events",
                "Events in the log not yet applied to the views.",
            ),
            log_position: gauge("rl_gym_event_log_events", "Events in the log."),
            data_dir_available: gauge(
                "rl_gym_data_dir_available_bytes",
                "Free space on the file system of the data directory (the event log's disk).",
            ),
            data_dir_size: gauge(
                "rl_gym_data_dir_size_bytes",
                "Size of the file system of the data directory.",
            ),
            store_connected: gauge(
                "rl_gym_store_connected",
                "1 while the event store is reachable (always, for the embedded log).",
            ),
            store_reconnects: counter(
                "rl_gym_store_reconnects_total",
                "Times the event store's connection was lost and found again.",
            ),
            leases_held: gauge(
                "rl_gym_leases_held",
                "Runs whose lease this node holds (several nodes on one KurrentDB log).",
            ),
            leases_lost: counter(
                "rl_gym_leases_lost_total",
                "Leases this node could not keep (another node took the run, or the store \
                 stayed unreachable until the lease expired).",
            ),
            lease_takeovers: counter(
                "rl_gym_lease_takeovers_total",
                "Runs this node took over because no node held their lease.",
            ),
            environments_open: gauge(
                "rl_gym_environments_open",
                "Environments hosted for outside agents (POST /environments) now.",
            ),
            environments_expired: counter(
                "rl_gym_environments_expired_total",
                "Hosted environments closed because they went unused for environment_idle_secs.",
            ),
            rollouts_pending: gauge(
                "rl_gym_rollouts_pending",
                "Rollouts launched and not started yet, across runs (capped by max_pending_rollouts).",
            ),
            http_connections: gauge(
                "rl_gym_http_connections",
                "Client connections open now (capped by max_connections).",
            ),
            http_refused: counter_vec(
                "rl_gym_http_requests_refused_total",
                "Requests refused to protect the server, by reason (too_many_connections, \
                 request_timeout).",
                &["reason"],
            ),
            registry,
        }
    }

    /// Reads the store's connection into its gauge and counter.
    pub fn observe_store(&self, connection: Connection) {
        self.store_connected.set(i64::from(connection.connected));
        let counted = self.store_reconnects.get();
        self.store_reconnects
            .inc_by(connection.reconnects.saturating_sub(counted));
    }

    /// Reads the free and total space of `dir`'s file system into the disk gauges.
    pub fn observe_disk(&self, dir: &std::path::Path) {
        use std::os::unix::ffi::OsStrExt;
        let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
            return;
        };
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is a valid C string and `stat` a writable statvfs.
        if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } == 0 {
            let block = stat.f_frsize as i64;
            self.data_dir_available.set(stat.f_bavail as i64 * block);
            self.data_dir_size.set(stat.f_blocks as i64 * block);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(error) = encoder.encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(%error, "metrics encoding failed");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

/// An event store that counts and times appends.
pub struct MeteredStore {
    inner: Arc<dyn EventStore>,
    metrics: Metrics,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn EventStore>, metrics: Metrics) -> MeteredStore {
        MeteredStore { inner, metrics }
    }
}

#[async_trait]
impl EventStore for MeteredStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedState,
        events: Vec<EventData>,
    ) -> Result<AppendResult, StoreError> {
        let count = events.len() as u64;
        let started = Instant::now();
        let result = self.inner.append(stream, expected, events).await;
        self.metrics
            .append_duration
            .observe(started.elapsed().as_secs_f64());
        match &result {
            Ok(_) => self.metrics.events_appended.inc_by(count),
            Err(StoreError::Io(_) | StoreError::Closed | StoreError::Unavailable(_)) => {
                self.metrics.append_failures.inc()
            }
            Err(_) => {}
        }
        result
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_revision: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream(stream, from_revision).await
    }

    async fn read_all(&self, from: u64, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_all(from, max).await
    }

    fn next_position(&self) -> u64 {
        self.inner.next_position()
    }

    fn live(&self) -> tokio::sync::broadcast::Receiver<Arc<RecordedEvent>> {
        self.inner.live()
    }

    fn connection(&self) -> Connection {
        self.inner.connection()
    }
}
