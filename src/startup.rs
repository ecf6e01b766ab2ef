//! The one app factory: `main` and every test build the service through
//! [`Application::build`], which opens the log, replays it into the views, resumes
//! unfinished runs and binds the HTTP server (port 0 in tests).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::actors::breakpoints::Breakpoints;
use crate::actors::lease::Leases;
use crate::actors::run::PendingRollouts;
use crate::actors::step_loop::DefaultAgents;
use crate::actors::{Deps, Gym, GymError};
use crate::api::{self, AccessControl, AppState, RequestLimits};
use crate::config::secrets::SecretStore;
use crate::config::Settings;
use crate::metrics::{MeteredStore, Metrics};
use crate::projections::{self, ProjectionError, Projections};
use crate::scenarios::{Catalog, ScenarioError};
use crate::store::file::{FileStore, FileStoreOptions};
use crate::store::{EventStore, StoreError};
use crate::tools::registry::{EnvironmentLimits, EnvironmentRegistry};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("scenario templates: {0}")]
    Scenarios(#[from] ScenarioError),
    #[error("event log: {0}")]
    Store(#[from] StoreError),
    #[error("rebuilding the views: {0}")]
    Projection(#[from] ProjectionError),
    #[error("API keys at rest: {0}")]
    Secrets(#[from] crate::config::secrets::SecretError),
    #[error("resuming runs: {0}")]
    Recovery(#[from] GymError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

pub struct Application {
    address: SocketAddr,
    server: Server,
    /// The embedded log, closed on shutdown; `None` on KurrentDB.
    file_store: Option<Arc<FileStore>>,
    /// Cancelled when the service begins to stop: long-lived responses (event streams)
    /// end at once instead of holding the shutdown up.
    shutdown: CancellationToken,
    gym: Gym,
}

impl Application {
    /// Builds and binds the service; must run inside an actix `System`
    /// (`#[actix_web::main]` or `#[actix_web::test]`).
    pub async fn build(settings: Settings) -> Result<Application, StartupError> {
        Self::build_with(settings, FileStoreOptions::default()).await
    }

    /// The same, with the log's options (tests plan failures through them).
    pub async fn build_with(
        settings: Settings,
        store_options: FileStoreOptions,
    ) -> Result<Application, StartupError> {
        let catalog = Arc::new(Catalog::load(&settings.resolved_scenarios_dir())?);
        let (store, file_store) = open_store(&settings, store_options).await?;
        let metrics = Metrics::new();
        let store: Arc<dyn EventStore> = Arc::new(MeteredStore::new(store, metrics.clone()));
        let views = projections::rebuild(store.as_ref()).await?;
        let unfinished = views.unfinished_runs();
        tracing::info!(
            events = views.next_position(),
            runs = views.run_count(),
            rollouts = views.rollout_count(),
            unfinished_runs = unfinished.len(),
            "views rebuilt from the log"
        );
        let projections = Projections::follow(store.clone(), views);
        let http = crate::net::outbound_client();
        let self_urls: Arc<std::sync::OnceLock<Vec<reqwest::Url>>> = Arc::default();
        let agents = Arc::new(DefaultAgents {
            http: http.clone(),
            limits: crate::llm::ProviderLimits::new(settings.provider_concurrency.clone()),
            judge: settings.judge.model_settings(),
        });
        // Nodes share a KurrentDB log: each drives the runs whose lease it holds.
        let leases = (!settings.store.is_empty()).then(|| {
            tracing::info!(
                node_id = settings.node_id,
                lease_secs = settings.lease_secs,
                "run leases on"
            );
            Leases::new(
                store.clone(),
                metrics.clone(),
                settings.node_id.clone(),
                Duration::from_secs(settings.lease_secs),
            )
        });
        let shared_log = leases.is_some();
        let contents = crate::projections::ContentCache::default();
        let gym = Gym::start(Deps {
            leases,
            contents: contents.clone(),
            store: store.clone(),
            catalog: catalog.clone(),
            metrics: metrics.clone(),
            secrets: SecretStore::open(&settings.data_dir)?,
            global: Arc::new(Semaphore::new(settings.max_concurrent_rollouts)),
            pending: PendingRollouts::new(
                settings.max_pending_rollouts,
                metrics.rollouts_pending.clone(),
            ),
            agents: agents.clone(),
            http,
            tool_timeout_secs: settings.tool_timeout_secs,
            self_urls: self_urls.clone(),
            self_token: settings.api_tokens.first().cloned(),
            redactor: settings.redactor(),
            model_timeout_secs: settings.model_timeout_secs,
            prices: Arc::new(settings.price_table()),
            breakpoints: Default::default(),
        });
        if shared_log {
            // Which unfinished runs are this node's is for the leases to say.
            gym.keep_leases(projections.clone());
        } else {
            gym.recover(unfinished).await?;
        }

        let shutdown = CancellationToken::new();
        let environments = Arc::new(EnvironmentRegistry::new(
            EnvironmentLimits {
                max_open: settings.max_open_environments,
                idle: Duration::from_secs(settings.environment_idle_secs),
                max_argument_bytes: settings.max_tool_argument_bytes,
                max_state_bytes: settings.max_environment_state_bytes,
            },
            metrics.clone(),
        ));
        sweep_idle_environments(environments.clone(), shutdown.clone());
        let limits = web::Data::new(RequestLimits::new(
            Duration::from_secs(settings.request_timeout_secs),
            settings.max_connections,
            metrics.clone(),
        ));
        warn_if_over_open_files(settings.max_connections);
        let public_url: Arc<std::sync::OnceLock<String>> = Arc::default();
        let state = web::Data::new(AppState {
            data_dir: settings.data_dir.clone(),
            shutdown: shutdown.clone(),
            gym: gym.clone(),
            projections,
            catalog,
            metrics,
            store,
            environments,
            public_url: public_url.clone(),
            max_pairs_per_task: settings.max_pairs_per_task,
            task_facts: Default::default(),
            contents,
            catch_up: Default::default(),
            agents,
            model_timeout: Duration::from_secs(settings.model_timeout_secs),
        });
        let configure = api::configure(settings.max_body_bytes);
        let access = web::Data::new(AccessControl {
            tokens: settings.api_tokens.clone(),
            open_metrics: settings.open_metrics,
        });
        if settings.api_tokens.is_empty() {
            tracing::warn!(
                bind = %settings.bind,
                "no API token configured: every endpoint is open (loopback only unless allow_unauthenticated_public_bind)"
            );
        } else {
            tracing::info!(tokens = settings.api_tokens.len(), "API tokens required");
        }
        let connections = limits.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(limits.clone())
                .app_data(access.clone())
                .wrap(actix_web::middleware::from_fn(api::require_token))
                .wrap(actix_web::middleware::from_fn(api::json_by_default))
                .wrap(actix_web::middleware::from_fn(api::limit_requests))
                .wrap(actix_web::middleware::Logger::new("%r %s %Dms").log_target("rl_gym::http"))
                .configure(configure.clone())
                .default_service(web::to(api::not_found))
        })
        .shutdown_timeout(settings.shutdown_timeout_secs)
        .on_connect(move |_, data| connections.on_connect(data))
        // A backstop per worker: beyond it actix stops accepting. Below it, connections
        // past `max_connections` are accepted only to be told 503 at once.
        .max_connections(settings.max_connections.saturating_add(1024))
        // Signals are ours (`stop_on_signals`), so event streams end before the drain.
        .disable_signals()
        .bind(settings.bind)
        .map_err(|source| StartupError::Bind {
            addr: settings.bind,
            source,
        })?;
        let address = server.addrs().first().copied().unwrap_or(settings.bind);
        if settings.public_url.is_empty() && address.ip().is_unspecified() {
            tracing::warn!(%address, "environment URLs name an unspecified address: set public_url (RL_GYM_PUBLIC_URL)");
        }
        let bound = format!("http://{address}");
        let public = if settings.public_url.is_empty() {
            bound.clone()
        } else {
            settings.public_url.clone()
        };
        // Both name this server: a rollout pointed at either is one of ours.
        let _ = self_urls.set(
            [&bound, &public]
                .into_iter()
                .filter_map(|u| reqwest::Url::parse(u).ok())
                .collect(),
        );
        let _ = public_url.set(public);
        let server = server.run();
        tracing::info!(%address, data_dir = %settings.data_dir.display(), "rl-gym listening");
        Ok(Application {
            address,
            server,
            file_store,
            shutdown,
            gym,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// The points the actors reach, for a test to wait for one instead of sleeping.
    pub fn breakpoints(&self) -> Breakpoints {
        self.gym.breakpoints().clone()
    }

    /// Cancel it to end event streams before stopping the server through its handle.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// SIGTERM or Ctrl-C ends the event streams, then stops the server gracefully
    /// (in-flight requests get `shutdown_timeout_secs`).
    pub fn stop_on_signals(&self) {
        let handle = self.handle();
        let shutdown = self.shutdown.clone();
        actix_rt::spawn(async move {
            let Ok(mut terminate) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                tracing::error!("cannot listen for SIGTERM");
                return;
            };
            tokio::select! {
                _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
                _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: stopping"),
            }
            shutdown.cancel();
            handle.stop(true).await;
        });
    }

    /// Serves until stopped (SIGTERM, Ctrl-C or the handle), then lets the log's
    /// writer finish and closes it.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        // Several nodes: the others take this node's runs over now, not a lease later.
        self.gym.give_up_leases().await;
        if let Some(file_store) = self.file_store {
            file_store.close().await;
            tracing::info!("event log closed");
        }
        result
    }
}

/// Closes hosted environments once idle, until the service stops.
fn sweep_idle_environments(environments: Arc<EnvironmentRegistry>, shutdown: CancellationToken) {
    let every = environments.sweep_every();
    actix_rt::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    environments.sweep();
                }
            }
        }
    });
}

/// Each connection is an open file: a cap above the process's limit would let the
/// files run out before the cap is reached.
fn warn_if_over_open_files(max_connections: usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0
        && (max_connections as u64).saturating_add(256) > limit.rlim_cur
    {
        tracing::warn!(
            max_connections,
            open_files = limit.rlim_cur,
            "max_connections is near or above the open-file limit (ulimit -n): raise the limit or lower the cap"
        );
    }
}

/// The configured event store: the KurrentDB node `settings.store` names, or else the
/// embedded log under `data_dir` (also returned, to be closed on shutdown).
pub async fn open_store(
    settings: &Settings,
    options: FileStoreOptions,
) -> Result<(Arc<dyn EventStore>, Option<Arc<FileStore>>), StoreError> {
    if !settings.store.is_empty() {
        let store = crate::store::connect_kurrent(&settings.store).await?;
        tracing::info!(events = store.next_position(), "connected to KurrentDB");
        return Ok((store, None));
    }
    let (file_store, report) = FileStore::open_with(&settings.data_dir, options)?;
    if report.truncated_bytes > 0 {
        tracing::warn!(
            truncated_bytes = report.truncated_bytes,
            "the log had a torn tail (an append that was never acknowledged); it was cut off"
        );
    }
    if report.data_loss {
        tracing::error!(
            lost_bytes = report.lost_bytes,
            lost_events = report.lost_events,
            "STARTED WITH ACKNOWLEDGED EVENTS MISSING from the event log (--accept-data-loss): views, runs and rollouts after the loss are gone"
        );
    }
    let file_store = Arc::new(file_store);
    Ok((file_store.clone(), Some(file_store)))
}
