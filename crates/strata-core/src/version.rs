//! Which agent versions a control plane takes: the version skew rule. An agent is never newer
//! than the servers (upgrade the servers first), and at most two minor versions older (older
//! ones are upgraded before the servers move further), as Kubernetes holds its kubelets.

/// This build's version (`strata --version`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How many minor versions an agent may lag behind the servers.
pub const MINORS_BEHIND: u64 = 2;

/// Why a server of version `server` refuses an agent of version `agent`, or `None` when it
/// takes it. A version that is not `MAJOR.MINOR[.PATCH...]` is refused. Pure.
pub fn skew_refusal(agent: &str, server: &str) -> Option<String> {
    let (Some(a), Some(s)) = (major_minor(agent), major_minor(server)) else {
        return Some(format!(
            "agent version `{agent}` cannot be compared with the control plane's {server}"
        ));
    };
    if a > s {
        return Some(format!(
            "this agent ({agent}) is newer than the control plane ({server}): upgrade the servers first, then the agents"
        ));
    }
    if a.0 < s.0 || s.1 - a.1 > MINORS_BEHIND {
        return Some(format!(
            "this agent ({agent}) is too old for the control plane ({server}): an agent may be at most {MINORS_BEHIND} minor versions behind; upgrade it"
        ));
    }
    None
}

fn major_minor(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.trim().split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_is_never_newer_and_at_most_two_minors_behind() {
        let table = [
            // (agent, server, taken)
            ("0.1.0", "0.1.0", true),
            ("0.1.7", "0.1.2", true), // patches differ either way
            ("0.1.0", "0.3.4", true),
            ("0.1.0", "0.4.0", false), // three minors behind
            ("0.2.0", "0.1.9", false), // newer
            ("1.0.0", "0.9.0", false),
            ("0.9.0", "1.0.0", false), // an older major
            ("1.2.0-rc.1", "1.2.0", true),
            ("banana", "1.2.0", false),
            ("1", "1.2.0", false),
        ];
        for (agent, server, taken) in table {
            let refusal = skew_refusal(agent, server);
            assert_eq!(refusal.is_none(), taken, "{agent} on {server}: {refusal:?}");
        }
        assert!(skew_refusal("0.2.0", "0.1.0")
            .unwrap()
            .contains("upgrade the servers first"));
    }
}
