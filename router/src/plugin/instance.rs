//! One loaded plugin: its pre-instantiated component, its configuration, and a pool of
//! configured instances.
//!
//! Isolation is per event in one of two ways (route config `isolation`):
//! - `reuse` (default): an idle, configured instance is taken from the plugin's own pool and
//!   returned after a clean call. An instance that traps, times out or runs out of memory is
//!   discarded, never reused. Pools are per route and per plugin entry, so no state crosses
//!   routes.
//! - `fresh`: every event gets a new instance, configured, used once and dropped.
//!
//! Every call runs with an epoch deadline (time) and a memory limiter in its `Store`.

use std::cell::Cell;
use std::sync::{Arc, Once};
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use wasmtime::component::{Component, ComponentExportIndex, InstancePre, TypedFunc};
use wasmtime::{Store, Trap};

use super::bindings::{EventRef, FilterIndices, Verdict, with_guest_view};
use super::engine::{EPOCH_TICK, HostState, PluginEngine};
use super::limits::PluginLimits;
use super::{Isolation, PluginErrorKind, PluginFailure};
use crate::event::Event;

/// Idle instances kept per plugin. Each holds one of the engine's pooled slots, so this times
/// the number of plugin entries should stay well under the pool's size.
const IDLE_INSTANCES: usize = 8;
/// Time budget for `configure`, which may parse a large config once.
const CONFIGURE_TIME_FACTOR: u32 = 50;

/// The `handle` export, typed to take the event borrowed from the router's (see
/// [`EventRef`]). Stored with a `'static` borrow and, being covariant in it, called with any.
type HandleFunc = TypedFunc<(EventRef<'static>,), (Result<Verdict, String>,)>;

/// A configured instance and the store it lives in.
struct PluginInstance {
    store: Store<HostState>,
    handle: HandleFunc,
}

/// A plugin ready to handle events.
pub struct LoadedPlugin {
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
    idle: ArrayQueue<PluginInstance>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("route", &self.route)
            .field("limits", &self.limits)
            .field("isolation", &self.isolation)
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    /// Pre-instantiates `component` and configures a first instance with `config_json`;
    /// a configuration the plugin rejects is an error here, at load time.
    pub fn load(
        engine: &PluginEngine,
        component: &Component,
        name: &str,
        route: &str,
        config_json: String,
        limits: PluginLimits,
        isolation: Isolation,
    ) -> Result<Self, PluginFailure> {
        let instance_pre = engine.linker().instantiate_pre(component).map_err(|e| {
            PluginFailure::new(PluginErrorKind::Error, format!("cannot link plugin: {e:#}"))
        })?;
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
        let plugin = Self {
            name: name.into(),
            route: route.into(),
            pre: instance_pre,
            indices,
            handle_export,
            config_json,
            limits,
            isolation,
            idle: ArrayQueue::new(IDLE_INSTANCES),
        };
        let first = plugin.instantiate()?;
        if plugin.isolation == Isolation::Reuse {
            let _ = plugin.idle.push(first);
        }
        Ok(plugin)
    }

    /// The plugin's name (its label in metrics and logs).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The plugin's limits.
    pub fn limits(&self) -> PluginLimits {
        self.limits
    }

    /// Runs the plugin on `event`.
    pub fn handle(&self, event: &Event) -> Result<Verdict, PluginFailure> {
        let mut instance = match self.isolation {
            Isolation::Reuse => match self.idle.pop() {
                Some(instance) => instance,
                None => self.instantiate()?,
            },
            Isolation::Fresh => self.instantiate()?,
        };
        instance
            .store
            .set_epoch_deadline(deadline_ticks(self.limits.time));
        instance.store.data_mut().limiter.exceeded = false;
        let PluginInstance { store, handle } = &mut instance;
        let result = contain(|| with_guest_view(event, |view| handle.call(&mut *store, (view,))))?;
        let verdict = match result {
            Ok((Ok(verdict),)) => verdict,
            Ok((Err(message),)) => {
                self.recycle(instance);
                return Err(PluginFailure::new(PluginErrorKind::Error, message));
            }
            // A trapped instance may be in any state: it is dropped here, never reused.
            Err(error) => return Err(classify(&error, &instance.store, self.limits.time)),
        };
        self.recycle(instance);
        let cap = self.limits.output_cap(event.body.len());
        let size = verdict_size(&verdict);
        if size > cap {
            return Err(PluginFailure::new(
                PluginErrorKind::OutputTooLarge,
                format!("output of {size} bytes is over the {cap}-byte cap"),
            ));
        }
        Ok(verdict)
    }

    fn recycle(&self, instance: PluginInstance) {
        if self.isolation == Isolation::Reuse {
            // A full pool drops the instance, which frees its slot.
            let _ = self.idle.push(instance);
        }
    }

    /// A new instance, configured.
    fn instantiate(&self) -> Result<PluginInstance, PluginFailure> {
        let state = HostState::new(
            Arc::clone(&self.name),
            Arc::clone(&self.route),
            self.limits.memory_bytes,
        );
        let mut store = Store::new(self.pre.component().engine(), state);
        store.limiter(|state| &mut state.limiter);
        let configure_time = self.limits.time.saturating_mul(CONFIGURE_TIME_FACTOR);
        store.set_epoch_deadline(deadline_ticks(configure_time));
        let instance = self.pre.instantiate(&mut store).map_err(|error| {
            if error.downcast_ref::<Trap>().is_some() || store.data().limiter.exceeded {
                classify(&error, &store, configure_time)
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
        match contain(|| filter.call_configure(&mut store, &self.config_json))? {
            Ok(Ok(())) => Ok(PluginInstance { store, handle }),
            Ok(Err(message)) => Err(PluginFailure::new(
                PluginErrorKind::Error,
                format!("plugin rejected its config: {message}"),
            )),
            Err(error) => Err(classify(&error, &store, configure_time)),
        }
    }
}

/// Runs a guest call, turning a panic in a host function into a plugin failure.
///
/// The WASI host functions behind blocking calls (writing to stdout or stderr, `poll`,
/// `pollable.block`, hence sleeping) re-enter the async runtime with `block_on`, which panics
/// on a runtime worker thread. That panic unwinds out of the guest; caught here, it fails this
/// call only, and the instance (dropped by the caller) is never reused. A plugin that needs to
/// say something uses the contract's `log` import instead. The panic is not printed (see
/// [`quiet_contained_panics`]): the failure is reported as the plugin's.
fn contain<T>(call: impl FnOnce() -> T) -> Result<T, PluginFailure> {
    quiet_contained_panics();
    let outer = IN_GUEST_CALL.replace(true);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(call));
    IN_GUEST_CALL.set(outer);
    result.map_err(|payload| {
        let message = panic_message(payload.as_ref());
        if is_blocking_call_panic(message) {
            PluginFailure::new(
                PluginErrorKind::Error,
                "the plugin made a blocking WASI call (stdout, stderr, poll or sleep), which \
                 plugins may not make: use the log import",
            )
        } else {
            // Not the known blocking-call panic: a host bug; the hook printed it as usual.
            PluginFailure::new(
                PluginErrorKind::Error,
                format!("a host function panicked during the plugin call: {message}"),
            )
        }
    })
}

/// The text of a panic payload (`panic!` gives a `&str` or a `String`).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// Whether a panic is the async runtime refusing a blocking call on one of its threads: what a
/// blocking WASI call by the guest ends in.
fn is_blocking_call_panic(message: &str) -> bool {
    message.contains("Cannot start a runtime from within a runtime")
}

thread_local! {
    /// Whether this thread is inside [`contain`].
    static IN_GUEST_CALL: Cell<bool> = const { Cell::new(false) };
}

/// Installs (once) a panic hook that keeps the blocking-call panic inside [`contain`] off
/// stderr (the default hook prints it, with a backtrace, before `catch_unwind` gets it) and logs
/// it at debug level; every other panic, inside a plugin call or not, goes to the hook installed
/// before, so a host bug is never hidden as a plugin's failure.
fn quiet_contained_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_GUEST_CALL.with(Cell::get)
                && is_blocking_call_panic(panic_message(info.payload()))
            {
                tracing::debug!(panic = %info, "a host call made by a plugin panicked; contained");
            } else {
                previous(info);
            }
        }));
    });
}

/// Epoch ticks for `time`, rounded up (at least one).
fn deadline_ticks(time: Duration) -> u64 {
    let budget = time.as_nanos();
    let tick = EPOCH_TICK.as_nanos();
    u64::try_from(budget.div_ceil(tick))
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Names what went wrong in a failed call that was allowed `time`.
fn classify(error: &wasmtime::Error, store: &Store<HostState>, time: Duration) -> PluginFailure {
    if store.data().limiter.exceeded {
        return PluginFailure::new(PluginErrorKind::Memory, format!("{error:#}"));
    }
    let kind = match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => PluginErrorKind::Timeout,
        _ => PluginErrorKind::Trap,
    };
    let message = match kind {
        PluginErrorKind::Timeout => format!(
            "plugin ran past its time limit of {}",
            humantime::format_duration(time)
        ),
        _ => format!("{error:#}"),
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
    use super::*;

    #[test]
    fn deadlines_round_up_to_whole_ticks() {
        assert_eq!(deadline_ticks(Duration::from_millis(10)), 10);
        assert_eq!(deadline_ticks(Duration::from_micros(1500)), 2);
        assert_eq!(deadline_ticks(Duration::ZERO), 1);
        assert_eq!(deadline_ticks(Duration::from_millis(10) * 50), 500);
    }
}
