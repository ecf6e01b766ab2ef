//! The one black-box test binary: the service through HTTP and the CLI.

mod budget;
mod bundle;
mod catalog;
mod cli;
mod durability;
mod environments;
mod events;
mod faults;
mod fork;
mod helpers;
mod model_config;
mod monitoring;
mod npcs;
mod openapi;
mod operations;
mod overrides;
mod providers;
mod reexecute;
mod results;
mod reverify;
mod rubric;
mod runs;
mod scenarios;
mod scoring;
mod security;
mod stats;
