//! Strata's pure decisions: what a deploy writes ([`deploy`]: a new configuration version, a
//! new release, a count), where new instances go ([`placement`]), what a service's
//! instances should become next ([`plan`]: scale, rollouts, replacement of lost instances) and
//! how many it should run for its traffic ([`autoscale`]), and whether an environment's
//! services fit its quota ([`quota`]).
//!
//! Everything here is a function over a snapshot passed in by the caller; nothing reads a
//! clock, a store or a socket. Controllers in strata-control build the snapshot, call these
//! functions and apply the result.

pub mod autoscale;
pub mod canary;
pub mod decommission;
pub mod deploy;
pub mod liveness;
pub mod placement;
pub mod plan;
pub mod preview;
pub mod promotion;
pub mod quota;
pub mod rollback;
pub mod tally;

pub use deploy::{plan_deploy, DeployCurrent, DeployPlan, DeployWant};
pub use placement::{place, Demand, NodeView, PlacementError, Placer};
pub use plan::{
    plan_service, plan_service_beside, Beside, NodeStates, Readiness, ServicePlan, StopReason,
};
pub use tally::{plan_by_tally, ServiceTally, Standing};
