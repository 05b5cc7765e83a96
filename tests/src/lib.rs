//! Test support for webhook-router's end-to-end tests and load benchmarks: scriptable
//! loopback sinks (plain or TLS), test certificates, a router started on ephemeral ports, the
//! plugins built from source, and the load generators the benchmarks drive.

pub mod bare;
pub mod certs;
pub mod client_floor;
pub mod github;
pub mod keyed;
pub mod launcher;
pub mod load;
pub mod nats;
pub mod nginx;
pub mod numbered;
pub mod otlp;
pub mod process;
pub mod process_stats;
pub mod prometheus;
pub mod promql;
pub mod signing;
pub mod sink;
pub mod slow_client;
pub mod test_router;
pub mod wait;
pub mod wasm;
pub mod wrk;

pub use launcher::SocketHolder;
pub use process::RouterProcess;
pub use sink::{Received, Reply, Sink};
pub use test_router::TestRouter;
