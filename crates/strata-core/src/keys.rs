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
/// `/status/{node}/{created_at:016}/{id}`: an [`crate::InstanceStatus`], what the instance's
/// agent observed ([`status`]). Keyed by node and by when the instance was placed, so the
/// statuses a node reports together (instances placed together start together) are adjacent
/// in the store: a report rewrites a few pages of its B-tree, not one page per instance.
/// Stores written before this layout kept `/status/{id}`; a server moves those at start.
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
/// The cluster's join token.
pub const JOIN_TOKEN: &str = "/cluster/join-token";
/// `/logs/{id}`: a [`crate::LogTail`], the last lines of an instance's log that its node
/// shipped, kept past the node's death for the retention.
pub const LOGS: &str = "/logs/";
/// `/blobs/{digest}`: which servers hold an uploaded artifact.
pub const BLOBS: &str = "/blobs/";
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
pub const READERS: [(&str, Readers); 17] = [
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
    (LOGS, Readers::Nobody),
    (LEADER, Readers::Nobody),
];

/// Who may read `key` ([`Readers::Nobody`] for a key under no known prefix).
pub fn readers(key: &str) -> Readers {
    READERS
        .iter()
        .find(|(prefix, _)| key.starts_with(prefix))
        .map_or(Readers::Nobody, |(_, readers)| *readers)
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
pub fn instance(id: &str) -> String {
    format!("{INSTANCES}{id}")
}
/// The key of the status of instance `id` on `node`, placed at `created_at` (see [`STATUS`]).
pub fn status(node: &str, created_at: u64, id: &str) -> String {
    format!("{STATUS}{node}/{created_at:016}/{id}")
}
/// The key of `instance`'s status.
pub fn instance_status(instance: &crate::Instance) -> String {
    status(&instance.node, instance.created_at, &instance.id)
}
/// The instance a status key is of, in this layout or the one before (`/status/{id}`).
pub fn status_id(key: &str) -> Option<&str> {
    key.strip_prefix(STATUS)?.rsplit('/').next()
}
/// Whether a status key is in the layout before [`STATUS`]'s (`/status/{id}`).
pub fn is_old_status_key(key: &str) -> bool {
    key.strip_prefix(STATUS)
        .is_some_and(|rest| !rest.contains('/'))
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
    fn a_nodes_statuses_sort_by_when_their_instances_were_placed() {
        let key = status("n1", 1_765_000_000_000, "web-1-00ab12");
        assert_eq!(key, "/status/n1/0001765000000000/web-1-00ab12");
        assert_eq!(status_id(&key), Some("web-1-00ab12"));
        assert!(!is_old_status_key(&key));
        // Placed together, adjacent, whatever their services; a later placement after.
        let together = [
            status("n1", 5, "zeta-1-000001"),
            status("n1", 5, "alpha-1-000001"),
        ];
        let later = status("n1", 6, "alpha-1-000002");
        assert!(together.iter().all(|k| *k < later));
        assert!(status("n1", 99, "a") < status("n2", 0, "a"));
        // The layout before: `/status/{id}`.
        assert_eq!(status_id("/status/web-1-00ab12"), Some("web-1-00ab12"));
        assert!(is_old_status_key("/status/web-1-00ab12"));
        assert_eq!(status_id("/instances/web-1-00ab12"), None);
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
            (audit(1), Readers::Nobody),
            (CLUSTER_CA.to_string(), Readers::Nobody),
            (LEADER.to_string(), Readers::Nobody),
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
