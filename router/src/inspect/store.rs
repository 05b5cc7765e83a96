//! The event record in memory: a concurrent map of records by event id, and a ring of ids in
//! arrival order that bounds it by count and by age.
//!
//! Recording an event is one insert into the map and one push onto the ring (a short lock);
//! later changes (verdicts, attempts, outcomes) happen under the map's shard lock of that one
//! record. Listing sorts the ring's keys, `(received_ms, id)`, newest first: a page ends at a
//! key and the next one starts below it, so every event shows once however many arrive between
//! pages (those arriving after the first page are newer than it, and never show).

use std::collections::VecDeque;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use dashmap::DashMap;

use super::record::EventRecord;
use super::saver::Saver;

/// Where a page of the list ends: the `(received_ms, id)` of its last event. The next page
/// holds the events below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    /// Receipt time of the last event shown, Unix milliseconds.
    pub received_ms: u64,
    /// Its id.
    pub id: u128,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{:032x}", self.received_ms, self.id)
    }
}

impl std::str::FromStr for Cursor {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        let (ms, id) = text.split_once('-').ok_or(())?;
        if id.len() != 32 {
            return Err(());
        }
        Ok(Self {
            received_ms: ms.parse().map_err(|_| ())?,
            id: u128::from_str_radix(id, 16).map_err(|_| ())?,
        })
    }
}

/// What to list: every filter set must hold.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only events of this route.
    pub route: Option<String>,
    /// Only events queued for this destination.
    pub destination: Option<String>,
    /// Only events with this outcome (the destination's, when `destination` is set).
    pub outcome: Option<String>,
    /// Only events received at or after this time, Unix milliseconds.
    pub since_ms: Option<u64>,
    /// Most events on the page.
    pub limit: usize,
    /// Only events below this cursor (the previous page's end).
    pub cursor: Option<Cursor>,
}

/// One page of the list.
#[derive(Debug)]
pub struct Page {
    /// The events, newest first.
    pub events: Vec<EventRecord>,
    /// Where the next page starts, if more events match.
    pub next: Option<Cursor>,
}

/// The event record: recent events by id, bounded by count and age.
#[derive(Debug)]
pub struct EventStore {
    events: DashMap<u128, EventRecord, IdHash>,
    /// `(received_ms, id)` in arrival order: the oldest is evicted first.
    order: Mutex<VecDeque<(u64, u128)>>,
    capacity: usize,
    max_age_ms: u64,
    saver: Option<Saver>,
}

impl EventStore {
    /// A record of at most `capacity` events no older than `max_age`; `saver` writes it to the
    /// journal, if there is one.
    pub(super) fn new(capacity: usize, max_age: Duration, saver: Option<Saver>) -> Self {
        Self {
            events: DashMap::default(),
            order: Mutex::new(VecDeque::with_capacity(capacity.min(1 << 16))),
            capacity,
            max_age_ms: u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX),
            saver,
        }
    }

    /// How long a record is kept, in milliseconds.
    pub(super) fn max_age_ms(&self) -> u64 {
        self.max_age_ms
    }

    /// The journal writer, if the record is kept in the journal.
    pub(super) fn saver(&self) -> Option<&Saver> {
        self.saver.as_ref()
    }

    /// Records a new event, evicting the oldest past the count or the age. (Not written to the
    /// journal: the first [`EventStore::update`] that saves writes it.)
    pub(super) fn insert(&self, record: EventRecord) {
        let key = (record.received_ms, record.id);
        if self.events.insert(record.id, record).is_some() {
            // The same id again (a restored record): it already has its place in the ring.
            return;
        }
        self.evict(crate::journal::now_ms(), Some(key));
    }

    /// Changes the record of event `id`, if it is held, and writes it to the journal if `save`.
    pub(super) fn update(&self, id: u128, save: bool, change: impl FnOnce(&mut EventRecord)) {
        let Some(mut record) = self.events.get_mut(&id) else {
            return;
        };
        change(&mut record);
        drop(record);
        if save {
            self.save(id);
        }
    }

    /// A copy of the record of event `id`, if it is held and not too old.
    pub fn get(&self, id: u128) -> Option<EventRecord> {
        let cutoff = self.cutoff(crate::journal::now_ms());
        self.events
            .get(&id)
            .filter(|record| record.received_ms >= cutoff)
            .map(|record| record.clone())
    }

    /// Applies `with` to the record of event `id` while it is read-locked, if it is held.
    pub(super) fn read<T>(&self, id: u128, with: impl FnOnce(&EventRecord) -> T) -> Option<T> {
        self.events.get(&id).map(|record| with(&record))
    }

    /// How many events are held.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether no event is held.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// One page of the events `query` selects, newest first.
    pub fn list(&self, query: &ListQuery) -> Page {
        self.evict(crate::journal::now_ms(), None);
        let mut keys: Vec<(u64, u128)> = lock(&self.order)
            .iter()
            .filter(|&&(ms, id)| {
                query
                    .cursor
                    .is_none_or(|c| (ms, id) < (c.received_ms, c.id))
                    && query.since_ms.is_none_or(|since| ms >= since)
            })
            .copied()
            .collect();
        keys.sort_unstable_by(|a, b| b.cmp(a));
        let mut events = Vec::with_capacity(query.limit.min(keys.len()));
        let mut next = None;
        for (received_ms, id) in keys {
            let Some(record) = self.events.get(&id) else {
                continue;
            };
            if !matches(&record, query) {
                continue;
            }
            if events.len() == query.limit {
                next = events.last().map(|last: &EventRecord| Cursor {
                    received_ms: last.received_ms,
                    id: last.id,
                });
                break;
            }
            debug_assert_eq!(record.received_ms, received_ms);
            events.push(record.clone());
        }
        Page { events, next }
    }

    fn cutoff(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.max_age_ms)
    }

    /// Adds `arrived` to the ring, if given, and forgets the oldest events while there are
    /// more than the capacity, or they are too old. (At capacity, an arrival takes the lock
    /// once: one push, one pop.)
    fn evict(&self, now_ms: u64, mut arrived: Option<(u64, u128)>) {
        let cutoff = self.cutoff(now_ms);
        loop {
            let oldest = {
                let mut order = lock(&self.order);
                if let Some(key) = arrived.take() {
                    order.push_back(key);
                }
                match order.front() {
                    Some(&(ms, _)) if order.len() > self.capacity || ms < cutoff => {
                        order.pop_front()
                    }
                    _ => None,
                }
            };
            let Some((_, id)) = oldest else {
                return;
            };
            if let Some((_, record)) = self.events.remove(&id)
                && let Some(saver) = &self.saver
            {
                saver.forget(record.journal_key);
            }
        }
    }

    fn save(&self, id: u128) {
        if let Some(saver) = &self.saver {
            saver.save(id);
        }
    }
}

/// A map or set keyed by event id, hashed by [`IdHasher`].
pub(super) type IdHash = BuildHasherDefault<IdHasher>;

/// Hashes an event id by folding its halves and one multiply (Fibonacci hashing): ids are
/// UUIDv7, mostly random bits already, so a keyed hash (SipHash, the default) would spend its
/// time on what is already spread. Ids come from the router, not from senders.
#[derive(Debug, Default)]
pub(super) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached for `u128` keys; kept correct for any other input.
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(FIBONACCI);
        }
    }

    fn write_u128(&mut self, id: u128) {
        // The two halves (truncations on purpose), folded, then spread to the high bits too.
        let (high, low) = ((id >> 64) as u64, id as u64);
        self.0 = (low ^ high.rotate_left(32)).wrapping_mul(FIBONACCI);
    }
}

/// 2^64 divided by the golden ratio, odd: multiplying by it spreads every bit upward.
const FIBONACCI: u64 = 0x9E37_79B9_7F4A_7C15;

/// Whether `record` passes `query`'s route, destination and outcome filters.
fn matches(record: &EventRecord, query: &ListQuery) -> bool {
    if query.route.as_ref().is_some_and(|r| **r != *record.route) {
        return false;
    }
    let outcome = match &query.destination {
        Some(name) => match record.destinations.iter().find(|d| d.name == *name) {
            Some(destination) => destination.outcome.label(),
            None => return false,
        },
        None => record.outcome(),
    };
    query
        .outcome
        .as_ref()
        .is_none_or(|wanted| wanted == outcome)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::inspect::record::{Decision, DeliveryOutcome};

    fn record(id: u128, received_ms: u64, route: &str) -> EventRecord {
        EventRecord {
            id,
            route: route.into(),
            received_ms,
            delivery_id: None,
            decision: Decision::Queued,
            verdicts: Vec::new(),
            destinations: Vec::new(),
            body: None,
            journal_key: 0,
        }
    }

    fn store(capacity: usize, max_age: Duration) -> EventStore {
        EventStore::new(capacity, max_age, None)
    }

    const DAY: Duration = Duration::from_secs(24 * 3600);

    #[test]
    fn the_oldest_go_first_past_the_count_and_the_age() {
        let now = crate::journal::now_ms();
        let store = store(3, Duration::from_secs(60));
        for id in 1..=5 {
            store.insert(record(id, now + u64::try_from(id).unwrap_or(0), "r"));
        }
        assert_eq!(store.len(), 3);
        assert!(store.get(2).is_none() && store.get(3).is_some());
        // Older than the age: gone at the next insert (or list), whatever the count.
        let store = self::store(10, Duration::from_secs(60));
        store.insert(record(1, now - 61_000, "r"));
        assert!(store.get(1).is_none(), "too old to show");
        store.insert(record(2, now, "r"));
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn filters_select_by_route_destination_outcome_and_time() {
        let store = store(100, DAY);
        let now = crate::journal::now_ms();
        for id in 0..10u128 {
            let mut record = record(id, now + u64::try_from(id).unwrap_or(0), "r");
            if id % 2 == 0 {
                record.route = "even".into();
                record.destination("a").outcome = DeliveryOutcome::Delivered;
            } else {
                record.destination("b").outcome = DeliveryOutcome::DeadLettered;
            }
            store.insert(record);
        }
        let ids = |query: ListQuery| -> Vec<u128> {
            store
                .list(&ListQuery {
                    limit: 100,
                    ..query
                })
                .events
                .iter()
                .map(|r| r.id)
                .collect()
        };
        assert_eq!(
            ids(ListQuery {
                route: Some("even".into()),
                ..ListQuery::default()
            }),
            [8, 6, 4, 2, 0]
        );
        assert_eq!(
            ids(ListQuery {
                destination: Some("b".into()),
                outcome: Some("dead_lettered".into()),
                ..ListQuery::default()
            }),
            [9, 7, 5, 3, 1]
        );
        assert_eq!(
            ids(ListQuery {
                outcome: Some("delivered".into()),
                since_ms: Some(now + 5),
                ..ListQuery::default()
            }),
            [8, 6]
        );
    }

    #[test]
    fn pages_show_each_event_once_while_new_ones_arrive() {
        let store = store(10_000, DAY);
        let now = crate::journal::now_ms();
        // Many share a millisecond: the id breaks the tie.
        for id in 0..2_500u128 {
            store.insert(record(id, now + u64::try_from(id / 7).unwrap_or(0), "r"));
        }
        let mut seen = BTreeSet::new();
        let mut cursor = None;
        let mut pages = 0;
        loop {
            let page = store.list(&ListQuery {
                limit: 100,
                cursor,
                ..ListQuery::default()
            });
            pages += 1;
            for event in &page.events {
                assert!(seen.insert(event.id), "event {} shown twice", event.id);
            }
            // Arrivals between pages are newer than the first page: not shown.
            store.insert(record(10_000 + pages, now + 10_000, "r"));
            match page.next {
                Some(next) => cursor = Some(next.to_string().parse().expect("cursor")),
                None => break,
            }
        }
        assert_eq!(pages, 25);
        assert_eq!(seen, (0..2_500).collect::<BTreeSet<_>>());
    }

    #[test]
    fn a_cursor_reads_back_and_garbage_does_not() {
        let cursor = Cursor {
            received_ms: 17,
            id: u128::MAX - 3,
        };
        assert_eq!(cursor.to_string().parse::<Cursor>(), Ok(cursor));
        for bad in ["", "17", "x-00", "17-zz", "17-0123"] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad}");
        }
    }
}
