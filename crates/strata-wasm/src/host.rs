//! [`WasmHost`]: the node's one wasmtime engine, its linker, and the compile cache.
//!
//! The engine is async (guests run on fibers), uses the pooling allocator (instantiating from a
//! pre-instantiated component takes microseconds), and has epoch interruption, driven by a
//! background thread that ticks every [`WasmHostConfig::epoch_tick`].
//!
//! Compiled components are kept on disk as `cache_dir/<digest>-<engine>.cwasm`, where
//! `<engine>` hashes everything that makes compiled code compatible (wasmtime version, target,
//! compiler flags, engine settings; [`wasmtime::Engine::precompile_compatibility_hash`]). A
//! component is compiled once per digest; every later load, in this process or after a
//! restart, maps the precompiled file instead (well under a millisecond). Another wasmtime
//! version or other settings use other file names, so a stale artifact is never loaded.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, PoolingAllocationConfig};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::outbound::OutboundClient;
use crate::state::GuestState;
use strata_artifact::component::{inspect_component, WasmArtifactError};

/// Settings of a node's [`WasmHost`].
#[derive(Debug, Clone)]
pub struct WasmHostConfig {
    /// Where compiled components are kept (created if missing).
    pub cache_dir: PathBuf,
    /// Instances that may exist at once on the node, over all wasm services (the size of the
    /// pooling allocator). A request beyond it gets 503.
    pub max_instances: u32,
    /// The most linear memory one instance may have; a service's `resources.memory`
    /// may not exceed it.
    pub max_memory_bytes: u64,
    /// How often the epoch advances: the granularity of request deadlines (1-10 ms).
    pub epoch_tick: Duration,
}

impl WasmHostConfig {
    /// Defaults: 1000 instances, 4 GiB per instance at most, a 5 ms tick.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        WasmHostConfig {
            cache_dir: cache_dir.into(),
            max_instances: 1000,
            max_memory_bytes: 4 << 30,
            epoch_tick: Duration::from_millis(5),
        }
    }
}

/// Why a [`WasmHost`] cannot be created.
#[derive(Debug, thiserror::Error)]
pub enum WasmHostError {
    #[error("cannot create the wasm compile cache {path}: {source}")]
    CacheDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot set up the wasm engine: {reason}")]
    Engine { reason: String },
    #[error("invalid wasm host setting: {0}")]
    Config(String),
}

/// How a component was obtained by [`WasmHost::load`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadSource {
    /// Compiled from the WebAssembly (and the result written to the cache).
    Compiled,
    /// Mapped from the precompiled form in the cache: no compilation.
    Cache,
}

/// Counters of [`WasmHost::load`], for logs, metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Loads that compiled.
    pub compiled: u64,
    /// Loads served from the precompiled cache.
    pub cache_hits: u64,
}

/// The node's wasm runtime: one engine, one linker, one compile cache. Cheap to clone; every
/// wasm service of the node shares it.
#[derive(Clone)]
pub struct WasmHost {
    inner: Arc<HostInner>,
}

pub(crate) struct HostInner {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<GuestState>,
    pub(crate) config: WasmHostConfig,
    pub(crate) client: OutboundClient,
    /// Hex of the engine's compatibility hash: part of every cache file name.
    engine_key: String,
    compiled: AtomicU64,
    cache_hits: AtomicU64,
    /// One compilation at a time: two instances of a new digest compile it once.
    compile_lock: tokio::sync::Mutex<()>,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for HostInner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// A `Hasher` that feeds SHA-256, so the engine key is the same from one process to the next.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl WasmHost {
    /// Creates the engine, the linker (WASI 0.2 and wasi:http) and the epoch ticker thread.
    pub fn new(config: WasmHostConfig) -> Result<WasmHost, WasmHostError> {
        if config.epoch_tick.is_zero() || config.epoch_tick > Duration::from_secs(1) {
            return Err(WasmHostError::Config(format!(
                "epoch_tick must be between 1 ms and 1 s, not {:?}",
                config.epoch_tick
            )));
        }
        if config.max_instances == 0 {
            return Err(WasmHostError::Config(
                "max_instances must be at least 1".into(),
            ));
        }
        let max_memory = usize::try_from(config.max_memory_bytes)
            .map_err(|_| WasmHostError::Config("max_memory_bytes is too large".into()))?;
        std::fs::create_dir_all(&config.cache_dir).map_err(|source| WasmHostError::CacheDir {
            path: config.cache_dir.display().to_string(),
            source,
        })?;

        let instances = config.max_instances;
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(instances)
            // A component built by Rust for wasm32-wasip2 has a few core instances (the
            // program and wit-component's shims), one memory, a couple of tables.
            .total_core_instances(instances.saturating_mul(4))
            .total_memories(instances.saturating_mul(2))
            .total_tables(instances.saturating_mul(4))
            .total_stacks(instances)
            .max_memory_size(max_memory)
            // Keep a little of each slot's memory resident: the next request reuses it
            // without page faults.
            .linear_memory_keep_resident(64 << 10)
            .table_keep_resident(16 << 10);

        let mut wasm_config = Config::new();
        wasm_config
            .epoch_interruption(true)
            // Components of the wasi:http/proxy 0.2 world do not use component-model async;
            // leaving its bookkeeping out of every store is faster.
            .concurrency_support(false)
            .allocation_strategy(pool);
        let engine = Engine::new(&wasm_config).map_err(|e| WasmHostError::Engine {
            reason: format!("{e:#}"),
        })?;

        let mut linker = Linker::<GuestState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker))
            .map_err(|e| WasmHostError::Engine {
                reason: format!("{e:#}"),
            })?;

        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hex::encode(&hasher.0.finalize()[..8]);

        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_ticker(engine.weak(), config.epoch_tick, ticker_stop.clone())?;

        Ok(WasmHost {
            inner: Arc::new(HostInner {
                engine,
                linker,
                config,
                client: OutboundClient::new(),
                engine_key,
                compiled: AtomicU64::new(0),
                cache_hits: AtomicU64::new(0),
                compile_lock: tokio::sync::Mutex::new(()),
                ticker_stop,
            }),
        })
    }

    pub(crate) fn inner(&self) -> &HostInner {
        &self.inner
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The host's settings.
    pub fn config(&self) -> &WasmHostConfig {
        &self.inner.config
    }

    /// How many loads compiled and how many used the cache, since this host was created.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            compiled: self.inner.compiled.load(Ordering::Relaxed),
            cache_hits: self.inner.cache_hits.load(Ordering::Relaxed),
        }
    }

    /// The cache file of a digest for this engine.
    pub fn cache_path(&self, digest: &str) -> PathBuf {
        self.inner.config.cache_dir.join(format!(
            "{}-{}.cwasm",
            cache_key(digest),
            self.inner.engine_key
        ))
    }

    /// The component of `digest` (the sha256 of the file at `path`), checked to be a
    /// `wasi:http/proxy` component that links against what Strata provides. Compiles it the
    /// first time and keeps the precompiled form; afterwards maps that (no compilation).
    pub async fn load(&self, digest: &str, path: &Path) -> Result<Component, WasmArtifactError> {
        self.load_with_source(digest, path)
            .await
            .map(|(component, _)| component)
    }

    /// [`WasmHost::load`], also saying whether it compiled or used the cache.
    pub async fn load_with_source(
        &self,
        digest: &str,
        path: &Path,
    ) -> Result<(Component, LoadSource), WasmArtifactError> {
        if let Some(component) = self.load_cached(digest).await {
            return Ok((component, LoadSource::Cache));
        }
        let _compiling = self.inner.compile_lock.lock().await;
        // Another load may have compiled it while we waited.
        if let Some(component) = self.load_cached(digest).await {
            return Ok((component, LoadSource::Cache));
        }
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|source| WasmArtifactError::Read {
                path: path.display().to_string(),
                source,
            })?;
        let component = self.compile(digest, bytes).await?;
        Ok((component, LoadSource::Compiled))
    }

    /// Proves that `bytes` can run as a wasm service: a component (not a module, not something
    /// else) that exports `wasi:http/incoming-handler`, compiles, and links against the imports
    /// Strata provides. The compiled form is cached under the bytes' sha256, so a deploy that
    /// follows does not compile again.
    pub async fn validate_component(&self, bytes: &[u8]) -> Result<(), WasmArtifactError> {
        // The cheap checks first, so a wrong file gets its precise message.
        inspect_component(bytes)?;
        let digest = hex::encode(Sha256::digest(bytes));
        if self.load_cached(&digest).await.is_some() {
            return Ok(());
        }
        let _compiling = self.inner.compile_lock.lock().await;
        self.compile(&digest, bytes.to_vec()).await.map(|_| ())
    }

    /// Pre-instantiates a loaded component for serving: resolves every import against the
    /// linker and finds the `wasi:http/incoming-handler` export.
    pub(crate) fn proxy_pre(
        &self,
        component: &Component,
    ) -> Result<ProxyPre<GuestState>, WasmArtifactError> {
        proxy_pre(&self.inner.linker, component)
    }

    /// The precompiled component of `digest`, if the cache has a usable one.
    async fn load_cached(&self, digest: &str) -> Option<Component> {
        let path = self.cache_path(digest);
        if !tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return None;
        }
        let engine = self.inner.engine.clone();
        let linker_host = self.clone();
        let started = Instant::now();
        let loaded = tokio::task::spawn_blocking(move || {
            let component = deserialize(&engine, &path).map_err(|e| format!("{e:#}"))?;
            // Cheap, and it proves the cached component still fits this linker.
            linker_host
                .proxy_pre(&component)
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(component)
        })
        .await;
        match loaded {
            Ok(Ok(component)) => {
                self.inner.cache_hits.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    digest,
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "wasm component loaded from the precompiled cache (no compilation)"
                );
                Some(component)
            }
            Ok(Err(reason)) => {
                let path = self.cache_path(digest);
                tracing::warn!(digest, %reason, path = %path.display(), "unusable precompiled component; compiling again");
                let _ = tokio::fs::remove_file(&path).await;
                None
            }
            Err(error) => {
                tracing::warn!(digest, %error, "loading a precompiled component failed");
                None
            }
        }
    }

    /// Checks and compiles `bytes`, then writes the precompiled form to the cache. The caller
    /// holds the compile lock.
    async fn compile(&self, digest: &str, bytes: Vec<u8>) -> Result<Component, WasmArtifactError> {
        inspect_component(&bytes)?;
        let host = self.clone();
        let cache_path = self.cache_path(digest);
        let started = Instant::now();
        let component = tokio::task::spawn_blocking(move || {
            let component = Component::from_binary(&host.inner.engine, &bytes).map_err(|e| {
                WasmArtifactError::Invalid {
                    reason: format!("{e:#}"),
                }
            })?;
            host.proxy_pre(&component)?;
            match component.serialize() {
                Ok(compiled) => {
                    if let Err(error) = write_atomically(&cache_path, &compiled) {
                        tracing::warn!(%error, path = %cache_path.display(), "cannot write the precompiled component; the next start compiles again");
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), "cannot serialize a compiled component")
                }
            }
            Ok::<_, WasmArtifactError>(component)
        })
        .await
        .map_err(|e| WasmArtifactError::Invalid {
            reason: format!("the compiler failed: {e}"),
        })??;
        self.inner.compiled.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            digest,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "wasm component compiled and cached"
        );
        Ok(component)
    }
}

fn proxy_pre(
    linker: &Linker<GuestState>,
    component: &Component,
) -> Result<ProxyPre<GuestState>, WasmArtifactError> {
    let instance_pre = linker
        .instantiate_pre(component)
        .map_err(|e| WasmArtifactError::Link {
            reason: format!("{e:#}"),
        })?;
    ProxyPre::new(instance_pre).map_err(|e| WasmArtifactError::Link {
        reason: format!("{e:#}"),
    })
}

/// Loads a precompiled component file.
///
/// The file is read into memory rather than mapped: a cache file replaced or truncated in place
/// by someone else must not crash the agent (a mapped file that shrinks raises SIGBUS).
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    let bytes = std::fs::read(path)?;
    // SAFETY: wasmtime requires that the bytes be a precompiled artifact from a compatible
    // engine, since it runs the machine code they contain. Cache files are written only by
    // `write_atomically` in a directory that belongs to the node agent, and their names carry
    // the engine's compatibility hash; wasmtime also checks the artifact's header, version and
    // settings and refuses a mismatch with an error rather than loading it. The bytes are our
    // own copy, so nothing can change them while in use.
    unsafe { Component::deserialize(engine, &bytes) }
}

/// Writes `bytes` to a temporary file beside `path`, then renames it into place: a reader sees
/// either no file or the whole file.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A file-name-safe key for a digest: the hex of `sha256:HEX` or `HEX`; anything else is
/// hashed, so a digest can never name a path outside the cache.
fn cache_key(digest: &str) -> String {
    let bare = digest.strip_prefix("sha256:").unwrap_or(digest);
    if !bare.is_empty() && bare.len() <= 128 && bare.chars().all(|c| c.is_ascii_alphanumeric()) {
        bare.to_ascii_lowercase()
    } else {
        hex::encode(Sha256::digest(digest.as_bytes()))
    }
}

/// Advances the engine's epoch every `tick` until the host is dropped.
fn spawn_ticker(
    engine: wasmtime::EngineWeak,
    tick: Duration,
    stop: Arc<AtomicBool>,
) -> Result<(), WasmHostError> {
    std::thread::Builder::new()
        .name("strata-wasm-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                match engine.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })
        .map(|_| ())
        .map_err(|e| WasmHostError::Engine {
            reason: format!("cannot start the epoch thread: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_keys_are_file_name_safe() {
        assert_eq!(cache_key("sha256:ABCdef01"), "abcdef01");
        assert_eq!(cache_key("abc"), "abc");
        let odd = cache_key("../../etc/passwd");
        assert!(odd.chars().all(|c| c.is_ascii_hexdigit()), "{odd}");
        assert_eq!(odd.len(), 64);
    }

    #[test]
    fn bad_settings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = WasmHostConfig::new(dir.path());
        config.epoch_tick = Duration::ZERO;
        assert!(matches!(
            WasmHost::new(config),
            Err(WasmHostError::Config(_))
        ));
    }
}
