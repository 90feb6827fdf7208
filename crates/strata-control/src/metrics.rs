//! The control plane's `/metrics` (OpenMetrics text): what the fleet looks like from this
//! server, read from the store at scrape time (nodes and instances by state, services), and
//! whether this server leads and in which term.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::error::ControlError;
use crate::plane::ControlPlane;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

/// The metrics text for one scrape.
pub async fn scrape(plane: &ControlPlane) -> Result<String, ControlError> {
    let nodes = plane.nodes().await?;
    let instances = plane.instance_views().await?;
    let services = plane.services(None).await?;

    let mut registry = Registry::default();
    let strata = registry.sub_registry_with_prefix("strata");
    let by_node_state = Family::<StateLabel, Gauge>::default();
    for node in &nodes {
        let state = serde_json::to_value(node.effective_state())
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        by_node_state.get_or_create(&StateLabel { state }).inc();
    }
    strata.register("nodes", "Nodes by state", by_node_state);
    let by_instance_state = Family::<StateLabel, Gauge>::default();
    for view in &instances {
        let state = serde_json::to_value(view.state())
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        by_instance_state.get_or_create(&StateLabel { state }).inc();
    }
    strata.register("instances", "Instances by state", by_instance_state);
    let service_count = Gauge::<i64>::default();
    service_count.set(services.len() as i64);
    strata.register("services", "Services in every environment", service_count);
    let leader = Gauge::<i64>::default();
    let term = Gauge::<i64>::default();
    if let Some(current) = plane.term() {
        leader.set(1);
        term.set(current.revision as i64);
    }
    strata.register("leader", "1 when this server runs the controllers", leader);
    strata.register(
        "leader_term",
        "The revision of this server's leader term (0: not leader)",
        term,
    );

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .map_err(|e| ControlError::Internal(format!("encoding metrics: {e}")))?;
    Ok(text)
}
