//! This node's decommission, as its agent carries it out once the control plane says so (in
//! the node's assignments, `strata node decommission`):
//!
//! 1. From the first word of it, containers that stop keep their writable layers.
//! 2. Once the node runs nothing (its instances moved to other nodes, replacements first), the
//!    agent says it is archiving, reads its slice of the cluster's history, and archives its
//!    data directory with it (`strata_forensics`: every instance's log and working directory,
//!    containers' writable layers, its own state and log), signed with the node's key. Left out: its
//!    private keys and credential, and the caches of content-addressed images and artifacts the control
//!    plane holds (named by digest in the releases the archive lists).
//! 3. It sends the archive, again and again while the control plane cannot be reached; the
//!    control plane answers once it verified, countersigned and kept it.
//! 4. Only then it wipes its data directory (zeros, synced, read back, removed) and reports
//!    the wipe; the control plane revokes the node and keeps the record, and the agent ends.
//!
//! A step that fails is reported with its reason (the node stays decommissioning, and an
//! operator asking again starts over); the wipe never starts before the archive was kept.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use strata_core::api::Assignment;
use strata_core::decommission::{
    DecommissionPhase, DecommissionProgress, Decommissioning, NodeHistory, WipeScope, WipeSummary,
};
use strata_core::DesiredState;

use crate::client::ClientError;
use crate::Agent;

/// The node's certificate and private key (PEM) as they are now: what signs its archive.
#[derive(Clone)]
pub struct NodeKey(Arc<dyn Fn() -> Option<(String, String)> + Send + Sync>);

impl NodeKey {
    pub fn new(current: impl Fn() -> Option<(String, String)> + Send + Sync + 'static) -> Self {
        Self(Arc::new(current))
    }

    pub(crate) fn current(&self) -> Option<(String, String)> {
        (self.0)()
    }
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeKey(..)")
    }
}

/// Entries of the data directory the archive leaves out: the node's private keys (the
/// archive is read by people; the node is revoked after), the work directory of the
/// decommission itself, and caches of content-addressed data the control plane holds.
const LEFT_OUT: [&str; 7] = [
    "tls/node.key",
    "mesh.key",
    "node-credential",
    DECOMMISSION_DIR,
    "images",
    "wasm-cache",
    "artifacts",
];

/// Where the archive is made, inside the data directory (so the wipe takes it too).
const DECOMMISSION_DIR: &str = ".decommission";

/// How often a report or the archive is sent again while the control plane cannot be
/// reached, at most.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// What the node's decommission came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decommissioned {
    /// The archive the control plane keeps (`strata archive get ID`).
    pub archive: String,
    pub wipe: WipeSummary,
    /// The files are wiped; the device (`--wipe device`) is next, once the agent's host let
    /// go of everything under the data directory: [`Agent::finish_device_wipe`].
    pub device_pending: bool,
}

/// How far this agent went with its node's decommission.
pub(crate) struct DecommissionState {
    /// A decommission task runs.
    running: AtomicBool,
    /// The releases this node ran since the agent started (`env/service#N`), for the
    /// archive's manifest.
    ran: StdMutex<BTreeSet<String>>,
    /// The latest assignments want an instance running here.
    wants_running: AtomicBool,
    done: tokio::sync::watch::Sender<Option<Decommissioned>>,
}

impl Default for DecommissionState {
    fn default() -> Self {
        Self {
            running: AtomicBool::new(false),
            ran: StdMutex::default(),
            wants_running: AtomicBool::new(false),
            done: tokio::sync::watch::channel(None).0,
        }
    }
}

/// Why a decommission task stopped before the end.
enum Stop {
    /// Not yet (the control plane says the node still runs something): tried again at
    /// the next answer.
    NotYet(String),
    /// A step failed: reported, the node stays decommissioning with the reason.
    Failed(String),
}

impl Agent {
    /// Resolves once this node is decommissioned: archived, wiped and revoked.
    pub async fn decommissioned(&self) -> Decommissioned {
        let mut done = self.decommission.done.subscribe();
        loop {
            if let Some(done) = done.borrow_and_update().clone() {
                return done;
            }
            if done.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Takes in the node's latest assignments and what they say of a decommission: starts
    /// it (once) when the control plane asks for one.
    pub(crate) fn follow_decommission(
        self: &Arc<Self>,
        order: Option<&Decommissioning>,
        assignments: &[Assignment],
    ) {
        {
            let mut ran = self.decommission.ran.lock().expect("ran lock");
            for a in assignments {
                ran.insert(format!(
                    "{}/{}#{}",
                    a.instance.env, a.instance.service, a.instance.release
                ));
            }
        }
        let wants_running = assignments
            .iter()
            .any(|a| a.instance.desired == DesiredState::Running);
        self.decommission
            .wants_running
            .store(wants_running, Ordering::SeqCst);
        let Some(order) = order else {
            return;
        };
        for driver in self.drivers.values() {
            driver.keep_writable_layers();
        }
        let phase = order.phase;
        if !matches!(
            phase,
            DecommissionPhase::Draining | DecommissionPhase::Archiving | DecommissionPhase::Wiping
        ) || self.decommission.running.swap(true, Ordering::SeqCst)
        {
            return;
        }
        let (archive, scope) = (order.archive.clone(), order.wipe);
        let agent = self.clone();
        tokio::spawn(async move {
            let outcome = agent.decommission_steps(phase, archive, scope).await;
            match outcome {
                Ok(done) => {
                    let what = match done.device_pending {
                        true => "node archived and its files wiped; its device is next",
                        false => "node decommissioned: archived, wiped, revoked",
                    };
                    tracing::warn!(archive = %done.archive, files = done.wipe.files, bytes = done.wipe.bytes, "{what}");
                    agent.decommission.done.send_replace(Some(done));
                }
                Err(Stop::NotYet(why)) => {
                    tracing::info!("decommission: not yet ({why})");
                    agent.decommission.running.store(false, Ordering::SeqCst);
                }
                Err(Stop::Failed(reason)) => {
                    tracing::error!("decommission failed: {reason}");
                    let failed = DecommissionProgress::Failed { reason };
                    let _ = agent.report_until_answered(&failed).await;
                    agent.decommission.running.store(false, Ordering::SeqCst);
                }
            }
        });
    }

    async fn decommission_steps(
        self: &Arc<Self>,
        phase: DecommissionPhase,
        kept: Option<String>,
        scope: WipeScope,
    ) -> Result<Decommissioned, Stop> {
        if scope == WipeScope::Device {
            // Refused now rather than after the archive and the files' wipe.
            strata_forensics::check_own_device(&self.config.data_dir)
                .map_err(|e| Stop::Failed(format!("--wipe device: {e}")))?;
        }
        let archive = match (phase, kept) {
            // Kept already (asked again after a failed wipe, or this agent restarted).
            (DecommissionPhase::Wiping, Some(kept)) => kept,
            _ => {
                self.until_idle().await;
                self.report_until_answered(&DecommissionProgress::Archiving)
                    .await
                    .map_err(|error| match error.status() {
                        Some(409) => Stop::NotYet(error.to_string()),
                        _ => Stop::Failed(format!("the control plane refused: {error}")),
                    })?;
                let history = self.history_until_answered().await?;
                let path = self.make_archive(history).await?;
                let record = self.send_archive(&path).await?;
                tracing::info!(archive = %record.id, digest = %record.digest, "archive kept by the control plane");
                record.id
            }
        };
        // Nothing writes the data directory from here on (heartbeats and the assignments
        // query touch none of it; the agent's own log, in the archive, is kept no more).
        crate::own_log::stop();
        if let Some(shipper) = self
            .loops
            .lock()
            .expect("loops lock")
            .get(crate::agent::SHIPPER_LOOP)
        {
            shipper.abort();
        }
        let root = self.config.data_dir.clone();
        let wiped = tokio::task::spawn_blocking(move || strata_forensics::wipe(&root))
            .await
            .map_err(|e| Stop::Failed(format!("wipe: {e}")))?
            .map_err(|e| Stop::Failed(format!("wipe: {e}")))?;
        let wipe = WipeSummary {
            files: wiped.files,
            bytes: wiped.bytes,
            other: wiped.other,
            ..Default::default()
        };
        if scope == WipeScope::Device {
            return Ok(Decommissioned {
                archive,
                wipe,
                device_pending: true,
            });
        }
        self.report_wiped(&wipe).await.map_err(Stop::Failed)?;
        Ok(Decommissioned {
            archive,
            wipe,
            device_pending: false,
        })
    }

    /// The last step of a decommission with `--wipe device`, once the agent's host let go
    /// of every file under the data directory (its listeners, its own files): the device is
    /// wiped (`strata_forensics::wipe_device_under`) and the wipe reported. A failure is
    /// reported too, and the node stays decommissioning with it.
    pub async fn finish_device_wipe(&self, done: Decommissioned) -> Result<Decommissioned, String> {
        let root = self.config.data_dir.clone();
        let wiped = tokio::task::spawn_blocking(move || strata_forensics::wipe_device_under(&root))
            .await
            .map_err(|e| e.to_string())
            .and_then(|wiped| wiped.map_err(|e| e.to_string()));
        let device = match wiped {
            Ok(device) => device,
            Err(why) => {
                let reason = format!("device wipe: {why}");
                let failed = DecommissionProgress::Failed {
                    reason: reason.clone(),
                };
                let _ = self.report_until_answered(&failed).await;
                return Err(reason);
            }
        };
        let mut wipe = done.wipe;
        wipe.device = Some(device.device.display().to_string());
        wipe.device_bytes = device.bytes;
        self.report_wiped(&wipe).await?;
        Ok(Decommissioned {
            archive: done.archive,
            wipe,
            device_pending: false,
        })
    }

    /// Reports the wipe: the end. The control plane revokes the node as it takes it, so a
    /// report sent again because its answer was lost is refused as a revoked node's (403,
    /// saying so): that refusal says it was taken.
    async fn report_wiped(&self, wipe: &WipeSummary) -> Result<(), String> {
        let wiped = DecommissionProgress::Wiped { wipe: wipe.clone() };
        match self.report_until_answered(&wiped).await {
            Ok(()) => Ok(()),
            Err(error) if error.status() == Some(403) && error.to_string().contains("revoked") => {
                Ok(())
            }
            Err(error) => Err(format!("the wipe's report was refused: {error}")),
        }
    }

    /// Waits until the node runs nothing and is asked to run nothing.
    async fn until_idle(&self) {
        while self.instance_count() > 0 || self.decommission.wants_running.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends `progress` until the control plane answers it (passing over its being out of
    /// reach); a refusal is the answer.
    async fn report_until_answered(
        &self,
        progress: &DecommissionProgress,
    ) -> Result<(), ClientError> {
        until_answered("decommission progress", || {
            self.client
                .decommission_progress(&self.config.name, progress)
        })
        .await
        .map(|_| ())
    }

    async fn history_until_answered(&self) -> Result<NodeHistory, Stop> {
        until_answered("node history", || {
            self.client.node_history(&self.config.name)
        })
        .await
        .map_err(|error| Stop::Failed(format!("cannot read the node's history: {error}")))
    }

    /// Archives the data directory with `history`, signed by the node's key.
    async fn make_archive(&self, history: NodeHistory) -> Result<PathBuf, Stop> {
        let Some((certificate, key)) = self.config.node_key.as_ref().and_then(NodeKey::current)
        else {
            return Err(Stop::Failed(
                "this node has no certificate to sign its archive with (it joined without one: a node of `strata dev`, or an HTTP control plane)".into(),
            ));
        };
        let root = self.config.data_dir.clone();
        let ran = self
            .decommission
            .ran
            .lock()
            .expect("ran lock")
            .iter()
            .cloned()
            .collect();
        let origin = origin(self.config.name.as_str(), "node".into(), ran);
        tokio::task::spawn_blocking(move || {
            archive_data_dir(&root, origin, &history, &certificate, &key)
        })
        .await
        .map_err(|e| Stop::Failed(format!("archiving: {e}")))?
        .map_err(|e| Stop::Failed(format!("archiving: {e}")))
    }

    /// Sends the archive until the control plane keeps it.
    async fn send_archive(&self, path: &Path) -> Result<strata_core::archive::ArchiveRecord, Stop> {
        until_answered("archive", || {
            self.client.put_archive(&self.config.name, path)
        })
        .await
        .map_err(|error| match error.status() {
            Some(409) => Stop::NotYet(error.to_string()),
            _ => Stop::Failed(format!("the control plane refused the archive: {error}")),
        })
    }
}

/// Calls `call` until the control plane answers it, however long it is out of reach or
/// failing on its side (pausing 0.2 s, then twice as long each time, at most
/// [`RETRY_MAX`]): its answer, or its refusal. `what` names the call in the log.
pub(crate) async fn until_answered<T, F, Fut>(what: &str, mut call: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let mut delay = Duration::from_millis(200);
    loop {
        match call().await {
            Err(error) if retryable(&error) => {
                tracing::warn!(%error, "{what}: the control plane did not take it; sending it again in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RETRY_MAX);
            }
            answer => return answer,
        }
    }
}

/// What the archive's manifest says of where it was made: `node`, of `subject`, its
/// kernel, this Strata version, the releases it ran, now (a millisecond later than any
/// archive made before by this process: a node's archive is named by the millisecond it was
/// made, and two instances may fail in the same one).
pub(crate) fn origin(
    node: &str,
    subject: String,
    releases: Vec<String>,
) -> strata_forensics::Origin {
    strata_forensics::Origin {
        node: node.to_string(),
        subject,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|k| k.trim().to_string())
            .unwrap_or_default(),
        strata_version: strata_core::version::VERSION.to_string(),
        releases,
        created_at: unique_millis(),
    }
}

/// Now, in milliseconds, and never the same twice in this process.
fn unique_millis() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = strata_core::now_millis();
    let previous = LAST
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
            Some(now.max(last + 1))
        })
        .expect("the update always answers");
    now.max(previous + 1)
}

/// Whether asking again may help: the control plane out of reach, or failing on its side.
fn retryable(error: &ClientError) -> bool {
    match error.status() {
        None => true,
        Some(status) => status >= 500 || status == 429,
    }
}

/// Archives `root` (less [`LEFT_OUT`]) and `history` at `root/.decommission/`.
fn archive_data_dir(
    root: &Path,
    origin: strata_forensics::Origin,
    history: &NodeHistory,
    certificate: &str,
    key: &str,
) -> Result<PathBuf, strata_forensics::ForensicsError> {
    let io = |e| strata_forensics::ForensicsError::io(root.display(), e);
    let work = root.join(DECOMMISSION_DIR);
    std::fs::create_dir_all(&work).map_err(io)?;
    let out = work.join(format!(
        "{}-{}.strata-archive",
        origin.node, origin.created_at
    ));
    let signer = strata_forensics::Signer::from_pem("the node's key", certificate, key)?;
    let made_at = origin.created_at / 1000;
    let mut builder = strata_forensics::ArchiveBuilder::create(&out, origin)?;
    add_tree(&mut builder, root, "")?;
    let events = serde_json::to_vec_pretty(&history.events).unwrap_or_default();
    let audit = serde_json::to_vec_pretty(&history.audit).unwrap_or_default();
    builder.add_bytes("history/events.json", &events, 0o644, made_at)?;
    builder.add_bytes("history/audit.json", &audit, 0o644, made_at)?;
    Ok(builder.finish(&signer)?.path)
}

/// Adds what is under `dir` (named `prefix` in the archive) less [`LEFT_OUT`], in name order.
fn add_tree(
    builder: &mut strata_forensics::ArchiveBuilder,
    dir: &Path,
    prefix: &str,
) -> Result<(), strata_forensics::ForensicsError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| strata_forensics::ForensicsError::io(dir.display(), e))?
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    for name in entries {
        let path = format!("{prefix}{name}");
        if LEFT_OUT.contains(&path.as_str()) {
            continue;
        }
        let source = dir.join(&name);
        // A directory holding something left out is walked; any other, added whole.
        let holds_left_out = LEFT_OUT
            .iter()
            .any(|left| left.starts_with(&format!("{path}/")));
        if holds_left_out && source.is_dir() {
            add_tree(builder, &source, &format!("{path}/"))?;
        } else {
            builder.add_path(&source, &path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ControlClient;

    /// A control plane on loopback whose archive route answers `status` for its first
    /// `failing` calls, then keeps the archive: its address and the bodies it was sent.
    async fn control_plane(
        failing: usize,
        status: axum::http::StatusCode,
    ) -> (String, Arc<std::sync::Mutex<Vec<Vec<u8>>>>) {
        use axum::response::IntoResponse;
        let bodies: Arc<std::sync::Mutex<Vec<Vec<u8>>>> = Arc::default();
        let seen = bodies.clone();
        let app = axum::Router::new().route(
            "/v1/nodes/{name}/archive",
            axum::routing::put(move |body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    let mut bodies = seen.lock().unwrap();
                    bodies.push(body.to_vec());
                    if bodies.len() <= failing {
                        return (status, "not now").into_response();
                    }
                    let record = strata_core::archive::ArchiveRecord {
                        id: "n1-1".into(),
                        node: "n1".into(),
                        subject: "node".into(),
                        digest: "sha256:00".into(),
                        size: body.len() as u64,
                        payload_digest: "sha256:01".into(),
                        files: 1,
                        bytes: 1,
                        kernel: String::new(),
                        strata_version: String::new(),
                        releases: Vec::new(),
                        made_at: 1,
                        stored_at: 2,
                        expires_at: None,
                    };
                    (axum::http::StatusCode::CREATED, axum::Json(record)).into_response()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{address}"), bodies)
    }

    #[tokio::test]
    async fn an_archive_is_sent_again_until_kept_and_a_refusal_ends_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n1.strata-archive");
        std::fs::write(&path, b"archive bytes").unwrap();
        // Failing on its side: sent again, whole each time, until kept.
        let (url, bodies) = control_plane(2, axum::http::StatusCode::SERVICE_UNAVAILABLE).await;
        let client = ControlClient::new(&url, None);
        let kept = until_answered("archive", || client.put_archive("n1", &path))
            .await
            .unwrap();
        assert_eq!(kept.id, "n1-1");
        let bodies = bodies.lock().unwrap().clone();
        assert_eq!(bodies.len(), 3);
        assert!(bodies.iter().all(|b| b == b"archive bytes"));
        // Refused (it does not verify): that is the answer, at once.
        let (url, bodies) = control_plane(1, axum::http::StatusCode::BAD_REQUEST).await;
        let client = ControlClient::new(&url, None);
        let refused = until_answered("archive", || client.put_archive("n1", &path)).await;
        assert_eq!(refused.unwrap_err().status(), Some(400));
        assert_eq!(bodies.lock().unwrap().len(), 1);
    }

    #[test]
    fn what_the_archive_leaves_out() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for file in [
            "epoch",
            "mesh.key",
            "node-credential",
            "tls/node.key",
            "tls/node.crt",
            "instances/web-1/output.log",
            "instances/web-1/work/data.txt",
            "images/blobs/sha256/ab",
            "artifacts/sha256/cd",
            ".decommission/old",
        ] {
            let path = root.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, file).unwrap();
        }
        let (certificate, key) = test_identity();
        let origin = strata_forensics::Origin {
            node: "n1".into(),
            subject: "node".into(),
            created_at: 1_700_000_000_000,
            ..Default::default()
        };
        let out =
            archive_data_dir(root, origin, &NodeHistory::default(), &certificate, &key).unwrap();
        assert!(out.starts_with(root.join(DECOMMISSION_DIR)));
        // Signed by a self-made certificate here (the e2e test verifies against the CA):
        // what the manifest lists is the point.
        let listed = manifest_paths(&out);
        for kept in [
            "epoch",
            "tls/node.crt",
            "instances/web-1/output.log",
            "instances/web-1/work/data.txt",
            "history/events.json",
            "history/audit.json",
        ] {
            assert!(
                listed.iter().any(|p| p == kept),
                "{kept} missing: {listed:?}"
            );
        }
        for left in [
            "mesh.key",
            "node-credential",
            "tls/node.key",
            "images",
            "artifacts",
            ".decommission",
        ] {
            assert!(
                !listed
                    .iter()
                    .any(|p| p == left || p.starts_with(&format!("{left}/"))),
                "{left} archived: {listed:?}"
            );
        }
    }

    /// The manifest's paths, read from the archive's outer tar.
    fn manifest_paths(archive: &Path) -> Vec<String> {
        let mut tar = tar::Archive::new(std::fs::File::open(archive).unwrap());
        for entry in tar.entries().unwrap() {
            let mut entry = entry.unwrap();
            if entry.path().unwrap().to_string_lossy() == strata_forensics::parts::MANIFEST {
                let manifest: strata_forensics::Manifest =
                    serde_json::from_reader(&mut entry).unwrap();
                return manifest.files.into_iter().map(|f| f.path).collect();
            }
        }
        panic!("no manifest");
    }

    fn test_identity() -> (String, String) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params = rcgen::CertificateParams::new(vec!["n1.node.strata".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}
