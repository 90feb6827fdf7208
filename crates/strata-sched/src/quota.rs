//! Environment quotas: whether the services of an environment, as a deploy or a scale change
//! would leave them, fit the environment's quota. Pure: the caller passes every service's
//! demand.
//!
//! A service counts for the most instances it may run: its count, or its autoscaling maximum
//! when it autoscales (so the autoscaler can never take an environment past its quota), each
//! with its `resources` (CPU and memory).

use strata_core::{Quota, Resources};

/// What one service may use at most.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceDemand {
    pub service: strata_core::ServiceName,
    pub instances: u32,
    pub per_instance: Resources,
}

/// A quota a set of services would exceed: which limit, what they would use, and who uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaExceeded {
    /// `instances`, `memory` or `cpu`.
    pub limit: &'static str,
    pub allowed: u64,
    pub wanted: u64,
    /// Each service's share, largest first.
    pub by_service: Vec<(strata_core::ServiceName, u64)>,
}

impl QuotaExceeded {
    /// A value of this limit as a person writes it.
    pub fn show(&self, value: u64) -> String {
        match self.limit {
            "memory" => format!("{}Mi", value.div_ceil(1 << 20)),
            "cpu" => format!("{}", value as f64 / 1000.0),
            _ => value.to_string(),
        }
    }
}

/// What a service uses of one limit.
type Usage = fn(&ServiceDemand) -> u64;

/// Checks `demands` (every service of the environment) against `quota`.
pub fn check(quota: &Quota, demands: &[ServiceDemand]) -> Result<(), QuotaExceeded> {
    let limits: [(&'static str, Option<u64>, Usage); 3] = [
        ("instances", quota.instances.map(u64::from), |d| {
            u64::from(d.instances)
        }),
        ("memory", quota.memory_bytes, |d| {
            u64::from(d.instances).saturating_mul(d.per_instance.memory_bytes)
        }),
        ("cpu", quota.cpu_millis, |d| {
            u64::from(d.instances).saturating_mul(d.per_instance.cpu_millis)
        }),
    ];
    for (limit, allowed, usage) in limits {
        let Some(allowed) = allowed else { continue };
        let mut by_service: Vec<(strata_core::ServiceName, u64)> = demands
            .iter()
            .map(|d| (d.service.clone(), usage(d)))
            .filter(|(_, used)| *used > 0)
            .collect();
        let wanted = by_service
            .iter()
            .fold(0u64, |sum, (_, u)| sum.saturating_add(*u));
        if wanted > allowed {
            by_service.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            return Err(QuotaExceeded {
                limit,
                allowed,
                wanted,
                by_service,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demand(
        service: &'static str,
        instances: u32,
        cpu_millis: u64,
        memory_mib: u64,
    ) -> ServiceDemand {
        ServiceDemand {
            service: strata_core::ServiceName::from_static(service),
            instances,
            per_instance: Resources {
                cpu_millis,
                memory_bytes: memory_mib << 20,
            },
        }
    }

    /// A case: its name, the quota, the demands, and the limit exceeded with what is wanted.
    type Case = (
        &'static str,
        Quota,
        Vec<ServiceDemand>,
        Option<(&'static str, u64)>,
    );

    #[test]
    fn quota_table() {
        let quota = Quota {
            instances: Some(6),
            memory_bytes: Some(1 << 30),
            cpu_millis: Some(2000),
        };
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            ("nothing fits in anything", quota, vec![], None),
            ("within every limit", quota, vec![demand("a", 2, 500, 256), demand("b", 4, 100, 64)], None),
            ("exactly at the limits", quota, vec![demand("a", 4, 500, 256)], None),
            ("one instance too many", quota, vec![demand("a", 4, 100, 64), demand("b", 3, 100, 64)], Some(("instances", 7))),
            ("memory over", quota, vec![demand("a", 3, 100, 512)], Some(("memory", 1536 << 20))),
            ("cpu over", quota, vec![demand("a", 5, 500, 64)], Some(("cpu", 2500))),
            ("no quota, anything goes", Quota::default(), vec![demand("a", 1000, 4000, 4096)], None),
            ("only instances limited", Quota { instances: Some(2), ..Quota::default() }, vec![demand("a", 2, 9000, 9000)], None),
        ];
        for (name, quota, demands, expected) in cases {
            let got = check(&quota, &demands).err().map(|e| (e.limit, e.wanted));
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn the_refusal_names_the_biggest_users_first() {
        let quota = Quota {
            instances: Some(3),
            ..Quota::default()
        };
        let error = check(&quota, &[demand("small", 1, 0, 0), demand("big", 3, 0, 0)]).unwrap_err();
        assert_eq!(
            error.by_service,
            vec![
                (strata_core::ServiceName::from_static("big"), 3),
                (strata_core::ServiceName::from_static("small"), 1)
            ]
        );
        assert_eq!(error.allowed, 3);
        let memory = QuotaExceeded {
            limit: "memory",
            allowed: 0,
            wanted: 0,
            by_service: vec![],
        };
        assert_eq!(memory.show(64 << 20), "64Mi");
    }
}
