use super::*;

/// A self-signed certificate for `names` and its key (PEM).
fn certificate(names: &[&str]) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

fn leaf_names(key: &CertifiedKey) -> Vec<String> {
    dns_names(key.end_entity_cert().unwrap()).unwrap()
}

#[test]
fn a_directorys_certificates_are_chosen_by_exact_name_then_wildcard() {
    let dir = tempfile::tempdir().unwrap();
    let (shop, shop_key) = certificate(&["shop.example.com", "www.example.com"]);
    let (any, any_key) = certificate(&["*.example.org"]);
    std::fs::write(dir.path().join("shop.crt"), shop).unwrap();
    std::fs::write(dir.path().join("shop.key"), shop_key).unwrap();
    std::fs::write(dir.path().join("org.crt"), any).unwrap();
    std::fs::write(dir.path().join("org.key"), any_key).unwrap();
    let certificates = IngressCertificates::from_dir(dir.path()).unwrap();
    // (name asked, names of the certificate served)
    let shop_names = vec![
        "shop.example.com".to_string(),
        "www.example.com".to_string(),
    ];
    let org_names = vec!["*.example.org".to_string()];
    let table: &[(&str, Option<&Vec<String>>)] = &[
        ("shop.example.com", Some(&shop_names)),
        ("WWW.Example.com.", Some(&shop_names)),
        ("api.example.org", Some(&org_names)),
        // A wildcard covers one label, not the parent or two labels down.
        ("example.org", None),
        ("a.b.example.org", None),
        ("other.example.com", None),
        ("hello.dev.localhost", None),
    ];
    for (name, served) in table {
        let found = certificates.for_name(name).map(|key| leaf_names(&key));
        assert_eq!(found.as_ref(), *served, "{name}");
    }
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (shop, _) = certificate(&["shop.example.com"]);
    let (_, other_key) = certificate(&["other.example.com"]);
    std::fs::write(dir.path().join("shop.crt"), shop).unwrap();
    std::fs::write(dir.path().join("shop.key"), other_key).unwrap();
    let error = IngressCertificates::from_dir(dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("shop.key") && error.contains("is not the key of"),
        "{error}"
    );
    // No key at all, garbage, an empty directory: each said.
    std::fs::remove_file(dir.path().join("shop.key")).unwrap();
    let error = IngressCertificates::from_dir(dir.path())
        .unwrap_err()
        .to_string();
    assert!(error.contains("shop.key"), "{error}");
    std::fs::write(dir.path().join("shop.crt"), "not a certificate").unwrap();
    assert!(IngressCertificates::from_dir(dir.path()).is_err());
    let empty = tempfile::tempdir().unwrap();
    let error = IngressCertificates::from_dir(empty.path())
        .unwrap_err()
        .to_string();
    assert!(error.contains("holds no certificate"), "{error}");
}

#[test]
fn the_local_ca_makes_a_certificate_for_each_localhost_name_and_is_kept() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let local = IngressCertificates::local(dir.path()).unwrap();
    let hello = local
        .for_name("hello.dev.localhost")
        .expect("a certificate");
    assert_eq!(leaf_names(&hello), ["hello.dev.localhost"]);
    // The chain ends with the CA the user is told to trust.
    let ca_pem = std::fs::read_to_string(dir.path().join("ingress-ca.crt")).unwrap();
    let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap();
    assert_eq!(hello.cert.last(), Some(&ca));
    // Made once per name.
    assert!(Arc::ptr_eq(
        &hello,
        &local.for_name("hello.dev.localhost").unwrap()
    ));
    // Not for names of the world.
    assert!(local.for_name("example.com").is_none());
    assert!(local.for_name("localhost.example.com").is_none());
    // The key is the user's only; a second start keeps the same CA.
    let mode = std::fs::metadata(dir.path().join("ingress-ca.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    drop(local);
    IngressCertificates::local(dir.path()).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ingress-ca.crt")).unwrap(),
        ca_pem
    );
}
