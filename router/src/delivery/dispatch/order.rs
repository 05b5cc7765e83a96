//! Ordered delivery per key: at each destination, the deliveries of events with the same order
//! key (a route's `order_by`) go one at a time, in the order dispatch takes their events off
//! the queue, which is the order they were accepted (after a restart, the journal's).
//!
//! A key with a delivery under way (being attempted, waiting to retry, or with its dead letter
//! being stored) has a *line*; the deliveries of the key that arrive meanwhile wait in it, in
//! order, and the first of them goes when the one under way is final. A delivery of a key with
//! no line goes at once, and leaves a line behind it until it is final. Keys are independent:
//! a retrying delivery holds back its own key only. Deliveries without a key never come here.
//!
//! A dead letter ends the delivery under way like any final outcome (`on_dead_letter = "skip"`),
//! or holds its key (`"hold"`): the line stays, held by the event, until the letter is replayed
//! (the event comes back and goes first) or discarded.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use metrics::Gauge;

use crate::config::{OnDeadLetter, RouteConfig};
use crate::metrics::Metrics;
use crate::queue::DestinationId;

/// The ids of the routes whose dead letters hold their keys (`on_dead_letter = "hold"`): read
/// when a delivery is dead-lettered, replaced by a config reload.
#[derive(Debug, Clone, Default)]
pub struct HoldingRoutes(Arc<ArcSwap<HashSet<String>>>);

impl HoldingRoutes {
    /// The holding routes of `routes`.
    pub fn new(routes: &[RouteConfig]) -> Self {
        let holding = Self::default();
        holding.update(routes);
        holding
    }

    /// From now on, the holding routes of `routes` (a reloaded config).
    pub fn update(&self, routes: &[RouteConfig]) {
        let holding = routes
            .iter()
            .filter(|route| {
                route
                    .order
                    .as_ref()
                    .is_some_and(|order| order.on_dead_letter == OnDeadLetter::Hold)
            })
            .map(|route| route.id.clone())
            .collect();
        self.0.store(Arc::new(holding));
    }

    /// Whether a dead letter of `route` holds its key.
    pub fn holds(&self, route: &str) -> bool {
        self.0.load().contains(route)
    }
}

/// The deliveries of one key at one destination waiting behind the one under way.
#[derive(Debug)]
struct Line<T> {
    waiting: VecDeque<T>,
    /// The event whose dead letter holds the key (`on_dead_letter = "hold"`), if one does.
    held_by: Option<String>,
}

/// Every ordered key's line, by destination and key.
#[derive(Debug)]
pub struct KeyLines<T> {
    lines: Mutex<HashMap<(DestinationId, String), Line<T>>>,
    /// By destination: `webhook_ordered_keys_waiting`.
    gauges: Vec<GaugeHandle>,
    /// Deliveries waiting in lines.
    waiting: AtomicUsize,
}

/// `webhook_ordered_keys_waiting{destination}`.
struct GaugeHandle(Gauge);

impl std::fmt::Debug for GaugeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gauge")
    }
}

impl<T> KeyLines<T> {
    /// No lines, for the destinations `names` (by id), whose gauges show 0.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>, metrics: &Metrics) -> Self {
        Self {
            lines: Mutex::new(HashMap::new()),
            gauges: names
                .into_iter()
                .map(|name| {
                    let gauge = metrics.ordered_keys_waiting(name);
                    gauge.set(0.0);
                    GaugeHandle(gauge)
                })
                .collect(),
            waiting: AtomicUsize::new(0),
        }
    }

    /// `delivery` of the event `event_id`, with `key`, arrives for `destination`. Returns it
    /// when it may go now: its key has no delivery under way, or is held by this event's dead
    /// letter (replayed: it goes first). Otherwise it waits in the key's line.
    pub fn admit(
        &self,
        destination: DestinationId,
        key: &str,
        event_id: &str,
        delivery: T,
    ) -> Option<T> {
        let mut lines = self.lock();
        match lines.get_mut(&(destination, key.to_owned())) {
            None => {
                lines.insert(
                    (destination, key.to_owned()),
                    Line {
                        waiting: VecDeque::new(),
                        held_by: None,
                    },
                );
                Some(delivery)
            }
            Some(line) if line.held_by.as_deref() == Some(event_id) => {
                line.held_by = None;
                Some(delivery)
            }
            Some(line) => {
                if line.waiting.is_empty() {
                    self.gauge(destination, 1.0);
                }
                line.waiting.push_back(delivery);
                self.waiting.fetch_add(1, Ordering::AcqRel);
                None
            }
        }
    }

    /// The delivery under way for `key` at `destination` is final: returns the next one, whose
    /// turn it is now (its line stays), if any.
    pub fn finish(&self, destination: DestinationId, key: &str) -> Option<T> {
        let mut lines = self.lock();
        self.next(&mut lines, destination, key)
    }

    /// The delivery under way for `key` at `destination`, of the event `event_id`, was
    /// dead-lettered with `on_dead_letter = "hold"`: the key waits for the letter.
    pub fn hold(&self, destination: DestinationId, key: &str, event_id: &str) {
        let mut lines = self.lock();
        lines
            .entry((destination, key.to_owned()))
            .or_insert_with(|| Line {
                waiting: VecDeque::new(),
                held_by: None,
            })
            .held_by = Some(event_id.to_owned());
    }

    /// The dead letter of `event_id` at `destination` was discarded (or evicted): if it holds
    /// `key`, returns the next delivery of the key, whose turn it is now.
    pub fn discarded(&self, destination: DestinationId, key: &str, event_id: &str) -> Option<T> {
        let mut lines = self.lock();
        let line = lines.get_mut(&(destination, key.to_owned()))?;
        if line.held_by.as_deref() != Some(event_id) {
            return None;
        }
        line.held_by = None;
        self.next(&mut lines, destination, key)
    }

    /// Deliveries waiting in lines (they move only when the one ahead of them does).
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Takes every waiting delivery (at shutdown, once dispatch has stopped).
    pub fn drain(&self) -> Vec<T> {
        let mut lines = self.lock();
        let mut all = Vec::new();
        for ((destination, _), line) in lines.drain() {
            if !line.waiting.is_empty() {
                self.gauge(destination, -1.0);
            }
            all.extend(line.waiting);
        }
        self.waiting.fetch_sub(all.len(), Ordering::AcqRel);
        all
    }

    /// Pops the next delivery of `key`'s line, or removes the line when none waits.
    fn next(
        &self,
        lines: &mut HashMap<(DestinationId, String), Line<T>>,
        destination: DestinationId,
        key: &str,
    ) -> Option<T> {
        let index = (destination, key.to_owned());
        let line = lines.get_mut(&index)?;
        let Some(next) = line.waiting.pop_front() else {
            lines.remove(&index);
            return None;
        };
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        if line.waiting.is_empty() {
            self.gauge(destination, -1.0);
        }
        Some(next)
    }

    fn gauge(&self, destination: DestinationId, change: f64) {
        if let Some(gauge) = self.gauges.get(destination) {
            gauge.0.increment(change);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(DestinationId, String), Line<T>>> {
        self.lines.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting_gauge(metrics: &Metrics, destination: &str) -> f64 {
        metrics.value(&format!(
            "webhook_ordered_keys_waiting{{destination=\"{destination}\"}}"
        ))
    }

    #[test]
    fn a_key_goes_one_at_a_time_in_order_and_keys_are_independent() {
        let metrics = Metrics::new();
        let lines = KeyLines::new(["a", "b"], &metrics);
        assert_eq!(lines.admit(0, "k1", "e1", 1), Some(1));
        assert_eq!(lines.admit(0, "k1", "e2", 2), None);
        assert_eq!(lines.admit(0, "k1", "e3", 3), None);
        assert_eq!(lines.admit(0, "k2", "e4", 4), Some(4), "another key");
        assert_eq!(
            lines.admit(1, "k1", "e1", 5),
            Some(5),
            "another destination"
        );
        assert_eq!(lines.waiting(), 2);
        assert_eq!(waiting_gauge(&metrics, "a"), 1.0);
        assert_eq!(waiting_gauge(&metrics, "b"), 0.0);

        assert_eq!(lines.finish(0, "k1"), Some(2));
        assert_eq!(lines.admit(0, "k1", "e6", 6), None, "behind 3");
        assert_eq!(lines.finish(0, "k1"), Some(3));
        assert_eq!(lines.finish(0, "k1"), Some(6));
        assert_eq!(waiting_gauge(&metrics, "a"), 0.0);
        assert_eq!(lines.finish(0, "k1"), None);
        assert_eq!(lines.admit(0, "k1", "e7", 7), Some(7), "the line was gone");
        assert_eq!(lines.waiting(), 0);
    }

    #[test]
    fn a_held_key_waits_for_its_letter_to_be_replayed_or_discarded() {
        let metrics = Metrics::new();
        let lines = KeyLines::new(["a"], &metrics);
        assert_eq!(lines.admit(0, "k", "e1", 1), Some(1));
        assert_eq!(lines.admit(0, "k", "e2", 2), None);
        lines.hold(0, "k", "e1");
        assert_eq!(lines.admit(0, "k", "e3", 3), None);
        assert_eq!(
            lines.discarded(0, "k", "e9"),
            None,
            "another event's letter"
        );
        // Replayed: e1 comes back and goes first, the others after it.
        assert_eq!(lines.admit(0, "k", "e1", 10), Some(10));
        assert_eq!(lines.finish(0, "k"), Some(2));
        lines.hold(0, "k", "e2");
        assert_eq!(lines.discarded(0, "k", "e2"), Some(3));
        assert_eq!(lines.finish(0, "k"), None);
        assert_eq!(waiting_gauge(&metrics, "a"), 0.0);

        // Held at start (the letter was stored before a restart), then the key's events come.
        lines.hold(0, "j", "e5");
        assert_eq!(lines.admit(0, "j", "e6", 6), None);
        assert_eq!(waiting_gauge(&metrics, "a"), 1.0);
        assert_eq!(lines.drain(), vec![6]);
        assert_eq!((lines.waiting(), waiting_gauge(&metrics, "a")), (0, 0.0));
    }
}
