//! The control plane's API as every client reaches it: the agent, the mesh's route source and
//! the CLI share this one [`Client`].
//!
//! - Several servers (`STRATA_ADDR=a,b,c`): a request whose server cannot be reached (no
//!   connection; for a GET or HEAD, also a timeout) or answers 503 (unavailable: starting,
//!   or no leader yet) goes to the next server, which is then kept. Any other answer, success
//!   or refusal, is the answer: nothing is sent again that a server may have acted on.
//! - One credential: a bearer token, or (a node, once it has one) a client certificate,
//!   switched for every clone at once ([`Client::present_certificate`]).
//! - One CA: with `ca_pem` only that CA is trusted for HTTPS (the cluster's), never the web's.
//! - Errors typed ([`ClientError`]): unreachable, or refused with the API's status, message
//!   and hint.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use strata_core::api::ErrorBody;

/// Why a call to the control plane failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("control plane at {url} unreachable: {}", causes(source))]
    Unreachable { url: String, source: reqwest::Error },
    #[error("control plane refused {what}: {message}")]
    Refused {
        what: String,
        status: u16,
        /// The API's message, with its hint on a second line when it gave one.
        message: String,
    },
    #[error("the certificate cannot be used: {0}")]
    Certificate(String),
    #[error("artifact {digest}: {reason}")]
    Artifact { digest: String, reason: String },
}

/// `error` with every cause under it ("error sending request for url (...): client error
/// (Connect): tcp connect error: Connection refused (os error 111)"): reqwest's own message
/// alone does not say whether the server refused, timed out or failed the TLS handshake.
pub fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        next = cause.source();
    }
    text
}

impl ClientError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Refused { status: 404, .. })
    }

    /// A refusal that retrying cannot fix (a wrong credential, an invalid request).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            ClientError::Refused {
                status: 400 | 401 | 403,
                ..
            }
        )
    }

    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The control plane's API on one or several servers. Clones share the servers, the one in
/// use and the credential.
#[derive(Debug, Clone)]
pub struct Client {
    bases: Arc<Vec<String>>,
    current: Arc<AtomicUsize>,
    http: Arc<RwLock<reqwest::Client>>,
    ca_pem: Option<Arc<String>>,
    connect_timeout: Duration,
}

/// How long a connection may take before the next server is tried, unless told otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// `http://a:7700/` -> `http://a:7700`, each of a comma-separated list; empty ones dropped.
pub fn split_bases(bases: &str) -> Vec<String> {
    bases
        .split(',')
        .map(|b| b.trim().trim_end_matches('/').to_string())
        .filter(|b| !b.is_empty())
        .collect()
}

fn http_client(
    token: Option<&str>,
    ca_pem: Option<&str>,
    identity: Option<reqwest::Identity>,
    connect_timeout: Duration,
) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token {
        if let Ok(mut value) = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")) {
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
    }
    let mut builder = reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .default_headers(headers);
    match ca_pem.map(|pem| reqwest::Certificate::from_pem(pem.as_bytes())) {
        Some(Ok(root)) => {
            builder = builder
                .tls_built_in_root_certs(false)
                .add_root_certificate(root)
        }
        Some(Err(error)) => tracing::warn!(%error, "the CA to trust is not valid PEM"),
        None => {}
    }
    if let Some(identity) = identity {
        builder = builder.identity(identity);
    }
    builder.build().expect("http client builds")
}

impl Client {
    /// A client of the servers `bases` (comma-separated), presenting `token`, trusting
    /// `ca_pem` alone for HTTPS when given.
    pub fn new(bases: &str, token: Option<&str>, ca_pem: Option<&str>) -> Self {
        Self::with_connect_timeout(split_bases(bases), token, ca_pem, DEFAULT_CONNECT_TIMEOUT)
    }

    pub fn with_connect_timeout(
        bases: Vec<String>,
        token: Option<&str>,
        ca_pem: Option<&str>,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            bases: Arc::new(bases),
            current: Arc::new(AtomicUsize::new(0)),
            http: Arc::new(RwLock::new(http_client(
                token,
                ca_pem,
                None,
                connect_timeout,
            ))),
            ca_pem: ca_pem.map(|pem| Arc::new(pem.to_string())),
            connect_timeout,
        }
    }

    /// From now on (this client and every clone) authenticate with this certificate (mutual
    /// TLS) instead of the bearer token.
    pub fn present_certificate(&self, cert_pem: &str, key_pem: &str) -> Result<(), ClientError> {
        let identity = reqwest::Identity::from_pem(format!("{key_pem}\n{cert_pem}").as_bytes())
            .map_err(|error| ClientError::Certificate(error.to_string()))?;
        let client = http_client(
            None,
            self.ca_pem.as_deref().map(String::as_str),
            Some(identity),
            self.connect_timeout,
        );
        *self.http.write().expect("http lock") = client;
        Ok(())
    }

    /// The HTTP client with the current credential (for requests [`Client::send`] does not
    /// suit, such as a long stream to the server in use).
    pub fn http(&self) -> reqwest::Client {
        self.http.read().expect("http lock").clone()
    }

    /// The servers, in order.
    pub fn bases(&self) -> &[String] {
        &self.bases
    }

    /// The server in use.
    pub fn base(&self) -> String {
        let index = self.current.load(Ordering::Relaxed) % self.bases.len().max(1);
        self.bases.get(index).cloned().unwrap_or_default()
    }

    /// Moves on to the next server (after a failure seen outside [`Client::send`]).
    pub fn rotate(&self) {
        self.current.fetch_add(1, Ordering::Relaxed);
    }

    /// Sends a request built for a server's base URL. A server that cannot be reached, or
    /// answers 503, is passed over for the next (each tried once), which is then kept. A GET
    /// or HEAD that times out is sent to the next server too; any other request only if
    /// its connection failed (it may have been acted on).
    pub async fn send(
        &self,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        self.send_with(build, false).await
    }

    /// As [`Client::send`], for a request the caller knows is safe to repeat (a heartbeat, a
    /// status report): a timeout sends it to the next server whatever its method, so a hung
    /// server does not hold the caller.
    pub async fn send_idempotent(
        &self,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        self.send_with(build, true).await
    }

    async fn send_with(
        &self,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
        idempotent: bool,
    ) -> Result<reqwest::Response, ClientError> {
        let count = self.bases.len().max(1);
        let start = self.current.load(Ordering::Relaxed);
        let http = self.http();
        let mut last: Option<Result<reqwest::Response, ClientError>> = None;
        for step in 0..count {
            let index = (start + step) % count;
            let Some(base) = self.bases.get(index) else {
                break;
            };
            let request = match build(&http, base).build() {
                Ok(request) => request,
                Err(source) => {
                    return Err(ClientError::Unreachable {
                        url: base.clone(),
                        source,
                    })
                }
            };
            // A request that timed out may have been acted on: only one that changes nothing
            // is sent again elsewhere (a refused connection never reached a server).
            let safe_to_resend = idempotent
                || matches!(
                    *request.method(),
                    reqwest::Method::GET | reqwest::Method::HEAD
                );
            let unavailable = match http.execute(request).await {
                Ok(response) if response.status().as_u16() == 503 && step + 1 < count => {
                    Ok(response)
                }
                Ok(response) => {
                    self.keep(index, step, base);
                    return Ok(response);
                }
                Err(error) if error.is_connect() || (error.is_timeout() && safe_to_resend) => {
                    Err(ClientError::Unreachable {
                        url: base.clone(),
                        source: error,
                    })
                }
                Err(source) => {
                    return Err(ClientError::Unreachable {
                        url: base.clone(),
                        source,
                    })
                }
            };
            last = Some(unavailable);
        }
        match last {
            Some(outcome) => outcome,
            None => Err(ClientError::Refused {
                what: "the request".into(),
                status: 0,
                message: "no control plane server is configured".into(),
            }),
        }
    }

    fn keep(&self, index: usize, step: usize, base: &str) {
        if step > 0 {
            self.current.store(index, Ordering::Relaxed);
            tracing::info!(server = %base, "switched to another control plane server");
        }
    }

    /// The response if it succeeded; otherwise the API's refusal of `what`, decoded.
    pub async fn check(
        what: &str,
        response: reqwest::Response,
    ) -> Result<reqwest::Response, ClientError> {
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let message = match serde_json_error(&text) {
            Some(ErrorBody {
                message,
                hint: Some(hint),
                ..
            }) => format!("{message}\n  hint: {hint}"),
            Some(body) => body.message,
            None if text.trim().is_empty() => format!("HTTP {status}"),
            None => format!("HTTP {status}: {}", text.trim()),
        };
        Err(ClientError::Refused {
            what: what.to_string(),
            status,
            message,
        })
    }
}

fn serde_json_error(text: &str) -> Option<ErrorBody> {
    serde_json::from_str(text).ok()
}

/// The address of an API URL's host and port (`https://host:port/...`, the port the
/// scheme's default when absent): where a node's heartbeat datagrams go, over UDP.
pub async fn api_socket_addr(api_url: &str) -> Option<std::net::SocketAddr> {
    let url = reqwest::Url::parse(api_url).ok()?;
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url.port_or_known_default()?;
    let mut found = tokio::net::lookup_host((host.as_str(), port)).await.ok()?;
    found.next()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unreachable server's error says why: here, nothing listens on the port.
    #[tokio::test]
    async fn an_unreachable_server_is_told_with_its_cause() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let error = reqwest::get(format!("{url}/v1/ca")).await.unwrap_err();
        let error = ClientError::Unreachable { url, source: error };
        let text = error.to_string();
        assert!(text.to_lowercase().contains("connection refused"), "{text}");
    }

    #[test]
    fn bases_are_split_and_trimmed() {
        assert_eq!(
            split_bases(" http://a:7700/, ,https://b:7700"),
            ["http://a:7700", "https://b:7700"]
        );
        assert!(split_bases("").is_empty());
    }

    #[tokio::test]
    async fn a_dead_or_unavailable_server_is_passed_over_and_the_next_kept() {
        use axum::http::StatusCode;
        let serve = |status: StatusCode| async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let app =
                axum::Router::new().route("/x", axum::routing::get(move || async move { status }));
            tokio::spawn(async move { axum::serve(listener, app).await });
            url
        };
        let dead = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", listener.local_addr().unwrap())
        };
        let unavailable = serve(StatusCode::SERVICE_UNAVAILABLE).await;
        let good = serve(StatusCode::OK).await;
        let client = Client::new(&format!("{dead},{unavailable},{good}"), None, None);
        let response = client
            .send(|http, base| http.get(format!("{base}/x")))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(client.base(), good, "the server that answered is kept");
        // A refusal is the answer, not a reason to try elsewhere.
        let refusing = serve(StatusCode::FORBIDDEN).await;
        let client = Client::new(&format!("{refusing},{good}"), None, None);
        let response = client
            .send(|http, base| http.get(format!("{base}/x")))
            .await
            .unwrap();
        assert_eq!(response.status(), 403);
        let error = Client::check("the test", response).await.unwrap_err();
        assert_eq!(error.status(), Some(403));
        assert!(error.is_permanent());
        // Every server dead: unreachable, naming one.
        let client = Client::new(&dead, None, None);
        let error = client
            .send(|http, base| http.get(format!("{base}/x")))
            .await
            .unwrap_err();
        assert!(matches!(error, ClientError::Unreachable { .. }), "{error}");
    }
}
