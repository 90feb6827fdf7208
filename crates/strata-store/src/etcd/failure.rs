//! What went wrong with a request to etcd ([`Failure`]): how to classify it (unavailable,
//! compacted, lease not found, a refused TLS handshake) and how to say it.

use std::fmt;

use tonic::Code;

use super::REQUEST_TIMEOUT;

/// What went wrong with a request.
pub(super) enum Failure {
    Etcd(etcd_client::Error),
    Timeout,
}

impl Failure {
    fn status(&self) -> Option<(Code, &str)> {
        match self {
            Failure::Etcd(etcd_client::Error::GRpcStatus(status)) => {
                Some((status.code(), status.message()))
            }
            _ => None,
        }
    }

    pub(super) fn is_lease_not_found(&self) -> bool {
        match self {
            Failure::Etcd(etcd_client::Error::LeaseKeepAliveError(msg)) => msg == "lease not found",
            _ => {
                matches!(self.status(), Some((Code::NotFound, msg)) if msg.contains("lease not found"))
            }
        }
    }

    pub(super) fn is_compacted(&self) -> bool {
        matches!(self.status(), Some((Code::OutOfRange, msg)) if msg.contains("compacted"))
    }

    pub(super) fn is_future_revision(&self) -> bool {
        matches!(self.status(), Some((Code::OutOfRange, msg)) if msg.contains("future revision"))
    }

    /// Whether the cluster could not be reached or could not serve (no leader): worth
    /// retrying on another member.
    pub(super) fn is_unavailable(&self) -> bool {
        match self {
            Failure::Timeout => true,
            Failure::Etcd(etcd_client::Error::TransportError(_))
            | Failure::Etcd(etcd_client::Error::IoError(_)) => true,
            Failure::Etcd(etcd_client::Error::GRpcStatus(status)) => {
                matches!(
                    status.code(),
                    Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted
                ) || status.message().contains("no leader")
                    // Made by the client from a connection error ("transport error"), not
                    // sent by etcd.
                    || (status.code() == Code::Unknown
                        && std::error::Error::source(status).is_some())
            }
            _ => false,
        }
    }
}

impl Failure {
    /// If this is a TLS handshake that failed for good (a certificate not trusted by one
    /// side or the other), what to check.
    pub(super) fn tls_refusal(&self) -> Option<&'static str> {
        let text = self.to_string();
        if text.contains("invalid peer certificate") {
            Some(
                "etcd's certificate is not trusted: use the CA that signed it (without one, \
                 the system's trust roots are used), and a certificate that names the host as \
                 written in the URL",
            )
        } else if text.contains("fatal alert") {
            Some(
                "etcd refused the client's certificate or its lack of one: an etcd started \
                 with --client-cert-auth wants a client certificate (and key) signed by a CA \
                 of its --trusted-ca-file",
            )
        } else if text.contains("native certs") || text.contains("NativeCertsNotFound") {
            Some("no trust roots found on this system: give the CA that signed etcd's certificate")
        } else {
            None
        }
    }

    /// Whether the request certainly never reached etcd, so that even a write can be sent
    /// again: the client could not connect (tonic hands a failed reconnect to the next
    /// request routed to that member), or the member refused it for having no leader
    /// (checked before the request is handled, as the client requires a leader).
    pub(super) fn never_sent(&self) -> bool {
        match self.status() {
            Some((Code::Unavailable, msg)) => {
                ["connect error", "tcp open error", "dns error", "no leader"]
                    .iter()
                    .any(|what| msg.contains(what))
            }
            _ => false,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Etcd(etcd_client::Error::GRpcStatus(status)) => {
                let text = format!("{} ({:?})", status.message(), status.code());
                // What the client saw underneath ("transport error" alone says little).
                f.write_str(&with_causes(text, std::error::Error::source(status)))
            }
            Failure::Etcd(etcd_client::Error::TransportError(e)) => {
                // tonic's own message is "transport error".
                let text = e.to_string();
                f.write_str(&with_causes(text, std::error::Error::source(e)))
            }
            Failure::Etcd(e) => write!(f, "{e}"),
            Failure::Timeout => write!(f, "no answer within {REQUEST_TIMEOUT:?}"),
        }
    }
}

/// `text`, then `: cause` for each cause in the chain from `source` that it does not already
/// say (causes often repeat their own source's message).
fn with_causes(mut text: String, mut source: Option<&(dyn std::error::Error + 'static)>) -> String {
    while let Some(cause) = source {
        let said = cause.to_string();
        if !said.is_empty() && !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}
