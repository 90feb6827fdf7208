//! Sending requests to etcd: each bounded by [`REQUEST_TIMEOUT`] and retried while the
//! cluster is unavailable when that is safe, and their failures as [`StoreError`]s.

use std::future::Future;
use std::time::Instant;

use etcd_client::GetOptions;

use super::failure::Failure;
use super::mapping::header_revision;
use super::{Shared, REQUEST_TIMEOUT, RETRY_FIRST, RETRY_MAX};
use crate::{Revision, StoreError};

impl Shared {
    /// Runs `request` within [`REQUEST_TIMEOUT`], again while the cluster is unavailable
    /// (until that deadline) if it is `idempotent` or certainly was not sent.
    pub(super) async fn call<T, F, Fut>(
        &self,
        idempotent: bool,
        mut request: F,
    ) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        let mut backoff = RETRY_FIRST;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let failure = match tokio::time::timeout(remaining, request()).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) => Failure::Etcd(e),
                Err(_) => return Err(Failure::Timeout),
            };
            let retry = failure.is_unavailable() && (idempotent || failure.never_sent());
            if !retry || Instant::now() + backoff >= deadline {
                return Err(failure);
            }
            tracing::debug!(error = %failure, "etcd unavailable; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(RETRY_MAX);
        }
    }

    /// `failure` of the operation `what` (like "get of /k") as a [`StoreError`].
    pub(super) fn fail(&self, what: &str, failure: Failure) -> StoreError {
        if failure.is_unavailable() {
            StoreError::Unavailable(format!(
                "etcd {what} failed: the cluster is unavailable (endpoints: {}): {failure}",
                self.endpoints
            ))
        } else {
            StoreError::Backend(format!("etcd {what} failed: {failure}"))
        }
    }

    pub(super) async fn revision(&self) -> Result<Revision, StoreError> {
        let resp = self
            .call(true, || {
                let (mut kv, key) = (self.kv.clone(), self.probe_key());
                async move { kv.get(key, Some(GetOptions::new().with_count_only())).await }
            })
            .await
            .map_err(|f| self.fail("revision read", f))?;
        header_revision(resp.0.header.as_ref(), "revision read")
    }
}
