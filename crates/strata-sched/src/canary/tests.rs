use super::*;
use strata_core::spec::{Ratio, RolloutStrategy};

fn traffic(attempts: u64, failures: u64, p99_ms: Option<f64>) -> ReleaseTraffic {
    ReleaseTraffic {
        attempts,
        failures,
        p99_ms,
    }
}

fn criteria(max_error_rate_ppm: u32, max_p99_ms: Option<u64>, min_requests: u32) -> CanaryCriteria {
    CanaryCriteria {
        max_error_rate: Some(Ratio::from_ppm(max_error_rate_ppm)),
        max_p99_ms,
        min_requests,
    }
}

#[test]
fn analysis_table() {
    // (name, new, stable, criteria, expected: "pass" | "fail" | "little")
    let one_percent = criteria(10_000, None, 20);
    let with_p99 = criteria(10_000, Some(100), 20);
    let cases: Vec<(
        &str,
        ReleaseTraffic,
        Option<ReleaseTraffic>,
        CanaryCriteria,
        &str,
    )> = vec![
        (
            "too few requests to judge",
            traffic(19, 2, None),
            None,
            one_percent,
            "little",
        ),
        (
            "failures past what twenty would tolerate fail before twenty",
            traffic(10, 3, None),
            None,
            one_percent,
            "fail",
        ),
        (
            "all of the first few failing fails at once",
            traffic(3, 3, None),
            None,
            one_percent,
            "fail",
        ),
        (
            "a clean canary passes",
            traffic(100, 0, None),
            Some(traffic(2000, 0, None)),
            one_percent,
            "pass",
        ),
        (
            "one unlucky error in twenty is chance",
            traffic(20, 1, None),
            Some(traffic(400, 0, None)),
            one_percent,
            "pass",
        ),
        (
            "a canary failing 30% fails within its first twenty",
            traffic(20, 6, None),
            Some(traffic(400, 0, None)),
            one_percent,
            "fail",
        ),
        (
            "30% of a thousand fails",
            traffic(1000, 300, None),
            Some(traffic(20000, 10, None)),
            one_percent,
            "fail",
        ),
        (
            "as bad as the stable is not the canary's fault",
            traffic(1000, 52, None),
            Some(traffic(20000, 1000, None)),
            one_percent,
            "pass",
        ),
        (
            "worse than the stable by far more than the margin",
            traffic(1000, 150, None),
            Some(traffic(20000, 1000, None)),
            one_percent,
            "fail",
        ),
        (
            "a 3% error rate over many requests fails a 1% margin",
            traffic(5000, 150, None),
            Some(traffic(20000, 0, None)),
            one_percent,
            "fail",
        ),
        (
            "no stable traffic (blue-green after the switch): the margin alone",
            traffic(500, 1, None),
            None,
            one_percent,
            "pass",
        ),
        (
            "slow and slower than the stable fails the p99 limit",
            traffic(100, 0, Some(250.0)),
            Some(traffic(1000, 0, Some(40.0))),
            with_p99,
            "fail",
        ),
        (
            "slow, but as slow as the stable",
            traffic(100, 0, Some(250.0)),
            Some(traffic(1000, 0, Some(240.0))),
            with_p99,
            "pass",
        ),
        (
            "under the limit",
            traffic(100, 0, Some(90.0)),
            Some(traffic(1000, 0, Some(20.0))),
            with_p99,
            "pass",
        ),
        (
            "no limit: latency is not judged",
            traffic(100, 0, Some(900.0)),
            Some(traffic(1000, 0, Some(20.0))),
            one_percent,
            "pass",
        ),
    ];
    for (name, new, stable, criteria, expected) in cases {
        let verdict = analyse(3, &new, 2, stable.as_ref(), &criteria);
        let got = match &verdict {
            Verdict::Pass(_) => "pass",
            Verdict::Fail(_) => "fail",
            Verdict::TooLittle(_) => "little",
        };
        assert_eq!(got, expected, "{name}: {verdict:?}");
    }
    // The numbers are in the message.
    let Verdict::Fail(message) = analyse(
        3,
        &traffic(20, 6, None),
        2,
        Some(&traffic(400, 0, None)),
        &one_percent,
    ) else {
        panic!("fails");
    };
    assert!(
        message.contains("release 3: 6 of 20 requests failed (30.0%)")
            && message.contains("release 2: 0 of 400"),
        "{message}"
    );
}

fn rollout(step: usize, weight: u8, phase: RolloutPhase) -> Rollout {
    Rollout {
        release: 3,
        stable: 2,
        strategy: RolloutStrategy::Canary,
        steps: vec![5, 25, 50, 100],
        step,
        weight,
        weight_since: 10_000,
        phase,
        message: String::new(),
        started_at: 0,
        started_by: None,
        updated_at: 0,
    }
}

fn facts(now: u64, available: u32, verdict: Option<Verdict>) -> Facts {
    Facts {
        now,
        replicas: 10,
        available,
        verdict,
        interval_ms: 30_000,
        failing: None,
    }
}

#[test]
fn controller_table() {
    use RolloutPhase::*;
    let pass = || Some(Verdict::Pass("ok".into()));
    let fail = || Some(Verdict::Fail("bad".into()));
    let little = || Some(Verdict::TooLittle("7 of 20".into()));
    // (name, rollout, facts, expected kind, and for shifts/steps the number)
    let cases: Vec<(&str, Rollout, Facts, &str, Option<usize>)> = vec![
        (
            "first step's instance not yet available",
            rollout(0, 0, Progressing),
            facts(0, 0, None),
            "wait",
            None,
        ),
        (
            "first step's instance available: 5%",
            rollout(0, 0, Progressing),
            facts(0, 1, None),
            "shift",
            Some(5),
        ),
        (
            "step 2 needs 3 of 10 for 25%",
            rollout(1, 5, Progressing),
            facts(50_000, 2, pass()),
            "wait",
            None,
        ),
        (
            "step 2's three available: 25%",
            rollout(1, 5, Progressing),
            facts(50_000, 3, pass()),
            "shift",
            Some(25),
        ),
        (
            "within the interval nothing moves",
            rollout(1, 25, Progressing),
            facts(39_999, 3, pass()),
            "nothing",
            None,
        ),
        (
            "interval over and passing: next step",
            rollout(1, 25, Progressing),
            facts(40_000, 3, pass()),
            "step",
            Some(2),
        ),
        (
            "interval over, too little traffic: waits",
            rollout(1, 25, Progressing),
            facts(40_000, 3, little()),
            "wait",
            None,
        ),
        (
            "interval over, no traffic measured: waits",
            rollout(1, 25, Progressing),
            facts(40_000, 3, None),
            "wait",
            None,
        ),
        (
            "a failure within the interval rolls back at once",
            rollout(1, 25, Progressing),
            facts(11_000, 3, fail()),
            "rollback",
            None,
        ),
        (
            "the last step passed: succeed",
            rollout(3, 100, Progressing),
            facts(40_000, 10, pass()),
            "succeed",
            None,
        ),
        (
            "paused holds the step",
            rollout(1, 25, Paused),
            facts(90_000, 3, pass()),
            "wait",
            None,
        ),
        (
            "paused still rolls back on failure",
            rollout(1, 25, Paused),
            facts(90_000, 3, fail()),
            "rollback",
            None,
        ),
        (
            "no traffic share yet: a failure is not judged",
            rollout(0, 0, Progressing),
            facts(0, 0, fail()),
            "wait",
            None,
        ),
        (
            "ended rollouts do nothing",
            rollout(3, 100, Succeeded),
            facts(90_000, 10, pass()),
            "nothing",
            None,
        ),
        (
            "rolled back ones do nothing",
            rollout(1, 0, RolledBack),
            facts(90_000, 3, fail()),
            "nothing",
            None,
        ),
    ];
    for (name, rollout, facts, kind, number) in cases {
        let decision = next(&rollout, &facts);
        let (got, got_number) = match &decision {
            Decision::Nothing => ("nothing", None),
            Decision::Wait(_) => ("wait", None),
            Decision::Shift { weight, .. } => ("shift", Some(*weight as usize)),
            Decision::NextStep { step, .. } => ("step", Some(*step)),
            Decision::Succeed(_) => ("succeed", None),
            Decision::RollBack(_) => ("rollback", None),
        };
        assert_eq!((got, got_number), (kind, number), "{name}: {decision:?}");
    }
}

#[test]
fn a_new_release_whose_instances_do_not_start_is_rolled_back_before_any_traffic() {
    let crashing = Facts {
        failing: Some("web-3-a crashed 3 times: exit 1".into()),
        ..facts(0, 0, None)
    };
    let decision = next(&rollout(0, 0, RolloutPhase::Progressing), &crashing);
    assert!(
        matches!(&decision, Decision::RollBack(why) if why.contains("do not start") && why.contains("exit 1")),
        "{decision:?}"
    );
    // Paused too: a paused rollout does not keep a crashing release.
    assert!(matches!(
        next(&rollout(1, 25, RolloutPhase::Paused), &crashing),
        Decision::RollBack(_)
    ));
}

#[test]
fn waiting_for_traffic_is_recorded_once_however_the_counts_move() {
    let mut waiting = rollout(1, 25, RolloutPhase::Progressing);
    let little = |n: u64| {
        Some(Verdict::TooLittle(format!(
            "release 3: 0 of {n} requests failed"
        )))
    };
    let Decision::Wait(message) = next(&waiting, &facts(40_000, 3, little(5))) else {
        panic!("waits");
    };
    waiting.message = message;
    assert_eq!(
        next(&waiting, &facts(41_000, 3, little(7))),
        Decision::Nothing
    );
}

#[test]
fn a_wait_already_recorded_writes_nothing_again() {
    let mut waiting = rollout(0, 0, RolloutPhase::Progressing);
    let Decision::Wait(message) = next(&waiting, &facts(0, 0, None)) else {
        panic!("waits");
    };
    assert!(message.contains("1 needed"), "{message}");
    waiting.message = message;
    assert_eq!(next(&waiting, &facts(1_000, 0, None)), Decision::Nothing);
}

#[test]
fn blue_green_switches_once_every_instance_is_available() {
    let mut blue_green = rollout(0, 0, RolloutPhase::Progressing);
    blue_green.strategy = RolloutStrategy::BlueGreen;
    blue_green.steps = vec![100];
    assert!(matches!(
        next(&blue_green, &facts(0, 9, None)),
        Decision::Wait(_)
    ));
    assert!(matches!(
        next(&blue_green, &facts(0, 10, None)),
        Decision::Shift { weight: 100, .. }
    ));
}

#[test]
fn instances_for_each_share() {
    // (weight, replicas, instances)
    for (weight, replicas, expected) in [
        (5, 10, 1),
        (25, 10, 3),
        (50, 10, 5),
        (100, 10, 10),
        (5, 1, 1),
        (1, 1000, 10),
        (100, 0, 0),
        (0, 4, 1),
    ] {
        assert_eq!(
            Rollout::instances_for(weight, replicas),
            expected,
            "{weight}% of {replicas}"
        );
    }
}

#[test]
fn p99_over_seconds_ignores_one_slow_second_in_ten() {
    let mut seconds = vec![10.0; 19];
    seconds.push(900.0);
    assert_eq!(p99_over_seconds(seconds), Some(10.0));
    let mut slow_often = vec![10.0; 8];
    slow_often.extend([900.0, 900.0]);
    assert_eq!(p99_over_seconds(slow_often), Some(900.0));
    assert_eq!(p99_over_seconds(vec![]), None);
}
