//! Who a node is, proven with certificates: the cluster CA (made once, at `strata server`
//! init, kept in the cluster's store), the certificate each node gets when it joins (its key
//! never leaves the node: it sends a CSR), and the rustls configurations of mutual TLS between
//! nodes' proxies. A node's certificate names it (`NODE.node.strata`) and its address; it is
//! renewed at two thirds of its lifetime and the new one is used by the next connections.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("making a certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("the certificate signing request is not valid: {0}")]
    BadRequest(String),
    #[error("the {what} PEM is not valid: {reason}")]
    BadPem { what: &'static str, reason: String },
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("the CA is not usable to check peers: {0}")]
    Verifier(String),
}

/// The DNS name in a node's certificate.
pub fn node_server_name(node: &str) -> String {
    format!("{node}.node.strata")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn offset(seconds_from_now: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() + time::Duration::seconds(seconds_from_now)
}

/// The cluster's certificate authority: its certificate and key, PEM.
#[derive(Clone)]
pub struct ClusterCa {
    pub cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa").finish_non_exhaustive()
    }
}

/// A node certificate the CA signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNode {
    pub cert_pem: String,
    /// Seconds since the epoch after which it is no longer valid.
    pub not_after: u64,
}

impl ClusterCa {
    /// A new CA (ECDSA P-256, valid ten years).
    pub fn generate() -> Result<Self, IdentityError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "strata cluster CA");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = offset(-3600);
        params.not_after = offset(10 * 365 * 86_400);
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The CA as kept in the store (`{"cert": PEM, "key": PEM}`).
    pub fn to_json(&self) -> serde_json::Value {
        json!({"cert": self.cert_pem, "key": self.key_pem})
    }

    pub fn from_json(value: &serde_json::Value) -> Result<Self, IdentityError> {
        let field = |name: &'static str| {
            value[name]
                .as_str()
                .map(str::to_string)
                .ok_or(IdentityError::BadPem {
                    what: "cluster CA",
                    reason: format!("no `{name}`"),
                })
        };
        Ok(Self {
            cert_pem: field("cert")?,
            key_pem: field("key")?,
        })
    }

    /// Signs node `node`'s CSR for `ttl`: the certificate names the node and `address` and is
    /// for both ends of mutual TLS; whatever else the CSR asks is ignored.
    pub fn sign_node(
        &self,
        csr_pem: &str,
        node: &str,
        address: Option<IpAddr>,
        ttl: Duration,
    ) -> Result<SignedNode, IdentityError> {
        let request = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|error| IdentityError::BadRequest(error.to_string()))?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, node);
        params.distinguished_name = name;
        params.subject_alt_names = vec![SanType::DnsName(
            node_server_name(node)
                .try_into()
                .map_err(|error: rcgen::Error| IdentityError::BadRequest(error.to_string()))?,
        )];
        if let Some(address) = address {
            params.subject_alt_names.push(SanType::IpAddress(address));
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        // A minute of slack for clocks that disagree.
        params.not_before = offset(-60);
        let not_after = unix_now() + ttl.as_secs();
        params.not_after = offset(ttl.as_secs() as i64);
        let ca_key = KeyPair::from_pem(&self.key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, ca_key)?;
        let cert = params.signed_by(&request.public_key, &issuer)?;
        Ok(SignedNode {
            cert_pem: cert.pem(),
            not_after,
        })
    }
}

/// A server certificate and its key (PEM), as [`ClusterCa::issue_api_server`] makes them.
#[derive(Clone)]
pub struct ServerCertificate {
    pub cert_pem: String,
    pub key_pem: String,
}

impl ClusterCa {
    /// A certificate for a control-plane server's HTTPS API, naming `dns_names` and `ips`,
    /// valid `ttl`, with a key made here (it never leaves the server's memory).
    pub fn issue_api_server(
        &self,
        dns_names: &[String],
        ips: &[IpAddr],
        ttl: Duration,
    ) -> Result<ServerCertificate, IdentityError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(dns_names.to_vec())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "strata api");
        for ip in ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        self.sign_with_key(params, key, ExtendedKeyUsagePurpose::ServerAuth, ttl)
    }

    /// Signs `params` for `key` with one extended usage, valid from a minute ago for `ttl`.
    fn sign_with_key(
        &self,
        mut params: CertificateParams,
        key: KeyPair,
        usage: ExtendedKeyUsagePurpose,
        ttl: Duration,
    ) -> Result<ServerCertificate, IdentityError> {
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.not_before = offset(-60);
        params.not_after = offset(ttl.as_secs() as i64);
        let ca_key = KeyPair::from_pem(&self.key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, ca_key)?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok(ServerCertificate {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The fingerprint a join token carries: the hex SHA-256 of the (first) certificate's DER in
/// `cert_pem`.
pub fn ca_fingerprint(cert_pem: &str) -> Result<String, IdentityError> {
    use sha2::Digest;
    let der = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .next()
        .ok_or(IdentityError::BadPem {
            what: "CA certificate",
            reason: "no certificate in it".into(),
        })?
        .map_err(|error| IdentityError::BadPem {
            what: "CA certificate",
            reason: error.to_string(),
        })?;
    Ok(hex::encode(sha2::Sha256::digest(der.as_ref())))
}

/// Who a verified client certificate of the cluster CA names: a node (`NAME.node.strata`) or
/// a control-plane server (`ID.server.strata`). Kept on each request of a mutual-TLS
/// connection ([`crate::serve::serve_tls`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    Node(String),
    Server(String),
}

/// The peer a (verified) certificate names; `None` for any other certificate (an API's own,
/// a malformed one).
pub fn peer_of_certificate(der: &[u8]) -> Option<Peer> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let names = cert.subject_alternative_name().ok()??;
    names
        .value
        .general_names
        .iter()
        .find_map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) => {
                let label = |suffix: &str| {
                    dns.strip_suffix(suffix)
                        .filter(|name| !name.is_empty() && !name.contains('.'))
                        .map(str::to_string)
                };
                label(".node.strata")
                    .map(Peer::Node)
                    .or_else(|| label(".server.strata").map(Peer::Server))
            }
            _ => None,
        })
}

/// The node a (verified) certificate names: `NAME` from its `NAME.node.strata` DNS name.
pub fn node_of_certificate(der: &[u8]) -> Option<String> {
    match peer_of_certificate(der)? {
        Peer::Node(name) => Some(name),
        Peer::Server(_) => None,
    }
}

impl ClusterCa {
    /// A client certificate for control-plane server `server_id` (`ID.server.strata`): how it
    /// proves itself to nodes' own APIs (reading instance logs). Its key is made here.
    pub fn issue_server_client(
        &self,
        server_id: &str,
        ttl: Duration,
    ) -> Result<ServerCertificate, IdentityError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![format!("{server_id}.server.strata")])?;
        params
            .distinguished_name
            .push(DnType::CommonName, server_id);
        self.sign_with_key(params, key, ExtendedKeyUsagePurpose::ClientAuth, ttl)
    }
}

/// The rustls configuration of an HTTPS API serving `cert_pem` (with its chain) and
/// `key_pem`. With `client_ca_pem`, clients may present a certificate of that CA (nodes, by
/// their node certificate); clients without one are served too, and authenticate otherwise.
pub fn api_server_config(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: Option<&str>,
) -> Result<ServerConfig, IdentityError> {
    let bad = |what: &'static str| {
        move |error: rustls_pki_types::pem::Error| IdentityError::BadPem {
            what,
            reason: error.to_string(),
        }
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(bad("API certificate"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(bad("API key"))?;
    let builder =
        ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(ca_pem) => {
            let mut roots = RootCertStore::empty();
            for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
                roots.add(ca.map_err(bad("cluster CA"))?)?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .allow_unauthenticated()
                .build()
                .map_err(|error| IdentityError::Verifier(error.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key)?;
    // HTTP/2 lets a node hold its blocking assignments query, beat and report over one
    // connection: a fleet of 10,000 nodes is 10,000 connections, not three times that.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A node's fresh key pair and the CSR to send the control plane.
pub fn node_key_and_csr(node: &str) -> Result<(String, String), IdentityError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![node_server_name(node)])?;
    params.distinguished_name.push(DnType::CommonName, node);
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

/// A node's certificate, key and the cluster CA, as rustls configurations for both ends of
/// mutual TLS. Replaced whole on renewal ([`NodeIdentity::replace`]); connections made after
/// use the new one.
pub struct NodeIdentity {
    current: RwLock<TlsConfigs>,
}

#[derive(Clone)]
pub struct TlsConfigs {
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
    /// When the certificate stops being valid (seconds since the epoch).
    pub not_after: u64,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsConfigs {
    pub fn new(
        cert_pem: &str,
        key_pem: &str,
        ca_pem: &str,
        not_after: u64,
    ) -> Result<Self, IdentityError> {
        let bad = |what: &'static str| {
            move |error: rustls_pki_types::pem::Error| IdentityError::BadPem {
                what,
                reason: error.to_string(),
            }
        };
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(bad("node certificate"))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(bad("node key"))?;
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(ca.map_err(bad("cluster CA"))?)?;
        }
        let roots = Arc::new(roots);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|error| IdentityError::Verifier(error.to_string()))?;
        let mut server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        Ok(Self {
            server: Arc::new(server),
            client: Arc::new(client),
            not_after,
        })
    }
}

impl NodeIdentity {
    pub fn new(configs: TlsConfigs) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(configs),
        })
    }

    pub fn current(&self) -> TlsConfigs {
        self.current.read().expect("not poisoned").clone()
    }

    /// A renewed certificate: used by every connection from now on.
    pub fn replace(&self, configs: TlsConfigs) {
        *self.current.write().expect("not poisoned") = configs;
    }

    /// When to renew a certificate valid from `issued` to `not_after`: at two thirds of its
    /// lifetime (seconds since the epoch).
    pub fn renew_at(issued: u64, not_after: u64) -> u64 {
        issued + not_after.saturating_sub(issued) * 2 / 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_certificate_from_a_csr_makes_working_tls_configs() {
        let ca = ClusterCa::generate().unwrap();
        let again = ClusterCa::from_json(&ca.to_json()).unwrap();
        let (key, csr) = node_key_and_csr("node-1").unwrap();
        let signed = again
            .sign_node(
                &csr,
                "node-1",
                Some("10.0.0.2".parse().unwrap()),
                Duration::from_secs(3600),
            )
            .unwrap();
        assert!(signed.not_after > unix_now() + 3500);
        TlsConfigs::new(&signed.cert_pem, &key, &ca.cert_pem, signed.not_after).unwrap();
        assert!(matches!(
            ca.sign_node("not a csr", "node-1", None, Duration::from_secs(60)),
            Err(IdentityError::BadRequest(_))
        ));
    }

    #[test]
    fn an_api_certificate_names_its_addresses_and_the_fingerprint_is_stable() {
        let ca = ClusterCa::generate().unwrap();
        let issued = ca
            .issue_api_server(
                &["localhost".into()],
                &["127.0.0.1".parse().unwrap()],
                Duration::from_secs(3600),
            )
            .unwrap();
        api_server_config(&issued.cert_pem, &issued.key_pem, Some(&ca.cert_pem)).unwrap();
        // A node certificate names its node; the API's does not.
        let (key, csr) = node_key_and_csr("node-7").unwrap();
        let signed = ca
            .sign_node(&csr, "node-7", None, Duration::from_secs(60))
            .unwrap();
        let der = |pem: &str| {
            CertificateDer::pem_slice_iter(pem.as_bytes())
                .next()
                .unwrap()
                .unwrap()
        };
        assert_eq!(
            node_of_certificate(&der(&signed.cert_pem)).as_deref(),
            Some("node-7")
        );
        assert_eq!(node_of_certificate(&der(&issued.cert_pem)), None);
        assert_eq!(node_of_certificate(b"junk"), None);
        let server = ca
            .issue_server_client("server-1a2b", Duration::from_secs(60))
            .unwrap();
        assert_eq!(
            peer_of_certificate(&der(&server.cert_pem)),
            Some(Peer::Server("server-1a2b".into()))
        );
        assert_eq!(node_of_certificate(&der(&server.cert_pem)), None);
        let _ = key;
        let fingerprint = ca_fingerprint(&ca.cert_pem).unwrap();
        assert_eq!(fingerprint.len(), 64);
        assert_eq!(fingerprint, ca_fingerprint(&ca.cert_pem).unwrap());
        assert_ne!(
            fingerprint,
            ca_fingerprint(&ClusterCa::generate().unwrap().cert_pem).unwrap()
        );
        assert!(ca_fingerprint("not pem").is_err());
    }

    #[test]
    fn renewal_is_at_two_thirds_of_the_lifetime() {
        for (issued, not_after, want) in
            [(0, 90, 60), (1000, 1000 + 86_400, 1000 + 57_600), (5, 5, 5)]
        {
            assert_eq!(NodeIdentity::renew_at(issued, not_after), want);
        }
    }
}
