//! `rl-gym load`: measures the service under load, through its HTTP API, as a client
//! would (issue 8's figures; `benches/README.md` has the commands and the results).
//!
//! - `rollouts` launches N rollouts (`POST /runs`) against the builtin oracle, an
//!   OpenAI-compatible `--model-url`, or a local fake model that answers after
//!   `--fake-model-latency-ms`, waits for them, optionally drives `GET /runs/{id}` at
//!   a fixed rate meanwhile, and prints rollouts/s, steps/s, the step overhead (from
//!   the service's own step histogram) and the peak resident memory.
//! - `feed` drains a continuous oracle run's groups as one consumer and prints
//!   groups/s (with `--baseline`, beside the same rollouts as an ordinary run).
//! - `environments` drives outside-agent tool calls (`POST …/step`) against one or
//!   many hosted environments at once and prints steps/s and their latency.
//! - `write-log` writes a large, realistic log (oracle rollouts of real tasks) for
//!   timing `rl-gym replay`.
//! - `streams` opens many event streams from position 0 of a big log and times
//!   `GET /healthz` and `GET /runs/{id}` while they catch up.
//! - `fake-model` is the slow model server itself (run as a child process, so that
//!   its ten thousand sockets do not count against the service's file limit).
//!
//! By default the service under test runs in this process on a temporary data dir
//! (so that its peak memory can be read); `--server URL` targets a running one. The
//! client runs on its own thread, off the service's runtime.

mod client;
mod environments;
pub mod fake_model;
mod feed;
mod rollouts;
mod streams;
pub mod synth;
mod write_log;

use std::path::PathBuf;
use std::process::ExitCode;

use actix_web::dev::ServerHandle;
use clap::{Args, Subcommand};

use crate::config::{LogFormat, Settings};
use crate::startup::Application;

#[derive(Debug, Subcommand)]
pub enum LoadCommand {
    /// Launch rollouts over HTTP and measure them.
    Rollouts(rollouts::RolloutsArgs),
    /// Drain a continuous oracle run's feed as one consumer (groups/s).
    Feed(feed::FeedArgs),
    /// Drive outside-agent tool calls against hosted environments.
    Environments(environments::EnvironmentsArgs),
    /// Write a large log of realistic oracle rollouts (for timing `rl-gym replay`).
    WriteLog(write_log::WriteLogArgs),
    /// Event-stream clients catching up on the log while requests are timed.
    Streams(streams::StreamsArgs),
    /// Serve an OpenAI-compatible model that answers after a fixed delay.
    FakeModel(fake_model::FakeModelArgs),
}

/// Where the service under test is.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// Base URL of a running rl-gym; without it one is started in this process on a
    /// temporary data dir.
    #[arg(long)]
    pub server: Option<String>,
    /// API token for --server.
    #[arg(long, env = "RL_GYM_API_TOKEN")]
    pub token: Option<String>,
    /// In-process server: where its log goes (kept); default a temporary dir, removed.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// In-process server: the server-wide cap on rollouts in their step loop.
    #[arg(long, default_value_t = 100_000)]
    pub max_concurrent_rollouts: usize,
}

pub async fn run(command: LoadCommand) -> ExitCode {
    let result = match command {
        LoadCommand::Rollouts(args) => rollouts::run(args).await,
        LoadCommand::Feed(args) => feed::run(args).await,
        LoadCommand::Environments(args) => environments::run(args).await,
        LoadCommand::WriteLog(args) => write_log::run(args).await,
        LoadCommand::Streams(args) => streams::run(args).await,
        LoadCommand::FakeModel(args) => fake_model::serve(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rl-gym load: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The service under test: a base URL, and the server when it runs in this process.
pub(crate) struct Service {
    pub base: String,
    pub token: Option<String>,
    local: Option<Local>,
}

struct Local {
    handle: ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    dir: PathBuf,
    remove_dir: bool,
}

impl Service {
    /// Starts the in-process server, or points at `--server`.
    pub async fn start(target: &Target) -> Result<Service, String> {
        if let Some(server) = &target.server {
            return Ok(Service {
                base: server.trim_end_matches('/').to_string(),
                token: target.token.clone(),
                local: None,
            });
        }
        crate::telemetry::init(LogFormat::Text, "warn");
        let (dir, remove_dir) = match &target.data_dir {
            Some(dir) => (dir.clone(), false),
            None => (
                std::env::temp_dir().join(format!("rl-gym-load-{}", uuid::Uuid::new_v4().simple())),
                true,
            ),
        };
        let mut settings = Settings::defaults();
        settings.bind = "127.0.0.1:0".parse().expect("a valid address");
        settings.data_dir = dir.clone();
        settings.max_concurrent_rollouts = target.max_concurrent_rollouts;
        settings.max_open_environments = 1_000_000;
        let app = Application::build(settings)
            .await
            .map_err(|e| format!("the in-process server did not start: {e}"))?;
        let base = format!("http://{}", app.address());
        let handle = app.handle();
        let task = actix_rt::spawn(app.run_until_stopped());
        Ok(Service {
            base,
            token: None,
            local: Some(Local {
                handle,
                task,
                dir,
                remove_dir,
            }),
        })
    }

    pub fn in_process(&self) -> bool {
        self.local.is_some()
    }

    /// Stops the in-process server (its log is closed) and removes its temporary dir.
    pub async fn stop(self) {
        if let Some(local) = self.local {
            local.handle.stop(true).await;
            let _ = local.task.await;
            if local.remove_dir {
                let _ = std::fs::remove_dir_all(&local.dir);
            }
        }
    }
}

/// This process's resident memory now and at its peak, in KiB (`/proc/self/status`).
pub(crate) fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU seconds used so far, user and system (`getrusage`), by the whole process or by
/// the calling thread alone.
pub(crate) fn cpu_secs(thread_only: bool) -> f64 {
    let who = if thread_only {
        libc::RUSAGE_THREAD
    } else {
        libc::RUSAGE_SELF
    };
    // SAFETY: getrusage writes only into the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(who, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// CPU time spent from its start, split between an in-process service and the client
/// driving it from its own single-threaded runtime ([`on_client_thread`]): a trainer
/// reading the feed runs on its own machine, so the service's share is what a run
/// costs the node.
pub(crate) struct CpuSplit {
    process: f64,
    client: f64,
}

impl CpuSplit {
    /// Starts counting; call on the client thread.
    pub(crate) fn start() -> CpuSplit {
        CpuSplit {
            process: cpu_secs(false),
            client: cpu_secs(true),
        }
    }

    /// (service, client) CPU seconds since the start; call on the same thread.
    pub(crate) fn split(&self) -> (f64, f64) {
        let client = cpu_secs(true) - self.client;
        let process = cpu_secs(false) - self.process;
        ((process - client).max(0.0), client)
    }
}

/// Runs the client on a thread of its own with a single-threaded runtime, so that it
/// never shares the service's runtime (it still shares the machine's cores).
pub(crate) async fn on_client_thread<F, Fut, T>(work: F) -> Result<T, String>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, String>>,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("rl-gym-load-client".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
                .and_then(|rt| rt.block_on(work()));
            let _ = tx.send(result);
        })
        .map_err(|e| e.to_string())?;
    rx.await.map_err(|_| "the load client died".to_string())?
}

/// Quantile `q` (0..=1) of sorted values (nearest rank).
pub(crate) fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
