//! The control plane's API as the CLI uses it: JSON over HTTP, errors turned into sentences.

use std::time::Duration;

use anyhow::anyhow;
use serde::de::DeserializeOwned;
use serde::Serialize;
use strata_core::api::ErrorBody;

use crate::Failure;

/// The control plane's API on one server or several (`--addr a,b,c`): a request whose
/// connection fails is sent to the next server.
pub struct Api {
    bases: Vec<String>,
    current: std::sync::atomic::AtomicUsize,
    http: reqwest::Client,
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
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = token {
            if let Ok(mut value) =
                reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            {
                value.set_sensitive(true);
                headers.insert(reqwest::header::AUTHORIZATION, value);
            }
        }
        Self {
            bases,
            current: std::sync::atomic::AtomicUsize::new(0),
            http: {
                let mut builder = reqwest::Client::builder()
                    .connect_timeout(Duration::from_secs(2))
                    .default_headers(headers);
                if let Some(root) = ca_pem.and_then(|pem| reqwest::Certificate::from_pem(pem).ok())
                {
                    builder = builder
                        .tls_built_in_root_certs(false)
                        .add_root_certificate(root);
                }
                builder.build().expect("http client builds")
            },
        }
    }

    fn base(&self) -> &str {
        let index =
            self.current.load(std::sync::atomic::Ordering::Relaxed) % self.bases.len().max(1);
        self.bases
            .get(index)
            .map(String::as_str)
            .unwrap_or("http://127.0.0.1:7700")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// Sends a request built for a server's base URL, moving to the next server when the
    /// connection fails.
    async fn send(
        &self,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Failure> {
        let count = self.bases.len().max(1);
        let start = self.current.load(std::sync::atomic::Ordering::Relaxed);
        let mut last = None;
        for step in 0..count {
            let index = (start + step) % count;
            let base = self
                .bases
                .get(index)
                .map(String::as_str)
                .unwrap_or("http://127.0.0.1:7700");
            match build(&self.http, base).send().await {
                Ok(response) => {
                    self.current
                        .store(index, std::sync::atomic::Ordering::Relaxed);
                    return Ok(response);
                }
                Err(error) if error.is_connect() => last = Some(error),
                Err(error) => return Err(self.unreachable(error)),
            }
        }
        Err(self.unreachable(last.expect("a server was tried")))
    }

    fn unreachable(&self, error: reqwest::Error) -> Failure {
        Failure::Failed(anyhow!(
            "cannot reach the control plane at {}: {error}\n  hint: is `strata dev` running? Point the CLI elsewhere with --addr or STRATA_ADDR",
            self.bases.join(", ")
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
        let message = match status.as_u16() {
            401 => format!("not logged in to {}: {message}", self.base()),
            403 => format!("refused: {message}"),
            _ => message,
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
