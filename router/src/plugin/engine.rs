//! The process-wide plugin engine: one wasmtime `Engine` (component model, async calls,
//! pooling allocator, epoch interruption, copy-on-write memory images, the router's own
//! on-disk compile cache, see [`super::cache`]),
//! its epoch ticker thread, and the `Linker` that gives plugins the contract's `log` import and
//! all of WASI 0.2 and `wasi:http`, so that any toolchain's output instantiates — granting only
//! pure logic: the wall and monotonic clocks, random, and stdout and stderr captured per call
//! into the router's log (see [`super::stdio`]). The network and outgoing HTTP are denied,
//! failing the call; there are no files (no directories to open one in), and the environment
//! and stdin are empty (see [`super::denied`]).
//!
//! Guests run with `call_async`: at every epoch tick a running guest's CPU time is read and
//! checked against its budget (see [`super::cpu`]), and it yields to the async runtime, so a
//! plugin never holds a runtime thread for longer than a tick, and WASI waits (`poll`, sleeps)
//! are awaited, not blocked on. Guest code is not instrumented beyond the epoch check at
//! function entries and loop headers (no fuel).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::{Filter, FilterImports, Level};
use super::cpu::CpuMeter;
use super::limits::MemoryLimiter;
use super::stdio::{StdioCapture, Stream};
use crate::config::CompileCache;

/// How often the epoch advances: how often a running guest's CPU time is checked and it yields
/// to the async runtime.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);
/// Largest memory limit a plugin may be given.
pub const MAX_PLUGIN_MEMORY_BYTES: usize = 256 * 1024 * 1024;
/// Longest log message a plugin may write; longer ones are cut.
const MAX_LOG_MESSAGE_BYTES: usize = 4096;
/// Instances alive at once across all plugins (pooling allocator slots).
const POOLED_INSTANCES: u32 = 512;
/// Bytes of each pooled linear memory kept resident (reset in place) between instances.
const KEEP_RESIDENT_BYTES: usize = 1024 * 1024;

/// The state each plugin `Store` carries: small, built per instance.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// `wasi:http`, linked so that toolchains whose default output imports it load; every
    /// outgoing request is denied ([`DenyRequests`]).
    http: wasmtime_wasi_http::WasiHttpCtx,
    http_hooks: DenyRequests,
    /// Memory limiter of this store.
    pub limiter: MemoryLimiter,
    /// Plugin name, for log lines.
    pub plugin: Arc<str>,
    /// Route id, for log lines.
    pub route: Arc<str>,
    /// What the guest writes to stdout and stderr during a call.
    pub stdio: StdioCapture,
    /// Epoch ticks this call has seen while it ran (see [`Self::on_epoch_tick`]).
    pub ticks: u64,
    /// The CPU time of this store's current call, against its budget.
    pub cpu: Arc<CpuMeter>,
}

impl std::fmt::Debug for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostState")
            .field("plugin", &self.plugin)
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

impl HostState {
    /// State for one instance of `plugin` on `route`, allowed `memory_bytes` of memory.
    pub fn new(plugin: Arc<str>, route: Arc<str>, memory_bytes: usize) -> Self {
        let stdio = StdioCapture::new();
        let wasi = WasiCtxBuilder::new()
            .stdout(stdio.stream(Stream::Stdout))
            .stderr(stdio.stream(Stream::Stderr))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            http_hooks: DenyRequests,
            limiter: MemoryLimiter::new(memory_bytes),
            plugin,
            route,
            stdio,
            ticks: 0,
            cpu: Arc::default(),
        }
    }

    /// What the store does when the guest runs past an epoch tick: end the call if its CPU
    /// budget is spent; else go on, yielding to the async runtime from the second tick on.
    ///
    /// A call shorter than a tick never yields (at most one tick passes during it), so it never
    /// waits behind other tasks.
    pub fn on_epoch_tick(&mut self) -> UpdateDeadline {
        if self.cpu.tick() {
            return UpdateDeadline::Interrupt;
        }
        self.ticks += 1;
        if self.ticks == 1 {
            UpdateDeadline::Continue(1)
        } else {
            // tokio's own yield: the task goes to the back of its worker's queue, and the
            // runtime's cooperative budget sees it.
            UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wasmtime_wasi_http::WasiHttpView for HostState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            hooks: &mut self.http_hooks,
            table: &mut self.table,
            ctx: &mut self.http,
        }
    }
}

/// The `wasi:http` hooks of a plugin. `outgoing-handler.handle` is shadowed so that a request
/// fails the call before it gets here ([`super::denied`]); should a request ever reach the
/// hooks, it fails with `HTTP-request-denied` all the same.
#[derive(Debug, Clone, Copy, Default)]
pub struct DenyRequests;

/// A future `wasi:http`'s hooks hand around: a request's or response's outcome.
type HttpOutcome = Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>;

/// What [`wasmtime_wasi_http::WasiHttpHooks::send_request`] returns.
type SentRequest = Box<
    dyn Future<
            Output = Result<
                (http::Response<wasmtime_wasi_http::WasiBody>, HttpOutcome),
                wasmtime_wasi_http::Error,
            >,
        > + Send,
>;

impl wasmtime_wasi_http::WasiHttpHooks for DenyRequests {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: HttpOutcome,
    ) -> SentRequest {
        tracing::debug!(uri = %request.uri(), "plugin HTTP request denied");
        Box::new(std::future::ready(Err(
            wasmtime_wasi_http::Error::HttpRequestDenied,
        )))
    }
}

impl super::bindings::webhook_router::plugin::types::Host for HostState {}

impl FilterImports for HostState {
    fn log(&mut self, level: Level, mut message: String) {
        if message.len() > MAX_LOG_MESSAGE_BYTES {
            let mut cut = MAX_LOG_MESSAGE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let (plugin, route) = (&*self.plugin, &*self.route);
        match level {
            Level::Trace => tracing::trace!(plugin, route, "{message}"),
            Level::Debug => tracing::debug!(plugin, route, "{message}"),
            Level::Info => tracing::info!(plugin, route, "{message}"),
            Level::Warn => tracing::warn!(plugin, route, "{message}"),
            Level::Error => tracing::error!(plugin, route, "{message}"),
        }
    }
}

/// Why the plugin engine could not be set up, or a module could not be compiled.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct EngineError(pub String);

/// The shared engine and linker.
pub struct PluginEngine {
    engine: Engine,
    linker: Linker<HostState>,
}

impl std::fmt::Debug for PluginEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginEngine").finish_non_exhaustive()
    }
}

impl PluginEngine {
    /// The process's engine, created (with its ticker thread) on first use, caching compiled
    /// code as `cache` says. The first call's `cache` holds for the life of the process (a
    /// process runs one config); later calls get the same engine whatever theirs.
    pub fn shared(cache: &CompileCache) -> Result<&'static PluginEngine, EngineError> {
        static SHARED: OnceLock<Result<PluginEngine, EngineError>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                Self::new(cache)
                    .map_err(|e| EngineError(format!("cannot start the plugin engine: {e:#}")))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    fn new(cache: &CompileCache) -> wasmtime::Result<Self> {
        let mut pooling = PoolingAllocationConfig::default();
        pooling
            .total_component_instances(POOLED_INSTANCES)
            .total_core_instances(POOLED_INSTANCES * 4)
            .total_memories(POOLED_INSTANCES * 2)
            .total_tables(POOLED_INSTANCES * 4)
            .total_stacks(POOLED_INSTANCES)
            .max_memory_size(MAX_PLUGIN_MEMORY_BYTES)
            // A slot's pages stay mapped when its instance ends, and only the pages it dirtied
            // (found with PAGEMAP_SCAN where the kernel has it) are reset with memset. Without
            // this every instance ends with an madvise (a TLB shootdown on every core) and the
            // next one page-faults its memory back in: most of a fresh instance's cost.
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(KEEP_RESIDENT_BYTES / 16)
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut config = wasmtime::Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .memory_init_cow(true)
            .max_wasm_stack(512 * 1024)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
        if let Some(dir) = super::cache::directory(cache) {
            let mut cache_config = wasmtime::CacheConfig::new();
            cache_config.with_directory(&dir);
            match wasmtime::Cache::new(cache_config) {
                Ok(cache) => {
                    tracing::debug!(dir = %dir.display(), "plugin compile cache");
                    config.cache(Some(cache));
                }
                Err(error) => tracing::warn!("plugin compile cache off: {error:#}"),
            }
        }
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        Filter::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)?;
        super::denied::shadow(&mut linker)?;
        start_epoch_ticker(&engine);
        Ok(Self { engine, linker })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The linker every plugin is instantiated with.
    pub fn linker(&self) -> &Linker<HostState> {
        &self.linker
    }

    /// Compiles a component (or loads it from the on-disk cache).
    pub fn compile(&self, wasm: &[u8]) -> Result<Component, EngineError> {
        Component::new(&self.engine, wasm).map_err(|e| EngineError(format!("{e:#}")))
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] for as long as the engine lives, on a
/// thread of its own, started again if it panics.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("plugin-epoch".into())
        .spawn(move || crate::supervise::supervise_thread("epoch_ticker", || tick(&weak)));
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start the plugin epoch ticker: plugin time limits will not apply");
    }
}

/// Ticks until the engine is gone.
fn tick(weak: &wasmtime::EngineWeak) {
    // Ticks follow a fixed schedule rather than "sleep a tick, repeat": each sleep
    // overshoots a little, and 25 overshoots would stretch a 25 ms limit by a tick or two.
    // When the ticker falls behind by more than a tick (this thread was not scheduled, the
    // machine is loaded or was suspended), the schedule restarts instead of catching up with a
    // burst of ticks that would end running plugins early: a limit may run late under load,
    // never more than a tick early.
    let mut start = Instant::now();
    let mut ticks: u32 = 0;
    while let Some(engine) = weak.upgrade() {
        engine.increment_epoch();
        drop(engine);
        ticks += 1;
        let now = Instant::now();
        let next = start + EPOCH_TICK * ticks;
        if ticks == u32::MAX || now > next + EPOCH_TICK {
            start = now;
            ticks = 0;
            std::thread::sleep(EPOCH_TICK);
        } else {
            std::thread::sleep(next.saturating_duration_since(now));
        }
    }
}
