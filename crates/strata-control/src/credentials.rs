//! Credentials: turning what a request presents into a [`Principal`], and the records behind
//! them. Owns the store keys under `/auth/` and the cluster's credential key.
//!
//! - API tokens (`st.NAME.SECRET`, 32 random bytes): the store keeps only the secret's
//!   sha256 under `/auth/tokens/NAME`, so revoking is deleting the record and takes effect at
//!   the next request on every server; an expired token is refused.
//! - Node credentials (`sn.NAME.MAC`) and server credentials (`ss.ID.MAC`): HMAC-SHA256 of
//!   the name under the cluster's credential key (`/cluster/credential-key`, made at the
//!   first server's start and readable by no route). Checking one costs no store read, which
//!   matters at ten heartbeats a second per node. A node gets its own from the join token
//!   once; from then on it presents that, and can act only as itself.
//! - The join token: only a node's first credential.

use std::path::Path;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use strata_core::auth::{
    CreateToken, CreatedToken, EnvScope, Principal, Role, TokenInfo, TokenRecord,
};
use strata_core::keys;
use strata_store::{Store, Txn};

use crate::plane::{decode, encode, valid_name};
use crate::{now_millis, ControlError};

const TOKEN_PREFIX: &str = "st.";
/// How a node credential begins.
pub const NODE_PREFIX: &str = "sn.";
const SERVER_PREFIX: &str = "ss.";

/// The file in a server's (or `strata dev`'s) data directory holding its admin token.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// Resolves credentials and keeps API tokens.
pub struct Credentials {
    store: Arc<dyn Store>,
    key: Vec<u8>,
    join_token: String,
}

/// The cluster's credential key: read from the store, or made there by the first server
/// (two servers racing agree on the first one written).
pub async fn credential_key(store: &Arc<dyn Store>) -> Result<Vec<u8>, ControlError> {
    if store.get(keys::CREDENTIAL_KEY).await?.is_none() {
        let fresh: [u8; 32] = rand::random();
        store
            .txn(
                Txn::new()
                    .when(keys::CREDENTIAL_KEY, 0)
                    .put(keys::CREDENTIAL_KEY, hex::encode(fresh).into_bytes()),
            )
            .await?;
    }
    let stored = store
        .get(keys::CREDENTIAL_KEY)
        .await?
        .ok_or_else(|| ControlError::Internal("the credential key vanished".into()))?;
    hex::decode(&stored.value).map_err(|_| ControlError::Corrupt {
        key: keys::CREDENTIAL_KEY.into(),
        reason: "not hex".into(),
    })
}

/// Byte-wise equality whose time does not depend on where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthorized(message: impl Into<String>) -> ControlError {
    ControlError::Unauthorized {
        message: message.into(),
        hint: "log in with `strata login URL --token-file FILE` or set STRATA_TOKEN; an admin makes tokens with `strata token create`".into(),
    }
}

impl Credentials {
    pub fn new(store: Arc<dyn Store>, key: Vec<u8>, join_token: String) -> Self {
        Self {
            store,
            key,
            join_token,
        }
    }

    fn mac(&self, kind: &str, name: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(kind.as_bytes());
        mac.update(&[0]);
        mac.update(name.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// What node `name` presents once it has joined.
    pub fn node_credential(&self, name: &str) -> String {
        format!("{NODE_PREFIX}{name}.{}", self.mac("node", name))
    }

    /// What server `id` presents to other servers.
    pub fn server_credential(&self, id: &str) -> String {
        format!("{SERVER_PREFIX}{id}.{}", self.mac("server", id))
    }

    /// Who presents `bearer` (the `Authorization: Bearer` value; `None`: nothing presented).
    /// A credential that is not valid (unknown, revoked, expired, forged) is an error, never
    /// taken as anonymous.
    pub async fn authenticate(&self, bearer: Option<&str>) -> Result<Principal, ControlError> {
        let Some(bearer) = bearer.map(str::trim).filter(|b| !b.is_empty()) else {
            return Ok(Principal::Anonymous);
        };
        if let Some(rest) = bearer.strip_prefix(NODE_PREFIX) {
            let (name, mac) = rest.rsplit_once('.').unwrap_or((rest, ""));
            if constant_time_eq(mac.as_bytes(), self.mac("node", name).as_bytes()) {
                return Ok(Principal::Node {
                    name: name.to_string(),
                });
            }
            return Err(unauthorized("this node credential is not valid here"));
        }
        if let Some(rest) = bearer.strip_prefix(SERVER_PREFIX) {
            let (id, mac) = rest.rsplit_once('.').unwrap_or((rest, ""));
            if constant_time_eq(mac.as_bytes(), self.mac("server", id).as_bytes()) {
                return Ok(Principal::Server { id: id.to_string() });
            }
            return Err(unauthorized("this server credential is not valid here"));
        }
        if let Some(rest) = bearer.strip_prefix(TOKEN_PREFIX) {
            let (name, secret) = rest.split_once('.').unwrap_or((rest, ""));
            return self.token_principal(name, secret).await;
        }
        let join = strata_core::auth::JoinToken::parse(bearer);
        if constant_time_eq(join.secret.as_bytes(), self.join_token.as_bytes()) {
            return Ok(Principal::Bootstrap);
        }
        Err(unauthorized(
            "the token presented is not a Strata token of this cluster",
        ))
    }

    async fn token_principal(&self, name: &str, secret: &str) -> Result<Principal, ControlError> {
        if !valid_name(name) {
            return Err(unauthorized("the token presented is malformed"));
        }
        let Some(kv) = self.store.get(&keys::token(name)).await? else {
            return Err(unauthorized(format!(
                "token `{name}` does not exist (it may have been revoked)"
            )));
        };
        let record: TokenRecord = decode(&kv)?;
        let presented = hex::encode(Sha256::digest(secret.as_bytes()));
        if !constant_time_eq(presented.as_bytes(), record.secret_sha256.as_bytes()) {
            return Err(unauthorized(format!("token `{name}`: wrong secret")));
        }
        let info = record.info;
        if info.expires_at.is_some_and(|at| at <= now_millis()) {
            return Err(unauthorized(format!("token `{name}` has expired")));
        }
        Ok(Principal::User {
            name: info.name,
            role: info.role,
            envs: info.envs,
        })
    }

    /// Makes an API token; the secret is returned this once and only its hash is kept. A
    /// name already taken is a conflict (revoke it first).
    pub async fn create_token(
        &self,
        request: &CreateToken,
        created_by: &str,
    ) -> Result<CreatedToken, ControlError> {
        if !valid_name(&request.name) {
            return Err(ControlError::bad_request(
                format!("token name `{}` is not valid", request.name),
                Some(
                    "use lowercase letters, digits and `-`, starting with a letter, at most 63 characters"
                        .to_string(),
                ),
            ));
        }
        // Events name a token's holder by the token's name: none may pose as the platform.
        if strata_core::Actor::RESERVED.contains(&request.name.as_str()) {
            return Err(ControlError::bad_request(
                format!(
                    "token name `{}` is the platform's own (events name its controllers, autoscaler and join token so)",
                    request.name
                ),
                Some("name the token after whoever holds it, like `ci` or `alice`".to_string()),
            ));
        }
        for env in &request.envs {
            if !valid_name(env) {
                return Err(ControlError::bad_request(
                    format!("environment `{env}` is not a valid name"),
                    None,
                ));
            }
        }
        let now = now_millis();
        let secret = hex::encode(rand::random::<[u8; 32]>());
        let record = TokenRecord {
            info: TokenInfo {
                name: request.name.clone(),
                role: request.role,
                envs: if request.envs.is_empty() {
                    EnvScope::All
                } else {
                    EnvScope::Only(request.envs.iter().cloned().collect())
                },
                created_at: now,
                expires_at: request
                    .ttl_secs
                    .map(|secs| now.saturating_add(secs.saturating_mul(1000))),
                created_by: created_by.to_string(),
            },
            secret_sha256: hex::encode(Sha256::digest(secret.as_bytes())),
        };
        let name = &record.info.name;
        let key = keys::token(name);
        let written = self
            .store
            .txn(Txn::new().when(&key, 0).put(&key, encode(&record)))
            .await?;
        if !written.is_committed() {
            return Err(ControlError::Conflict {
                message: format!("a token named `{name}` exists"),
                hint: Some(format!(
                    "pick another name, or revoke it first: strata token revoke {name}"
                )),
            });
        }
        Ok(CreatedToken {
            token: format!("{TOKEN_PREFIX}{name}.{secret}"),
            info: record.info,
        })
    }

    /// Every token, without secrets.
    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, ControlError> {
        let page = self.store.list(keys::TOKENS).await?;
        page.kvs
            .iter()
            .map(|kv| decode::<TokenRecord>(kv).map(|record| record.info))
            .collect()
    }

    /// Revokes a token: its next request, on any server, is refused.
    pub async fn revoke(&self, name: &str) -> Result<(), ControlError> {
        if self.store.delete(&keys::token(name)).await? {
            Ok(())
        } else {
            Err(ControlError::not_found(
                format!("token `{name}`"),
                Some("`strata token ls` lists the tokens".to_string()),
            ))
        }
    }

    /// The admin token of a server's data directory, `DIR/admin-token` (mode 0600): kept
    /// while it is valid, otherwise made anew (named `admin`, or `admin-SERVER_ID` when
    /// another server already made `admin`). This is how the machine that runs the server
    /// gets its first credential with no step by hand.
    pub async fn ensure_admin_token(
        &self,
        data_dir: &Path,
        server_id: &str,
    ) -> Result<String, ControlError> {
        let path = data_dir.join(ADMIN_TOKEN_FILE);
        if let Ok(kept) = std::fs::read_to_string(&path) {
            let kept = kept.trim().to_string();
            if let Ok(Principal::User {
                role: Role::Admin,
                envs: EnvScope::All,
                ..
            }) = self.authenticate(Some(&kept)).await
            {
                return Ok(kept);
            }
        }
        let mut request = CreateToken {
            name: "admin".into(),
            role: Role::Admin,
            envs: Vec::new(),
            ttl_secs: None,
        };
        let created = match self.create_token(&request, "server-init").await {
            Ok(created) => created,
            Err(ControlError::Conflict { .. }) => {
                request.name = format!("admin-{server_id}");
                // This server's own token: a stale one of an earlier data directory goes.
                let _ = self.store.delete(&keys::token(&request.name)).await?;
                self.create_token(&request, "server-init").await?
            }
            Err(other) => return Err(other),
        };
        write_private(&path, &created.token).map_err(|error| {
            ControlError::Internal(format!("cannot write {}: {error}", path.display()))
        })?;
        Ok(created.token)
    }
}

/// Writes a file only its owner can read or write (mode 0600, also when it existed).
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_store::RedbStore;

    async fn credentials(dir: &Path) -> Credentials {
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(&dir.join("s.redb")).await.unwrap());
        let key = credential_key(&store).await.unwrap();
        assert_eq!(key, credential_key(&store).await.unwrap(), "made once");
        Credentials::new(store, key, "join-secret".into())
    }

    #[tokio::test]
    async fn tokens_authenticate_until_revoked_or_expired() {
        let dir = tempfile::tempdir().unwrap();
        let creds = credentials(dir.path()).await;
        let created = creds
            .create_token(
                &CreateToken {
                    name: "ci".into(),
                    role: Role::Deployer,
                    envs: vec!["dev".into()],
                    ttl_secs: None,
                },
                "admin",
            )
            .await
            .unwrap();
        let who = creds.authenticate(Some(&created.token)).await.unwrap();
        assert!(
            matches!(who, Principal::User { ref name, role: Role::Deployer, .. } if name == "ci")
        );
        // A forged secret, a token of another name, nothing at all.
        let forged = format!("{}x", &created.token[..created.token.len() - 1]);
        assert!(creds.authenticate(Some(&forged)).await.is_err());
        assert!(creds.authenticate(Some("st.other.abc")).await.is_err());
        assert_eq!(
            creds.authenticate(None).await.unwrap(),
            Principal::Anonymous
        );
        // The name is taken.
        assert!(matches!(
            creds
                .create_token(
                    &CreateToken {
                        name: "ci".into(),
                        role: Role::Admin,
                        envs: vec![],
                        ttl_secs: None
                    },
                    "admin"
                )
                .await,
            Err(ControlError::Conflict { .. })
        ));
        // No token may be named like the platform's own actors.
        for reserved in strata_core::Actor::RESERVED {
            let refused = creds
                .create_token(
                    &CreateToken {
                        name: reserved.into(),
                        role: Role::Admin,
                        envs: vec![],
                        ttl_secs: None,
                    },
                    "admin",
                )
                .await;
            assert!(
                matches!(refused, Err(ControlError::BadRequest { .. })),
                "{reserved}: {refused:?}"
            );
        }
        creds.revoke("ci").await.unwrap();
        assert!(creds.authenticate(Some(&created.token)).await.is_err());
        // Expired at once.
        let expired = creds
            .create_token(
                &CreateToken {
                    name: "short".into(),
                    role: Role::Viewer,
                    envs: vec![],
                    ttl_secs: Some(0),
                },
                "admin",
            )
            .await
            .unwrap();
        let error = creds.authenticate(Some(&expired.token)).await.unwrap_err();
        assert!(error.to_string().contains("expired"), "{error}");
        // Listing shows no secret or hash.
        let listed = serde_json::to_string(&creds.tokens().await.unwrap()).unwrap();
        assert!(!listed.contains(&created.token[10..]) && !listed.contains("sha256"));
    }

    #[tokio::test]
    async fn node_credentials_name_one_node_and_cannot_be_forged() {
        let dir = tempfile::tempdir().unwrap();
        let creds = credentials(dir.path()).await;
        let n1 = creds.node_credential("n1");
        assert_eq!(
            creds.authenticate(Some(&n1)).await.unwrap(),
            Principal::Node { name: "n1".into() }
        );
        // Renaming the node inside the credential breaks its MAC.
        let renamed = n1.replacen("sn.n1.", "sn.n2.", 1);
        assert!(creds.authenticate(Some(&renamed)).await.is_err());
        assert_eq!(
            creds.authenticate(Some("join-secret")).await.unwrap(),
            Principal::Bootstrap
        );
        let server = creds.server_credential("s1");
        assert_eq!(
            creds.authenticate(Some(&server)).await.unwrap(),
            Principal::Server { id: "s1".into() }
        );
        assert!(creds.authenticate(Some("nonsense")).await.is_err());
    }

    #[tokio::test]
    async fn the_admin_token_file_is_private_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let creds = credentials(dir.path()).await;
        let first = creds.ensure_admin_token(dir.path(), "s1").await.unwrap();
        let mode = std::fs::metadata(dir.path().join(ADMIN_TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            creds.ensure_admin_token(dir.path(), "s1").await.unwrap(),
            first
        );
        // Another server's data directory gets a token of its own.
        let other = tempfile::tempdir().unwrap();
        let second = creds.ensure_admin_token(other.path(), "s2").await.unwrap();
        assert!(second.starts_with("st.admin-s2."), "{second}");
        assert!(creds.authenticate(Some(&first)).await.is_ok());
    }
}
