//! Scale from zero: a request for a service at zero instances wakes the platform and waits,
//! bounded in time and in number, until an instance is routed.

use std::sync::Arc;
use std::time::Duration;

use http::{Response, StatusCode};

use super::{plain, Ingress, ProxyBody};

impl Ingress {
    fn wake(&self, route: &strata_core::api::Route) {
        let Some(waker) = self.waker.get() else {
            return;
        };
        let now = self.started.elapsed().as_millis() as u64;
        let key = format!("{}/{}", route.env, route.service);
        {
            let mut woken = self.woken.lock().expect("not poisoned");
            if woken.get(&key).is_some_and(|at| now < at + 500) {
                return;
            }
            woken.insert(key, now);
        }
        waker(&route.env, &route.service);
    }

    /// Holds a request for `route`'s service, at zero instances, until an instance is routed
    /// (the route then) or the wait is over (the answer to give).
    pub(super) async fn until_started(
        &self,
        host: &str,
        route: &strata_core::api::Route,
    ) -> Result<Arc<strata_core::api::Route>, Response<ProxyBody>> {
        let Some(_waiting) = self
            .limiter
            .wait(&route.env, &route.service, self.config.max_waiting)
        else {
            return Err(plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "strata: service `{}` in environment `{}` is starting from zero and {} requests already wait for it; try again in a few seconds\n",
                    route.service, route.env, self.config.max_waiting
                ),
            ));
        };
        let deadline = tokio::time::Instant::now() + self.config.cold_start_wait;
        let mut changes = self.table.subscribe();
        loop {
            self.wake(route);
            if let Some(current) = self.table.lookup(host) {
                if !current.endpoints.is_empty() {
                    return Ok(current);
                }
            }
            tokio::select! {
                _ = changes.changed() => {}
                // Wake again now and then: a lost wake-up must not leave requests waiting.
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(plain(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!(
                            "strata: service `{}` in environment `{}` is starting from zero and no instance was ready within {} ms; try again shortly, or keep one running with [service.{}.scale] min = 1\n",
                            route.service,
                            route.env,
                            self.config.cold_start_wait.as_millis(),
                            route.service
                        ),
                    ));
                }
            }
        }
    }
}
