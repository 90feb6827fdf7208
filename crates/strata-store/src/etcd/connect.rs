//! Connecting to etcd: [`EtcdStore::connect`] sets up TLS and authentication, and waits until
//! a member with a leader answers, failing with a message that says what to check.

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, GetOptions};
use tokio::sync::watch as signal;

use super::failure::Failure;
use super::options::{is_http, is_https, normalize_namespace, plain_text_with_tls};
use super::{
    EtcdOptions, EtcdStore, EtcdTls, Shared, KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT, MAX_MESSAGE,
    RETRY_FIRST, RETRY_MAX,
};
use crate::StoreError;

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
}
