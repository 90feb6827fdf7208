//! Strata's control plane.
//!
//! - [`plane::ControlPlane`]: the typed operations (deploy, delete, register a node, report an
//!   instance's status, ...) over the [`strata_store::Store`]. It never sees HTTP. It
//!   composes the parts that own a concern: [`identity`] (cluster CA, node certificates),
//!   [`event_log`], [`heartbeats`], [`traffic`] and the leader's fence ([`leader::Fence`]).
//! - [`api`]: the HTTP/JSON API (axum) that parses and validates requests, calls the plane
//!   and maps its errors to JSON bodies a person can act on; SSE watches; `/openapi.json`.
//! - [`reconcile`]: the level-triggered controller that turns desired state into instances on
//!   nodes, using the pure planners of strata-sched.
//! - [`blobs`]: the content-addressed store for uploaded artifacts.
//! - `cas`: the one read-decide-write loop on a record (`ControlPlane::update_cas`).
//! - [`leader`]: the election that lets exactly one of many servers run the controllers, and
//!   the fence on every controller write.
//! - [`metrics`]: `/metrics` for Prometheus: nodes and instances by state, leadership.

pub mod api;
pub mod audit;
pub mod autoscaler;
pub mod backup;
pub mod beats;
pub mod blobs;
mod cas;
pub mod clock;
pub mod credentials;
pub mod error;
pub mod event_log;
pub mod guard;
pub mod heartbeats;
pub mod identity;
pub mod leader;
pub mod logs;
pub mod metrics;
pub mod openapi;
pub mod plane;
pub mod quota;
pub mod reconcile;
pub mod reflector;
pub mod replicate;
pub mod rollouts;
pub mod secrets;
pub mod traffic;

pub use error::ControlError;
pub use plane::lifecycle::Remover;
pub use plane::{
    ControlConfig, ControlPlane, DEFAULT_FORGET_DOWN_AFTER, DEFAULT_NODE_CERT_TTL,
    DEFAULT_SCALE_DOWN_WINDOW,
};

/// The wall clock the control plane stamps records with; pure functions get the time passed
/// in.
pub use strata_core::now_millis;
