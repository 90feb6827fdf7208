//! Progressive rollouts (canary, blue-green): the analysis of a new release's traffic against
//! the stable release's over the same seconds, and the rollout controller's next move. Pure:
//! the control plane's controller reads the rollout, the new release's available instances and
//! the traffic the nodes reported, asks [`next`], and writes the answer.
//!
//! A rollout works through its steps (a canary's shares of the traffic, say 5, 25, 50, 100%;
//! blue-green's one switch to 100%). For each step: the step's instances of the new release
//! are started (its share of the service's replicas, rounded up; all of them for 100%), the
//! traffic share is given once they are available, and that share's traffic is analysed for
//! the step interval. A step passes when the interval is over and the analysis passes; it
//! waits, saying so, while the new release has answered too few requests to judge. The
//! analysis runs all along: the moment it fails, the rollout is rolled back, even when paused.
//!
//! The analysis compares attempts (a retried request counts at each instance it went to, so a
//! failing canary shows though retries hide it from callers):
//!
//! - **Errors**: the new release fails when its failures exceed what its share of requests
//!   would have at the stable release's error rate plus `max_error_rate`, by more than chance
//!   explains (three standard deviations of that count, plus one): a healthy canary is not
//!   rolled back for one unlucky error in twenty, a canary failing 30% of its requests is
//!   within its first twenty. Failures already past what `min_requests` requests would
//!   tolerate fail it before it answered that many (they would then too).
//! - **Latency**: with a p99 limit, the new release fails when its p99 is over the limit and
//!   over 1.2 times the stable release's p99 over the same seconds (a slow backend that slows
//!   both is not the canary's fault).

use strata_core::spec::CanaryCriteria;
use strata_core::{Rollout, RolloutPhase};

/// What one release's instances answered over the analysed seconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ReleaseTraffic {
    pub attempts: u64,
    pub failures: u64,
    /// The release's p99 latency over those seconds, when it had any traffic.
    pub p99_ms: Option<f64>,
}

impl ReleaseTraffic {
    pub fn error_rate(&self) -> f64 {
        if self.attempts == 0 {
            0.0
        } else {
            self.failures as f64 / self.attempts as f64
        }
    }

    fn describe(&self, release: u64) -> String {
        let p99 = self
            .p99_ms
            .map_or(String::new(), |ms| format!(", p99 {ms:.0} ms"));
        format!(
            "release {release}: {} of {} requests failed ({:.1}%){p99}",
            self.failures,
            self.attempts,
            self.error_rate() * 100.0
        )
    }
}

/// The analysis of the new release's traffic.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// It meets the criteria; the numbers.
    Pass(String),
    /// It does not; the numbers and the criterion it failed.
    Fail(String),
    /// Too few requests to judge.
    TooLittle(String),
}

/// Judges the new release `new` (release number `release`) against `stable` (the stable
/// release's traffic over the same seconds; `None` when it had none, as after blue-green's
/// switch), under `criteria` with the service's SLO already folded in
/// ([`CanaryCriteria::with_slo`]).
pub fn analyse(
    release: u64,
    new: &ReleaseTraffic,
    stable_release: u64,
    stable: Option<&ReleaseTraffic>,
    criteria: &CanaryCriteria,
) -> Verdict {
    let stable = stable.filter(|stable| stable.attempts > 0);
    let numbers = match stable {
        Some(stable) => format!(
            "{}; {}",
            new.describe(release),
            stable.describe(stable_release)
        ),
        None => new.describe(release),
    };
    let margin = criteria
        .max_error_rate
        .unwrap_or(CanaryCriteria::DEFAULT_MAX_ERROR_RATE)
        .as_f64();
    let allowed_rate = (stable.map_or(0.0, ReleaseTraffic::error_rate) + margin).min(1.0);
    // The failures chance explains among `n` requests at the allowed rate. It grows with
    // `n`: failures past what `min_requests` would tolerate fail the release before it has
    // answered that many, as they would once it had.
    let tolerated =
        |n: f64| allowed_rate * n + 3.0 * (n * allowed_rate * (1.0 - allowed_rate)).sqrt() + 1.0;
    let judged = new.attempts.max(u64::from(criteria.min_requests));
    let too_many = new.failures as f64 > tolerated(judged as f64);
    if !too_many && new.attempts < u64::from(criteria.min_requests) {
        return Verdict::TooLittle(format!(
            "{numbers}; {} requests are needed to judge it",
            criteria.min_requests
        ));
    }
    if too_many {
        let allowed = match stable {
            Some(_) => format!("{:.1}% over the stable release's rate", margin * 100.0),
            None => format!("{:.1}%", margin * 100.0),
        };
        return Verdict::Fail(format!("{numbers}: more errors than allowed ({allowed})"));
    }
    if let (Some(limit), Some(p99)) = (criteria.max_p99_ms, new.p99_ms) {
        let limit = limit as f64;
        let stable_p99 = stable.and_then(|s| s.p99_ms).unwrap_or(0.0);
        if p99 > limit && p99 > stable_p99 * 1.2 {
            return Verdict::Fail(format!(
                "{numbers}: p99 over the {limit:.0} ms allowed{}",
                if stable.is_some() {
                    " and 1.2 times the stable release's"
                } else {
                    ""
                }
            ));
        }
    }
    Verdict::Pass(numbers)
}

/// What the controller knows of a rollout's new release now.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    /// The control plane's clock, ms.
    pub now: u64,
    /// The service's replicas (what the steps' shares are of).
    pub replicas: u32,
    /// Instances of the new release available (healthy for `min_ready`).
    pub available: u32,
    /// The analysis of the traffic since the current weight took effect (`None` while the
    /// new release gets no traffic).
    pub verdict: Option<Verdict>,
    /// How long each step is analysed.
    pub interval_ms: u64,
    /// Why the new release's instances do not start, if they do not: one failed for good,
    /// or crashed [`CRASHES_BEFORE_ROLLBACK`] times (no analysis ever judges a release whose
    /// instances never take traffic).
    pub failing: Option<String>,
}

/// Restarts after which a crashing instance of the new release rolls the rollout back.
pub const CRASHES_BEFORE_ROLLBACK: u32 = 3;

/// The controller's next move.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing to write (the rollout is not going on, or waits as its record already says).
    Nothing,
    /// Still waiting, for a reason its record does not say yet.
    Wait(String),
    /// The step's instances are available: give the new release `weight` percent.
    Shift { weight: u8, message: String },
    /// The step passed; on to the next step (its instances start first).
    NextStep { step: usize, message: String },
    /// The last step passed: the new release becomes the desired one.
    Succeed(String),
    /// The analysis failed: the new release is taken out.
    RollBack(String),
}

/// Decides `rollout`'s next move from `facts`. Idempotent: asked again over the state its
/// answer leads to, it answers the next move or [`Decision::Nothing`].
pub fn next(rollout: &Rollout, facts: &Facts) -> Decision {
    if !rollout.is_active() {
        return Decision::Nothing;
    }
    let steps = rollout.steps.len();
    let target = rollout.target_weight();
    let step_name = format!(
        "step {} of {steps} ({target}%)",
        (rollout.step + 1).min(steps.max(1))
    );
    // A failing new release is taken out at once, whatever the step, paused or not.
    if let (true, Some(Verdict::Fail(numbers))) = (rollout.weight > 0, &facts.verdict) {
        return Decision::RollBack(format!(
            "analysis failed at {}% of the traffic: {numbers}",
            rollout.weight
        ));
    }
    if let Some(why) = &facts.failing {
        return Decision::RollBack(format!(
            "release {}'s instances do not start: {why}",
            rollout.release
        ));
    }
    let wait = |message: String| {
        if rollout.message == message {
            Decision::Nothing
        } else {
            Decision::Wait(message)
        }
    };
    if rollout.phase == RolloutPhase::Paused {
        return wait(format!(
            "paused at {}% of the traffic, working towards {step_name}; `strata rollout resume` goes on",
            rollout.weight
        ));
    }
    if rollout.weight < target {
        let needed = Rollout::instances_for(target, facts.replicas);
        if facts.available >= needed {
            return Decision::Shift {
                weight: target,
                message: format!(
                    "{step_name}: release {} takes {target}% of the traffic ({} instances available); analysing for {}",
                    rollout.release,
                    facts.available,
                    seconds(facts.interval_ms)
                ),
            };
        }
        return wait(format!(
            "{step_name}: starting release {}'s instances ({needed} needed before it takes {target}% of the traffic)",
            rollout.release
        ));
    }
    let elapsed = facts.now.saturating_sub(rollout.weight_since);
    if elapsed < facts.interval_ms {
        return Decision::Nothing;
    }
    match &facts.verdict {
        Some(Verdict::Pass(numbers)) if rollout.step + 1 >= steps => Decision::Succeed(format!(
            "release {} passed every step and is the desired release: {numbers}",
            rollout.release
        )),
        Some(Verdict::Pass(numbers)) => Decision::NextStep {
            step: rollout.step + 1,
            message: format!("{step_name} passed: {numbers}"),
        },
        // Without the counts, which change with every request: the record is written
        // once for the wait, not at each tick (`strata rollout status` shows the counts).
        Some(Verdict::TooLittle(_)) => wait(format!(
            "{step_name}: too little traffic to judge release {}; waiting for more requests",
            rollout.release
        )),
        // Fail was handled above; no verdict: no traffic measured at all.
        _ => wait(format!(
            "{step_name}: no traffic measured for release {} yet; waiting for requests",
            rollout.release
        )),
    }
}

fn seconds(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// The p99 of a release over several seconds from each second's p99 (the nodes' per-second
/// upper bounds): the 90th percentile of the seconds' values, so one slow second does not
/// decide and a release slow a tenth of the time does.
pub fn p99_over_seconds(mut per_second: Vec<f64>) -> Option<f64> {
    if per_second.is_empty() {
        return None;
    }
    per_second.sort_by(f64::total_cmp);
    let index = ((per_second.len() as f64) * 0.9).ceil() as usize;
    Some(per_second[index.saturating_sub(1).min(per_second.len() - 1)])
}

#[cfg(test)]
mod tests;
