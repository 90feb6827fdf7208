//! What the API reads: environments, services with their instances and status, releases,
//! events, nodes and the routing table.

use super::*;
use strata_core::spec::{PortSpec, Protocol};
use strata_core::RolloutPhase;

impl ControlPlane {
    pub async fn environments(&self) -> Result<Vec<Environment>, ControlError> {
        Ok(self
            .list(keys::ENVS)
            .await?
            .into_iter()
            .map(|(e, _)| e)
            .collect())
    }

    /// Every instance with its last report, as of every write committed when asked.
    pub async fn instance_views(&self) -> Result<Vec<InstanceView>, ControlError> {
        self.reflector_caught_up().await?;
        Ok(self.reflector.read().views())
    }

    /// Whether `service`'s desired release serves in full now: as many of its instances
    /// available (healthy past `min_ready`, on live nodes) as it wants, and at least one.
    pub(crate) fn serves_in_full(&self, service: &Service) -> bool {
        let state = self.reflector.read();
        let Some(release) = state.release(&service.env, &service.name, service.desired_release)
        else {
            return false;
        };
        let (now, min_ready_ms) = (self.now(), release.spec.min_ready_ms);
        let key = (service.env.clone(), service.name.clone());
        let available = state
            .instances_of(&key)
            .iter()
            .filter(|r| r.instance.release == service.desired_release)
            .filter(|r| r.is_available(now, min_ready_ms))
            .filter(|r| !state.node_lost(&r.instance.node))
            .count();
        service.replicas > 0 && available >= service.replicas as usize
    }

    pub async fn service_status(
        &self,
        env: &EnvName,
        name: &ServiceName,
    ) -> Result<ServiceStatus, ControlError> {
        let Some((service, _)) = self.get::<Service>(&keys::service(env, name)).await? else {
            return Err(self.service_not_found(env, name).await);
        };
        let views = self.instance_views().await?;
        self.status_of(service, &views).await
    }

    pub(super) async fn status_of(
        &self,
        service: Service,
        views: &[InstanceView],
    ) -> Result<ServiceStatus, ControlError> {
        let release: Option<Release> = self
            .get(&keys::release(
                &service.env,
                &service.name,
                service.desired_release,
            ))
            .await?
            .map(|(r, _)| without_config(r));
        let instances: Vec<InstanceView> = views
            .iter()
            .filter(|v| v.instance.env == service.env && v.instance.service == service.name)
            .cloned()
            .collect();
        let min_ready_ms = release
            .as_ref()
            .map_or(strata_core::spec::DEFAULT_MIN_READY_MS, |r| {
                r.spec.min_ready_ms
            });
        let now = self.now();
        // An instance on a lost node serves no one, whatever it last reported (its record
        // is marked stopped just after its replacement is placed).
        let available = {
            let state = self.reflector.read();
            instances
                .iter()
                .filter(|v| v.instance.release == service.desired_release)
                .filter(|v| v.is_available(now, min_ready_ms))
                .filter(|v| !state.node_lost(&v.instance.node))
                .count() as u32
        };
        let port = self
            .config
            .ingress_port
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        let mut hosts = vec![default_host(&service.name, &service.env)];
        if let Some(release) = &release {
            if !release.spec.route.public {
                hosts.clear();
            } else {
                hosts.extend(release.spec.route.hosts.iter().cloned());
            }
        }
        let hosts = hosts
            .into_iter()
            .map(|h| format!("http://{h}{port}/"))
            .collect();
        Ok(ServiceStatus {
            service,
            release,
            instances,
            hosts,
            available,
        })
    }

    pub async fn services(
        &self,
        env: Option<&EnvName>,
    ) -> Result<Vec<ServiceStatus>, ControlError> {
        let prefix = match env {
            Some(env) => keys::services_of(env),
            None => keys::SERVICES.to_string(),
        };
        let services: Vec<(Service, u64)> = self.list(&prefix).await?;
        let views = self.instance_views().await?;
        let mut out = Vec::new();
        for (service, _) in services {
            out.push(self.status_of(service, &views).await?);
        }
        Ok(out)
    }

    pub async fn releases(
        &self,
        env: &EnvName,
        name: &ServiceName,
    ) -> Result<Vec<Release>, ControlError> {
        // A deleted service's releases stay: its history, and the numbers a later deploy of
        // the name continues from.
        let releases: Vec<Release> = self
            .list(&keys::releases_of(env, name))
            .await?
            .into_iter()
            .map(|(r, _)| without_config(r))
            .collect();
        if releases.is_empty() && self.store.get(&keys::service(env, name)).await?.is_none() {
            return Err(self.service_not_found(env, name).await);
        }
        Ok(releases)
    }

    pub async fn events(
        &self,
        service: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Event>, ControlError> {
        let events: Vec<Event> = self
            .list::<Event>(keys::EVENTS)
            .await?
            .into_iter()
            .map(|(e, _)| e)
            .filter(|e| service.is_none() || e.service.as_deref() == service)
            .collect();
        let skip = events.len().saturating_sub(limit);
        Ok(events.into_iter().skip(skip).collect())
    }

    pub async fn nodes(&self) -> Result<Vec<Node>, ControlError> {
        Ok(self
            .list(keys::NODES)
            .await?
            .into_iter()
            .map(|(n, _)| n)
            .collect())
    }

    /// The routing table of every node's ingress and mesh proxy: every service's hosts,
    /// healthy endpoints, whether the ingress serves it, and who may call it.
    pub async fn routes(&self) -> Result<RouteTable, ControlError> {
        let revision = self.store.revision().await?;
        let policies: BTreeMap<EnvName, CallPolicy> = self
            .environments()
            .await?
            .into_iter()
            .map(|env| (env.name, env.default_policy))
            .collect();
        let services = self.services(None).await?;
        let nodes = self.nodes().await?;
        let revoked: std::collections::BTreeSet<String> = self
            .reflector
            .read()
            .revoked_nodes()
            .map(|r| r.name.clone())
            .collect();
        // A revoked node (decommissioned; or revoked unreachable, and perhaps still running)
        // serves no one and is no one's peer from the moment it is revoked.
        let live_nodes: std::collections::BTreeSet<NodeName> = nodes
            .iter()
            .filter(|node| node.state != NodeState::Down && !revoked.contains(node.name.as_str()))
            .map(|node| node.name.clone())
            .collect();
        let peers: BTreeMap<String, String> = nodes
            .into_iter()
            .filter(|node| !revoked.contains(node.name.as_str()))
            .filter_map(|node| Some((node.name.to_string(), node.mesh_addr?)))
            .collect();
        let routes = services
            .into_iter()
            .filter_map(|status| {
                let release = status.release?;
                let mut hosts = vec![default_host(&status.service.name, &status.service.env)];
                hosts.extend(release.spec.route.hosts.iter().cloned());
                let endpoint_nodes: BTreeMap<String, String> = status
                    .instances
                    .iter()
                    .filter(|v| v.is_routable() && live_nodes.contains(&v.instance.node))
                    .filter_map(|v| {
                        let address = v.status.as_ref()?.address.clone()?;
                        Some((address, v.instance.node.to_string()))
                    })
                    .collect();
                let endpoints = endpoint_nodes.keys().cloned().collect();
                // A progressive rollout's new release gets its share of the requests; once
                // it ended, the losing release gets none at once, while its instances are
                // still being stopped.
                let split = status.service.rollout.as_ref().and_then(|rollout| {
                    let routed_of = |release: u64| -> Vec<String> {
                        status
                            .instances
                            .iter()
                            .filter(|v| v.instance.release == release)
                            .filter_map(|v| v.status.as_ref()?.address.clone())
                            .filter(|address| endpoint_nodes.contains_key(address))
                            .collect()
                    };
                    let weight = match rollout.phase {
                        _ if rollout.is_active() => rollout.weight,
                        RolloutPhase::Succeeded if !routed_of(rollout.stable).is_empty() => 100,
                        RolloutPhase::RolledBack | RolloutPhase::Aborted
                            if !routed_of(rollout.release).is_empty() =>
                        {
                            0
                        }
                        _ => return None,
                    };
                    Some(strata_core::api::TrafficSplit {
                        release: rollout.release,
                        stable: rollout.stable,
                        weight,
                        endpoints: routed_of(rollout.release),
                    })
                });
                // Wanted, or being stopped and not yet ended (an instance draining its last
                // requests may still call others); never a quarantined one (its node's word
                // for it is not taken).
                let running_on = status
                    .instances
                    .iter()
                    .filter(|v| {
                        v.instance.desired == DesiredState::Running || !v.state().is_terminal()
                    })
                    .filter(|v| v.instance.quarantine.is_none())
                    .filter(|v| live_nodes.contains(&v.instance.node))
                    .map(|v| v.instance.node.to_string())
                    .collect();
                // Being stopped on a live node: its requests in flight finish there (not a
                // quarantined one's: it is out of routing at once).
                let draining = status
                    .instances
                    .iter()
                    .filter(|v| v.instance.desired == DesiredState::Stopped)
                    .filter(|v| v.instance.quarantine.is_none())
                    .filter(|v| {
                        matches!(v.state(), InstanceState::Running | InstanceState::Stopping)
                    })
                    .filter(|v| live_nodes.contains(&v.instance.node))
                    .filter_map(|v| v.status.as_ref()?.address.clone())
                    .collect();
                let env_policy = policies
                    .get(&status.service.env)
                    .copied()
                    .unwrap_or_default();
                let (allow_from, policy_rule) = call_policy(
                    &status.service.name,
                    &status.service.env,
                    release
                        .spec
                        .mesh
                        .as_ref()
                        .and_then(|m| m.allow_from.as_ref()),
                    env_policy,
                );
                Some(Route {
                    env: status.service.env,
                    service: status.service.name,
                    hosts,
                    endpoints,
                    desired: status.service.replicas,
                    public: release.spec.route.public,
                    allow_from,
                    policy_rule,
                    limits: (&release.spec.mesh_settings()).into(),
                    endpoint_nodes,
                    scale_from_zero: status
                        .service
                        .autoscale
                        .is_some_and(|bounds| bounds.min == 0),
                    draining,
                    running_on,
                    split,
                    tcp_port: match (release.spec.protocol, release.spec.port) {
                        (Protocol::Tcp, PortSpec::Fixed(port)) => Some(port),
                        _ => None,
                    },
                })
            })
            .collect();
        Ok(RouteTable {
            revision,
            routes,
            peers,
            revoked,
        })
    }

    /// How `env/service` did against its SLO over the last hour (`None`: it has no SLO).
    pub async fn slo_report(
        &self,
        env: &EnvName,
        service: &ServiceName,
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
        let from = self.now().saturating_sub(crate::metrics::TRAFFIC_KEPT_MS);
        let traffic = self.traffic.since(env, service, from);
        Ok(Some(crate::metrics::slo_report(&slo, &traffic)))
    }
}

/// A release as reads show it: never with configuration values (releases made before
/// configuration was kept apart still carry them in the store).
fn without_config(release: Release) -> Release {
    Release {
        spec: release.spec.without_config(),
        ..release
    }
}
