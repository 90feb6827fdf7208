//! What an artifact must be, checked without the runtimes that will run it, so the control
//! plane can refuse a bad one at deploy (with a message that says what it is and how to make
//! a good one) while linking neither wasmtime nor the container runtime:
//!
//! - [`component`]: a `wasm` service's artifact is a WebAssembly component exporting
//!   `wasi:http/incoming-handler` (read with wasmparser, never compiled);
//! - [`image`]: a `container` service's artifact is an OCI image layout or a `docker save`
//!   archive (read from its tar headers alone; the node verifies every digest at import).
//!
//! The drivers check the same way before they compile or unpack (strata-wasm adds the real
//! proof: compiling and linking).

pub mod component;
pub mod image;

pub use component::{inspect_component, ComponentInfo, WasmArtifactError, INCOMING_HANDLER};
pub use image::{check_archive, ImageArchiveError};
