//! webhook-router: receives webhooks, verifies and filters them, queues them and delivers
//! them reliably to internal services.
//!
//! A webhook's way through the crate, one module per step:
//!
//! 1. [`server`] accepts connections (HTTP/1.1 and h2c, or both over [`tls`]) for the ingress
//!    and admin listeners, within their limits (connections, idle time, requests in flight);
//! 2. [`ingress`] matches the route ([`allow_list`], [`rate_limit`]), reads the body within
//!    limits ([`ingress::body`]), checks the sender's signature ([`verify`]), answers repeats ([`dedup`])
//!    and runs the route's [`plugin`] chain;
//! 3. [`queue`] holds accepted [`event`]s until every destination has a final outcome: in
//!    memory, in the [`journal`] (on disk before the 202, so a crash or a restart loses none),
//!    or in a NATS JetStream stream shared by several routers ([`nats`]);
//! 4. [`delivery`] takes them off the queue ([`delivery::dispatch`]), makes each attempt unless
//!    the destination's circuit is open, retries, and keeps what fails for good as dead
//!    letters;
//! 5. [`admin`] serves `/metrics` ([`metrics`]), health probes, `/destinations`, `/routes`, the
//!    dead-letter API and the record of recent events ([`inspect`]).
//!
//! [`config`] reads the route file, [`reload`] switches a running router to a changed one, and
//! [`runtime`] wires the parts together; [`telemetry`] exports one trace per event;
//! [`supervise`] restarts a long-lived task that panics, [`clock`] keeps time arithmetic from
//! overflowing, and [`id_hash`] hashes the ids the router makes.

pub mod admin;
pub mod allow_list;
pub mod clock;
pub mod config;
pub mod dedup;
pub mod delivery;
pub mod event;
pub mod id_hash;
pub mod ingress;
pub mod inspect;
pub mod journal;
pub mod metrics;
pub mod nats;
pub mod plugin;
pub mod queue;
pub mod rate_limit;
pub mod reload;
pub mod reply;
pub mod runtime;
pub mod server;
pub mod supervise;
pub mod telemetry;
pub mod tls;
pub mod verify;

pub use config::Config;
pub use runtime::{Router, ShutdownReport, StartError};
