//! The open connections of one listener, each with its activity (requests in flight, idle
//! since when): admits a new connection while fewer than `max_connections` are open and, at the
//! limit, makes room by closing the longest-idle one, so that idle sockets can never lock out a
//! working client. Only when every connection has a request in flight is the new one refused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use metrics::Gauge;
use tokio_util::sync::CancellationToken;

use crate::metrics::ListenerMetrics;

/// What one connection is doing, shared by its task, its requests and the table.
#[derive(Debug)]
pub(super) struct Activity {
    /// The table's epoch, which `idle_since_ms` counts from.
    epoch: Instant,
    /// When the connection was accepted.
    accepted: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `epoch` to when the connection last had no request in flight.
    idle_since_ms: AtomicU64,
    /// Whether a request has arrived on it yet.
    served: AtomicBool,
    /// Cancelled when the table closes the connection to make room.
    evicted: CancellationToken,
}

impl Activity {
    fn new(epoch: Instant) -> Self {
        let accepted = Instant::now();
        Self {
            epoch,
            accepted,
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(millis(epoch, accepted)),
            served: AtomicBool::new(false),
            evicted: CancellationToken::new(),
        }
    }

    /// Marks a request as begun (counted in the listener's `in_flight` gauge too); it ends
    /// when the guard is dropped.
    pub(super) fn begin(self: &Arc<Self>, in_flight: &Gauge) -> RequestGuard {
        self.served.store(true, Ordering::Release);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        in_flight.increment(1.0);
        RequestGuard {
            activity: Arc::clone(self),
            gauge: in_flight.clone(),
        }
    }

    /// Requests in flight on the connection.
    pub(super) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Whether a request has arrived on the connection yet.
    pub(super) fn served(&self) -> bool {
        self.served.load(Ordering::Acquire)
    }

    /// When the connection was accepted.
    pub(super) fn accepted(&self) -> Instant {
        self.accepted
    }

    /// When the connection last had no request in flight (its accept, or the end of its last
    /// request).
    pub(super) fn idle_since(&self) -> Instant {
        self.epoch + Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire))
    }

    /// Resolves when the table closes the connection to make room.
    pub(super) async fn evicted(&self) {
        self.evicted.cancelled().await;
    }
}

/// Milliseconds from `epoch` to `at`.
fn millis(epoch: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX)
}

/// A request in flight on a connection; dropping it ends the request.
#[derive(Debug)]
pub(super) struct RequestGuard {
    activity: Arc<Activity>,
    gauge: Gauge,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let activity = &self.activity;
        activity
            .idle_since_ms
            .store(millis(activity.epoch, Instant::now()), Ordering::Release);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.gauge.decrement(1.0);
    }
}

/// The open connections of one listener.
#[derive(Debug)]
pub(super) struct Connections {
    max: usize,
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Activity>>>,
    metrics: ListenerMetrics,
}

impl Connections {
    /// A table admitting at most `max` connections at once.
    pub(super) fn new(max: usize, metrics: ListenerMetrics) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    /// Admits a new connection, closing the longest-idle open one if `max` are open; `None`
    /// (counted in `webhook_rejected_connections_total`) when every open one is busy. A request
    /// whose head completes on the chosen connection in the instant it is chosen is cut off
    /// with it: the client sees the connection close, as it would a server restart.
    pub(super) fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.len() >= self.max {
            let victim = open
                .iter()
                .filter(|(_, activity)| activity.in_flight() == 0)
                .min_by_key(|(_, activity)| activity.idle_since_ms.load(Ordering::Acquire))
                .map(|(id, _)| *id);
            let Some(victim) = victim.and_then(|id| open.remove(&id)) else {
                self.metrics.rejected_connections.increment(1);
                return None;
            };
            victim.evicted.cancel();
            self.metrics.evicted.increment(1);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::new(self.epoch));
        open.insert(id, Arc::clone(&activity));
        self.metrics.connections.set(open.len() as f64);
        Some(Slot {
            id,
            table: Arc::clone(self),
            activity,
        })
    }

    /// Connections open.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// An admitted connection's place in the table, given back when dropped.
#[derive(Debug)]
pub(super) struct Slot {
    id: u64,
    table: Arc<Connections>,
    /// The connection's activity.
    pub(super) activity: Arc<Activity>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .table
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // An evicted connection has left the table already.
        if open.remove(&self.id).is_some() {
            self.table.metrics.connections.set(open.len() as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn at_the_limit_the_longest_idle_makes_room_and_busy_ones_are_kept() {
        let metrics = Metrics::new();
        let listener = metrics.listener("ingress");
        let table = Connections::new(2, listener.clone());
        let first = table.admit().expect("room");
        std::thread::sleep(Duration::from_millis(5));
        let second = table.admit().expect("room");
        // Both idle: the first, idle longer, is closed for the third.
        let third = table.admit().expect("the longest idle makes room");
        assert!(first.activity.evicted.is_cancelled());
        assert!(!second.activity.evicted.is_cancelled());
        assert_eq!(table.len(), 2);
        drop(first);
        assert_eq!(table.len(), 2, "an evicted slot left the table already");

        // Both busy: the next one is refused, and nothing is closed.
        let _busy_second = second.activity.begin(&listener.requests_in_flight);
        let _busy_third = third.activity.begin(&listener.requests_in_flight);
        assert!(table.admit().is_none());
        assert!(!second.activity.evicted.is_cancelled());
        assert!(!third.activity.evicted.is_cancelled());
        let text = metrics.render();
        assert!(
            text.contains("webhook_rejected_connections_total{listener=\"ingress\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "webhook_connections_closed_total{listener=\"ingress\",reason=\"evicted\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("webhook_connections{listener=\"ingress\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("webhook_requests_in_flight{listener=\"ingress\"} 2"),
            "{text}"
        );
        drop(second);
        drop(third);
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn a_request_marks_the_connection_served_and_idle_again_when_it_ends() {
        let listener = Metrics::new().listener("admin");
        let table = Connections::new(1, listener.clone());
        let slot = table.admit().expect("room");
        assert!(!slot.activity.served());
        let accepted = slot.activity.idle_since();
        let guard = slot.activity.begin(&listener.requests_in_flight);
        assert!(slot.activity.served());
        assert_eq!(slot.activity.in_flight(), 1);
        std::thread::sleep(Duration::from_millis(5));
        drop(guard);
        assert_eq!(slot.activity.in_flight(), 0);
        assert!(slot.activity.idle_since() > accepted);
    }
}
