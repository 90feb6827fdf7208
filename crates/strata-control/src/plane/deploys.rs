//! Deploys and deletes: artifacts checked without the runtimes, the deploy decision
//! (`strata_sched::plan_deploy`) written in one transaction, and environments' policies and
//! quotas.

use super::*;

impl ControlPlane {
    /// Creates a new release for every service whose spec, artifact or config changed, and
    /// makes it the desired one. Unchanged services keep their release (replicas may change).
    pub async fn deploy(
        &self,
        env: &EnvName,
        request: DeployRequest,
        actor: &Actor,
    ) -> Result<DeployResponse, ControlError> {
        self.deploy_from(env, request, actor, None).await
    }

    /// [`Self::deploy`], its new releases recording `origin` (a promotion's source).
    pub(super) async fn deploy_from(
        &self,
        env: &EnvName,
        mut request: DeployRequest,
        actor: &Actor,
        origin: Option<&Origin>,
    ) -> Result<DeployResponse, ControlError> {
        if request.services.is_empty() {
            return Err(ControlError::bad_request(
                "the deploy names no services",
                Some("add at least one [service.NAME] table to the spec".to_string()),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for item in &request.services {
            self.validate(item).await?;
            if !seen.insert(item.spec.name.clone()) {
                return Err(ControlError::bad_request(
                    format!("service `{}` appears twice in the deploy", item.spec.name),
                    None,
                ));
            }
        }
        self.check_route_hosts(env, &request.services).await?;
        // Every secret a spec names must be set before anything is written (checked again,
        // for its versions, as each service is written).
        for item in &request.services {
            self.secret_versions(env, &item.spec.name, item.spec.secrets.keys())
                .await?;
        }
        // A capability past the ordinary set is granted only on nodes that allow it: their
        // label joins the service's constraints (see `strata_core::capability`).
        for item in &mut request.services {
            let required = strata_core::capability::required_labels(&item.spec);
            item.spec.constraints.extend(required);
        }
        let demands: Vec<strata_sched::quota::ServiceDemand> = request
            .services
            .iter()
            .map(|item| strata_sched::quota::ServiceDemand {
                service: item.spec.name.clone(),
                instances: crate::quota::most_instances(
                    item.spec.scale.replicas,
                    item.spec.scale.autoscale.as_ref(),
                ),
                per_instance: item.spec.resources,
            })
            .collect();
        self.check_quota(env, &demands).await?;
        let env_key = keys::env(env);
        if self.store.get(&env_key).await?.is_none() {
            let record = Environment {
                name: env.clone(),
                created_at: now_millis(),
                default_policy: CallPolicy::default(),
                quota: None,
                protected: false,
            };
            self.store
                .txn(Txn::new().when(&env_key, 0).put(&env_key, encode(&record)))
                .await?;
        }
        // Services are independent: their transactions go together (sharing the store's disk
        // syncs), answered in the request's order.
        let services: Vec<DeployedService> = {
            use futures::StreamExt;
            let deploys: Vec<_> = request
                .services
                .into_iter()
                .map(|item| self.deploy_one(env, item, actor, origin))
                .collect();
            let results: Vec<Result<DeployedService, ControlError>> =
                futures::stream::iter(deploys).buffered(16).collect().await;
            results.into_iter().collect::<Result<_, _>>()?
        };
        self.kick.notify_one();
        Ok(DeployResponse {
            env: env.clone(),
            services,
        })
    }

    /// Refuses a route host another service serves, or that is another service's platform
    /// name (see [`super::hosts`]).
    async fn check_route_hosts(
        &self,
        env: &EnvName,
        services: &[DeployService],
    ) -> Result<(), ControlError> {
        self.reflector_caught_up().await?;
        let mut owners: BTreeMap<String, super::hosts::Owner> = BTreeMap::new();
        {
            let state = self.reflector.read();
            for service in state.services() {
                let service = &service.value;
                let Some(release) =
                    state.release(&service.env, &service.name, service.desired_release)
                else {
                    continue;
                };
                for host in &release.spec.route.hosts {
                    owners.insert(host.clone(), (service.env.clone(), service.name.clone()));
                }
            }
        }
        // This deploy's services take theirs over (a host may move between them); two of
        // them naming one host is refused below.
        for item in services {
            let claimant = (env.clone(), item.spec.name.clone());
            owners.retain(|_, owner| *owner != claimant);
        }
        for item in services {
            let claimant = (env.clone(), item.spec.name.clone());
            for host in &item.spec.route.hosts {
                if let Some((message, hint)) = super::hosts::host_refusal(&claimant, host, &owners)
                {
                    return Err(ControlError::bad_request(message, Some(hint)));
                }
                owners.insert(host.clone(), claimant.clone());
            }
        }
        Ok(())
    }

    pub(super) async fn validate(&self, item: &DeployService) -> Result<(), ControlError> {
        let spec = &item.spec;
        // The spec arrived as JSON, whatever client sent it: checked as the parser checks a
        // spec file.
        strata_core::spec::check_received(spec).map_err(|refused| {
            ControlError::bad_request(refused.to_string(), Some(refused.hint))
        })?;
        match spec.driver {
            DriverKind::Wasm => self.validate_wasm(item).await?,
            DriverKind::Container => self.validate_image(item).await?,
            DriverKind::Exec => {}
        }
        match (&spec.artifact, &item.artifact_digest) {
            (Some(path), None) => return Err(ControlError::bad_request(
                format!("service `{}`: artifact `{path}` has no digest", spec.name),
                Some(
                    "upload it to /v1/blobs/DIGEST and send its digest (strata deploy does both)"
                        .to_string(),
                ),
            )),
            (_, Some(digest)) => {
                if !self.artifact_known(digest).await? {
                    return Err(ControlError::bad_request(
                        format!(
                            "service `{}`: artifact {digest} was never uploaded",
                            spec.name
                        ),
                        Some(format!("PUT its bytes to /v1/blobs/{digest} first")),
                    ));
                }
            }
            (None, None) if spec.command.is_empty() => {
                return Err(ControlError::bad_request(
                    format!(
                        "service `{}` has neither an artifact nor a command",
                        spec.name
                    ),
                    Some("set `artifact` (a file to upload) or `command`".to_string()),
                ))
            }
            (None, None) => {}
        }
        Ok(())
    }

    /// A wasm service's artifact must be a `wasi:http/proxy` component; anything else fails
    /// the deploy with what it is and how to fix it, before any release is made.
    /// A container service's artifact must be an image archive (OCI image layout or docker
    /// save); anything else fails the deploy with what it is, before any release is made.
    pub(super) async fn validate_image(&self, item: &DeployService) -> Result<(), ControlError> {
        let name = &item.spec.name;
        let Some(digest) = &item.artifact_digest else {
            return Err(ControlError::bad_request(
                format!("service `{name}`: a container service needs an `artifact` (the image)"),
                Some(
                    "set artifact = \"build/app.tar\", written by `strata image save`".to_string(),
                ),
            ));
        };
        if !self.blobs.exists(digest).await? {
            self.fetch_blob_from_peers(digest).await?;
        }
        let path = self.blobs.path(digest)?;
        tokio::task::spawn_blocking(move || strata_artifact::check_archive(&path))
            .await
            .map_err(|e| ControlError::Internal(format!("checking artifact {digest}: {e}")))?
            .map_err(|error| {
                ControlError::bad_request(
                    format!(
                        "service `{name}`: artifact `{}` is not an image: {error}",
                        item.spec.artifact.as_deref().unwrap_or(digest)
                    ),
                    None,
                )
            })?;
        Ok(())
    }

    pub(super) async fn validate_wasm(&self, item: &DeployService) -> Result<(), ControlError> {
        let name = &item.spec.name;
        let Some(digest) = &item.artifact_digest else {
            return Err(ControlError::bad_request(
                format!("service `{name}`: a wasm service needs an `artifact` (the component)"),
                Some("set artifact = \"build/app.wasm\"".to_string()),
            ));
        };
        if !self.blobs.exists(digest).await? {
            // Uploaded to another server: fetch it to look at it.
            self.fetch_blob_from_peers(digest).await?;
        }
        let path = self.blobs.path(digest)?;
        let bytes = tokio::fs::read(&path).await.map_err(|error| {
            ControlError::Internal(format!("reading artifact {digest}: {error}"))
        })?;
        strata_artifact::inspect_component(&bytes).map_err(|error| {
            ControlError::bad_request(
                format!(
                    "service `{name}`: artifact `{}` is not a usable component: {error}",
                    item.spec.artifact.as_deref().unwrap_or(digest)
                ),
                None,
            )
        })?;
        Ok(())
    }

    pub(super) async fn deploy_one(
        &self,
        env: &EnvName,
        item: DeployService,
        actor: &Actor,
        origin: Option<&Origin>,
    ) -> Result<DeployedService, ControlError> {
        let name = item.spec.name.clone();
        let service_key = keys::service(env, &name);
        let values = item.spec.config_for(env);
        let values_hash = config_hash(&values);
        let spec_hash = item.spec.spec_hash(item.artifact_digest.as_deref());
        for _ in 0..CAS_ATTEMPTS {
            // Read each attempt, and compared at the write: a version set meanwhile makes
            // the attempt start over rather than pin the older one.
            let secrets = self
                .secret_versions(env, &name, item.spec.secrets.keys())
                .await?;
            let now = now_millis();
            let stored = self.stored_service(env, &name).await?;
            let (mut service, revision) = match stored.service {
                Some(found) => found,
                None => (
                    Service {
                        // A name deleted before goes on from its history's numbers.
                        latest_release: stored.numbered_before.0,
                        latest_config: stored.numbered_before.1,
                        autoscale: item.spec.scale.autoscale,
                        slo: item.spec.slo,
                        ..Service::new(env.clone(), name.clone(), item.spec.scale.replicas, now)
                    },
                    0,
                ),
            };
            let plan = plan_deploy(
                DeployCurrent {
                    service: (revision != 0).then_some(&service),
                    release: stored.release.as_ref(),
                    config: stored.latest_config.as_ref(),
                    numbered_before: stored.numbered_before,
                },
                &DeployWant {
                    spec_hash: &spec_hash,
                    config_hash: &values_hash,
                    secrets: &secrets.versions,
                    scale: &item.spec.scale,
                    slo: item.spec.slo,
                },
            );
            if plan.is_noop() {
                return Ok(DeployedService {
                    name,
                    release: service.desired_release,
                    created: false,
                    replicas: service.replicas,
                    rollout: service.rollout_release(),
                });
            }
            let mut txn = secrets.guard(Txn::new().when(&service_key, revision));
            if plan.new_config {
                let record = ConfigVersion {
                    env: env.clone(),
                    service: name.clone(),
                    version: plan.config_version,
                    values: values.clone(),
                    hash: values_hash.clone(),
                    created_at: now,
                };
                txn = txn.put(
                    keys::config(env, &name, plan.config_version),
                    encode(&record),
                );
                service.latest_config = plan.config_version;
            }
            let mut new_release = None;
            if let Some(number) = plan.new_release {
                let release = Release {
                    env: env.clone(),
                    service: name.clone(),
                    number,
                    artifact_digest: item.artifact_digest.clone(),
                    config_version: plan.config_version,
                    secrets: secrets.versions.clone(),
                    spec_hash: spec_hash.clone(),
                    // Configuration lives in its ConfigVersion only.
                    spec: item.spec.without_config(),
                    created_at: now,
                    created_by: Some(actor.to_string()),
                    promoted_from: origin.cloned(),
                };
                txn = txn.put(keys::release(env, &name, number), encode(&release));
                service.latest_release = number;
                let progressive = item
                    .spec
                    .rollout
                    .as_ref()
                    .filter(|rollout| rollout.strategy.is_progressive());
                match progressive {
                    // Brought in beside the stable release by the rollout controller (a
                    // first deploy has nothing to compare with: it starts at once).
                    Some(spec) if revision != 0 && service.desired_release != 0 => {
                        self.room_for_both_releases(&item.spec, plan.replicas)?;
                        // A rollout going on ends: this release takes its new one's place.
                        super::progressive::abort_rollout(&mut service, number, now);
                        service.rollout = Some(crate::rollouts::begin(
                            number,
                            service.desired_release,
                            spec,
                            now,
                            actor,
                        ));
                    }
                    _ => {
                        // The release it replaces is one to roll back to if it served in
                        // full.
                        if revision != 0 && self.serves_in_full(&service) {
                            service.note_served(service.desired_release);
                        }
                        let origin = match origin {
                            Some(from) => {
                                format!(" (promoted from release {} of {})", from.release, from.env)
                            }
                            None => String::new(),
                        };
                        service.make_desired(
                            number,
                            now,
                            strata_core::ReleaseEnding::Superseded,
                            format!("replaced by release {number}{origin}, deployed by {actor}"),
                        );
                        super::progressive::abort_rollout(&mut service, number, now);
                    }
                }
                new_release = Some(release);
            }
            if plan.scaled {
                service.scaled_at = now;
            }
            service.replicas = plan.replicas;
            service.autoscale = item.spec.scale.autoscale;
            service.slo = item.spec.slo;
            service.updated_at = now;
            txn = txn.put(&service_key, encode(&service));
            let mut event = deploy_event(&service, new_release.as_ref());
            event.actor = actor.clone();
            let (kind, message) = (event.kind, event.message.clone());
            // The event is written with the change it tells of, in the same transaction.
            let mut txn = self.event_log().stage(txn, event);
            if let Some(rollout) = service.rollout.as_ref().filter(|r| {
                r.is_active() && Some(r.release) == new_release.as_ref().map(|n| n.number)
            }) {
                let mut started = crate::event_log::event(
                    EventKind::RolloutStarted,
                    format!("{name}: {}", rollout.message),
                );
                started.env = Some(env.clone());
                started.service = Some(name.clone());
                started.actor = actor.clone();
                txn = self.event_log().stage(txn, started);
            }
            match self.store.txn(txn).await? {
                TxnOutcome::Committed(_) => {
                    tracing::info!(%kind, service = %name, "{message}");
                    return Ok(DeployedService {
                        name,
                        release: service.desired_release,
                        created: new_release.is_some(),
                        replicas: service.replicas,
                        rollout: service.rollout_release(),
                    });
                }
                TxnOutcome::Conflict { .. } => continue,
            }
        }
        Err(ControlError::Conflict {
            message: format!("service `{name}` kept changing during the deploy"),
            hint: Some("another deploy of it is running; try again".to_string()),
        })
    }

    /// Deletes a service: its instances are stopped by the reconciler. Its releases and
    /// configuration versions stay, as its history (`strata releases`): a later deploy of the
    /// name continues their numbering.
    pub async fn delete_service(
        &self,
        env: &EnvName,
        name: &ServiceName,
        actor: &Actor,
    ) -> Result<(), ControlError> {
        let key = keys::service(env, name);
        if !self.store.delete(&key).await? {
            return Err(self.service_not_found(env, name).await);
        }
        let mut event =
            crate::event_log::event(EventKind::ServiceDeleted, format!("{name}: deleted"));
        event.env = Some(env.clone());
        event.service = Some(name.clone());
        event.actor = actor.clone();
        self.event_log().record(event).await;
        self.kick.notify_one();
        Ok(())
    }

    /// Whether artifact `digest` is recorded as held by a server (uploaded, and no archive).
    pub(super) async fn artifact_known(&self, digest: &str) -> Result<bool, ControlError> {
        let Some(kv) = self
            .store
            .get(&format!("{}{digest}", crate::replicate::BLOBS))
            .await?
        else {
            return Ok(false);
        };
        // A forensic archive is no artifact (nodes are not given its bytes).
        let record: crate::replicate::BlobRecord = super::decode(&kv)?;
        Ok(!record.archive)
    }

    /// The newest number under `prefix` (releases or configuration versions of a service;
    /// 0: none).
    pub(super) async fn newest_number(&self, prefix: &str) -> Result<u64, ControlError> {
        Ok(self
            .store
            .list(prefix)
            .await?
            .kvs
            .iter()
            .filter_map(|kv| kv.key.strip_prefix(prefix)?.parse().ok())
            .max()
            .unwrap_or(0))
    }

    pub(crate) async fn service_not_found(
        &self,
        env: &EnvName,
        name: &ServiceName,
    ) -> ControlError {
        let names: Vec<String> = self
            .list::<Service>(&keys::services_of(env))
            .await
            .map(|services| {
                services
                    .into_iter()
                    .map(|(s, _)| s.name.to_string())
                    .collect()
            })
            .unwrap_or_default();
        let hint = if names.is_empty() {
            format!("environment `{env}` has no services; deploy one with `strata deploy FILE --env {env}`")
        } else {
            format!("services in `{env}`: {}", names.join(", "))
        };
        ControlError::not_found(
            format!("service `{name}` in environment `{env}`"),
            Some(hint),
        )
    }

    /// Sets environment `env`'s default for calls between its services (an audit event).
    pub async fn set_env_policy(
        &self,
        env: &EnvName,
        policy: CallPolicy,
        actor: &Actor,
    ) -> Result<Environment, ControlError> {
        self.update_environment(env, actor, EventKind::EnvPolicy, |record| {
            let before = record.default_policy;
            record.default_policy = policy;
            format!("environment {env}: calls between services default to {policy} (was {before})")
        })
        .await
    }

    /// Protects environment `env` (only promotion changes it; a direct deploy needs an admin)
    /// or opens it again.
    pub async fn set_env_protection(
        &self,
        env: &EnvName,
        protected: bool,
        actor: &Actor,
    ) -> Result<Environment, ControlError> {
        self.update_environment(env, actor, EventKind::EnvProtection, |record| {
            record.protected = protected;
            match protected {
                true => format!("environment {env}: protected; only promotion changes it"),
                false => format!("environment {env}: no longer protected"),
            }
        })
        .await
    }

    /// Whether environment `env` is protected.
    pub async fn env_protected(&self, env: &EnvName) -> Result<bool, ControlError> {
        Ok(self
            .get::<Environment>(&keys::env(env))
            .await?
            .is_some_and(|(record, _)| record.protected))
    }

    /// Changes environment `env`'s record (made if it does not exist) with `change`, which
    /// returns the message of the `kind` event recorded once the change is written
    /// (compare-and-swap on the record's revision).
    pub(crate) async fn update_environment(
        &self,
        env: &EnvName,
        actor: &Actor,
        kind: EventKind,
        change: impl Fn(&mut Environment) -> String,
    ) -> Result<Environment, ControlError> {
        let key = keys::env(env);
        let (record, message) = self
            .update_cas(
                &key,
                &format!("environment `{env}`"),
                Writer::Api,
                |found: Option<Environment>| {
                    let mut record = found.unwrap_or_else(|| Environment {
                        name: env.clone(),
                        created_at: now_millis(),
                        default_policy: CallPolicy::default(),
                        quota: None,
                        protected: false,
                    });
                    let message = change(&mut record);
                    Ok(Change::Write(record.clone(), (record, message)))
                },
            )
            .await?;
        self.event_log()
            .record(Event {
                env: Some(env.clone()),
                actor: actor.clone(),
                ..crate::event_log::event(kind, message)
            })
            .await;
        Ok(record)
    }

    /// Rewrites releases stored before configuration was kept apart, without their config
    /// values (once, at a server's start; each write is guarded by the record's revision, so
    /// servers starting together agree). Returns how many it rewrote.
    pub async fn strip_config_from_releases(&self) -> Result<usize, ControlError> {
        let mut rewritten = 0;
        for (release, revision) in self.list::<Release>(keys::RELEASES).await? {
            if release.spec.config.is_empty() && release.spec.env_config.is_empty() {
                continue;
            }
            let key = keys::release(&release.env, &release.service, release.number);
            let stripped = Release {
                spec: release.spec.without_config(),
                ..release
            };
            let txn = Txn::new().when(&key, revision).put(&key, encode(&stripped));
            if self.store.txn(txn).await?.is_committed() {
                rewritten += 1;
            }
        }
        Ok(rewritten)
    }
}

/// What a deploy changed of `service`, as an event: a new release, or only its scale.
fn deploy_event(service: &Service, new_release: Option<&Release>) -> strata_core::Event {
    let name = &service.name;
    let mut event = match new_release {
        Some(release) => crate::event_log::event(
            EventKind::ReleaseCreated,
            format!(
                "{name}: release {} ({}, config v{}), {} replica(s)",
                release.number,
                release
                    .artifact_digest
                    .as_deref()
                    .map(short_digest)
                    .unwrap_or_else(|| "host command".to_string()),
                release.config_version,
                service.replicas
            ),
        ),
        None => crate::event_log::event(
            EventKind::ServiceScaled,
            match &service.autoscale {
                Some(bounds) => format!(
                    "{name}: {} replica(s), autoscaled {}..{} at {} in flight per instance",
                    service.replicas, bounds.min, bounds.max, bounds.target_concurrency
                ),
                None => format!("{name}: {} replica(s)", service.replicas),
            },
        ),
    };
    event.env = Some(service.env.clone());
    event.service = Some(name.clone());
    event
}
