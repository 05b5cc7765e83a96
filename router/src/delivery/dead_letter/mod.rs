//! The dead-letter store: deliveries that failed for good, kept for inspection and replay.
//!
//! Bounded by count and by bytes (bodies and headers): past either bound the oldest letters are
//! evicted, logged and counted (`webhook_dead_letter_evictions_total`); the newest letter is
//! always kept. Each letter has its own id, because one event fanned out to two destinations can
//! fail at both.
//!
//! With a [`LetterLog`] every letter is also written there and deleted when it is replayed or
//! evicted, so letters outlive a restart: the journal (key `DEAD_LETTER`, written in one
//! all-or-nothing batch with the report that makes its delivery final, see
//! [`DeadLetterStore::stage`]; [`DeadLetterStore::restore_from`] reads them back at start), or
//! a NATS key-value bucket shared by every router ([`nats`]: each router mirrors the bucket,
//! so any of them lists and replays a letter another made).
//!
//! Letters are listed a page at a time in id order (ids are UUIDv7, so that is the order they
//! failed in), a page going on after the last id of the one before: the same id on every
//! router, so a listing is not thrown by letters replayed or discarded between two pages.
//! The bulk operations take a [`LetterFilter`].

pub mod filter;
pub mod nats;

pub use filter::{FilterError, LetterFilter};

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;
use serde::{Deserialize, Serialize};

use crate::event::{Event, unix_millis};
use crate::journal::codec::CodecError;
use crate::journal::{Batch, Journal, Key, Recovered, codec, space};
use crate::metrics::Metrics;
use crate::queue::DestinationId;

/// A delivery that was given up on.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// This letter's id (used to replay it).
    pub id: String,
    /// The event, as it was to be delivered.
    pub event: Event,
    /// Index of the destination it failed to reach (`None`: that destination is no longer in
    /// the config, so the letter cannot be replayed).
    pub destination: Option<DestinationId>,
    /// Name of that destination.
    pub destination_name: String,
    /// Attempts made.
    pub attempts: u32,
    /// HTTP status of the last attempt, if the destination answered.
    pub last_status: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: String,
    /// When it was dead-lettered.
    pub failed_at: SystemTime,
}

/// The JSON shape of a dead letter in the admin API.
#[derive(Debug, Serialize)]
pub struct DeadLetterSummary<'a> {
    /// Letter id.
    pub id: &'a str,
    /// Event id.
    pub event_id: &'a str,
    /// Route that accepted the event.
    pub route: &'a str,
    /// Destination it failed to reach.
    pub destination: &'a str,
    /// Attempts made.
    pub attempts: u32,
    /// Last HTTP status, if any.
    pub last_status: Option<u16>,
    /// Last error.
    pub last_error: &'a str,
    /// The last error's kind, as the `reason` filter names it (`http_503`, `timeout`, ...).
    pub reason: String,
    /// Body size in bytes.
    pub body_bytes: usize,
    /// When the event was received (Unix ms).
    pub received_at_ms: u64,
    /// When it was dead-lettered (Unix ms).
    pub failed_at_ms: u64,
}

impl DeadLetter {
    /// Bytes this letter holds in memory: its body and its headers.
    pub fn bytes(&self) -> usize {
        let headers = |map: &http::HeaderMap| {
            map.iter()
                .map(|(name, value)| name.as_str().len() + value.len())
                .sum::<usize>()
        };
        self.event.body.len()
            + headers(&self.event.headers)
            + self.event.plugin_headers.as_deref().map_or(0, headers)
    }

    /// The admin API view of this letter.
    pub fn summary(&self) -> DeadLetterSummary<'_> {
        DeadLetterSummary {
            id: &self.id,
            event_id: &self.event.id,
            route: &self.event.route,
            destination: &self.destination_name,
            attempts: self.attempts,
            last_status: self.last_status,
            last_error: &self.last_error,
            reason: filter::reason(self),
            body_bytes: self.event.body.len(),
            received_at_ms: self.event.received_at_ms(),
            failed_at_ms: unix_millis(self.failed_at),
        }
    }
}

/// Bounded in-memory store of dead letters. Not on the hot path: a mutex is enough.
#[derive(Debug)]
pub struct DeadLetterStore {
    held: Mutex<Held>,
    capacity: usize,
    max_bytes: usize,
    metrics: Metrics,
    log: OnceLock<Arc<dyn LetterLog>>,
    /// Told each letter discarded or evicted (not replayed): ordered delivery's `hold`.
    on_discard: OnceLock<DiscardHook>,
}

/// Told a letter that is gone for good: discarded or evicted.
struct DiscardHook(Box<dyn Fn(&DeadLetter) + Send + Sync>);

impl std::fmt::Debug for DiscardHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DiscardHook")
    }
}

/// Why a letter could not be stored in the [`LetterLog`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("the dead letter could not be stored: {0}")]
pub struct LetterError(pub String);

/// A letter's write to a [`LetterLog`], already under way: resolves to the key it is stored
/// under (0 where letters are keyed by their id), or why it could not be stored.
pub type LetterPut = Pin<Box<dyn Future<Output = Result<u64, LetterError>> + Send>>;

/// Where letters are kept beyond this process's memory.
pub trait LetterLog: Send + Sync + std::fmt::Debug {
    /// Starts storing a new letter (the write goes ahead whether or not the answer is awaited).
    fn put(&self, letter: &DeadLetter) -> LetterPut;
    /// Forgets letters, each given by its key and id (evicted, or queued again by a replay).
    fn delete(&self, letters: &[(u64, String)]);
    /// For a log that is the journal: the records of a new letter and the key they put, for the
    /// caller to write in the same journal write as the report that makes the letter's
    /// delivery final. `None` (the default): the letter is stored with [`LetterLog::put`].
    fn stage(&self, letter: &DeadLetter) -> Option<(u64, Batch)> {
        let _ = letter;
        None
    }
}

/// The journal as a [`LetterLog`]: one `DEAD_LETTER` record per letter.
#[derive(Debug)]
struct JournalLetters(Journal);

impl JournalLetters {
    /// A new letter's record, and its key.
    fn letter_record(&self, letter: &DeadLetter) -> (u64, Batch) {
        let id = self.0.next_id();
        let mut batch = Batch::new();
        batch.put(key(id), &encode(letter), 0);
        (id, batch)
    }
}

impl LetterLog for JournalLetters {
    fn put(&self, letter: &DeadLetter) -> LetterPut {
        let (id, batch) = self.letter_record(letter);
        // The journal orders this write before the queue's ack of the event it came from.
        self.0.write_detached(batch);
        Box::pin(std::future::ready(Ok(id)))
    }

    fn delete(&self, letters: &[(u64, String)]) {
        let mut batch = Batch::new();
        for (id, _) in letters {
            batch.delete(key(*id));
        }
        if !batch.is_empty() {
            self.0.write_detached(batch);
        }
    }

    fn stage(&self, letter: &DeadLetter) -> Option<(u64, Batch)> {
        Some(self.letter_record(letter))
    }
}

/// A letter as a log stores it: its head, then the event.
pub(crate) fn encode(letter: &DeadLetter) -> Vec<u8> {
    let head = LetterHead {
        id: letter.id.clone(),
        destination: letter.destination_name.clone(),
        attempts: letter.attempts,
        last_status: letter.last_status,
        last_error: letter.last_error.clone(),
        failed_at_ms: unix_millis(letter.failed_at),
    };
    let mut value = Vec::new();
    codec::encode(&head, &letter.event, &mut value);
    value
}

/// Reads a letter [`encode`] wrote; `resolve` gives a destination's id by name.
pub(crate) fn decode(
    value: &[u8],
    resolve: impl Fn(&str) -> Option<DestinationId>,
) -> Result<DeadLetter, CodecError> {
    let (head, event) = codec::decode::<LetterHead>(value)?;
    Ok(DeadLetter {
        id: head.id,
        event,
        destination: resolve(&head.destination),
        destination_name: head.destination,
        attempts: head.attempts,
        last_status: head.last_status,
        last_error: head.last_error,
        failed_at: UNIX_EPOCH + Duration::from_millis(head.failed_at_ms),
    })
}

/// The letters, oldest first, each with its journal key, and the bytes they hold.
#[derive(Debug, Default)]
struct Held {
    letters: VecDeque<(u64, DeadLetter)>,
    bytes: usize,
}

/// A letter taken out for replay: [`DeadLetterStore::replayed`] once it is queued again, or
/// [`DeadLetterStore::restore`] if it could not be.
#[derive(Debug)]
pub struct Taken {
    /// The letter.
    pub letter: DeadLetter,
    key: u64,
}

/// A letter whose journal records are to be written with the report that makes its delivery
/// final ([`DeadLetterStore::stage`]); added to the store by [`DeadLetterStore::staged`] once
/// they are handed to the journal.
#[derive(Debug)]
pub struct Staged {
    letter: DeadLetter,
    key: u64,
    records: Option<Batch>,
}

impl Staged {
    /// The letter's journal records (`None`: the store's log is not the journal, or they were
    /// taken already).
    pub fn take_records(&mut self) -> Option<Batch> {
        self.records.take()
    }

    /// The letter, to be stored with [`DeadLetterStore::store`] instead (its records were not
    /// written).
    pub fn into_letter(self) -> DeadLetter {
        self.letter
    }
}

/// One page of a listing.
#[derive(Debug)]
pub struct Page {
    /// The letters, in id order.
    pub letters: Vec<DeadLetter>,
    /// Where the next page starts (the last letter's id), if there are more.
    pub next: Option<String>,
}

/// What a `DEAD_LETTER` record holds besides the event.
#[derive(Debug, Serialize, Deserialize)]
struct LetterHead {
    id: String,
    destination: String,
    attempts: u32,
    last_status: Option<u16>,
    last_error: String,
    failed_at_ms: u64,
}

fn key(id: u64) -> Key {
    Key {
        space: space::DEAD_LETTER,
        id,
    }
}

impl DeadLetterStore {
    /// A store holding at most `capacity` letters and `max_bytes` bytes of them, written to
    /// `journal` if there is one.
    pub fn new(
        capacity: usize,
        max_bytes: usize,
        metrics: Metrics,
        journal: Option<Journal>,
    ) -> Self {
        let log = OnceLock::new();
        // Shown at 0 from the start.
        let _ = metrics.dead_letter_store_failures();
        if let Some(journal) = journal {
            let _ = log.set(Arc::new(JournalLetters(journal)) as Arc<dyn LetterLog>);
        }
        Self {
            held: Mutex::new(Held::default()),
            capacity,
            max_bytes,
            metrics,
            log,
            on_discard: OnceLock::new(),
        }
    }

    /// Has `hook` told each letter discarded or evicted from now on (not those replayed), if
    /// no hook is set yet. Says whether it was set.
    pub fn on_discard(&self, hook: impl Fn(&DeadLetter) + Send + Sync + 'static) -> bool {
        self.on_discard.set(DiscardHook(Box::new(hook))).is_ok()
    }

    /// Tells the discard hook, if any, of `letters`.
    fn tell_discarded<'a>(&self, letters: impl IntoIterator<Item = &'a DeadLetter>) {
        if let Some(hook) = self.on_discard.get() {
            letters.into_iter().for_each(|letter| (hook.0)(letter));
        }
    }

    /// Keeps letters in `log` from now on, if the store has no log yet (none was given to
    /// [`DeadLetterStore::new`]). Says whether it was set.
    pub fn set_log(&self, log: Arc<dyn LetterLog>) -> bool {
        self.log.set(log).is_ok()
    }

    /// Reads back the letters `recovered` holds (at start), oldest first; `resolve` gives a
    /// destination's id by name. Returns how many were read.
    pub fn restore_from(
        &self,
        recovered: &mut Recovered,
        resolve: impl Fn(&str) -> Option<DestinationId>,
    ) -> usize {
        let mut count = 0;
        for (id, value) in recovered.take_space(space::DEAD_LETTER) {
            match decode(&value, &resolve) {
                Ok(letter) => {
                    self.insert(id, letter);
                    count += 1;
                }
                Err(error) => {
                    tracing::error!(key = id, %error, "journal: a dead-letter record does not decode; skipped");
                    self.metrics.journal().corrupt.increment(1);
                }
            }
        }
        count
    }

    /// Adds a letter, evicting the oldest ones while the store would be over a bound; the
    /// write to the log, if any, goes ahead without being awaited.
    pub fn push(&self, letter: DeadLetter) {
        let id = self.log.get().map_or(0, |log| {
            log.put(&letter)
                .now_or_never()
                .and_then(Result::ok)
                .unwrap_or(0)
        });
        self.insert(id, letter);
    }

    /// Adds a letter once the log, if any, has stored it, evicting as [`DeadLetterStore::push`]
    /// does. A letter the log could not store is not added: the caller keeps the event it
    /// came from and tries again.
    pub async fn store(&self, letter: DeadLetter) -> Result<(), LetterError> {
        let put = self.log.get().map(|log| log.put(&letter));
        let id = match put {
            Some(put) => match put.await {
                Ok(id) => id,
                Err(error) => {
                    self.metrics.dead_letter_store_failures().increment(1);
                    return Err(error);
                }
            },
            None => 0,
        };
        // A shared log's mirror may have brought the letter in already.
        self.insert_new(id, letter);
        Ok(())
    }

    /// Prepares `letter` to be stored with the report that makes its delivery final: with the
    /// journal as the log, its records ([`Staged::take_records`]) go in the same journal write
    /// as that report ([`crate::queue::Receipt::record_with`]), so that neither is on disk
    /// without the other, and then [`DeadLetterStore::staged`] adds it. Without records, the
    /// letter is stored with [`DeadLetterStore::store`] ([`Staged::into_letter`]).
    pub fn stage(&self, letter: DeadLetter) -> Staged {
        let (key, records) = match self.log.get().and_then(|log| log.stage(&letter)) {
            Some((key, records)) => (key, Some(records)),
            None => (0, None),
        };
        Staged {
            letter,
            key,
            records,
        }
    }

    /// Adds a letter whose records were handed to the journal, evicting as
    /// [`DeadLetterStore::push`] does.
    pub fn staged(&self, staged: Staged) {
        self.insert(staged.key, staged.letter);
    }

    /// Adds a letter another router stored in the shared log (unless it is here already).
    pub fn mirror_put(&self, letter: DeadLetter) {
        self.insert_new(0, letter);
    }

    /// Adds a letter under `id` unless a letter with its id is here already.
    fn insert_new(&self, id: u64, letter: DeadLetter) {
        self.insert_if(id, letter, true);
    }

    /// Forgets a letter another router replayed or evicted from the shared log.
    pub fn mirror_delete(&self, id: &str) {
        let mut held = self.lock();
        if let Some(index) = held.letters.iter().position(|(_, l)| l.id == id)
            && let Some((_, letter)) = held.letters.remove(index)
        {
            held.bytes = held.bytes.saturating_sub(letter.bytes());
            self.metrics.set_dead_letters(held.letters.len());
        }
    }

    /// Adds a letter already logged under `id`, evicting as [`DeadLetterStore::push`] does.
    fn insert(&self, id: u64, letter: DeadLetter) {
        self.insert_if(id, letter, false);
    }

    /// [`DeadLetterStore::insert`], or nothing if `only_new` and a letter with its id is here.
    fn insert_if(&self, id: u64, letter: DeadLetter, only_new: bool) {
        let mut held = self.lock();
        if only_new && held.letters.iter().any(|(_, l)| l.id == letter.id) {
            return;
        }
        let size = letter.bytes();
        let mut evicted_keys = Vec::new();
        let mut evicted_letters = Vec::new();
        while !held.letters.is_empty()
            && (held.letters.len() >= self.capacity
                || held.bytes.saturating_add(size) > self.max_bytes)
        {
            let Some((evicted_id, evicted)) = held.letters.pop_front() else {
                break;
            };
            evicted_keys.push((evicted_id, evicted.id.clone()));
            held.bytes = held.bytes.saturating_sub(evicted.bytes());
            self.metrics.dead_letter_evictions().increment(1);
            tracing::warn!(
                dead_letter = %evicted.id,
                event_id = %evicted.event.id,
                "dead-letter store full: evicted the oldest letter"
            );
            evicted_letters.push(evicted);
        }
        held.bytes = held.bytes.saturating_add(size);
        held.letters.push_back((id, letter));
        self.metrics.set_dead_letters(held.letters.len());
        drop(held);
        if let Some(log) = self.log.get()
            && !evicted_keys.is_empty()
        {
            log.delete(&evicted_keys);
        }
        self.tell_discarded(&evicted_letters);
    }

    /// A copy of every letter, oldest first.
    pub fn list(&self) -> Vec<DeadLetter> {
        self.lock()
            .letters
            .iter()
            .map(|(_, letter)| letter.clone())
            .collect()
    }

    /// A copy of the letter with `id`, if it is held.
    pub fn get(&self, id: &str) -> Option<DeadLetter> {
        self.lock()
            .letters
            .iter()
            .find(|(_, l)| l.id == id)
            .map(|(_, l)| l.clone())
    }

    /// Removes the letter with `id` for replay.
    pub fn take(&self, id: &str) -> Option<Taken> {
        let mut held = self.lock();
        let index = held.letters.iter().position(|(_, l)| l.id == id)?;
        let (key, letter) = held.letters.remove(index)?;
        held.bytes = held.bytes.saturating_sub(letter.bytes());
        self.metrics.set_dead_letters(held.letters.len());
        Some(Taken { letter, key })
    }

    /// Forgets a taken letter for good: it was queued again.
    pub fn replayed(&self, taken: &Taken) {
        self.forget(std::slice::from_ref(taken));
    }

    /// Forgets taken letters for good (queued again, or discarded), in one write to the log.
    pub fn forget(&self, taken: &[Taken]) {
        if let Some(log) = self.log.get()
            && !taken.is_empty()
        {
            let keys: Vec<_> = taken.iter().map(|t| (t.key, t.letter.id.clone())).collect();
            log.delete(&keys);
        }
    }

    /// Up to `limit` letters that `filter` matches, in id order, from the first id after
    /// `after` (the `next` of the page before; `None` for the first page).
    pub fn page(&self, filter: &LetterFilter, after: Option<&str>, limit: usize) -> Page {
        let held = self.lock();
        // The `limit + 1` smallest matching ids (one more tells whether there is a next page),
        // in a max-heap so the largest is dropped first: one pass, however many letters.
        let mut smallest = std::collections::BinaryHeap::with_capacity(limit.saturating_add(1));
        for (index, (_, letter)) in held.letters.iter().enumerate() {
            if after.is_some_and(|after| letter.id.as_str() <= after) || !filter.matches(letter) {
                continue;
            }
            smallest.push((letter.id.as_str(), index));
            if smallest.len() > limit.saturating_add(1) {
                smallest.pop();
            }
        }
        let mut picked = smallest.into_sorted_vec();
        let more = picked.len() > limit;
        picked.truncate(limit);
        let letters: Vec<DeadLetter> = picked
            .into_iter()
            .map(|(_, index)| held.letters[index].1.clone())
            .collect();
        let next = more.then(|| letters.last().map(|l| l.id.clone())).flatten();
        Page { letters, next }
    }

    /// Removes every letter `filter` matches, oldest first: for replay ([`Self::forget`] those
    /// queued again, [`Self::restore`] the others) or to discard.
    pub fn take_matching(&self, filter: &LetterFilter) -> Vec<Taken> {
        let mut held = self.lock();
        let mut taken = Vec::new();
        let mut kept = VecDeque::with_capacity(held.letters.len());
        for (key, letter) in std::mem::take(&mut held.letters) {
            if filter.matches(&letter) {
                held.bytes = held.bytes.saturating_sub(letter.bytes());
                taken.push(Taken { letter, key });
            } else {
                kept.push_back((key, letter));
            }
        }
        held.letters = kept;
        self.metrics.set_dead_letters(held.letters.len());
        taken
    }

    /// Discards every letter `filter` matches; returns how many.
    pub fn discard_matching(&self, filter: &LetterFilter) -> usize {
        let taken = self.take_matching(filter);
        self.discarded(&taken);
        taken.len()
    }

    /// Forgets taken letters for good as [`Self::forget`] does, because they were discarded.
    pub fn discarded(&self, taken: &[Taken]) {
        self.forget(taken);
        self.tell_discarded(taken.iter().map(|t| &t.letter));
    }

    /// Bytes the letters hold (bodies and headers).
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Puts a taken letter back where replay could not proceed (e.g. the queue was full).
    pub fn restore(&self, taken: Taken) {
        self.insert(taken.key, taken.letter);
    }

    /// Letters held.
    pub fn len(&self) -> usize {
        self.lock().letters.len()
    }

    /// Whether no letters are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        // A panic while holding this lock cannot leave the store half-updated: every update
        // ends with the deque and its byte count in step.
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(id: &str) -> DeadLetter {
        letter_of(id, 2)
    }

    fn letter_of(id: &str, body_bytes: usize) -> DeadLetter {
        DeadLetter {
            id: id.into(),
            event: Event::for_test(format!("evt-{id}"), "r", vec![b'x'; body_bytes]),
            destination: Some(0),
            destination_name: "d".into(),
            attempts: 1,
            last_status: Some(400),
            last_error: "HTTP 400".into(),
            failed_at: SystemTime::now(),
        }
    }

    #[test]
    fn evicts_oldest_past_capacity_and_takes_by_id() {
        let store = DeadLetterStore::new(2, usize::MAX, Metrics::new(), None);
        store.push(letter("a"));
        store.push(letter("b"));
        store.push(letter("c"));
        let ids: Vec<_> = store.list().into_iter().map(|l| l.id).collect();
        assert_eq!(ids, ["b", "c"]);
        assert_eq!(
            store.take("b").map(|t| t.letter.event.id).as_deref(),
            Some("evt-b")
        );
        assert!(store.take("b").is_none());
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn evicts_oldest_past_max_bytes_and_counts_evictions() {
        let metrics = Metrics::new();
        let store = DeadLetterStore::new(100, 1000, metrics.clone(), None);
        for id in ["a", "b", "c"] {
            store.push(letter_of(id, 400));
        }
        // 1200 bytes would be over 1000: "a" went.
        let ids: Vec<_> = store.list().into_iter().map(|l| l.id).collect();
        assert_eq!(ids, ["b", "c"]);
        assert_eq!(store.bytes(), 800);
        // A letter bigger than the bound is kept alone: the newest is never dropped.
        store.push(letter_of("big", 5000));
        let ids: Vec<_> = store.list().into_iter().map(|l| l.id).collect();
        assert_eq!(ids, ["big"]);
        assert_eq!(store.bytes(), 5000);
        assert!(store.take("big").is_some());
        assert_eq!(store.bytes(), 0);
        assert!(
            metrics
                .render()
                .contains("webhook_dead_letter_evictions_total 3"),
            "{}",
            metrics.render()
        );
    }

    #[test]
    fn pages_give_each_matching_letter_once_in_id_order() {
        let store = DeadLetterStore::new(100, usize::MAX, Metrics::new(), None);
        // Held out of id order, as letters mirrored from other routers can be.
        for id in ["c", "a", "e", "b", "d", "f", "g"] {
            let mut letter = letter(id);
            if id == "d" {
                letter.destination_name = "other".into();
            }
            store.push(letter);
        }
        let filter = LetterFilter {
            destination: Some("d".into()),
            ..LetterFilter::default()
        };
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = store.page(&filter, after.as_deref(), 2);
            seen.extend(page.letters.iter().map(|l| l.id.clone()));
            // A letter taken between two pages does not shift the next.
            if after.is_none() {
                assert!(store.take("a").is_some());
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, ["a", "b", "c", "e", "f", "g"]);
        assert!(store.page(&filter, None, 0).letters.is_empty());
    }

    #[test]
    fn take_matching_removes_exactly_the_matching_letters() {
        let store = DeadLetterStore::new(100, usize::MAX, Metrics::new(), None);
        for id in ["a", "b", "c", "d"] {
            let mut letter = letter_of(id, 10);
            if id == "b" || id == "d" {
                letter.event.route = "other".into();
            }
            store.push(letter);
        }
        let filter = LetterFilter {
            route: Some("other".into()),
            ..LetterFilter::default()
        };
        let taken: Vec<_> = store
            .take_matching(&filter)
            .into_iter()
            .map(|t| t.letter.id)
            .collect();
        assert_eq!(taken, ["b", "d"]);
        let left: Vec<_> = store.list().into_iter().map(|l| l.id).collect();
        assert_eq!(left, ["a", "c"]);
        assert_eq!(store.bytes(), 20);
        assert_eq!(store.discard_matching(&LetterFilter::default()), 2);
        assert!(store.is_empty());
    }
}
