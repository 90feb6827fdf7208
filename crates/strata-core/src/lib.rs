//! Strata's domain: the service spec a user writes, and the records the control plane keeps
//! (environments, services, releases, instances, nodes, events).
//!
//! This crate does no IO. Everything here is data, parsing and pure rules over that data, so
//! every other crate (store, scheduler, control plane, agent, CLI) shares one vocabulary. The
//! one exception is [`now_millis`], the wall clock every edge stamps records with (pure
//! functions are given the time instead).

mod actor;
pub mod api;
pub mod archive;
pub mod auth;
pub mod beat;
pub mod capability;
pub mod decommission;
mod event_kind;
pub mod keys;
pub mod model;
pub mod names;
pub mod rollout;
pub mod secret;
pub mod spec;
pub mod version;

pub use actor::Actor;
pub use event_kind::EventKind;
pub use model::*;
pub use names::{EnvName, InstanceId, InvalidName, NodeName, ServiceName};
pub use rollout::{Rollout, RolloutPhase};
pub use spec::{ServiceSpec, SpecError, SpecFile};

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS` (UTC), as messages and tables show
/// a time.
pub fn utc_time(ms: Millis) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    let text = humantime::format_rfc3339_seconds(time).to_string();
    text.trim_end_matches('Z').replace('T', " ")
}

/// Milliseconds since the Unix epoch, now: what records' timestamps are (`Millis`).
pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}
