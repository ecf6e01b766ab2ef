//! rl-gym: runs LLM agents against simulated enterprise environments and scores them.

pub mod domain;
pub mod scenarios;
pub mod store;
pub mod tools;
pub mod verify;
