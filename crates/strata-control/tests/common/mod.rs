//! What the control plane's tests share: a configuration for a plane on a test's directory.

use std::time::Duration;

use strata_control::ControlConfig;

/// A configuration for server `id`, its data under `dir/id`.
pub fn config(dir: &std::path::Path, id: &str) -> ControlConfig {
    ControlConfig {
        data_dir: dir.join(id),
        liveness: Default::default(),
        ingress_port: None,
        join_token: "token".into(),
        credential_key: vec![7; 32],
        max_artifact_size: 1 << 30,
        audit_retention: Duration::from_secs(86_400),
        log_retention: strata_control::plane::DEFAULT_LOG_RETENTION,
        event_retention: strata_control::plane::DEFAULT_EVENT_RETENTION,
        node_certificates_required: false,
        api_ca_pem: None,
        liveness_tick: Duration::from_millis(50),
        server_id: id.into(),
        api_url: format!("http://{id}.invalid"),
        lease_ttl: Duration::from_secs(2),
        node_cert_ttl: strata_control::DEFAULT_NODE_CERT_TTL,
        scale_down_window: strata_control::DEFAULT_SCALE_DOWN_WINDOW,
        forget_down_after_ms: strata_control::DEFAULT_FORGET_DOWN_AFTER.as_millis() as u64,
        secrets_key_file: dir.join(id).join("secrets.key"),
    }
}
pub mod faulty_store;
pub mod forensics;
pub mod harness;
