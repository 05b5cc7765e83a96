//! Test support for webhook-router's end-to-end tests and load benchmarks: scriptable
//! loopback sinks, a router started on ephemeral ports, and the plugins built from source.

pub mod bare;
pub mod signing;
pub mod sink;
pub mod test_router;
pub mod wasm;

pub use sink::{Received, Reply, Sink};
pub use test_router::TestRouter;
