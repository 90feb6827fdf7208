//! Canary and blue-green rollouts through the control plane, in-process (the harness of
//! tests/common/harness.rs): the deploy begins the rollout beside the stable release, the
//! reconciler places each step's instances, the routes split the traffic by weight, and the
//! rollout controller moves through the steps on the traffic the nodes report, or rolls the
//! new release back, with a new leader going on at the same step.

mod common;

use common::harness::{dev, Harness};
use strata_control::rollouts::{control_rollouts_once, RolloutAction};
use strata_core::api::{MetricsReport, ReleaseWindow, Route, ServiceWindow};
use strata_core::{Actor, RolloutPhase, ServiceName};

fn spec(version: &str, rollout: &str) -> String {
    format!(
        "[service.web]\ncommand = [\"web\"]\n[service.web.scale]\nreplicas = 4\n[service.web.config]\nVERSION = \"{version}\"\n{rollout}"
    )
}

const CANARY: &str = "[service.web.rollout]\nstrategy = \"canary\"\nsteps = [\"25%\", \"100%\"]\nstep_interval = \"10s\"\nmin_requests = 20\n";

/// Node `node`'s proxy saw `attempts` of each `(release, attempts, failures)` this second.
fn report(h: &Harness, node: &str, releases: &[(u64, u64, u64)]) {
    let requests = releases.iter().map(|(_, a, _)| a).sum();
    h.plane.traffic().record(
        node,
        &MetricsReport {
            window_ms: 1000,
            services: vec![ServiceWindow {
                env: "dev".into(),
                service: "web".into(),
                requests,
                errors: 0,
                in_flight: 0,
                p50_ms: 2.0,
                p99_ms: 5.0,
                releases: releases
                    .iter()
                    .map(|(release, attempts, failures)| ReleaseWindow {
                        release: *release,
                        attempts: *attempts,
                        failures: *failures,
                        p99_ms: 5.0,
                    })
                    .collect(),
            }],
        },
    );
}

async fn route(h: &Harness) -> Route {
    let table = h.plane.routes().await.unwrap();
    table
        .routes
        .into_iter()
        .find(|r| r.service == "web")
        .unwrap()
}

async fn rollout(h: &Harness) -> strata_core::Rollout {
    h.plane
        .rollout_status(&dev(), &ServiceName::from_static("web"))
        .await
        .unwrap()
        .rollout
        .expect("a rollout")
}

/// Steps the cluster and the rollout controller for `ms`, 100 ms at a time.
async fn run_for(h: &mut Harness, ms: u64) {
    for _ in 0..ms.div_ceil(100) {
        h.advance(100);
        h.step().await;
        control_rollouts_once(&h.plane).await.unwrap();
    }
}

async fn stable_release_serving(h: &mut Harness) {
    h.deploy(&spec("1", CANARY)).await;
    run_for(h, 1_500).await;
    assert_eq!(h.available("web").await, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_good_canary_goes_through_its_steps_to_all_the_traffic() {
    let mut h = Harness::start(&["n1", "n2", "n3", "n4", "n5"]).await;
    // The first deploy has nothing to compare with: it starts at once.
    stable_release_serving(&mut h).await;
    let deployed = h.deploy(&spec("2", CANARY)).await;
    let web = &deployed.services[0];
    assert_eq!((web.release, web.rollout), (1, Some(2)), "{web:?}");
    // Step 1 (25% of 4): one instance of release 2 beside the four of release 1, no traffic
    // until it is available.
    h.step().await;
    let mut wanted = h.wanted("web").await;
    wanted.sort();
    let releases: Vec<u64> = wanted.iter().map(|(r, _)| *r).collect();
    assert_eq!(releases, [1, 1, 1, 1, 2]);
    control_rollouts_once(&h.plane).await.unwrap();
    assert_eq!(rollout(&h).await.weight, 0);
    assert!(route(&h).await.split.unwrap().weight == 0);
    run_for(&mut h, 1_100).await;
    let current = rollout(&h).await;
    assert_eq!((current.step, current.weight), (0, 25), "{current:?}");
    let split = route(&h).await.split.expect("a split route");
    assert_eq!((split.release, split.stable, split.weight), (2, 1, 25));
    assert_eq!(split.endpoints.len(), 1, "the canary's one instance");
    // Its traffic is good; the step lasts its 10 s.
    for _ in 0..9 {
        report(&h, "n1", &[(1, 30, 0), (2, 10, 0)]);
        run_for(&mut h, 1_000).await;
        assert_eq!(rollout(&h).await.step, 0);
    }
    report(&h, "n1", &[(1, 30, 0), (2, 10, 0)]);
    run_for(&mut h, 1_000).await;
    // Step 2 (100%): release 2 at full count first, then all the traffic.
    let current = rollout(&h).await;
    assert_eq!(current.step, 1, "{current:?}");
    run_for(&mut h, 1_200).await;
    let current = rollout(&h).await;
    assert_eq!(current.weight, 100, "{current:?}");
    let wanted = h.wanted("web").await;
    assert_eq!(wanted.iter().filter(|(r, _)| *r == 2).count(), 4);
    assert_eq!(
        wanted.iter().filter(|(r, _)| *r == 1).count(),
        4,
        "the stable release stays until the end"
    );
    for _ in 0..11 {
        report(&h, "n2", &[(2, 40, 0)]);
        run_for(&mut h, 1_000).await;
    }
    let done = rollout(&h).await;
    assert_eq!(done.phase, RolloutPhase::Succeeded, "{done:?}");
    run_for(&mut h, 300).await;
    let wanted = h.wanted("web").await;
    assert!(wanted.iter().all(|(r, _)| *r == 2), "{wanted:?}");
    assert_eq!(wanted.len(), 4);
    let status = h
        .plane
        .service_status(&dev(), &ServiceName::from_static("web"))
        .await
        .unwrap();
    assert_eq!(status.service.desired_release, 2);
    assert!(
        status.service.served.contains(&1),
        "release 1 served in full"
    );
    let ended = status
        .service
        .ending_of(1)
        .expect("release 1's end is recorded");
    assert_eq!(ended.how, strata_core::ReleaseEnding::Superseded);
    assert!(ended.why.contains("once its canary passed"), "{ended:?}");
    assert!(status.service.desired_since > 0);
    assert!(route(&h).await.split.is_none());
    let kinds: Vec<String> = h
        .plane
        .events(Some("web"), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind.as_str().to_string())
        .collect();
    for kind in ["rollout.started", "rollout.step", "rollout.succeeded"] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_canary_is_rolled_back_at_once_and_the_stable_release_serves_alone() {
    let mut h = Harness::start(&["n1", "n2", "n3", "n4", "n5"]).await;
    stable_release_serving(&mut h).await;
    h.deploy(&spec("2", CANARY)).await;
    run_for(&mut h, 1_300).await;
    assert_eq!(rollout(&h).await.weight, 25);
    // Within the step, its first requests fail 30%: rolled back at once, not at the step's end.
    report(&h, "n1", &[(1, 60, 0), (2, 20, 6)]);
    run_for(&mut h, 300).await;
    let rolled = rollout(&h).await;
    assert_eq!(rolled.phase, RolloutPhase::RolledBack, "{rolled:?}");
    assert!(
        rolled.message.contains("6 of 20 requests failed (30.0%)"),
        "{}",
        rolled.message
    );
    assert!(
        route(&h).await.split.is_none_or(|split| split.weight == 0),
        "no traffic to release 2"
    );
    run_for(&mut h, 300).await;
    let wanted = h.wanted("web").await;
    assert_eq!(wanted.len(), 4, "{wanted:?}");
    assert!(wanted.iter().all(|(r, _)| *r == 1), "{wanted:?}");
    let status = h
        .plane
        .service_status(&dev(), &ServiceName::from_static("web"))
        .await
        .unwrap();
    assert_eq!(status.service.desired_release, 1);
    let ended = status
        .service
        .ending_of(2)
        .expect("release 2's end is recorded");
    assert_eq!(ended.how, strata_core::ReleaseEnding::Failed);
    assert!(ended.why.contains("30.0%"), "{ended:?}");
    let events = h.plane.events(Some("web"), 100).await.unwrap();
    let rolled_back = events
        .iter()
        .find(|e| e.kind.as_str() == "rollout.rolled_back")
        .expect("a rollout.rolled_back event");
    assert!(rolled_back.message.contains("30.0%"), "{rolled_back:?}");
    // Deployed again, it is tried again: a new release, a new canary beside release 1.
    let again = h.deploy(&spec("2", CANARY)).await;
    assert_eq!(
        (again.services[0].release, again.services[0].rollout),
        (1, Some(3))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn too_little_traffic_waits_and_says_so_and_a_pause_holds_the_step() {
    let mut h = Harness::start(&["n1", "n2", "n3", "n4", "n5"]).await;
    stable_release_serving(&mut h).await;
    h.deploy(&spec("2", CANARY)).await;
    run_for(&mut h, 1_300).await;
    report(&h, "n1", &[(1, 30, 0), (2, 5, 0)]);
    run_for(&mut h, 11_000).await;
    let waiting = rollout(&h).await;
    assert_eq!((waiting.step, waiting.weight), (0, 25), "{waiting:?}");
    assert!(
        waiting.message.contains("too little traffic to judge"),
        "{}",
        waiting.message
    );
    // Paused, enough traffic does not move it on.
    let web = ServiceName::from_static("web");
    let user = Actor::User("ops".into());
    h.plane
        .steer_rollout(&dev(), &web, RolloutAction::Pause, Some("looking"), &user)
        .await
        .unwrap();
    for _ in 0..12 {
        report(&h, "n1", &[(1, 30, 0), (2, 10, 0)]);
        run_for(&mut h, 1_000).await;
    }
    let paused = rollout(&h).await;
    assert_eq!((paused.phase, paused.step), (RolloutPhase::Paused, 0));
    // Resumed, the step is analysed afresh for its interval, then passes.
    h.plane
        .steer_rollout(&dev(), &web, RolloutAction::Resume, None, &user)
        .await
        .unwrap();
    for _ in 0..11 {
        report(&h, "n1", &[(1, 30, 0), (2, 10, 0)]);
        run_for(&mut h, 1_000).await;
    }
    assert_eq!(rollout(&h).await.step, 1);
    // Aborted by hand: release 2 out, release 1 alone.
    h.plane
        .steer_rollout(&dev(), &web, RolloutAction::Abort, Some("not today"), &user)
        .await
        .unwrap();
    run_for(&mut h, 300).await;
    assert!(h.wanted("web").await.iter().all(|(r, _)| *r == 1));
    assert_eq!(rollout(&h).await.phase, RolloutPhase::Aborted);
    // Nothing to steer any more: a clear refusal.
    let refused = h
        .plane
        .steer_rollout(&dev(), &web, RolloutAction::Pause, None, &user)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("no rollout going on"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn blue_green_starts_the_new_release_in_full_then_switches_all_the_traffic() {
    let mut h = Harness::start(&["n1", "n2", "n3", "n4", "n5"]).await;
    let blue_green = "[service.web.rollout]\nstrategy = \"blue-green\"\nstep_interval = \"5s\"\n";
    h.deploy(&spec("1", blue_green)).await;
    run_for(&mut h, 1_500).await;
    h.deploy(&spec("2", blue_green)).await;
    h.step().await;
    let wanted = h.wanted("web").await;
    assert_eq!(
        wanted.iter().filter(|(r, _)| *r == 2).count(),
        4,
        "green in full"
    );
    assert_eq!(
        rollout(&h).await.weight,
        0,
        "no traffic before it is all available"
    );
    run_for(&mut h, 1_300).await;
    assert_eq!(rollout(&h).await.weight, 100, "the switch");
    assert_eq!(route(&h).await.split.unwrap().endpoints.len(), 4);
    // Blue stays until the analysis passes.
    assert_eq!(h.wanted("web").await.len(), 8);
    for _ in 0..6 {
        report(&h, "n1", &[(2, 30, 0)]);
        run_for(&mut h, 1_000).await;
    }
    assert_eq!(rollout(&h).await.phase, RolloutPhase::Succeeded);
    run_for(&mut h, 300).await;
    assert!(h.wanted("web").await.iter().all(|(r, _)| *r == 2));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_during_a_canary_takes_the_canary_out() {
    let mut h = Harness::start(&["n1", "n2", "n3", "n4", "n5"]).await;
    stable_release_serving(&mut h).await;
    h.deploy(&spec("2", CANARY)).await;
    run_for(&mut h, 1_300).await;
    let rolled = h
        .plane
        .rollback(
            &dev(),
            &ServiceName::from_static("web"),
            &strata_core::api::RollbackRequest {
                to: None,
                reason: Some("pager".into()),
            },
            &Actor::User("ops".into()),
        )
        .await
        .unwrap();
    assert_eq!((rolled.from, rolled.to), (2, 1));
    assert_eq!(rollout(&h).await.phase, RolloutPhase::Aborted);
    let status = h
        .plane
        .service_status(&dev(), &ServiceName::from_static("web"))
        .await
        .unwrap();
    let ended = status.service.ending_of(2).unwrap();
    assert_eq!(ended.how, strata_core::ReleaseEnding::Aborted);
    assert!(
        ended.why.contains("by ops: rolled back: pager"),
        "{ended:?}"
    );
    run_for(&mut h, 300).await;
    assert!(h.wanted("web").await.iter().all(|(r, _)| *r == 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canary_of_a_fixed_port_service_without_nodes_for_both_releases_is_refused() {
    let mut h = Harness::start(&["n1"]).await;
    let spec = |version: &str| {
        format!(
            "[service.db]\ncommand = [\"db\"]\nport = 6379\n[service.db.config]\nVERSION = \"{version}\"\n{}",
            CANARY.replace("service.web", "service.db")
        )
    };
    h.deploy(&spec("1")).await;
    run_for(&mut h, 1_500).await;
    let parsed = strata_core::spec::parse("strata.toml", &spec("2")).unwrap();
    let request = strata_core::api::DeployRequest {
        services: parsed
            .services
            .into_iter()
            .map(|spec| strata_core::api::DeployService {
                spec,
                artifact_digest: None,
            })
            .collect(),
    };
    let refused = h
        .plane
        .deploy(&dev(), request, &Actor::User("test".into()))
        .await
        .unwrap_err();
    let text = refused.to_string();
    assert!(
        text.contains("fixed port (6379)")
            && text.contains("needs 2 nodes")
            && text.contains("has 1"),
        "{text}"
    );
    assert!(
        matches!(refused, strata_control::ControlError::BadRequest { .. }),
        "{refused:?}"
    );
    // Nothing was written: still release 1, no rollout.
    let status = h
        .plane
        .service_status(&dev(), &ServiceName::from_static("db"))
        .await
        .unwrap();
    assert_eq!(
        (
            status.service.latest_release,
            status.service.rollout.is_none()
        ),
        (1, true)
    );
}
