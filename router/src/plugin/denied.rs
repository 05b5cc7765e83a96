//! What the sandbox denies, and how: the WASI functions through which a guest would reach files,
//! the network or outgoing HTTP. Each is linked, so the default output of any toolchain
//! instantiates.
//!
//! Denied, failing the call: each of these is shadowed in the linker by a function that fails
//! the *call* with [`Denied`], naming the interface: the plugin's failure, counted as
//! `kind="denied"`, whatever the guest would have done with an error code.
//! - `wasi:sockets`: creating a TCP or UDP socket, and name lookup;
//! - `wasi:http/outgoing-handler.handle`: every outgoing request.
//!
//! Denied by being empty, which language runtimes use (at start, or while reporting an uncaught
//! exception) and must not fail on:
//! - `wasi:filesystem/preopens.get-directories` answers no directories, so every open fails
//!   inside the guest as an ordinary error (a traceback goes on without its source lines); every
//!   other filesystem function needs a descriptor, which only that function hands out;
//! - `wasi:cli/environment` (no variables, no arguments), `wasi:cli/stdin` (at its end), the
//!   `wasi:cli/terminal-*` interfaces (no terminal).

use wasmtime::component::Linker;

/// The WASI 0.2 version wasmtime-wasi and wasmtime-wasi-http link (`package wasi:…@0.2.12`):
/// a shadow must use the exact name it replaces. A guest importing any 0.2.x resolves to it.
const WASI_VERSION: &str = "0.2.12";

/// Each denied function: its interface (without version), its name, and what the plugin was
/// trying to reach.
pub const DENIED: [(&str, &str, &str); 4] = [
    (
        "wasi:sockets/tcp-create-socket",
        "create-tcp-socket",
        "plugins get no network",
    ),
    (
        "wasi:sockets/udp-create-socket",
        "create-udp-socket",
        "plugins get no network",
    ),
    (
        "wasi:sockets/ip-name-lookup",
        "resolve-addresses",
        "plugins get no network",
    ),
    (
        "wasi:http/outgoing-handler",
        "handle",
        "plugins make no outgoing HTTP requests",
    ),
];

/// A plugin called a function the sandbox denies: the call fails, naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the plugin called `{interface}.{function}`, which is denied: {why}")]
pub struct Denied {
    /// The interface, e.g. `wasi:sockets/tcp-create-socket`.
    pub interface: &'static str,
    /// The function, e.g. `create-tcp-socket`.
    pub function: &'static str,
    /// What the plugin was trying to reach.
    pub why: &'static str,
}

/// Replaces each [`DENIED`] function in `linker` (which already links the whole of WASI 0.2 and
/// `wasi:http`) with one that fails the call with [`Denied`].
pub fn shadow<T: 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    for (interface, function, why) in DENIED {
        let denied = Denied {
            interface,
            function,
            why,
        };
        linker
            .instance(&format!("{interface}@{WASI_VERSION}"))?
            .func_new(function, move |_, _, _, _| {
                Err(wasmtime::Error::new(denied.clone()))
            })?;
    }
    linker.allow_shadowing(false);
    Ok(())
}
