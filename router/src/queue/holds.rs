//! Per-destination holding caps: how many undelivered events each destination holds (queued,
//! in flight or waiting to retry) against its `max_held`, so that a destination that stops
//! answering fills its own share of the queue and no more: only the routes that deliver to it
//! get 503, the others keep accepting.
//!
//! The backlog metrics come from here too: each destination keeps the receipt times of the
//! events holding a place at it, for `webhook_oldest_event_age_seconds` (computed at each
//! render), and an event whose last place is given back because its deliveries are final counts
//! its receipt-to-final time in `webhook_event_latency_seconds{route}`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use metrics::{Gauge, Histogram};

use super::DestinationId;
use crate::config::Config;
use crate::event::{Event, unix_millis};
use crate::metrics::Metrics;

/// Each destination's cap (`max_held`) by name, in id order (the config's): its own, or its
/// default share of `queue_capacity`, half of it, so that one that stops answering leaves the
/// other half to the rest (the whole of it when it is the only one).
pub fn held_caps(config: &Config) -> Vec<(String, usize)> {
    let capacity = config.server.queue_capacity.get();
    let default_share = if config.destinations.len() > 1 {
        (capacity / 2).max(1)
    } else {
        capacity
    };
    config
        .destinations
        .iter()
        .map(|(name, destination)| {
            let limit = destination
                .max_held
                .map_or(default_share, std::num::NonZeroUsize::get);
            (name.clone(), limit)
        })
        .collect()
}

/// Each destination's count of held events and its cap.
#[derive(Debug)]
pub struct Holds {
    /// By destination id; a config reload adds to it (never removes: ids stay valid).
    destinations: Arc<ArcSwap<Vec<Arc<Hold>>>>,
    /// `webhook_event_latency_seconds{route}`, registered on a route's first event.
    latency: RwLock<HashMap<String, HistogramHandle>>,
    metrics: Option<Metrics>,
}

/// One destination's held events by receipt time, and the gauge of the oldest one's age.
#[derive(Debug)]
struct Backlog {
    /// Receipt time (Unix ms) → places held by events received then.
    since: Mutex<BTreeMap<u64, usize>>,
    oldest_age: GaugeHandle,
}

impl Backlog {
    fn add(&self, received_ms: u64) {
        *self
            .since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(received_ms)
            .or_insert(0) += 1;
    }

    fn remove(&self, received_ms: u64) {
        let mut since = self.since.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = since.get_mut(&received_ms) {
            *count -= 1;
            if *count == 0 {
                since.remove(&received_ms);
            }
        }
    }

    /// The age of the oldest held event at `now_ms` (0: none held).
    fn oldest_age_ms(&self, now_ms: u64) -> u64 {
        let oldest = self
            .since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .next()
            .copied();
        oldest.map_or(0, |received| now_ms.saturating_sub(received))
    }

    /// Sets the gauge to the age of the oldest held event at `now_ms` (0: none held).
    fn collect(&self, now_ms: u64) {
        self.oldest_age
            .0
            .set(self.oldest_age_ms(now_ms) as f64 / 1000.0);
    }
}

#[derive(Debug)]
struct Hold {
    name: String,
    /// The receipt times of the events holding a place there.
    backlog: Backlog,
    /// Its `max_held`, which a config reload may change.
    limit: AtomicUsize,
    held: AtomicUsize,
    gauge: GaugeHandle,
}

impl Hold {
    /// The hold of destination `name`, capped at `limit`, with its gauges.
    fn new(name: String, limit: usize, metrics: &Metrics) -> Hold {
        let oldest_age = metrics.destination_oldest_age(&name);
        oldest_age.set(0.0);
        let gauge = metrics.destination_held(&name);
        gauge.set(0.0);
        metrics.destination_max_held(&name).set(limit as f64);
        Hold {
            backlog: Backlog {
                since: Mutex::new(BTreeMap::new()),
                oldest_age: GaugeHandle(oldest_age),
            },
            name,
            limit: AtomicUsize::new(limit),
            held: AtomicUsize::new(0),
            gauge: GaugeHandle(gauge),
        }
    }
}

/// `webhook_destination_held{destination}` or `webhook_oldest_event_age_seconds{destination}`.
struct GaugeHandle(Gauge);

impl std::fmt::Debug for GaugeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gauge")
    }
}

/// `webhook_event_latency_seconds{route}`.
#[derive(Clone)]
struct HistogramHandle(Histogram);

impl std::fmt::Debug for HistogramHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Histogram")
    }
}

impl Holds {
    /// Caps for the destinations `(name, max_held)`, by id; their backlog gauges are set at
    /// each render of `metrics`.
    pub fn new(destinations: Vec<(String, usize)>, metrics: &Metrics) -> Holds {
        let table = destinations
            .into_iter()
            .map(|(name, limit)| Arc::new(Hold::new(name, limit, metrics)))
            .collect();
        let destinations = Arc::new(ArcSwap::from_pointee(table));
        let weak: Weak<ArcSwap<Vec<Arc<Hold>>>> = Arc::downgrade(&destinations);
        metrics.on_render(move || {
            if let Some(destinations) = weak.upgrade() {
                let now_ms = unix_millis(SystemTime::now());
                let destinations = destinations.load();
                destinations
                    .iter()
                    .for_each(|hold| hold.backlog.collect(now_ms));
            }
        });
        Holds {
            destinations,
            latency: RwLock::new(HashMap::new()),
            metrics: Some(metrics.clone()),
        }
    }

    /// No caps (a queue built without a destination table, as in unit tests).
    pub fn none() -> Holds {
        Holds {
            destinations: Arc::default(),
            latency: RwLock::new(HashMap::new()),
            metrics: None,
        }
    }

    /// Adds destination `name` with cap `limit` (a config reload): its id is the next one.
    pub fn add(&self, name: String, limit: usize) -> DestinationId {
        let Some(metrics) = &self.metrics else {
            return self.destinations.load().len();
        };
        let hold = Arc::new(Hold::new(name, limit, metrics));
        let mut id = 0;
        self.destinations.rcu(|table| {
            let mut table = Vec::clone(table);
            id = table.len();
            table.push(Arc::clone(&hold));
            table
        });
        id
    }

    fn hold(&self, destination: DestinationId) -> Option<Arc<Hold>> {
        self.destinations.load().get(destination).cloned()
    }

    /// The latency histogram of `route` (`None` without metrics).
    fn latency(&self, route: &str) -> Option<HistogramHandle> {
        let metrics = self.metrics.as_ref()?;
        if let Some(histogram) = self
            .latency
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(route)
        {
            return Some(histogram.clone());
        }
        let mut latency = self.latency.write().unwrap_or_else(PoisonError::into_inner);
        let histogram = latency
            .entry(route.to_owned())
            .or_insert_with(|| HistogramHandle(metrics.event_latency(route)));
        Some(histogram.clone())
    }

    /// Takes one place at each of `destinations` (a repeat takes two), all or none. `force`
    /// takes them past the caps (events already promised, read back at start). Otherwise the
    /// name of a destination that is full.
    pub fn reserve(&self, destinations: &[DestinationId], force: bool) -> Result<(), String> {
        let table = self.destinations.load();
        for (taken, &id) in destinations.iter().enumerate() {
            let Some(hold) = table.get(id) else {
                continue;
            };
            // `SeqCst`, as the lane of a removed destination closes (cap 0, then held counted
            // again): either it sees this place, or this sees its cap.
            let before = hold.held.fetch_add(1, Ordering::SeqCst);
            if !force && before >= hold.limit.load(Ordering::SeqCst) {
                hold.held.fetch_sub(1, Ordering::AcqRel);
                for &undo in &destinations[..taken] {
                    self.release(undo);
                }
                return Err(hold.name.clone());
            }
            hold.gauge.0.increment(1.0);
        }
        Ok(())
    }

    /// Gives back one place at `destination`: a delivery there is final, or was let go.
    pub fn release(&self, destination: DestinationId) {
        if let Some(hold) = self.hold(destination) {
            hold.held.fetch_sub(1, Ordering::AcqRel);
            hold.gauge.0.decrement(1.0);
        }
    }

    /// The cap of `destination` (0 if unknown).
    pub fn limit(&self, destination: DestinationId) -> usize {
        self.hold(destination)
            .map_or(0, |hold| hold.limit.load(Ordering::Acquire))
    }

    /// Sets the cap of `destination` (a config reload): events already held stay, and new
    /// ones are refused while it holds as many.
    pub fn set_limit(&self, destination: DestinationId, limit: usize) {
        if let Some(hold) = self.hold(destination) {
            hold.limit.store(limit, Ordering::SeqCst);
            if let Some(metrics) = &self.metrics {
                metrics.destination_max_held(&hold.name).set(limit as f64);
            }
        }
    }

    /// The age (ms) at `now_ms` of the oldest event `destination` holds (0: none held, or
    /// unknown destination), as `webhook_oldest_event_age_seconds` shows it.
    pub fn oldest_age_ms(&self, destination: DestinationId, now_ms: u64) -> u64 {
        self.hold(destination)
            .map_or(0, |hold| hold.backlog.oldest_age_ms(now_ms))
    }

    /// Events `destination` holds.
    pub fn held(&self, destination: DestinationId) -> usize {
        self.hold(destination)
            .map_or(0, |hold| hold.held.load(Ordering::SeqCst))
    }
}

/// The places one held event takes, by its destinations' positions: each is given back when
/// its delivery is final, and whatever is left when the event is let go.
#[derive(Debug)]
pub struct Holding {
    holds: Arc<Holds>,
    /// By position: the destination whose place is still taken.
    taken: Mutex<Vec<Option<DestinationId>>>,
    /// When the event was received (Unix ms).
    received_ms: u64,
    /// Where its receipt-to-final time goes once every place is given back as final.
    latency: Option<HistogramHandle>,
}

impl Holding {
    /// The places `taken` (by position; `None`: none taken there) in `holds` by `event`.
    pub fn new(holds: &Arc<Holds>, taken: Vec<Option<DestinationId>>, event: &Event) -> Holding {
        let received_ms = event.received_at_ms();
        for &destination in taken.iter().flatten() {
            if let Some(hold) = holds.hold(destination) {
                hold.backlog.add(received_ms);
            }
        }
        Holding {
            holds: Arc::clone(holds),
            latency: holds.latency(&event.route),
            taken: Mutex::new(taken),
            received_ms,
        }
    }

    /// Gives back the place of the destination at `position`: its delivery is final. The last
    /// one counts the event's latency.
    pub fn release(&self, position: usize) {
        let mut taken = self.taken.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(destination) = taken.get_mut(position).and_then(Option::take) {
            self.give_back(destination);
            if taken.iter().all(Option::is_none)
                && let Some(latency) = &self.latency
            {
                let now_ms = unix_millis(SystemTime::now());
                latency
                    .0
                    .record(now_ms.saturating_sub(self.received_ms) as f64 / 1000.0);
            }
        }
    }

    fn give_back(&self, destination: DestinationId) {
        self.holds.release(destination);
        if let Some(hold) = self.holds.hold(destination) {
            hold.backlog.remove(self.received_ms);
        }
    }
}

impl Drop for Holding {
    /// The event is let go before every delivery is final (the process stops, or a shared
    /// stream took it back for its next attempt): its places are given back, no latency counted.
    fn drop(&mut self) {
        let taken = std::mem::take(self.taken.get_mut().unwrap_or_else(PoisonError::into_inner));
        for destination in taken.into_iter().flatten() {
            self.give_back(destination);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// An event of `route` received `age_ms` ago.
    fn event(route: &str, age_ms: u64) -> Event {
        Event {
            received_at: SystemTime::now() - Duration::from_millis(age_ms),
            ..Event::for_test(Event::new_id(), route, bytes::Bytes::new())
        }
    }

    #[test]
    fn the_oldest_held_event_sets_the_age_and_the_last_final_place_the_latency() {
        let metrics = Metrics::new();
        let holds = Arc::new(Holds::new(
            vec![("a".into(), 10), ("b".into(), 10)],
            &metrics,
        ));
        let age = |d: &str| {
            metrics.value(&format!(
                "webhook_oldest_event_age_seconds{{destination=\"{d}\"}}"
            ))
        };
        let latency_count = || metrics.value("webhook_event_latency_seconds_count{route=\"r\"}");
        assert_eq!((age("a"), age("b")), (0.0, 0.0));
        assert_eq!(
            metrics.value("webhook_destination_max_held{destination=\"a\"}"),
            10.0
        );

        holds.reserve(&[0, 1], false).expect("room");
        let old = Holding::new(&holds, vec![Some(0), Some(1)], &event("r", 60_000));
        holds.reserve(&[0], false).expect("room");
        let young = Holding::new(&holds, vec![Some(0)], &event("r", 1_000));
        assert!((60.0..70.0).contains(&age("a")), "{}", age("a"));
        assert!((60.0..70.0).contains(&age("b")), "{}", age("b"));

        old.release(1);
        assert_eq!(age("b"), 0.0, "b holds nothing now");
        assert!(age("a") >= 60.0, "a still holds the old event");
        old.release(0);
        assert!((1.0..10.0).contains(&age("a")), "{}", age("a"));
        assert_eq!(latency_count(), 1.0, "the old event is final everywhere");
        assert!(metrics.value("webhook_event_latency_seconds_sum{route=\"r\"}") >= 60.0);

        drop(young);
        assert_eq!(age("a"), 0.0);
        assert_eq!(
            latency_count(),
            1.0,
            "an event let go before it is final is no latency"
        );
    }

    #[test]
    fn a_full_destination_refuses_and_takes_nothing_elsewhere() {
        let holds = Arc::new(Holds::new(
            vec![("a".into(), 2), ("b".into(), 10)],
            &Metrics::new(),
        ));
        holds.reserve(&[0, 1], false).expect("room");
        holds.reserve(&[0], false).expect("room");
        assert_eq!(holds.reserve(&[1, 0], false), Err("a".to_owned()));
        assert_eq!(
            (holds.held(0), holds.held(1)),
            (2, 1),
            "b's place was given back"
        );
        holds.reserve(&[0], true).expect("forced");
        assert_eq!(holds.held(0), 3);
        {
            let holding = Holding::new(&holds, vec![Some(0), Some(1)], &event("r", 0));
            holding.release(0);
            holding.release(0);
            assert_eq!((holds.held(0), holds.held(1)), (2, 1));
        }
        assert_eq!(
            (holds.held(0), holds.held(1)),
            (2, 0),
            "the rest given back on drop"
        );
    }
}
