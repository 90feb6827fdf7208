//! The API's gate: every route but `/healthz` and `/openapi.json` passes here. One layer
//! resolves the caller's credential ([`crate::credentials`]), looks up what the route asks
//! ([`route_action`], one table), asks the pure [`strata_core::auth::authorize`], and
//! writes the audit record of every state-changing or refused call. A route the table does
//! not know is refused, and the route table test walks the OpenAPI document so none can be
//! added without a policy.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use strata_core::auth::{authorize, Action, AuditRecord, Decision, Principal};
use strata_core::keys;
use strata_store::Txn;

use crate::plane::encode;
use crate::{now_millis, ControlError, ControlPlane};

/// Routes anyone may call.
pub const PUBLIC_ROUTES: [&str; 3] = ["/healthz", "/openapi.json", "/v1/ca"];

/// Who called, as the gate found it; handlers read it to filter what they return and to
/// name the actor of events.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub from: String,
}

impl Caller {
    pub fn name(&self) -> String {
        self.principal.display_name()
    }

    /// The caller as the actor of what it does (events name it).
    pub fn actor(&self) -> strata_core::Actor {
        self.principal.actor()
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = ControlError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ControlError::Internal("the route was not authorized".into()))
    }
}

/// The header a server forwarding a node's request to the leader names the node in (with its
/// own server credential): servers vouch for the nodes they heard from.
pub const ON_BEHALF_OF: &str = "strata-on-behalf-of";

/// What a node may do with its bearer credential when the API asks nodes for their
/// certificate: fetch the credential itself, get (or renew) its certificate, say who it is.
fn credential_suffices(route: &str) -> bool {
    matches!(
        route,
        "/v1/nodes/{name}/credential" | "/v1/nodes/{name}/certificate" | "/v1/whoami"
    )
}

/// The headers to forward a request to the leader with: the caller's own credential, or, for
/// a node that authenticated by its certificate (which cannot be forwarded), this server's
/// credential vouching for the node.
pub fn forwarding_headers(
    plane: &ControlPlane,
    caller: &Caller,
    headers: &axum::http::HeaderMap,
) -> axum::http::HeaderMap {
    let mut forwarded = headers.clone();
    if let (Principal::Node { name }, None) = (
        &caller.principal,
        headers.get(axum::http::header::AUTHORIZATION),
    ) {
        let credential = plane.credentials().server_credential(plane.server_id());
        if let (Ok(auth), Ok(node)) = (
            format!("Bearer {credential}").parse(),
            axum::http::HeaderValue::from_str(name),
        ) {
            forwarded.insert(axum::http::header::AUTHORIZATION, auth);
            forwarded.insert(ON_BEHALF_OF, node);
        }
    }
    forwarded
}

/// A few words a handler adds to its call's audit record (a release, a count).
#[derive(Debug, Clone)]
pub struct AuditNote(pub String);

/// What a call to `method route` (the route's template, e.g. `/v1/envs/{env}/deploy`) asks
/// to do, and in which environment. `None`: the route has no policy, and is refused.
pub fn route_action(
    method: &Method,
    route: &str,
    params: &BTreeMap<String, String>,
) -> Option<(Action, Option<String>)> {
    let env = params.get("env").cloned();
    let node = || params.get("name").cloned().unwrap_or_default();
    let action = match (method.as_str(), route) {
        ("GET", "/metrics") => Action::ReadServerMetrics,
        ("GET", "/v1/envs") | ("GET", "/v1/services") | ("GET", "/v1/instances") => Action::Read,
        ("POST", "/v1/envs/{env}/deploy")
        | ("POST", "/v1/envs/{env}/deploy/preview")
        | ("POST", "/v1/envs/{env}/services/{service}/rollback")
        | ("POST", "/v1/envs/{env}/services/{service}/promote")
        | ("POST", "/v1/envs/{env}/services/{service}/rollout/{action}") => Action::Deploy,
        ("PUT", "/v1/envs/{env}/policy") => Action::SetPolicy,
        ("PUT", "/v1/envs/{env}/quota") => Action::SetQuota,
        ("PUT", "/v1/envs/{env}/protection") => Action::ProtectEnv,
        ("GET", "/v1/envs/{env}/services")
        | ("GET", "/v1/envs/{env}/services/{service}")
        | ("GET", "/v1/envs/{env}/services/{service}/slo")
        | ("GET", "/v1/envs/{env}/services/{service}/releases")
        | ("GET", "/v1/envs/{env}/services/{service}/rollout")
        | ("GET", "/v1/envs/{env}/services/{service}/metrics") => Action::Read,
        ("DELETE", "/v1/envs/{env}/services/{service}") => Action::Delete,
        ("PUT", "/v1/envs/{env}/services/{service}/scale") => Action::Scale,
        ("POST", "/v1/envs/{env}/services/{service}/wake") => Action::Wake,
        ("GET", "/v1/envs/{env}/services/{service}/logs") => Action::ReadLogs,
        ("PUT", "/v1/instances/{id}/status") => Action::ReportStatus,
        ("GET", "/v1/nodes") | ("GET", "/v1/leader") => Action::ReadNodes,
        ("POST", "/v1/nodes/{name}/credential") => Action::JoinNode { node: node() },
        ("POST", "/v1/nodes/{name}/register")
        | ("POST", "/v1/nodes/{name}/heartbeat")
        | ("POST", "/v1/nodes/{name}/events")
        | ("POST", "/v1/nodes/{name}/metrics")
        | ("POST", "/v1/nodes/{name}/logs")
        | ("POST", "/v1/nodes/{name}/certificate")
        | ("POST", "/v1/nodes/{name}/leave")
        | ("PUT", "/v1/nodes/{name}/status")
        | ("PUT", "/v1/nodes/{name}/archive")
        | ("POST", "/v1/nodes/{name}/decommission/progress")
        | ("GET", "/v1/nodes/{name}/history")
        | ("GET", "/v1/nodes/{name}/assignments") => Action::ActAsNode { node: node() },
        ("GET", "/v1/nodes/{name}/decommission") | ("GET", "/v1/decommissions") => {
            Action::ReadNodes
        }
        ("POST", "/v1/nodes/{name}/drain")
        | ("POST", "/v1/nodes/{name}/undrain")
        | ("DELETE", "/v1/nodes/{name}")
        | ("POST", "/v1/nodes/{name}/decommission")
        | ("POST", "/v1/instances/{id}/quarantine")
        | ("GET", "/v1/archives")
        | ("GET", "/v1/archives/{id}") => Action::ManageNodes,
        ("GET", "/v1/routes") => Action::ReadRoutes,
        ("GET", "/v1/events") | ("GET", "/v1/events/follow") => Action::ReadEvents,
        ("GET", "/v1/watch") => Action::Watch,
        ("PUT", "/v1/blobs/{digest}") => Action::UploadBlob,
        ("GET", "/v1/blobs/{digest}") | ("HEAD", "/v1/blobs/{digest}") => Action::DownloadBlob,
        ("GET", "/v1/tokens") | ("POST", "/v1/tokens") | ("DELETE", "/v1/tokens/{name}") => {
            Action::ManageTokens
        }
        ("GET", "/v1/audit") => Action::ReadAudit,
        ("POST", "/v1/backup") => Action::Backup,
        ("PUT", "/v1/envs/{env}/services/{service}/secrets/{name}")
        | ("DELETE", "/v1/envs/{env}/services/{service}/secrets/{name}") => Action::WriteSecrets,
        ("GET", "/v1/envs/{env}/services/{service}/secrets") => Action::ListSecrets,
        ("POST", "/v1/secrets/rotate-key") => Action::RotateSecretsKey,
        ("GET", "/v1/secrets/keys") => Action::CopySecretsKeys,
        ("GET", "/v1/whoami") => Action::WhoAmI,
        _ => return None,
    };
    Some((action, env))
}

/// Whether a successful call is audited: every change, except nodes' own steady reports
/// (heartbeats, traffic, events, instance status), which are many a second and change
/// nothing a person decided, and a deploy's preview, which changes nothing. Every refused
/// call is audited regardless.
pub fn audited(method: &Method, route: &str) -> bool {
    let changes =
        !matches!(*method, Method::GET | Method::HEAD) && route != "/v1/envs/{env}/deploy/preview";
    let telemetry = matches!(
        route,
        "/v1/nodes/{name}/heartbeat"
            | "/v1/nodes/{name}/events"
            | "/v1/nodes/{name}/metrics"
            | "/v1/nodes/{name}/logs"
            | "/v1/instances/{id}/status"
            | "/v1/nodes/{name}/status"
    );
    changes && !telemetry
}

/// The values of a route template's `{params}` in `path`.
pub fn path_params(route: &str, path: &str) -> BTreeMap<String, String> {
    route
        .split('/')
        .zip(path.split('/'))
        .filter_map(|(template, value)| {
            let name = template.strip_prefix('{')?.strip_suffix('}')?;
            Some((name.to_string(), value.to_string()))
        })
        .collect()
}

/// The layer (`axum::middleware::from_fn_with_state`) every API route passes through.
pub async fn gate(
    State(plane): State<Arc<ControlPlane>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(route) = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
    else {
        return next.run(request).await;
    };
    if PUBLIC_ROUTES.contains(&route.as_str()) {
        return next.run(request).await;
    }
    let method = request.method().clone();
    let params = path_params(&route, request.uri().path());
    let from = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.to_string())
        .unwrap_or_else(|| "unknown".into());
    let bearer = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.strip_prefix("Bearer ").unwrap_or(value).to_string());
    let mut audit = AuditRecord {
        seq: 0,
        at: 0,
        who: "anonymous".into(),
        from,
        route: format!("{method} {route}"),
        env: params.get("env").cloned(),
        summary: summary(&params),
        status: 0,
        denied: None,
    };
    let peer = request
        .extensions()
        .get::<strata_mesh::identity::Peer>()
        .cloned();
    let principal = match (bearer.as_deref(), peer) {
        // A verified node certificate and no other credential: that node
        // (`strata_mesh::serve::serve_tls` found it in the TLS handshake).
        (None, Some(strata_mesh::identity::Peer::Node(name))) => Principal::Node { name },
        (bearer, _) => match plane.credentials().authenticate(bearer).await {
            Ok(principal) => principal,
            Err(error) => {
                audit.who = "invalid-credential".into();
                return refuse(&plane, audit, error).await;
            }
        },
    };
    // A server forwarding a node's request vouches for the node.
    let on_behalf = request
        .headers()
        .get(ON_BEHALF_OF)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let principal = match (principal, on_behalf) {
        (Principal::Server { .. }, Some(node)) => Principal::Node { name: node },
        (principal, _) => principal,
    };
    audit.who = principal.display_name();
    // Where nodes have certificates (an HTTPS API), a node's bearer credential only gets it
    // its certificate; everything else it does by presenting that certificate.
    if plane.config().node_certificates_required
        && bearer
            .as_deref()
            .is_some_and(|b| b.starts_with(crate::credentials::NODE_PREFIX))
        && !credential_suffices(&route)
    {
        let error = ControlError::Forbidden {
            message: format!(
                "{} must present its node certificate (mutual TLS) for {method} {route}; its credential only gets it the certificate",
                audit.who
            ),
            hint: "a node's agent does this by itself once it has its certificate".into(),
        };
        return refuse(&plane, audit, error).await;
    }
    let Some((action, env)) = route_action(&method, &route, &params) else {
        let error = ControlError::Forbidden {
            message: format!("{method} {route} has no access policy"),
            hint: "this is a bug in Strata: every route must be in strata_control::guard::route_action".into(),
        };
        return refuse(&plane, audit, error).await;
    };
    // A decommissioned node's credential, certificates and name are refused for good (so
    // is joining again under its name).
    let as_node = match (&principal, &action) {
        (Principal::Node { name }, _) | (_, Action::JoinNode { node: name }) => Some(name),
        _ => None,
    };
    if let Some(revoked) = as_node.and_then(|name| plane.revocation(name)) {
        let error = ControlError::Forbidden {
            message: format!(
                "node {} was {} at {}: its credential, certificates and name are revoked",
                revoked.name,
                revoked.why,
                strata_core::utc_time(revoked.revoked_at)
            ),
            hint: "a machine joins again under a new name (`strata agent --name NEW`)".into(),
        };
        return refuse(&plane, audit, error).await;
    }
    match authorize(&principal, &action, env.as_deref()) {
        Decision::Allow => {}
        Decision::Unauthenticated { hint } => {
            let error = ControlError::Unauthorized {
                message: format!("{method} {route} needs a credential"),
                hint,
            };
            return refuse(&plane, audit, error).await;
        }
        Decision::Forbidden { reason } => {
            let hint = match action.role_needed() {
                Some(role) => format!("ask an admin for a token with role {role} or higher for this environment (`strata token create`)"),
                None => "only a node, with its own credential, may call this".into(),
            };
            let error = ControlError::Forbidden {
                message: reason,
                hint,
            };
            return refuse(&plane, audit, error).await;
        }
    }
    request.extensions_mut().insert(Caller {
        principal,
        from: audit.from.clone(),
    });
    let response = next.run(request).await;
    if audited(&method, &route) {
        audit.status = response.status().as_u16();
        if let Some(AuditNote(note)) = response.extensions().get::<AuditNote>() {
            audit.summary = if audit.summary.is_empty() {
                note.clone()
            } else {
                format!("{} {note}", audit.summary)
            };
        }
        write_audit(&plane, audit).await;
    }
    response
}

fn summary(params: &BTreeMap<String, String>) -> String {
    params
        .iter()
        .filter(|(name, _)| name.as_str() != "env")
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(" ")
}

async fn refuse(plane: &ControlPlane, mut audit: AuditRecord, error: ControlError) -> Response {
    let response = error.into_response();
    audit.status = response.status().as_u16();
    audit.denied = Some(error_message(&audit, response.status()));
    let source = audit
        .from
        .rsplit_once(':')
        .map_or(audit.from.as_str(), |(ip, _)| ip)
        .to_string();
    let key = (audit.who.clone(), source, audit.route.clone());
    if let Some(folded) = plane.refusals().admit(key, now_millis()) {
        if folded > 0 {
            audit.summary = format!(
                "{} (+{folded} like it in the {} s before)",
                audit.summary,
                REFUSAL_WINDOW_MS / 1000
            )
            .trim()
            .to_string();
        }
        write_audit(plane, audit).await;
    }
    response
}

/// Within this window, repeats of one refusal (same caller, source address and route) are
/// folded into the next record written.
pub const REFUSAL_WINDOW_MS: u64 = 10_000;

/// Refused calls are audited, but a flood of the same refusal (a scanner, a client with a
/// revoked token in a loop) must not fill the store: per (caller, source address, route) one
/// record per window; the next one says how many it stands for. Bounded memory.
#[derive(Default)]
pub struct RefusalFolder {
    /// Per refusal: when its last record was written, and how many were folded since.
    seen: std::sync::Mutex<std::collections::HashMap<RefusalKey, (u64, u64)>>,
}

/// A refusal: the caller, its source address, the route.
pub type RefusalKey = (String, String, String);

impl RefusalFolder {
    /// Kept entries past which old ones are dropped.
    const MAX_KEYS: usize = 10_000;

    /// Whether to write a record for this refusal at `now` (milliseconds), and how many
    /// refusals since the last record it stands for; `None`: folded.
    pub fn admit(&self, key: RefusalKey, now: u64) -> Option<u64> {
        let mut seen = self.seen.lock().expect("refusals lock");
        if seen.len() >= Self::MAX_KEYS {
            seen.retain(|_, (written, _)| now.saturating_sub(*written) < REFUSAL_WINDOW_MS);
            if seen.len() >= Self::MAX_KEYS {
                // Every key is fresh: a flood from many sources; keep writing, forget detail.
                seen.clear();
            }
        }
        match seen.get_mut(&key) {
            Some((written, folded)) if now.saturating_sub(*written) < REFUSAL_WINDOW_MS => {
                *folded += 1;
                None
            }
            Some((written, folded)) => {
                let before = *folded;
                *written = now;
                *folded = 0;
                Some(before)
            }
            None => {
                seen.insert(key, (now, 0));
                Some(0)
            }
        }
    }
}

fn error_message(audit: &AuditRecord, status: axum::http::StatusCode) -> String {
    match status.as_u16() {
        401 => format!("{}: no valid credential", audit.who),
        _ => format!("{}: not allowed", audit.who),
    }
}

/// Appends an audit record. Best effort like events: a failed write is logged.
async fn write_audit(plane: &ControlPlane, mut record: AuditRecord) {
    let now = now_millis();
    record.seq = now * 1000 + plane.audit_counter.fetch_add(1, Ordering::Relaxed) % 1000;
    record.at = now;
    let key = keys::audit(record.seq);
    let written = plane
        .store()
        .txn(Txn::new().when(&key, 0).put(&key, encode(&record)))
        .await;
    if let Err(error) = written {
        tracing::warn!(%error, route = %record.route, "could not write the audit record");
    }
}

/// Whether `host` (a Host header, or an Origin's host) names the local API on `port`:
/// `127.0.0.1`, `localhost` or `[::1]`, with that port. Pure.
pub fn is_local_host(host: &str, port: u16) -> bool {
    let host = host.trim().to_ascii_lowercase();
    ["127.0.0.1", "localhost", "[::1]"]
        .iter()
        .any(|name| host == format!("{name}:{port}"))
}

/// For an API on loopback (`strata dev`): refuses requests whose Host is not the API's own
/// loopback address (a page the developer visits cannot reach it by DNS rebinding) and
/// requests a browser sent from another origin (cross-site requests). `port` is the API's.
pub async fn local_only(
    plane: Arc<ControlPlane>,
    port: u16,
    request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let refusal = if !is_local_host(&host, port) {
        Some(ControlError::Forbidden {
            message: format!("this API answers only to 127.0.0.1:{port} or localhost:{port}, not to Host `{host}`"),
            hint: format!("use http://127.0.0.1:{port}"),
        })
    } else {
        request
            .headers()
            .get(axum::http::header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .filter(|origin| {
                let origin_host = origin
                    .strip_prefix("http://")
                    .or_else(|| origin.strip_prefix("https://"))
                    .unwrap_or(origin);
                !is_local_host(origin_host, port)
            })
            .map(|origin| ControlError::Forbidden {
                message: format!(
                    "requests from web pages of other origins (`{origin}`) are refused"
                ),
                hint: "call the API from the CLI, or from a page of the API's own origin".into(),
            })
    };
    let Some(error) = refusal else {
        return next.run(request).await;
    };
    // Refused before anyone is authenticated: audited as such, folded like other refusals.
    let audit = AuditRecord {
        seq: 0,
        at: 0,
        who: "anonymous".into(),
        from: request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.to_string())
            .unwrap_or_else(|| "unknown".into()),
        route: format!("{} {}", request.method(), request.uri().path()),
        env: None,
        summary: format!("Host {host}"),
        status: 0,
        denied: None,
    };
    refuse(&plane, audit, error).await
}

/// How many watches one identity may hold open at once on one server.
pub const MAX_WATCHES_PER_IDENTITY: usize = 64;

/// Open watches per identity: an identity cannot hold a server's memory with endless streams.
#[derive(Default)]
pub struct Watchers {
    open: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
}

/// One open watch; dropping it (the stream ends) frees its place.
pub struct WatchSlot {
    open: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    who: String,
}

impl Watchers {
    pub fn enter(&self, who: &str) -> Result<WatchSlot, ControlError> {
        let mut open = self.open.lock().expect("watchers lock");
        let count = open.entry(who.to_string()).or_default();
        if *count >= MAX_WATCHES_PER_IDENTITY {
            return Err(ControlError::TooManyRequests {
                message: format!("{who} already holds {count} watches on this server"),
                hint: "close watches you no longer read".into(),
            });
        }
        *count += 1;
        Ok(WatchSlot {
            open: self.open.clone(),
            who: who.to_string(),
        })
    }
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().expect("watchers lock");
        if let Some(count) = open.get_mut(&self.who) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.who);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_refusals_are_folded_per_window() {
        let folder = RefusalFolder::default();
        let key = |who: &str| {
            (
                who.to_string(),
                "10.0.0.9".to_string(),
                "GET /v1/services".to_string(),
            )
        };
        // (caller, at ms, expected): written with how many it stands for, or folded.
        let steps = [
            ("a", 0, Some(0)),
            ("a", 1, None),
            ("a", 9_999, None),
            ("b", 5_000, Some(0)),
            ("a", 10_000, Some(2)),
            ("a", 10_001, None),
            ("a", 30_000, Some(1)),
            ("a", 45_000, Some(0)),
        ];
        for (who, at, expected) in steps {
            assert_eq!(folder.admit(key(who), at), expected, "{who} at {at}");
        }
    }

    #[test]
    fn watches_per_identity_are_bounded_and_freed() {
        let watchers = Watchers::default();
        let held: Vec<WatchSlot> = (0..MAX_WATCHES_PER_IDENTITY)
            .map(|_| watchers.enter("ci").unwrap())
            .collect();
        assert!(watchers.enter("ci").is_err());
        assert!(
            watchers.enter("other").is_ok(),
            "another identity is not affected"
        );
        drop(held);
        assert!(watchers.enter("ci").is_ok());
    }

    #[test]
    fn only_the_local_api_host_is_accepted() {
        for (host, ok) in [
            ("127.0.0.1:7700", true),
            ("localhost:7700", true),
            ("LOCALHOST:7700", true),
            ("[::1]:7700", true),
            ("127.0.0.1:7701", false),
            ("evil.example:7700", false),
            ("127.0.0.1.evil.example:7700", false),
            ("localhost", false),
            ("", false),
        ] {
            assert_eq!(is_local_host(host, 7700), ok, "{host}");
        }
    }

    #[test]
    fn params_come_from_the_template() {
        let params = path_params(
            "/v1/envs/{env}/services/{service}/scale",
            "/v1/envs/dev/services/web/scale",
        );
        assert_eq!(params.get("env").unwrap(), "dev");
        assert_eq!(params.get("service").unwrap(), "web");
        assert_eq!(summary(&params), "service=web");
    }

    #[test]
    fn node_telemetry_is_not_audited_but_changes_are() {
        assert!(!audited(&Method::POST, "/v1/nodes/{name}/heartbeat"));
        assert!(!audited(&Method::GET, "/v1/services"));
        assert!(audited(&Method::POST, "/v1/envs/{env}/deploy"));
        assert!(audited(&Method::POST, "/v1/nodes/{name}/certificate"));
        assert!(audited(&Method::DELETE, "/v1/tokens/{name}"));
    }
}
