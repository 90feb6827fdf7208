//! Who may claim a route host. A host routes to one service: a deploy that names a host
//! another service serves (in any environment), or a host of the form the platform gives
//! every service (`SERVICE.ENV.localhost`) for another service, is refused with who owns it.
//! Otherwise a service in one environment could take over another's traffic
//! (`route.hosts = ["backend.dev.localhost"]` deployed to `zz`).

use std::collections::BTreeMap;

use strata_core::api::default_host;
use strata_core::{EnvName, ServiceName};

/// A service, by environment and name.
pub type Owner = (EnvName, ServiceName);

/// Why service `claimant` may not route `host`, with a hint; `None` if it may. `owners` says
/// which service serves each host claimed so far (the desired releases of every service, and
/// the services of the same deploy before this one).
pub fn host_refusal(
    claimant: &Owner,
    host: &str,
    owners: &BTreeMap<String, Owner>,
) -> Option<(String, String)> {
    let (env, name) = claimant;
    if host == default_host(name, env) {
        return None;
    }
    if let Some((service, service_env)) = platform_name(host) {
        return Some((
            format!(
                "service `{name}`: route host `{host}` is the name of service `{service}` in environment `{service_env}`"
            ),
            format!(
                "every service is served at SERVICE.ENV.localhost already (this one at `{}`); route a host of your own, e.g. `{name}.example.com`",
                default_host(name, env)
            ),
        ));
    }
    match owners.get(host) {
        Some(owner) if owner != claimant => Some((
            format!(
                "service `{name}`: route host `{host}` is served by service `{}` in environment `{}`",
                owner.1, owner.0
            ),
            format!(
                "a host routes to one service: remove it from `{}`'s route.hosts in `{}` first, or choose another",
                owner.1, owner.0
            ),
        )),
        _ => None,
    }
}

/// `(service, env)` if `host` has the form of a service's platform name.
fn platform_name(host: &str) -> Option<(&str, &str)> {
    let rest = host.strip_suffix(".localhost")?;
    let (service, env) = rest.split_once('.')?;
    (ServiceName::new(service).is_ok() && EnvName::new(env).is_ok()).then_some((service, env))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(env: &str, name: &str) -> Owner {
        (EnvName::new(env).unwrap(), ServiceName::new(name).unwrap())
    }

    #[test]
    fn a_host_routes_to_one_service_and_platform_names_to_their_own() {
        let owners: BTreeMap<String, Owner> =
            [("shop.example.com".to_string(), owner("prod", "web"))].into();
        // (claimant, host, refused, naming)
        let table = [
            (
                owner("zz", "web"),
                "backend.dev.localhost",
                true,
                "`backend` in environment `dev`",
            ),
            (
                owner("dev", "web"),
                "web.prod.localhost",
                true,
                "`web` in environment `prod`",
            ),
            (owner("dev", "web"), "web.dev.localhost", false, ""),
            (
                owner("dev", "api"),
                "shop.example.com",
                true,
                "`web` in environment `prod`",
            ),
            (
                owner("dev", "web"),
                "shop.example.com",
                true,
                "`web` in environment `prod`",
            ),
            (owner("prod", "web"), "shop.example.com", false, ""),
            (owner("dev", "api"), "api.example.com", false, ""),
            (owner("dev", "api"), "localhost", false, ""),
            (owner("dev", "api"), "api.localhost", false, ""),
            (owner("dev", "api"), "a.b.c.localhost", false, ""),
        ];
        for (claimant, host, refused, naming) in table {
            let refusal = host_refusal(&claimant, host, &owners);
            assert_eq!(
                refusal.is_some(),
                refused,
                "{claimant:?} {host}: {refusal:?}"
            );
            if let Some((message, hint)) = refusal {
                assert!(message.contains(naming), "{message}");
                assert!(!hint.is_empty());
            }
        }
    }
}
