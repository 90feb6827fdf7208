//! Quarantining one instance (`strata instance quarantine`): it leaves routing at once and
//! is no longer counted by its service (which gets a replacement), while its node freezes
//! it, archives it (its writable layer or working directory, its log, its processes, their
//! connections and memory maps) and only then stops it.

use strata_core::archive::ArchiveRecord;
use strata_core::decommission::Quarantine;
use strata_core::{keys, Actor, DesiredState, EventKind, Instance, InstanceId, NodeName};

use super::ControlPlane;
use crate::cas::{Change, Writer};
use crate::ControlError;

impl ControlPlane {
    /// Quarantines instance `id`: asked again, the instance as it stands.
    pub async fn quarantine_instance(
        &self,
        id: &InstanceId,
        actor: &Actor,
    ) -> Result<Instance, ControlError> {
        let now = self.now();
        let changed = self
            .update_cas(
                &keys::instance(id),
                &format!("instance `{id}`"),
                Writer::Api,
                |found: Option<Instance>| {
                    let Some(mut instance) = found else {
                        return Err(ControlError::not_found(
                            format!("instance `{id}`"),
                            Some("`strata status SERVICE` lists a service's instances".to_string()),
                        ));
                    };
                    if instance.quarantine.is_some() {
                        return Ok(Change::Keep((instance, false)));
                    }
                    if instance.desired == DesiredState::Stopped {
                        return Err(ControlError::Conflict {
                            message: format!("instance `{id}` is already being stopped"),
                            hint: Some("only a running instance can be quarantined".to_string()),
                        });
                    }
                    instance.desired = DesiredState::Stopped;
                    instance.stop_requested_at = Some(now);
                    instance.quarantine = Some(Quarantine {
                        requested_by: actor.to_string(),
                        requested_at: now,
                        archive: None,
                    });
                    Ok(Change::Write(instance.clone(), (instance, true)))
                },
            )
            .await?;
        let (instance, changed) = changed;
        if changed {
            let mut event = crate::event_log::event(
                EventKind::InstanceQuarantined,
                format!(
                    "instance {id} quarantined: out of routing; node {} freezes and archives it, then stops it; the service gets a replacement",
                    instance.node
                ),
            );
            event.env = Some(instance.env.clone());
            event.service = Some(instance.service.clone());
            event.instance = Some(instance.id.clone());
            event.node = Some(instance.node.clone());
            event.actor = actor.clone();
            self.event_log().record(event).await;
            self.kick.notify_one();
        }
        Ok(instance)
    }

    /// A quarantined instance's archive is kept: said in its record, so its node stops it
    /// and `strata instance quarantine` can name the archive.
    pub(super) async fn archive_kept_for_quarantine(
        &self,
        node: &NodeName,
        record: &ArchiveRecord,
    ) -> Result<(), ControlError> {
        let Some(id) = record.subject.strip_prefix("instance:") else {
            return Ok(());
        };
        let Ok(id) = InstanceId::new(id.to_string()) else {
            return Ok(());
        };
        let noted = self
            .update_cas(
                &keys::instance(&id),
                &format!("instance `{id}`"),
                Writer::Api,
                |found: Option<Instance>| {
                    let Some(mut instance) = found else {
                        return Ok(Change::Keep(None));
                    };
                    let Some(quarantine) = instance.quarantine.as_mut() else {
                        return Ok(Change::Keep(None));
                    };
                    if instance.node != node || quarantine.archive.is_some() {
                        return Ok(Change::Keep(None));
                    }
                    quarantine.archive = Some(record.id.clone());
                    Ok(Change::Write(instance.clone(), Some(instance)))
                },
            )
            .await?;
        if let Some(instance) = noted {
            let mut event = crate::event_log::event(
                EventKind::InstanceQuarantined,
                format!(
                    "instance {id}: archive {} kept ({} files); its node stops it",
                    record.id, record.files
                ),
            );
            event.env = Some(instance.env.clone());
            event.service = Some(instance.service.clone());
            event.instance = Some(instance.id.clone());
            event.node = Some(node.clone());
            event.actor = Actor::Node(node.to_string());
            self.event_log().record(event).await;
        }
        Ok(())
    }
}
