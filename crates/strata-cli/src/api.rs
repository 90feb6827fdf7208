//! The control plane's API as the CLI uses it: JSON over HTTP, errors turned into sentences.

use std::time::Duration;

use anyhow::anyhow;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::Failure;

/// The control plane's API on one server or several (`--addr a,b,c`): a request whose server
/// cannot be reached (or is unavailable) is sent to the next ([`strata_client::Client`]).
pub struct Api {
    api: strata_client::Client,
}

impl Api {
    /// The API at `addrs` (comma-separated), with the credential of [`crate::context`]
    /// (`STRATA_TOKEN`, or the context recorded for the first address).
    pub fn new(addrs: &str) -> Self {
        let bases: Vec<String> = addrs
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(crate::context::normalize_url)
            .collect();
        let token = bases.first().and_then(|url| crate::context::token_for(url));
        let ca = bases.first().and_then(|url| crate::context::ca_for(url));
        Self::with_token(bases, token.as_deref(), ca.as_deref())
    }

    /// The API at `bases`, presenting `token`, trusting the CA `ca_pem` (HTTPS).
    pub fn with_token(bases: Vec<String>, token: Option<&str>, ca_pem: Option<&[u8]>) -> Self {
        let ca_pem = ca_pem.map(String::from_utf8_lossy);
        Self {
            api: strata_client::Client::with_connect_timeout(
                bases,
                token,
                ca_pem.as_deref(),
                Duration::from_secs(2),
            ),
        }
    }

    fn base(&self) -> String {
        match self.api.base() {
            base if base.is_empty() => "http://127.0.0.1:7700".to_string(),
            base => base,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// Sends a request built for a server's base URL, moving to the next server when one
    /// cannot be reached.
    async fn send(
        &self,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Failure> {
        self.api.send(build).await.map_err(|error| match error {
            strata_client::ClientError::Unreachable { source, .. } => self.unreachable(source),
            other => Failure::Failed(anyhow!("{other}")),
        })
    }

    fn unreachable(&self, error: reqwest::Error) -> Failure {
        Failure::Failed(anyhow!(
            "cannot reach the control plane at {}: {error}\n  hint: is `strata dev` running? Point the CLI elsewhere with --addr or STRATA_ADDR",
            self.api.bases().join(", ")
        ))
    }

    /// Turns a non-success response into a failure: 400 is bad input (exit 2), others exit 1.
    pub async fn check(&self, response: reqwest::Response) -> Result<reqwest::Response, Failure> {
        let refused = match strata_client::Client::check("the request", response).await {
            Ok(response) => return Ok(response),
            Err(strata_client::ClientError::Refused {
                status, message, ..
            }) => (status, message),
            Err(other) => return Err(Failure::Failed(anyhow!("{other}"))),
        };
        let (status, message) = refused;
        let message = match status {
            401 => format!("not logged in to {}: {message}", self.base()),
            403 => format!("refused: {message}"),
            _ => message,
        };
        Err(if status == 400 {
            Failure::BadInput(anyhow!("error: {message}"))
        } else {
            Failure::Failed(anyhow!("{message}"))
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Failure> {
        let response = self
            .send(|http, base| {
                http.get(format!("{base}{path}"))
                    .timeout(Duration::from_secs(30))
            })
            .await?;
        Ok(self.check(response).await?.json().await?)
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, Failure> {
        self.with_json(reqwest::Method::POST, path, body, Duration::from_secs(60))
            .await
    }

    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, Failure> {
        self.with_json(reqwest::Method::PUT, path, body, Duration::from_secs(30))
            .await
    }

    /// `method path` with a JSON body; the JSON answer.
    async fn with_json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<T, Failure> {
        let response = self
            .send(|http, base| {
                http.request(method.clone(), format!("{base}{path}"))
                    .timeout(timeout)
                    .json(body)
            })
            .await?;
        Ok(self.check(response).await?.json().await?)
    }

    pub async fn delete(&self, path: &str) -> Result<(), Failure> {
        let response = self
            .send(|http, base| {
                http.delete(format!("{base}{path}"))
                    .timeout(Duration::from_secs(30))
            })
            .await?;
        self.check(response).await.map(|_| ())
    }

    /// A streaming GET (logs).
    pub async fn stream(&self, path: &str) -> Result<reqwest::Response, Failure> {
        let response = self
            .send(|http, base| http.get(format!("{base}{path}")))
            .await?;
        self.check(response).await
    }

    /// A POST with a JSON body whose answer streams (a backup). No timeout: the stream takes
    /// as long as it takes.
    pub async fn post_stream<B: Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<reqwest::Response, Failure> {
        let response = self
            .send(|http, base| http.post(format!("{base}{path}")).json(body))
            .await?;
        self.check(response).await
    }

    pub async fn blob_exists(&self, digest: &str) -> Result<bool, Failure> {
        let response = self
            .send(|http, base| {
                http.head(format!("{base}/v1/blobs/{digest}"))
                    .timeout(Duration::from_secs(30))
            })
            .await?;
        match response.status().as_u16() {
            401 => Err(Failure::Failed(anyhow!(
                "not logged in to {}: artifacts need a token\n  hint: run `strata login URL --token-file FILE`, or set STRATA_TOKEN",
                self.base()
            ))),
            403 => {
                let who = match self.get::<serde_json::Value>("/v1/whoami").await {
                    Ok(me) => format!(
                        "token `{}` has role {}",
                        me["name"].as_str().unwrap_or("?"),
                        me["role"].as_str().unwrap_or("?")
                    ),
                    Err(_) => "this token".to_string(),
                };
                Err(Failure::Failed(anyhow!(
                    "refused: {who}; uploading artifacts needs role deployer or higher\n  hint: ask an admin for a deployer token (`strata token create NAME --role deployer --env ENV`)"
                )))
            }
            _ => Ok(response.status().is_success()),
        }
    }

    pub async fn upload(&self, digest: &str, body: reqwest::Body) -> Result<(), Failure> {
        let response = self
            .api
            .http()
            .put(self.url(&format!("/v1/blobs/{digest}")))
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.check(response).await.map(|_| ())
    }
}
