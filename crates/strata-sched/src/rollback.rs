//! Rollback: which release a service goes back to, decided over what the control plane holds
//! of it (pure; the plane reads and writes around it).

use strata_core::Service;

/// Why a rollback cannot be made, and how to go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackRefusal {
    pub message: String,
    pub hint: String,
}

/// The release `service` rolls back to: `to` when given, else the newest release that was
/// serving in full when another replaced it and is not the one running now (as `kubectl
/// rollout undo`, two rollbacks in a row go back and forth). `existing` are the numbers of
/// the releases the store still holds.
pub fn rollback_target(
    service: &Service,
    existing: &[u64],
    to: Option<u64>,
) -> Result<u64, RollbackRefusal> {
    let name = &service.name;
    let current = service.desired_release;
    let target = match to {
        Some(number) => number,
        None => service
            .served
            .iter()
            .rev()
            .copied()
            .find(|r| *r != current && existing.contains(r))
            .ok_or_else(|| RollbackRefusal {
                message: format!(
                    "{name} has no earlier release that served in full to go back to (it runs release {current})"
                ),
                hint: format!(
                    "name one with --to N (`strata releases {name}` lists them), or deploy a fix"
                ),
            })?,
    };
    if target == current {
        return Err(RollbackRefusal {
            message: format!("{name} already runs release {target}"),
            hint: format!("`strata releases {name}` lists the others"),
        });
    }
    if !existing.contains(&target) {
        let known = match (existing.first(), existing.last()) {
            (Some(first), Some(last)) => format!("its releases are {first}..{last}"),
            _ => "it has no release".to_string(),
        };
        return Err(RollbackRefusal {
            message: format!("{name} has no release {target}; {known}"),
            hint: format!("`strata releases {name}` lists them"),
        });
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(desired: u64, served: &[u64]) -> Service {
        Service {
            env: strata_core::EnvName::from_static("dev"),
            name: strata_core::ServiceName::from_static("web"),
            desired_release: desired,
            latest_release: 5,
            latest_config: 1,
            replicas: 2,
            autoscale: None,
            slo: None,
            scaled_at: 0,
            served: served.to_vec(),
            rollout: None,
            desired_since: 0,
            ended: Vec::new(),
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn rollback_targets() {
        let all = [1, 2, 3, 4, 5];
        // (desired, served, existing, --to, target or a word of the refusal)
        type Case<'a> = (u64, &'a [u64], &'a [u64], Option<u64>, Result<u64, &'a str>);
        let table: [Case; 9] = [
            (3, &[1, 2], &all, None, Ok(2)),
            // Release 4 never served in full (replaced mid-rollout): passed over.
            (5, &[1, 2, 3], &all, None, Ok(3)),
            // Back and forth, as two rollbacks in a row.
            (2, &[1, 3], &all, None, Ok(3)),
            (3, &[1, 2, 3], &all, None, Ok(2)),
            (1, &[], &all, None, Err("no earlier release that served")),
            (3, &[1, 2], &all, Some(1), Ok(1)),
            (3, &[1, 2], &all, Some(3), Err("already runs release 3")),
            (
                3,
                &[1, 2],
                &all,
                Some(9),
                Err("has no release 9; its releases are 1..5"),
            ),
            // A served release whose record is gone (the service was deleted and made
            // again) is passed over.
            (5, &[2, 4], &[3, 4, 5], None, Ok(4)),
        ];
        for (desired, served, existing, to, want) in table {
            let got = rollback_target(&service(desired, served), existing, to);
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{desired} {served:?} {to:?}"),
                (Err(refusal), Err(word)) => {
                    assert!(refusal.message.contains(word), "{}", refusal.message);
                    assert!(refusal.hint.contains("strata") || refusal.hint.contains("--to"));
                }
                (got, want) => panic!("{desired} {served:?} {to:?}: {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn a_service_remembers_its_last_served_releases() {
        let mut s = service(1, &[]);
        for release in 1..=25 {
            s.note_served(release);
        }
        assert_eq!(s.served.len(), Service::SERVED_KEPT);
        assert_eq!(s.served.first(), Some(&6));
        s.note_served(10);
        assert_eq!(s.served.last(), Some(&10), "moved to the newest");
        assert_eq!(s.served.len(), Service::SERVED_KEPT);
    }
}
