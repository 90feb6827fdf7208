//! Strata's domain: the service spec a user writes, and the records the control plane keeps
//! (environments, services, releases, instances, nodes, events).
//!
//! This crate does no IO. Everything here is data, parsing and pure rules over that data, so
//! every other crate (store, scheduler, control plane, agent, CLI) shares one vocabulary.

pub mod api;
pub mod auth;
pub mod keys;
pub mod model;
pub mod spec;

pub use model::*;
pub use spec::{ServiceSpec, SpecError, SpecFile};
