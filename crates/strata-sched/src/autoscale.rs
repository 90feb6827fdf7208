//! How many instances a service should run, from its recent traffic: the autoscaler's
//! decision, a pure function of the per-second samples every node's proxy reports (merged by
//! the control plane), the current count and the service's bounds and SLO.
//!
//! - Up, fast: the most requests in flight in a second of the last [`FAST_WINDOW_MS`] ask
//!   for `ceil(in flight / target_concurrency)` instances; a p99 over the SLO while requests queue
//!   (at least one in flight per instance) doubles the count. A spike is answered within
//!   seconds (Knative's panic window needs 6 s of data, HPA looks every 15 s).
//! - Down, slowly: only to the most the last stable window (default
//!   [`DEFAULT_STABLE_WINDOW_MS`]) asked for, only once the
//!   count has not changed for that long (a flapping load does not flap the instances), and
//!   not while the p99 misses the SLO.
//! - To zero (`min = 0`): after `scale_to_zero_after` with no request and none in flight; from
//!   zero as soon as a request is seen (the ingress holds it and counts it in flight).
//! - Never below `min` nor above `max`.
//!
//! Every decision carries its reason, written as the event users read: `"p99 212 ms > slo
//! 100 ms over 2 s: 3 -> 6"`.

use strata_core::api::SecondSample;

/// The window that reacts to spikes.
pub const FAST_WINDOW_MS: u64 = 2_000;
/// The window that must agree before the count goes down, unless the platform is told
/// otherwise (`--scale-down-window`).
pub const DEFAULT_STABLE_WINDOW_MS: u64 = 30_000;

/// What bounds a service's scale, from its spec.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScalePolicy {
    pub min: u32,
    pub max: u32,
    /// Requests in flight per instance to aim at.
    pub target_concurrency: u32,
    /// With `min = 0`: how long without traffic before the last instance stops.
    pub scale_to_zero_after_ms: u64,
    /// The SLO's p99, if it has one.
    pub slo_p99_ms: Option<f64>,
    /// How long the count must have held, and the window whose busiest second it may go down
    /// to.
    pub stable_window_ms: u64,
}

/// A change of scale and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleDecision {
    pub replicas: u32,
    pub reason: String,
}

/// The autoscaler's decision at `now_ms` for a service running `current` instances since
/// `changed_at_ms` (when the count last changed), given `seconds` (oldest first, as
/// [`strata_core::api::ServiceMetrics`] has them). `None`: keep the count.
pub fn decide(
    now_ms: u64,
    current: u32,
    changed_at_ms: u64,
    policy: &ScalePolicy,
    seconds: &[SecondSample],
) -> Option<ScaleDecision> {
    let min = policy.min.min(policy.max);
    let max = policy.max.max(1);
    let change = |replicas: u32, why: String| {
        (replicas != current).then(|| ScaleDecision {
            replicas,
            reason: format!("{why}: {current} -> {replicas}"),
        })
    };
    if current < min {
        return change(min, format!("below min {min}"));
    }
    if current > max {
        return change(max, format!("above max {max}"));
    }
    let within = |window: u64| {
        seconds
            .iter()
            // Seconds that began within the window (the last one may still be running).
            .filter(move |s| s.at + window >= now_ms && s.at <= now_ms)
    };
    let target = f64::from(policy.target_concurrency.max(1));
    let need = |in_flight: f64| (in_flight / target).ceil().clamp(0.0, f64::from(max)) as u32;

    // Up, from the fast window.
    let fast: Vec<&SecondSample> = within(FAST_WINDOW_MS).collect();
    let mut slo_breached = false;
    if !fast.is_empty() {
        // The busiest second of the window: a step shows in the first report after it.
        let in_flight = fast
            .iter()
            .map(|s| s.in_flight.max(0) as f64)
            .fold(0.0, f64::max);
        let requests: u64 = fast.iter().map(|s| s.requests).sum();
        if current == 0 && (in_flight > 0.0 || requests > 0) {
            let wanted = need(in_flight).max(1).max(min);
            return change(
                wanted,
                format!("{} waiting at zero instances", in_flight.ceil().max(1.0)),
            );
        }
        let wanted = need(in_flight).max(min);
        if wanted > current {
            return change(
                wanted,
                format!(
                    "{in_flight:.0} in flight over {} s > {} per instance",
                    FAST_WINDOW_MS / 1000,
                    policy.target_concurrency
                ),
            );
        }
        if let Some(slo) = policy.slo_p99_ms {
            let p99 = fast
                .iter()
                .filter(|s| s.requests > 0)
                .map(|s| s.p99_ms)
                .fold(0.0, f64::max);
            // More instances help a slow p99 only when requests queue for them, and only once
            // the last change has had time to show.
            let queueing = current > 0 && in_flight >= f64::from(current);
            let settled = now_ms >= changed_at_ms + FAST_WINDOW_MS;
            slo_breached = p99 > slo;
            if p99 > slo && queueing && settled && current < max {
                let wanted = (current * 2).clamp(current + 1, max);
                return change(
                    wanted,
                    format!(
                        "p99 {p99:.0} ms > slo {slo:.0} ms over {} s",
                        FAST_WINDOW_MS / 1000
                    ),
                );
            }
        }
    }

    // To zero, after the idle period.
    let last_active = seconds
        .iter()
        .filter(|s| s.requests > 0 || s.in_flight > 0)
        .map(|s| s.at + 1000)
        .max()
        .unwrap_or(0)
        .max(changed_at_ms);
    if min == 0 && current > 0 && now_ms >= last_active + policy.scale_to_zero_after_ms {
        return change(
            0,
            format!("no request for {} s", (now_ms - last_active) / 1000),
        );
    }

    // Down, only as far as the whole stable window allows, and never while the SLO is missed.
    let stable = policy.stable_window_ms;
    if now_ms < changed_at_ms + stable || slo_breached {
        return None;
    }
    let busiest = within(stable)
        .map(|s| s.in_flight.max(0) as f64)
        .fold(0.0, f64::max);
    let wanted = need(busiest).max(min).max(1);
    if wanted < current {
        return change(
            wanted,
            format!(
                "at most {busiest:.0} in flight over {} s, {} per instance",
                stable / 1000,
                policy.target_concurrency
            ),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: ScalePolicy = ScalePolicy {
        min: 1,
        max: 10,
        target_concurrency: 10,
        scale_to_zero_after_ms: 60_000,
        slo_p99_ms: Some(100.0),
        stable_window_ms: DEFAULT_STABLE_WINDOW_MS,
    };

    /// Seconds ending at `now`: `in_flight[i]` with 100 requests and a p99 of 20 ms each.
    fn load(now: u64, in_flight: &[i64]) -> Vec<SecondSample> {
        let n = in_flight.len() as u64;
        in_flight
            .iter()
            .enumerate()
            .map(|(i, &f)| SecondSample {
                at: now - (n - i as u64) * 1000,
                requests: if f > 0 { 100 } else { 0 },
                errors: 0,
                in_flight: f,
                p99_ms: 20.0,
            })
            .collect()
    }

    fn with_p99(mut seconds: Vec<SecondSample>, p99: f64) -> Vec<SecondSample> {
        for s in &mut seconds {
            s.p99_ms = p99;
        }
        seconds
    }

    /// (case, current, changed at, policy, samples, wanted count and reason)
    type Case = (
        &'static str,
        u32,
        u64,
        ScalePolicy,
        Vec<SecondSample>,
        Option<(u32, &'static str)>,
    );

    #[test]
    fn decisions_table() {
        let now = 1_000_000;
        let long_ago = now - 120_000;
        let zero = ScalePolicy { min: 0, ..POLICY };
        let no_slo = ScalePolicy {
            slo_p99_ms: None,
            ..POLICY
        };
        let cases: Vec<Case> = vec![
            (
                "a spike: 10x the load is answered at once",
                1,
                long_ago,
                POLICY,
                [load(now - 2_000, &[5; 28]), load(now, &[50, 50])].concat(),
                Some((5, "50 in flight over 2 s > 10 per instance: 1 -> 5")),
            ),
            (
                "a spike beyond max stops at max",
                2,
                long_ago,
                POLICY,
                load(now, &[500, 500]),
                Some((10, "500 in flight over 2 s > 10 per instance: 2 -> 10")),
            ),
            (
                "a plateau at the target keeps the count",
                3,
                long_ago,
                POLICY,
                load(now, &[30; 30]),
                None,
            ),
            (
                "a slow decline: down only to the busiest second of the stable window",
                6,
                long_ago,
                POLICY,
                load(now, &[40, 38, 36, 34, 32, 30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10]),
                Some((4, "at most 40 in flight over 30 s, 10 per instance: 6 -> 4")),
            ),
            (
                "flapping input does not flap: one busy second in the stable window holds the count",
                5,
                long_ago,
                POLICY,
                load(now, &[5, 5, 5, 45, 5, 5, 5, 5, 5, 5, 5, 5]),
                None,
            ),
            (
                "no scale-down until the count has held for the stable window",
                6,
                now - 10_000,
                POLICY,
                load(now, &[5; 10]),
                None,
            ),
            (
                "never below min, even idle",
                1,
                long_ago,
                POLICY,
                load(now, &[0; 30]),
                None,
            ),
            (
                "a count below min (min raised) goes up to min",
                1,
                long_ago,
                ScalePolicy { min: 3, ..POLICY },
                vec![],
                Some((3, "below min 3: 1 -> 3")),
            ),
            (
                "a count above max (max lowered) goes down to max",
                8,
                now,
                ScalePolicy { max: 4, ..POLICY },
                load(now, &[80, 80]),
                Some((4, "above max 4: 8 -> 4")),
            ),
            (
                "min 0: the last instance stops after the idle period",
                1,
                long_ago,
                zero,
                [load(now - 61_000, &[3]), load(now, &[0; 30])].concat(),
                Some((0, "no request for 61 s: 1 -> 0")),
            ),
            (
                "min 0: not before the idle period",
                1,
                long_ago,
                zero,
                [load(now - 30_000, &[3]), load(now, &[0; 29])].concat(),
                None,
            ),
            (
                "min 0: a service just scaled up is not idle",
                1,
                now - 5_000,
                zero,
                vec![],
                None,
            ),
            (
                "from zero: a held request starts an instance",
                0,
                long_ago,
                zero,
                load(now, &[0, 1]),
                Some((1, "1 waiting at zero instances: 0 -> 1")),
            ),
            (
                "from zero: a crowd starts enough instances",
                0,
                long_ago,
                zero,
                load(now, &[0, 35]),
                Some((4, "35 waiting at zero instances: 0 -> 4")),
            ),
            (
                "at zero and idle: stays at zero",
                0,
                long_ago,
                zero,
                load(now, &[0; 10]),
                None,
            ),
            (
                "p99 over the SLO while requests queue: double",
                3,
                long_ago,
                POLICY,
                with_p99(load(now, &[25, 25]), 212.0),
                Some((6, "p99 212 ms > slo 100 ms over 2 s: 3 -> 6")),
            ),
            (
                "p99 over the SLO with nothing queueing: more instances would not help",
                3,
                long_ago,
                POLICY,
                with_p99(load(now, &[1, 1]), 212.0),
                None,
            ),
            (
                "p99 over the SLO right after a change: wait for it to show",
                3,
                now - 1_000,
                POLICY,
                with_p99(load(now, &[25, 25]), 212.0),
                None,
            ),
            (
                "no SLO: latency alone changes nothing",
                3,
                long_ago,
                no_slo,
                with_p99(load(now, &[25, 25]), 212.0),
                None,
            ),
        ];
        for (case, current, changed_at, policy, samples, want) in cases {
            let got = decide(now, current, changed_at, &policy, &samples);
            let got = got.as_ref().map(|d| (d.replicas, d.reason.as_str()));
            assert_eq!(got, want, "{case}");
        }
    }
}
