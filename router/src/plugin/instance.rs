//! One loaded plugin: its pre-instantiated component, its configuration, and a pool of
//! configured instances, kept warm off the request path.
//!
//! Isolation is per event in one of two ways (route config `isolation`):
//! - `reuse` (default): an idle, configured instance is taken from the plugin's own pool and
//!   returned after a clean call. An instance that traps, times out or runs out of memory is
//!   discarded, never reused. Pools are per route and per plugin entry, so no state crosses
//!   routes.
//! - `fresh`: every event gets an instance no event has seen, used once and dropped.
//!
//! Either way, instances are created and configured ahead of need: the pool holds
//! [`WARM_INSTANCES`] ready ones, and a background task tops it up when a call takes one, so
//! a request pays for instantiation only when events outrun the refill.
//!
//! Every call runs with `call_async` under the plugin's limits: a CPU budget (see
//! [`super::cpu`]), a wall-clock backstop, a memory limiter, a cap on what may be lifted out of
//! the guest ("hostcall fuel": a verdict over the output cap fails before the host copies it),
//! and a per-call capture of stdout and stderr.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{
    Component, ComponentExportIndex, InstancePre, Linker, LinkerInstance, ResourceType, TypedFunc,
};
use wasmtime::{Store, Trap};

use super::backstop::with_backstop;
use super::bindings::{EventRef, FilterIndices, Verdict, event_ref, header_refs, header_values};
use super::cpu::{CpuMeter, Reading, metered};
use super::engine::{HostState, PluginEngine};
use super::inspect::{ImportStatus, import_status};
use super::limits::PluginLimits;
use super::stdio::{Captured, StdioFlood};
use super::{Isolation, PluginErrorKind, PluginFailure};
use crate::event::Event;

/// Idle instances kept per plugin. Each holds one of the engine's pooled slots, so this times
/// the number of plugin entries should stay well under the pool's size.
const IDLE_INSTANCES: usize = 8;
/// Configured instances the pool keeps ready for the next events.
pub const WARM_INSTANCES: usize = 2;
/// Most headers one event of a verdict may carry (hyper's default for a request is 100).
pub const MAX_VERDICT_HEADERS: usize = 128;
/// CPU budget of `configure`, as a multiple of the call limit: it may parse a large config once.
const CONFIGURE_TIME_FACTOR: u32 = 50;

/// The `handle` export, typed to take the event borrowed from the router's (see
/// [`EventRef`]). Stored with a `'static` borrow and, being covariant in it, called with any.
type HandleFunc = TypedFunc<(EventRef<'static>,), (Result<Verdict, String>,)>;

/// A configured instance and the store it lives in.
struct PluginInstance {
    store: Store<HostState>,
    handle: HandleFunc,
    /// The store's CPU meter (the one in its [`HostState`]), at hand while a call borrows it.
    cpu: Arc<CpuMeter>,
}

/// What one call gave: its verdict or failure, and what the guest wrote to stdout and stderr.
#[derive(Debug)]
pub struct CallOutcome {
    /// The verdict, or why there is none.
    pub result: Result<Verdict, PluginFailure>,
    /// The guest's stdout and stderr during the call.
    pub stdio: Captured,
    /// The call's CPU time, when it was read exactly ([`LoadedPlugin::call_exact`]; `None`
    /// from [`LoadedPlugin::call`], and for a call that never started).
    pub cpu_time: Option<Duration>,
}

/// A plugin ready to handle events. Cheap to clone: clones share the plugin and its pool.
#[derive(Clone)]
pub struct LoadedPlugin {
    shared: Arc<Shared>,
}

struct Shared {
    name: Arc<str>,
    route: Arc<str>,
    pre: InstancePre<HostState>,
    /// Where the contract's exports are, looked up once.
    indices: FilterIndices,
    /// Where the `handle` export is, looked up once.
    handle_export: ComponentExportIndex,
    config_json: String,
    limits: PluginLimits,
    isolation: Isolation,
    /// Idle instances, the most recently used last (taken first: its memory is warm).
    idle: Mutex<Vec<PluginInstance>>,
    /// Whether a refill task is running.
    refilling: AtomicBool,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.shared.name)
            .field("route", &self.shared.route)
            .field("limits", &self.shared.limits)
            .field("isolation", &self.shared.isolation)
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    /// Pre-instantiates `component` and configures the first [`WARM_INSTANCES`] instances with
    /// `config_json`; a configuration the plugin rejects is an error here, at load time.
    pub async fn load(
        engine: &PluginEngine,
        component: &Component,
        name: &str,
        route: &str,
        config_json: String,
        limits: PluginLimits,
        isolation: Isolation,
    ) -> Result<Self, PluginFailure> {
        let link_error = |e: wasmtime::Error| {
            PluginFailure::new(PluginErrorKind::Error, format!("cannot link plugin: {e:#}"))
        };
        let linker = linker_for(engine, component).map_err(link_error)?;
        let instance_pre = linker.instantiate_pre(component).map_err(link_error)?;
        let indices = FilterIndices::new(&instance_pre).map_err(|e| {
            PluginFailure::new(
                PluginErrorKind::Error,
                format!("not a webhook-router plugin: {e:#}"),
            )
        })?;
        let handle_export = component.get_export_index(None, "handle").ok_or_else(|| {
            PluginFailure::new(
                PluginErrorKind::Error,
                "not a webhook-router plugin: no `handle` export",
            )
        })?;
        let shared = Arc::new(Shared {
            name: name.into(),
            route: route.into(),
            pre: instance_pre,
            indices,
            handle_export,
            config_json,
            limits,
            isolation,
            idle: Mutex::new(Vec::with_capacity(IDLE_INSTANCES)),
            refilling: AtomicBool::new(false),
        });
        for _ in 0..WARM_INSTANCES {
            let instance = shared.instantiate().await?;
            shared.idle().push(instance);
        }
        Ok(Self { shared })
    }

    /// The plugin's name (its label in metrics and logs).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The plugin's limits.
    pub fn limits(&self) -> PluginLimits {
        self.shared.limits
    }

    /// Configured instances idle in the pool now.
    pub fn idle_instances(&self) -> usize {
        self.shared.idle().len()
    }

    /// Runs the plugin on `event`, writing what it printed to the log. Like [`Self::call`], it
    /// must run inside a tokio runtime with its time driver enabled.
    pub async fn handle(&self, event: &Event) -> Result<Verdict, PluginFailure> {
        let outcome = self.call(event).await;
        outcome
            .stdio
            .log(self.name(), &self.shared.route, &event.id);
        outcome.result
    }

    /// Runs the plugin on `event`; what it printed is returned, not logged. Must run inside a
    /// tokio runtime with its time driver enabled (the wall-clock backstop is a tokio timeout,
    /// and WASI waits are tokio timers); the pool is topped up by a task spawned on it.
    pub async fn call(&self, event: &Event) -> CallOutcome {
        self.call_reading(event, Reading::AtTicks).await
    }

    /// [`Self::call`], reading the call's CPU time exactly ([`CallOutcome::cpu_time`]), for two
    /// reads of the thread's CPU clock more.
    pub async fn call_exact(&self, event: &Event) -> CallOutcome {
        self.call_reading(event, Reading::Exact).await
    }

    async fn call_reading(&self, event: &Event, reading: Reading) -> CallOutcome {
        let shared = &self.shared;
        let (taken, left) = {
            let mut idle = shared.idle();
            (idle.pop(), idle.len())
        };
        if left < WARM_INSTANCES {
            self.keep_warm();
        }
        let mut instance = match taken {
            Some(instance) => instance,
            None => match shared.instantiate().await {
                Ok(instance) => instance,
                Err(failure) => {
                    return CallOutcome {
                        result: Err(failure),
                        stdio: Captured::default(),
                        cpu_time: None,
                    };
                }
            },
        };
        let limits = shared.limits;
        let cap = limits.output_cap(event.body.len());
        start_call(&mut instance.store, limits.time, cap);
        let values = header_values(event);
        let headers = header_refs(event, &values);
        let view = event_ref(event, &headers);
        let PluginInstance { store, handle, cpu } = &mut instance;
        let call = metered(cpu, reading, handle.call_async(&mut *store, (view,)));
        // The backstop for waits, which use no CPU time (a WASI sleep or poll): running wasm
        // code is stopped at its CPU budget by the epoch callback, a host wait by this timeout.
        let result = with_backstop(call, limits.backstop()).await;
        let stdio = instance.store.data().stdio.take();
        let cpu_time = (reading == Reading::Exact).then(|| instance.cpu.used());
        let result = match result {
            None => Err(still_waiting("plugin", limits.backstop())),
            Some(Ok((Ok(verdict),))) => {
                self.recycle(instance);
                check_verdict(verdict, cap, limits.fan_out)
            }
            Some(Ok((Err(message),))) => {
                self.recycle(instance);
                Err(PluginFailure::new(PluginErrorKind::Error, message))
            }
            // A trapped instance may be in any state: it is dropped here, never reused.
            Some(Err(error)) => Err(classify(&error, &instance.store, limits.time, &stdio)),
        };
        CallOutcome {
            result,
            stdio,
            cpu_time,
        }
    }

    fn recycle(&self, instance: PluginInstance) {
        if self.shared.isolation == Isolation::Reuse {
            let mut idle = self.shared.idle();
            // A full pool drops the instance, which frees its slot.
            if idle.len() < IDLE_INSTANCES {
                idle.push(instance);
            }
        }
    }

    /// Starts a task that tops the pool up to [`WARM_INSTANCES`], unless one is running, the
    /// pool is full enough, or there is no async runtime to run it on.
    fn keep_warm(&self) {
        let shared = &self.shared;
        if shared.idle().len() >= WARM_INSTANCES {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if shared.refilling.swap(true, Ordering::AcqRel) {
            return;
        }
        let shared = Arc::clone(shared);
        runtime.spawn(async move {
            while shared.idle().len() < WARM_INSTANCES {
                match shared.instantiate().await {
                    Ok(instance) => shared.idle().push(instance),
                    Err(failure) => {
                        tracing::warn!(plugin = %shared.name, route = %shared.route, error = %failure, "cannot warm a plugin instance");
                        break;
                    }
                }
            }
            shared.refilling.store(false, Ordering::Release);
        });
    }
}

impl Shared {
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<PluginInstance>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new instance, configured.
    async fn instantiate(&self) -> Result<PluginInstance, PluginFailure> {
        let state = HostState::new(
            Arc::clone(&self.name),
            Arc::clone(&self.route),
            self.limits.memory_bytes,
        );
        let cpu = Arc::clone(&state.cpu);
        let mut store = Store::new(self.pre.component().engine(), state);
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_callback(|mut store| Ok(store.data_mut().on_epoch_tick()));
        let configure_time = self.limits.time.saturating_mul(CONFIGURE_TIME_FACTOR);
        let configure_limits = PluginLimits {
            time: configure_time,
            ..self.limits
        };
        start_call(&mut store, configure_time, self.limits.output_bytes);
        let instance = metered(
            &cpu,
            Reading::AtTicks,
            self.pre.instantiate_async(&mut store),
        )
        .await
        .map_err(|error| {
            if error.downcast_ref::<Trap>().is_some() || store.data().limiter.exceeded {
                classify(&error, &store, configure_time, &store.data().stdio.take())
            } else {
                // Not the guest's doing: typically every slot of the instance pool is in use.
                PluginFailure {
                    unavailable: true,
                    ..PluginFailure::new(
                        PluginErrorKind::Error,
                        format!("cannot instantiate: {error:#}"),
                    )
                }
            }
        })?;
        let loaded = self.indices.load(&mut store, &instance).and_then(|filter| {
            let handle = instance.get_typed_func(&mut store, self.handle_export)?;
            Ok((filter, handle))
        });
        let (filter, handle) = loaded.map_err(|e| {
            PluginFailure::new(
                PluginErrorKind::Error,
                format!("not a webhook-router plugin: {e:#}"),
            )
        })?;
        let configured = with_backstop(
            metered(
                &cpu,
                Reading::AtTicks,
                filter.call_configure(&mut store, &self.config_json),
            ),
            configure_limits.backstop(),
        )
        .await;
        let stdio = store.data().stdio.take();
        stdio.log(&self.name, &self.route, "configure");
        match configured {
            Some(Ok(Ok(()))) => Ok(PluginInstance { store, handle, cpu }),
            Some(Ok(Err(message))) => Err(PluginFailure::new(
                PluginErrorKind::Error,
                format!("plugin rejected its config: {message}"),
            )),
            Some(Err(error)) => Err(classify(&error, &store, configure_time, &stdio)),
            None => Err(still_waiting("configure", configure_limits.backstop())),
        }
    }
}

/// Arms `store` for one call: a CPU budget of `cpu`, at most `cap` bytes lifted out of the
/// guest (and written to stdio), and a fresh stdio capture.
fn start_call(store: &mut Store<HostState>, cpu: Duration, cap: usize) {
    store.set_epoch_deadline(1);
    // Every list and string lifted out of the guest (a verdict, a log line) is charged against
    // this, before the host allocates for it: wasmtime fails the lift once it runs out.
    store.set_hostcall_fuel(cap);
    let state = store.data_mut();
    state.limiter.exceeded = false;
    state.ticks = 0;
    state.cpu.start(cpu);
    state.stdio.start_call(cap);
}

/// Checks what the lift could not: the verdict's exact size, its fan-out width and the headers
/// of each of its events.
fn check_verdict(verdict: Verdict, cap: usize, fan_out: usize) -> Result<Verdict, PluginFailure> {
    let most_headers = match &verdict {
        Verdict::Forward(event) => event.headers.len(),
        Verdict::FanOut(deliveries) => deliveries
            .iter()
            .map(|d| d.event.headers.len())
            .max()
            .unwrap_or(0),
        Verdict::Pass | Verdict::Drop(_) | Verdict::Reject(_) => 0,
    };
    if most_headers > MAX_VERDICT_HEADERS {
        return Err(PluginFailure::new(
            PluginErrorKind::OutputTooLarge,
            format!(
                "an event with {most_headers} headers is over the limit of {MAX_VERDICT_HEADERS}"
            ),
        ));
    }
    if let Verdict::FanOut(deliveries) = &verdict
        && deliveries.len() > fan_out
    {
        return Err(PluginFailure::new(
            PluginErrorKind::OutputTooLarge,
            format!(
                "fan-out to {} destinations is over the limit of {fan_out}",
                deliveries.len()
            ),
        ));
    }
    let size = verdict_size(&verdict);
    if size > cap {
        return Err(PluginFailure::new(
            PluginErrorKind::OutputTooLarge,
            format!("output of {size} bytes is over the {cap}-byte cap"),
        ));
    }
    Ok(verdict)
}

/// What wasmtime says when a lift out of the guest runs out of hostcall fuel (its error type
/// is private).
const HOSTCALL_FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";

/// The failure of a call (`what`: "plugin" or "configure") cut off at its wall-clock
/// `backstop` while it waited in a WASI poll or sleep.
fn still_waiting(what: &str, backstop: Duration) -> PluginFailure {
    PluginFailure::new(
        PluginErrorKind::Timeout,
        format!(
            "{what} was still waiting (in a WASI poll or sleep) at its wall-clock backstop of {}",
            humantime::format_duration(backstop)
        ),
    )
}

/// A plugin called an import the router does not provide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the plugin called `{0}`, which the router does not provide")]
pub struct NotProvided(pub String);

/// The engine's linker, plus, for each import of `component` the router does not provide
/// (WASI 0.3, any interface of its own: see [`import_status`]), functions that fail the call
/// with [`NotProvided`]: a module importing one loads, and only a call that uses it fails.
fn linker_for(engine: &PluginEngine, component: &Component) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = engine.linker().clone();
    let ty = component.component_type();
    for (name, import) in ty.imports(engine.engine()) {
        if import_status(name) == ImportStatus::NotAvailable {
            stub(&mut linker.root(), name, &import.ty, engine.engine(), None)?;
        }
    }
    Ok(linker)
}

/// Defines `item` (a function, an instance of them, a resource) as failing with [`NotProvided`].
fn stub(
    linker: &mut LinkerInstance<'_, HostState>,
    name: &str,
    item: &ComponentItem,
    engine: &wasmtime::Engine,
    parent: Option<&str>,
) -> wasmtime::Result<()> {
    match item {
        ComponentItem::ComponentFunc(_) => {
            let full = parent.map_or_else(|| name.to_owned(), |parent| format!("{parent}#{name}"));
            linker.func_new(name, move |_, _, _, _| {
                Err(wasmtime::Error::new(NotProvided(full.clone())))
            })?;
        }
        ComponentItem::ComponentInstance(instance) => {
            let mut inner = linker.instance(name)?;
            for (export, item) in instance.exports(engine) {
                stub(&mut inner, export, &item.ty, engine, Some(name))?;
            }
        }
        ComponentItem::Resource(_) => {
            linker.resource(name, ResourceType::host::<()>(), |_, _| Ok(()))?;
        }
        _ => {}
    }
    Ok(())
}

/// Names what went wrong in a failed call that was allowed `time`; the end of what the guest
/// wrote to stderr (an uncaught exception's text, a panic message) is added to the message.
fn classify(
    error: &wasmtime::Error,
    store: &Store<HostState>,
    time: Duration,
    stdio: &Captured,
) -> PluginFailure {
    let (kind, message) = if store.data().limiter.exceeded {
        (PluginErrorKind::Memory, format!("{error:#}"))
    } else if let Some(denied) = error.downcast_ref::<NotProvided>() {
        (PluginErrorKind::Error, denied.to_string())
    } else if let Some(denied) = error.downcast_ref::<super::denied::Denied>() {
        (PluginErrorKind::Denied, denied.to_string())
    } else if let Some(flood) = error.downcast_ref::<StdioFlood>() {
        (PluginErrorKind::OutputTooLarge, flood.to_string())
    } else {
        match error.downcast_ref::<Trap>() {
            // The epoch callback interrupts a call only when its CPU budget is spent.
            Some(Trap::Interrupt) => (
                PluginErrorKind::Timeout,
                format!(
                    "plugin used up its CPU budget of {}",
                    humantime::format_duration(time)
                ),
            ),
            _ if format!("{error:#}").contains(HOSTCALL_FUEL_EXHAUSTED) => (
                PluginErrorKind::OutputTooLarge,
                format!("the plugin's output is over its cap, refused before copying: {error:#}"),
            ),
            Some(trap) => {
                // The trap on one line, for the failure's log line; where it happened, for
                // whoever debugs the plugin.
                let state = store.data();
                if let Some(backtrace) = error.downcast_ref::<wasmtime::WasmBacktrace>() {
                    tracing::debug!(plugin = %state.plugin, route = %state.route, "{trap}: {backtrace}");
                }
                (PluginErrorKind::Trap, error.root_cause().to_string())
            }
            None => (PluginErrorKind::Trap, format!("{error:#}")),
        }
    };
    let message = if stdio.stderr_tail.is_empty() {
        message
    } else {
        format!("{message}; stderr: {}", stdio.stderr_tail)
    };
    PluginFailure::new(kind, message)
}

/// Bytes a verdict hands back: bodies and headers of its events.
fn verdict_size(verdict: &Verdict) -> usize {
    fn event_size(event: &super::bindings::Event) -> usize {
        event.body.len()
            + event.path.len()
            + event.query.len()
            + event.method.len()
            + event
                .headers
                .iter()
                .map(|h| h.name.len() + h.value.len())
                .sum::<usize>()
    }
    match verdict {
        Verdict::Forward(event) => event_size(event),
        Verdict::FanOut(deliveries) => deliveries.iter().map(|d| event_size(&d.event)).sum(),
        Verdict::Pass => 0,
        Verdict::Drop(reason) => reason.len(),
        Verdict::Reject(rejection) => rejection.message.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::bindings::{Delivery, to_guest};
    use super::*;

    fn fan_out(entries: usize, body: &[u8]) -> Verdict {
        let event = to_guest(&super::super::trial::trial_event(
            "r",
            body.to_vec(),
            http::HeaderMap::new(),
        ));
        Verdict::FanOut(
            (0..entries)
                .map(|_| Delivery {
                    destination: "a".to_owned(),
                    event: event.clone(),
                })
                .collect(),
        )
    }

    #[test]
    fn a_fan_out_wider_than_its_limit_is_too_large() {
        let failure = check_verdict(fan_out(65, b"{}"), 1 << 20, 64).unwrap_err();
        assert_eq!(failure.kind, PluginErrorKind::OutputTooLarge);
        assert_eq!(
            failure.message,
            "fan-out to 65 destinations is over the limit of 64"
        );
        assert!(check_verdict(fan_out(64, b"{}"), 1 << 20, 64).is_ok());
    }

    #[test]
    fn an_event_with_too_many_headers_is_too_large() {
        let mut verdict = fan_out(1, b"{}");
        let Verdict::FanOut(deliveries) = &mut verdict else {
            unreachable!()
        };
        let headers = &mut deliveries[0].event.headers;
        headers.clear();
        headers.extend(
            (0..=MAX_VERDICT_HEADERS).map(|i| super::super::bindings::Header {
                name: format!("x-{i}"),
                value: String::new(),
            }),
        );
        let failure = check_verdict(verdict.clone(), 1 << 20, 64).unwrap_err();
        assert_eq!(failure.kind, PluginErrorKind::OutputTooLarge);
        assert_eq!(
            failure.message,
            "an event with 129 headers is over the limit of 128"
        );
        let Verdict::FanOut(deliveries) = &mut verdict else {
            unreachable!()
        };
        deliveries[0].event.headers.pop();
        assert!(check_verdict(verdict, 1 << 20, 64).is_ok());
    }

    #[test]
    fn a_verdict_over_the_cap_is_too_large() {
        let failure = check_verdict(fan_out(3, &[b'x'; 400]), 1000, 64).unwrap_err();
        assert_eq!(failure.kind, PluginErrorKind::OutputTooLarge);
        assert!(
            failure.message.ends_with("bytes is over the 1000-byte cap"),
            "{failure}"
        );
    }
}
