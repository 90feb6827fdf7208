//! What a wasm service's artifact must be, and the messages for everything it could be instead.
//!
//! [`inspect_component`] reads the bytes without compiling them (wasmparser): it tells a file
//! that is not WebAssembly at all from a core module and from a component that does not export
//! `wasi:http/incoming-handler`. [`crate::WasmHost::validate_component`] adds the real proof: it
//! compiles the component and links it against the imports Strata provides.

use wasmparser::{Encoding, Parser, Payload};

/// The interface a wasm service must export (any 0.2.x version).
pub const INCOMING_HANDLER: &str = "wasi:http/incoming-handler";

/// Why an artifact cannot run as a wasm service. Each message says which problem it is and
/// how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum WasmArtifactError {
    #[error(
        "the artifact is not WebAssembly ({what}): a wasm service needs a WebAssembly component \
         that implements wasi:http/incoming-handler, e.g. a Rust crate built with \
         `cargo build --target wasm32-wasip2` that uses `wasip2::http::proxy::export!`"
    )]
    NotWasm { what: String },

    #[error(
        "the artifact is a core WebAssembly module, not a component: build for wasm32-wasip2 \
         (`cargo build --target wasm32-wasip2`), or run `wasm-tools component new` on the \
         module (with the WASI preview1 adapter) to make it a component"
    )]
    CoreModule,

    #[error(
        "the component does not export wasi:http/incoming-handler, so it cannot serve HTTP: it \
         exports {exports}{world}. Build it for the wasi:http/proxy world (in Rust: \
         `wasip2::http::proxy::export!(YourHandler)` in a cdylib built for wasm32-wasip2)",
        exports = describe_list(.exports),
        world = .world.as_ref().map(|w| format!(", so it looks like a {w} component")).unwrap_or_default()
    )]
    MissingHandler {
        /// The component's top-level export names.
        exports: Vec<String>,
        /// The world it seems to target, when the exports say so (e.g. `wasi:cli/command`).
        world: Option<String>,
    },

    #[error(
        "the component is not valid or cannot be compiled: {reason}. Rebuild it with a current \
         toolchain for wasm32-wasip2 (wasi 0.2)"
    )]
    Invalid { reason: String },

    #[error(
        "the component cannot be linked: {reason}. A wasm service may import only what the \
         wasi:http/proxy world and WASI 0.2 (cli, clocks, random, io, filesystem, sockets) \
         provide; Strata grants no other host interfaces"
    )]
    Link { reason: String },

    #[error("cannot read the artifact {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

/// What [`inspect_component`] found in a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentInfo {
    /// Top-level import names, e.g. `wasi:http/types@0.2.12`.
    pub imports: Vec<String>,
    /// Top-level export names, e.g. `wasi:http/incoming-handler@0.2.12`.
    pub exports: Vec<String>,
}

/// Checks, without compiling, that `bytes` are a component exporting
/// `wasi:http/incoming-handler`. Never panics, whatever the bytes.
pub fn inspect_component(bytes: &[u8]) -> Result<ComponentInfo, WasmArtifactError> {
    if !bytes.starts_with(b"\0asm") {
        return Err(WasmArtifactError::NotWasm { what: sniff(bytes) });
    }
    let mut depth = 0usize;
    let mut info = ComponentInfo {
        imports: Vec::new(),
        exports: Vec::new(),
    };
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| WasmArtifactError::Invalid {
            reason: e.to_string(),
        })?;
        match payload {
            Payload::Version { encoding, .. } => {
                if depth == 0 && encoding == Encoding::Module {
                    return Err(WasmArtifactError::CoreModule);
                }
                depth += 1;
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let import = import.map_err(|e| WasmArtifactError::Invalid {
                        reason: e.to_string(),
                    })?;
                    info.imports.push(import.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader {
                    let export = export.map_err(|e| WasmArtifactError::Invalid {
                        reason: e.to_string(),
                    })?;
                    info.exports.push(export.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    if !info.exports.iter().any(|name| is_incoming_handler(name)) {
        let world = guess_world(&info.exports);
        return Err(WasmArtifactError::MissingHandler {
            exports: info.exports,
            world,
        });
    }
    Ok(info)
}

/// `wasi:http/incoming-handler`, with or without a version.
fn is_incoming_handler(name: &str) -> bool {
    name == INCOMING_HANDLER
        || name
            .strip_prefix(INCOMING_HANDLER)
            .is_some_and(|rest| rest.starts_with('@'))
}

/// The world a component seems to target, from what it exports.
fn guess_world(exports: &[String]) -> Option<String> {
    let has = |interface: &str| {
        exports
            .iter()
            .any(|e| e == interface || e.starts_with(&format!("{interface}@")))
    };
    if has("wasi:cli/run") {
        Some("wasi:cli/command".into())
    } else if has("wasi:http/handler") {
        Some("wasi:http/service (WASI 0.3; Strata serves WASI 0.2 wasi:http/proxy)".into())
    } else if exports.is_empty() {
        Some("library (it exports nothing)".into())
    } else {
        None
    }
}

fn describe_list(items: &[String]) -> String {
    match items.len() {
        0 => "nothing".into(),
        _ => items
            .iter()
            .map(|i| format!("`{i}`"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// A short guess at what a non-wasm file is, for the error message.
fn sniff(bytes: &[u8]) -> String {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(256)]);
    let text = head.trim_start();
    if bytes.is_empty() {
        "the file is empty".into()
    } else if bytes.starts_with(b"\x7fELF") {
        "it is an ELF executable: a native binary needs driver = \"exec\"".into()
    } else if bytes.starts_with(&[0x1f, 0x8b]) {
        "it is gzip-compressed".into()
    } else if bytes.starts_with(b"PK\x03\x04") {
        "it is a zip archive".into()
    } else if text.starts_with("(component") || text.starts_with("(module") {
        let kind = if text.starts_with("(component") {
            "component"
        } else {
            "module"
        };
        format!(
            "it is WebAssembly text (a {kind} in .wat form): turn it into binary with `wasm-tools parse`"
        )
    } else {
        let head: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
        format!(
            "it does not start with the WebAssembly magic bytes 00 61 73 6d but with {}",
            head.join(" ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_bytes_are_not_wasm() {
        let error = inspect_component(&[0x13, 0x37, 0xbe, 0xef, 1, 2, 3]).unwrap_err();
        assert!(matches!(error, WasmArtifactError::NotWasm { .. }));
        assert!(error.to_string().contains("not WebAssembly"), "{error}");
        assert!(error.to_string().contains("13 37 be ef"), "{error}");
        let empty = inspect_component(&[]).unwrap_err().to_string();
        assert!(empty.contains("empty"), "{empty}");
    }

    #[test]
    fn text_and_native_files_are_recognised() {
        let wat = inspect_component(b"  (component)\n")
            .unwrap_err()
            .to_string();
        assert!(
            wat.contains("WebAssembly text") && wat.contains("wasm-tools parse"),
            "{wat}"
        );
        let elf = inspect_component(b"\x7fELF\x02\x01\x01")
            .unwrap_err()
            .to_string();
        assert!(elf.contains("driver = \"exec\""), "{elf}");
    }

    #[test]
    fn a_core_module_is_named_as_such() {
        // The smallest valid core module: magic and version 1.
        let error = inspect_component(b"\0asm\x01\0\0\0").unwrap_err();
        assert!(matches!(error, WasmArtifactError::CoreModule), "{error}");
        assert!(error.to_string().contains("wasm-tools component new"));
    }

    #[test]
    fn an_empty_component_exports_nothing() {
        // The smallest valid component: magic, version 0x0d, layer 1.
        let error = inspect_component(b"\0asm\x0d\0\x01\0").unwrap_err();
        let text = error.to_string();
        assert!(
            matches!(error, WasmArtifactError::MissingHandler { .. }),
            "{text}"
        );
        assert!(text.contains("exports nothing"), "{text}");
    }

    #[test]
    fn a_truncated_component_is_invalid_not_a_panic() {
        let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
        bytes.extend_from_slice(&[0x0b, 0x7f, 0x01]);
        let error = inspect_component(&bytes).unwrap_err();
        assert!(
            matches!(error, WasmArtifactError::Invalid { .. }),
            "{error}"
        );
    }

    #[test]
    fn handler_names_match_with_and_without_version() {
        assert!(is_incoming_handler("wasi:http/incoming-handler@0.2.0"));
        assert!(is_incoming_handler("wasi:http/incoming-handler"));
        assert!(!is_incoming_handler("wasi:http/incoming-handlers"));
    }
}
