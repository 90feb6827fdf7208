//! TLS to etcd: [`EtcdTls`] (the CA to trust, the client's certificate for mutual TLS), read
//! from PEM files and checked so that a wrong file is named before any handshake.

use std::fmt;
use std::path::Path;

use etcd_client::{Certificate, Identity, TlsOptions};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::StoreError;

/// TLS to etcd: whom to trust, and the client's certificate for mutual TLS. See the
/// [module docs](super#connecting).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EtcdTls {
    /// PEM certificate(s) of the CA that signed the members' certificates; `None`: the
    /// system's trust roots.
    pub ca_pem: Option<Vec<u8>>,
    /// The client's PEM certificate (chain), for mutual TLS; needs `client_key_pem`.
    pub client_cert_pem: Option<Vec<u8>>,
    /// The PEM private key of `client_cert_pem` (PKCS#8, PKCS#1 or SEC1); needs it.
    pub client_key_pem: Option<Vec<u8>>,
}

impl fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let size = |pem: &Option<Vec<u8>>| pem.as_ref().map(|p| format!("{} bytes", p.len()));
        f.debug_struct("EtcdTls")
            .field(
                "ca_pem",
                &size(&self.ca_pem).unwrap_or_else(|| "system roots".into()),
            )
            .field("client_cert_pem", &size(&self.client_cert_pem))
            .field(
                "client_key_pem",
                &self.client_key_pem.as_ref().map(|_| "***"),
            )
            .finish()
    }
}

/// Which PEM file of [`EtcdTls`] a check is about.
#[derive(Clone, Copy)]
enum PemKind {
    Ca,
    Cert,
    Key,
}

impl PemKind {
    fn what(self) -> &'static str {
        match self {
            PemKind::Ca => "the etcd CA certificate",
            PemKind::Cert => "the etcd client certificate",
            PemKind::Key => "the etcd client key",
        }
    }

    /// Checks that `pem` holds what it should, for a clear message instead of a failed
    /// handshake later (rustls skips certificates it cannot parse).
    fn check(self, pem: &[u8]) -> Result<(), String> {
        let what = self.what();
        match self {
            PemKind::Ca | PemKind::Cert => {
                let mut count = 0;
                for cert in CertificateDer::pem_slice_iter(pem) {
                    cert.map_err(|e| format!("{what} is not valid PEM: {e}"))?;
                    count += 1;
                }
                if count == 0 {
                    return Err(format!(
                        "{what} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
                    ));
                }
                Ok(())
            }
            PemKind::Key => match PrivateKeyDer::from_pem_slice(pem) {
                Ok(_) => Ok(()),
                Err(rustls_pki_types::pem::Error::NoItemsFound) => Err(format!(
                    "{what} holds no PEM private key (-----BEGIN PRIVATE KEY-----, \
                     -----BEGIN RSA PRIVATE KEY----- or -----BEGIN EC PRIVATE KEY-----)"
                )),
                Err(e) => Err(format!("{what} is not a valid PEM private key: {e}")),
            },
        }
    }
}

impl EtcdTls {
    /// Reads the PEM files: the CA to trust (`None`: the system's roots), and the client's
    /// certificate and key for mutual TLS (both or neither). Fails with [`StoreError::Open`]
    /// naming the file that cannot be read or does not hold what it should.
    pub fn from_files(
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<EtcdTls, StoreError> {
        let read = |path: Option<&Path>, kind: PemKind| -> Result<Option<Vec<u8>>, StoreError> {
            let Some(path) = path else {
                return Ok(None);
            };
            let fail = |reason: String| StoreError::Open {
                path: path.display().to_string(),
                reason,
            };
            let pem = std::fs::read(path)
                .map_err(|e| fail(format!("cannot read {} from it: {e}", kind.what())))?;
            kind.check(&pem).map_err(fail)?;
            Ok(Some(pem))
        };
        let tls = EtcdTls {
            ca_pem: read(ca, PemKind::Ca)?,
            client_cert_pem: read(cert, PemKind::Cert)?,
            client_key_pem: read(key, PemKind::Key)?,
        };
        tls.check_pair().map_err(|reason| StoreError::Open {
            path: cert
                .or(key)
                .map_or_else(String::new, |p| p.display().to_string()),
            reason,
        })?;
        Ok(tls)
    }

    /// Whether the client certificate and key come as a pair.
    fn check_pair(&self) -> Result<(), String> {
        match (&self.client_cert_pem, &self.client_key_pem) {
            (Some(_), None) => Err("a client certificate was given without its private key \
                 (mutual TLS needs both)"
                .into()),
            (None, Some(_)) => Err("a client private key was given without its certificate \
                 (mutual TLS needs both)"
                .into()),
            _ => Ok(()),
        }
    }

    /// Checks every part, then the client's TLS configuration.
    pub(super) fn client_config(&self) -> Result<TlsOptions, String> {
        self.check_pair()?;
        // Go's TLS (etcd's) negotiates HTTP/2 with ALPN; if some proxy in front does not,
        // gRPC still speaks HTTP/2.
        let mut config = TlsOptions::new().assume_http2(true);
        config = match &self.ca_pem {
            Some(ca) => {
                PemKind::Ca.check(ca)?;
                config.ca_certificate(Certificate::from_pem(ca))
            }
            None => config.with_native_roots(),
        };
        if let (Some(cert), Some(key)) = (&self.client_cert_pem, &self.client_key_pem) {
            PemKind::Cert.check(cert)?;
            PemKind::Key.check(key)?;
            config = config.identity(Identity::from_pem(cert, key));
        }
        Ok(config)
    }
}
