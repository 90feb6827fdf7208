//! Who may call what, over real HTTP against a real control plane (embedded store): every
//! route of the OpenAPI document, called by every kind of caller, is allowed or refused
//! exactly as `strata_core::auth::authorize` says; a route without a policy fails here; the
//! watch never replays a secret; nodes act only as themselves; refusals are audited.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use strata_control::guard::{route_action, PUBLIC_ROUTES};
use strata_control::{ControlConfig, ControlPlane};
use strata_core::auth::{authorize, CreateToken, Decision, Principal, Role};
use strata_store::{RedbStore, Store};

const JOIN_TOKEN: &str = "the-join-token-0123456789";

struct Api {
    url: String,
    plane: Arc<ControlPlane>,
    _dir: tempfile::TempDir,
}

async fn start() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        RedbStore::open(&dir.path().join("store.redb"))
            .await
            .unwrap(),
    );
    let key = strata_control::credentials::credential_key(&store)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let plane = ControlPlane::new(
        store,
        ControlConfig {
            data_dir: dir.path().to_path_buf(),
            liveness: Default::default(),
            ingress_port: None,
            join_token: JOIN_TOKEN.into(),
            credential_key: key,
            max_artifact_size: 1024,
            audit_retention: Duration::from_secs(3600),
            log_retention: strata_control::plane::DEFAULT_LOG_RETENTION,
            event_retention: strata_control::plane::DEFAULT_EVENT_RETENTION,
            node_certificates_required: false,
            api_ca_pem: None,
            liveness_tick: Duration::from_millis(50),
            server_id: "s1".into(),
            api_url: url.clone(),
            lease_ttl: Duration::from_secs(2),
            node_cert_ttl: strata_control::DEFAULT_NODE_CERT_TTL,
            scale_down_window: strata_control::DEFAULT_SCALE_DOWN_WINDOW,
            forget_down_after_ms: strata_control::DEFAULT_FORGET_DOWN_AFTER.as_millis() as u64,
            secrets_key_file: dir.path().join("secrets.key"),
        },
    )
    .unwrap();
    plane.identity().cluster_ca().await.unwrap();
    let router = strata_control::api::router(plane.clone());
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });
    Api {
        url,
        plane,
        _dir: dir,
    }
}

async fn token(plane: &ControlPlane, name: &str, role: Role, envs: &[&str]) -> String {
    plane
        .credentials()
        .create_token(
            &CreateToken {
                name: name.into(),
                role,
                envs: envs.iter().map(|e| e.to_string()).collect(),
                ttl_secs: None,
            },
            "test",
        )
        .await
        .unwrap()
        .token
}

/// Deploys the services of `spec` (TOML) to `env`, as an admin.
async fn deploy(api: &Api, env: &'static str, spec: &str) {
    let services = strata_core::spec::parse("strata.toml", spec)
        .unwrap()
        .services
        .into_iter()
        .map(|spec| strata_core::api::DeployService {
            spec,
            artifact_digest: None,
        })
        .collect();
    api.plane
        .deploy(
            &strata_core::EnvName::from_static(env),
            strata_core::api::DeployRequest { services },
            &strata_core::Actor::User("admin".into()),
        )
        .await
        .unwrap();
}

/// What the watch streams from revision 1 to `credential` within a moment (the history
/// replay, then nothing new), as text.
async fn watched_history(api: &Api, credential: &str) -> String {
    let response = reqwest::Client::new()
        .get(format!("{}/v1/watch?from=1", api.url))
        .bearer_auth(credential)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut text = String::new();
    use futures::StreamExt;
    while let Ok(Some(Ok(chunk))) =
        tokio::time::timeout(Duration::from_millis(700), body.next()).await
    {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text
}

/// Every (method, route template) of the OpenAPI document.
async fn documented_routes(url: &str) -> Vec<(reqwest::Method, String)> {
    let doc: serde_json::Value = reqwest::get(format!("{url}/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            routes.push((method.to_uppercase().parse().unwrap(), path.clone()));
        }
    }
    assert!(routes.len() > 30, "the document lists the API: {routes:?}");
    routes
}

fn concrete(route: &str) -> (String, BTreeMap<String, String>) {
    let values = [
        ("env", "dev"),
        ("service", "web"),
        ("name", "n1"),
        ("id", "i1"),
        (
            "digest",
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ),
    ];
    let mut path = route.to_string();
    let mut params = BTreeMap::new();
    for (name, value) in values {
        let placeholder = format!("{{{name}}}");
        if path.contains(&placeholder) {
            path = path.replace(&placeholder, value);
            params.insert(name.to_string(), value.to_string());
        }
    }
    (path, params)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_by_every_caller_is_allowed_or_refused_as_authorize_says() {
    let api = start().await;
    let plane = &api.plane;
    let callers: Vec<(&str, Option<String>, Principal)> = vec![
        ("anonymous", None, Principal::Anonymous),
        (
            "viewer",
            Some(token(plane, "viewer", Role::Viewer, &[]).await),
            Principal::User {
                name: "viewer".into(),
                role: Role::Viewer,
                envs: strata_core::auth::EnvScope::All,
            },
        ),
        (
            "deployer for prod",
            Some(token(plane, "deployer-prod", Role::Deployer, &["prod"]).await),
            Principal::User {
                name: "deployer-prod".into(),
                role: Role::Deployer,
                envs: strata_core::auth::EnvScope::Only(["prod".to_string()].into()),
            },
        ),
        (
            "deployer for dev",
            Some(token(plane, "deployer-dev", Role::Deployer, &["dev"]).await),
            Principal::User {
                name: "deployer-dev".into(),
                role: Role::Deployer,
                envs: strata_core::auth::EnvScope::Only(["dev".to_string()].into()),
            },
        ),
        (
            "operator",
            Some(token(plane, "operator", Role::Operator, &[]).await),
            Principal::User {
                name: "operator".into(),
                role: Role::Operator,
                envs: strata_core::auth::EnvScope::All,
            },
        ),
        (
            "admin",
            Some(token(plane, "admin", Role::Admin, &[]).await),
            Principal::User {
                name: "admin".into(),
                role: Role::Admin,
                envs: strata_core::auth::EnvScope::All,
            },
        ),
        (
            "node n1",
            Some(plane.credentials().node_credential("n1")),
            Principal::Node { name: "n1".into() },
        ),
        (
            "node n2",
            Some(plane.credentials().node_credential("n2")),
            Principal::Node { name: "n2".into() },
        ),
        (
            "join token",
            Some(JOIN_TOKEN.to_string()),
            Principal::Bootstrap,
        ),
    ];
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut checked = 0;
    for (method, route) in documented_routes(&api.url).await {
        if PUBLIC_ROUTES.contains(&route.as_str()) {
            continue;
        }
        let (path, params) = concrete(&route);
        let (action, env) = route_action(&method, &route, &params).unwrap_or_else(|| {
            panic!("{method} {route} has no access policy in guard::route_action")
        });
        for (who, credential, principal) in &callers {
            let expected = authorize(principal, &action, env.as_deref());
            let mut request = client
                .request(method.clone(), format!("{}{path}", api.url))
                .header("content-type", "application/json");
            if let Some(credential) = credential {
                request = request.bearer_auth(credential);
            }
            // A body no handler accepts: an allowed call ends in its handler (400, 404, ...),
            // a refused one at the gate (401, 403), before any handler reads anything.
            let status = request.body("{}").send().await.unwrap().status().as_u16();
            match expected {
                Decision::Allow => assert!(
                    status != 401 && status != 403,
                    "{who}: {method} {route} should pass the gate, got {status}"
                ),
                Decision::Unauthenticated { .. } => {
                    assert_eq!(status, 401, "{who}: {method} {route}")
                }
                Decision::Forbidden { .. } => assert_eq!(status, 403, "{who}: {method} {route}"),
            }
            checked += 1;
        }
    }
    assert!(checked > 300, "{checked} calls checked");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_watch_replays_no_secret_with_or_without_credentials() {
    let api = start().await;
    let admin = token(&api.plane, "admin", Role::Admin, &[]).await;
    // Without a credential: refused.
    let response = reqwest::get(format!("{}/v1/watch?from=1", api.url))
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // With the admin's and a node's: the history from revision 1, which holds the CA with its
    // key, the join token, the credential key and token hashes, shows none of them.
    for credential in [admin, api.plane.credentials().node_credential("n1")] {
        let text = watched_history(&api, &credential).await;
        for secret in ["PRIVATE KEY", "/pki/", "/cluster/", "/auth/", JOIN_TOKEN] {
            assert!(
                !text.contains(secret),
                "the watch streamed {secret}: {text}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_acts_only_as_itself_and_refusals_are_audited() {
    let api = start().await;
    let n1 = api.plane.credentials().node_credential("n1");
    let client = reqwest::Client::new();
    // n1 heartbeats for n2: refused, and audited as n1.
    let response = client
        .post(format!("{}/v1/nodes/n2/heartbeat", api.url))
        .bearer_auth(&n1)
        .json(&serde_json::json!({"epoch": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: strata_core::api::ErrorBody = response.json().await.unwrap();
    assert!(body.message.contains("may act only as itself"), "{body:?}");
    // n1 registers as n2 through its own route: refused too.
    let response = client
        .post(format!("{}/v1/nodes/n1/register", api.url))
        .bearer_auth(&n1)
        .json(&serde_json::json!({"name": "n2", "agent_url": "http://x", "labels": {}, "drivers": []}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error(), "{}", response.status());
    // The join token fetches a new node's credential, but not a live node's.
    let response = client
        .post(format!("{}/v1/nodes/n3/credential", api.url))
        .bearer_auth(JOIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let got: strata_core::auth::NodeCredential = response.json().await.unwrap();
    assert_eq!(
        got.credential,
        api.plane.credentials().node_credential("n3")
    );

    let audit = strata_control::audit::read(
        api.plane.store(),
        &strata_control::audit::AuditQuery {
            limit: 100,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let refused = audit
        .iter()
        .find(|r| r.route == "POST /v1/nodes/{name}/heartbeat")
        .expect("the refused heartbeat is audited");
    assert_eq!(refused.who, "node:n1");
    assert_eq!(refused.status, 403);
    assert!(refused.summary.contains("name=n2"), "{refused:?}");
    assert!(refused.from.starts_with("127.0.0.1:"), "{refused:?}");
    let joined = audit
        .iter()
        .find(|r| r.route == "POST /v1/nodes/{name}/credential")
        .expect("a join is audited");
    assert_eq!((joined.who.as_str(), joined.status), ("join-token", 200));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_gets_certificates_only_for_its_own_address() {
    let api = start().await;
    let n1 = api.plane.credentials().node_credential("n1");
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/v1/nodes/n1/register", api.url))
        .bearer_auth(&n1)
        .json(&strata_core::api::RegisterNode {
            name: strata_core::NodeName::from_static("n1"),
            agent_url: "http://127.0.0.5:7701".into(),
            labels: Default::default(),
            capacity: Default::default(),
            drivers: vec![],
            last_epoch: None,
            mesh_addr: Some("127.0.0.5:7443".into()),
            agent_version: None,
        })
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let ask = |address: &str| {
        let (_, csr) = strata_mesh::identity::node_key_and_csr("n1").unwrap();
        client
            .post(format!("{}/v1/nodes/n1/certificate", api.url))
            .bearer_auth(&n1)
            .json(&strata_core::api::CertificateRequest {
                csr,
                address: Some(address.into()),
            })
            .send()
    };
    let response = ask("127.0.0.9:7443").await.unwrap();
    assert_eq!(response.status(), 403);
    let body: strata_core::api::ErrorBody = response.json().await.unwrap();
    assert!(
        body.message.contains("only for its own address"),
        "{body:?}"
    );
    let response = ask("127.0.0.5:7443").await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_artifact_over_the_limit_is_refused_before_it_is_read() {
    let api = start().await;
    let admin = token(&api.plane, "admin", Role::Admin, &[]).await;
    let body = vec![0u8; 4096];
    let digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body))
    );
    let response = reqwest::Client::new()
        .put(format!("{}/v1/blobs/{digest}", api.url))
        .bearer_auth(&admin)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: strata_core::api::ErrorBody = response.json().await.unwrap();
    assert!(body.hint.unwrap().contains("--max-artifact-size"));
}

/// A name in a path is checked where it enters: one that is not valid for its kind is a 400
/// that says which rule it breaks, before any handler (or the store) sees it.
#[tokio::test]
async fn names_in_paths_are_checked_at_the_edge() {
    let api = start().await;
    let admin = token(&api.plane, "admin", Role::Admin, &[]).await;
    let cases = [
        ("GET", "/v1/envs/Prod/services", "environment name `Prod`"),
        ("GET", "/v1/envs/dev/services/web_1", "service name `web_1`"),
        (
            "DELETE",
            "/v1/envs/-dev/services/web",
            "environment name `-dev`",
        ),
        ("POST", "/v1/nodes/Node.1/drain", "node name `Node.1`"),
    ];
    for (method, path, named) in cases {
        let response = reqwest::Client::new()
            .request(method.parse().unwrap(), format!("{}{path}", api.url))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{method} {path}");
        let body: strata_core::api::ErrorBody = response.json().await.unwrap();
        assert!(
            body.message.contains(named) && body.message.contains("lowercase letters"),
            "{method} {path}: {}",
            body.message
        );
    }
}

/// Configuration is read only where a role may read config: a release or a service shows no
/// value, to anyone, and a viewer's or another environment's token cannot reach one through
/// any read (the lists, one service, its releases, the watch's history).
#[tokio::test(flavor = "multi_thread")]
async fn no_read_of_a_service_or_release_shows_a_config_value() {
    let api = start().await;
    let spec = r#"
[service.web]
command = ["web"]
[service.web.config]
API_KEY = "s3cret-everywhere"
[service.web.environments.prod.config]
API_KEY = "s3cret-in-prod"
"#;
    deploy(&api, "prod", spec).await;
    let viewer = token(&api.plane, "viewer", Role::Viewer, &[]).await;
    let dev_deployer = token(&api.plane, "dev-deployer", Role::Deployer, &["dev"]).await;
    let admin = token(&api.plane, "admin", Role::Admin, &[]).await;
    let reads = [
        "/v1/services",
        "/v1/envs/prod/services",
        "/v1/envs/prod/services/web",
        "/v1/envs/prod/services/web/releases",
    ];
    for (who, credential) in [
        ("viewer", &viewer),
        ("dev deployer", &dev_deployer),
        ("admin", &admin),
    ] {
        for path in reads {
            let response = reqwest::Client::new()
                .get(format!("{}{path}", api.url))
                .bearer_auth(credential)
                .send()
                .await
                .unwrap();
            let text = response.text().await.unwrap();
            assert!(
                !text.contains("s3cret"),
                "{who} read a config value at {path}: {text}"
            );
        }
        let text = watched_history(&api, credential).await;
        if who != "admin" {
            assert!(
                !text.contains("s3cret"),
                "{who} watched a config value: {text}"
            );
        }
    }
}

/// A node reports status only for instances placed on it: naming another node is refused by
/// the gate (403), and naming itself for an instance placed elsewhere is refused by the plane
/// (409); the record stays as it was.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_reports_status_only_for_its_own_instances() {
    use strata_core::{keys, DesiredState, InstanceId, InstanceState, InstanceStatus, NodeName};
    let api = start().await;
    let id = InstanceId::from_static("web-1-0a1b2c");
    let instance =
        strata_testkit::fixtures::instance(id.as_str(), "web", "n2", DesiredState::Running);
    api.plane
        .store()
        .put(&keys::instance(&id), serde_json::to_vec(&instance).unwrap())
        .await
        .unwrap();
    let status = |node: &'static str| InstanceStatus {
        address: Some("127.0.0.1:9".into()),
        ..InstanceStatus::new(
            id.clone(),
            NodeName::from_static(node),
            InstanceState::Running,
            "",
        )
    };
    let n1 = api.plane.credentials().node_credential("n1");
    // A PUT of `body` to `path` by node n1.
    let put_as_n1 = |path: String, body: serde_json::Value| {
        reqwest::Client::new()
            .put(format!("{}{path}", api.url))
            .bearer_auth(&n1)
            .json(&body)
            .send()
    };
    for (reported, expected) in [(status("n2"), 403), (status("n1"), 409)] {
        let response = put_as_n1(
            format!("/v1/instances/{id}/status"),
            serde_json::to_value(&reported).unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(
            response.status(),
            expected,
            "n1 reporting as {}",
            reported.node
        );
    }
    // Many at once: a status of another node's makes the whole report refused, too many
    // statuses are refused, and n2's instance reported by n1 is named as not wanted there.
    let batch = |statuses: Vec<InstanceStatus>| strata_core::api::StatusReports { statuses };
    let too_many = batch(vec![status("n1"); strata_core::api::StatusReports::MAX + 1]);
    for (report, expected) in [
        (batch(vec![status("n1"), status("n2")]), 403),
        (too_many, 400),
        (batch(vec![status("n1")]), 200),
    ] {
        let response = put_as_n1(
            "/v1/nodes/n1/status".into(),
            serde_json::to_value(&report).unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(
            response.status(),
            expected,
            "{} statuses",
            report.statuses.len()
        );
        if expected == 200 {
            let stored: strata_core::api::StatusReportsStored = response.json().await.unwrap();
            assert_eq!(stored.not_wanted, std::slice::from_ref(&id));
        }
    }
    assert!(api
        .plane
        .store()
        .get(&keys::status(&id))
        .await
        .unwrap()
        .is_none());
}

/// A JSON body past the API's limit is refused with 413 before it is parsed.
#[tokio::test]
async fn a_json_body_over_the_limit_is_refused() {
    let api = start().await;
    let admin = token(&api.plane, "admin", Role::Admin, &[]).await;
    let body = format!(
        "{{\"services\": [], \"pad\": \"{}\"}}",
        "x".repeat(strata_control::api::MAX_JSON_BODY + 1)
    );
    let response = reqwest::Client::new()
        .post(format!("{}/v1/envs/dev/deploy", api.url))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
}

/// A release stored with config values (before they were kept apart) loses them when a
/// server starts, so the watch cannot stream them either.
#[tokio::test]
async fn releases_stored_with_config_are_rewritten_without_it() {
    let api = start().await;
    let mut spec = strata_core::spec::parse(
        "strata.toml",
        "[service.web]\ncommand = [\"web\"]\n[service.web.config]\nAPI_KEY = \"s3cret\"\n",
    )
    .unwrap()
    .services
    .remove(0);
    spec.env_config.insert(
        "prod".into(),
        [("API_KEY".to_string(), "s3cret-prod".to_string())].into(),
    );
    let release = strata_testkit::fixtures::release("prod", "web", 1, spec);
    let key = strata_core::keys::release("prod", "web", 1);
    api.plane
        .store()
        .put(&key, serde_json::to_vec(&release).unwrap())
        .await
        .unwrap();
    assert_eq!(api.plane.strip_config_from_releases().await.unwrap(), 1);
    assert_eq!(
        api.plane.strip_config_from_releases().await.unwrap(),
        0,
        "once"
    );
    let stored = api.plane.store().get(&key).await.unwrap().unwrap();
    assert!(!String::from_utf8_lossy(&stored.value).contains("s3cret"));
    let stored: strata_core::Release = serde_json::from_slice(&stored.value).unwrap();
    assert_eq!(stored.spec, release.spec.without_config());
}

/// A deploy sent as JSON (no parser on the way) is checked by the server as a spec file
/// would be: the health check's SSRF, a platform setting through config and a replica count
/// past the cap are refused with the key and the fix, and nothing is stored.
#[tokio::test]
async fn a_deploy_that_skipped_the_parser_is_checked_by_the_server() {
    let api = start().await;
    let deployer = token(&api.plane, "deployer", Role::Deployer, &["dev"]).await;
    let valid = strata_core::spec::parse(
        "strata.toml",
        "[service.web]\ncommand = [\"web\"]\n[service.web.health]\npath = \"/healthz\"\n",
    )
    .unwrap()
    .services
    .remove(0);
    type Change = fn(&mut serde_json::Value);
    let table: [(&str, Change); 3] = [
        ("health.path", |spec| {
            spec["health"]["path"] = "@127.0.0.1:9999/x".into()
        }),
        ("config", |spec| {
            spec["config"]["STRATA_CONTAINER_CAPABILITIES"] = "SYS_ADMIN".into()
        }),
        ("scale.replicas", |spec| {
            spec["scale"]["replicas"] = 100_000.into()
        }),
    ];
    for (key, change) in table {
        let mut spec = serde_json::to_value(&valid).unwrap();
        change(&mut spec);
        let response = reqwest::Client::new()
            .post(format!("{}/v1/envs/dev/deploy", api.url))
            .bearer_auth(&deployer)
            .json(&serde_json::json!({ "services": [{ "spec": spec }] }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{key}");
        let body = response.text().await.unwrap();
        assert!(body.contains(&format!("`{key}`")), "{key}: {body}");
        assert!(body.contains("service `web`"), "{body}");
    }
    assert!(api.plane.services(None).await.unwrap().is_empty());
}

/// One environment cannot take over another's traffic: a route host that is another
/// service's platform name, or that another service serves, is refused with who owns it.
#[tokio::test]
async fn a_route_host_of_another_service_is_refused_with_its_owner() {
    let api = start().await;
    let admin = token(&api.plane, "admin", Role::Admin, &[]).await;
    let deploy = |env: &'static str, spec: &'static str| {
        let (url, admin) = (api.url.clone(), admin.clone());
        async move {
            let services: Vec<_> = strata_core::spec::parse("strata.toml", spec)
                .unwrap()
                .services
                .into_iter()
                .map(|spec| serde_json::json!({ "spec": spec }))
                .collect();
            reqwest::Client::new()
                .post(format!("{url}/v1/envs/{env}/deploy"))
                .bearer_auth(&admin)
                .json(&serde_json::json!({ "services": services }))
                .send()
                .await
                .unwrap()
        }
    };
    let shop =
        "[service.web]\ncommand = [\"web\"]\n[service.web.route]\nhosts = [\"shop.example.com\"]\n";
    assert_eq!(deploy("dev", shop).await.status(), 200);
    assert_eq!(
        deploy("dev", "[service.backend]\ncommand = [\"b\"]\n")
            .await
            .status(),
        200
    );
    let hijacks = [
        (
            "[service.web]\ncommand = [\"w\"]\n[service.web.route]\nhosts = [\"backend.dev.localhost\"]\n",
            "is the name of service `backend` in environment `dev`",
        ),
        (
            "[service.api]\ncommand = [\"a\"]\n[service.api.route]\nhosts = [\"shop.example.com\"]\n",
            "is served by service `web` in environment `dev`",
        ),
    ];
    for (spec, says) in hijacks {
        let response = deploy("zz", spec).await;
        assert_eq!(response.status(), 400);
        let body = response.text().await.unwrap();
        assert!(body.contains(says), "{body}");
    }
    // Its owner deploys it again, changed: still its own.
    let again = "[service.web]\ncommand = [\"web\", \"v2\"]\n[service.web.route]\nhosts = [\"shop.example.com\"]\n";
    assert_eq!(deploy("dev", again).await.status(), 200);
}

/// What `path` answers `credential` within a moment (streams are read until they pause).
async fn read_all(api: &Api, path: &str, credential: &str) -> String {
    use futures::StreamExt;
    let Ok(response) = reqwest::Client::new()
        .get(format!("{}{path}", api.url))
        .bearer_auth(credential)
        .send()
        .await
    else {
        return String::new();
    };
    let mut body = response.bytes_stream();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(
        deadline.min(tokio::time::Instant::now() + Duration::from_millis(500)),
        body.next(),
    )
    .await
    {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn no_route_gives_a_secret_value_back_to_anyone() {
    let api = start().await;
    let admin = token(&api.plane, "admin", Role::Admin, &[]).await;
    let client = reqwest::Client::new();
    let secret_url = format!("{}/v1/envs/dev/services/web/secrets/DB", api.url);
    let set = client
        .put(&secret_url)
        .bearer_auth(&admin)
        .json(&serde_json::json!({ "value": "hunter2-over-http" }))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    let set: serde_json::Value = set.json().await.unwrap();
    assert_eq!(set["version"], 1);
    // A body that does not parse is refused without being quoted back.
    let refused = client
        .put(&secret_url)
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body(r#"{"value": 987654321}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert!(!refused.text().await.unwrap().contains("987654321"));
    let spec = "[service.web]\ncommand = [\"web\"]\n[service.web.secrets]\nDB = { env = \"DB_PASSWORD\" }\n";
    deploy(&api, "dev", spec).await;
    // Every GET route, as the admin and as a node: no value.
    let node = api.plane.credentials().node_credential("n1");
    let mut read = 0;
    for (method, route) in documented_routes(&api.url).await {
        if method != reqwest::Method::GET {
            continue;
        }
        let (path, _) = concrete(&route);
        for credential in [&admin, &node] {
            let text = read_all(&api, &path, credential).await;
            assert!(!text.contains("hunter2"), "{path} gave the value: {text}");
            read += 1;
        }
    }
    assert!(read > 40, "{read} reads");
    let text = read_all(&api, "/v1/envs/dev/services/web/secrets", &admin).await;
    assert!(
        text.contains("\"DB\"") && text.contains("\"set_by\":\"admin\""),
        "{text}"
    );
    let audit = read_all(&api, "/v1/audit", &admin).await;
    assert!(
        audit.contains("web DB v1") && !audit.contains("hunter2"),
        "{audit}"
    );
}

/// A protected environment changes by promotion: a deployer's direct deploy is refused
/// (403, saying how), its promotion goes through, an admin may still deploy, and only an
/// admin protects or opens an environment.
#[tokio::test(flavor = "multi_thread")]
async fn a_protected_environment_changes_only_by_promotion_or_an_admin() {
    let api = start().await;
    let admin = token(&api.plane, "root", Role::Admin, &[]).await;
    let deployer = token(&api.plane, "ci", Role::Deployer, &["staging", "prod"]).await;
    let operator = token(&api.plane, "ops", Role::Operator, &[]).await;
    let spec = |greeting: &str| {
        serde_json::json!({"services": [{
            "spec": serde_json::to_value(
                strata_core::spec::parse(
                    "s.toml",
                    &format!("[service.web]\ncommand = [\"web\"]\n[service.web.config]\nGREETING = \"{greeting}\"\n"),
                )
                .unwrap()
                .services
                .remove(0),
            )
            .unwrap(),
            "artifact_digest": null
        }]})
    };
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, credential: &str, body: serde_json::Value| {
        http.request(method, format!("{}{path}", api.url))
            .bearer_auth(credential)
            .json(&body)
            .send()
    };
    use reqwest::Method;
    // Both environments get the service from its spec; then prod is protected.
    for env in ["staging", "prod"] {
        let deployed = call(
            Method::POST,
            &format!("/v1/envs/{env}/deploy"),
            &deployer,
            spec(env),
        )
        .await
        .unwrap();
        assert_eq!(deployed.status(), 200, "{}", deployed.text().await.unwrap());
    }
    let protect = serde_json::json!({"protected": true});
    for (who, credential, status) in [
        ("a deployer", &deployer, 403),
        ("an operator", &operator, 403),
        ("an admin", &admin, 200),
    ] {
        let answer = call(
            Method::PUT,
            "/v1/envs/prod/protection",
            credential,
            protect.clone(),
        )
        .await
        .unwrap();
        assert_eq!(answer.status(), status, "{who}");
    }
    let refused = call(
        Method::POST,
        "/v1/envs/prod/deploy",
        &deployer,
        spec("changed"),
    )
    .await
    .unwrap();
    assert_eq!(refused.status(), 403);
    let body = refused.text().await.unwrap();
    assert!(body.contains("environment prod is protected"), "{body}");
    assert!(body.contains("strata promote"), "{body}");
    // staging moves on; its release is promoted into prod by the same deployer.
    let moved = call(Method::POST, "/v1/envs/staging/deploy", &deployer, {
        let mut next = spec("staging");
        next["services"][0]["spec"]["command"] = serde_json::json!(["web", "--v2"]);
        next
    })
    .await
    .unwrap();
    assert_eq!(moved.status(), 200);
    let promote = serde_json::json!({"from": "staging", "force": true});
    let promoted = call(
        Method::POST,
        "/v1/envs/prod/services/web/promote",
        &deployer,
        promote,
    )
    .await
    .unwrap();
    assert_eq!(promoted.status(), 200, "{}", promoted.text().await.unwrap());
    // Nor may a deployer delete a service of it.
    let delete = http
        .delete(format!("{}/v1/envs/prod/services/web", api.url))
        .bearer_auth(&deployer)
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 403);
    // An admin may still deploy directly; opened again, anyone who may deploy does.
    let by_admin = call(Method::POST, "/v1/envs/prod/deploy", &admin, spec("hotfix"))
        .await
        .unwrap();
    assert_eq!(by_admin.status(), 200);
    let open = call(
        Method::PUT,
        "/v1/envs/prod/protection",
        &admin,
        serde_json::json!({"protected": false}),
    )
    .await
    .unwrap();
    assert_eq!(open.status(), 200);
    let again = call(
        Method::POST,
        "/v1/envs/prod/deploy",
        &deployer,
        spec("later"),
    )
    .await
    .unwrap();
    assert_eq!(again.status(), 200);
    let events = api.plane.events(None, 100).await.unwrap();
    assert!(events
        .iter()
        .any(|e| e.kind == strata_core::EventKind::EnvProtection
            && e.message.contains("only promotion changes it")));
}
