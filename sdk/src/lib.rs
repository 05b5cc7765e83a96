//! Write webhook-router filter plugins in Rust.
//!
//! A plugin is a WebAssembly component (target `wasm32-wasip2`) that the router runs, sandboxed,
//! for every event of a route. The router calls it once with its configuration (the `config`
//! table of the route file, as JSON), then once per event; for each event the plugin answers a
//! [`Verdict`]:
//!
//! - [`verdict::forward`]: go on, possibly changed, to the next plugin or to the route's
//!   destinations;
//! - [`verdict::pass`]: go on with the event exactly as received; cheaper than `forward`, since
//!   nothing is copied back to the router (the answer of a plugin that only decides);
//! - [`verdict::drop`]: accept the event (the sender gets `202`) but deliver it nowhere;
//! - [`verdict::reject`]: answer the sender with a 4xx/5xx status, queue nothing;
//! - [`verdict::fan_out`]: deliver to exactly these destinations, each with its own event.
//!
//! Returning `Err(message)` from [`Plugin::handle`] is a plugin failure: the route's
//! `on_plugin_error` decides what happens to the event.
//!
//! # A complete plugin
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "only-main"
//! version = "0.1.0"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! webhook-router-sdk = { path = "../sdk" }
//! serde = { version = "1", features = ["derive"] }
//!
//! [profile.release]
//! opt-level = "s"
//! lto = true
//! codegen-units = 1
//! strip = true
//! panic = "abort"
//! ```
//!
//! `src/lib.rs`:
//!
//! ```rust
//! use serde::Deserialize;
//! use webhook_router_sdk::{Event, Plugin, Verdict, export_plugin, log, verdict};
//!
//! /// Forwards pushes to one branch, tagged with a header; drops everything else.
//! struct OnlyBranch {
//!     config: Config,
//! }
//!
//! /// The route's `config = { branch = "main" }`.
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config {
//!     #[serde(default = "default_branch")]
//!     branch: String,
//! }
//!
//! fn default_branch() -> String {
//!     "main".to_owned()
//! }
//!
//! /// The part of a GitHub push payload this plugin reads.
//! #[derive(Deserialize)]
//! struct Push {
//!     #[serde(rename = "ref")]
//!     git_ref: String,
//! }
//!
//! impl Plugin for OnlyBranch {
//!     fn configure(config: webhook_router_sdk::serde_json::Value) -> Result<Self, String> {
//!         let config: Config = webhook_router_sdk::from_config(config)?;
//!         log::info!("forwarding pushes to {}", config.branch);
//!         Ok(Self { config })
//!     }
//!
//!     fn handle(&self, mut event: Event) -> Result<Verdict, String> {
//!         if event.header("X-GitHub-Event") != Some("push") {
//!             return Ok(verdict::drop("not a push"));
//!         }
//!         let push: Push = event.json()?;
//!         if push.git_ref != format!("refs/heads/{}", self.config.branch) {
//!             return Ok(verdict::drop(format!("push to {}", push.git_ref)));
//!         }
//!         event.set_header("x-branch", &self.config.branch);
//!         Ok(verdict::forward(event))
//!     }
//! }
//!
//! export_plugin!(OnlyBranch);
//! # fn main() {
//! #     use webhook_router_sdk::serde_json::json;
//! #     let plugin = OnlyBranch::configure(json!({})).unwrap();
//! #     let event = Event::from_body(r#"{"ref":"refs/heads/main"}"#).with_header("X-GitHub-Event", "push");
//! #     let Verdict::Forward(event) = plugin.handle(event).unwrap() else { panic!() };
//! #     assert_eq!(event.header("x-branch"), Some("main"));
//! # }
//! ```
//!
//! Build it with:
//!
//! ```sh
//! rustup target add wasm32-wasip2
//! cargo build --release --target wasm32-wasip2
//! # -> target/wasm32-wasip2/release/only_main.wasm
//! ```
//!
//! and try it on one event with
//! `webhook-router plugin run target/wasm32-wasip2/release/only_main.wasm --config '{"branch":"main"}' --event event.json --header 'X-GitHub-Event: push'`.
//!
//! # Testing
//!
//! Keep the logic in plain functions and methods: they build and run on the host target too
//! (`cargo test`), where [`export_plugin!`] exports nothing and the [`log`] functions write to
//! stderr. [`Event::from_body`] and [`Event::with_header`] build events for tests.
//!
//! # What a plugin can do
//!
//! Nothing but compute: the router grants no files, no network and no environment variables
//! (opening a file fails with an ordinary error, as there is no directory to find it in;
//! opening a socket fails the call as `denied`); the clocks tell the time (and
//! [`Event::received_at_ms`] says when the router received the event); what a plugin prints
//! goes to the router's log. Memory and
//! time per event are limited by the route (`limits = { memory, time, output }`); running out
//! of either, or panicking, traps the instance, which the router treats as a plugin failure.
//! A panic's message is written to the router's log (level error) before the trap.
#![deny(missing_docs)]

/// The generated bindings of the `filter` world (`wit/plugin.wit`). Not a stable API: use the
/// re-exports at the crate root.
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "filter",
        pub_export_macro: true,
        export_macro_name: "__export",
        default_bindings_module: "webhook_router_sdk::bindings",
        additional_derives: [PartialEq, Eq],
    });
}

mod event;
pub mod log;
mod plugin;
pub mod verdict;

pub use bindings::webhook_router::plugin::types::{
    Delivery, Event, Header, Level, Rejection, Verdict,
};
pub use plugin::{Plugin, from_config};
pub use serde;
pub use serde_json;

/// Implementation details of [`export_plugin!`]; not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::plugin::{configure, handle};
}
