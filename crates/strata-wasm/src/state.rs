//! The state of one request's store: its WASI context (what the guest is granted), its
//! resource table, its outbound hook, and the limits it runs under.

use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::outbound::OutboundHooks;

/// The data of a `Store` serving one request.
pub(crate) struct GuestState {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    pub(crate) hooks: OutboundHooks,
    pub(crate) limits: MemoryLimiter,
    /// When the request's time is up (checked on each epoch tick).
    pub(crate) deadline: Instant,
    /// Set when the epoch callback interrupted the guest at its deadline.
    pub(crate) deadline_hit: bool,
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for GuestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Caps each linear memory of an instance at `memory_bytes` and remembers when it said no, so
/// the failure that follows (usually a trap from the guest's allocator) can be explained.
pub(crate) struct MemoryLimiter {
    pub(crate) memory_bytes: usize,
    /// The largest size a memory asked for and was refused, if any.
    pub(crate) denied: Option<usize>,
}

/// Table elements an instance may have (a guest's function tables are small; this only stops
/// a runaway `table.grow`).
const TABLE_ELEMENTS: usize = 1 << 20;

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.memory_bytes && maximum.is_none_or(|max| desired <= max);
        if !allowed {
            self.denied = Some(self.denied.map_or(desired, |d| d.max(desired)));
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= TABLE_ELEMENTS && maximum.is_none_or(|max| desired <= max))
    }
}
