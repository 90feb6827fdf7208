//! Bounds on calls to one service, per proxy: a retry budget (retries are a share of recent
//! requests, so a failing service is not hit by a multiple of its load) and a circuit breaker
//! on requests in flight (past it the proxy answers 503 at once instead of queueing).
//!
//! [`RetryBudget`] is pure over the time it is given; [`Limiter`] holds one budget and one
//! in-flight count per service.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The span a retry budget looks back over.
pub const BUDGET_WINDOW: Duration = Duration::from_secs(10);
const BUCKETS: usize = 10;
/// Retries always allowed per window whatever the ratio, so that a service with little traffic
/// still gets its rare failed request retried (one per second on average).
pub const MIN_RETRIES_PER_WINDOW: u64 = 10;

/// Requests and retries over the last [`BUDGET_WINDOW`], in one-second buckets.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    origin: Instant,
    /// `(second since origin, requests, retries)`, the bucket of second `s` at `s % BUCKETS`.
    buckets: [(u64, u64, u64); BUCKETS],
}

impl RetryBudget {
    pub fn new(now: Instant) -> Self {
        Self {
            origin: now,
            buckets: [(u64::MAX, 0, 0); BUCKETS],
        }
    }

    fn bucket(&mut self, now: Instant) -> &mut (u64, u64, u64) {
        let second = now.saturating_duration_since(self.origin).as_secs();
        let slot = &mut self.buckets[(second % BUCKETS as u64) as usize];
        if slot.0 != second {
            *slot = (second, 0, 0);
        }
        slot
    }

    fn totals(&self, now: Instant) -> (u64, u64) {
        let second = now.saturating_duration_since(self.origin).as_secs();
        self.buckets
            .iter()
            .filter(|(s, _, _)| *s != u64::MAX && *s <= second && second - s < BUCKETS as u64)
            .fold((0, 0), |(requests, retries), (_, q, r)| {
                (requests + q, retries + r)
            })
    }

    /// A request (first attempt) was made.
    pub fn request(&mut self, now: Instant) {
        self.bucket(now).1 += 1;
    }

    /// Whether one more retry fits in the budget of `permille` retries per thousand requests
    /// of the window (at least [`MIN_RETRIES_PER_WINDOW`]); if it does, it is counted.
    pub fn try_retry(&mut self, now: Instant, permille: u32) -> bool {
        let (requests, retries) = self.totals(now);
        let allowed = (requests * u64::from(permille) / 1000).max(MIN_RETRIES_PER_WINDOW);
        if retries >= allowed {
            return false;
        }
        self.bucket(now).2 += 1;
        true
    }
}

/// Per service: its retry budget and the requests this proxy has in flight to it.
#[derive(Default)]
pub struct Limiter {
    /// environment -> service -> limits (nested, so the request path looks up by `&str`
    /// without allocating).
    services: Mutex<HashMap<String, HashMap<String, ServiceLimits>>>,
}

struct ServiceLimits {
    budget: RetryBudget,
    in_flight: Arc<AtomicU32>,
    /// Requests waiting for the service to start from zero.
    waiting: Arc<AtomicU32>,
}

/// A request admitted by the circuit breaker; dropping it frees its place.
pub struct Admitted {
    in_flight: Arc<AtomicU32>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Limiter {
    fn with<T>(&self, env: &str, service: &str, f: impl FnOnce(&mut ServiceLimits) -> T) -> T {
        let mut services = self.services.lock().expect("not poisoned");
        if !services.get(env).is_some_and(|s| s.contains_key(service)) {
            services.entry(env.to_string()).or_default().insert(
                service.to_string(),
                ServiceLimits {
                    budget: RetryBudget::new(Instant::now()),
                    in_flight: Arc::default(),
                    waiting: Arc::default(),
                },
            );
        }
        let limits = services
            .get_mut(env)
            .and_then(|s| s.get_mut(service))
            .expect("inserted above");
        f(limits)
    }

    /// Admits a request to `service` unless `max_concurrent` are already in flight (the
    /// circuit is open: `None`). An admitted request counts toward the retry budget.
    pub fn admit(&self, env: &str, service: &str, max_concurrent: u32) -> Option<Admitted> {
        self.with(env, service, |limits| {
            let admitted = limits
                .in_flight
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < max_concurrent).then_some(n + 1)
                })
                .is_ok();
            if !admitted {
                return None;
            }
            limits.budget.request(Instant::now());
            Some(Admitted {
                in_flight: limits.in_flight.clone(),
            })
        })
    }

    /// A place among the requests waiting for `service` to start from zero, unless
    /// `max_waiting` already wait.
    pub fn wait(&self, env: &str, service: &str, max_waiting: u32) -> Option<Admitted> {
        self.with(env, service, |limits| {
            limits
                .waiting
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < max_waiting).then_some(n + 1)
                })
                .ok()
                .map(|_| Admitted {
                    in_flight: limits.waiting.clone(),
                })
        })
    }

    /// Whether a retry to `service` fits its budget (and counts it if so).
    pub fn try_retry(&self, env: &str, service: &str, permille: u32) -> bool {
        self.with(env, service, |limits| {
            limits.budget.try_retry(Instant::now(), permille)
        })
    }

    /// Forgets services that are no longer routed.
    pub fn retain(&self, routed: impl Fn(&str, &str) -> bool) {
        let mut services = self.services.lock().expect("not poisoned");
        for (env, of_env) in services.iter_mut() {
            of_env.retain(|service, limits| {
                routed(env, service)
                    || limits.in_flight.load(Ordering::Acquire) > 0
                    || limits.waiting.load(Ordering::Acquire) > 0
            });
        }
        services.retain(|_, of_env| !of_env.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (seconds after the start, requests made then, retries asked then, permille, retries granted)
    type Step = (u64, u64, u64, u32, u64);

    #[test]
    fn retry_budget_table() {
        let cases: &[(&str, &[Step])] = &[
            (
                "idle service: the floor allows 10 retries per window, no more",
                &[(0, 0, 12, 200, 10)],
            ),
            (
                "busy service: 20% of 1000 requests",
                &[(0, 1000, 500, 200, 200)],
            ),
            ("budget 0 still has the floor", &[(0, 1000, 50, 0, 10)]),
            (
                "the window slides: retries of 10 s ago no longer count",
                &[(0, 0, 10, 200, 10), (5, 0, 5, 200, 0), (10, 0, 5, 200, 5)],
            ),
            (
                "requests of the window add up across seconds",
                &[
                    (0, 100, 0, 200, 0),
                    (3, 100, 0, 200, 0),
                    (9, 0, 100, 200, 40),
                ],
            ),
            (
                "an outage: every request fails, retries stay a fifth of them",
                &[
                    (0, 500, 500, 200, 100),
                    (1, 500, 500, 200, 100),
                    (2, 500, 500, 200, 100),
                ],
            ),
        ];
        for (name, steps) in cases {
            let start = Instant::now();
            let mut budget = RetryBudget::new(start);
            for (i, &(at, requests, asked, permille, want)) in steps.iter().enumerate() {
                let now = start + Duration::from_secs(at);
                for _ in 0..requests {
                    budget.request(now);
                }
                let granted = (0..asked)
                    .filter(|_| budget.try_retry(now, permille))
                    .count() as u64;
                assert_eq!(granted, want, "{name}: step {i}");
            }
        }
    }

    #[test]
    fn the_circuit_opens_at_max_concurrent_and_closes_as_requests_end() {
        let limiter = Limiter::default();
        let first = limiter.admit("dev", "db", 2).expect("room for 2");
        let second = limiter.admit("dev", "db", 2).expect("room for 2");
        assert!(limiter.admit("dev", "db", 2).is_none(), "third is refused");
        assert!(
            limiter.admit("dev", "web", 2).is_some(),
            "another service has its own count"
        );
        drop(first);
        let third = limiter.admit("dev", "db", 2).expect("a place was freed");
        drop((second, third));
        limiter.retain(|_, service| service == "web");
        assert_eq!(limiter.services.lock().unwrap()["dev"].len(), 1);
    }
}
