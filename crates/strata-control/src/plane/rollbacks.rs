//! Rollback: a service goes back to one of its releases as it was (its artifact digest,
//! configuration version and secrets' versions), rolled out as any release is. Which release
//! is `strata_sched::rollback::rollback_target`'s decision; this checks that what the
//! release needs is still there before anything changes, and writes the change with its
//! event.

use strata_core::api::{RollbackRequest, RolledBack};
use strata_core::{keys, now_millis, Actor, EnvName, EventKind, Release, Service, ServiceName};
use strata_sched::rollback::rollback_target;
use strata_store::{Txn, TxnOutcome};

use super::{encode, ControlPlane, CAS_ATTEMPTS};
use crate::ControlError;

/// The longest reason a rollback keeps.
const MAX_REASON: usize = 500;

impl ControlPlane {
    /// Rolls `name` back to `request.to` (or the newest release that served in full before
    /// the one it runs); refused, with nothing changed, when that release does not exist or
    /// its artifact, configuration or a secret's version is no longer kept.
    pub async fn rollback(
        &self,
        env: &EnvName,
        name: &ServiceName,
        request: &RollbackRequest,
        actor: &Actor,
    ) -> Result<RolledBack, ControlError> {
        let reason = request.reason.as_deref().map(str::trim).unwrap_or("");
        if reason.chars().count() > MAX_REASON || reason.chars().any(char::is_control) {
            return Err(ControlError::bad_request(
                format!("the reason is over {MAX_REASON} characters or holds control characters"),
                Some("say why in one line".to_string()),
            ));
        }
        let service_key = keys::service(env, name);
        for _ in 0..CAS_ATTEMPTS {
            let Some((mut service, revision)) = self.get::<Service>(&service_key).await? else {
                return Err(self.service_not_found(env, name).await);
            };
            // A progressive rollout going on is what a plain rollback takes back: its new
            // release out, the stable one alone.
            if let (Some(canary), None) = (service.rollout_release(), request.to) {
                let why = match reason {
                    "" => "rolled back".to_string(),
                    why => format!("rolled back: {why}"),
                };
                self.steer_rollout(
                    env,
                    name,
                    crate::rollouts::RolloutAction::Abort,
                    Some(&why),
                    actor,
                )
                .await?;
                let (service, _) = self
                    .get::<Service>(&service_key)
                    .await?
                    .ok_or_else(|| ControlError::Internal(format!("{name} vanished")))?;
                return Ok(RolledBack {
                    env: env.clone(),
                    name: name.clone(),
                    from: canary,
                    to: service.desired_release,
                });
            }
            let existing = self.release_numbers(env, name).await?;
            let target = rollback_target(&service, &existing, request.to).map_err(|refusal| {
                ControlError::bad_request(refusal.message, Some(refusal.hint))
            })?;
            let Some((release, _)) = self
                .get::<Release>(&keys::release(env, name, target))
                .await?
            else {
                return Err(ControlError::not_found(
                    format!("release {target} of {name}"),
                    Some(format!("`strata releases {name}` lists them")),
                ));
            };
            self.check_release_runnable(&release).await?;
            let from = service.desired_release;
            if self.serves_in_full(&service) {
                service.note_served(from);
            }
            let now = now_millis();
            let why = match reason {
                "" => format!("rolled back to release {target} by {actor}"),
                why => format!("rolled back to release {target} by {actor}: {why}"),
            };
            super::progressive::abort_rollout(&mut service, target, now);
            service.make_desired(target, now, strata_core::ReleaseEnding::RolledBack, why);
            service.updated_at = now;
            let message = match reason {
                "" => format!("{name}: rolled back from release {from} to release {target}"),
                why => {
                    format!("{name}: rolled back from release {from} to release {target}: {why}")
                }
            };
            let mut event = crate::event_log::event(EventKind::ServiceRolledBack, message.clone());
            event.env = Some(env.clone());
            event.service = Some(name.clone());
            event.actor = actor.clone();
            let txn = Txn::new()
                .when(&service_key, revision)
                .put(&service_key, encode(&service));
            let txn = self.event_log().stage(txn, event);
            match self.store.txn(txn).await? {
                TxnOutcome::Committed(_) => {
                    tracing::info!(service = %name, "{message}");
                    self.kick.notify_one();
                    return Ok(RolledBack {
                        env: env.clone(),
                        name: name.clone(),
                        from,
                        to: target,
                    });
                }
                TxnOutcome::Conflict { .. } => continue,
            }
        }
        Err(ControlError::Conflict {
            message: format!("service `{name}` kept changing during the rollback"),
            hint: Some("a deploy of it is running; try again".to_string()),
        })
    }

    /// The numbers of the releases the store holds for a service, in order.
    async fn release_numbers(
        &self,
        env: &EnvName,
        name: &ServiceName,
    ) -> Result<Vec<u64>, ControlError> {
        let prefix = keys::releases_of(env, name);
        let mut numbers: Vec<u64> = self
            .store
            .list(&prefix)
            .await?
            .kvs
            .into_iter()
            .filter_map(|kv| kv.key.strip_prefix(&prefix)?.parse().ok())
            .collect();
        numbers.sort_unstable();
        Ok(numbers)
    }

    /// Refuses a release whose artifact, configuration version or a secret's version is no
    /// longer kept: it could not run as it was.
    async fn check_release_runnable(&self, release: &Release) -> Result<(), ControlError> {
        let (env, name, number) = (&release.env, &release.service, release.number);
        if let Some(digest) = &release.artifact_digest {
            if !self.artifact_known(digest).await? {
                return Err(ControlError::Conflict {
                    message: format!(
                        "release {number} of {name} cannot run as it was: its artifact {digest} is no longer kept"
                    ),
                    hint: Some(format!(
                        "deploy that artifact again (`strata deploy`), or roll back to another release (`strata releases {name}`)"
                    )),
                });
            }
        }
        if self
            .store
            .get(&keys::config(env, name, release.config_version))
            .await?
            .is_none()
        {
            return Err(ControlError::Conflict {
                message: format!(
                    "release {number} of {name} cannot run as it was: its configuration (version {}) is no longer kept",
                    release.config_version
                ),
                hint: Some("deploy the configuration you want instead".to_string()),
            });
        }
        for (secret, version) in &release.secrets {
            let kept = self
                .get::<strata_core::secret::SecretRecord>(&keys::secret(env, name, secret))
                .await?
                .is_some_and(|(record, _)| record.version(*version).is_some());
            if !kept {
                return Err(ControlError::Conflict {
                    message: format!(
                        "release {number} of {name} cannot run as it was: version {version} of its secret {secret} is no longer kept (a secret keeps its newest 5)"
                    ),
                    hint: Some(format!(
                        "deploy instead, or roll back to a newer release (`strata releases {name}`)"
                    )),
                });
            }
        }
        Ok(())
    }
}
