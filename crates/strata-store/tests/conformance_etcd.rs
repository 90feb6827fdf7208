//! The store conformance suite against [`EtcdStore`] on a real etcd, plus what only the etcd
//! backend promises: URL parsing, a clear and bounded failure to connect, namespaces that
//! isolate stores sharing one etcd, compaction reported as such, authentication, TLS (the
//! suite again over mutual TLS, and clients refused for a missing or untrusted certificate),
//! and watches that survive etcd members being killed and restarted.
//!
//! Every test that needs etcd starts its own ([`EtcdServer`], the binary of Debian's
//! `etcd-server`). Without one they print `SKIPPED: <why>` and pass, unless
//! `STRATA_REQUIRE_ETCD` is set (as CI may do, to make sure they run), when they fail.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use strata_store::conformance::{self, Harness};
use strata_store::etcd::EtcdTls;
use strata_store::testing::{etcd_unavailable, EtcdServer, TlsMaterial};
use strata_store::{
    EtcdOptions, EtcdStore, KeyValue, LeaseId, Page, Revision, Store, StoreError, Txn, TxnOutcome,
    WatchEvent, WatchStream,
};

/// Whether the etcd tests must skip: prints why (or fails, under `STRATA_REQUIRE_ETCD`).
fn skip() -> bool {
    match etcd_unavailable() {
        None => false,
        Some(why) if std::env::var_os("STRATA_REQUIRE_ETCD").is_some() => {
            panic!("STRATA_REQUIRE_ETCD is set, but etcd cannot run: {why}")
        }
        Some(why) => {
            println!("SKIPPED: {why}");
            true
        }
    }
}

/// Starts etcd without blocking the runtime's other work.
fn start_etcd(members: usize) -> EtcdServer {
    tokio::task::block_in_place(|| EtcdServer::cluster(members))
}

async fn connect(etcd: &EtcdServer, namespace: &str) -> EtcdStore {
    let url = etcd.url(namespace);
    EtcdStore::connect_url(&url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

async fn next(watch: &mut WatchStream) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("a watch event within 10s")
        .expect("the watch goes on")
        .expect("a watch event, not an error")
}

// ---------------------------------------------------------------------------------------
// The conformance suite.

/// Fresh stores: each in its own namespace of one etcd.
struct EtcdHarness {
    etcd: EtcdServer,
    count: AtomicUsize,
    /// The client's TLS settings, for an etcd started with [`EtcdServer::start_tls`].
    tls: Option<EtcdTls>,
}

impl EtcdHarness {
    async fn store(&self) -> Result<EtcdStore, StoreError> {
        let n = self.count.fetch_add(1, Ordering::Relaxed);
        let mut options =
            EtcdOptions::parse(&self.etcd.url(&format!("/conformance/check-{n:03}")))?;
        if let Some(tls) = &self.tls {
            options = options.with_tls(tls.clone())?;
        }
        EtcdStore::connect(options).await
    }

    /// etcd-client's own options, for the compacting client.
    fn client_options(&self) -> Option<etcd_client::ConnectOptions> {
        let tls = self.tls.as_ref()?;
        let mut config = etcd_client::TlsOptions::new();
        if let Some(ca) = &tls.ca_pem {
            config = config.ca_certificate(etcd_client::Certificate::from_pem(ca));
        }
        if let (Some(cert), Some(key)) = (&tls.client_cert_pem, &tls.client_key_pem) {
            config = config.identity(etcd_client::Identity::from_pem(cert, key));
        }
        Some(etcd_client::ConnectOptions::new().with_tls(config))
    }
}

impl Harness for EtcdHarness {
    fn fresh(&self) -> BoxFuture<'_, Result<Arc<dyn Store>, StoreError>> {
        async move { Ok(Arc::new(self.store().await?) as Arc<dyn Store>) }.boxed()
    }

    /// etcd keeps history until something compacts it (its auto-compaction, run on its own
    /// schedule, or a client). Here the harness is that client: the store compacts the
    /// history down to the last `history` revisions after each of its writes, which is
    /// what an operator's `--auto-compaction-mode=revision` does in coarser steps.
    fn fresh_with_history(
        &self,
        history: usize,
    ) -> Option<BoxFuture<'_, Result<Arc<dyn Store>, StoreError>>> {
        Some(
            async move {
                let store = self.store().await?;
                let client =
                    etcd_client::Client::connect(self.etcd.endpoints(), self.client_options())
                        .await
                        .map_err(|e| StoreError::Backend(format!("connect for compaction: {e}")))?;
                Ok(Arc::new(CompactingStore {
                    store,
                    client,
                    history: Revision::try_from(history).expect("history fits"),
                }) as Arc<dyn Store>)
            }
            .boxed(),
        )
    }
}

/// An [`EtcdStore`] that compacts etcd's history to its last `history` revisions after each
/// write (etcd's compaction is cluster-wide: only for a dedicated etcd).
struct CompactingStore {
    store: EtcdStore,
    client: etcd_client::Client,
    history: Revision,
}

impl CompactingStore {
    async fn compact_after(&self, revision: Revision) {
        if revision < self.history {
            return;
        }
        let at = i64::try_from(revision + 1 - self.history).expect("revision fits");
        match self.client.clone().compact(at, None).await {
            Ok(_) => {}
            Err(e) if e.to_string().contains("compacted") => {}
            Err(e) => panic!("compact at {at}: {e}"),
        }
    }
}

#[async_trait]
impl Store for CompactingStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.store.get(key).await
    }
    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        let outcome = self.store.txn(txn).await?;
        if let TxnOutcome::Committed(rev) = outcome {
            self.compact_after(rev).await;
        }
        Ok(outcome)
    }
    async fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.store.list_page(prefix, start_after, limit).await
    }
    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream, StoreError> {
        self.store.watch(prefix, from).await
    }
    async fn revision(&self) -> Result<Revision, StoreError> {
        self.store.revision().await
    }
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        self.store.grant_lease(ttl).await
    }
    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.store.keep_alive(lease).await
    }
    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.store.revoke_lease(lease).await
    }
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError> {
        let rev = self.store.put(key, value).await?;
        self.compact_after(rev).await;
        Ok(rev)
    }
    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let existed = self.store.delete(key).await?;
        self.compact_after(self.store.revision().await?).await;
        Ok(existed)
    }
    async fn list(&self, prefix: &str) -> Result<Page, StoreError> {
        self.store.list(prefix).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_passes_the_conformance_suite() {
    if skip() {
        return;
    }
    let started = Instant::now();
    let harness = EtcdHarness {
        etcd: start_etcd(1),
        count: AtomicUsize::new(0),
        tls: None,
    };
    let report = conformance::run_all(&harness).await;
    assert!(report.skipped.is_empty(), "skipped: {:?}", report.skipped);
    assert_eq!(report.passed.len(), conformance::checks().len() + 1);
    println!(
        "{} conformance checks passed on etcd in {:?}",
        report.passed.len(),
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------
// URLs and connecting.

#[test]
fn parse_reads_the_url_forms() {
    let ok = |url: &str| EtcdOptions::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    let o = ok("etcd://127.0.0.1:2379");
    assert_eq!(o.endpoints, ["http://127.0.0.1:2379"]);
    assert_eq!((o.namespace.as_str(), &o.user), ("", &None));
    assert_eq!(
        o.connect_timeout,
        strata_store::etcd::DEFAULT_CONNECT_TIMEOUT
    );

    let o = ok("etcd://a.example:2379,b-2.example:2380,[::1]:2381/strata");
    assert_eq!(
        o.endpoints,
        [
            "http://a.example:2379",
            "http://b-2.example:2380",
            "http://[::1]:2381"
        ]
    );
    assert_eq!(o.namespace, "/strata");
    assert_eq!(ok("ETCD://h:1/a/b.c/").namespace, "/a/b.c");
    assert_eq!(ok("etcd://h:1/").namespace, "");

    let o = ok("etcd://root:s3cr%40t:x@h:2379/ns");
    assert_eq!(o.user, Some(("root".into(), "s3cr@t:x".into())));
    assert_eq!(o.namespace, "/ns");
    // The password never shows.
    assert!(!format!("{o:?}").contains("s3cr"), "{o:?}");
    assert_eq!(o.display_url(), "etcd://root:***@h:2379/ns");

    let bad = [
        ("http://h:2379", "must start with etcd://"),
        ("etcd://", "no HOST:PORT"),
        ("etcd:///ns", "no HOST:PORT"),
        ("etcd://h", "has no :PORT"),
        ("etcd://h:", "is not a port"),
        ("etcd://h:0", "is not a port"),
        ("etcd://h:65536", "is not a port"),
        ("etcd://h:+1", "is not a port"),
        ("etcd://:2379", "has no HOST"),
        ("etcd://h:1,,h:2", "empty HOST:PORT"),
        ("etcd://h:1,", "empty HOST:PORT"),
        ("etcd://h h:1", "whitespace"),
        ("etcd://h/x:1", "has no :PORT"),
        ("etcd://[::1:2379", "closing ]"),
        ("etcd://[nope]:2379", "not an IPv6 address"),
        ("etcd://::1:2379", "not a host name"),
        ("etcd://h:1?timeout=3", "query strings"),
        ("etcd://h:1/a//b", "empty segment"),
        ("etcd://h:1/a b", "whitespace"),
        ("etcd://h:1/caf\u{e9}", "may only use"),
        ("etcd://user@h:1", "not USER:PASSWORD"),
        ("etcd://:pw@h:1", "user name is empty"),
        ("etcd://u:%zz@h:1", "bad %-escape"),
        ("etcd://u:%+f@h:1", "bad %-escape"),
        ("etcd://u%4@h:1", "not USER:PASSWORD"),
        ("etcd://%c3%28:p@h:1", "bad %-escape"),
    ];
    for (url, why) in bad {
        match EtcdOptions::parse(url) {
            Err(e @ StoreError::Open { .. }) => {
                let message = e.to_string();
                assert!(
                    message.contains(why),
                    "{url}: {message:?} should say {why:?}"
                );
                assert!(
                    message.contains(strata_store::etcd::URL_FORM),
                    "{url}: {message:?} should show the expected form"
                );
            }
            other => panic!("{url} should not parse, got {other:?}"),
        }
    }
    // A rejected URL's password is masked in the message too.
    let message = EtcdOptions::parse("etcd://u:hunter2@h:99999")
        .unwrap_err()
        .to_string();
    assert!(
        !message.contains("hunter2") && message.contains("u:***@"),
        "{message}"
    );
}

#[tokio::test]
async fn connect_to_a_dead_endpoint_fails_clearly_within_the_timeout() {
    // Nothing listens on a port just released; a listener that never accepts is worse (the
    // TCP handshake succeeds, then nothing answers).
    let refused = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    for endpoints in [
        vec![format!("127.0.0.1:{refused}")],
        vec![format!("127.0.0.1:{silent_port}")],
        vec![
            format!("127.0.0.1:{refused}"),
            format!("127.0.0.1:{silent_port}"),
        ],
    ] {
        let mut options =
            EtcdOptions::parse(&format!("etcd://{}/ns", endpoints.join(","))).expect("parse");
        options.connect_timeout = Duration::from_secs(1);
        let started = Instant::now();
        let result = EtcdStore::connect(options).await;
        let took = started.elapsed();
        match result {
            Err(e @ StoreError::Open { .. }) => {
                let message = e.to_string();
                for endpoint in &endpoints {
                    assert!(message.contains(endpoint), "{message:?} names {endpoint}");
                }
                assert!(message.contains("no etcd member answered"), "{message}");
                println!("{message}");
            }
            other => panic!("connect to {endpoints:?} should fail, got {other:?}"),
        }
        assert!(
            took < Duration::from_secs(3),
            "connect to {endpoints:?} took {took:?} with a 1s timeout"
        );
    }
    drop(silent);
}

// ---------------------------------------------------------------------------------------
// Namespaces, keys and transactions.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_isolate_stores_sharing_one_etcd() {
    if skip() {
        return;
    }
    let etcd = start_etcd(1);
    let a = connect(&etcd, "/a").await;
    let ab = connect(&etcd, "/ab").await;
    let root = connect(&etcd, "").await;
    assert_eq!((a.namespace(), root.namespace()), ("/a", ""));

    let mut watch_a = a.watch("", 0).await.unwrap();
    let mut watch_ab = ab.watch("/", 0).await.unwrap();
    let r1 = a.put("/k", b"in a".to_vec()).await.unwrap();
    let r2 = ab.put("/k", b"in ab".to_vec()).await.unwrap();
    assert_eq!(r2, r1 + 1, "one etcd, one revision sequence");
    assert_eq!(a.get("/k").await.unwrap().unwrap().value, b"in a");
    assert_eq!(ab.get("/k").await.unwrap().unwrap().value, b"in ab");
    // The namespace is a plain key prefix in etcd.
    let raw = root.get("/a/k").await.unwrap().unwrap();
    assert_eq!((raw.value.as_slice(), raw.mod_revision), (&b"in a"[..], r1));
    let listing = root.list("/").await.unwrap();
    let keys: Vec<&str> = listing.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/a/k", "/ab/k"]);

    // Listings, watches and conflicts show keys without the namespace, and only their own.
    let keys = |page: Page| page.kvs.into_iter().map(|kv| kv.key).collect::<Vec<_>>();
    assert_eq!(keys(a.list("").await.unwrap()), ["/k"]);
    assert_eq!(keys(ab.list("").await.unwrap()), ["/k"]);
    assert_eq!(keys(a.list_page("", None, 1).await.unwrap()), ["/k"]);
    assert_eq!(next(&mut watch_a).await.key(), "/k");
    assert_eq!(next(&mut watch_ab).await.key(), "/k");
    assert_eq!(
        a.cas("/k", 0, vec![]).await.unwrap(),
        TxnOutcome::Conflict { key: "/k".into() }
    );

    // In a namespaced store keys start with '/'; nothing else can be stored or match.
    match a.put("k", vec![]).await {
        Err(StoreError::InvalidKey(message)) => assert!(message.contains("'/'"), "{message}"),
        other => panic!("a key without '/' should be refused, got {other:?}"),
    }
    assert!(matches!(root.get("").await, Err(StoreError::InvalidKey(_))));
    assert!(a.list("k").await.unwrap().kvs.is_empty());
    let mut nothing = a.watch("k", 0).await.unwrap();
    a.put("/k2", vec![]).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(200), nothing.next())
            .await
            .is_err(),
        "a watch of an impossible prefix saw something"
    );

    // A watch ends with Closed once its store is gone.
    drop(a);
    let item = tokio::time::timeout(Duration::from_secs(10), nothing.next())
        .await
        .expect("the watch ends");
    assert!(matches!(item, Some(Err(StoreError::Closed))), "{item:?}");
    assert!(nothing.next().await.is_none());
    let item = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match watch_a.next().await {
                Some(Ok(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the watch ends");
    assert!(matches!(item, Some(Err(StoreError::Closed))), "{item:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_edge_cases_of_etcd() {
    if skip() {
        return;
    }
    let etcd = start_etcd(1);
    let store = connect(&etcd, "/txn").await;
    let held = store.put("/held", b"h".to_vec()).await.unwrap();

    // etcd refuses to write a key twice in one txn: a clear error, after the compares.
    let twice = Txn::new()
        .when("/held", held)
        .put("/x", vec![1])
        .delete("/x");
    match store.txn(twice.clone()).await {
        Err(StoreError::InvalidTxn(message)) => {
            assert!(message.contains("writes /x more than once"), "{message}")
        }
        other => panic!("expected an InvalidTxn error, got {other:?}"),
    }
    let stale = Txn {
        compares: vec![strata_store::Compare {
            key: "/held".into(),
            mod_revision: held + 1,
        }],
        ops: twice.ops,
    };
    assert_eq!(
        store.txn(stale).await.unwrap(),
        TxnOutcome::Conflict {
            key: "/held".into()
        }
    );
    assert_eq!(store.get("/x").await.unwrap(), None);

    // The conflict names the first compare that fails, not the first compare.
    let lease = store.grant_lease(Duration::from_secs(30)).await.unwrap();
    let outcome = store
        .txn(
            Txn::new()
                .when("/held", held)
                .when("/held", held)
                .when("/absent", 0)
                .when("/absent2", 5)
                .when("/held", 0)
                .put_with_lease("/y", vec![], lease),
        )
        .await
        .unwrap();
    assert_eq!(
        outcome,
        TxnOutcome::Conflict {
            key: "/absent2".into()
        }
    );
    // Of several leases, the unknown one is named.
    let unknown: LeaseId = 0x7fff_ffff_ffff_fff0;
    let result = store
        .txn(
            Txn::new()
                .put_with_lease("/y", vec![], lease)
                .put_with_lease("/z", vec![], unknown),
        )
        .await;
    assert!(
        matches!(result, Err(StoreError::LeaseNotFound(id)) if id == unknown),
        "{result:?}"
    );
    // Lease ids no etcd lease can have are unknown leases, not errors of another kind.
    for impossible in [0, u64::MAX] {
        assert!(matches!(
            store.txn(Txn::new().put_with_lease("/y", vec![], impossible)).await,
            Err(StoreError::LeaseNotFound(id)) if id == impossible
        ));
        assert!(matches!(
            store.keep_alive(impossible).await,
            Err(StoreError::LeaseNotFound(id)) if id == impossible
        ));
    }
    // Whole seconds: a 1 ms lease is a live lease for a while.
    let short = store.grant_lease(Duration::from_millis(1)).await.unwrap();
    store.keep_alive(short).await.unwrap();
    store.revoke_lease(short).await.unwrap();
    store.revoke_lease(lease).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_history_is_reported_as_compacted() {
    if skip() {
        return;
    }
    let etcd = start_etcd(1);
    let store = connect(&etcd, "/compact").await;
    let first = store.put("/c/0", vec![]).await.unwrap();
    let mut live = store.watch("/c/", first).await.unwrap();
    let mut last = first;
    for i in 1..10 {
        last = store.put(&format!("/c/{i}"), vec![]).await.unwrap();
    }
    // The live watch has caught up before the compaction (one still replaying old revisions
    // would rightly be told they were compacted).
    for rev in first..=last {
        assert_eq!(next(&mut live).await.revision(), rev);
    }
    let mut client = etcd_client::Client::connect(etcd.endpoints(), None)
        .await
        .unwrap();
    let at = last - 3;
    client
        .compact(i64::try_from(at).unwrap(), None)
        .await
        .unwrap();

    match store.watch("/c/", first).await {
        Err(StoreError::Compacted { requested, oldest }) => {
            assert_eq!((requested, oldest), (first, at))
        }
        Err(e) => panic!("expected Compacted, got {e}"),
        Ok(_) => panic!("a watch from a compacted revision started"),
    }
    // Watching from the compaction revision itself still works.
    let mut watch = store.watch("/c/", at).await.unwrap();
    for rev in at..=last {
        assert_eq!(next(&mut watch).await.revision(), rev);
    }
    // A watch that was already past those revisions is not disturbed, nor is a listing.
    let rev = store.put("/c/10", vec![]).await.unwrap();
    assert_eq!(next(&mut live).await.revision(), rev);
    assert_eq!(next(&mut watch).await.revision(), rev);
    assert_eq!(store.list("/c/").await.unwrap().kvs.len(), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_password_authenticate() {
    if skip() {
        return;
    }
    let etcd = start_etcd(1);
    let mut admin = etcd_client::Client::connect(etcd.endpoints(), None)
        .await
        .unwrap();
    admin.user_add("root", "root-pw", None).await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.auth_enable().await.unwrap();

    let hosts = etcd.url("/auth");
    let with_user = |user: &str| hosts.replacen("etcd://", &format!("etcd://{user}@"), 1);
    let store = EtcdStore::connect_url(&with_user("root:root-pw"))
        .await
        .expect("connect with the right password");
    let rev = store.put("/k", b"v".to_vec()).await.unwrap();
    assert_eq!(store.get("/k").await.unwrap().unwrap().mod_revision, rev);

    for (user, secret) in [("root:wrong-pw", "wrong-pw"), ("nobody:x", "nobody")] {
        match EtcdStore::connect_url(&with_user(user)).await {
            Err(StoreError::Open { path, reason }) => {
                let message = format!("{path}: {reason}");
                println!("{message}");
                assert!(
                    message.contains("127.0.0.1:") && !message.contains(&format!(":{secret}@")),
                    "{message}"
                );
            }
            other => panic!("{user} should not connect, got {other:?}"),
        }
    }
    match EtcdStore::connect_url(&hosts).await {
        Ok(anonymous) => assert!(anonymous.get("/k").await.is_err()),
        Err(StoreError::Open { .. }) => {}
        Err(e) => panic!("unexpected error without a user: {e}"),
    }
}

// ---------------------------------------------------------------------------------------
// TLS.

/// A test PKI: a CA, etcd's certificate for 127.0.0.1 and localhost, and a client
/// certificate, all signed by the CA.
struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

impl Pki {
    fn new(name: &str) -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let key = || KeyPair::generate().expect("generate a key pair");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} CA"));
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = key();
        let ca = ca_params.self_signed(&ca_key).expect("self-sign the CA");
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |names: Vec<String>, cn: &str, usages: Vec<ExtendedKeyUsagePurpose>| {
            let mut params = CertificateParams::new(names).expect("leaf params");
            params.distinguished_name.push(DnType::CommonName, cn);
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            params.extended_key_usages = usages;
            let key = key();
            let cert = params.signed_by(&key, &issuer).expect("sign a leaf");
            (cert.pem(), key.serialize_pem())
        };
        // etcd also presents its server certificate as a client one (its gateway dials
        // itself), so it gets both usages.
        let (server_cert, server_key) = leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            "etcd",
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        );
        let (client_cert, client_key) = leaf(
            Vec::new(),
            "strata",
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        );
        Pki {
            ca: ca.pem(),
            server_cert,
            server_key,
            client_cert,
            client_key,
        }
    }

    /// What etcd serves with; `client_cert_auth`: etcd requires client certificates.
    fn material(&self, client_cert_auth: bool) -> TlsMaterial {
        TlsMaterial {
            ca_pem: self.ca.clone(),
            server_cert_pem: self.server_cert.clone(),
            server_key_pem: self.server_key.clone(),
            client_cert_auth,
        }
    }

    /// A client trusting this CA, with this PKI's client certificate (mutual TLS).
    fn client(&self) -> EtcdTls {
        EtcdTls {
            ca_pem: Some(self.ca.clone().into_bytes()),
            client_cert_pem: Some(self.client_cert.clone().into_bytes()),
            client_key_pem: Some(self.client_key.clone().into_bytes()),
        }
    }
}

fn start_etcd_tls(material: &TlsMaterial) -> EtcdServer {
    tokio::task::block_in_place(|| EtcdServer::start_tls(material))
}

/// Connects to `url` with `tls` within `timeout`, expecting a refusal: returns its message.
async fn refused(url: &str, tls: Option<EtcdTls>, timeout: Duration) -> String {
    let mut options = EtcdOptions::parse(url).expect("parse");
    if let Some(tls) = tls {
        options = options.with_tls(tls).expect("TLS options for etcds://");
    }
    options.connect_timeout = timeout;
    let started = Instant::now();
    let result = EtcdStore::connect(options).await;
    let took = started.elapsed();
    assert!(
        took < timeout + Duration::from_secs(2),
        "refusing {url} took {took:?} with a {timeout:?} timeout"
    );
    match result {
        Err(e @ StoreError::Open { .. }) => e.to_string(),
        other => panic!("{url} should be refused, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_passes_the_conformance_suite_over_mutual_tls() {
    if skip() {
        return;
    }
    let started = Instant::now();
    let pki = Pki::new("suite");
    let harness = EtcdHarness {
        etcd: start_etcd_tls(&pki.material(true)),
        count: AtomicUsize::new(0),
        tls: Some(pki.client()),
    };
    assert!(harness.etcd.url("").starts_with("etcds://127.0.0.1:"));
    let report = conformance::run_all(&harness).await;
    assert!(report.skipped.is_empty(), "skipped: {:?}", report.skipped);
    assert!(report.failed.is_empty(), "failed: {:?}", report.failed);
    assert_eq!(report.passed.len(), conformance::checks().len() + 1);
    println!(
        "{} conformance checks passed on etcd over mutual TLS in {:?}",
        report.passed.len(),
        started.elapsed()
    );
}

/// An etcd requiring client certificates refuses a client without one, or with one from
/// another CA; a client trusting another CA (or only the system's roots) refuses etcd. Each
/// fails at connect, within the timeout, naming the endpoint and what TLS said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_refusals_are_clear_and_bounded() {
    if skip() {
        return;
    }
    let pki = Pki::new("strata-test");
    let other = Pki::new("other");
    let etcd = start_etcd_tls(&pki.material(true));
    let url = etcd.url("/tls");
    let endpoint = etcd.endpoints().remove(0);
    let timeout = Duration::from_secs(3);

    // The files, read by EtcdTls::from_files as `strata --store-ca/--store-cert/--store-key`
    // do, connect.
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, pem: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    let (ca, cert, key) = (
        write("ca.pem", &pki.ca),
        write("client.pem", &pki.client_cert),
        write("client-key.pem", &pki.client_key),
    );
    let tls = EtcdTls::from_files(Some(&ca), Some(&cert), Some(&key)).expect("read the files");
    assert_eq!(tls, pki.client());
    let store = EtcdStore::connect(EtcdOptions::parse(&url).unwrap().with_tls(tls).unwrap())
        .await
        .expect("connect with mutual TLS");
    let rev = store.put("/k", b"v".to_vec()).await.unwrap();
    assert_eq!(store.get("/k").await.unwrap().unwrap().mod_revision, rev);
    drop(store);

    let no_cert = EtcdTls {
        client_cert_pem: None,
        client_key_pem: None,
        ..pki.client()
    };
    let cases = [
        ("no client certificate", Some(no_cert), "certificate"),
        (
            "a client certificate of another CA",
            Some(EtcdTls {
                ca_pem: Some(pki.ca.clone().into_bytes()),
                ..other.client()
            }),
            "certificate",
        ),
        (
            "trusting another CA",
            Some(EtcdTls {
                ca_pem: Some(other.ca.clone().into_bytes()),
                ..pki.client()
            }),
            "UnknownIssuer",
        ),
        (
            "trusting the system's roots",
            Some(EtcdTls {
                ca_pem: None,
                ..pki.client()
            }),
            "certificate",
        ),
    ];
    for (case, tls, says) in cases {
        let message = refused(&url, tls, timeout).await;
        println!("{case}: {message}");
        assert!(
            message.contains(&endpoint),
            "{case}: {message:?} names {endpoint}"
        );
        assert!(
            message.contains("TLS"),
            "{case}: {message:?} says it is TLS"
        );
        assert!(message.contains(says), "{case}: {message:?} says {says:?}");
    }
    // Plain text to a TLS port fails too, within the timeout.
    let plain = url.replacen("etcds://", "etcd://", 1);
    let message = refused(&plain, None, timeout).await;
    println!("plain text: {message}");
    assert!(
        message.contains(&endpoint.replacen("https", "http", 1)),
        "{message}"
    );

    // etcd's own authentication (USER:PASSWORD@) works over mutual TLS too.
    let harness = EtcdHarness {
        etcd,
        count: AtomicUsize::new(0),
        tls: Some(pki.client()),
    };
    let mut admin =
        etcd_client::Client::connect(harness.etcd.endpoints(), harness.client_options())
            .await
            .unwrap();
    admin.user_add("root", "root-pw", None).await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    // The client certificate's common name is a user too: with it, no password is needed.
    admin.user_add("strata", "unused-pw", None).await.unwrap();
    admin.user_grant_role("strata", "root").await.unwrap();
    admin.auth_enable().await.unwrap();
    let with_user = |user: &str| url.replacen("etcds://", &format!("etcds://{user}@"), 1);
    let options = EtcdOptions::parse(&with_user("root:root-pw"))
        .unwrap()
        .with_tls(pki.client())
        .unwrap();
    let store = EtcdStore::connect(options)
        .await
        .expect("connect with a user over mutual TLS");
    let rev = store.put("/auth", b"v".to_vec()).await.unwrap();
    assert_eq!(store.get("/auth").await.unwrap().unwrap().mod_revision, rev);
    let message = refused(&with_user("root:wrong-pw"), Some(pki.client()), timeout).await;
    println!("wrong password over TLS: {message}");
    assert!(
        message.contains(&endpoint) && !message.contains("wrong-pw"),
        "{message}"
    );
    let store = EtcdStore::connect(
        EtcdOptions::parse(&url)
            .unwrap()
            .with_tls(pki.client())
            .unwrap(),
    )
    .await
    .expect("connect as the certificate's common name");
    store
        .put("/cn", b"v".to_vec())
        .await
        .expect("write as the common name");
}

/// `etcds://` URLs, the TLS options, and their errors (no etcd needed).
#[test]
fn tls_options_parse_and_fail_clearly() {
    let o = EtcdOptions::parse("etcds://a.example:2379,127.0.0.1:2380/strata").unwrap();
    assert_eq!(
        o.endpoints,
        ["https://a.example:2379", "https://127.0.0.1:2380"]
    );
    assert_eq!(o.tls, Some(EtcdTls::default()));
    assert_eq!(
        o.display_url(),
        "etcds://a.example:2379,127.0.0.1:2380/strata"
    );
    let o = EtcdOptions::parse("ETCDS://u:pw@h:1").unwrap();
    assert_eq!(o.user, Some(("u".into(), "pw".into())));
    assert_eq!(o.display_url(), "etcds://u:***@h:1");
    assert_eq!(EtcdOptions::parse("etcd://h:1").unwrap().tls, None);

    let pki = Pki::new("options");
    // TLS settings for a plain-text URL say to use etcds://.
    let message = EtcdOptions::parse("etcd://h:1")
        .unwrap()
        .with_tls(pki.client())
        .unwrap_err()
        .to_string();
    assert!(message.contains("etcds://"), "{message}");
    let o = EtcdOptions::parse("etcds://h:1")
        .unwrap()
        .with_tls(pki.client())
        .unwrap();
    assert_eq!(o.tls, Some(pki.client()));
    // The key never shows.
    let debug = format!("{o:?}");
    assert!(
        !debug.contains("PRIVATE KEY") && debug.contains("***"),
        "{debug}"
    );

    // Files: each error names the file and what is wrong with it.
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let ca = write("ca.pem", &pki.ca);
    let cert = write("cert.pem", &pki.client_cert);
    let key = write("key.pem", &pki.client_key);
    let junk = write("junk.pem", "not a PEM file\n");
    let missing = dir.path().join("missing.pem");
    let tls = EtcdTls::from_files(Some(&ca), None, None).unwrap();
    assert!(tls.ca_pem.is_some() && tls.client_cert_pem.is_none());
    assert_eq!(
        EtcdTls::from_files(None, None, None).unwrap(),
        EtcdTls::default()
    );
    let fails = [
        (
            Some(&missing),
            None,
            None,
            &missing,
            "cannot read the etcd CA certificate",
        ),
        (Some(&junk), None, None, &junk, "no PEM certificate"),
        (Some(&key), None, None, &key, "no PEM certificate"),
        (
            None,
            Some(&junk),
            Some(&key),
            &junk,
            "client certificate holds no PEM",
        ),
        (None, Some(&cert), Some(&cert), &cert, "no PEM private key"),
        (
            None,
            Some(&cert),
            Some(&missing),
            &missing,
            "cannot read the etcd client key",
        ),
        (
            Some(&ca),
            Some(&cert),
            None,
            &cert,
            "without its private key",
        ),
        (Some(&ca), None, Some(&key), &key, "without its certificate"),
    ];
    for (ca, cert, key, names, says) in fails {
        let message = EtcdTls::from_files(
            ca.map(|p| p.as_path()),
            cert.map(|p| p.as_path()),
            key.map(|p| p.as_path()),
        )
        .unwrap_err()
        .to_string();
        assert!(
            message.contains(&names.display().to_string()) && message.contains(says),
            "{message:?} should name {} and say {says:?}",
            names.display()
        );
    }
}

// ---------------------------------------------------------------------------------------
// Failover.

/// Kills and restarts each member of a 3-member cluster in turn while a writer writes and a
/// watch watches: the watch must resume by itself and deliver every write exactly once, in
/// order, the same as a watch replaying the history afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_survives_members_being_killed_and_restarted() {
    if skip() {
        return;
    }
    let started = Instant::now();
    let mut etcd = start_etcd(3);
    let store = connect(&etcd, "/failover").await;
    let start = store.revision().await.unwrap() + 1;
    let mut watch = store.watch("/w/", 0).await.unwrap();

    // The watcher: collects events until it sees /w/end.
    let watcher = tokio::spawn(async move {
        let mut seen: Vec<(Revision, String)> = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_secs(90), watch.next()).await {
                Ok(Some(Ok(event))) => {
                    let key = event.key().to_owned();
                    seen.push((event.revision(), key.clone()));
                    if key == "/w/end" {
                        return Ok(seen);
                    }
                }
                Ok(Some(Err(e))) => return Err(format!("the watch failed: {e} (saw {seen:?})")),
                Ok(None) => return Err(format!("the watch ended (saw {seen:?})")),
                Err(_) => return Err(format!("no event for 90s (saw {seen:?})")),
            }
        }
    });

    // The writer: one key after another, retrying a put that fails while a member is down.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let store = store.clone();
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut acked: Vec<(Revision, String)> = Vec::new();
            let mut failures = 0usize;
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let key = format!("/w/{i:05}");
                match store.put(&key, key.as_bytes().to_vec()).await {
                    Ok(rev) => {
                        acked.push((rev, key));
                        i += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(e) => {
                        println!("put {key}: {e}");
                        failures += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            (acked, failures)
        })
    };

    for member in 0..etcd.members() {
        tokio::time::sleep(Duration::from_millis(500)).await;
        tokio::task::block_in_place(|| etcd.kill(member));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        tokio::task::block_in_place(|| etcd.restart(member));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (acked, failures) = writer.await.expect("writer");
    // Like the writer's, a write right after the restarts may meet an election.
    let mut end = None;
    for _ in 0..50 {
        match store.put("/w/end", b"/w/end".to_vec()).await {
            Ok(rev) => {
                end = Some(rev);
                break;
            }
            Err(e) => {
                println!("put /w/end: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let end = end.expect("/w/end written within 50 tries");
    let seen = watcher
        .await
        .expect("watcher")
        .unwrap_or_else(|e| panic!("{e}"));

    // No gap, no duplicate, in order, ending at /w/end.
    for pair in seen.windows(2) {
        assert!(pair[1].0 > pair[0].0, "out of order or repeated: {pair:?}");
    }
    assert_eq!(seen.last().map(|(rev, _)| *rev), Some(end));
    let seen_set: BTreeSet<(Revision, String)> = seen.iter().cloned().collect();
    for write in &acked {
        assert!(seen_set.contains(write), "the watch missed {write:?}");
    }
    // Exactly what etcd's history holds (a put whose answer was lost may be in it too).
    let mut replay = store.watch("/w/", start).await.unwrap();
    let mut history = Vec::new();
    while history.last().map(|(rev, _)| *rev) != Some(end) {
        let event = next(&mut replay).await;
        history.push((event.revision(), event.key().to_owned()));
    }
    assert_eq!(seen, history, "the resumed watch differs from the history");
    let by_rev: BTreeMap<Revision, &str> = acked.iter().map(|(r, k)| (*r, k.as_str())).collect();
    assert!(by_rev.len() >= 10, "too few writes: {}", by_rev.len());
    println!(
        "{} writes ({failures} failed attempts while members were down) seen in order by a \
         watch across 3 member restarts, in {:?}",
        acked.len(),
        started.elapsed()
    );
}
