//! Load balancing over a service's instances: power of two choices over an exponentially
//! weighted moving average (EWMA) of latency times requests in flight, with passive outlier
//! ejection.
//!
//! - **Pick**: two distinct instances at random; the one with the lower cost,
//!   `ewma_latency * (in_flight + 1)`, gets the request (as linkerd2-proxy and Finagle do).
//!   A slow or busy instance gets less traffic without a central view, and no instance is
//!   starved (a new one starts with the lowest cost and is probed soon).
//! - **Learn**: each answered request moves the instance's EWMA towards its latency (decay
//!   over [`DECAY`], so a recovered instance is trusted again within seconds).
//! - **Eject**: [`EJECT_AFTER`] consecutive failures (no connection, no answer, 5xx) take an
//!   instance out of the picks for a back-off (1 s, doubling to 30 s while it keeps failing
//!   when it comes back). If every candidate is ejected, they are all used anyway: some
//!   chance of an answer beats none.
//!
//! Time is passed in, so every decision is a pure function of the state and the clock,
//! tested with tables.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Consecutive failures that eject an instance.
pub const EJECT_AFTER: u32 = 5;
/// How fast the latency average forgets (the time constant of the decay).
pub const DECAY: Duration = Duration::from_secs(10);
const FIRST_EJECTION: Duration = Duration::from_secs(1);
const MAX_EJECTION: Duration = Duration::from_secs(30);
/// What a failure counts as, in the latency average.
const FAILURE_PENALTY_MS: f64 = 1000.0;
/// The cost of an instance never measured: low, so it is tried soon.
const UNMEASURED_MS: f64 = 0.0;

/// What is known about one instance.
#[derive(Debug, Clone)]
pub struct EndpointStats {
    pub ewma_ms: f64,
    pub in_flight: u32,
    pub consecutive_failures: u32,
    pub ejected_until: Option<Instant>,
    /// How many ejections in a row (for the back-off).
    pub ejections: u32,
    last_update: Option<Instant>,
}

impl Default for EndpointStats {
    fn default() -> Self {
        Self {
            ewma_ms: UNMEASURED_MS,
            in_flight: 0,
            consecutive_failures: 0,
            ejected_until: None,
            ejections: 0,
            last_update: None,
        }
    }
}

impl EndpointStats {
    /// The cost the pick compares: latency times load.
    pub fn cost(&self) -> f64 {
        self.ewma_ms.max(0.001) * f64::from(self.in_flight + 1)
    }

    pub fn ejected(&self, now: Instant) -> bool {
        self.ejected_until.is_some_and(|until| now < until)
    }

    /// An answered request that took `latency` (`ok`: not a 5xx).
    pub fn observe(&mut self, now: Instant, latency: Duration, ok: bool) {
        let ms = latency.as_secs_f64() * 1000.0;
        self.ewma_ms = match self.last_update {
            None => ms,
            Some(last) => {
                let elapsed = now.saturating_duration_since(last).as_secs_f64();
                let weight = (-elapsed / DECAY.as_secs_f64()).exp();
                // At least a little of each new sample, however close together they come.
                let weight = weight.min(0.9);
                self.ewma_ms * weight + ms * (1.0 - weight)
            }
        };
        self.last_update = Some(now);
        if ok {
            self.consecutive_failures = 0;
            self.ejections = 0;
        } else {
            self.fail(now);
        }
    }

    /// A request that got no answer (connection refused or reset, timeout) or a 5xx.
    pub fn fail(&mut self, now: Instant) {
        // A failure costs like a very slow answer: the instance loses comparisons until it
        // answers well again.
        self.ewma_ms = self.ewma_ms.max(FAILURE_PENALTY_MS);
        self.last_update = Some(now);
        self.consecutive_failures += 1;
        if self.consecutive_failures >= EJECT_AFTER && !self.ejected(now) {
            let backoff = FIRST_EJECTION
                .saturating_mul(1 << self.ejections.min(5))
                .min(MAX_EJECTION);
            self.ejected_until = Some(now + backoff);
            self.ejections += 1;
            self.consecutive_failures = 0;
        }
    }
}

/// Which of two sampled candidates to send to: `a` unless `b` costs less. Ejected ones lose to
/// any other.
pub fn better<'a>(
    now: Instant,
    a: (&'a str, &EndpointStats),
    b: (&'a str, &EndpointStats),
) -> &'a str {
    match (a.1.ejected(now), b.1.ejected(now)) {
        (true, false) => b.0,
        (false, true) => a.0,
        _ if b.1.cost() < a.1.cost() => b.0,
        _ => a.0,
    }
}

/// The balancer of one proxy: stats per instance address, shared by every service (an
/// address belongs to one instance at a time).
#[derive(Debug, Default)]
pub struct Balancer {
    stats: Mutex<HashMap<String, EndpointStats>>,
}

impl Balancer {
    /// Picks among `candidates` (non-empty) with two random indexes from `random`.
    pub fn pick(
        &self,
        now: Instant,
        candidates: &[&String],
        random: impl FnMut() -> usize,
    ) -> String {
        let stats = self.stats.lock().expect("balancer lock");
        let default = EndpointStats::default();
        let lookup = |endpoint: &str| stats.get(endpoint).unwrap_or(&default).clone();
        pick_two(now, candidates, random, lookup)
    }

    /// A request to `endpoint` begins; the guard says how it ended (dropped unsaid: it was
    /// abandoned, which says nothing about the instance).
    pub fn start<'a>(&'a self, endpoint: &str) -> Pending<'a> {
        let mut stats = self.stats.lock().expect("balancer lock");
        entry(&mut stats, endpoint).in_flight += 1;
        Pending {
            balancer: self,
            endpoint: endpoint.to_string(),
            started: Instant::now(),
            ended: false,
        }
    }

    /// A request to `endpoint` ended: answered after `latency` (`ok`: not a 5xx), or not
    /// answered at all (`latency` none).
    pub fn end(&self, now: Instant, endpoint: &str, latency: Option<Duration>, ok: bool) {
        let mut stats = self.stats.lock().expect("balancer lock");
        let entry = entry(&mut stats, endpoint);
        entry.in_flight = entry.in_flight.saturating_sub(1);
        match latency {
            Some(latency) => entry.observe(now, latency, ok),
            None => entry.fail(now),
        }
    }

    /// Forgets instances no longer routed (keeps the map as small as the routing table).
    pub fn retain(&self, routed: impl Fn(&str) -> bool) {
        self.stats
            .lock()
            .expect("balancer lock")
            .retain(|endpoint, stats| stats.in_flight > 0 || routed(endpoint));
    }

    pub fn stats(&self, endpoint: &str) -> Option<EndpointStats> {
        self.stats
            .lock()
            .expect("balancer lock")
            .get(endpoint)
            .cloned()
    }
}

/// `endpoint`'s stats, made if new (allocating only then: this is on every request's path).
fn entry<'a>(
    stats: &'a mut HashMap<String, EndpointStats>,
    endpoint: &str,
) -> &'a mut EndpointStats {
    if !stats.contains_key(endpoint) {
        stats.insert(endpoint.to_string(), EndpointStats::default());
    }
    stats.get_mut(endpoint).expect("inserted above")
}

/// One request to one instance, in flight.
pub struct Pending<'a> {
    balancer: &'a Balancer,
    endpoint: String,
    started: Instant,
    ended: bool,
}

impl Pending<'_> {
    /// The instance answered (`ok`: not a 5xx).
    pub fn answered(mut self, ok: bool) {
        self.ended = true;
        let now = Instant::now();
        self.balancer
            .end(now, &self.endpoint, Some(now - self.started), ok);
    }

    /// The instance did not answer (no connection, reset, timeout).
    pub fn failed(mut self) {
        self.ended = true;
        self.balancer
            .end(Instant::now(), &self.endpoint, None, false);
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.ended {
            let mut stats = self.balancer.stats.lock().expect("balancer lock");
            if let Some(entry) = stats.get_mut(&self.endpoint) {
                entry.in_flight = entry.in_flight.saturating_sub(1);
            }
        }
    }
}

/// Power of two choices over `candidates` with `lookup`'s stats.
pub fn pick_two(
    now: Instant,
    candidates: &[&String],
    mut random: impl FnMut() -> usize,
    lookup: impl Fn(&str) -> EndpointStats,
) -> String {
    // Ejected instances are left out, unless that leaves nothing.
    let live: Vec<&String> = candidates
        .iter()
        .copied()
        .filter(|c| !lookup(c).ejected(now))
        .collect();
    let candidates = if live.is_empty() { candidates } else { &live };
    match candidates.len() {
        0 => String::new(),
        1 => candidates[0].clone(),
        n => {
            let first = random() % n;
            let mut second = random() % (n - 1);
            if second >= first {
                second += 1;
            }
            let (a, b) = (candidates[first].as_str(), candidates[second].as_str());
            let (sa, sb) = (lookup(a), lookup(b));
            better(now, (a, &sa), (b, &sb)).to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(ewma_ms: f64, in_flight: u32) -> EndpointStats {
        EndpointStats {
            ewma_ms,
            in_flight,
            last_update: Some(Instant::now()),
            ..EndpointStats::default()
        }
    }

    #[test]
    fn the_cheaper_of_two_wins() {
        let now = Instant::now();
        let ejected = EndpointStats {
            ejected_until: Some(now + Duration::from_secs(1)),
            ..stats(1.0, 0)
        };
        let table = [
            // (a, b, winner)
            (stats(10.0, 0), stats(50.0, 0), "a"),
            (stats(50.0, 0), stats(10.0, 0), "b"),
            (stats(10.0, 9), stats(50.0, 0), "b"), // busy: 100 vs 50
            (stats(10.0, 0), stats(10.0, 0), "a"), // ties keep the first
            (ejected.clone(), stats(500.0, 5), "b"),
            (stats(500.0, 5), ejected.clone(), "a"),
            (ejected.clone(), ejected.clone(), "a"),
            (EndpointStats::default(), stats(1.0, 0), "a"), // unmeasured is tried
        ];
        for (i, (a, b, winner)) in table.into_iter().enumerate() {
            assert_eq!(better(now, ("a", &a), ("b", &b)), winner, "row {i}");
        }
    }

    #[test]
    fn the_average_follows_latency_and_forgets() {
        let start = Instant::now();
        let mut s = EndpointStats::default();
        s.observe(start, Duration::from_millis(100), true);
        assert_eq!(s.ewma_ms, 100.0, "the first sample is the average");
        s.observe(
            start + Duration::from_millis(10),
            Duration::from_millis(10),
            true,
        );
        assert!(s.ewma_ms < 100.0 && s.ewma_ms > 80.0, "{}", s.ewma_ms);
        // A minute of fast answers later, the slow past is forgotten.
        let mut t = start;
        for _ in 0..60 {
            t += Duration::from_secs(1);
            s.observe(t, Duration::from_millis(10), true);
        }
        assert!((s.ewma_ms - 10.0).abs() < 1.0, "{}", s.ewma_ms);
    }

    #[test]
    fn a_failure_costs_like_a_slow_answer() {
        let now = Instant::now();
        let mut failing = stats(1.0, 0);
        failing.fail(now);
        assert_eq!(
            better(now, ("failing", &failing), ("slow", &stats(200.0, 0))),
            "slow"
        );
    }

    #[test]
    fn consecutive_failures_eject_with_backoff() {
        let start = Instant::now();
        let mut s = EndpointStats::default();
        for _ in 0..EJECT_AFTER - 1 {
            s.fail(start);
        }
        assert!(!s.ejected(start), "not yet");
        s.fail(start);
        assert!(s.ejected(start));
        assert!(
            !s.ejected(start + Duration::from_secs(1)),
            "first ejection: 1 s"
        );
        // Back, and failing again: ejected for twice as long.
        let back = start + Duration::from_secs(1);
        for _ in 0..EJECT_AFTER {
            s.fail(back);
        }
        assert!(s.ejected(back + Duration::from_millis(1500)));
        assert!(!s.ejected(back + Duration::from_secs(2)));
        // A success resets the back-off and the count.
        s.observe(
            back + Duration::from_secs(3),
            Duration::from_millis(5),
            true,
        );
        assert_eq!((s.consecutive_failures, s.ejections), (0, 0));
        // A success between failures resets the count: no ejection.
        let mut s = EndpointStats::default();
        for i in 0..20 {
            if i % 4 == 3 {
                s.observe(start, Duration::from_millis(5), true);
            } else {
                s.fail(start);
            }
        }
        assert!(!s.ejected(start));
    }

    #[test]
    fn two_distinct_candidates_are_compared() {
        let now = Instant::now();
        let endpoints: Vec<String> = (0..3).map(|i| format!("10.0.0.{i}:80")).collect();
        let candidates: Vec<&String> = endpoints.iter().collect();
        // random() gives 0 then 0: the second index skips the first, so 0 vs 1.
        let mut draws = vec![0usize, 0].into_iter();
        let slow = |e: &str| {
            if e.ends_with(".0:80") {
                stats(100.0, 0)
            } else {
                stats(1.0, 0)
            }
        };
        assert_eq!(
            pick_two(now, &candidates, || draws.next().unwrap(), slow),
            "10.0.0.1:80"
        );
        let one = [&endpoints[2]];
        assert_eq!(pick_two(now, &one, || 0, slow), "10.0.0.2:80");
        // An ejected instance is never one of the two while others are live.
        let ejected = |e: &str| {
            if e.ends_with(".0:80") {
                EndpointStats {
                    ejected_until: Some(now + Duration::from_secs(5)),
                    ..stats(0.001, 0)
                }
            } else {
                stats(50.0, 0)
            }
        };
        for draw in 0..6 {
            let mut draws = vec![draw, draw].into_iter();
            assert_ne!(
                pick_two(now, &candidates, || draws.next().unwrap(), ejected),
                "10.0.0.0:80"
            );
        }
        // All ejected: they are used anyway.
        let all = |_: &str| EndpointStats {
            ejected_until: Some(now + Duration::from_secs(5)),
            ..stats(1.0, 0)
        };
        assert!(!pick_two(now, &candidates, || 0, all).is_empty());
    }
}
