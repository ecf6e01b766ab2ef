//! The rules of rl-gym, with no I/O: ids, events, the run and rollout decisions and
//! folds, the conversation and verdict types. Imports no other part of the crate.

pub mod budget;
pub mod chat;
pub mod events;
pub mod faults;
pub mod feed;
pub mod ids;
pub mod lease;
pub mod packed;
pub mod rollout;
pub mod run;
pub mod secret;
pub mod trace;
pub mod verdict;
