//! `GET /stats`: the console's Overview numbers, read from the router's own counters (the
//! ones `/metrics` shows, not by parsing it): ingress answers, events accepted, delivery
//! attempts by outcome, and each destination's held events and oldest held event's age.
//!
//! The totals count since the router started; a client polling them works out the rates
//! (the console shows per-minute rates between two polls).

use std::time::SystemTime;

use serde::Serialize;

use super::{Admin, label};
use crate::event::unix_millis;
use crate::metrics::catalogue;

/// The answer of `GET /stats`.
#[derive(Debug, Serialize)]
pub(super) struct Stats {
    /// When these were read (Unix ms).
    at_ms: u64,
    /// When the router started (Unix ms).
    started_at_ms: u64,
    /// Ingress answers, any status.
    requests: u64,
    /// Events accepted (answered 202).
    accepted: u64,
    /// Attempts that delivered.
    delivered: u64,
    /// Attempts that failed (`retry` and `dead_letter` outcomes).
    failed: u64,
    /// Attempts that failed for the last time (the event was dead-lettered there).
    dead_lettered: u64,
    /// Dead letters held now.
    dead_letters_held: usize,
    /// Per destination, in config order.
    destinations: Vec<DestinationStats>,
}

/// One destination's backlog.
#[derive(Debug, Serialize)]
struct DestinationStats {
    name: String,
    held: usize,
    /// Age of the oldest held event, ms (0: none held).
    oldest_event_age_ms: u64,
}

impl Admin {
    /// The numbers of `GET /stats`, now.
    pub(super) fn stats(&self) -> Stats {
        let mut stats = Stats {
            at_ms: unix_millis(SystemTime::now()),
            started_at_ms: unix_millis(self.started),
            requests: 0,
            accepted: 0,
            delivered: 0,
            failed: 0,
            dead_lettered: 0,
            dead_letters_held: self.dead_letters.len(),
            destinations: self
                .destinations
                .summary()
                .into_iter()
                .map(|d| DestinationStats {
                    name: d.name,
                    held: d.held,
                    oldest_event_age_ms: d.oldest_event_age_ms,
                })
                .collect(),
        };
        for (labels, value) in self.metrics.counters(catalogue::REQUESTS.name) {
            stats.requests += value;
            if label(&labels, "status") == "202" {
                stats.accepted += value;
            }
        }
        for (labels, value) in self.metrics.counters(catalogue::DELIVERIES.name) {
            match label(&labels, "outcome") {
                "delivered" => stats.delivered += value,
                "dead_letter" => {
                    stats.failed += value;
                    stats.dead_lettered += value;
                }
                _ => stats.failed += value,
            }
        }
        stats
    }
}
