//! The control plane's API as an agent uses it.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use strata_core::api::{
    Assignments, CertificateRequest, Heartbeat, HeartbeatAck, MetricsReport, NodeCertificate,
    NodeEvent, RegisterNode, Registered, ShippedLogs, StatusReports, StatusReportsStored,
};
use strata_core::{InstanceStatus, Node};
use tokio::io::AsyncWriteExt;

pub use strata_client::ClientError;

/// The control plane's API as an agent uses it: typed calls over [`strata_client::Client`]
/// (one or several servers with failover; the join credential, then the node's certificate).
#[derive(Debug, Clone)]
pub struct ControlClient {
    api: strata_client::Client,
}

impl ControlClient {
    /// A client of the control plane at `bases` (one URL, or several separated by commas),
    /// presenting the join token `token`.
    pub fn new(bases: &str, token: Option<&str>) -> Self {
        Self::trusting(bases, token, None)
    }

    /// A client presenting `token` that trusts `ca_pem` (the cluster CA) for an HTTPS API.
    pub fn trusting(bases: &str, token: Option<&str>, ca_pem: Option<&str>) -> Self {
        Self {
            api: strata_client::Client::new(bases, token, ca_pem),
        }
    }

    /// From now on (this client and every clone) the node authenticates with its certificate
    /// (mutual TLS) instead of its bearer credential: at join, and at every renewal.
    pub fn present_certificate(&self, cert_pem: &str, key_pem: &str) -> Result<(), ClientError> {
        self.api.present_certificate(cert_pem, key_pem)
    }

    /// The server currently used.
    pub fn base(&self) -> String {
        self.api.base()
    }

    /// Every call an agent makes is safe to repeat (registration, heartbeats, reports,
    /// assignments): a hung server is passed over on a timeout too.
    async fn send(
        &self,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        self.api.send_idempotent(build).await
    }

    async fn check(
        &self,
        what: &str,
        response: reqwest::Response,
    ) -> Result<reqwest::Response, ClientError> {
        strata_client::Client::check(what, response).await
    }

    fn decode_error(&self, source: reqwest::Error) -> ClientError {
        ClientError::Unreachable {
            url: self.base(),
            source,
        }
    }

    /// Sends the request `build` makes, checks the answer (`what` names the call in an
    /// error) and decodes its JSON body.
    async fn call_for<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let response = self.send(build).await?;
        self.check(what, response)
            .await?
            .json()
            .await
            .map_err(|e| self.decode_error(e))
    }

    /// Sends the request `build` makes and checks the answer, whose body says nothing more.
    async fn call(
        &self,
        what: &str,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<(), ClientError> {
        let response = self.send(build).await?;
        self.check(what, response).await.map(|_| ())
    }

    /// A request waits for `env/service` at zero instances: the control plane starts one.
    pub async fn wake(&self, env: &str, service: &str) -> Result<(), ClientError> {
        self.call("wake-up", |http, base| {
            http.post(format!("{base}/v1/envs/{env}/services/{service}/wake"))
                .timeout(Duration::from_secs(5))
        })
        .await
    }

    /// Has the control plane sign this node's certificate (mutual TLS between proxies).
    pub async fn certificate(
        &self,
        node: &str,
        request: &CertificateRequest,
    ) -> Result<NodeCertificate, ClientError> {
        self.call_for("certificate request", |http, base| {
            http.post(format!("{base}/v1/nodes/{node}/certificate"))
                .timeout(Duration::from_secs(5))
                .json(request)
        })
        .await
    }

    /// Who the control plane takes this client's credential for (a check that it is valid).
    pub async fn whoami(&self) -> Result<(), ClientError> {
        self.call("whoami", |http, base| {
            http.get(format!("{base}/v1/whoami"))
                .timeout(Duration::from_secs(5))
        })
        .await
    }

    /// This node's credential: asked with the join token once (or with the node's own).
    pub async fn credential(&self, node: &str) -> Result<String, ClientError> {
        let answer: strata_core::auth::NodeCredential = self
            .call_for("node credential", |http, base| {
                http.post(format!("{base}/v1/nodes/{node}/credential"))
                    .timeout(Duration::from_secs(5))
            })
            .await?;
        Ok(answer.credential)
    }

    pub async fn register(&self, request: &RegisterNode) -> Result<Node, ClientError> {
        let registered: Registered = self
            .call_for("registration", |http, base| {
                http.post(format!("{base}/v1/nodes/{}/register", request.name))
                    .timeout(Duration::from_secs(5))
                    .json(request)
            })
            .await?;
        Ok(registered.node)
    }

    /// Says this node's agent is stopping: the control plane moves its instances elsewhere.
    pub async fn leave(&self, node: &str) -> Result<strata_core::api::Leaving, ClientError> {
        self.call_for("leave", |http, base| {
            http.post(format!("{base}/v1/nodes/{node}/leave"))
                .timeout(Duration::from_secs(5))
        })
        .await
    }

    pub async fn heartbeat(&self, node: &str, epoch: u64) -> Result<HeartbeatAck, ClientError> {
        let beat = Heartbeat { epoch };
        self.call_for("heartbeat", |http, base| {
            http.post(format!("{base}/v1/nodes/{node}/heartbeat"))
                .timeout(Duration::from_secs(2))
                .json(&beat)
        })
        .await
    }

    pub async fn assignments(&self, node: &str) -> Result<Assignments, ClientError> {
        self.call_for("assignments", |http, base| {
            http.get(format!("{base}/v1/nodes/{node}/assignments"))
                .timeout(Duration::from_secs(5))
        })
        .await
    }

    /// A blocking query: answers when what `node` must run changed after `index` (the
    /// `revision` of the assignments it holds), or after `wait` with them unchanged; by
    /// removals where the server can ([`Assignments::merged_with`] reads either form).
    pub async fn assignments_after(
        &self,
        node: &str,
        index: u64,
        wait: Duration,
    ) -> Result<Assignments, ClientError> {
        let query = [
            ("index", index.to_string()),
            ("wait_ms", wait.as_millis().to_string()),
            ("removals", "true".to_string()),
        ];
        self.call_for("assignments", |http, base| {
            http.get(format!("{base}/v1/nodes/{node}/assignments"))
                .query(&query)
                .timeout(wait + Duration::from_secs(5))
        })
        .await
    }

    /// Sends this node's per-service traffic of the last window.
    pub async fn metrics(&self, node: &str, report: &MetricsReport) -> Result<(), ClientError> {
        self.call("metrics report", |http, base| {
            http.post(format!("{base}/v1/nodes/{node}/metrics"))
                .timeout(Duration::from_secs(2))
                .json(report)
        })
        .await
    }

    /// Sends what this node's instances wrote since the last shipment.
    pub async fn ship_logs(&self, node: &str, logs: &ShippedLogs) -> Result<(), ClientError> {
        self.call("log shipment", |http, base| {
            http.post(format!("{base}/v1/nodes/{node}/logs"))
                .timeout(Duration::from_secs(5))
                .json(logs)
        })
        .await
    }

    /// Records an event this node observed in the cluster's event log.
    pub async fn event(&self, node: &str, event: &NodeEvent) -> Result<(), ClientError> {
        self.call("event", |http, base| {
            http.post(format!("{base}/v1/nodes/{node}/events"))
                .timeout(Duration::from_secs(5))
                .json(event)
        })
        .await
    }

    pub async fn report(&self, status: &InstanceStatus) -> Result<(), ClientError> {
        self.call("status report", |http, base| {
            http.put(format!("{base}/v1/instances/{}/status", status.id))
                .timeout(Duration::from_secs(5))
                .json(status)
        })
        .await
    }

    /// Reports what node `node` observed of its instances, many at once.
    pub async fn report_statuses(
        &self,
        node: &str,
        report: &StatusReports,
    ) -> Result<StatusReportsStored, ClientError> {
        self.call_for("status report", |http, base| {
            http.put(format!("{base}/v1/nodes/{node}/status"))
                .timeout(Duration::from_secs(10))
                .json(report)
        })
        .await
    }

    /// Opens the SSE watch of a prefix; yields once per change (the content is re-read through
    /// [`ControlClient::assignments`], so a missed change costs nothing but a resync).
    pub async fn watch(&self, prefix: &str) -> Result<reqwest::Response, ClientError> {
        let response = self
            .send(|http, base| {
                http.get(format!("{base}/v1/watch"))
                    .query(&[("prefix", prefix)])
            })
            .await?;
        self.check("watch", response).await
    }

    /// Sends node `node`'s forensic archive at `path`: answered once the control plane
    /// verified, countersigned and kept it (on a second server too, where there is one).
    pub async fn put_archive(
        &self,
        node: &str,
        path: &Path,
    ) -> Result<strata_core::archive::ArchiveRecord, ClientError> {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        self.call_for("archive", |http, base| {
            // Opened for each attempt: a server that failed is passed over with a fresh body.
            let body = match std::fs::File::open(path) {
                Ok(file) => reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(
                    tokio::fs::File::from_std(file),
                )),
                Err(_) => reqwest::Body::from(Vec::new()),
            };
            http.put(format!("{base}/v1/nodes/{node}/archive"))
                .header(reqwest::header::CONTENT_LENGTH, size)
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(body)
        })
        .await
    }

    /// Reports a step of this node's decommission.
    pub async fn decommission_progress(
        &self,
        node: &str,
        progress: &strata_core::decommission::DecommissionProgress,
    ) -> Result<strata_core::decommission::DecommissionStatus, ClientError> {
        self.call_for("decommission progress", |http, base| {
            http.post(format!("{base}/v1/nodes/{node}/decommission/progress"))
                .timeout(Duration::from_secs(30))
                .json(progress)
        })
        .await
    }

    /// The events about this node and the audit records of its calls, for its archive.
    pub async fn node_history(
        &self,
        node: &str,
    ) -> Result<strata_core::decommission::NodeHistory, ClientError> {
        self.call_for("node history", |http, base| {
            http.get(format!("{base}/v1/nodes/{node}/history"))
                .timeout(Duration::from_secs(60))
        })
        .await
    }

    /// Downloads a blob into `dest` (atomically: a temporary file renamed into place), checking
    /// its digest.
    pub async fn download(&self, digest: &str, dest: &Path) -> Result<(), ClientError> {
        let fail = |reason: String| ClientError::Artifact {
            digest: digest.to_string(),
            reason,
        };
        let response = self
            .send(|http, base| http.get(format!("{base}/v1/blobs/{digest}")))
            .await?;
        let response = self.check("artifact download", response).await?;
        let dir = dest.parent().ok_or_else(|| fail("bad cache path".into()))?;
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
        let temp = dir.join(format!(".download-{}", rand::random::<u64>()));
        let result = async {
            let mut file = tokio::fs::File::create(&temp)
                .await
                .map_err(|e| fail(format!("cannot write {}: {e}", temp.display())))?;
            let mut hasher = Sha256::new();
            let mut body = response.bytes_stream();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| fail(format!("download interrupted: {e}")))?;
                hasher.update(&chunk);
                file.write_all(&chunk)
                    .await
                    .map_err(|e| fail(format!("cannot write: {e}")))?;
            }
            file.sync_all().await.map_err(|e| fail(e.to_string()))?;
            // Closed before it is renamed into place: a program still open for writing
            // cannot be executed (ETXTBSY), and another instance may start it at once.
            drop(file.into_std().await);
            let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
            if actual != digest {
                return Err(fail(format!("downloaded bytes have digest {actual}")));
            }
            use std::os::unix::fs::PermissionsExt;
            tokio::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o555))
                .await
                .map_err(|e| fail(e.to_string()))?;
            tokio::fs::rename(&temp, dest)
                .await
                .map_err(|e| fail(e.to_string()))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&temp).await;
        }
        result
    }
}
