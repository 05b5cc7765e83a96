//! What each destination is doing now: its circuit, the events it holds, the attempts in flight,
//! its last error and its last success, and the age of its oldest held event. Dispatch writes it;
//! the admin API reads it (`GET /destinations`). A config reload adds destinations to it, and
//! takes off the list those removed once they hold nothing (their entries stay, so that ids stay
//! valid).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::delivery::attempt::Destination;
use crate::delivery::circuit::Circuit;
use crate::event::unix_millis;
use crate::metrics::Metrics;
use crate::queue::{DestinationId, Holds};

/// Every destination's live state, by id.
#[derive(Debug)]
pub struct DestinationBoard {
    entries: ArcSwap<Vec<Arc<Entry>>>,
    holds: Arc<Holds>,
    metrics: Metrics,
}

#[derive(Debug)]
struct Entry {
    name: String,
    /// Its `max_in_flight`, which a config reload may change.
    max_in_flight: AtomicUsize,
    circuit: Arc<Circuit>,
    in_flight: AtomicUsize,
    /// Removed from the config and holding nothing: not listed.
    gone: AtomicBool,
    last: Mutex<Last>,
}

#[derive(Debug, Default)]
struct Last {
    error: Option<(String, SystemTime)>,
    success: Option<SystemTime>,
}

/// One destination in `GET /destinations`.
#[derive(Debug, Serialize)]
pub struct DestinationSummary {
    /// Its name.
    pub name: String,
    /// `closed`, `half-open` or `open`.
    pub circuit: &'static str,
    /// Undelivered events it holds.
    pub held: usize,
    /// Its `max_held`.
    pub max_held: usize,
    /// The age of the oldest event it holds, in ms (0: none held).
    pub oldest_event_age_ms: u64,
    /// Attempts in flight now.
    pub in_flight: usize,
    /// Its `max_in_flight`.
    pub max_in_flight: usize,
    /// Why the last failed attempt failed, if one did.
    pub last_error: Option<String>,
    /// When it failed (Unix ms).
    pub last_error_at_ms: Option<u64>,
    /// When an attempt last succeeded (Unix ms).
    pub last_success_at_ms: Option<u64>,
}

/// Counts an attempt in flight until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Entry>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Entry {
    fn new(destination: &Destination, metrics: &Metrics) -> Entry {
        Entry {
            name: destination.name.clone(),
            max_in_flight: AtomicUsize::new(destination.max_in_flight),
            circuit: Arc::new(Circuit::new(
                destination.circuit,
                metrics.destination_circuit(&destination.name),
            )),
            in_flight: AtomicUsize::new(0),
            gone: AtomicBool::new(false),
            last: Mutex::new(Last::default()),
        }
    }
}

impl DestinationBoard {
    /// The board of `destinations` (by id), with their caps in `holds`.
    pub fn new(destinations: &[Destination], holds: Arc<Holds>, metrics: &Metrics) -> Self {
        Self {
            entries: ArcSwap::from_pointee(
                destinations
                    .iter()
                    .map(|d| Arc::new(Entry::new(d, metrics)))
                    .collect(),
            ),
            holds,
            metrics: metrics.clone(),
        }
    }

    /// Adds `destination` with cap `max_held` (a config reload), under the next id, which it
    /// returns: the same in [`Holds`].
    pub fn add(&self, destination: &Destination, max_held: usize) -> DestinationId {
        let id = self.holds.add(destination.name.clone(), max_held);
        let entry = Arc::new(Entry::new(destination, &self.metrics));
        self.entries.rcu(|entries| {
            let mut entries = Vec::clone(entries);
            entries.push(Arc::clone(&entry));
            entries
        });
        id
    }

    /// Events destination `id` holds.
    pub fn held(&self, id: DestinationId) -> usize {
        self.holds.held(id)
    }

    /// The cap of destination `id`.
    pub fn limit(&self, id: DestinationId) -> usize {
        self.holds.limit(id)
    }

    /// Sets the cap of destination `id`.
    pub fn set_limit(&self, id: DestinationId, max_held: usize) {
        self.holds.set_limit(id, max_held);
    }

    /// Lists destination `id` again (`false`: removed from the config and holding nothing, it
    /// is no longer listed).
    pub fn set_listed(&self, id: DestinationId, listed: bool) {
        self.entry(id).gone.store(!listed, Ordering::Release);
    }

    fn entry(&self, id: DestinationId) -> Arc<Entry> {
        Arc::clone(&self.entries.load()[id])
    }

    /// The circuit breaker of destination `id`.
    pub fn circuit(&self, id: DestinationId) -> Arc<Circuit> {
        Arc::clone(&self.entry(id).circuit)
    }

    /// Applies the new settings of destination `id` (a config reload): its circuit's, its cap
    /// (`max_held`), and the `max_in_flight` shown.
    pub fn reconfigure(&self, id: DestinationId, destination: &Destination, max_held: usize) {
        self.holds.set_limit(id, max_held);
        let entry = self.entry(id);
        entry.circuit.reconfigure(destination.circuit);
        entry
            .max_in_flight
            .store(destination.max_in_flight, Ordering::Release);
    }

    /// Counts an attempt to `id` as in flight until the guard is dropped.
    pub fn attempt(&self, id: DestinationId) -> InFlight {
        let entry = self.entry(id);
        entry.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(entry)
    }

    /// Records the end of an attempt to `id`: `error` if it failed.
    pub fn record(&self, id: DestinationId, error: Option<&str>) {
        let entry = self.entry(id);
        let mut last = entry
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = SystemTime::now();
        match error {
            Some(error) => last.error = Some((error.to_owned(), now)),
            None => last.success = Some(now),
        }
    }

    /// Every listed destination's state, in id order.
    pub fn summary(&self) -> Vec<DestinationSummary> {
        let now_ms = unix_millis(SystemTime::now());
        self.entries
            .load()
            .iter()
            .enumerate()
            .filter(|(_, entry)| !entry.gone.load(Ordering::Acquire))
            .map(|(id, entry)| {
                let last = entry
                    .last
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                DestinationSummary {
                    name: entry.name.clone(),
                    circuit: entry.circuit.state_name(),
                    held: self.holds.held(id),
                    max_held: self.holds.limit(id),
                    oldest_event_age_ms: self.holds.oldest_age_ms(id, now_ms),
                    in_flight: entry.in_flight.load(Ordering::Acquire),
                    max_in_flight: entry.max_in_flight.load(Ordering::Acquire),
                    last_error: last.error.as_ref().map(|(e, _)| e.clone()),
                    last_error_at_ms: last.error.as_ref().map(|(_, at)| unix_millis(*at)),
                    last_success_at_ms: last.success.map(unix_millis),
                }
            })
            .collect()
    }
}
