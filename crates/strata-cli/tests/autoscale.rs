//! End-to-end autoscaling with `strata dev` (scale-down window 3 s): under a bounded load
//! step the example service scales out, and back in after the load stops, with no failed
//! request; a service with `min = 0` starts at zero, serves its first request after a cold
//! start, and goes back to zero when idle; `strata scale` changes the count and the bounds by
//! hand. Every change is an event with its reason.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

fn spec(dir: &std::path::Path) -> std::path::PathBuf {
    let hello = hello_bin();
    let service = |name: &str, scale: &str| {
        let more = format!("[service.{name}.scale]\n{scale}");
        service_toml(name, &hello, &format!("Hi from {name}"), &more)
    };
    let text = [
        service(
            "web",
            "min = 1\nmax = 4\ntarget_concurrency = 2\n[service.web.slo]\np99_ms = 2000\navailability = 0.999",
        ),
        service("lazy", "min = 0\nmax = 2\nscale_to_zero_after = \"2s\""),
    ]
    .concat();
    write_file(dir, "autoscale.toml", text)
}

fn events(dev: &Dev, service: &str) -> String {
    String::from_utf8_lossy(&dev.cli(&["events", service, "--limit", "200"]).stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn services_scale_with_their_load_and_to_zero() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start_with(dir.path(), &["--scale-down-window", "3s"]);
    let spec = spec(dir.path());
    dev.deploy(&spec, &["--timeout", "60s"]);
    assert_eq!(dev.status("web").service.replicas, 1, "web starts at min");
    assert_eq!(
        dev.status("lazy").service.replicas,
        0,
        "lazy starts at zero"
    );
    let client = dev.client(&["web.dev.localhost", "lazy.dev.localhost"]);

    // A load step: 12 clients, each request taking 300 ms: 12 in flight, 2 per instance wanted.
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let started = Instant::now();
    let workers: Vec<_> = (0..12)
        .map(|_| {
            let (client, stop) = (client.clone(), stop.clone());
            let (served, failed) = (served.clone(), failed.clone());
            let url = dev.url("web.dev.localhost", "/work/300");
            tokio::spawn(async move {
                // Bounded: at most 60 s of requests whatever happens.
                while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(60) {
                    match client.get(&url).send().await {
                        Ok(response) if response.status() == 200 => {
                            served.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(response) => {
                            eprintln!("failed: {}", response.status());
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(error) => {
                            eprintln!("failed: {error}");
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            })
        })
        .collect();
    dev.eventually(Duration::from_secs(20), "web scales out to 4", || {
        let status = dev.status("web");
        status.service.replicas == 4
            && status.instances.iter().filter(|v| v.is_routable()).count() == 4
    })
    .await;
    let scaled_out_after = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::SeqCst), 0, "no request failed");
    assert!(served.load(Ordering::SeqCst) > 50);
    eprintln!("web: 4 instances serving {scaled_out_after:?} after the load step");

    // Back in once the load is gone (the 3 s window), to min.
    dev.eventually(Duration::from_secs(30), "web scales back in to 1", || {
        dev.status("web").service.replicas == 1
    })
    .await;
    let log = events(&dev, "web");
    assert!(
        log.contains("in flight over 2 s > 2 per instance: 1 -> "),
        "the scale-out says why:\n{log}"
    );
    assert!(
        log.contains("in flight over 3 s, 2 per instance:"),
        "the scale-in says why:\n{log}"
    );

    // `strata status` reports web's SLO over the last hour: every request served, within 2 s.
    let status = dev.cli(&["status", "web"]);
    let text = stdout(&status);
    let slo_line = text
        .lines()
        .skip_while(|l| !l.starts_with("SLO (LAST HOUR)"))
        .nth(1)
        .unwrap_or_else(|| panic!("no SLO section:\n{text}"));
    assert!(slo_line.starts_with("web"), "{text}");
    for expected in ["100.00%", "99.90%", "100.0% <=2000ms"] {
        assert!(
            slo_line.contains(expected),
            "{expected} in {slo_line}\n{text}"
        );
    }
    assert!(text.contains("1..4"), "the scale bounds are shown:\n{text}");

    // lazy: at zero, its first request is held while an instance starts.
    let cold = Instant::now();
    let response = send(client.get(dev.url("lazy.dev.localhost", "/"))).await;
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("Hi from lazy"));
    eprintln!(
        "lazy: first request served {:?} after it was sent",
        cold.elapsed()
    );
    assert_eq!(dev.status("lazy").service.replicas, 1);
    // Idle for 2 s: back to zero.
    dev.eventually(Duration::from_secs(20), "lazy scales to zero", || {
        let status = dev.status("lazy");
        status.service.replicas == 0 && status.instances.iter().all(|v| !v.is_routable())
    })
    .await;
    let log = events(&dev, "lazy");
    // Woken by the held request (the ingress asks at once; the traffic report says so too,
    // whichever the autoscaler reads first).
    assert!(
        log.contains("a request waits at zero instances: 0 -> 1")
            || log.contains("waiting at zero instances: 0 -> 1"),
        "{log}"
    );
    assert!(log.contains("no request for"), "{log}");

    // By hand: bounds and a count, each an event.
    let scaled = dev.cli(&["scale", "web", "3", "--min", "2", "--max", "5"]);
    assert!(scaled.status.success(), "{}", stderr(&scaled));
    let service = dev.status("web").service;
    assert_eq!(service.replicas, 3);
    let bounds = service.autoscale.unwrap();
    assert_eq!((bounds.min, bounds.max), (2, 5));
    assert!(events(&dev, "web").contains("1 -> 3 instance(s), autoscaled 2..5 (by hand)"));
    let refused = dev.cli(&["scale", "web", "9"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("outside web's autoscaling bounds 2..5"));
}
