//! The etcd v3 backend: [`EtcdStore`], the state store kept in an etcd cluster.
//!
//! This is the store of a highly available Strata control plane: several control-plane
//! replicas share one etcd cluster (3 or 5 members), which keeps the state replicated and
//! survives the loss of a minority of its members. [`Store`]'s semantics are etcd v3's, so
//! this backend maps each call onto one etcd request (or a few, for listings).
//!
//! # Connecting
//!
//! [`EtcdOptions::parse`] reads the URL form
//! `etcd[s]://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...][/NAMESPACE]`; [`EtcdStore::connect`]
//! connects to every endpoint (requests are balanced over them; one that fails because its
//! member is down is retried, see below) and fails with [`StoreError::Open`] naming the
//! endpoints if no member answers a linearizable read within
//! [`EtcdOptions::connect_timeout`].
//!
//! - `etcd://` is plain-text gRPC (`http://` to every member).
//! - `etcds://` is gRPC over TLS (`https://` to every member; rustls, no OpenSSL). The
//!   members' certificates are checked against the CA of [`EtcdTls::ca_pem`], or the
//!   system's trust roots without one, and must name the host as written in the URL (a DNS
//!   name, or an IP address in the certificate's subject alternative names). With
//!   [`EtcdTls::client_cert_pem`] and [`EtcdTls::client_key_pem`] the client also presents
//!   a certificate: mutual TLS, for an etcd started with `--client-cert-auth` and
//!   `--trusted-ca-file`. [`EtcdTls::from_files`] reads the three PEM files (Strata's
//!   `--store-ca`, `--store-cert` and `--store-key`); [`EtcdOptions::with_tls`] sets them and
//!   refuses them for a plain `etcd://` URL. A member whose certificate is not trusted, or
//!   that refuses the client's (or the lack of one), fails the connect at once with
//!   [`StoreError::Open`] naming the endpoints and what the TLS handshake said.
//! - `USER:PASSWORD@` is etcd's own authentication (`etcdctl auth enable`), independent of
//!   TLS (and best only used over it, as the password crosses the network): the client
//!   authenticates and refreshes its token when it expires. With mutual TLS and etcd's
//!   authentication on, etcd takes the user from the client certificate's common name
//!   when no `USER:PASSWORD@` is given.
//!
//! # Namespaces
//!
//! A namespace such as `/strata` prefixes every key on the way in (`/envs/prod` is stored
//! as `/strata/envs/prod`) and is stripped on the way out (gets, listings, watch events,
//! conflicts), so several Strata clusters, or the conformance suite's fresh stores, can share
//! one etcd. In a namespaced store every key must start with `/` (Strata's keys all do), so
//! that the namespaces `/a` and `/ab` can never see each other's keys; a key without the
//! leading `/` is rejected with [`StoreError::InvalidKey`]. The empty namespace stores keys as
//! they are.
//!
//! # Mapping
//!
//! - [`KeyValue`]: etcd's `create_revision`, `mod_revision`, `version` and `lease` (etcd's
//!   lease 0 is `None`). Keys that are not UTF-8 (written by something else) are reported as
//!   [`StoreError::Backend`].
//! - [`Store::txn`]: one etcd `Txn`. Each [`Compare`](crate::Compare) is etcd's
//!   `mod_revision == N`; etcd reads an absent key's `mod_revision` as 0, so 0 means "absent"
//!   exactly as in [`Store`]. The failure branch reads every compared key in the same
//!   transaction, so [`TxnOutcome::Conflict`] names the first compare that really failed,
//!   without a second, racy read. A committed txn returns the response header's revision
//!   (etcd does not bump the revision for a txn that changes nothing).
//! - etcd refuses a txn that puts or deletes the same key twice ("duplicate key given in txn
//!   request"). Such a txn is answered like etcd would answer a valid one as far as it can:
//!   its compares are checked first (a failed compare is a `Conflict`, as on every backend),
//!   and only then is it rejected with [`StoreError::Backend`] naming the key. The embedded
//!   backend applies such ops in order; code meant to run on both should not write a key
//!   twice in one txn.
//! - [`Store::list_page`]: a range `[max(prefix, start_after + "\0"), prefix_end)` in key
//!   order with etcd's `limit`; `next` is set when etcd says there is `more`; the page's
//!   revision is the response header's. `limit` 0 and [`Store::list`] read in pages of
//!   [`LIST_PAGE`] keys, all at the first page's revision (etcd's `revision` option), so a
//!   listing of any size is one consistent snapshot and no response grows unbounded.
//! - [`Store::watch`]: an etcd watch over the prefix range from `from` (from 0: from the
//!   current revision + 1, read just before), with `prev_kv` so that deletes carry the value
//!   before. A watch whose start was compacted away fails with [`StoreError::Compacted`]
//!   (`oldest` is etcd's `compact_revision`); watch responses never split a revision, so the
//!   stream knows the next revision it owes the caller. If the stream breaks (a member
//!   restarts, the connection drops, the member loses its leader), it re-watches from that
//!   revision on any member that answers, dropping anything already delivered: no gap, no
//!   duplicate. It gives up with [`StoreError::Backend`] if no member lets it resume within
//!   [`WATCH_RESUME_TIMEOUT`], and ends with [`StoreError::Closed`] once the last handle to
//!   the store is dropped.
//! - [`Store::revision`]: the header revision of a linearizable count-only read.
//! - Leases: etcd leases have a granularity of one second. [`Store::grant_lease`] rounds the
//!   TTL up to whole seconds (at least 1), and etcd itself raises it to its minimum TTL
//!   (1.5 election timeouts, rounded up: 2 s with etcd's defaults), so short leases live
//!   longer than asked. [`Store::keep_alive`] is one request and response on a keep-alive
//!   stream; etcd answers TTL 0 for an unknown or expired lease, which is
//!   [`StoreError::LeaseNotFound`], as is revoking an unknown lease or putting a key with
//!   one.
//!
//! # Errors and timeouts
//!
//! Every request is bounded by [`REQUEST_TIMEOUT`]. etcd and transport errors become
//! [`StoreError::Backend`] naming the operation and key; when no member could be reached (or
//! none has a leader) they are [`StoreError::Unavailable`], whose message lists the
//! endpoints: the control plane answers those 503, which clients retry on another server. Reads (get, list, revision, keep-alive, opening a
//! watch) are retried while the cluster is unavailable, within that bound. Writes are retried
//! only when they certainly never reached etcd (no connection to the member, or the member
//! had no leader); a write whose answer was lost may have been applied, so it fails instead.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use etcd_client::proto::{PbEvent, PbKeyValue, PbResponseHeader, PbTxnOpResponse};
use etcd_client::{
    Certificate, Client, Compare as EtcdCompare, CompareOp, ConnectOptions, GetOptions, Identity,
    KvClient, LeaseClient, PutOptions, TlsOptions, TxnOp, WatchClient, WatchOptions,
};
use futures::StreamExt;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch as signal;
use tonic::Code;

use crate::{
    KeyValue, LeaseId, Op, Page, Revision, Store, StoreError, Txn, TxnOutcome, WatchEvent,
    WatchStream,
};

/// The URL form [`EtcdOptions::parse`] reads (`etcds://`: TLS).
pub const URL_FORM: &str = "etcd[s]://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...][/NAMESPACE]";

/// The [`EtcdOptions::connect_timeout`] that [`EtcdOptions::parse`] and [`EtcdOptions::new`]
/// give.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest any one request (or a listing's page) may take, retries included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a broken watch keeps trying to resume before it fails.
pub const WATCH_RESUME_TIMEOUT: Duration = Duration::from_secs(60);

/// How many keys a listing reads per request.
pub const LIST_PAGE: usize = 1000;

/// The largest gRPC message the client accepts (etcd's Go client's default).
const MAX_MESSAGE: usize = i32::MAX as usize;

/// HTTP/2 keep-alive: a ping every interval, the connection is dropped if one is not
/// answered within the timeout (so a silently dead member is noticed by watches).
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often an unavailable cluster is retried, at first and at most.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// Where and how to reach etcd. See [`EtcdOptions::parse`] for the URL form.
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdOptions {
    /// Client URLs of the members, `http://HOST:PORT`, or `https://HOST:PORT` for TLS (all
    /// alike; a bare `HOST:PORT` is taken as http, or https with [`EtcdOptions::tls`]).
    pub endpoints: Vec<String>,
    /// Prefix of every key, `""` (keys as they are) or like `/strata` (a trailing `/` is
    /// dropped and a missing leading one added).
    pub namespace: String,
    /// User and password, if etcd has authentication enabled.
    pub user: Option<(String, String)>,
    /// How long [`EtcdStore::connect`] waits for a member to answer.
    pub connect_timeout: Duration,
    /// TLS (`etcds://`), or `None` for plain text. `https://` endpoints without it use TLS
    /// with the system's trust roots and no client certificate.
    pub tls: Option<EtcdTls>,
}

/// TLS to etcd: whom to trust, and the client's certificate for mutual TLS. See the
/// [module docs](self#connecting).
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
    fn client_config(&self) -> Result<TlsOptions, String> {
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

impl fmt::Debug for EtcdOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdOptions")
            .field("endpoints", &self.endpoints)
            .field("namespace", &self.namespace)
            .field("user", &self.user.as_ref().map(|(user, _)| (user, "***")))
            .field("connect_timeout", &self.connect_timeout)
            .field("tls", &self.tls)
            .finish()
    }
}

impl EtcdOptions {
    /// Options for these endpoints, with no namespace, no user and the default timeout.
    pub fn new<I, S>(endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            namespace: String::new(),
            user: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            tls: None,
        }
    }

    /// Reads `etcd[s]://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...][/NAMESPACE]`.
    ///
    /// - `etcd://` connects in plain text (`http://` endpoints); `etcds://` with TLS
    ///   (`https://` endpoints, and [`EtcdOptions::tls`] set to trust the system's roots with
    ///   no client certificate: see [`EtcdOptions::with_tls`] for a CA and mutual TLS).
    /// - `HOST` is a name, an IPv4 address or an IPv6 address in brackets; `PORT` is
    ///   required (etcd's client port is usually 2379).
    /// - `USER:PASSWORD@` is optional; either may be percent-encoded (`%40` for `@`).
    /// - `NAMESPACE` is one or more `/`-separated segments of letters, digits, `-`, `_`, `.`
    ///   and `~`; `etcd://h:2379/strata/prod` prefixes every key with `/strata/prod`. Without
    ///   it (or with a lone `/`), keys are stored as they are.
    ///
    /// Fails with [`StoreError::Open`] naming the URL (its password masked), what is wrong
    /// and the expected form.
    pub fn parse(url: &str) -> Result<EtcdOptions, StoreError> {
        let fail = |reason: String| StoreError::Open {
            path: redact(url),
            reason: format!("{reason}; expected {URL_FORM}"),
        };
        let scheme = |scheme: &str| {
            url.get(..scheme.len())
                .filter(|s| s.eq_ignore_ascii_case(scheme))
                .map(|_| &url[scheme.len()..])
        };
        let (rest, tls) = match (scheme("etcd://"), scheme("etcds://")) {
            (Some(rest), _) => (rest, false),
            (None, Some(rest)) => (rest, true),
            (None, None) => {
                return Err(fail(
                    "not an etcd URL (it must start with etcd:// or, for TLS, etcds://)".into(),
                ))
            }
        };
        if rest.contains(['?', '#']) {
            return Err(fail("query strings and fragments are not supported".into()));
        }
        if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(fail("the URL contains whitespace".into()));
        }
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, ""),
        };
        let (user, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(parse_user(userinfo).map_err(fail)?), hosts),
            None => (None, authority),
        };
        if hosts.is_empty() {
            return Err(fail("no HOST:PORT given".into()));
        }
        let url_scheme = if tls { "https" } else { "http" };
        let endpoints = hosts
            .split(',')
            .map(|hostport| parse_endpoint(hostport, url_scheme))
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail)?;
        let namespace = parse_namespace(path).map_err(fail)?;
        Ok(EtcdOptions {
            endpoints,
            namespace,
            user,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            tls: tls.then(EtcdTls::default),
        })
    }

    /// These options with `tls` (a CA to trust, a client certificate): only for TLS ones
    /// (`etcds://`: `https://` or bare endpoints). For plain-text ones (`etcd://`, whose
    /// endpoints are `http://`) it fails with [`StoreError::Open`] saying to use `etcds://`.
    pub fn with_tls(mut self, tls: EtcdTls) -> Result<EtcdOptions, StoreError> {
        if let Some(plain) = self.endpoints.iter().find(|e| is_http(e)) {
            return Err(StoreError::Open {
                path: self.display_url(),
                reason: plain_text_with_tls(plain),
            });
        }
        self.tls = Some(tls);
        Ok(self)
    }

    /// Whether these options connect with TLS.
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some() || self.endpoints.iter().any(|e| is_https(e))
    }

    /// The options as an `etcd://` (or `etcds://`) URL, the password masked (for messages).
    pub fn display_url(&self) -> String {
        let hosts: Vec<&str> = self
            .endpoints
            .iter()
            .map(|e| {
                e.strip_prefix("http://")
                    .or_else(|| e.strip_prefix("https://"))
                    .unwrap_or(e)
            })
            .collect();
        let user = match &self.user {
            Some((user, _)) => format!("{user}:***@"),
            None => String::new(),
        };
        format!(
            "{}://{user}{}{}",
            if self.uses_tls() { "etcds" } else { "etcd" },
            hosts.join(","),
            normalize_namespace(&self.namespace)
        )
    }
}

fn is_https(endpoint: &str) -> bool {
    endpoint
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
}

fn is_http(endpoint: &str) -> bool {
    endpoint
        .get(..7)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"))
}

fn plain_text_with_tls(endpoint: &str) -> String {
    format!(
        "TLS settings (a CA or a client certificate) were given for the plain-text endpoint \
         {endpoint}; use an etcds:// URL (https:// endpoints) to connect with TLS"
    )
}

fn parse_user(userinfo: &str) -> Result<(String, String), String> {
    let Some((user, password)) = userinfo.split_once(':') else {
        return Err(format!(
            "the credentials {:?} are not USER:PASSWORD",
            userinfo
        ));
    };
    let user = percent_decode(user).ok_or("the user name has a bad %-escape")?;
    let password = percent_decode(password).ok_or("the password has a bad %-escape")?;
    if user.is_empty() {
        return Err("the user name is empty".into());
    }
    Ok((user, password))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn parse_endpoint(hostport: &str, scheme: &str) -> Result<String, String> {
    if hostport.is_empty() {
        return Err("an empty HOST:PORT (two commas in a row, or a trailing comma)".into());
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (addr, rest) = v6
            .split_once(']')
            .ok_or_else(|| format!("{hostport:?}: an IPv6 address needs its closing ]"))?;
        addr.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("{hostport:?}: {addr:?} is not an IPv6 address"))?;
        let port = rest
            .strip_prefix(':')
            .ok_or_else(|| format!("{hostport:?} has no :PORT"))?;
        (&hostport[..addr.len() + 2], port)
    } else {
        let (host, port) = hostport
            .rsplit_once(':')
            .ok_or_else(|| format!("{hostport:?} has no :PORT"))?;
        if host.is_empty() {
            return Err(format!("{hostport:?} has no HOST"));
        }
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
        if !host.chars().all(valid) {
            return Err(format!(
                "{hostport:?}: {host:?} is not a host name or IPv4 address (IPv6 goes in [])"
            ));
        }
        (host, port)
    };
    let digits = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    match port.parse::<u16>() {
        Ok(port) if digits && port > 0 => Ok(format!("{scheme}://{host}:{port}")),
        _ => Err(format!("{hostport:?}: {port:?} is not a port (1-65535)")),
    }
}

fn parse_namespace(path: &str) -> Result<String, String> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    for segment in trimmed.split('/') {
        if segment.is_empty() {
            return Err(format!("the namespace {path:?} has an empty segment (//)"));
        }
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~');
        if !segment.chars().all(valid) {
            return Err(format!(
                "the namespace {path:?} may only use letters, digits, '-', '_', '.', '~' and '/'"
            ));
        }
    }
    Ok(format!("/{trimmed}"))
}

/// `url` with the password (between `USER:` and `@`) masked.
fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let authority_end = url[scheme_end..]
        .find('/')
        .map_or(url.len(), |i| scheme_end + i);
    let authority = &url[scheme_end..authority_end];
    match authority.rfind('@') {
        Some(at) => match authority[..at].find(':') {
            Some(colon) => format!(
                "{}{}:***{}",
                &url[..scheme_end],
                &authority[..colon],
                &url[scheme_end + at..]
            ),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// `""`, or `/segments` without a trailing `/`.
fn normalize_namespace(namespace: &str) -> String {
    let trimmed = namespace.trim_end_matches('/');
    if trimmed.is_empty() || trimmed.starts_with('/') {
        trimmed.to_owned()
    } else {
        format!("/{trimmed}")
    }
}

/// The end of the range of keys that start with `prefix` (`"\0"`: to the end of the keyspace).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Whether `key` lies before the range end `end` (`"\0"` is the end of the keyspace).
fn before_end(key: &[u8], end: &[u8]) -> bool {
    end == [0] || key < end
}

// ---------------------------------------------------------------------------------------
// Conversions and errors.

fn rev_out(revision: i64) -> Revision {
    Revision::try_from(revision).unwrap_or(0)
}

/// A revision for etcd; ones past `i64::MAX` cannot exist and saturate.
fn rev_in(revision: Revision) -> i64 {
    i64::try_from(revision).unwrap_or(i64::MAX)
}

fn lease_out(lease: i64) -> Option<LeaseId> {
    LeaseId::try_from(lease).ok().filter(|&id| id != 0)
}

/// A lease id for etcd, or `None` if no etcd lease can have it.
fn lease_in(lease: LeaseId) -> Option<i64> {
    i64::try_from(lease).ok().filter(|&id| id > 0)
}

fn header_revision(header: Option<&PbResponseHeader>, what: &str) -> Result<Revision, StoreError> {
    header
        .map(|h| rev_out(h.revision))
        .ok_or_else(|| StoreError::Backend(format!("etcd {what}: the response has no header")))
}

/// What went wrong with a request.
enum Failure {
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

    fn is_lease_not_found(&self) -> bool {
        match self {
            Failure::Etcd(etcd_client::Error::LeaseKeepAliveError(msg)) => msg == "lease not found",
            _ => {
                matches!(self.status(), Some((Code::NotFound, msg)) if msg.contains("lease not found"))
            }
        }
    }

    fn is_compacted(&self) -> bool {
        matches!(self.status(), Some((Code::OutOfRange, msg)) if msg.contains("compacted"))
    }

    fn is_future_revision(&self) -> bool {
        matches!(self.status(), Some((Code::OutOfRange, msg)) if msg.contains("future revision"))
    }

    /// Whether the cluster could not be reached or could not serve (no leader): worth
    /// retrying on another member.
    fn is_unavailable(&self) -> bool {
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
    fn tls_refusal(&self) -> Option<&'static str> {
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
    fn never_sent(&self) -> bool {
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

// ---------------------------------------------------------------------------------------
// The store.

/// The etcd [`Store`]. See the [module docs](self).
///
/// Cloning is cheap and shares the connection. Open watches end with [`StoreError::Closed`]
/// once the last clone is dropped.
#[derive(Clone)]
pub struct EtcdStore {
    shared: Arc<Shared>,
    /// Dropped with the last clone, which tells the watches.
    _alive: Arc<signal::Sender<()>>,
}

/// What the store and its watches use.
struct Shared {
    kv: KvClient,
    watch: WatchClient,
    lease: LeaseClient,
    /// `""` or `/segments`.
    namespace: String,
    /// The endpoints, for messages.
    endpoints: String,
    /// Becomes "changed with an error" when the last store handle is dropped.
    closed: signal::Receiver<()>,
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.shared.endpoints)
            .field("namespace", &self.shared.namespace)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects to the cluster and checks that it answers (a linearizable read, so a member
    /// with a leader) within `options.connect_timeout`; otherwise fails with
    /// [`StoreError::Open`] naming the endpoints. Must be called within a tokio runtime.
    pub async fn connect(options: EtcdOptions) -> Result<EtcdStore, StoreError> {
        let namespace = normalize_namespace(&options.namespace);
        let url = EtcdOptions {
            namespace: namespace.clone(),
            ..options.clone()
        }
        .display_url();
        let open = |reason: String| StoreError::Open {
            path: url.clone(),
            reason,
        };
        if options.endpoints.is_empty() {
            return Err(open("no etcd endpoint given".into()));
        }
        let https = options.endpoints.iter().filter(|e| is_https(e)).count();
        if https > 0 && https < options.endpoints.len() {
            return Err(open(format!(
                "some endpoints are https:// and some not ({}): all must be alike",
                options.endpoints.join(", ")
            )));
        }
        let tls = match (&options.tls, https > 0) {
            (Some(tls), _) => Some(tls.clone()),
            (None, true) => Some(EtcdTls::default()),
            (None, false) => None,
        };
        // etcd-client takes a bare HOST:PORT as https when given TLS settings.
        let endpoints_list: Vec<String> = match &tls {
            Some(_) => options
                .endpoints
                .iter()
                .map(|e| {
                    if is_https(e) || is_http(e) {
                        e.clone()
                    } else {
                        format!("https://{e}")
                    }
                })
                .collect(),
            None => options.endpoints.clone(),
        };
        let endpoints = endpoints_list.join(", ");
        let timeout = options.connect_timeout.max(Duration::from_millis(1));
        let deadline = Instant::now() + timeout;
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_keep_alive(KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT)
            .with_require_leader(true);
        if let Some((user, password)) = &options.user {
            connect = connect
                .with_user(user.clone(), password.clone())
                .with_auto_token_refresh(true);
        }
        if let Some(tls) = &tls {
            if let Some(plain) = endpoints_list.iter().find(|e| is_http(e)) {
                return Err(open(plain_text_with_tls(plain)));
            }
            connect = connect.with_tls(tls.client_config().map_err(open)?);
        }
        // A TLS handshake that failed for good (a certificate not trusted by one side or
        // the other) fails the connect at once.
        let tls_refused = |failure: &Failure| {
            let hint = failure.tls_refusal().filter(|_| tls.is_some())?;
            Some(format!(
                "TLS with etcd at {endpoints} failed: {failure}\n  hint: {hint}"
            ))
        };
        // A server that refuses a client certificate may close the connection before its TLS
        // alert reaches us: say what to check then too.
        let tls_hint = if tls.is_some() {
            "\n  hint: over TLS, a member that closes the connection during the handshake usually \
             refused the client's certificate (an etcd started with --client-cert-auth wants one \
             signed by a CA of its --trusted-ca-file); also check that etcd speaks TLS there"
        } else {
            ""
        };
        let no_answer = |detail: String| {
            open(format!(
                "no etcd member answered within {timeout:?} (endpoints: {endpoints}){detail}{tls_hint}"
            ))
        };
        let client =
            match tokio::time::timeout(timeout, Client::connect(&endpoints_list, Some(connect)))
                .await
            {
                Ok(Ok(client)) => client,
                Ok(Err(e)) => {
                    // Setting TLS up, or authenticating (the first request, with a user).
                    let failure = Failure::Etcd(e);
                    if let Some(refused) = tls_refused(&failure) {
                        return Err(open(refused));
                    }
                    let hint = if tls.is_some() && failure.to_string().contains("KeyMismatch") {
                        "\n  hint: the client's private key is not the key of its certificate"
                    } else {
                        ""
                    };
                    return Err(open(format!(
                        "cannot connect to etcd at {endpoints}: {failure}{hint}"
                    )));
                }
                Err(_) => return Err(no_answer(String::new())),
            };
        let (alive, closed) = signal::channel(());
        let store = EtcdStore {
            shared: Arc::new(Shared {
                kv: client.kv_client().max_decoding_message_size(MAX_MESSAGE),
                watch: client.watch_client().max_decoding_message_size(MAX_MESSAGE),
                lease: client.lease_client(),
                namespace,
                endpoints: endpoints.clone(),
                closed,
            }),
            _alive: Arc::new(alive),
        };
        // Any answer proves a member with a leader is there; retry until the deadline, as
        // the first connection may still be coming up.
        let mut last = String::new();
        let mut backoff = RETRY_FIRST;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let mut kv = store.shared.kv.clone();
            let probe = kv.get(
                store.shared.probe_key(),
                Some(GetOptions::new().with_count_only()),
            );
            match tokio::time::timeout(remaining, probe).await {
                Ok(Ok(_)) => break,
                Ok(Err(e)) => {
                    let failure = Failure::Etcd(e);
                    if let Some(refused) = tls_refused(&failure) {
                        return Err(open(refused));
                    }
                    if !failure.is_unavailable() {
                        return Err(open(format!("etcd at {endpoints} refused: {failure}")));
                    }
                    last = format!(": {failure}");
                }
                Err(_) => return Err(no_answer(last)),
            }
            if Instant::now() + backoff >= deadline {
                return Err(no_answer(last));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(RETRY_MAX);
        }
        tracing::debug!(url = %url, "connected to etcd");
        Ok(store)
    }

    /// Parses `url` ([`EtcdOptions::parse`]) and connects.
    pub async fn connect_url(url: &str) -> Result<EtcdStore, StoreError> {
        Self::connect(EtcdOptions::parse(url)?).await
    }

    /// The namespace every key is prefixed with (`""`: none).
    pub fn namespace(&self) -> &str {
        &self.shared.namespace
    }
}

impl Shared {
    /// The etcd key of `key`.
    fn key_in(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        if self.namespace.is_empty() {
            if key.is_empty() {
                return Err(StoreError::InvalidKey(
                    "etcd cannot store the empty key".to_owned(),
                ));
            }
            return Ok(key.as_bytes().to_vec());
        }
        if !key.starts_with('/') {
            return Err(StoreError::InvalidKey(format!(
                "key {key:?} does not start with '/', which every key of the etcd store \
                 namespaced {} must",
                self.namespace
            )));
        }
        let mut raw = Vec::with_capacity(self.namespace.len() + key.len());
        raw.extend_from_slice(self.namespace.as_bytes());
        raw.extend_from_slice(key.as_bytes());
        Ok(raw)
    }

    /// The store key of the etcd key `raw`.
    fn key_out(&self, raw: &[u8]) -> Result<String, StoreError> {
        let key = raw.strip_prefix(self.namespace.as_bytes()).ok_or_else(|| {
            StoreError::Backend(format!(
                "etcd returned the key {:?}, outside the namespace {}",
                String::from_utf8_lossy(raw),
                self.namespace
            ))
        })?;
        String::from_utf8(key.to_vec()).map_err(|_| {
            StoreError::Backend(format!(
                "etcd key {:?} is not UTF-8",
                String::from_utf8_lossy(raw)
            ))
        })
    }

    fn kv_out(&self, kv: PbKeyValue) -> Result<KeyValue, StoreError> {
        Ok(KeyValue {
            key: self.key_out(&kv.key)?,
            value: kv.value,
            create_revision: rev_out(kv.create_revision),
            mod_revision: rev_out(kv.mod_revision),
            version: u64::try_from(kv.version).unwrap_or(0),
            lease: lease_out(kv.lease),
        })
    }

    fn event_out(&self, event: PbEvent) -> Result<WatchEvent, StoreError> {
        let kv = event
            .kv
            .ok_or_else(|| StoreError::Backend("etcd sent a watch event without a key".into()))?;
        match event.r#type {
            0 => Ok(WatchEvent::Put(self.kv_out(kv)?)),
            1 => Ok(WatchEvent::Delete {
                key: self.key_out(&kv.key)?,
                revision: rev_out(kv.mod_revision),
                prev: event.prev_kv.map(|prev| self.kv_out(prev)).transpose()?,
            }),
            other => Err(StoreError::Backend(format!(
                "etcd sent a watch event of unknown type {other} for {:?}",
                String::from_utf8_lossy(&kv.key)
            ))),
        }
    }

    /// The etcd range `[key, end)` of the keys under `prefix`, or `None` if no key of this
    /// namespace can start with `prefix`.
    fn range(&self, prefix: &str) -> Option<(Vec<u8>, Vec<u8>)> {
        if self.namespace.is_empty() {
            if prefix.is_empty() {
                return Some((vec![0], vec![0]));
            }
            let key = prefix.as_bytes().to_vec();
            let end = prefix_end(&key);
            return Some((key, end));
        }
        let key = match prefix {
            "" => format!("{}/", self.namespace),
            p if p.starts_with('/') => format!("{}{p}", self.namespace),
            _ => return None,
        }
        .into_bytes();
        let end = prefix_end(&key);
        Some((key, end))
    }

    /// A key for reads that only want the response header.
    fn probe_key(&self) -> Vec<u8> {
        if self.namespace.is_empty() {
            b"/".to_vec()
        } else {
            self.namespace.as_bytes().to_vec()
        }
    }

    /// Runs `request` within [`REQUEST_TIMEOUT`], again while the cluster is unavailable
    /// (until that deadline) if it is `idempotent` or certainly was not sent.
    async fn call<T, F, Fut>(&self, idempotent: bool, mut request: F) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        let mut backoff = RETRY_FIRST;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let failure = match tokio::time::timeout(remaining, request()).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) => Failure::Etcd(e),
                Err(_) => return Err(Failure::Timeout),
            };
            let retry = failure.is_unavailable() && (idempotent || failure.never_sent());
            if !retry || Instant::now() + backoff >= deadline {
                return Err(failure);
            }
            tracing::debug!(error = %failure, "etcd unavailable; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(RETRY_MAX);
        }
    }

    /// `failure` of the operation `what` (like "get of /k") as a [`StoreError`].
    fn fail(&self, what: &str, failure: Failure) -> StoreError {
        if failure.is_unavailable() {
            StoreError::Unavailable(format!(
                "etcd {what} failed: the cluster is unavailable (endpoints: {}): {failure}",
                self.endpoints
            ))
        } else {
            StoreError::Backend(format!("etcd {what} failed: {failure}"))
        }
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        let resp = self
            .call(true, || {
                let (mut kv, key) = (self.kv.clone(), self.probe_key());
                async move { kv.get(key, Some(GetOptions::new().with_count_only())).await }
            })
            .await
            .map_err(|f| self.fail("revision read", f))?;
        header_revision(resp.0.header.as_ref(), "revision read")
    }

    /// Every key in `[start, end)`, read in pages at one revision.
    async fn read_all(&self, start: Vec<u8>, end: Vec<u8>, what: &str) -> Result<Page, StoreError> {
        const ATTEMPTS: usize = 3;
        'attempt: for _ in 0..ATTEMPTS {
            let mut kvs = Vec::new();
            let mut revision: Option<i64> = None;
            let mut from = start.clone();
            loop {
                let mut options = GetOptions::new()
                    .with_range(end.clone())
                    .with_limit(i64::try_from(LIST_PAGE).unwrap_or(i64::MAX));
                if let Some(revision) = revision {
                    options = options.with_revision(revision);
                }
                let resp = match self
                    .call(true, || {
                        let (mut kv, key, options) =
                            (self.kv.clone(), from.clone(), options.clone());
                        async move { kv.get(key, Some(options)).await }
                    })
                    .await
                {
                    Ok(resp) => resp.0,
                    // The history at our revision was compacted between two pages: start over.
                    Err(f) if revision.is_some() && f.is_compacted() => continue 'attempt,
                    Err(f) => return Err(self.fail(what, f)),
                };
                let at = match revision {
                    Some(at) => at,
                    None => {
                        let at = rev_in(header_revision(resp.header.as_ref(), what)?);
                        revision = Some(at);
                        at
                    }
                };
                if let Some(last) = resp.kvs.last() {
                    from = last.key.clone();
                    from.push(0);
                }
                let done = !resp.more || resp.kvs.is_empty();
                for kv in resp.kvs {
                    kvs.push(self.kv_out(kv)?);
                }
                if done {
                    return Ok(Page {
                        kvs,
                        revision: rev_out(at),
                        next: None,
                    });
                }
            }
        }
        Err(StoreError::Backend(format!(
            "etcd {what} failed: the revision being listed was compacted {ATTEMPTS} times in a row"
        )))
    }

    /// The first of `leases` that etcd does not know (for a txn etcd refused with "lease not
    /// found").
    async fn missing_lease(&self, leases: &[LeaseId]) -> LeaseId {
        if let [only] = leases {
            return *only;
        }
        for &lease in leases {
            let Some(id) = lease_in(lease) else {
                return lease;
            };
            let ttl = self
                .call(true, || {
                    let mut lease = self.lease.clone();
                    async move { lease.time_to_live(id, None).await }
                })
                .await;
            if matches!(ttl, Ok(resp) if resp.ttl() < 0) {
                return lease;
            }
        }
        leases.first().copied().unwrap_or(0)
    }

    /// Sends one etcd txn: `compares` (store key, etcd key, mod_revision), `ops` if they hold,
    /// else a read of every compared key to name the first one that failed.
    async fn run_txn(
        &self,
        compares: &[(String, Vec<u8>, Revision)],
        ops: Vec<TxnOp>,
        leases: &[LeaseId],
        what: &str,
    ) -> Result<TxnOutcome, StoreError> {
        let mut probed: Vec<&[u8]> = Vec::new();
        for (_, raw, _) in compares {
            if !probed.contains(&raw.as_slice()) {
                probed.push(raw);
            }
        }
        let mut txn = etcd_client::Txn::new();
        if !compares.is_empty() {
            txn = txn.when(
                compares
                    .iter()
                    .map(|(_, raw, rev)| {
                        EtcdCompare::mod_revision(raw.clone(), CompareOp::Equal, rev_in(*rev))
                    })
                    .collect::<Vec<_>>(),
            );
        }
        txn = txn.and_then(ops);
        if !compares.is_empty() {
            txn = txn.or_else(
                probed
                    .iter()
                    .map(|raw| TxnOp::get(raw.to_vec(), Some(GetOptions::new().with_keys_only())))
                    .collect::<Vec<_>>(),
            );
        }
        let resp = match self
            .call(false, || {
                let (mut kv, txn) = (self.kv.clone(), txn.clone());
                async move { kv.txn(txn).await }
            })
            .await
        {
            Ok(resp) => resp.0,
            Err(f) if f.is_lease_not_found() => {
                return Err(StoreError::LeaseNotFound(self.missing_lease(leases).await))
            }
            Err(f) => return Err(self.fail(what, f)),
        };
        let revision = header_revision(resp.header.as_ref(), what)?;
        if resp.succeeded {
            return Ok(TxnOutcome::Committed(revision));
        }
        // The failure branch read every compared key, at the revision the compares saw.
        let mut actual = Vec::with_capacity(probed.len());
        for (raw, op) in probed.iter().zip(&resp.responses) {
            match &op.response {
                Some(PbTxnOpResponse::ResponseRange(range)) => {
                    let at = range.kvs.first().map_or(0, |kv| rev_out(kv.mod_revision));
                    actual.push((*raw, at));
                }
                _ => {
                    return Err(StoreError::Backend(format!(
                        "etcd {what}: the failed txn did not return the compared keys"
                    )))
                }
            }
        }
        let failed = compares.iter().find(|(_, raw, expected)| {
            actual
                .iter()
                .find(|(key, _)| *key == raw.as_slice())
                .is_none_or(|(_, at)| at != expected)
        });
        // A compare failed even if the reads cannot tell which (they always can).
        let key = failed
            .or(compares.first())
            .map(|(key, _, _)| key.clone())
            .unwrap_or_default();
        Ok(TxnOutcome::Conflict { key })
    }
}

fn describe_keys<'a>(keys: impl Iterator<Item = &'a str>) -> String {
    let mut seen = HashSet::new();
    let keys: Vec<&str> = keys.filter(|key| seen.insert(*key)).collect();
    match keys.len() {
        0 => "no keys".to_owned(),
        1..=4 => keys.join(", "),
        n => format!("{} and {} more keys", keys[..3].join(", "), n - 3),
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let shared = &*self.shared;
        let raw = shared.key_in(key)?;
        let resp = shared
            .call(true, || {
                let (mut kv, key) = (shared.kv.clone(), raw.clone());
                async move { kv.get(key, None).await }
            })
            .await
            .map_err(|f| shared.fail(&format!("get of {key}"), f))?;
        resp.0
            .kvs
            .into_iter()
            .next()
            .map(|kv| shared.kv_out(kv))
            .transpose()
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        let shared = &*self.shared;
        let what =
            format!(
                "txn on {}",
                describe_keys(txn.compares.iter().map(|c| c.key.as_str()).chain(
                    txn.ops.iter().map(|op| match op {
                        Op::Put { key, .. } | Op::Delete { key } => key.as_str(),
                    })
                ))
            );
        let mut compares = Vec::with_capacity(txn.compares.len());
        for compare in txn.compares {
            let raw = shared.key_in(&compare.key)?;
            compares.push((compare.key, raw, compare.mod_revision));
        }
        let mut ops = Vec::with_capacity(txn.ops.len());
        let mut written = HashSet::new();
        let mut leases = Vec::new();
        // What makes the ops impossible for etcd: a key written twice, a lease id no etcd
        // lease can have.
        let mut impossible: Option<StoreError> = None;
        for op in txn.ops {
            let key = match &op {
                Op::Put { key, .. } | Op::Delete { key } => key.clone(),
            };
            let raw = shared.key_in(&key)?;
            if !written.insert(raw.clone()) && impossible.is_none() {
                impossible = Some(StoreError::Backend(format!(
                    "etcd {what} failed: it writes {key} more than once, and etcd allows one \
                     put or delete of a key per transaction"
                )));
            }
            match op {
                Op::Put { value, lease, .. } => {
                    let mut options = PutOptions::new();
                    if let Some(lease) = lease {
                        match lease_in(lease) {
                            Some(id) => options = options.with_lease(id),
                            None => {
                                impossible.get_or_insert(StoreError::LeaseNotFound(lease));
                            }
                        }
                        if !leases.contains(&lease) {
                            leases.push(lease);
                        }
                    }
                    ops.push(TxnOp::put(raw, value, Some(options)));
                }
                Op::Delete { .. } => ops.push(TxnOp::delete(raw, None)),
            }
        }
        if let Some(error) = impossible {
            // A failed compare is still a conflict, as etcd evaluates compares before ops.
            return match shared.run_txn(&compares, Vec::new(), &[], &what).await? {
                TxnOutcome::Conflict { key } => Ok(TxnOutcome::Conflict { key }),
                TxnOutcome::Committed(_) => Err(error),
            };
        }
        shared.run_txn(&compares, ops, &leases, &what).await
    }

    async fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let shared = &*self.shared;
        let what = format!("list of {prefix}");
        let empty = || async {
            Ok(Page {
                kvs: Vec::new(),
                revision: shared.revision().await?,
                next: None,
            })
        };
        let Some((mut start, end)) = shared.range(prefix) else {
            return empty().await;
        };
        if let Some(after) = start_after {
            // The first key after `after` is `after` + "\0"; the namespace keeps the order.
            let mut first = shared.namespace.as_bytes().to_vec();
            first.extend_from_slice(after.as_bytes());
            first.push(0);
            if first > start {
                start = first;
            }
        }
        if !before_end(&start, &end) {
            return empty().await;
        }
        if limit == 0 {
            return shared.read_all(start, end, &what).await;
        }
        let options = GetOptions::new()
            .with_range(end)
            .with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        let resp = shared
            .call(true, || {
                let (mut kv, key, options) = (shared.kv.clone(), start.clone(), options.clone());
                async move { kv.get(key, Some(options)).await }
            })
            .await
            .map_err(|f| shared.fail(&what, f))?
            .0;
        let revision = header_revision(resp.header.as_ref(), &what)?;
        let kvs = resp
            .kvs
            .into_iter()
            .map(|kv| shared.kv_out(kv))
            .collect::<Result<Vec<_>, _>>()?;
        let next = if resp.more {
            kvs.last().map(|kv| kv.key.clone())
        } else {
            None
        };
        Ok(Page {
            kvs,
            revision,
            next,
        })
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream, StoreError> {
        let Some(range) = self.shared.range(prefix) else {
            // No key of this namespace can match: a watch that only ends with the store.
            let mut closed = self.shared.closed.clone();
            return Ok(futures::stream::once(async move {
                while closed.changed().await.is_ok() {}
                Err(StoreError::Closed)
            })
            .boxed());
        };
        let next = if from == 0 {
            self.shared.revision().await? + 1
        } else {
            from
        };
        let mut watcher = Watcher {
            shared: Arc::clone(&self.shared),
            closed: self.shared.closed.clone(),
            prefix: prefix.to_owned(),
            range,
            next,
            stream: None,
            buffer: VecDeque::new(),
            broken: String::new(),
            fatal: None,
            done: false,
        };
        watcher.stream = Some(watcher.open().await?);
        Ok(futures::stream::unfold(watcher, |mut watcher| async move {
            let item = watcher.next_item().await?;
            Some((item, watcher))
        })
        .boxed())
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        self.shared.revision().await
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        let shared = &*self.shared;
        let seconds = i64::try_from(ttl.as_millis().div_ceil(1000).max(1)).unwrap_or(i64::MAX);
        let what = format!("grant of a {seconds}s lease");
        let resp = shared
            .call(false, || {
                let mut lease = shared.lease.clone();
                async move { lease.grant(seconds, None).await }
            })
            .await
            .map_err(|f| shared.fail(&what, f))?;
        if !resp.error().is_empty() {
            return Err(StoreError::Backend(format!(
                "etcd {what} failed: {}",
                resp.error()
            )));
        }
        lease_out(resp.id())
            .ok_or_else(|| StoreError::Backend(format!("etcd {what}: got lease id {}", resp.id())))
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        let shared = &*self.shared;
        let id = lease_in(lease).ok_or(StoreError::LeaseNotFound(lease))?;
        match shared
            .call(true, || {
                let mut lease = shared.lease.clone();
                async move { lease.keep_alive(id).await }
            })
            .await
        {
            // The first reply had a TTL (etcd-client checks it); dropping the keeper and its
            // stream ends the keep-alive stream.
            Ok(_) => Ok(()),
            Err(f) if f.is_lease_not_found() => Err(StoreError::LeaseNotFound(lease)),
            Err(f) => Err(shared.fail(&format!("keep-alive of lease {lease}"), f)),
        }
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        let shared = &*self.shared;
        let id = lease_in(lease).ok_or(StoreError::LeaseNotFound(lease))?;
        match shared
            .call(false, || {
                let mut lease = shared.lease.clone();
                async move { lease.revoke(id).await }
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(f) if f.is_lease_not_found() => Err(StoreError::LeaseNotFound(lease)),
            Err(f) => Err(shared.fail(&format!("revoke of lease {lease}"), f)),
        }
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError> {
        let shared = &*self.shared;
        let raw = shared.key_in(key)?;
        let what = format!("put of {key}");
        let resp = shared
            .call(false, || {
                let (mut kv, key, value) = (shared.kv.clone(), raw.clone(), value.clone());
                async move { kv.put(key, value, None).await }
            })
            .await
            .map_err(|f| shared.fail(&what, f))?;
        header_revision(resp.0.header.as_ref(), &what)
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let shared = &*self.shared;
        let raw = shared.key_in(key)?;
        let resp = shared
            .call(false, || {
                let (mut kv, key) = (shared.kv.clone(), raw.clone());
                async move { kv.delete(key, None).await }
            })
            .await
            .map_err(|f| shared.fail(&format!("delete of {key}"), f))?;
        Ok(resp.deleted() > 0)
    }

    /// One consistent read: pages of [`LIST_PAGE`] keys, all at the first page's revision.
    async fn list(&self, prefix: &str) -> Result<Page, StoreError> {
        self.list_page(prefix, None, 0).await
    }
}

// ---------------------------------------------------------------------------------------
// Watches.

/// The state of one [`Store::watch`] stream.
struct Watcher {
    shared: Arc<Shared>,
    closed: signal::Receiver<()>,
    prefix: String,
    /// The etcd range watched.
    range: (Vec<u8>, Vec<u8>),
    /// The first revision not yet delivered: everything before it was, in full (etcd never
    /// splits a revision's events over two responses unless asked to).
    next: Revision,
    /// The etcd watch; `None` once broken, until it is resumed.
    stream: Option<etcd_client::WatchStream>,
    /// Events received and not yet delivered.
    buffer: VecDeque<WatchEvent>,
    /// Why the etcd watch broke, while `stream` is `None`.
    broken: String,
    /// The error the stream ends with, once `buffer` is delivered.
    fatal: Option<StoreError>,
    /// Set once the stream has ended.
    done: bool,
}

/// What an etcd watch response means for the stream.
enum Absorbed {
    Ok,
    /// The etcd watch ended; resume it.
    Broken(String),
    /// The stream fails with this and ends.
    Fatal(StoreError),
}

impl Watcher {
    fn what(&self) -> String {
        format!("watch of {}", self.prefix)
    }

    /// Opens an etcd watch from [`Watcher::next`] and waits until etcd confirms it. Fails
    /// with [`StoreError::Compacted`] if that revision was compacted.
    async fn open(&self) -> Result<etcd_client::WatchStream, StoreError> {
        let shared = &*self.shared;
        let start = rev_in(self.next);
        // etcd reports a compacted start only after confirming the watch, and maybe not at
        // once; a read at that revision says so right away. (If a compaction sneaks in
        // between, the stream reports it as its first item.)
        let probe = GetOptions::new().with_count_only().with_revision(start);
        let compacted = match shared
            .call(true, || {
                let (mut kv, key, probe) = (shared.kv.clone(), self.range.0.clone(), probe.clone());
                async move { kv.get(key, Some(probe)).await }
            })
            .await
        {
            Ok(_) => false,
            Err(f) if f.is_compacted() => true,
            Err(f) if f.is_future_revision() => false,
            Err(f) => return Err(shared.fail(&self.what(), f)),
        };
        let options = WatchOptions::new()
            .with_range(self.range.1.clone())
            .with_start_revision(start)
            .with_prev_key();
        let mut stream = shared
            .call(true, || {
                let (mut watch, key, options) =
                    (shared.watch.clone(), self.range.0.clone(), options.clone());
                async move { watch.watch(key, Some(options)).await }
            })
            .await
            .map_err(|f| shared.fail(&self.what(), f))?;
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let resp = match tokio::time::timeout(remaining, stream.message()).await {
                Ok(Ok(Some(resp))) => resp.0,
                Ok(Ok(None)) => {
                    return Err(shared.fail(
                        &self.what(),
                        Failure::Etcd(etcd_client::Error::WatchError(
                            "the watch stream ended before etcd confirmed the watch".into(),
                        )),
                    ))
                }
                Ok(Err(e)) => return Err(shared.fail(&self.what(), Failure::Etcd(e))),
                Err(_) => return Err(shared.fail(&self.what(), Failure::Timeout)),
            };
            if resp.canceled {
                return Err(if resp.compact_revision > 0 {
                    StoreError::Compacted {
                        requested: self.next,
                        oldest: rev_out(resp.compact_revision),
                    }
                } else {
                    StoreError::Backend(format!(
                        "etcd refused the {}: {}",
                        self.what(),
                        resp.cancel_reason
                    ))
                });
            }
            if resp.created && !compacted {
                return Ok(stream);
            }
            // Compacted: etcd cancels the watch right after confirming it.
        }
    }

    /// Keeps trying to re-open the etcd watch from [`Watcher::next`], for at most
    /// [`WATCH_RESUME_TIMEOUT`].
    async fn resume(&self, why: &str) -> Result<etcd_client::WatchStream, StoreError> {
        tracing::warn!(prefix = %self.prefix, next = self.next, why, "etcd watch broke; resuming");
        let deadline = Instant::now() + WATCH_RESUME_TIMEOUT;
        let mut backoff = RETRY_FIRST * 2;
        let mut last = why.to_owned();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(backoff.min(remaining)).await;
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, self.open()).await {
                Ok(Ok(stream)) => {
                    tracing::info!(prefix = %self.prefix, next = self.next, "etcd watch resumed");
                    return Ok(stream);
                }
                Ok(Err(e @ StoreError::Compacted { .. })) => return Err(e),
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => {}
            }
            if Instant::now() >= deadline {
                return Err(StoreError::Backend(format!(
                    "etcd {} broke ({why}) and could not resume from revision {} within \
                     {WATCH_RESUME_TIMEOUT:?} (endpoints: {}): {last}",
                    self.what(),
                    self.next,
                    self.shared.endpoints
                )));
            }
            backoff = (backoff * 2).min(RETRY_MAX * 2);
        }
    }

    fn absorb(&mut self, resp: etcd_client::WatchResponse) -> Absorbed {
        let resp = resp.0;
        if resp.canceled {
            if resp.compact_revision > 0 {
                return Absorbed::Fatal(StoreError::Compacted {
                    requested: self.next,
                    oldest: rev_out(resp.compact_revision),
                });
            }
            return Absorbed::Broken(format!("canceled by etcd: {}", resp.cancel_reason));
        }
        let mut last = None;
        for event in resp.events {
            let event = match self.shared.event_out(event) {
                Ok(event) => event,
                Err(e) => return Absorbed::Fatal(e),
            };
            // Already delivered before the watch was resumed.
            if event.revision() < self.next {
                continue;
            }
            last = Some(event.revision());
            self.buffer.push_back(event);
        }
        if let Some(last) = last {
            if !resp.fragment {
                self.next = last + 1;
            }
        }
        Absorbed::Ok
    }

    async fn next_item(&mut self) -> Option<Result<WatchEvent, StoreError>> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Some(Ok(event));
            }
            if let Some(error) = self.fatal.take() {
                self.done = true;
                return Some(Err(error));
            }
            if self.done {
                return None;
            }
            let mut closed = self.closed.clone();
            let outcome = match self.stream.as_mut() {
                None => {
                    let why = std::mem::take(&mut self.broken);
                    let resumed = tokio::select! {
                        biased;
                        () = store_dropped(&mut closed) => Err(StoreError::Closed),
                        resumed = self.resume(&why) => resumed,
                    };
                    match resumed {
                        Ok(stream) => {
                            self.stream = Some(stream);
                            continue;
                        }
                        Err(e) => Absorbed::Fatal(e),
                    }
                }
                Some(stream) => {
                    let message = tokio::select! {
                        biased;
                        () = store_dropped(&mut closed) => None,
                        message = stream.message() => Some(message),
                    };
                    match message {
                        None => Absorbed::Fatal(StoreError::Closed),
                        Some(Ok(Some(resp))) => self.absorb(resp),
                        Some(Ok(None)) => Absorbed::Broken("the stream ended".into()),
                        Some(Err(e)) => Absorbed::Broken(Failure::Etcd(e).to_string()),
                    }
                }
            };
            match outcome {
                Absorbed::Ok => {}
                Absorbed::Broken(why) => {
                    self.stream = None;
                    self.broken = why;
                }
                Absorbed::Fatal(error) => {
                    // Events of the same response that converted are delivered first.
                    self.stream = None;
                    self.fatal = Some(error);
                }
            }
        }
    }
}

/// Resolves when the last handle to the store is dropped.
async fn store_dropped(closed: &mut signal::Receiver<()>) {
    while closed.changed().await.is_ok() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte_below_ff() {
        assert_eq!(prefix_end(b"/a/"), b"/a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), [0]);
        assert_eq!(prefix_end(b""), [0]);
        assert!(before_end(b"zzz", &[0]));
        assert!(before_end(b"/a/zzz", b"/a0") && !before_end(b"/a0", b"/a0"));
    }

    #[test]
    fn namespaces_normalize() {
        assert_eq!(normalize_namespace(""), "");
        assert_eq!(normalize_namespace("/"), "");
        assert_eq!(normalize_namespace("strata/"), "/strata");
        assert_eq!(normalize_namespace("/a/b"), "/a/b");
    }

    #[test]
    fn redact_masks_only_the_password() {
        assert_eq!(redact("etcd://u:p@h:1/ns"), "etcd://u:***@h:1/ns");
        assert_eq!(redact("etcd://u:p@w@h:1"), "etcd://u:***@h:1");
        assert_eq!(redact("etcd://h:1/a@b"), "etcd://h:1/a@b");
        assert_eq!(redact("etcd://u@h:1"), "etcd://u@h:1");
        assert_eq!(redact("nonsense"), "nonsense");
    }

    #[test]
    fn conversions_saturate_instead_of_wrapping() {
        assert_eq!(rev_in(u64::MAX), i64::MAX);
        assert_eq!(rev_out(-1), 0);
        assert_eq!(lease_out(0), None);
        assert_eq!(lease_in(0), None);
        assert_eq!(lease_in(u64::MAX), None);
        assert_eq!(lease_in(7), Some(7));
    }

    #[test]
    fn describe_keys_dedups_and_shortens() {
        let keys = ["/a", "/b", "/a", "/c", "/d", "/e"];
        assert_eq!(describe_keys(keys[..3].iter().copied()), "/a, /b");
        assert_eq!(
            describe_keys(keys.iter().copied()),
            "/a, /b, /c and 2 more keys"
        );
    }
}
