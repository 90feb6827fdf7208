//! HTTPS on the ingress: TLS 1.2/1.3 with HTTP/2 or HTTP/1.1 chosen by ALPN, and the
//! certificate chosen by the name the client asks for (SNI).
//!
//! Where certificates come from ([`IngressCertificates`]):
//! - a directory (`strata agent --tls-cert-dir DIR`): each `NAME.crt` (PEM chain, leaf first)
//!   with its `NAME.key` beside it; a certificate serves the DNS names it carries, a wildcard
//!   (`*.example.com`) one label below; a key that is not the certificate's is refused when
//!   the directory is read, naming the file;
//! - a local CA (`strata dev`): a certificate for each `*.localhost` name asked for is made on
//!   its first handshake and signed by a CA kept in the data directory, which a browser or
//!   `curl --cacert` is told to trust (as `mkcert` does).
//!
//! A name no certificate serves ends the handshake: nothing is served under another name's
//! certificate.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

use super::Ingress;

/// The ingress's TLS configuration, as [`IngressCertificates::server_config`] makes it.
pub type ServerTls = Arc<rustls::ServerConfig>;

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why certificates could not be had.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("the local CA: {0}")]
    LocalCa(String),
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The ingress's certificates, chosen by SNI.
#[derive(Debug)]
pub struct IngressCertificates {
    /// Exact names and wildcards (`*.example.com`), lowercase.
    by_name: HashMap<String, Arc<CertifiedKey>>,
    /// `strata dev`: certificates made on demand for `*.localhost` names.
    local: Option<LocalCa>,
}

impl IngressCertificates {
    /// Every `NAME.crt` of `dir` with its `NAME.key`.
    pub fn from_dir(dir: &Path) -> Result<Self, TlsError> {
        let entries = std::fs::read_dir(dir).map_err(|e| file_error(dir, e))?;
        let mut by_name = HashMap::new();
        let mut crts: Vec<PathBuf> = entries
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "crt"))
            .collect();
        crts.sort();
        if crts.is_empty() {
            return Err(file_error(
                dir,
                "holds no certificate: put NAME.crt (PEM, leaf first) and NAME.key there",
            ));
        }
        for crt in crts {
            let key_path = crt.with_extension("key");
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&crt)
                .and_then(|certs| certs.collect::<Result<_, _>>())
                .map_err(|e| file_error(&crt, format!("not a PEM certificate chain: {e}")))?;
            if chain.is_empty() {
                return Err(file_error(&crt, "holds no certificate"));
            }
            let key = PrivateKeyDer::from_pem_file(&key_path)
                .map_err(|e| file_error(&key_path, format!("not a PEM private key: {e}")))?;
            let certified = certified(chain.clone(), key).map_err(|e| {
                file_error(
                    &key_path,
                    format!("is not the key of {} ({e})", crt.display()),
                )
            })?;
            let names = dns_names(&chain[0]).map_err(|e| file_error(&crt, e))?;
            if names.is_empty() {
                return Err(file_error(&crt, "names no DNS name (subjectAltName)"));
            }
            let certified = Arc::new(certified);
            for name in names {
                by_name.insert(name.to_ascii_lowercase(), certified.clone());
            }
        }
        Ok(Self {
            by_name,
            local: None,
        })
    }

    /// `strata dev`'s: certificates for `*.localhost` names made on demand, signed by the CA
    /// kept in `dir` (`ingress-ca.crt`, made on first use; its key `ingress-ca.key`, 0600).
    pub fn local(dir: &Path) -> Result<Self, TlsError> {
        Ok(Self {
            by_name: HashMap::new(),
            local: Some(LocalCa::load_or_create(dir)?),
        })
    }

    /// The certificate for `name` (lowercase): exact, then a wildcard one label up, then
    /// (locally) one made for it.
    fn for_name(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(found) = self.by_name.get(&name) {
            return Some(found.clone());
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(found) = self.by_name.get(&format!("*.{parent}")) {
                return Some(found.clone());
            }
        }
        self.local.as_ref()?.for_name(&name)
    }

    /// The rustls configuration of the ingress's HTTPS: HTTP/2, then HTTP/1.1, by ALPN.
    pub fn server_config(self) -> ServerTls {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(self));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl ResolvesServerCert for IngressCertificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.for_name(hello.server_name()?)
    }
}

fn certified(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<CertifiedKey, rustls::Error> {
    CertifiedKey::from_der(chain, key, &rustls::crypto::ring::default_provider())
}

/// The DNS names (subjectAltName) a certificate carries.
fn dns_names(cert: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let names = match parsed.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                x509_parser::extensions::GeneralName::DNSName(dns) => Some(dns.to_string()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(format!("unreadable subjectAltName: {e}")),
    };
    Ok(names)
}

/// The most certificates the local CA keeps made at once.
const MAX_LOCAL_CERTIFICATES: usize = 1024;

/// `strata dev`'s local CA and the certificates it made.
#[derive(Debug)]
struct LocalCa {
    cert_pem: String,
    key_pem: String,
    made: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl LocalCa {
    fn load_or_create(dir: &Path) -> Result<Self, TlsError> {
        let (cert_path, key_path) = (dir.join("ingress-ca.crt"), dir.join("ingress-ca.key"));
        let kept = std::fs::read_to_string(&cert_path)
            .and_then(|cert| Ok((cert, std::fs::read_to_string(&key_path)?)));
        let (cert_pem, key_pem) = match kept {
            Ok(kept) => kept,
            Err(_) => {
                let made = make_local_ca().map_err(|e| TlsError::LocalCa(e.to_string()))?;
                std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
                write_private(&key_path, &made.1)?;
                std::fs::write(&cert_path, &made.0).map_err(|e| file_error(&cert_path, e))?;
                made
            }
        };
        Ok(Self {
            cert_pem,
            key_pem,
            made: Mutex::default(),
        })
    }

    /// A certificate for `name` if it is a `localhost` name, made once.
    fn for_name(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        if name != "localhost" && !name.ends_with(".localhost") {
            return None;
        }
        let mut made = self.made.lock().expect("local CA lock");
        if let Some(found) = made.get(name) {
            return Some(found.clone());
        }
        // Bounded: a client asking for ever new names makes the cache start over.
        if made.len() >= MAX_LOCAL_CERTIFICATES {
            made.clear();
        }
        let certified = match self.issue(name) {
            Ok(certified) => Arc::new(certified),
            Err(error) => {
                tracing::warn!(%error, name, "the local CA could not make a certificate");
                return None;
            }
        };
        made.insert(name.to_string(), certified.clone());
        Some(certified)
    }

    fn issue(&self, name: &str) -> Result<CertifiedKey, Box<dyn std::error::Error>> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, name);
        params.distinguished_name = subject;
        params.subject_alt_names = vec![SanType::DnsName(name.try_into()?)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(90);
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, KeyPair::from_pem(&self.key_pem)?)?;
        let cert = params.signed_by(&key, &issuer)?;
        let ca = CertificateDer::from_pem_slice(self.cert_pem.as_bytes())?;
        let key = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes())?;
        Ok(certified(vec![cert.der().clone(), ca], key)?)
    }
}

/// A new local CA: (certificate PEM, key PEM), ECDSA P-256, ten years.
fn make_local_ca() -> Result<(String, String), rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(
        DnType::CommonName,
        "strata dev ingress CA (this machine only)",
    );
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    // Whoever trusts it trusts it for `localhost` names only, whoever holds its key.
    params.name_constraints = Some(rcgen::NameConstraints {
        permitted_subtrees: vec![rcgen::GeneralSubtree::DnsName("localhost".into())],
        excluded_subtrees: vec![],
    });
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(3650);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn write_private(path: &Path, text: &str) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| {
            // A file that was there keeps its mode through `open`: made private all the same.
            file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
            file.write_all(text.as_bytes())
        })
        .map_err(|e| file_error(path, e))
}

impl Ingress {
    /// Serves HTTPS from `listener` with `tls` (HTTP/2 or HTTP/1.1 by ALPN) until the task is
    /// dropped; each request is handled as on the plain port.
    pub async fn serve_tls(self: Arc<Self>, listener: TcpListener, tls: ServerTls) {
        loop {
            let (stream, peer): (_, SocketAddr) =
                super::accept(&listener, "ingress TLS accept failed").await;
            let _ = stream.set_nodelay(true);
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
            let ingress = self.clone();
            tokio::spawn(async move {
                let _open = crate::handover::OpenConnection::new();
                let stream =
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "ingress TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                let service = hyper::service::service_fn(move |mut request| {
                    let ingress = ingress.clone();
                    request
                        .headers_mut()
                        .insert("x-forwarded-proto", http::HeaderValue::from_static("https"));
                    async move {
                        let mut response = ingress.handle(request, peer).await;
                        crate::handover::mark(&mut response);
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                if let Err(error) =
                    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                {
                    tracing::debug!(%error, "ingress TLS connection ended");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests;
