//! Test support for webhook-router's end-to-end tests and load benchmarks: scriptable
//! loopback sinks and a router started on ephemeral ports.

pub mod bare;
pub mod sink;
pub mod test_router;

pub use sink::{Received, Reply, Sink};
pub use test_router::TestRouter;
