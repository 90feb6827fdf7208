//! The key layout of Strata's state in the store.
//!
//! All state lives under a few prefixes so a controller can list or watch one kind of record.
//! Desired state (written by the control plane) and observed state (reported by agents) are
//! kept under different keys, so the two writers never contend for one revision.

/// `/envs/{env}`: an [`crate::Environment`].
pub const ENVS: &str = "/envs/";
/// `/services/{env}/{service}`: a [`crate::Service`].
pub const SERVICES: &str = "/services/";
/// `/releases/{env}/{service}/{number:010}`: an immutable [`crate::Release`].
pub const RELEASES: &str = "/releases/";
/// `/configs/{env}/{service}/{version:010}`: an immutable [`crate::ConfigVersion`].
pub const CONFIGS: &str = "/configs/";
/// `/instances/{id}`: an [`crate::Instance`], the control plane's desired instance.
pub const INSTANCES: &str = "/instances/";
/// `/status/{id}`: an [`crate::InstanceStatus`], what the instance's agent observed.
pub const STATUS: &str = "/status/";
/// `/nodes/{name}`: a [`crate::Node`].
pub const NODES: &str = "/nodes/";
/// `/events/{seq:016}`: an append-only [`crate::Event`].
pub const EVENTS: &str = "/events/";
/// The cluster CA's certificate and key (JSON), made at the first server's init.
pub const CLUSTER_CA: &str = "/pki/ca";
/// `/auth/tokens/{name}`: a [`crate::auth::TokenRecord`] (the secret's hash, never the secret).
pub const TOKENS: &str = "/auth/tokens/";
/// `/audit/{seq:016}`: an append-only [`crate::auth::AuditRecord`].
pub const AUDIT: &str = "/audit/";
/// The key the control plane derives node and server credentials with (HMAC-SHA256).
pub const CREDENTIAL_KEY: &str = "/cluster/credential-key";
/// `/secrets/{env}/{service}/{name}`: a [`crate::secret::SecretRecord`] (values sealed, never
/// plain).
pub const SECRETS: &str = "/secrets/";
/// The cluster's data key for secrets, sealed under a key-encryption key kept outside the
/// store (the servers' `--secrets-key-file`).
pub const SECRETS_KEY: &str = "/cluster/secrets-key";
/// The cluster's join token.
pub const JOIN_TOKEN: &str = "/cluster/join-token";
/// `/logs/{id}`: a [`crate::LogTail`], the last lines of an instance's log that its node
/// shipped, kept past the node's death for the retention.
pub const LOGS: &str = "/logs/";
/// `/blobs/{digest}`: which servers hold an uploaded artifact.
pub const BLOBS: &str = "/blobs/";
/// `/archives/{id}`: a [`crate::archive::ArchiveRecord`], a forensic archive the control plane
/// verified, countersigned and keeps (its bytes in the blob store).
pub const ARCHIVES: &str = "/archives/";
/// `/expired-blobs/{digest}`: when a blob was removed past its keep (a forensic archive's), so
/// that a server away at the time wipes its copy when it is back; kept 30 days.
pub const EXPIRED_BLOBS: &str = "/expired-blobs/";
/// `/decommissions/{node}`: a [`crate::decommission::DecommissionRecord`], kept once a node
/// is decommissioned.
pub const DECOMMISSIONS: &str = "/decommissions/";
/// `/revoked/nodes/{name}`: a [`crate::decommission::RevokedNode`]: its credential,
/// certificates and name are refused for good.
pub const REVOKED_NODES: &str = "/revoked/nodes/";
/// `/servers/{id}`: a server of the control plane and its API address.
pub const SERVERS: &str = "/servers/";
/// The leader's lease-bound record (the election).
pub const LEADER: &str = "/leader";

/// Who may read a prefix of the store through the API's watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readers {
    /// Nobody: secrets, the election, the audit log and logs (read only through their own
    /// routes, if at all).
    Nobody,
    /// Keyed by environment (`/PREFIX/ENV/...`): nodes, servers, and users of that
    /// environment (configuration values: deployers and above).
    ByEnvironment,
    /// The cluster's records, not keyed by environment: nodes, servers, and users of every
    /// environment.
    Cluster,
}

/// Every prefix of the store with who may read it; a key under no prefix here is read by
/// no one (`crate::auth::may_read_key` applies this table).
pub const READERS: [(&str, Readers); 23] = [
    (ENVS, Readers::ByEnvironment),
    (SERVICES, Readers::ByEnvironment),
    (RELEASES, Readers::ByEnvironment),
    (CONFIGS, Readers::ByEnvironment),
    (INSTANCES, Readers::Cluster),
    (STATUS, Readers::Cluster),
    (NODES, Readers::Cluster),
    (EVENTS, Readers::Cluster),
    (BLOBS, Readers::Cluster),
    (SERVERS, Readers::Nobody),
    (CLUSTER_CA, Readers::Nobody),
    (TOKENS, Readers::Nobody),
    (AUDIT, Readers::Nobody),
    (CREDENTIAL_KEY, Readers::Nobody),
    (JOIN_TOKEN, Readers::Nobody),
    (SECRETS, Readers::Nobody),
    (SECRETS_KEY, Readers::Nobody),
    (LOGS, Readers::Nobody),
    (LEADER, Readers::Nobody),
    (ARCHIVES, Readers::Nobody),
    (EXPIRED_BLOBS, Readers::Nobody),
    (DECOMMISSIONS, Readers::Cluster),
    (REVOKED_NODES, Readers::Cluster),
];

/// Who may read `key` ([`Readers::Nobody`] for a key under no known prefix).
pub fn readers(key: &str) -> Readers {
    READERS
        .iter()
        .find(|(prefix, _)| key.starts_with(prefix))
        .map_or(Readers::Nobody, |(_, readers)| *readers)
}

pub fn decommission(node: &str) -> String {
    format!("{DECOMMISSIONS}{node}")
}

pub fn revoked_node(name: &str) -> String {
    format!("{REVOKED_NODES}{name}")
}

pub fn archive(id: &str) -> String {
    format!("{ARCHIVES}{id}")
}

pub fn log_tail(id: &str) -> String {
    format!("{LOGS}{id}")
}

pub fn env(env: &str) -> String {
    format!("{ENVS}{env}")
}
pub fn service(env: &str, service: &str) -> String {
    format!("{SERVICES}{env}/{service}")
}
pub fn services_of(env: &str) -> String {
    format!("{SERVICES}{env}/")
}
pub fn release(env: &str, service: &str, number: u64) -> String {
    format!("{RELEASES}{env}/{service}/{number:010}")
}
pub fn releases_of(env: &str, service: &str) -> String {
    format!("{RELEASES}{env}/{service}/")
}
pub fn config(env: &str, service: &str, version: u64) -> String {
    format!("{CONFIGS}{env}/{service}/{version:010}")
}
pub fn configs_of(env: &str, service: &str) -> String {
    format!("{CONFIGS}{env}/{service}/")
}
pub fn secret(env: &str, service: &str, name: &str) -> String {
    format!("{SECRETS}{env}/{service}/{name}")
}
pub fn secrets_of(env: &str, service: &str) -> String {
    format!("{SECRETS}{env}/{service}/")
}
pub fn instance(id: &str) -> String {
    format!("{INSTANCES}{id}")
}
pub fn status(id: &str) -> String {
    format!("{STATUS}{id}")
}
pub fn node(name: &str) -> String {
    format!("{NODES}{name}")
}
pub fn token(name: &str) -> String {
    format!("{TOKENS}{name}")
}
pub fn audit(seq: u64) -> String {
    format!("{AUDIT}{seq:016}")
}
pub fn event(seq: u64) -> String {
    format!("{EVENTS}{seq:016}")
}

/// The last path segment of a key (`/instances/abc` -> `abc`).
pub fn last_segment(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_keys_sort_in_number_order() {
        assert!(release("dev", "a", 9) < release("dev", "a", 10));
        assert!(event(99) < event(100));
        assert_eq!(last_segment(&instance("x-1")), "x-1");
    }

    #[test]
    fn every_key_has_its_readers_and_unknown_ones_have_none() {
        let table = [
            (service("dev", "web"), Readers::ByEnvironment),
            (config("prod", "web", 3), Readers::ByEnvironment),
            (instance("web-1-abc"), Readers::Cluster),
            (event(7), Readers::Cluster),
            (log_tail("web-1-abc"), Readers::Nobody),
            (token("ci"), Readers::Nobody),
            (secret("prod", "web", "DB_PASSWORD"), Readers::Nobody),
            (SECRETS_KEY.to_string(), Readers::Nobody),
            (audit(1), Readers::Nobody),
            (CLUSTER_CA.to_string(), Readers::Nobody),
            (LEADER.to_string(), Readers::Nobody),
            (archive("n1-1765000000000"), Readers::Nobody),
            ("/somewhere/new".to_string(), Readers::Nobody),
        ];
        for (key, want) in table {
            assert_eq!(readers(&key), want, "{key}");
        }
        // No prefix is listed twice, or shadowed by an earlier one.
        for (i, (a, _)) in READERS.iter().enumerate() {
            for (b, _) in &READERS[i + 1..] {
                assert!(!b.starts_with(a) && !a.starts_with(b), "{a} and {b}");
            }
        }
    }
}
