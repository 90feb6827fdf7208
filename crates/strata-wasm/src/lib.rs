//! Strata's `wasm` driver: WebAssembly components that implement `wasi:http/incoming-handler`
//! (the `wasi:http/proxy` world of WASI 0.2, the contract of `wasmtime serve`, Spin and
//! wasmCloud), served by wasmtime.
//!
//! - [`WasmHost`]: one per node. The wasmtime engine (async, pooling allocator, epoch
//!   interruption), the linker with what guests may import (WASI 0.2 and `wasi:http`), and the
//!   compile cache: a component is compiled once per digest and its precompiled form kept on
//!   disk, keyed by the digest and the engine's compatibility hash.
//! - [`WasmDriver`]: strata-runtime's [`Driver`](strata_runtime::Driver) for
//!   [`DriverKind::Wasm`](strata_core::spec::DriverKind). An instance is an HTTP/1.1 server on
//!   `HOST:PORT` inside the agent's process; every request runs in a fresh instance of the
//!   component, so no state survives between requests and an idle service runs nothing.
//! - [`validate_component`](WasmHost::validate_component) and [`inspect_component`]: tell a bad
//!   artifact (not wasm, a core module, another world, a component that does not compile or
//!   link) with a message that says which and how to fix it.
//! - [`OutboundRouter`]: the one way out of a guest. `http://SERVICE/...` goes to an instance
//!   of that service; anything else is refused.
//!
//! Limits per service come from the spec, typed, in the start's
//! [`strata_runtime::WasmSettings`] (see [`ServiceLimits`]), never from the instance's
//! environment. docs/wasm.md describes the whole model.

mod driver;
mod host;
mod log;
mod outbound;
mod state;

pub use driver::{OutboundRouters, ServiceLimits, WasmDriver, ENV_ARTIFACT_DIGEST};
pub use host::{CacheStats, LoadSource, WasmHost, WasmHostConfig, WasmHostError};
pub use outbound::{NoOutbound, OutboundRouter};
pub use strata_artifact::component::{
    inspect_component, ComponentInfo, WasmArtifactError, INCOMING_HANDLER,
};
