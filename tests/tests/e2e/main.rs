//! End-to-end tests: a real router on loopback ports, real HTTP clients and real sinks.

mod admin;
mod dead_letters;
mod delivery;
mod faults;
mod forgery;
mod ingress;
mod inspect;
mod isolation;
mod limits;
mod order;
mod plugins;
mod prometheus;
mod rate;
mod shutdown;
mod slow_clients;
mod tls;
mod verify;

use std::time::Duration;

/// Patience for things that should happen within milliseconds on an idle machine.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A `[destinations.NAME]` table pointing at `url` with fast retries and no jitter.
pub fn destination(name: &str, url: &str, max_attempts: u32) -> String {
    format!(
        "[destinations.{name}]\nurl = \"{url}\"\ntimeout = \"2s\"\n\
         retry = {{ max_attempts = {max_attempts}, initial_backoff = \"20ms\", max_backoff = \"5s\", jitter = \"none\" }}\n"
    )
}

/// A `[[routes]]` table.
pub fn route(id: &str, path: &str, destinations: &[&str]) -> String {
    let list: Vec<String> = destinations.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        "[[routes]]\nid = \"{id}\"\npath = \"{path}\"\ndestinations = [{}]\n",
        list.join(", ")
    )
}
