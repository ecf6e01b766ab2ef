//! The one black-box test binary: the service through HTTP and the CLI.

mod bundle;
mod catalog;
mod cli;
mod dashboard;
mod durability;
mod environments;
mod events;
mod helpers;
mod model_config;
mod monitoring;
mod npcs;
mod openapi;
mod operations;
mod overrides;
mod providers;
mod results;
mod rubric;
mod runs;
mod scenarios;
mod scoring;
mod security;
mod stats;
