//! Who may do what: the identities that call Strata's API, the actions they ask for, and the
//! one pure decision between them ([`authorize`]), plus which stored keys each identity may
//! read ([`may_read_key`]). No IO: the API edge resolves a credential into a [`Principal`],
//! maps the route to an [`Action`], and asks here.
//!
//! The roles are cumulative: `viewer` reads; `deployer` also deploys, scales, deletes and
//! reads logs in its environments; `operator` also manages nodes and policies and reads the
//! audit log; `admin` also manages tokens. Anything that is not about one environment (nodes,
//! policies of the cluster, the audit log, tokens) needs a token scoped to every environment.
//! Nodes act only as themselves; the join token only bootstraps a node's credential.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A person's or CI's role. Ordered: each role may do what the ones before it may.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads services, releases, instances, nodes and events.
    Viewer,
    /// + deploys, scales, deletes services and reads their logs, in its environments.
    Deployer,
    /// + drains nodes, sets call policies and quotas, reads the audit log and every log.
    Operator,
    /// + creates and revokes tokens.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Deployer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Deployer => "deployer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The environments a token acts in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EnvScope {
    /// Every environment, and what belongs to none (nodes, the audit log, tokens).
    All,
    /// Only these environments.
    Only(BTreeSet<String>),
}

impl EnvScope {
    pub fn covers(&self, env: &str) -> bool {
        match self {
            EnvScope::All => true,
            EnvScope::Only(envs) => envs.contains(env),
        }
    }

    pub fn is_all(&self) -> bool {
        matches!(self, EnvScope::All)
    }
}

impl fmt::Display for EnvScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvScope::All => f.write_str("all environments"),
            EnvScope::Only(envs) => {
                let list: Vec<&str> = envs.iter().map(String::as_str).collect();
                write!(f, "{}", list.join(", "))
            }
        }
    }
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No credential at all.
    Anonymous,
    /// A person or CI, by its API token.
    User {
        name: String,
        role: Role,
        envs: EnvScope,
    },
    /// A node, by its node credential: may act only as itself.
    Node { name: String },
    /// Whoever holds the cluster's join token: may only fetch a node's first credential.
    Bootstrap,
    /// Another server of the control plane (replication, forwarding).
    Server { id: String },
}

impl Principal {
    /// How audit records and events name the caller.
    pub fn display_name(&self) -> String {
        self.actor().to_string()
    }

    /// The caller as the actor of what it does.
    pub fn actor(&self) -> crate::Actor {
        use crate::Actor;
        match self {
            Principal::Anonymous => Actor::Anonymous,
            Principal::User { name, .. } => Actor::User(name.clone()),
            Principal::Node { name } => Actor::Node(name.clone()),
            Principal::Bootstrap => Actor::JoinToken,
            Principal::Server { id } => Actor::Server(id.clone()),
        }
    }

    /// Whether this caller sees what belongs to no environment (nodes' events).
    pub fn sees_cluster(&self) -> bool {
        match self {
            Principal::User { envs, .. } => envs.is_all(),
            Principal::Node { .. } | Principal::Server { .. } => true,
            Principal::Anonymous | Principal::Bootstrap => false,
        }
    }

    /// Whether this caller sees environment `env` in lists (services, instances, events).
    pub fn sees_env(&self, env: &str) -> bool {
        match self {
            Principal::User { envs, .. } => envs.covers(env),
            Principal::Node { .. } | Principal::Server { .. } => true,
            Principal::Anonymous | Principal::Bootstrap => false,
        }
    }
}

/// What a request asks to do. Environment-scoped actions carry no environment here: it is
/// passed to [`authorize`] beside the action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Read services, releases, instances, SLOs and traffic of an environment (or of all).
    Read,
    /// Read the event log.
    ReadEvents,
    /// Read instances' logs.
    ReadLogs,
    /// List nodes.
    ReadNodes,
    /// The routing table (nodes' proxies; operators).
    ReadRoutes,
    /// A server's Prometheus metrics.
    ReadServerMetrics,
    /// Stream changes of the store (each change is then filtered by [`may_read_key`]).
    Watch,
    /// Deploy (make releases and roll them out).
    Deploy,
    /// Change a service's scale by hand.
    Scale,
    /// Delete a service.
    Delete,
    /// Upload an artifact.
    UploadBlob,
    /// Download an artifact (nodes; deployers).
    DownloadBlob,
    /// Start a service at zero for a waiting request (nodes' proxies; deployers).
    Wake,
    /// Set an environment's call policy.
    SetPolicy,
    /// Set an environment's quota.
    SetQuota,
    /// Protect an environment (only promotion changes it) or open it again; deploy directly
    /// to a protected one.
    ProtectEnv,
    /// Drain or undrain a node.
    ManageNodes,
    /// Read the audit log.
    ReadAudit,
    /// Create, list and revoke API tokens.
    ManageTokens,
    /// Take a backup of the whole state (its secrets only sealed).
    Backup,
    /// Set or remove a service's secrets (values go in, never come out).
    WriteSecrets,
    /// List a service's secrets: names, versions, who set them when (never values).
    ListSecrets,
    /// Re-seal the secrets' data key under a new key-encryption key.
    RotateSecretsKey,
    /// Copy the key-encryption keys from a server that has them (servers only).
    CopySecretsKeys,
    /// A node's first credential, for node `node` (the join token's only use).
    JoinNode { node: String },
    /// What only node `node` itself may do: register, heartbeat, fetch its assignments,
    /// report its events and traffic, renew its certificate.
    ActAsNode { node: String },
    /// Report an instance's status (a node; the plane checks the instance is placed on it).
    ReportStatus,
    /// Say who the caller is (any valid credential).
    WhoAmI,
}

impl Action {
    /// The least role a person needs for this action, or `None` when no person may do it
    /// (the node-only actions).
    pub fn role_needed(&self) -> Option<Role> {
        Some(match self {
            Action::Read
            | Action::ReadEvents
            | Action::ReadNodes
            | Action::ReadServerMetrics
            | Action::WhoAmI => Role::Viewer,
            Action::Watch => Role::Viewer,
            Action::Deploy
            | Action::Scale
            | Action::Delete
            | Action::UploadBlob
            | Action::DownloadBlob
            | Action::Wake
            | Action::ReadLogs
            | Action::WriteSecrets
            | Action::ListSecrets => Role::Deployer,
            Action::ReadRoutes
            | Action::SetPolicy
            | Action::SetQuota
            | Action::ManageNodes
            | Action::ReadAudit => Role::Operator,
            Action::ManageTokens
            | Action::Backup
            | Action::RotateSecretsKey
            | Action::ProtectEnv => Role::Admin,
            Action::JoinNode { .. }
            | Action::ActAsNode { .. }
            | Action::ReportStatus
            | Action::CopySecretsKeys => return None,
        })
    }

    /// Whether the action concerns the whole cluster rather than one environment: a person
    /// then needs a token scoped to every environment.
    pub fn cluster_wide(&self) -> bool {
        matches!(
            self,
            Action::ReadNodes
                | Action::ReadRoutes
                | Action::ReadServerMetrics
                | Action::ManageNodes
                | Action::SetQuota
                | Action::ReadAudit
                | Action::ManageTokens
                | Action::Backup
                | Action::RotateSecretsKey
        )
    }
}

/// The answer to "may this principal do this?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// No valid credential: 401.
    Unauthenticated {
        hint: String,
    },
    /// A known caller without the right: 403.
    Forbidden {
        reason: String,
    },
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow)
    }
}

/// Decides whether `principal` may do `action` in environment `env` (`None`: the action is
/// about no single environment, or about every environment the caller sees). Pure.
pub fn authorize(principal: &Principal, action: &Action, env: Option<&str>) -> Decision {
    match principal {
        Principal::Anonymous => Decision::Unauthenticated {
            hint: "send a token: run `strata login URL --token-file FILE`, or set STRATA_TOKEN"
                .into(),
        },
        Principal::Bootstrap => match action {
            Action::JoinNode { .. } => Decision::Allow,
            _ => Decision::Forbidden {
                reason: "the join token only lets a node fetch its first credential".into(),
            },
        },
        Principal::Node { name } => {
            let allowed = match action {
                Action::JoinNode { node } | Action::ActAsNode { node } => node == name,
                Action::ReportStatus
                | Action::WhoAmI
                | Action::Watch
                | Action::ReadRoutes
                | Action::DownloadBlob
                | Action::Wake => true,
                _ => false,
            };
            if allowed {
                Decision::Allow
            } else {
                Decision::Forbidden {
                    reason: match action {
                        Action::JoinNode { node } | Action::ActAsNode { node } => {
                            format!("node `{name}` may act only as itself, not as node `{node}`")
                        }
                        _ => format!("node `{name}` may not do this: it is for people's tokens"),
                    },
                }
            }
        }
        Principal::Server { .. } => match action {
            Action::DownloadBlob
            | Action::Read
            | Action::ReadNodes
            | Action::ReadRoutes
            | Action::Watch
            | Action::WhoAmI
            | Action::CopySecretsKeys => Decision::Allow,
            _ => Decision::Forbidden {
                reason: "servers only copy artifacts and keys and read state from each other"
                    .into(),
            },
        },
        Principal::User { name, role, envs } => {
            let Some(needed) = action.role_needed() else {
                return Decision::Forbidden {
                    reason: format!("token `{name}` is a person's; only nodes may do this"),
                };
            };
            if *role < needed {
                return Decision::Forbidden {
                    reason: format!(
                        "token `{name}` has role {role}; this needs role {needed} or higher"
                    ),
                };
            }
            if action.cluster_wide() && !envs.is_all() {
                return Decision::Forbidden {
                    reason: format!(
                        "token `{name}` is scoped to {envs}; this concerns the whole cluster and needs a token for all environments"
                    ),
                };
            }
            match env {
                Some(env) if !envs.covers(env) => Decision::Forbidden {
                    reason: format!(
                        "token `{name}` is scoped to {envs}, not to environment `{env}`"
                    ),
                },
                _ => Decision::Allow,
            }
        }
    }
}

/// Whether `principal` may see the stored record at `key` (through the watch), by the table
/// of readers beside the store's keys ([`crate::keys::READERS`]): an allow-list, a key
/// under no prefix there is readable by no one.
pub fn may_read_key(principal: &Principal, key: &str) -> bool {
    use crate::keys::{readers, Readers};
    let readers = readers(key);
    // `/PREFIX/ENV/...`: the environment a record belongs to.
    let env_of = |key: &str| {
        let rest = key.strip_prefix('/')?.split_once('/')?.1;
        Some(rest.split('/').next().unwrap_or(rest).to_string())
    };
    match (principal, readers) {
        (_, Readers::Nobody) | (Principal::Anonymous | Principal::Bootstrap, _) => false,
        (Principal::Node { .. } | Principal::Server { .. }, _) => true,
        (Principal::User { role, envs, .. }, Readers::ByEnvironment) => {
            // Configuration values are not a viewer's to read.
            if key.starts_with(crate::keys::CONFIGS) && *role < Role::Deployer {
                return false;
            }
            env_of(key).is_some_and(|env| envs.covers(&env))
        }
        (Principal::User { envs, .. }, Readers::Cluster) => envs.is_all(),
    }
}

/// A join token as printed by `strata server`: `sj1.CA_FINGERPRINT.SECRET`, the fingerprint
/// being the hex SHA-256 of the cluster CA's certificate, so a joining node verifies the
/// server before it sends the secret (as kubeadm's discovery hash does). A bare secret is a
/// join token without a fingerprint (`strata dev`, plain HTTP on loopback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub ca_fingerprint: Option<String>,
    pub secret: String,
}

impl JoinToken {
    const PREFIX: &'static str = "sj1.";

    pub fn parse(text: &str) -> JoinToken {
        let text = text.trim();
        if let Some(rest) = text.strip_prefix(Self::PREFIX) {
            if let Some((fingerprint, secret)) = rest.split_once('.') {
                return JoinToken {
                    ca_fingerprint: Some(fingerprint.to_ascii_lowercase()),
                    secret: secret.to_string(),
                };
            }
        }
        JoinToken {
            ca_fingerprint: None,
            secret: text.to_string(),
        }
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.ca_fingerprint {
            Some(fingerprint) => write!(f, "{}{fingerprint}.{}", Self::PREFIX, self.secret),
            None => f.write_str(&self.secret),
        }
    }
}

/// The key a node's own API (logs, metrics) requires: a one-way function of the node's
/// credential, so the node and the control plane (which derives the credential) both know
/// it, and whoever sees it on the wire (that API is plain HTTP) learns nothing that lets it
/// act as the node.
pub fn node_api_key(node_credential: &str) -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    hash.update(b"strata node api\0");
    hash.update(node_credential.as_bytes());
    format!("sk.{}", hex::encode(hash.finalize()))
}

/// An API token as the store keeps it (`/auth/tokens/{name}`): never the secret, only its
/// sha256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// What may be shown of it (stored as fields of the record itself).
    #[serde(flatten)]
    pub info: TokenInfo,
    /// Hex sha256 of the token's secret part.
    pub secret_sha256: String,
}

/// A token as `GET /v1/tokens` shows it: everything but its secret and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    pub name: String,
    pub role: Role,
    pub envs: EnvScope,
    pub created_at: u64,
    /// Milliseconds since the epoch after which the token is refused (`None`: never).
    pub expires_at: Option<u64>,
    /// Who made it.
    pub created_by: String,
}

/// `POST /v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreateToken {
    pub name: String,
    pub role: Role,
    /// The environments it acts in; empty: all.
    #[serde(default)]
    pub envs: Vec<String>,
    /// Seconds until it expires (`None`: never).
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

/// The answer to `POST /v1/tokens`: the token itself, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    pub info: TokenInfo,
    pub token: String,
}

/// One audited call (`/audit/{seq}`): who did what, from where, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditRecord {
    pub seq: u64,
    /// Milliseconds since the epoch.
    pub at: u64,
    /// The caller: a token's name, `node:NAME`, `server:ID`, `join-token` or `anonymous`.
    pub who: String,
    /// The caller's address.
    pub from: String,
    /// `METHOD /route/{template}`.
    pub route: String,
    pub env: Option<String>,
    /// What was asked, in a few words (service, node, release, count).
    pub summary: String,
    /// The HTTP status of the answer.
    pub status: u16,
    /// Why it was refused, when it was.
    pub denied: Option<String>,
}

/// `GET /v1/audit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditList {
    pub records: Vec<AuditRecord>,
}

/// `GET /v1/nodes/{name}/credential`: what a node presents from then on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeCredential {
    pub credential: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(role: Role, envs: &[&str]) -> Principal {
        Principal::User {
            name: "t".into(),
            role,
            envs: if envs.is_empty() {
                EnvScope::All
            } else {
                EnvScope::Only(envs.iter().map(|e| e.to_string()).collect())
            },
        }
    }

    fn node(name: &str) -> Principal {
        Principal::Node { name: name.into() }
    }

    #[test]
    fn authorize_table() {
        use Action::*;
        let join = |n: &str| JoinNode { node: n.into() };
        let act = |n: &str| ActAsNode { node: n.into() };
        #[rustfmt::skip]
        let cases: Vec<(&str, Principal, Action, Option<&str>, bool)> = vec![
            ("no credential reads nothing", Principal::Anonymous, Read, Some("dev"), false),
            ("no credential deploys nothing", Principal::Anonymous, Deploy, Some("dev"), false),
            ("a viewer reads", user(Role::Viewer, &[]), Read, Some("dev"), true),
            ("a viewer reads events", user(Role::Viewer, &[]), ReadEvents, None, true),
            ("a viewer cannot deploy", user(Role::Viewer, &[]), Deploy, Some("dev"), false),
            ("a viewer cannot read logs", user(Role::Viewer, &[]), ReadLogs, Some("dev"), false),
            ("a deployer deploys in its env", user(Role::Deployer, &["dev"]), Deploy, Some("dev"), true),
            ("a deployer for dev cannot deploy to prod", user(Role::Deployer, &["dev"]), Deploy, Some("prod"), false),
            ("a deployer for dev cannot read prod", user(Role::Deployer, &["dev"]), Read, Some("prod"), false),
            ("a deployer reads its logs", user(Role::Deployer, &["dev"]), ReadLogs, Some("dev"), true),
            ("a deployer scales and deletes", user(Role::Deployer, &[]), Delete, Some("dev"), true),
            ("a deployer cannot drain nodes", user(Role::Deployer, &[]), ManageNodes, None, false),
            ("a deployer cannot set policy", user(Role::Deployer, &[]), SetPolicy, Some("dev"), false),
            ("an operator drains nodes", user(Role::Operator, &[]), ManageNodes, None, true),
            ("an operator scoped to dev cannot drain nodes", user(Role::Operator, &["dev"]), ManageNodes, None, false),
            ("an operator sets policy", user(Role::Operator, &["dev"]), SetPolicy, Some("dev"), true),
            ("an operator sets quotas", user(Role::Operator, &[]), SetQuota, Some("dev"), true),
            ("an operator cannot protect an environment", user(Role::Operator, &[]), ProtectEnv, Some("prod"), false),
            ("an admin protects one", user(Role::Admin, &[]), ProtectEnv, Some("prod"), true),
            ("an operator scoped to dev cannot set dev's quota", user(Role::Operator, &["dev"]), SetQuota, Some("dev"), false),
            ("an operator reads the audit log", user(Role::Operator, &[]), ReadAudit, None, true),
            ("an operator cannot make tokens", user(Role::Operator, &[]), ManageTokens, None, false),
            ("an admin makes tokens", user(Role::Admin, &[]), ManageTokens, None, true),
            ("an admin takes backups", user(Role::Admin, &[]), Backup, None, true),
            ("an operator cannot take backups", user(Role::Operator, &[]), Backup, None, false),
            ("an admin scoped to dev cannot take backups", user(Role::Admin, &["dev"]), Backup, None, false),
            ("a node cannot take backups", node("n1"), Backup, None, false),
            ("an admin scoped to dev cannot make tokens", user(Role::Admin, &["dev"]), ManageTokens, None, false),
            ("an admin cannot heartbeat for a node", user(Role::Admin, &[]), act("n1"), None, false),
            ("an admin cannot report instance status", user(Role::Admin, &[]), ReportStatus, None, false),
            ("a node acts as itself", node("n1"), act("n1"), None, true),
            ("a node cannot act as another", node("n1"), act("n2"), None, false),
            ("a node reports status", node("n1"), ReportStatus, None, true),
            ("a node reads routes", node("n1"), ReadRoutes, None, true),
            ("a node downloads artifacts", node("n1"), DownloadBlob, None, true),
            ("a node cannot deploy", node("n1"), Deploy, Some("dev"), false),
            ("a node cannot make tokens", node("n1"), ManageTokens, None, false),
            ("a node cannot drain", node("n1"), ManageNodes, None, false),
            ("the join token joins a node", Principal::Bootstrap, join("n1"), None, true),
            ("the join token cannot heartbeat", Principal::Bootstrap, act("n1"), None, false),
            ("the join token cannot read", Principal::Bootstrap, Read, None, false),
            ("the join token cannot deploy", Principal::Bootstrap, Deploy, Some("dev"), false),
            ("a server copies blobs", Principal::Server { id: "s".into() }, DownloadBlob, None, true),
            ("a server cannot deploy", Principal::Server { id: "s".into() }, Deploy, Some("dev"), false),
            ("a deployer sets its env's secrets", user(Role::Deployer, &["dev"]), WriteSecrets, Some("dev"), true),
            ("a deployer for dev cannot set prod's secrets", user(Role::Deployer, &["dev"]), WriteSecrets, Some("prod"), false),
            ("a viewer cannot set secrets", user(Role::Viewer, &[]), WriteSecrets, Some("dev"), false),
            ("a viewer cannot list secrets", user(Role::Viewer, &[]), ListSecrets, Some("dev"), false),
            ("a deployer lists its env's secrets", user(Role::Deployer, &["dev"]), ListSecrets, Some("dev"), true),
            ("a node cannot set secrets", node("n1"), WriteSecrets, Some("dev"), false),
            ("an admin rotates the secrets key", user(Role::Admin, &[]), RotateSecretsKey, None, true),
            ("an admin scoped to dev cannot rotate it", user(Role::Admin, &["dev"]), RotateSecretsKey, None, false),
            ("an operator cannot rotate it", user(Role::Operator, &[]), RotateSecretsKey, None, false),
            ("a server copies the secrets keys", Principal::Server { id: "s".into() }, CopySecretsKeys, None, true),
            ("an admin cannot copy the secrets keys", user(Role::Admin, &[]), CopySecretsKeys, None, false),
            ("a node cannot copy the secrets keys", node("n1"), CopySecretsKeys, None, false),
        ];
        for (name, principal, action, env, allowed) in cases {
            let decision = authorize(&principal, &action, env);
            assert_eq!(decision.is_allowed(), allowed, "{name}: {decision:?}");
        }
    }

    #[test]
    fn a_node_api_key_is_stable_and_not_the_credential() {
        let key = node_api_key("sn.n1.abc");
        assert_eq!(key, node_api_key("sn.n1.abc"));
        assert_ne!(key, node_api_key("sn.n2.abc"));
        assert!(!key.contains("sn.n1"));
    }

    #[test]
    fn join_tokens_carry_the_ca_fingerprint() {
        let token = JoinToken::parse("sj1.ABCDEF.s3cret");
        assert_eq!(token.ca_fingerprint.as_deref(), Some("abcdef"));
        assert_eq!(token.secret, "s3cret");
        assert_eq!(token.to_string(), "sj1.abcdef.s3cret");
        let bare = JoinToken::parse(" s3cret\n");
        assert_eq!(
            (bare.ca_fingerprint, bare.secret.as_str()),
            (None, "s3cret")
        );
    }

    #[test]
    fn refusals_say_why() {
        let decision = authorize(&user(Role::Viewer, &[]), &Action::Deploy, Some("dev"));
        assert_eq!(
            decision,
            Decision::Forbidden {
                reason: "token `t` has role viewer; this needs role deployer or higher".into()
            }
        );
        let decision = authorize(&Principal::Anonymous, &Action::Read, None);
        assert!(
            matches!(decision, Decision::Unauthenticated { hint } if hint.contains("strata login"))
        );
    }

    #[test]
    fn readable_keys_table() {
        let admin = user(Role::Admin, &[]);
        let viewer_dev = user(Role::Viewer, &["dev"]);
        let deployer_dev = user(Role::Deployer, &["dev"]);
        let a_node = node("n");
        #[rustfmt::skip]
        let cases: Vec<(&str, &Principal, &str, bool)> = vec![
            ("the CA key, to an admin", &admin, "/pki/ca", false),
            ("the CA key, to a node", &a_node, "/pki/ca", false),
            ("the join token", &admin, "/cluster/join-token", false),
            ("token hashes", &admin, "/auth/tokens/ci", false),
            ("the election", &admin, "/leader", false),
            ("the audit log", &admin, "/audit/0000000000000001", false),
            ("an unknown prefix", &admin, "/secret-thing", false),
            ("anything, to the anonymous", &Principal::Anonymous, "/services/dev/a", false),
            ("anything, to the join token", &Principal::Bootstrap, "/instances/x", false),
            ("a service, to an admin", &admin, "/services/prod/a", true),
            ("a service of its env", &viewer_dev, "/services/dev/a", true),
            ("a service of another env", &viewer_dev, "/services/prod/a", false),
            ("the env record", &viewer_dev, "/envs/dev", true),
            ("another env record", &viewer_dev, "/envs/prod", false),
            ("configs, to a viewer", &viewer_dev, "/configs/dev/a/0000000001", false),
            ("configs, to a deployer", &deployer_dev, "/configs/dev/a/0000000001", true),
            ("instances, to a scoped token", &viewer_dev, "/instances/x", false),
            ("instances, to an all-env token", &admin, "/instances/x", true),
            ("instances, to a node", &a_node, "/instances/x", true),
        ];
        for (name, principal, key, readable) in cases {
            assert_eq!(may_read_key(principal, key), readable, "{name}");
        }
    }
}
