//! WebAssembly plugins: where events are filtered, reshaped and fanned out.
//!
//! - [`bindings`]: the WIT contract (`sdk/wit/plugin.wit`) bound for the host;
//! - [`engine`]: the one wasmtime engine, its epoch ticker and the sandboxed linker;
//! - [`cache`]: the router's own directory for compiled code (`[plugins] cache`);
//! - [`module`]: a module file read with bounds and compiled under a deadline;
//! - [`denied`]: what the sandbox denies (files, network, outgoing HTTP), failing the call;
//! - [`instance`]: a loaded plugin with its pool of configured instances;
//! - [`limits`]: memory, CPU time, output and fan-out limits;
//! - [`cpu`]: a call's CPU time, read from its threads' CPU clocks at epoch ticks;
//! - [`stdio`]: a guest's stdout and stderr, captured per call into the log;
//! - [`chain`]: a route's plugins run in order, and what their verdicts mean;
//! - [`load`]: compiling and configuring every plugin of a config (for `serve` and `check`);
//! - [`inspect`]: a module's imports, granted or not, and exports (`webhook-router plugin inspect`);
//! - [`trial`]: one plugin on one event from files (`webhook-router plugin run`);
//! - [`cases`]: a directory of events with the verdicts a plugin must give them
//!   (`webhook-router plugin run --cases`).

mod backstop;
pub mod bindings;
pub mod cache;
pub mod cases;
pub mod chain;
pub mod cpu;
pub mod denied;
pub mod engine;
pub mod inspect;
pub mod instance;
pub mod limits;
pub mod load;
pub mod module;
pub mod stdio;
pub mod trial;

pub use crate::config::{Isolation, OnPluginError};
pub use chain::{ChainOutcome, PluginChain};
pub use instance::{CallOutcome, LoadedPlugin};
pub use limits::PluginLimits;
pub use load::{CompiledModules, check_plugins, load_chains, load_chains_with, load_plugin};

/// The kinds of plugin failure, as counted in `webhook_plugin_errors_total{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PluginErrorKind {
    /// The guest trapped (panic, `unreachable`, stack overflow, ...).
    Trap,
    /// The guest used up its CPU budget, or ran past its wall-clock backstop.
    Timeout,
    /// The guest tried to grow its memory past its limit.
    Memory,
    /// The guest's output was over its cap: a verdict too large (refused before it is copied),
    /// a fan-out too wide, or too much written to stdout and stderr.
    OutputTooLarge,
    /// The guest returned an error (or could not be instantiated or configured).
    Error,
    /// The guest returned a verdict the router cannot act on (bad status, header, destination).
    BadVerdict,
    /// The guest called a function the sandbox denies (files, network, outgoing HTTP).
    Denied,
}

impl PluginErrorKind {
    /// Every kind, in metric-label order.
    pub const ALL: [PluginErrorKind; 7] = [
        Self::Trap,
        Self::Timeout,
        Self::Memory,
        Self::OutputTooLarge,
        Self::Error,
        Self::BadVerdict,
        Self::Denied,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Trap => "trap",
            Self::Timeout => "timeout",
            Self::Memory => "memory",
            Self::OutputTooLarge => "output_too_large",
            Self::Error => "error",
            Self::BadVerdict => "bad_verdict",
            Self::Denied => "denied",
        }
    }
}

/// A failed plugin call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} ({message})", kind.label())]
pub struct PluginFailure {
    /// What kind of failure.
    pub kind: PluginErrorKind,
    /// Details, for logs.
    pub message: String,
    /// The plugin could not run at all (no instance could be had, e.g. every pooled slot is
    /// busy): not the event's fault, so the sender is asked to retry whatever the route's
    /// `on_plugin_error` says.
    pub unavailable: bool,
}

impl PluginFailure {
    /// A failure of `kind`.
    pub fn new(kind: PluginErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            unavailable: false,
        }
    }
}
