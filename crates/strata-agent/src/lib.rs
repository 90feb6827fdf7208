//! Strata's node agent.
//!
//! An agent registers its node with the control plane, heartbeats, and keeps the instances
//! assigned to it running: it watches its assignments, starts each instance through its
//! driver, checks its health, restarts it with backoff when it crashes, drains and stops it
//! when it is no longer wanted, and reports every change of state. It talks to the control
//! plane only over its HTTP API, the same in `strata dev` (one process) as across machines.
//!
//! An agent that restarts re-adopts the instances it had started (their records are kept in
//! its data directory) and stops any it finds that are no longer assigned: nothing is
//! orphaned.
//!
//! Modules: [`beats`] (heartbeats: datagrams, and HTTP every 5 s), [`client`] (the control plane's API as the agent uses it), [`supervisor`] (one
//! instance's lifecycle), [`health`] (checks), [`logs`] (the agent's own API serving logs),
//! [`events`] (what the node observes, folded and sent to the event log), [`shipper`] (the
//! last lines of every instance's log, kept by the control plane past the node's death),
//! [`status`] (instances' statuses, reported in batches), [`decommission`] (the node archives
//! what it held, then wipes it, when it is decommissioned), `quarantine` (an instance frozen
//! and archived before it stops), [`own_log`] (the agent's log kept in its data directory).

pub mod beats;
pub mod client;
pub mod decommission;
pub mod events;
pub mod health;
pub mod logs;
pub mod own_log;
mod quarantine;
pub mod shipper;
pub mod status;
pub mod supervisor;

mod agent;
mod failure;
mod launch;

pub use agent::{Agent, AgentConfig, AgentError, InheritedListener, MeshAccess};
