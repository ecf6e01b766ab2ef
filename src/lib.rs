//! rl-gym: runs LLM agents against simulated enterprise environments and scores them.
//!
//! # Architecture in one page
//!
//! rl-gym is an event-sourced actor system. Every state change is an event appended
//! to the [`store`] (an embedded, crash-safe, group-committed log by default) before
//! it is acknowledged or acted on.
//!
//! - [`api`] is the HTTP edge. Handlers parse requests into commands for
//!   [`actors::Gym`] or queries on the [`projections`].
//! - [`actors::Gym`] reads a run's stream, lets [`domain`] decide (pure
//!   `decide`/`evolve`, no I/O), appends the events, then tells the actors.
//! - [`actors`]: a registry supervises a run actor per active run (throttling its
//!   rollouts under `max_parallel` and the server-wide cap), which supervises a rollout
//!   actor per rollout, which supervises the step loop: model ([`llm`]) ⇄ tool
//!   servers ([`tools`]) until the model answers, then scoring ([`verify`]).
//! - [`projections`] fold events into the read models (run status, run list, rollout
//!   view); at start-up they are rebuilt by replaying the log, and
//!   `rl-gym replay` does the same offline with a checksum of the views.
//! - [`scenarios`] load the templates in `config/scenarios/`; [`metrics`] exports
//!   Prometheus metrics; [`config`] layers settings and keeps secrets; [`stats`] turns
//!   scores into the figures researchers report (pass@k, pass^k, bootstrap intervals).
//!
//! Because rollouts decide their next step from their own events, a crashed
//! rollout resumes where it stopped, and its environment is rebuilt by replaying its
//! recorded tool calls over the scenario's seed.
//!
//! For training, a run may record each model turn's token ids ([`llm::completions`]:
//! returned by a vLLM-style server, or owned by rl-gym and sent as ids, with the
//! tokenizer, chat template and tool-call parsers of [`llm::tokens`]); they are packed
//! in the events and decoded into a rollout's whole sequence ([`domain::trace`]) only
//! when its content is read, for the `format=tokens` export.

/// The allocator of the service, its tests and its benches alike: under load, glibc
/// malloc took a third of the CPU (benches/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod actors;
pub mod api;
pub mod cli;
pub mod client;
pub mod config;
pub mod domain;
pub mod error;
pub mod journal;
pub mod llm;
pub mod load;
pub mod metrics;
pub mod net;
pub mod npc;
pub mod projections;
pub mod replay;
pub mod scenarios;
pub mod startup;
pub mod stats;
pub mod store;
pub mod telemetry;
pub mod tools;
pub mod verify;
