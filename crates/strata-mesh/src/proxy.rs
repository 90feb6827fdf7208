//! The node's mesh proxy: how an instance calls another service, by name, without ever seeing
//! an instance address, a retry loop or a policy.
//!
//! Every instance of an `exec` or `container` service gets `HTTP_PROXY` (and `http_proxy`)
//! pointing at its node's mesh proxy, with its identity as the proxy credentials:
//! `http://SERVICE.ENV:TOKEN@ADDRESS:PORT`. The application calls `http://greeter/path` with
//! any HTTP client that honours the variable (curl, reqwest, Go's net/http, Python's requests;
//! the variable is the convention they share), and the proxy:
//! 1. authenticates the caller: TOKEN is an HMAC-SHA256 of `ENV/SERVICE` under the node's key
//!    ([`CallerKeys`]), so an instance cannot claim another service's identity (407 without);
//! 2. resolves the bare name in the caller's environment (404 with what to do otherwise);
//! 3. applies who-may-call-whom ([`crate::policy`]): a forbidden call is answered 403 here,
//!    never reaches the callee, and is reported as an audit event naming caller, callee and
//!    rule ([`Denial`]);
//! 4. forwards like the ingress does ([`Ingress::forward`]): load balancing, safe retries,
//!    deadline, metrics; the callee sees the caller's service in the `strata-caller` header
//!    (set here, never taken from the application).
//!
//! Wasm guests take the same path: their outbound hook sends through this proxy with the
//! guest's credentials.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use hmac::{Hmac, Mac};
use http::{header, HeaderValue, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use sha2::Sha256;
use strata_core::api::default_host;

use crate::ingress::{plain, Ingress, ProxyBody};
use crate::policy;
use crate::routes::RoutingTable;

/// The header that tells the callee which service called it.
pub const CALLER_HEADER: &str = "strata-caller";

/// A service's identity in the mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub env: String,
    pub service: String,
}

/// The node's key for its instances' proxy credentials.
#[derive(Clone)]
pub struct CallerKeys {
    key: [u8; 32],
}

impl std::fmt::Debug for CallerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallerKeys(..)")
    }
}

impl CallerKeys {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    /// The key kept in `path` (mode 0600), made on first use: instances re-adopted after an
    /// agent restart keep working with the credentials they were started with.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        if let Ok(bytes) = std::fs::read(path) {
            if let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice()) {
                return Ok(Self { key });
            }
        }
        let key: [u8; 32] = rand::random();
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(&key)?;
        Ok(Self { key })
    }

    /// The token of `service` in `env`.
    pub fn token(&self, env: &str, service: &str) -> String {
        hex::encode(self.mac(env, service).finalize().into_bytes())
    }

    fn mac(&self, env: &str, service: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(env.as_bytes());
        mac.update(b"/");
        mac.update(service.as_bytes());
        mac
    }

    /// The `HTTP_PROXY` value for an instance of `service` in `env`, the proxy at `proxy`.
    pub fn proxy_url(&self, proxy: SocketAddr, env: &str, service: &str) -> String {
        format!(
            "http://{service}.{env}:{}@{proxy}",
            self.token(env, service)
        )
    }

    /// The `Proxy-Authorization` value an instance of `service` in `env` sends.
    pub fn authorization(&self, env: &str, service: &str) -> String {
        let credentials = format!("{service}.{env}:{}", self.token(env, service));
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
    }

    /// The caller a `Proxy-Authorization` header proves, if it proves one.
    pub fn verify(&self, authorization: &HeaderValue) -> Option<Caller> {
        let text = authorization.to_str().ok()?;
        let (scheme, encoded) = text.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, token) = decoded.split_once(':')?;
        let (service, env) = user.split_once('.')?;
        let token = hex::decode(token).ok()?;
        // Constant-time comparison.
        self.mac(env, service).verify_slice(&token).ok()?;
        Some(Caller {
            env: env.to_string(),
            service: service.to_string(),
        })
    }
}

/// A call the policy refused, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub env: String,
    pub caller: String,
    pub callee: String,
    pub rule: String,
}

/// The mesh proxy of one node.
pub struct MeshProxy {
    ingress: Arc<Ingress>,
    table: Arc<RoutingTable>,
    keys: CallerKeys,
    on_denial: Box<dyn Fn(Denial) + Send + Sync>,
}

impl MeshProxy {
    /// A proxy that forwards through `ingress` (sharing its balancer, client and metrics) and
    /// reports refused calls to `on_denial`.
    pub fn new(
        ingress: Arc<Ingress>,
        table: Arc<RoutingTable>,
        keys: CallerKeys,
        on_denial: impl Fn(Denial) + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            ingress,
            table,
            keys,
            on_denial: Box::new(on_denial),
        })
    }

    /// Serves connections from `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) {
        let proxy = self.clone();
        crate::ingress::serve_http1(listener, move |request, peer| {
            let proxy = proxy.clone();
            async move { proxy.handle(request, peer).await }
        })
        .await
    }

    pub async fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<ProxyBody> {
        let Some(caller) = request
            .headers()
            .get(header::PROXY_AUTHORIZATION)
            .and_then(|value| self.keys.verify(value))
        else {
            let mut response = plain(
                StatusCode::PROXY_AUTHENTICATION_REQUIRED,
                "strata: calls through the node's mesh proxy carry the caller's identity: use the \
                 HTTP_PROXY Strata sets for each instance (it holds the credentials)\n"
                    .into(),
            );
            response.headers_mut().insert(
                header::PROXY_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"strata\""),
            );
            return response;
        };
        let name = match target_service(&request) {
            Ok(name) => name,
            Err(message) => return plain(StatusCode::BAD_REQUEST, message),
        };
        let host = default_host(&name, &caller.env);
        let Some(route) = self.table.lookup(&host) else {
            return plain(
                StatusCode::NOT_FOUND,
                format!(
                    "strata: no service named `{name}` in environment `{}`; see `strata status --env {}`\n",
                    caller.env, caller.env
                ),
            );
        };
        if let Err(rule) = policy::decide(&caller.service, &route) {
            (self.on_denial)(Denial {
                env: caller.env.clone(),
                caller: caller.service.clone(),
                callee: name.clone(),
                rule: rule.clone(),
            });
            return plain(
                StatusCode::FORBIDDEN,
                format!(
                    "strata: `{}` may not call `{name}` in environment `{}` ({rule})\n",
                    caller.service, caller.env
                ),
            );
        }
        let (mut parts, body) = request.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_string();
        parts.uri = match path.parse::<Uri>() {
            Ok(uri) => uri,
            Err(error) => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    format!("strata: bad request path `{path}`: {error}\n"),
                )
            }
        };
        let headers = &mut parts.headers;
        headers.remove(header::PROXY_AUTHORIZATION);
        headers.remove("proxy-connection");
        headers.remove(CALLER_HEADER);
        if let Ok(value) = HeaderValue::from_str(&caller.service) {
            headers.insert(CALLER_HEADER, value);
        }
        if let Ok(value) = HeaderValue::from_str(&host) {
            headers.insert(header::HOST, value);
        }
        self.ingress
            .forward(Request::from_parts(parts, body), peer)
            .await
    }
}

/// The service a proxied request names: `http://NAME/...` (absolute form, as HTTP clients
/// send to a proxy) or a `Host: NAME` header; a bare service name, in the caller's environment.
fn target_service<B>(request: &Request<B>) -> Result<String, String> {
    let raw = request
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            request
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .ok_or_else(|| {
            "strata: the request names no service; call http://SERVICE/\n".to_string()
        })?;
    if request.method() == http::Method::CONNECT || request.uri().scheme_str() == Some("https") {
        return Err(format!(
            "strata: call other services over plain http://SERVICE/ (`{raw}` asks for a tunnel); \
             the mesh encrypts between nodes itself\n"
        ));
    }
    let name = raw
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map(|(name, _)| name)
        .unwrap_or(&raw)
        .to_ascii_lowercase();
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return Err(format!(
            "strata: `{raw}` is not a service name: call other services of your environment as \
             http://SERVICE/ (no dots; the mesh reaches nothing else)\n"
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_prove_exactly_one_identity() {
        let keys = CallerKeys::new([7; 32]);
        let header = HeaderValue::from_str(&keys.authorization("prod", "web")).unwrap();
        assert_eq!(
            keys.verify(&header),
            Some(Caller {
                env: "prod".into(),
                service: "web".into()
            })
        );
        // Another node's key, another service's token, garbage: no identity.
        let other = CallerKeys::new([8; 32]);
        assert_eq!(other.verify(&header), None);
        let forged = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("db.prod:{}", keys.token("prod", "web")))
        );
        assert_eq!(keys.verify(&HeaderValue::from_str(&forged).unwrap()), None);
        for bad in ["", "Basic", "Basic !!!", "Bearer abc", "Basic d2ViOg=="] {
            assert_eq!(
                keys.verify(&HeaderValue::from_str(bad).unwrap()),
                None,
                "{bad}"
            );
        }
        // The URL form carries the same credentials.
        let url = keys.proxy_url("127.0.0.1:4180".parse().unwrap(), "prod", "web");
        assert!(url.starts_with("http://web.prod:"), "{url}");
        assert!(url.ends_with("@127.0.0.1:4180"), "{url}");
    }

    #[test]
    fn keys_persist() {
        let dir = std::env::temp_dir().join(format!("strata-keys-{}", std::process::id()));
        let path = dir.join("mesh.key");
        let first = CallerKeys::load_or_create(&path).unwrap();
        let again = CallerKeys::load_or_create(&path).unwrap();
        assert_eq!(first.token("dev", "web"), again.token("dev", "web"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn target_names() {
        let table = [
            ("http://greeter/hello", None, Ok("greeter")),
            ("http://greeter:80/", None, Ok("greeter")),
            ("/hello", Some("Greeter"), Ok("greeter")),
            ("http://example.com/", None, Err("not a service name")),
            ("http://10.0.0.1:8080/", None, Err("not a service name")),
            ("/", None, Err("names no service")),
        ];
        for (uri, host, want) in table {
            let mut builder = Request::builder().uri(uri);
            if let Some(host) = host {
                builder = builder.header(header::HOST, host);
            }
            let request = builder.body(()).unwrap();
            match (target_service(&request), want) {
                (Ok(name), Ok(expected)) => assert_eq!(name, expected, "{uri}"),
                (Err(message), Err(expected)) => {
                    assert!(message.contains(expected), "{uri}: {message}")
                }
                (got, want) => panic!("{uri}: got {got:?}, want {want:?}"),
            }
        }
    }
}
