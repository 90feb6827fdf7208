//! Sending a routed request upstream: picking an instance (power of two choices), retrying
//! on another one when that is safe and the budget allows, and giving up on an instance the
//! platform withdraws meanwhile.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use strata_core::api::default_host;

use super::headers::{strip_hop_by_hop, upstream_request};
use super::{plain, Audience, Ingress, ProxyBody};

impl Ingress {
    /// `host` and `route`: the request's, as [`Ingress::measured`] found them (`route` only
    /// if this audience may reach it).
    pub(super) async fn route(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        host: Option<String>,
        route: Option<Arc<strata_core::api::Route>>,
        audience: Audience,
    ) -> Response<ProxyBody> {
        let Some(host) = host else {
            return plain(
                StatusCode::BAD_REQUEST,
                "strata: the request has no Host header; use http://SERVICE.ENV.localhost/\n"
                    .into(),
            );
        };
        let Some(route) = route else {
            let hosts = self.table.public_hosts();
            let known = if hosts.is_empty() {
                "no services are deployed yet (strata deploy FILE)".to_string()
            } else {
                format!("routed hosts: {}", hosts.join(", "))
            };
            return plain(
                StatusCode::NOT_FOUND,
                format!("strata: no service is routed at host `{host}`; {known}\n"),
            );
        };
        let route = if route.endpoints.is_empty() && route.scale_from_zero {
            match self.until_started(&host, &route).await {
                Ok(route) => route,
                Err(answer) => return answer,
            }
        } else {
            route
        };
        if route.endpoints.is_empty() {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "strata: service `{}` in environment `{}` has no healthy instance ({} wanted); see `strata status {} --env {}`\n",
                    route.service, route.env, route.desired, route.service, route.env
                ),
            );
        }
        let Some(_admitted) =
            self.limiter
                .admit(&route.env, &route.service, route.limits.max_concurrent)
        else {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "strata: service `{}` in environment `{}` already has {} requests in flight from this node (its [mesh] max_concurrent); try again shortly\n",
                    route.service, route.env, route.limits.max_concurrent
                ),
            );
        };
        let (parts, body) = request.into_parts();
        let body = match self.collect_body(body).await {
            Ok(body) => body,
            Err(response) => return response,
        };
        let idempotent = matches!(
            parts.method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::PUT
                | Method::DELETE
                | Method::TRACE
        );
        let mut tried: Vec<String> = Vec::new();
        let mut last_error = String::new();
        // The first instance, then up to `retries` others when safe and within the budget.
        // Whether the last attempt was refused as misdirected by a peer: nothing reached an
        // instance, so going elsewhere spends none of the service's retry budget (which
        // guards instances against retry storms).
        let mut misdirected_before = false;
        // Whether the retry about to be made was already charged to the budget.
        let mut retry_paid = false;
        for attempt in 0..=route.limits.retries {
            if attempt > 0 {
                let permille = route.limits.retry_budget_permille;
                if !misdirected_before
                    && !std::mem::take(&mut retry_paid)
                    && !self.limiter.try_retry(&route.env, &route.service, permille)
                {
                    last_error.push_str("; not retried: the service's retry budget is spent");
                    break;
                }
                if let Some(metrics) = &self.metrics {
                    metrics.retried(&route.env, &route.service);
                }
            }
            // A retry reads the current table: it goes where traffic goes now.
            let current = if attempt == 0 {
                Some(route.clone())
            } else {
                self.table.lookup(&host)
            };
            let Some(route) = current else {
                break;
            };
            let candidates = crate::split::candidates(
                &route.endpoints,
                route.split.as_ref(),
                &tried,
                attempt,
                (rand::random::<u32>() % 100) as u8,
            );
            if candidates.is_empty() {
                break;
            }
            let endpoint = self.pick(&candidates, &mut tried);
            if self.requests.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
                let routed = self.table.endpoints();
                self.balancer.retain(|e| routed.contains(e));
                self.limiter.retain(|env, service| {
                    self.table.lookup(&default_host(service, env)).is_some()
                });
            }
            let via = self.via_peer(&route, &endpoint);
            // Through a peer, the request names the instance as routed; a local instance is
            // dialled where it listens.
            let target = if via.is_none() && self.is_local(&route, &endpoint) {
                self.local_target(&endpoint)
            } else {
                endpoint.clone()
            };
            let upstream = match upstream_request(
                &parts,
                &body,
                &target,
                via.as_deref(),
                &host,
                peer,
                audience,
            ) {
                Ok(upstream) => upstream,
                Err(error) => return plain(StatusCode::BAD_REQUEST, format!("strata: {error}\n")),
            };
            let pending = self.balancer.start(&endpoint);
            let attempt_started = std::time::Instant::now();
            let outcome = match (&via, self.peering.get()) {
                (Some(_), Some(peering)) => {
                    let client = peering.client(self.id);
                    self.attempt(client.request(upstream), &host, &endpoint)
                        .await
                }
                _ => {
                    self.attempt(self.client().request(upstream), &host, &endpoint)
                        .await
                }
            };
            // The peer refused to pass the request to an instance it does not hold (yet: its
            // table lags this one's). Nothing reached an instance, so any method may go to
            // another one.
            let misdirected = matches!(&outcome, Attempt::Answered(response)
                if via.is_some() && response.status() == StatusCode::MISDIRECTED_REQUEST);
            misdirected_before = misdirected;
            if misdirected {
                drop(pending);
                last_error = format!("instance {endpoint}: its node does not route to it (yet)");
                tracing::debug!(%last_error, "misdirected through a peer");
                continue;
            }
            let answered_well = match &outcome {
                Attempt::Answered(response) => {
                    let ok = !response.status().is_server_error();
                    pending.answered(ok);
                    Some(ok)
                }
                Attempt::Failed(_) => {
                    pending.failed();
                    Some(false)
                }
                // Withdrawn by the platform: says nothing about the instance.
                Attempt::Withdrawn => {
                    drop(pending);
                    None
                }
            };
            // While a rollout splits the traffic, each attempt counts for its release: the
            // analysis sees a canary's failures though a retry answers the caller.
            if let (Some(split), Some(metrics), Some(ok)) =
                (&route.split, &self.metrics, answered_well)
            {
                metrics.attempted(
                    &route.env,
                    &route.service,
                    split.release_of(&endpoint),
                    attempt_started.elapsed(),
                    ok,
                );
            }
            // A progressive rollout's new release answered 5xx to a request safe to send
            // again: the stable release gets it (within the retry budget), so callers do not
            // pay for a bad canary while its analysis catches it.
            // Only where a stable instance is left to try: otherwise the caller gets the
            // answer as it was.
            let canary_failed = matches!(&outcome, Attempt::Answered(response)
            if response.status().is_server_error()
                && idempotent
                && attempt < route.limits.retries
                && route.split.as_ref().is_some_and(|split| {
                    split.release_of(&endpoint) == split.release
                        && route
                            .endpoints
                            .iter()
                            .any(|e| !tried.contains(e) && !split.endpoints.contains(e))
                }));
            if canary_failed {
                let permille = route.limits.retry_budget_permille;
                if !self.limiter.try_retry(&route.env, &route.service, permille) {
                    // No budget: the caller gets the answer as it was.
                    if let Attempt::Answered(response) = outcome {
                        let (mut parts, body) = response.into_parts();
                        strip_hop_by_hop(&mut parts.headers);
                        return Response::from_parts(parts, body.boxed());
                    }
                }
                retry_paid = true;
                last_error = format!(
                    "instance {endpoint} of the release being rolled out answered a server error"
                );
                tracing::debug!(%last_error, "retried on the stable release");
                continue;
            }
            match outcome {
                Attempt::Answered(response) => {
                    let (mut parts, body) = response.into_parts();
                    strip_hop_by_hop(&mut parts.headers);
                    return Response::from_parts(parts, body.boxed());
                }
                Attempt::Failed(error) => {
                    let safe = error.is_connect() || idempotent;
                    last_error = format!("instance {endpoint}: {error}");
                    tracing::debug!(%last_error, safe, "upstream request failed");
                    if !safe {
                        break;
                    }
                }
                Attempt::Withdrawn => {
                    last_error =
                        format!("instance {endpoint} was withdrawn while it handled the request");
                    tracing::debug!(%last_error, idempotent, "instance withdrawn mid-request");
                    if !idempotent {
                        break;
                    }
                }
            }
        }
        plain(
            StatusCode::BAD_GATEWAY,
            format!("strata: service at `{host}` could not be reached ({last_error})\n"),
        )
    }

    /// Sends one request to one instance. Gives up early if the platform withdraws the
    /// instance from the table meanwhile (its node went down, it is being stopped): a request
    /// to an instance behind a cut link would otherwise hang until the deadline.
    async fn attempt(
        &self,
        request: impl std::future::Future<
            Output = Result<Response<Incoming>, hyper_util::client::legacy::Error>,
        >,
        host: &str,
        endpoint: &str,
    ) -> Attempt {
        let mut changes = self.table.subscribe();
        tokio::pin!(request);
        loop {
            tokio::select! {
                result = &mut request => {
                    return match result {
                        Ok(response) => Attempt::Answered(response),
                        Err(error) => Attempt::Failed(error),
                    };
                }
                changed = changes.changed() => {
                    if changed.is_err() {
                        // The table is gone (shutting down): let the request finish.
                        return match request.await {
                            Ok(response) => Attempt::Answered(response),
                            Err(error) => Attempt::Failed(error),
                        };
                    }
                    if !self.table.routes_to(host, endpoint) {
                        return Attempt::Withdrawn;
                    }
                }
            }
        }
    }
}

enum Attempt {
    Answered(Response<Incoming>),
    Failed(hyper_util::client::legacy::Error),
    Withdrawn,
}
