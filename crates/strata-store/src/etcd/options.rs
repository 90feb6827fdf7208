//! Where and how to reach etcd: [`EtcdOptions`], read from an `etcd[s]://` URL, and the
//! checks of its parts (endpoints, credentials, namespace) with messages that say what is
//! wrong. See the [parent module](super#connecting) for the URL form.

use std::fmt;
use std::time::Duration;

use super::{EtcdTls, DEFAULT_CONNECT_TIMEOUT, URL_FORM};
use crate::StoreError;

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

pub(super) fn is_https(endpoint: &str) -> bool {
    endpoint
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
}

pub(super) fn is_http(endpoint: &str) -> bool {
    endpoint
        .get(..7)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"))
}

pub(super) fn plain_text_with_tls(endpoint: &str) -> String {
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
pub(super) fn normalize_namespace(namespace: &str) -> String {
    let trimmed = namespace.trim_end_matches('/');
    if trimmed.is_empty() || trimmed.starts_with('/') {
        trimmed.to_owned()
    } else {
        format!("/{trimmed}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
