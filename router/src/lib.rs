//! webhook-router: receives webhooks, verifies and filters them, queues them and delivers
//! them reliably to internal services.
//!
//! A webhook's way through the crate, one module per step:
//!
//! 1. [`server`] accepts connections (HTTP/1.1 and h2c) for the ingress and admin listeners;
//! 2. [`ingress`] matches the route and reads the body within limits ([`body`]), checks the
//!    sender's signature ([`verify`]) and runs the route's [`plugin`] chain;
//! 3. [`queue`] holds accepted [`event`]s, bounded, until [`dispatch`] hands each to its
//!    destinations' lanes and every destination has a final outcome; with a [`journal`] the queue
//!    writes them to disk before the 202, so a crash or a restart loses none;
//! 4. [`deliver`] makes each attempt, unless the destination's [`circuit`] is open; [`retry`]
//!    times the next one; deliveries that fail for
//!    good go to the [`dead_letter`] store (journaled too, as is the [`dedup`] window);
//! 5. [`admin`] serves `/metrics` ([`metrics`]), health probes and the dead-letter API.
//!
//! [`config`] reads the route file and [`runtime`] wires the parts together; [`supervise`]
//! restarts a long-lived task that panics, and [`clock`] keeps time arithmetic from
//! overflowing.

pub mod admin;
pub mod allow_list;
pub mod body;
pub mod circuit;
pub mod clock;
pub mod config;
pub mod dead_letter;
pub mod dedup;
pub mod deliver;
pub mod destinations;
pub mod dispatch;
pub mod event;
pub mod ingress;
pub mod journal;
pub mod metrics;
pub mod nats;
pub mod plugin;
pub mod queue;
pub mod rate_limit;
pub mod reply;
pub mod retry;
pub mod runtime;
pub mod server;
pub mod supervise;
pub mod verify;

pub use config::Config;
pub use runtime::{Router, ShutdownReport, StartError};
