//! End-to-end: the ingress serves HTTPS. `strata dev` makes a certificate for each
//! `*.localhost` name asked for, signed by a CA of the machine's (`DATA_DIR/ingress-ca.crt`),
//! and speaks HTTP/2 or HTTP/1.1 by ALPN; a name of the world gets no certificate. An agent's
//! `--tls-cert-dir` with a key that is not its certificate's is refused before it starts.

mod common;

use common::*;

/// curl over HTTPS to `host` at `dev`'s HTTPS port, trusting the dev CA: (exit code,
/// "HTTP_VERSION STATUS", body).
fn curl(dev: &Dev, host: &str, flags: &[&str]) -> (i32, String, String) {
    let port = dev.https.port();
    let output = std::process::Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "5",
            "-w",
            "\n%{http_version} %{http_code}",
            "--cacert",
        ])
        .arg(dev.data_dir.join("ingress-ca.crt"))
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .args(flags)
        .arg(format!("https://{host}:{port}/"))
        .output()
        .expect("curl runs");
    let text = stdout(&output);
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
    (
        output.status.code().unwrap_or(-1),
        status.to_string(),
        body.to_string(),
    )
}

#[test]
fn the_ingress_serves_https_with_http2_and_a_certificate_for_each_localhost_name() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path());
    dev.deploy(&hello_spec(dir.path(), 1, "Hello over TLS"), &[]);

    let (code, status, body) = curl(&dev, "hello.dev.localhost", &["--http2"]);
    assert_eq!(
        (code, status.as_str()),
        (0, "2 200"),
        "{body}\n{}",
        dev.log()
    );
    assert!(body.contains("Hello over TLS"), "{body}");
    let (code, status, _) = curl(&dev, "hello.dev.localhost", &["--http1.1"]);
    assert_eq!((code, status.as_str()), (0, "1.1 200"));
    // A localhost name no service has: a certificate, and the ingress's 404.
    let (code, status, body) = curl(&dev, "nobody.dev.localhost", &[]);
    assert_eq!((code, status.as_str()), (0, "2 404"), "{body}");
    // A name of the world: no certificate, the handshake fails (curl's 35).
    let (code, _, _) = curl(&dev, "example.com", &[]);
    assert_eq!(code, 35);
}

#[test]
fn an_agent_refuses_a_certificate_directory_whose_key_is_not_the_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let make = |name: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (shop, _) = make("shop.example.com");
    let (_, other_key) = make("other.example.com");
    std::fs::write(certs.join("shop.crt"), shop).unwrap();
    std::fs::write(certs.join("shop.key"), other_key).unwrap();
    let output = std::process::Command::new(strata_bin())
        .args(["agent", "--join", "https://127.0.0.1:9", "--tls-cert-dir"])
        .arg(&certs)
        .arg("--data-dir")
        .arg(dir.path().join("agent"))
        .env("STRATA_JOIN_TOKEN", "unused")
        .output()
        .expect("strata runs");
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let said = stderr(&output);
    assert!(
        said.contains("--tls-cert-dir")
            && said.contains("shop.key")
            && said.contains("is not the key of"),
        "{said}"
    );
    assert!(
        !dir.path().join("agent").exists(),
        "it started before refusing"
    );
}
