//! The control plane's API as the CLI uses it: JSON over HTTP, errors turned into sentences.

use std::time::Duration;

use anyhow::anyhow;
use serde::de::DeserializeOwned;
use serde::Serialize;
use strata_core::api::ErrorBody;

use crate::Failure;

pub struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(addr: &str) -> Self {
        let base = if addr.starts_with("http://") || addr.starts_with("https://") {
            addr.to_string()
        } else {
            format!("http://{addr}")
        };
        Self {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(3))
                .build()
                .expect("http client builds"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn unreachable(&self, error: reqwest::Error) -> Failure {
        Failure::Failed(anyhow!(
            "cannot reach the control plane at {}: {error}\n  hint: is `strata dev` running? Point the CLI elsewhere with --addr or STRATA_ADDR",
            self.base
        ))
    }

    /// Turns a non-success response into a failure: 400 is bad input (exit 2), others exit 1.
    pub async fn check(&self, response: reqwest::Response) -> Result<reqwest::Response, Failure> {
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let message = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => match body.hint {
                Some(hint) => format!("{}\n  hint: {hint}", body.message),
                None => body.message,
            },
            Err(_) => format!("HTTP {status}: {text}"),
        };
        let error = anyhow!("{message}");
        Err(if status.as_u16() == 400 {
            Failure::BadInput(anyhow!("error: {message}"))
        } else {
            Failure::Failed(error)
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Failure> {
        let response = self
            .http
            .get(self.url(path))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        Ok(self.check(response).await?.json().await?)
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, Failure> {
        let response = self
            .http
            .post(self.url(path))
            .timeout(Duration::from_secs(60))
            .json(body)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        Ok(self.check(response).await?.json().await?)
    }

    pub async fn delete(&self, path: &str) -> Result<(), Failure> {
        let response = self
            .http
            .delete(self.url(path))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.check(response).await.map(|_| ())
    }

    /// A streaming GET (logs).
    pub async fn stream(&self, path: &str) -> Result<reqwest::Response, Failure> {
        let response = self
            .http
            .get(self.url(path))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.check(response).await
    }

    pub async fn blob_exists(&self, digest: &str) -> Result<bool, Failure> {
        let response = self
            .http
            .head(self.url(&format!("/v1/blobs/{digest}")))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        Ok(response.status().is_success())
    }

    pub async fn upload(&self, digest: &str, body: reqwest::Body) -> Result<(), Failure> {
        let response = self
            .http
            .put(self.url(&format!("/v1/blobs/{digest}")))
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.check(response).await.map(|_| ())
    }
}
