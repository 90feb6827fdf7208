//! Nodes' traffic reports, kept in memory on the leader, and the SLO reports read from
//! them; and handing requests that only the leader serves over to it.

use super::*;

impl ControlPlane {
    /// Adds a node's per-service traffic report (on the leader; followers forward it).
    pub fn record_traffic(&self, node: &str, report: &strata_core::api::MetricsReport) {
        self.traffic
            .lock()
            .expect("traffic lock")
            .record(crate::now_millis(), node, report);
    }

    /// A service's traffic over the last minutes, per second.
    pub fn traffic(&self, env: &str, service: &str) -> strata_core::api::ServiceMetrics {
        let from = now_millis().saturating_sub(crate::metrics::RECENT_TRAFFIC_MS);
        self.traffic_since(env, service, from)
    }

    /// A service's traffic per second from `from_ms` on (at most the last hour).
    pub fn traffic_since(
        &self,
        env: &str,
        service: &str,
        from_ms: u64,
    ) -> strata_core::api::ServiceMetrics {
        self.traffic
            .lock()
            .expect("traffic lock")
            .service(env, service, from_ms)
    }

    /// How `env/service` did against its SLO over the last hour (`None`: it has no SLO).
    pub async fn slo_report(
        &self,
        env: &str,
        service: &str,
    ) -> Result<Option<strata_core::api::SloReport>, ControlError> {
        let Some((record, _)) = self.get::<Service>(&keys::service(env, service)).await? else {
            return Err(ControlError::not_found(
                format!("service {service} in environment {env}"),
                None,
            ));
        };
        let Some(slo) = record.slo else {
            return Ok(None);
        };
        let from = now_millis().saturating_sub(crate::metrics::TRAFFIC_KEPT_MS);
        let traffic = self.traffic_since(env, service, from);
        Ok(Some(crate::metrics::slo_report(&slo, &traffic)))
    }

    /// Hands an agent's heartbeat to the leader (liveness is judged there).
    pub async fn forward_heartbeat(
        &self,
        node: &str,
        beat: &strata_core::api::Heartbeat,
        headers: &axum::http::HeaderMap,
    ) -> Result<strata_core::api::HeartbeatAck, ControlError> {
        self.forward_to_leader(
            reqwest::Method::POST,
            &format!("/v1/nodes/{node}/heartbeat"),
            Some(beat),
            headers,
        )
        .await?
        .json()
        .await
        .map_err(|error| ControlError::Internal(format!("the leader answered badly: {error}")))
    }

    /// Sends `request` to the leader's API at `path` (with the caller's credentials), for the
    /// requests only the leader can answer. `NotLeader` when no other server leads.
    pub async fn forward_to_leader(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&impl Serialize>,
        headers: &axum::http::HeaderMap,
    ) -> Result<reqwest::Response, ControlError> {
        let leader = crate::leader::current_leader(&self.store)
            .await
            .ok_or(ControlError::NotLeader)?;
        if leader.server_id == self.config.server_id {
            return Err(ControlError::NotLeader);
        }
        let mut request = self
            .http()
            .request(
                method,
                format!("{}{path}", leader.api_url.trim_end_matches('/')),
            )
            .timeout(std::time::Duration::from_secs(2));
        if let Some(body) = body {
            request = request.json(body);
        }
        // The caller's credential, or this server's vouching for a node
        // (`crate::guard::forwarding_headers`).
        for name in [
            axum::http::header::AUTHORIZATION,
            axum::http::HeaderName::from_static(crate::guard::ON_BEHALF_OF),
        ] {
            if let Some(value) = headers.get(&name) {
                request = request.header(name.clone(), value.clone());
            }
        }
        let response = request.send().await.map_err(|error| {
            ControlError::Internal(format!("leader {} unreachable: {error}", leader.api_url))
        })?;
        if !response.status().is_success() {
            return Err(ControlError::Internal(format!(
                "leader {} refused {path}: HTTP {}",
                leader.api_url,
                response.status()
            )));
        }
        Ok(response)
    }
}
