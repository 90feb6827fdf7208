//! `protocol = "http" | "tcp"` of a `[service.NAME]`, and what a TCP service must hold to:
//! callers dial `NAME:PORT`, so it listens on a fixed `port`; the ingress serves HTTP only, so
//! it is reached through the mesh alone; a wasm component speaks wasi:http only.

use super::*;

/// What is wrong with `spec`'s protocol and the keys it depends on, if anything: the key at
/// fault, the problem and how to fix it. One rule for spec files and received specs.
pub(crate) fn protocol_problem(
    protocol: Protocol,
    driver: DriverKind,
    port: PortSpec,
    public: bool,
) -> Option<(&'static str, String, String)> {
    if protocol != Protocol::Tcp {
        return None;
    }
    if driver == DriverKind::Wasm {
        return Some((
            "protocol",
            "a `wasm` service speaks HTTP only (wasi:http), not `protocol = \"tcp\"`".into(),
            "remove `protocol`, or run the server as an `exec` or `container` service".into(),
        ));
    }
    if port == PortSpec::Auto {
        return Some((
            "port",
            "a `protocol = \"tcp\"` service needs a fixed `port`: its callers dial NAME:PORT"
                .into(),
            "add the port it listens on, like `port = 6379`".into(),
        ));
    }
    if public {
        return Some((
            "route.public",
            "a `protocol = \"tcp\"` service is reached through the mesh only: the ingress serves HTTP".into(),
            "set `route.public = false` (the default for a tcp service), or remove `protocol` for an HTTP service".into(),
        ));
    }
    None
}

impl<'s> Checker<'s> {
    pub(super) fn protocol(&mut self, path: &Path, key: &Key, item: &Item) -> Option<Protocol> {
        let (s, span) = self.string(path, key, item, "a string", "`protocol = \"tcp\"`")?;
        match s {
            "http" => Some(Protocol::Http),
            "tcp" => Some(Protocol::Tcp),
            other => {
                let known = ["http", "tcp"];
                let hint = match closest(other, &known) {
                    Some(p) => format!("did you mean `{p}`? The protocols are {}", list(&known)),
                    None if matches!(other, "redis" | "postgres" | "grpc" | "tls" | "udp") => {
                        format!(
                            "the protocols are {}: `tcp` carries any protocol over TCP ({other} included, UDP aside)",
                            list(&known)
                        )
                    }
                    None => format!("the protocols are {}", list(&known)),
                };
                self.push(
                    span,
                    Some(path.to_string()),
                    format!("unknown protocol `{other}`"),
                    Some(hint),
                );
                None
            }
        }
    }

    /// Applies the TCP rules to a parsed service: a tcp service is not public unless its
    /// route says so (which is then refused), and a problem is reported at the key at fault.
    pub(super) fn check_protocol(
        &mut self,
        service: &Path,
        table: &dyn TableLike,
        spec: &mut ServiceSpec,
    ) {
        if spec.protocol != Protocol::Tcp {
            return;
        }
        let public_given = table
            .get("route")
            .and_then(|route| route.as_table_like())
            .and_then(|route| route.get_key_value("public"));
        spec.route.public = public_given.is_some() && spec.route.public;
        if let Some((key, problem, hint)) =
            protocol_problem(spec.protocol, spec.driver, spec.port, spec.route.public)
        {
            let span = match key {
                "route.public" => public_given.and_then(|(k, i)| value_span(k, i)),
                other => table
                    .get_key_value(other)
                    .and_then(|(k, i)| value_span(k, i)),
            }
            .or_else(|| {
                table
                    .get_key_value("protocol")
                    .and_then(|(k, i)| value_span(k, i))
            });
            self.push(span, Some(format!("{service}.{key}")), problem, Some(hint));
        }
    }
}
