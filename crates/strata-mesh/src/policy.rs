//! Who may call whom: the decision every node's proxy takes before a call between services
//! leaves it. Pure: the caller's service and the callee's route (its `allow_from`, resolved by
//! the control plane from the service's `[mesh] allow_from` or its environment's default).

use strata_core::api::Route;

/// Whether `caller` (a service of the callee's environment) may call the service of `route`.
/// `Err` carries the rule that forbids it, for the 403 body and the audit event.
pub fn decide(caller: &str, route: &Route) -> Result<(), String> {
    match &route.allow_from {
        None => Ok(()),
        Some(allowed) if allowed.iter().any(|a| a == "*" || a == caller) => Ok(()),
        Some(_) => Err(route.policy_rule.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(allow_from: Option<&[&str]>) -> Route {
        Route {
            env: strata_core::EnvName::from_static("prod"),
            service: strata_core::ServiceName::from_static("db"),
            hosts: vec!["db.prod.localhost".into()],
            endpoints: vec![],
            desired: 1,
            public: false,
            allow_from: allow_from.map(|list| list.iter().map(|s| s.to_string()).collect()),
            policy_rule: "the rule".into(),
            limits: Default::default(),
            endpoint_nodes: Default::default(),
            scale_from_zero: false,
            tcp_port: None,
            draining: Vec::new(),
            running_on: Default::default(),
            split: None,
        }
    }

    #[test]
    fn decisions() {
        let table: [(&str, Option<&[&str]>, bool); 8] = [
            // No allow_from and an environment that allows: anyone.
            ("web", None, true),
            // Named callers only.
            ("api", Some(&["api", "jobs"]), true),
            ("jobs", Some(&["api", "jobs"]), true),
            ("web", Some(&["api", "jobs"]), false),
            // A wildcard lets everyone in.
            ("web", Some(&["*"]), true),
            // Nobody (an explicit empty list, or an environment that denies by default).
            ("api", Some(&[]), false),
            // Names are exact: no prefixes, no case folding.
            ("ap", Some(&["api"]), false),
            ("API", Some(&["api"]), false),
        ];
        for (caller, allow_from, allowed) in table {
            let decision = decide(caller, &route(allow_from));
            assert_eq!(decision.is_ok(), allowed, "{caller} -> {allow_from:?}");
            if let Err(rule) = decision {
                assert_eq!(rule, "the rule");
            }
        }
    }
}
