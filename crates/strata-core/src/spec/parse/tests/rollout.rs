//! `[service.NAME.rollout]`: rolling, recreate, canary and blue-green, their keys and the
//! errors of steps a rollout could not go through.

use super::*;

#[test]
fn rollout_strategy() {
    use crate::spec::{CanaryCriteria, Ratio, RolloutSpec, RolloutStrategy};
    let source =
        "[service.db]\ncommand = [\"db\"]\n[service.db.rollout]\nstrategy = \"recreate\"\n";
    let spec = parse("strata.toml", source).unwrap();
    assert_eq!(
        spec.services[0].rollout,
        Some(RolloutSpec {
            strategy: RolloutStrategy::Recreate,
            ..RolloutSpec::default()
        })
    );
    // A canary with every key, and one with the defaults.
    let source = "[service.web]\ncommand = [\"web\"]\n[service.web.rollout]\nstrategy = \"canary\"\nsteps = [\"10%\", 50, \"100 %\"]\nstep_interval = \"1m\"\nmax_error_rate = 0.02\nmax_p99_ms = 250\nmin_requests = 100\n";
    let rollout = parse("strata.toml", source).unwrap().services[0]
        .rollout
        .clone()
        .unwrap();
    assert_eq!(
        rollout,
        RolloutSpec {
            strategy: RolloutStrategy::Canary,
            steps: vec![10, 50, 100],
            step_interval_ms: 60_000,
            analysis: CanaryCriteria {
                max_error_rate: Some(Ratio::from_ppm(20_000)),
                max_p99_ms: Some(250),
                min_requests: 100,
            },
        }
    );
    let source = "[service.web]\ncommand = [\"web\"]\nrollout.strategy = \"canary\"\n";
    let rollout = parse("strata.toml", source).unwrap().services[0]
        .rollout
        .clone()
        .unwrap();
    assert_eq!(rollout.steps, [5, 25, 50, 100]);
    assert_eq!(rollout.step_interval_ms, 30_000);
    let source = "[service.web]\ncommand = [\"web\"]\nrollout.strategy = \"blue-green\"\n";
    let rollout = parse("strata.toml", source).unwrap().services[0]
        .rollout
        .clone()
        .unwrap();
    assert_eq!(rollout.strategy, RolloutStrategy::BlueGreen);
    assert_eq!(rollout.traffic_steps(), [100]);
    // The JSON of a rolling spec is what it was before canaries existed (its hash too).
    let rolling = serde_json::to_string(&RolloutSpec::default()).unwrap();
    assert_eq!(rolling, r#"{"strategy":"rolling"}"#);
    let cases = [
        (
            "rollout.strategy = \"recreat\"\n",
            "did you mean `recreate`?",
        ),
        ("rollout.strategy = \"red-black\"\n", "the strategies are"),
        ("rollout.strategy = 3\n", "a string"),
        (
            "rollout.steps = [\"5%\"]\n",
            "applies to `strategy = \"canary\"`, not `rolling`",
        ),
        (
            "rollout.strategy = \"blue-green\"\nrollout.steps = [\"100%\"]\n",
            "blue-green switches all the traffic at once",
        ),
        (
            "rollout.min_requests = 5\n",
            "applies to `strategy = \"canary\"` or `\"blue-green\"`",
        ),
        (
            "rollout.strategy = \"canary\"\nrollout.steps = [\"50%\", \"25%\", \"100%\"]\n",
            "the steps must increase, but 25% follows 50%",
        ),
        (
            "rollout.strategy = \"canary\"\nrollout.steps = [\"5%\", \"50%\"]\n",
            "must end at 100%, but ends at 50%",
        ),
        (
            "rollout.strategy = \"canary\"\nrollout.steps = []\n",
            "must end at 100%, but ends at nothing",
        ),
        (
            "rollout.strategy = \"canary\"\nrollout.steps = [\"0%\", \"100%\"]\n",
            "step \"0%\" is not a percentage from 1% to 100%",
        ),
        (
            "rollout.strategy = \"canary\"\nrollout.steps = [\"150%\"]\n",
            "is not a percentage",
        ),
        (
            "rollout.strategy = \"canary\"\nrollout.steps = \"5%\"\n",
            "an array of percentages",
        ),
        (
            "rollout.strategy = \"canary\"\nrollout.step_interval = \"10ms\"\n",
            "step_interval",
        ),
        (
            "rollout.strategy = \"canary\"\nrollout.max_error_rate = 5\n",
            "max_error_rate = 0.05",
        ),
    ];
    for (body, expected) in cases {
        let source = format!("[service.db]\ncommand = [\"db\"]\n{body}");
        let text = parse("strata.toml", &source).unwrap_err().to_string();
        assert!(text.contains(expected), "{body:?}: {text}");
    }
}
