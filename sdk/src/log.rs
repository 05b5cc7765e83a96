//! Writing to the router's log.
//!
//! Lines are tagged with the plugin and route by the router, which may cut very long
//! messages. Use the functions with a ready message, or the macros with `format!` arguments:
//!
//! ```
//! use webhook_router_sdk::log;
//!
//! log::info("configured");
//! log::warn!("unknown action {:?}, forwarding anyway", "archived");
//! ```
//!
//! On targets other than `wasm32` (tests), lines go to stderr instead.
//!
//! `println!` and `eprintln!` work too: the router captures a plugin's stdout and stderr per
//! call and logs them (at most 64 lines and 16 KiB per call; more than the output cap fails the
//! call). This module is the better way: lines carry a level. Sleeping spends the event's time
//! and, past its wall-clock backstop, ends the call.

use crate::Level;

/// Writes `message` at `level`.
pub fn write(level: Level, message: impl AsRef<str>) {
    let message = message.as_ref();
    #[cfg(target_arch = "wasm32")]
    crate::bindings::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{}] {message}", level_name(level));
}

/// The level's name, lower-case.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

/// Writes `message` at level trace.
pub fn trace(message: impl AsRef<str>) {
    write(Level::Trace, message);
}

/// Writes `message` at level debug.
pub fn debug(message: impl AsRef<str>) {
    write(Level::Debug, message);
}

/// Writes `message` at level info.
pub fn info(message: impl AsRef<str>) {
    write(Level::Info, message);
}

/// Writes `message` at level warn.
pub fn warn(message: impl AsRef<str>) {
    write(Level::Warn, message);
}

/// Writes `message` at level error.
pub fn error(message: impl AsRef<str>) {
    write(Level::Error, message);
}

#[doc(hidden)]
#[macro_export]
macro_rules! __log_trace {
    ($($arg:tt)+) => { $crate::log::trace(::std::format!($($arg)+)) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __log_debug {
    ($($arg:tt)+) => { $crate::log::debug(::std::format!($($arg)+)) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __log_info {
    ($($arg:tt)+) => { $crate::log::info(::std::format!($($arg)+)) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __log_warn {
    ($($arg:tt)+) => { $crate::log::warn(::std::format!($($arg)+)) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __log_error {
    ($($arg:tt)+) => { $crate::log::error(::std::format!($($arg)+)) };
}

/// `log::trace!("{} …", args)`: formats, then writes at level trace.
#[doc(inline)]
pub use crate::__log_trace as trace;

/// `log::debug!("{} …", args)`: formats, then writes at level debug.
#[doc(inline)]
pub use crate::__log_debug as debug;

/// `log::info!("{} …", args)`: formats, then writes at level info.
#[doc(inline)]
pub use crate::__log_info as info;

/// `log::warn!("{} …", args)`: formats, then writes at level warn.
#[doc(inline)]
pub use crate::__log_warn as warn;

/// `log::error!("{} …", args)`: formats, then writes at level error.
#[doc(inline)]
pub use crate::__log_error as error;
