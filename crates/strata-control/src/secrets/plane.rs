//! The control plane's secret operations: set, list, remove, rotate the key-encryption key,
//! and open the values a node's assignments carry.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use strata_core::keys::{self, SECRETS_KEY, SERVERS};
use strata_core::secret::{
    is_secret_name, DeliveredSecret, KeyRotated, SealedVersion, SecretInfo, SecretRecord,
    SecretSet, MAX_VALUE_BYTES, SECRET_NAME_RULE, VERSIONS_KEPT,
};
use strata_core::{now_millis, Actor, EnvName, EventKind, Release, Service, ServiceName};
use strata_store::{Txn, TxnOutcome, WatchEvent};

use super::{value_place, DataKey, SealedDataKey};
use crate::plane::{decode, encode, CAS_ATTEMPTS};
use crate::replicate::ServerRecord;
use crate::{ControlError, ControlPlane};

/// The secret versions a new release runs with, and the revisions they were read at.
#[derive(Debug, Default)]
pub(crate) struct SecretVersions {
    pub versions: BTreeMap<String, u64>,
    /// `(store key, mod revision)` of each record read.
    pub read_at: Vec<(String, u64)>,
}

impl SecretVersions {
    /// `txn`, guarded by every record being as it was read.
    pub fn guard(&self, txn: Txn) -> Txn {
        self.read_at
            .iter()
            .fold(txn, |txn, (key, revision)| txn.when(key, *revision))
    }
}

fn not_set(env: &EnvName, service: &ServiceName, name: &str) -> ControlError {
    ControlError::not_found(
        format!("secret `{name}` of service `{service}` in environment `{env}`"),
        Some(format!(
            "`strata secret ls {service} --env {env}` lists its secrets"
        )),
    )
}

fn check_name(name: &str) -> Result<(), ControlError> {
    if is_secret_name(name) {
        Ok(())
    } else {
        Err(ControlError::bad_request(
            format!("`{name}` is not a valid secret name"),
            Some(SECRET_NAME_RULE.to_string()),
        ))
    }
}

impl ControlPlane {
    /// The data key, opened: kept in memory once opened; else read from the store (a
    /// key-encryption key this server lacks copied from another server first), or made
    /// when `create` and the cluster has none yet. `None`: none exists and none was made.
    async fn data_key(&self, create: bool) -> Result<Option<Arc<DataKey>>, ControlError> {
        if let Some(key) = self.secrets.data_key() {
            return Ok(Some(key));
        }
        for _ in 0..CAS_ATTEMPTS {
            let Some((sealed, _)) = self.get::<SealedDataKey>(SECRETS_KEY).await? else {
                if !create {
                    return Ok(None);
                }
                let fresh = DataKey::new(rand::random());
                let sealed = {
                    let keyring = self.secrets.keyring();
                    let (id, kek) = keyring.active();
                    fresh.seal(id, kek, self.server_id(), now_millis())
                };
                let txn = Txn::new()
                    .when(SECRETS_KEY, 0)
                    .put(SECRETS_KEY, encode(&sealed));
                if let TxnOutcome::Committed(_) = self.store.txn(txn).await? {
                    tracing::info!(kek = %sealed.kek, "made the cluster's secrets data key");
                    return Ok(Some(self.secrets.keep(fresh)));
                }
                continue;
            };
            if self.secrets.keyring().get(&sealed.kek).is_none() {
                self.copy_keys_from_peers().await?;
            }
            let keyring = self.secrets.keyring();
            let Some(kek) = keyring.get(&sealed.kek) else {
                return Err(ControlError::Internal(format!(
                    "the cluster's secrets are sealed under key `{}` (made by {}), which this server's key file {} does not hold, and no other server gave it; copy the key file from {} (or restore it from where you keep it) and restart this server",
                    sealed.kek,
                    sealed.sealed_by,
                    self.config.secrets_key_file.display(),
                    sealed.sealed_by
                )));
            };
            let Some(key) = DataKey::open(&sealed, kek) else {
                return Err(ControlError::Internal(format!(
                    "the secrets data key does not open with key `{}` of {}: the key file or the store's record was altered",
                    sealed.kek,
                    self.config.secrets_key_file.display()
                )));
            };
            drop(keyring);
            return Ok(Some(self.secrets.keep(key)));
        }
        Err(ControlError::Conflict {
            message: "the secrets data key kept changing".into(),
            hint: Some("try again".into()),
        })
    }

    /// The data key, made if the cluster has none yet.
    async fn data_key_made(&self) -> Result<Arc<DataKey>, ControlError> {
        self.data_key(true).await?.ok_or_else(|| {
            ControlError::Internal("the secrets data key was neither found nor made".into())
        })
    }

    /// The service as stored, with its revision and its desired release (`None`: no such
    /// service): what setting or removing one of its secrets decides by.
    async fn service_and_desired(
        &self,
        env: &EnvName,
        service: &ServiceName,
    ) -> Result<Option<(Service, u64, Option<Release>)>, ControlError> {
        let Some((stored, revision)) = self.get::<Service>(&keys::service(env, service)).await?
        else {
            return Ok(None);
        };
        let desired: Option<(Release, u64)> = self
            .get(&keys::release(env, service, stored.desired_release))
            .await?;
        Ok(Some((
            stored,
            revision,
            desired.map(|(release, _)| release),
        )))
    }

    /// Opens the data key if the cluster has secrets (before a node's assignments are read;
    /// no store read while there are none, or once it is open).
    pub(crate) async fn secrets_ready(&self) {
        if self.secrets.data_key().is_some() || !self.reflector().read().has_secrets() {
            return;
        }
        if let Err(error) = self.data_key(false).await {
            tracing::error!(%error, "cannot open the secrets data key; instances with secrets cannot start");
        }
    }

    /// Sets a new version of a secret. When the service's desired release runs with the
    /// secret, a new release (the same spec and configuration, the new version) is made
    /// desired in the same transaction, and rolls out as a deploy does.
    pub async fn set_secret(
        &self,
        env: &EnvName,
        service: &ServiceName,
        name: &str,
        value: &str,
        actor: &Actor,
    ) -> Result<SecretSet, ControlError> {
        check_name(name)?;
        if value.is_empty() {
            return Err(ControlError::bad_request(
                format!("the value of secret `{name}` is empty"),
                Some("give the value on stdin or with --from-file FILE".to_string()),
            ));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(ControlError::TooLarge {
                message: format!(
                    "the value of secret `{name}` is {} bytes; the most is {MAX_VALUE_BYTES}",
                    value.len()
                ),
                hint: "keep large files in the artifact; a secret holds keys and passwords".into(),
            });
        }
        if value.contains('\0') {
            return Err(ControlError::bad_request(
                format!("the value of secret `{name}` holds a NUL byte, which no environment variable can"),
                Some("encode binary values (base64) and decode them in the service".to_string()),
            ));
        }
        let data_key = self.data_key_made().await?;
        let key = keys::secret(env, service, name);
        let service_key = keys::service(env, service);
        for _ in 0..CAS_ATTEMPTS {
            let now = now_millis();
            let stored: Option<(SecretRecord, u64)> = self.get(&key).await?;
            let (mut record, revision) = stored.unwrap_or_else(|| {
                let fresh = SecretRecord {
                    env: env.clone(),
                    service: service.clone(),
                    name: name.to_string(),
                    latest_version: 0,
                    versions: Vec::new(),
                    removed_at: None,
                };
                (fresh, 0)
            });
            let version = record.latest_version + 1;
            record.latest_version = version;
            record.removed_at = None;
            record.versions.push(SealedVersion {
                version,
                sealed: super::cipher::seal(
                    &data_key.cipher,
                    &value_place(&key, version),
                    value.as_bytes(),
                ),
                set_by: actor.to_string(),
                set_at: now,
            });
            let drop = record.versions.len().saturating_sub(VERSIONS_KEPT);
            record.versions.drain(..drop);
            let mut txn = Txn::new().when(&key, revision).put(&key, encode(&record));
            // The service's release with the new version, if it runs with the secret.
            let mut release = None;
            if let Some((mut stored_service, service_revision, desired)) =
                self.service_and_desired(env, service).await?
            {
                txn = txn.when(&service_key, service_revision);
                if let Some(mut next) = desired.filter(|r| r.secrets.contains_key(name)) {
                    let number = stored_service.latest_release + 1;
                    next.number = number;
                    next.secrets.insert(name.to_string(), version);
                    next.created_at = now;
                    stored_service.latest_release = number;
                    stored_service.desired_release = number;
                    stored_service.updated_at = now;
                    txn = txn
                        .put(keys::release(env, service, number), encode(&next))
                        .put(&service_key, encode(&stored_service));
                    release = Some(number);
                }
            }
            let message = match release {
                Some(number) => format!(
                    "{service}: secret {name} set (version {version}); release {number} rolls it out"
                ),
                None => format!("{service}: secret {name} set (version {version})"),
            };
            let mut event = crate::event_log::event(EventKind::SecretSet, message.clone());
            event.env = Some(env.clone());
            event.service = Some(service.clone());
            event.actor = actor.clone();
            let txn = self.event_log().stage(txn, event);
            if let TxnOutcome::Committed(_) = self.store.txn(txn).await? {
                tracing::info!(kind = %EventKind::SecretSet, %service, "{message}");
                if release.is_some() {
                    self.kick.notify_one();
                }
                return Ok(SecretSet {
                    name: name.to_string(),
                    version,
                    release,
                });
            }
        }
        Err(ControlError::Conflict {
            message: format!("secret `{name}` or service `{service}` kept changing"),
            hint: Some("try again".to_string()),
        })
    }

    /// A service's secrets: names, versions, who set them when. Never a value.
    pub async fn list_secrets(
        &self,
        env: &EnvName,
        service: &ServiceName,
    ) -> Result<Vec<SecretInfo>, ControlError> {
        let records = self
            .list::<SecretRecord>(&keys::secrets_of(env, service))
            .await?;
        Ok(records
            .iter()
            .filter_map(|(record, _)| record.info())
            .collect())
    }

    /// Removes a secret (its values; a tombstone keeps its version numbers). Refused while
    /// the service's desired release runs with it.
    pub async fn remove_secret(
        &self,
        env: &EnvName,
        service: &ServiceName,
        name: &str,
        actor: &Actor,
    ) -> Result<(), ControlError> {
        check_name(name)?;
        let key = keys::secret(env, service, name);
        let service_key = keys::service(env, service);
        for _ in 0..CAS_ATTEMPTS {
            let Some((mut record, revision)) = self.get::<SecretRecord>(&key).await? else {
                return Err(not_set(env, service, name));
            };
            if !record.is_set() {
                return Err(not_set(env, service, name));
            }
            let mut txn = Txn::new().when(&key, revision);
            if let Some((stored_service, service_revision, desired)) =
                self.service_and_desired(env, service).await?
            {
                if desired.is_some_and(|r| r.secrets.contains_key(name)) {
                    return Err(ControlError::Conflict {
                        message: format!(
                            "release {} of `{service}` runs with secret `{name}`",
                            stored_service.desired_release
                        ),
                        hint: Some(format!(
                            "deploy a spec without `secrets.{name}` first, then remove it"
                        )),
                    });
                }
                txn = txn.when(&service_key, service_revision);
            }
            record.versions.clear();
            record.removed_at = Some(now_millis());
            txn = txn.put(&key, encode(&record));
            let mut event = crate::event_log::event(
                EventKind::SecretRemoved,
                format!("{service}: secret {name} removed"),
            );
            event.env = Some(env.clone());
            event.service = Some(service.clone());
            event.actor = actor.clone();
            let txn = self.event_log().stage(txn, event);
            if let TxnOutcome::Committed(_) = self.store.txn(txn).await? {
                return Ok(());
            }
        }
        Err(ControlError::Conflict {
            message: format!("secret `{name}` kept changing"),
            hint: Some("try again".to_string()),
        })
    }

    /// The versions of the secrets `names` names, as a new release of the service runs
    /// them: each one's newest, with the store revision of each record read (for a write to
    /// compare against, so a version set meanwhile is never lost under an older one). Refused,
    /// naming the first, when one is not set.
    pub(crate) async fn secret_versions(
        &self,
        env: &EnvName,
        service: &ServiceName,
        names: impl Iterator<Item = &String>,
    ) -> Result<SecretVersions, ControlError> {
        let mut versions = SecretVersions::default();
        for name in names {
            let key = keys::secret(env, service, name);
            let record: Option<(SecretRecord, u64)> = self.get(&key).await?;
            let newest = record.and_then(|(r, revision)| {
                r.newest()
                    .filter(|_| r.is_set())
                    .map(|v| (v.version, revision))
            });
            match newest {
                Some((version, revision)) => {
                    versions.versions.insert(name.clone(), version);
                    versions.read_at.push((key, revision));
                }
                None => {
                    return Err(ControlError::bad_request(
                        format!("service `{service}` uses secret `{name}`, which is not set in environment `{env}`"),
                        Some(format!(
                            "set it first: `strata secret set {service} {name} --env {env}` (the value on stdin)"
                        )),
                    ))
                }
            }
        }
        Ok(versions)
    }

    /// Seals the data key under a fresh key-encryption key (added to this server's key file
    /// first). No value is re-sealed and nothing restarts; other servers copy the new key.
    pub async fn rotate_secrets_key(&self, actor: &Actor) -> Result<KeyRotated, ControlError> {
        let data_key = self.data_key_made().await?;
        let (kek_id, kek) = self
            .secrets
            .keyring()
            .rotate()
            .map_err(|error| ControlError::Internal(format!("{error} ({})", error.hint())))?;
        for _ in 0..CAS_ATTEMPTS {
            let Some((previous, revision)) = self.get::<SealedDataKey>(SECRETS_KEY).await? else {
                return Err(ControlError::Internal(
                    "the secrets data key vanished from the store".into(),
                ));
            };
            let sealed = data_key.seal(&kek_id, &kek, self.server_id(), now_millis());
            let txn = Txn::new()
                .when(SECRETS_KEY, revision)
                .put(SECRETS_KEY, encode(&sealed));
            let mut event = crate::event_log::event(
                EventKind::SecretsKeyRotated,
                format!(
                    "the secrets data key is sealed under {kek_id} (was {}), made by {}",
                    previous.kek,
                    self.server_id()
                ),
            );
            event.actor = actor.clone();
            let txn = self.event_log().stage(txn, event);
            if let TxnOutcome::Committed(_) = self.store.txn(txn).await? {
                tracing::info!(kek = %kek_id, previous = %previous.kek, "secrets data key re-sealed");
                return Ok(KeyRotated {
                    kek: kek_id,
                    previous: previous.kek,
                });
            }
        }
        Err(ControlError::Conflict {
            message: "the secrets data key kept changing".into(),
            hint: Some("another rotation is running; try again".into()),
        })
    }

    /// Every key-encryption key this server has (for another server of the cluster).
    pub fn secrets_keys(&self) -> BTreeMap<String, String> {
        self.secrets.keyring().export()
    }

    /// Copies the key-encryption keys this server lacks from the other servers that answer.
    /// Returns how many were added.
    pub async fn copy_keys_from_peers(&self) -> Result<usize, ControlError> {
        let servers = self.list::<ServerRecord>(SERVERS).await?;
        let credential = self.credentials().server_credential(self.server_id());
        let mut added = 0;
        for (server, _) in servers
            .iter()
            .filter(|(s, _)| s.server_id != self.server_id())
        {
            let url = format!("{}/v1/secrets/keys", server.api_url.trim_end_matches('/'));
            let keys = match self.identity().get(&url, &credential).await {
                Ok(response) if response.status().is_success() => {
                    response.json::<BTreeMap<String, String>>().await
                }
                Ok(response) => {
                    tracing::warn!(server = %server.server_id, status = %response.status(), "cannot copy secrets keys");
                    continue;
                }
                Err(error) => {
                    tracing::warn!(server = %server.server_id, %error, "cannot copy secrets keys");
                    continue;
                }
            };
            let Ok(keys) = keys else {
                continue;
            };
            added += self
                .secrets
                .keyring()
                .merge(&keys)
                .map_err(|error| ControlError::Internal(error.to_string()))?;
        }
        if added > 0 {
            tracing::info!(added, "copied secrets keys from other servers");
        }
        Ok(added)
    }

    /// The values of the secrets `release` pins, opened for the node that runs one of its
    /// instances; `record` finds a secret's record by store key. Fails (naming the secret,
    /// never a value) when one cannot be opened.
    pub(crate) fn deliver_secrets<'r>(
        &self,
        release: &Release,
        record: impl Fn(&str) -> Option<&'r SecretRecord>,
    ) -> Result<Vec<DeliveredSecret>, String> {
        if release.secrets.is_empty() {
            return Ok(Vec::new());
        }
        let data_key = self
            .secrets
            .data_key()
            .ok_or("the secrets data key is not open on this server")?;
        let mut delivered = Vec::with_capacity(release.secrets.len());
        for (name, version) in &release.secrets {
            let Some(target) = release.spec.secrets.get(name) else {
                continue;
            };
            let key = keys::secret(&release.env, &release.service, name);
            let sealed = record(&key)
                .and_then(|r| r.version(*version))
                .ok_or_else(|| format!("secret {name} version {version} is no longer kept"))?;
            let value = super::cipher::open(
                &data_key.cipher,
                &value_place(&key, *version),
                &sealed.sealed,
            )
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| format!("secret {name} version {version} does not open"))?;
            delivered.push(DeliveredSecret {
                name: name.clone(),
                version: *version,
                target: target.clone(),
                value,
            });
        }
        Ok(delivered)
    }
}

/// Keeps this server holding the key-encryption key the data key is sealed under: at start
/// and whenever it is re-sealed, a key this server lacks is copied from another server
/// (retried until one gives it), so losing the server that rotated loses nothing. Runs
/// until the task is dropped.
pub async fn follow_keys(plane: Arc<ControlPlane>) {
    loop {
        // A listing gives the revision it was read at: the watch starts right after it.
        let start = match plane.store.list(SECRETS_KEY).await {
            Ok(page) => {
                if let Some(kv) = page.kvs.iter().find(|kv| kv.key == SECRETS_KEY) {
                    ensure_key(&plane, kv).await;
                }
                page.revision
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read the secrets data key");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Ok(mut changes) = plane.store.watch(SECRETS_KEY, start + 1).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        while let Some(Ok(change)) = changes.next().await {
            if let WatchEvent::Put(kv) = change {
                if kv.key == SECRETS_KEY {
                    ensure_key(&plane, &kv).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Copies the key `kv` (a sealed data key) names until this server has it.
async fn ensure_key(plane: &ControlPlane, kv: &strata_store::KeyValue) {
    let Ok(sealed) = decode::<SealedDataKey>(kv) else {
        return;
    };
    for attempt in 0u32.. {
        if plane.secrets.keyring().get(&sealed.kek).is_some() {
            return;
        }
        if let Err(error) = plane.copy_keys_from_peers().await {
            tracing::warn!(%error, "cannot copy the secrets keys");
        }
        if plane.secrets.keyring().get(&sealed.kek).is_some() {
            return;
        }
        if attempt % 30 == 0 {
            tracing::warn!(kek = %sealed.kek, from = %sealed.sealed_by, "this server lacks the key the secrets data key is sealed under; asking the other servers");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
