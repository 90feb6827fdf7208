//! `protocol`: HTTP by default; a TCP service listens on a fixed port and is reached through
//! the mesh only.

use super::*;
use crate::spec::Protocol;

#[test]
fn protocol() {
    let spec = |body: &str| only_service(&service(body));
    let http = spec("");
    assert_eq!((http.protocol, http.route.public), (Protocol::Http, true));
    // A tcp service is not public unless its route says so (which is refused below).
    let tcp = spec("protocol = \"tcp\"\nport = 6379\n");
    assert_eq!(tcp.protocol, Protocol::Tcp);
    assert_eq!(tcp.port, PortSpec::Fixed(6379));
    assert!(!tcp.route.public);
    let tcp = spec("protocol = \"tcp\"\nport = 6379\nroute.public = false\n");
    assert!(!tcp.route.public);
    assert_eq!(spec("protocol = \"http\"\n").protocol, Protocol::Http);

    // In the JSON: as written; `http` omitted, so releases stored before it hash the same.
    let json = serde_json::to_value(spec("protocol = \"tcp\"\nport = 6379\n")).unwrap();
    assert_eq!(json["protocol"], "tcp");
    assert_eq!(serde_json::from_value::<ServiceSpec>(json).unwrap(), tcp);
    let json = serde_json::to_value(&http).unwrap();
    assert!(json.get("protocol").is_none());
    // Part of the release: a service that becomes tcp is a new release.
    assert_ne!(
        http.spec_hash(None),
        spec("protocol = \"tcp\"\nport = 8080\n").spec_hash(None)
    );
}

#[test]
fn protocol_errors() {
    let cases: &[(&str, Expected)] = &[
        (
            "protocol = \"redis\"\nport = 6379\n",
            (
                3,
                12,
                "service.hello.protocol",
                "unknown protocol `redis`",
                "the protocols are `http` and `tcp`: `tcp` carries any protocol over TCP (redis included, UDP aside)",
            ),
        ),
        (
            "protocol = \"tpc\"\nport = 6379\n",
            (
                3,
                12,
                "service.hello.protocol",
                "unknown protocol `tpc`",
                "did you mean `tcp`? The protocols are `http` and `tcp`",
            ),
        ),
        (
            "protocol = \"tcp\"\n",
            (
                3,
                12,
                "service.hello.port",
                "a `protocol = \"tcp\"` service needs a fixed `port`: its callers dial NAME:PORT",
                "add the port it listens on, like `port = 6379`",
            ),
        ),
        (
            "protocol = \"tcp\"\nport = 6379\n[service.hello.route]\npublic = true\n",
            (
                6,
                10,
                "service.hello.route.public",
                "a `protocol = \"tcp\"` service is reached through the mesh only: the ingress serves HTTP",
                "set `route.public = false` (the default for a tcp service), or remove `protocol` for an HTTP service",
            ),
        ),
    ];
    for (body, expected) in cases {
        assert_service_error(body, *expected);
    }
    // A wasm component speaks wasi:http only.
    let source =
        "[service.w]\ndriver = \"wasm\"\nartifact = \"a.wasm\"\nprotocol = \"tcp\"\nport = 80\n";
    let error = error(source);
    assert_eq!(error.key.as_deref(), Some("service.w.protocol"));
    assert!(error.message.contains("speaks HTTP only"), "{error:?}");
}

#[test]
fn a_received_tcp_spec_is_checked_as_a_file_is() {
    let mut tcp = only_service(&service("protocol = \"tcp\"\nport = 6379\n"));
    assert!(check_received(&tcp).is_ok());
    tcp.route.public = true;
    let refused = check_received(&tcp).unwrap_err();
    assert_eq!(refused.key, "route.public");
    tcp.route.public = false;
    tcp.port = PortSpec::Auto;
    assert_eq!(check_received(&tcp).unwrap_err().key, "port");
}
