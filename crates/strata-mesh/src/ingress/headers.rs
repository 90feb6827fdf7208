//! Headers: the host a request is for, the request sent upstream (hop-by-hop headers
//! dropped, `x-forwarded-*` added, the caller's identity kept only between services).

use std::net::SocketAddr;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Uri};
use http_body_util::Full;

use super::{Audience, ENDPOINT_HEADER};
use crate::proxy::CALLER_HEADER;

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub(super) fn request_host<B>(request: &Request<B>) -> Option<String> {
    let raw = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().host())?;
    let host = host_without_port(raw)
        .trim_end_matches('.')
        .to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// `hello.dev.localhost:8080` -> `hello.dev.localhost`; `[::1]:80` -> `::1`.
fn host_without_port(raw: &str) -> &str {
    if let Some(rest) = raw.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match raw.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => raw,
    }
}

/// The request to send to `endpoint`: directly, or `via` its node's proxy (over TLS, naming
/// the instance in [`ENDPOINT_HEADER`]). A caller's identity is kept only on calls between
/// services: from outside, a `strata-caller` header is dropped, never believed.
pub(super) fn upstream_request(
    parts: &http::request::Parts,
    body: &Bytes,
    endpoint: &str,
    via: Option<&str>,
    host: &str,
    peer: SocketAddr,
    audience: Audience,
) -> Result<Request<Full<Bytes>>, String> {
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let target = match via {
        Some(proxy) => format!("https://{proxy}{path}"),
        None => format!("http://{endpoint}{path}"),
    };
    let uri: Uri = target
        .parse()
        .map_err(|error| format!("bad request path `{path}`: {error}"))?;
    let mut request = Request::builder()
        .method(parts.method.clone())
        .uri(uri)
        .version(http::Version::HTTP_11)
        .body(Full::new(body.clone()))
        .map_err(|error| error.to_string())?;
    let headers = request.headers_mut();
    headers.clone_from(&parts.headers);
    strip_hop_by_hop(headers);
    headers.remove(ENDPOINT_HEADER);
    if audience == Audience::Public {
        headers.remove(CALLER_HEADER);
    }
    if via.is_some() {
        let value = HeaderValue::from_str(endpoint).map_err(|error| error.to_string())?;
        headers.insert(ENDPOINT_HEADER, value);
    }
    let forwarded_for = match parts
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
    {
        Some(previous) => format!("{previous}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert("x-forwarded-for", value);
    }
    if let Ok(value) = HeaderValue::from_str(host) {
        headers.insert("x-forwarded-host", value);
    }
    // Said by the ingress that took the request (its plain or its TLS port), never by a
    // client: both set it before routing; anything else is `http`.
    let proto = match parts
        .headers
        .get("x-forwarded-proto")
        .map(HeaderValue::as_bytes)
    {
        Some(b"https") => "https",
        _ => "http",
    };
    headers.insert("x-forwarded-proto", HeaderValue::from_static(proto));
    // HTTP/2 names the host in `:authority`, not `Host`: the instance (and a peer node, which
    // routes by it) gets it as `Host`, never the upstream's address.
    if !headers.contains_key(header::HOST) {
        let authority = parts.uri.authority().map(|a| a.as_str()).unwrap_or(host);
        if let Ok(value) = HeaderValue::from_str(authority) {
            headers.insert(header::HOST, value);
        }
    }
    Ok(request)
}

pub(super) fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .collect();
    for name in HOP_BY_HOP.iter().map(|s| s.to_string()).chain(named) {
        headers.remove(name.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_table() {
        let table = [
            ("hello.dev.localhost:8080", Some("hello.dev.localhost")),
            ("Hello.Dev.Localhost", Some("hello.dev.localhost")),
            ("hello.dev.localhost.", Some("hello.dev.localhost")),
            ("[::1]:8080", Some("::1")),
            ("127.0.0.1:80", Some("127.0.0.1")),
            (":80", None),
        ];
        for (raw, want) in table {
            let request = Request::builder()
                .header(header::HOST, raw)
                .body(())
                .unwrap();
            assert_eq!(request_host(&request).as_deref(), want, "{raw}");
        }
    }

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut headers = http::HeaderMap::new();
        headers.insert("connection", HeaderValue::from_static("close, x-private"));
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers);
        let names: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["x-kept"]);
    }

    #[test]
    fn the_upstream_gets_the_host_and_the_scheme_the_ingress_took_the_request_with() {
        let peer: SocketAddr = "10.0.0.9:5000".parse().unwrap();
        // (request's Host header, request URI, its X-Forwarded-Proto) -> (Host, proto) sent on
        let table = [
            // HTTP/1.1 through the plain port: Host kept as sent.
            (
                Some("hello.dev.localhost:8080"),
                "/",
                Some("http"),
                "hello.dev.localhost:8080",
                "http",
            ),
            // HTTP/2 through the TLS port: no Host, the authority; https kept.
            (
                None,
                "https://hello.dev.localhost:8443/",
                Some("https"),
                "hello.dev.localhost:8443",
                "https",
            ),
            // No authority either: the routed host.
            (None, "/", Some("https"), "hello.dev.localhost", "https"),
            // Anything else a request carries is `http`.
            (
                Some("hello.dev.localhost"),
                "/",
                Some("ftp"),
                "hello.dev.localhost",
                "http",
            ),
            (
                Some("hello.dev.localhost"),
                "/",
                None,
                "hello.dev.localhost",
                "http",
            ),
        ];
        for (host, uri, proto, want_host, want_proto) in table {
            let mut builder = Request::builder().uri(uri);
            if let Some(host) = host {
                builder = builder.header(header::HOST, host);
            }
            if let Some(proto) = proto {
                builder = builder.header("x-forwarded-proto", proto);
            }
            let (parts, ()) = builder.body(()).unwrap().into_parts();
            let upstream = upstream_request(
                &parts,
                &Bytes::new(),
                "127.0.0.1:9000",
                None,
                "hello.dev.localhost",
                peer,
                Audience::Public,
            )
            .unwrap();
            let headers = upstream.headers();
            assert_eq!(headers[header::HOST], want_host, "{uri}");
            assert_eq!(headers["x-forwarded-proto"], want_proto, "{uri}");
        }
    }
}
