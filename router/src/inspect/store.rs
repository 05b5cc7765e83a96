//! The event record in memory: a ring of records in arrival order that bounds them by count and
//! by age, and a concurrent map from event id to its place in the ring.
//!
//! Arrival `n` takes slot `n % capacity` of the ring, whose previous record (arrival
//! `n - capacity`) it evicts: recording an event is one atomic increment, one slot written (the
//! one the ring's turn brings next, so the memory it touches is the evicted record's, not a
//! random place), and one insert into the map. The map holds only `id -> arrival`, and an
//! evicted record's entry is not removed at once (that would be a second random place in the
//! map for every event): a lookup checks that the slot still holds the arrival it names, and
//! once per turn of the ring the entries older than a turn are purged together, in one pass
//! over the map, so it holds at most two turns' worth. The records themselves sit in the ring,
//! inline (no allocation of their own to free on another thread), which is allocated a piece
//! at a time as it first fills. Route and destination names are interned pointers
//! ([`super::name`]), so making and evicting a record touches no shared count. Later changes
//! (verdicts, attempts, outcomes) lock that one slot.
//!
//! Listing sorts the held records' keys, `(received_ms, id)`, newest first: a page ends at a
//! key and the next one starts below it, so every event shows once however many arrive
//! between pages (those arriving after the first page are newer than it, and never show).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use dashmap::DashMap;

use super::record::EventRecord;
use super::saver::Saver;
use crate::id_hash::IdHash;

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

/// A slot of the ring: the arrival it holds and its record, inline.
type Slot = Mutex<Option<(u64, EventRecord)>>;

/// Slots per piece of the ring: the ring is allocated a piece at a time as arrivals first
/// reach it, so a large `events` costs memory only as it fills.
const PIECE: usize = 1024;

/// The event record: recent events by id, bounded by count and age.
#[derive(Debug)]
pub struct EventStore {
    /// Each held event's arrival number (its slot is the number modulo the capacity), and
    /// entries of arrivals evicted since the last purge, which name a slot that no longer
    /// holds them.
    index: DashMap<u128, u64, IdHash>,
    /// The records, arrival `n` in slot `n % capacity`, in pieces of [`PIECE`] slots.
    ring: Box<[OnceLock<Box<[Slot]>>]>,
    /// Slots in the ring: the most events held.
    capacity: usize,
    /// The next arrival's number.
    next: AtomicU64,
    /// The oldest arrival that may still be held: the age check starts there.
    oldest: AtomicU64,
    /// No held record was received before this (Unix milliseconds; raised as the age check
    /// finds the oldest held): until `max_age` has passed since, no record can be too old,
    /// and recording an event need not look at the oldest.
    oldest_received_ms: AtomicU64,
    max_age_ms: u64,
    saver: Option<Saver>,
}

impl EventStore {
    /// A record of at most `capacity` events (at least 1) no older than `max_age`; `saver`
    /// writes it to the journal, if there is one.
    pub(super) fn new(capacity: usize, max_age: Duration, saver: Option<Saver>) -> Self {
        Self {
            index: DashMap::default(),
            ring: (0..capacity.max(1).div_ceil(PIECE))
                .map(|_| OnceLock::new())
                .collect(),
            capacity: capacity.max(1),
            next: AtomicU64::new(0),
            oldest: AtomicU64::new(0),
            oldest_received_ms: AtomicU64::new(0),
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
    /// journal: the first [`EventStore::update`] that saves gives it a journal key and writes
    /// it; a record evicted before that costs the journal nothing.) The same id again (a
    /// restored record) replaces its record in place, if it is still held.
    pub(super) fn insert(&self, record: EventRecord) {
        let id = record.id;
        let received_ms = record.received_ms;
        let entry = self.index.entry(id);
        if let dashmap::Entry::Occupied(held) = &entry {
            let arrival = *held.get();
            if let Some((at, old)) = lock(self.slot(arrival)).as_mut()
                && *at == arrival
            {
                *old = record;
                return;
            }
            // Evicted, and not purged yet: it arrives again.
        }
        let arrival = self.next.fetch_add(1, Ordering::Relaxed);
        entry.insert(arrival);
        // A later arrival may have taken the slot in between (only after a whole turn of the
        // ring): the older of the two goes.
        let evicted = {
            let mut slot = lock(self.slot(arrival));
            match slot.as_ref() {
                Some((at, _)) if *at > arrival => Some(record),
                _ => slot.replace((arrival, record)).map(|(_, old)| old),
            }
        };
        if let Some(old) = evicted {
            self.forget(&old);
        }
        // A live event was received just now: its receipt serves as the clock (a restored
        // record's is older; see `evict_too_old`).
        if self.cutoff(received_ms) > self.oldest_received_ms.load(Ordering::Relaxed) {
            self.evict_old(received_ms, arrival);
        }
        if (arrival + 1).is_multiple_of(self.capacity as u64) {
            self.purge(arrival + 1);
        }
    }

    /// Changes the record of event `id`, if it is held, and writes it to the journal if `save`.
    pub(super) fn update(&self, id: u128, save: bool, change: impl FnOnce(&mut EventRecord)) {
        let saver = self.saver.as_ref().filter(|_| save);
        let held = self.with_slot(id, |record| {
            change(record);
            if let Some(saver) = saver
                && record.journal_key == 0
            {
                // Its first write: until now the journal had no key of it to delete.
                record.journal_key = saver.new_key();
            }
        });
        if let (Some(()), Some(saver)) = (held, saver) {
            saver.save(id);
        }
    }

    /// A copy of the record of event `id`, if it is held and not too old.
    pub fn get(&self, id: u128) -> Option<EventRecord> {
        let cutoff = self.cutoff(crate::journal::now_ms());
        self.with_slot(id, |record| {
            (record.received_ms >= cutoff).then(|| record.clone())
        })
        .flatten()
    }

    /// Applies `with` to the record of event `id` while it is locked, if it is held.
    pub(super) fn read<T>(&self, id: u128, with: impl FnOnce(&EventRecord) -> T) -> Option<T> {
        self.with_slot(id, |record| with(record))
    }

    /// How many events are held: the arrivals since the oldest held (the ring's turn, or the
    /// oldest not too old, whichever is later).
    pub fn len(&self) -> usize {
        let next = self.next.load(Ordering::Relaxed);
        let held = next - self.oldest_held(next).min(next);
        usize::try_from(held).unwrap_or(usize::MAX)
    }

    /// Whether no event is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets the records too old by now (an insert's clock is its record's receipt, so
    /// records restored at start, old ones among them, are checked again after).
    pub(super) fn evict_too_old(&self) {
        self.evict_old(crate::journal::now_ms(), self.next.load(Ordering::Relaxed));
    }

    /// One page of the events `query` selects, newest first.
    pub fn list(&self, query: &ListQuery) -> Page {
        let now_ms = crate::journal::now_ms();
        self.evict_old(now_ms, self.next.load(Ordering::Relaxed));
        let cutoff = self.cutoff(now_ms);
        let mut keys: Vec<(u64, u128, u64)> = self
            .ring
            .iter()
            .filter_map(OnceLock::get)
            .flat_map(|piece| piece.iter())
            .filter_map(|slot| {
                let slot = lock(slot);
                let (arrival, record) = slot.as_ref()?;
                let key = (record.received_ms, record.id);
                (key.0 >= cutoff
                    && query.cursor.is_none_or(|c| key < (c.received_ms, c.id))
                    && query.since_ms.is_none_or(|since| key.0 >= since))
                .then_some((key.0, key.1, *arrival))
            })
            .collect();
        keys.sort_unstable_by(|a, b| b.cmp(a));
        let mut events = Vec::with_capacity(query.limit.min(keys.len()));
        let mut next = None;
        for (_, id, arrival) in keys {
            let slot = lock(self.slot(arrival));
            let Some((_, record)) = slot.as_ref().filter(|(at, _)| *at == arrival) else {
                continue;
            };
            if !matches(record, query) {
                continue;
            }
            if events.len() == query.limit {
                next = events.last().map(|last: &EventRecord| Cursor {
                    received_ms: last.received_ms,
                    id: last.id,
                });
                break;
            }
            debug_assert_eq!(record.id, id);
            events.push(EventRecord::clone(record));
        }
        Page { events, next }
    }

    fn slot(&self, arrival: u64) -> &Slot {
        // The capacity fits a u64, and the remainder is below it.
        let index = usize::try_from(arrival % self.capacity as u64).unwrap_or_default();
        let piece = index / PIECE;
        let slots = self.ring[piece].get_or_init(|| {
            let len = PIECE.min(self.capacity - piece * PIECE);
            (0..len).map(|_| Mutex::new(None)).collect()
        });
        &slots[index % PIECE]
    }

    /// Applies `with` to the record of event `id` while its slot is locked, if it is held.
    fn with_slot<T>(&self, id: u128, with: impl FnOnce(&mut EventRecord) -> T) -> Option<T> {
        let arrival = *self.index.get(&id)?;
        let mut slot = lock(self.slot(arrival));
        match slot.as_mut() {
            Some((at, record)) if *at == arrival => Some(with(record)),
            _ => None,
        }
    }

    fn cutoff(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.max_age_ms)
    }

    /// The oldest arrival that may be held, the next being `next`: none a whole turn back
    /// (overwritten), none the age check passed.
    fn oldest_held(&self, next: u64) -> u64 {
        let turn = self.capacity as u64;
        self.oldest
            .load(Ordering::Relaxed)
            .max(next.saturating_sub(turn))
    }

    /// Takes the entries of arrivals a whole turn back (overwritten) out of the index, the
    /// next arrival being `next`: once per turn of the ring, so the index holds at most two
    /// turns' worth. (Not by the age check's mark: it may pass a slot still being written,
    /// whose record must stay found.)
    fn purge(&self, next: u64) {
        let oldest = next.saturating_sub(self.capacity as u64);
        self.index.retain(|_, arrival| *arrival >= oldest);
    }

    /// Takes the evicted `record` out of the journal, if it was written there.
    fn forget(&self, record: &EventRecord) {
        if let Some(saver) = &self.saver
            && record.journal_key != 0
        {
            saver.forget(record.journal_key);
        }
    }

    /// Forgets the oldest records that are too old, arrivals before `newest` (their order is
    /// their age, but for a few held at the same moment).
    fn evict_old(&self, now_ms: u64, newest: u64) {
        let cutoff = self.cutoff(now_ms);
        loop {
            let oldest_held = self.oldest_held(newest + 1);
            if oldest_held >= newest {
                return;
            }
            let mut slot = lock(self.slot(oldest_held));
            let evicted = match slot.as_ref() {
                Some((at, record)) if *at == oldest_held && record.received_ms >= cutoff => {
                    // Nothing is too old until the age passes since this one's receipt.
                    self.oldest_received_ms
                        .fetch_max(record.received_ms, Ordering::Relaxed);
                    return;
                }
                Some((at, _)) if *at == oldest_held => slot.take(),
                // Empty (being written) or a later turn's: nothing to check here.
                _ => None,
            };
            drop(slot);
            // Only ever forward, whichever thread gets there first.
            self.oldest.fetch_max(oldest_held + 1, Ordering::Relaxed);
            if let Some((_, record)) = evicted {
                self.forget(&record);
            }
        }
    }
}

/// Whether `record` passes `query`'s route, destination and outcome filters.
fn matches(record: &EventRecord, query: &ListQuery) -> bool {
    if query.route.as_ref().is_some_and(|r| **r != *record.route) {
        return false;
    }
    let outcome = match &query.destination {
        Some(name) => match record.destinations.iter().find(|d| *d.name == **name) {
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

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::inspect::record::{Decision, DeliveryOutcome, Inline};

    fn record(id: u128, received_ms: u64, route: &str) -> EventRecord {
        EventRecord {
            id,
            route: route.into(),
            received_ms,
            delivery_id: None,
            decision: Decision::Queued,
            verdicts: Vec::new(),
            destinations: Inline::new(),
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
    fn threads_recording_at_once_keep_the_newest_and_a_consistent_index() {
        let store = std::sync::Arc::new(store(1_000, DAY));
        let now = crate::journal::now_ms();
        let threads: Vec<_> = (0..4u128)
            .map(|thread| {
                let store = std::sync::Arc::clone(&store);
                std::thread::spawn(move || {
                    for n in 0..5_000u128 {
                        let id = thread * 1_000_000 + n;
                        store.insert(record(id, now, "r"));
                        store.update(id, false, |record| record.decision = Decision::Queued);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("no panic");
        }
        // Exactly the ring's worth is held, each id found in its own slot.
        assert_eq!(store.len(), 1_000);
        let page = store.list(&ListQuery {
            limit: 2_000,
            ..ListQuery::default()
        });
        assert_eq!(page.events.len(), 1_000);
        for event in &page.events {
            assert_eq!(store.get(event.id).map(|r| r.id), Some(event.id));
        }
        // The newest arrival is held, and took the oldest's place.
        store.insert(record(42, now, "r"));
        assert!(store.get(42).is_some());
        assert_eq!(store.len(), 1_000);
        // A restored record (the same id again) replaces its own, taking no second place.
        let id = page.events[1].id;
        store.insert(record(id, now, "restored"));
        assert_eq!(store.len(), 1_000);
        assert_eq!(
            store.get(id).map(|r| r.route.to_string()),
            Some("restored".to_owned())
        );
    }

    #[test]
    fn the_index_keeps_at_most_two_turns_and_finds_only_what_is_held() {
        let store = store(100, DAY);
        let now = crate::journal::now_ms();
        for id in 0..1_050u128 {
            store.insert(record(id, now, "r"));
            assert!(store.index.len() <= 200, "{} entries", store.index.len());
        }
        assert_eq!(store.len(), 100);
        assert!(store.get(949).is_none() && store.get(950).is_some());
        // Evicted, its entry not purged yet: it is not found, and may arrive again.
        assert!(store.index.contains_key(&940));
        assert!(store.read(940, |_| ()).is_none());
        store.insert(record(940, now, "again"));
        assert_eq!(
            store.get(940).map(|r| r.route.to_string()),
            Some("again".into())
        );
        assert_eq!(store.len(), 100);
        assert!(store.get(950).is_none(), "the oldest gave way to it");
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
