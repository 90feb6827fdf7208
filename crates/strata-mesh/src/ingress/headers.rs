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
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
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
}
