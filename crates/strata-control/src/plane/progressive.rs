//! How a deploy or a rollback meets a progressive rollout (canary, blue-green): a fixed-port
//! service needs nodes for both releases at once, and a release that takes the desired
//! one's place ends the rollout going on. The rollout itself is run by
//! [`crate::rollouts`].

use strata_core::Service;

use super::ControlPlane;
use crate::ControlError;

impl ControlPlane {
    /// A canary or blue-green of a service with a fixed port runs the new release on other
    /// nodes than the stable one's (both hold the port): refused, with nothing written, when
    /// the cluster has fewer nodes that could take it than both releases in full need.
    pub(super) fn room_for_both_releases(
        &self,
        spec: &strata_core::spec::ServiceSpec,
        replicas: u32,
    ) -> Result<(), ControlError> {
        let strata_core::spec::PortSpec::Fixed(port) = spec.port else {
            return Ok(());
        };
        let state = self.reflector().read();
        let able = state
            .nodes()
            .map(|n| &n.value)
            .filter(|n| n.state != strata_core::NodeState::Down)
            .filter(|n| n.drivers.contains(&spec.driver))
            .filter(|n| {
                spec.constraints
                    .iter()
                    .all(|(key, value)| n.labels.get(key) == Some(value))
            })
            .count();
        let needed = 2 * replicas as usize;
        if able >= needed {
            return Ok(());
        }
        let strategy = spec
            .rollout
            .as_ref()
            .map_or("canary", |r| r.strategy.as_str());
        Err(ControlError::bad_request(
            format!(
                "service `{}`: a {strategy} of a service with a fixed port ({port}) runs the new release on other nodes than the stable one's, so it needs {needed} nodes that can take it ({replicas} for each release) and the cluster has {able}",
                spec.name
            ),
            Some(format!(
                "use `[service.{}.rollout] strategy = \"rolling\"` (it recreates on the same nodes), remove the fixed port, or add nodes",
                spec.name
            )),
        ))
    }
}

/// Ends `service`'s progressive rollout, if one goes on, as release `by` takes its place.
pub(super) fn abort_rollout(service: &mut Service, by: u64, now: u64) {
    let Some(rollout) = service.rollout.as_mut().filter(|r| r.is_active()) else {
        return;
    };
    rollout.phase = strata_core::RolloutPhase::Aborted;
    rollout.weight = 0;
    rollout.message = format!(
        "aborted: release {by} took the place of release {}",
        rollout.release
    );
    rollout.updated_at = now;
    let (release, why) = (rollout.release, rollout.message.clone());
    service.note_ended(release, strata_core::ReleaseEnding::Aborted, why, now);
}
