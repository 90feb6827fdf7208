//! A service's progressive rollout (canary, blue-green) as its record keeps it: which release
//! is brought in beside which, the steps, where it stands. The decisions over it are
//! `strata_sched::canary`'s; the controller that moves it is the control plane's.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Millis;

/// A progressive rollout: release `release` brought in beside the stable release (the
/// service's desired one) by the leader's rollout controller, step by step, each step's
/// traffic analysed against the stable's. Kept in the service's record, so a new leader
/// goes on at the same step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Rollout {
    /// The release brought in (the canary; blue-green's new release).
    pub release: u64,
    /// The release serving before it, which keeps its instances until the rollout ends.
    pub stable: u64,
    pub strategy: crate::spec::RolloutStrategy,
    /// The new release's share of the traffic at each step, in percent, the last 100.
    pub steps: Vec<u8>,
    /// The step worked towards: its instances are started, then its share of the traffic
    /// given once they are available, then analysed for the step interval.
    pub step: usize,
    /// The new release's share of the traffic now, in percent (0 until the first step's
    /// instances are available).
    pub weight: u8,
    /// When `weight` took effect: the analysis looks at the traffic since.
    pub weight_since: Millis,
    pub phase: RolloutPhase,
    /// What it does or waits for, or why it ended, with the analysis's numbers.
    pub message: String,
    pub started_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    pub updated_at: Millis,
}

/// Where a progressive rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RolloutPhase {
    /// Steps go on.
    Progressing,
    /// Held at its step by a person (`strata rollout pause`); a failed analysis still rolls
    /// it back.
    Paused,
    /// The new release took all the traffic and passed: it is the desired release.
    Succeeded,
    /// Its analysis failed: the stable release serves alone again.
    RolledBack,
    /// Stopped by a person (`strata rollout abort`, or a rollback or deploy of another
    /// release): the stable release serves alone again.
    Aborted,
}

impl RolloutPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutPhase::Progressing => "progressing",
            RolloutPhase::Paused => "paused",
            RolloutPhase::Succeeded => "succeeded",
            RolloutPhase::RolledBack => "rolled back",
            RolloutPhase::Aborted => "aborted",
        }
    }
}

impl Rollout {
    /// Whether the new release is still brought in (its instances wanted).
    pub fn is_active(&self) -> bool {
        matches!(self.phase, RolloutPhase::Progressing | RolloutPhase::Paused)
    }

    /// The share of the traffic the step being worked towards gives the new release.
    pub fn target_weight(&self) -> u8 {
        self.steps.get(self.step).copied().unwrap_or(100)
    }

    /// How many instances of the new release a step of `weight` percent needs, of a
    /// service of `replicas`: its share, rounded up, at least one.
    pub fn instances_for(weight: u8, replicas: u32) -> u32 {
        if replicas == 0 {
            return 0;
        }
        let share = (u64::from(replicas) * u64::from(weight)).div_ceil(100) as u32;
        share.clamp(1, replicas)
    }

    /// Instances of the new release wanted now: enough for the step worked towards.
    pub fn wanted_instances(&self, replicas: u32) -> u32 {
        Self::instances_for(self.target_weight().max(self.weight), replicas)
    }
}
