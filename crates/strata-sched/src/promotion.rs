//! Whether a release may be promoted out of its environment: it must be the one running
//! there, serving in full, for at least the soak, within its SLO over it (when it has one).
//! Pure; the control plane gathers the facts.

use strata_core::api::SloReport;

/// What the source environment says of the release.
#[derive(Debug, Clone, Copy)]
pub struct SourceHealth<'a> {
    /// It is the release the service runs there.
    pub runs_it: bool,
    /// As many of its instances available as the service wants.
    pub serves_in_full: bool,
    /// How long since it was made.
    pub served_ms: u64,
    /// Its SLO over the soak (`None`: the service has no SLO).
    pub slo: Option<&'a SloReport>,
}

/// A p99 target met in fewer of the soak's seconds than this is a missed SLO.
pub const P99_ATTAINMENT_NEEDED: f64 = 0.99;

/// Why release `number` of `name` in `from` may not be promoted (message, hint), or `None`.
pub fn promotion_refusal(
    name: &str,
    from: &str,
    number: u64,
    soak_ms: u64,
    health: &SourceHealth<'_>,
) -> Option<(String, String)> {
    let force = "or --force to promote it anyway".to_string();
    if !health.runs_it {
        return Some((
            format!("release {number} of {name} is not the one {from} runs"),
            format!("promote the release {from} runs (leave out --release), {force}"),
        ));
    }
    if !health.serves_in_full {
        return Some((
            format!("release {number} of {name} does not serve in full in {from}"),
            format!("see `strata status {name} --env {from}`; wait for it, {force}"),
        ));
    }
    if health.served_ms < soak_ms {
        return Some((
            format!(
                "release {number} of {name} has served {} s in {from}, less than the {} s soak",
                health.served_ms / 1_000,
                soak_ms / 1_000
            ),
            format!("wait, pass a shorter --soak, {force}"),
        ));
    }
    if let Some(slo) = health.slo {
        if slo.error_budget_left.is_some_and(|left| left < 0.0) {
            return Some((
                format!(
                    "release {number} of {name} missed its SLO in {from} over the soak: {} of {} requests failed",
                    slo.errors, slo.requests
                ),
                format!("see `strata status {name} --env {from}`; fix it, {force}"),
            ));
        }
        if slo
            .p99_attainment
            .is_some_and(|met| met < P99_ATTAINMENT_NEEDED)
        {
            return Some((
                format!(
                    "release {number} of {name} missed its p99 target in {from} over the soak: met in {:.1}% of seconds (worst p99 {:.0} ms)",
                    slo.p99_attainment.unwrap_or_default() * 100.0,
                    slo.worst_p99_ms.unwrap_or_default()
                ),
                format!("see `strata status {name} --env {from}`; fix it, {force}"),
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(errors: u64, budget_left: f64, p99_met: f64) -> SloReport {
        SloReport {
            env: "staging".into(),
            service: "web".into(),
            covered_s: 600,
            requests: 1_000,
            errors,
            success: Some(1.0 - errors as f64 / 1_000.0),
            allowed_failures: Some(0.001),
            error_budget_left: Some(budget_left),
            p99_target_ms: Some(300),
            p99_attainment: Some(p99_met),
            worst_p99_ms: Some(450.0),
        }
    }

    #[test]
    fn what_may_be_promoted() {
        let good = report(0, 1.0, 1.0);
        let failing = report(30, -29.0, 1.0);
        let slow = report(0, 1.0, 0.9);
        let health = |runs_it, serves_in_full, served_ms, slo| SourceHealth {
            runs_it,
            serves_in_full,
            served_ms,
            slo,
        };
        let soak = 600_000;
        // (health, refused with)
        let table = [
            (health(true, true, 700_000, Some(&good)), None),
            (health(true, true, 700_000, None), None),
            (
                health(false, true, 700_000, None),
                Some("not the one staging runs"),
            ),
            (
                health(true, false, 700_000, None),
                Some("does not serve in full"),
            ),
            (
                health(true, true, 60_000, None),
                Some("served 60 s in staging, less than the 600 s soak"),
            ),
            (
                health(true, true, 700_000, Some(&failing)),
                Some("30 of 1000 requests failed"),
            ),
            (
                health(true, true, 700_000, Some(&slow)),
                Some("met in 90.0% of seconds"),
            ),
        ];
        for (health, refused) in table {
            let got = promotion_refusal("web", "staging", 4, soak, &health);
            match (got, refused) {
                (None, None) => {}
                (Some((message, hint)), Some(word)) => {
                    assert!(message.contains(word), "{message}");
                    assert!(hint.contains("--force"), "{hint}");
                }
                (got, want) => panic!("{health:?}: {got:?}, wanted {want:?}"),
            }
        }
    }
}
