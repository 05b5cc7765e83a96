//! Deduplication: senders retry, and a delivery id seen twice within the window is the same
//! webhook. A route's `dedup` table names where the id is (a header, or a JSON pointer into the
//! body; by default the verified preset's delivery id), and the store remembers ids for a window,
//! bounded in count: when full, the oldest id is forgotten first. Only verified routes may
//! deduplicate, so that nobody but the sender can claim an id first.
//!
//! A verified route whose preset sends a delivery id deduplicates by it even without a `dedup`
//! table, for [`default_window`]: a captured request replayed while its signature still
//! verifies is a duplicate. `dedup = false` turns that off.
//!
//! Dedup catches a sender's retries and redeliveries. It is not replay protection for senders
//! that sign neither a timestamp nor the id (GitHub, Shopify, GitLab, Bitbucket, Twilio, Square,
//! Intercom, PagerDuty): a captured request re-posted with a new id passes; for those, rely on
//! TLS, `allow_ips`, and the sender's own ids.
//!
//! An id is *claimed* while its first request is being accepted and *committed* when that
//! request gets 202; any other end (an error answer, a cancelled or failed request) releases it,
//! so a sender's retry after a 503 is not mistaken for a duplicate. A repeat that arrives while
//! the first is still being accepted gets 503 with `Retry-After`: its fate is not known yet.
//!
//! With a journal, each committed id is also written there (key `DEDUP`, expiring with the
//! window), so a delivery id seen before a restart is still a duplicate after it:
//! [`restore_dedup`] reads them back at start.
//!
//! Several routers on one NATS JetStream share a [`SharedWindow`] ([`nats`]: a key-value bucket
//! whose entries expire with the window): an id claimed on one router is a duplicate (or in
//! progress) on every other. A claim there that is neither committed nor released (its router
//! died) is in progress for a few seconds only, then taken over.

pub mod nats;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use http::HeaderMap;
use serde::{Deserialize, Serialize};

use crate::journal::{Batch, Journal, Key, Recovered, codec, space};

/// Longest key remembered; longer ones are not deduplicated.
pub const MAX_KEY_BYTES: usize = 256;

/// How long a route that does not configure `dedup` remembers its preset's delivery ids when
/// the preset signs no timestamp (GitHub, GitLab, ...): long enough for a quick replay or a
/// sender's retries, short enough that a redelivery asked for by hand later still goes through.
pub const UNTIMED_DEFAULT_WINDOW: Duration = Duration::from_secs(10 * 60);

/// Most ids a route that does not configure `dedup` remembers (as `dedup = {}`).
pub const DEFAULT_CAPACITY: usize = 100_000;

/// How long a route that does not configure `dedup` remembers its preset's delivery ids: twice
/// the signed timestamp's `tolerance` where the preset signs one (a request verifies while its
/// timestamp is within the tolerance either side of now, so a replay can pass for up to twice
/// that after the original arrived), [`UNTIMED_DEFAULT_WINDOW`] otherwise.
pub fn default_window(signed_tolerance: Option<Duration>) -> Duration {
    signed_tolerance.map_or(UNTIMED_DEFAULT_WINDOW, |tolerance| tolerance * 2)
}

/// Where a route's delivery id is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DedupKey {
    /// A request header (lower-case name).
    Header(String),
    /// The first of these request headers that is present (lower-case names): a sender that
    /// names its id differently in different products.
    AnyHeader(Vec<String>),
    /// A JSON pointer into the body (e.g. Stripe's `/id`).
    Pointer(String),
}

impl DedupKey {
    /// The delivery id preset `preset`'s sender sends, if it sends one.
    pub fn for_preset(preset: &str) -> Option<DedupKey> {
        let header = |name: &str| Some(Self::Header(name.to_owned()));
        let any = |names: &[&str]| {
            Some(Self::AnyHeader(
                names.iter().map(|&n| n.to_owned()).collect(),
            ))
        };
        let pointer = |pointer: &str| Some(Self::Pointer(pointer.to_owned()));
        match preset {
            "github" => header("x-github-delivery"),
            "shopify" => any(&["x-shopify-webhook-id", "shopify-webhook-id"]),
            "standard-webhooks" => any(&["webhook-id", "svix-id"]),
            "stripe" => pointer("/id"),
            "slack" => pointer("/event_id"),
            "gitlab" => any(&["idempotency-key", "x-gitlab-event-uuid"]),
            "bitbucket" => header("x-request-uuid"),
            "twilio" => header("i-twilio-idempotency-token"),
            "discord" => pointer("/id"),
            "linear" => header("linear-delivery"),
            "paddle" => pointer("/event_id"),
            "square" => pointer("/event_id"),
            "intercom" => pointer("/id"),
            "pagerduty" => pointer("/event/id"),
            _ => None,
        }
    }

    /// The id of a request, if it has a usable one.
    pub fn read(&self, headers: &HeaderMap, body: &[u8]) -> Option<String> {
        let key = match self {
            Self::Header(name) => headers.get(name)?.to_str().ok()?.trim().to_owned(),
            Self::AnyHeader(names) => names
                .iter()
                .find_map(|name| headers.get(name))?
                .to_str()
                .ok()?
                .trim()
                .to_owned(),
            Self::Pointer(pointer) => {
                let json: serde_json::Value = serde_json::from_slice(body).ok()?;
                match json.pointer(pointer)? {
                    serde_json::Value::String(text) => text.clone(),
                    serde_json::Value::Number(number) => number.to_string(),
                    _ => return None,
                }
            }
        };
        (!key.is_empty() && key.len() <= MAX_KEY_BYTES).then_some(key)
    }
}

/// What the shared window said of an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedClaim {
    /// Nobody had it: it is claimed for this request now.
    New,
    /// It was accepted (on any router) within the window, as this event.
    Duplicate(String),
    /// A request with this id is being accepted right now (on any router).
    InProgress,
    /// The shared window cannot be reached: the request cannot be checked.
    Unavailable(String),
}

/// A future of a [`SharedClaim`].
pub type SharedClaimFuture<'a> = Pin<Box<dyn Future<Output = SharedClaim> + Send + 'a>>;

/// A dedup window shared by several routers (one route's).
pub trait SharedWindow: Send + Sync + std::fmt::Debug {
    /// Claims `key` for `event_id`, or says who has it.
    fn claim<'a>(&'a self, key: &'a str, event_id: &'a str) -> SharedClaimFuture<'a>;
    /// Keeps the claim: its request was accepted.
    fn commit(&self, key: &str, event_id: &str);
    /// Gives the claim up: its request was not accepted.
    fn release(&self, key: &str, event_id: &str);
}

/// What a claim found.
#[derive(Debug)]
pub enum Claim<'a> {
    /// The id is new and now claimed: [`ClaimGuard::commit`] it once the request is accepted;
    /// dropping the guard uncommitted (any other answer, a cancelled request) releases it.
    New(ClaimGuard<'a>),
    /// The id was accepted within the window, as this event.
    Duplicate(String),
    /// A request with this id is being accepted right now; its outcome is not known yet.
    InProgress,
}

/// A claimed id, released when dropped unless committed.
#[derive(Debug)]
pub struct ClaimGuard<'a> {
    store: &'a DedupStore,
    key: String,
    event_id: String,
    committed: bool,
    /// The shared window the id is also claimed in, once it is.
    shared: Option<Arc<dyn SharedWindow>>,
}

impl ClaimGuard<'_> {
    /// Claims the id in the route's shared window too, if it has one: on `New` the guard
    /// commits or releases it there as well; any other answer releases the local claim.
    pub async fn claim_shared(mut self) -> Result<Self, SharedClaim> {
        let Some(shared) = self.store.shared.get().cloned() else {
            return Ok(self);
        };
        match shared.claim(&self.key, &self.event_id).await {
            SharedClaim::New => {
                self.shared = Some(shared);
                Ok(self)
            }
            other => Err(other),
        }
    }

    /// Keeps the id: its request was accepted.
    pub fn commit(mut self) {
        if let Some(shared) = &self.shared {
            shared.commit(&self.key, &self.event_id);
        }
        let mut inner = self.store.lock();
        if let Some(entry) = inner.entries.get_mut(&self.key)
            && entry.event_id == self.event_id
        {
            entry.committed = true;
        }
        drop(inner);
        self.committed = true;
        if let Some((journal, route)) = &self.store.journal {
            let window_ms = u64::try_from(self.store.window.as_millis()).unwrap_or(u64::MAX);
            let record = DedupRecord {
                route: route.clone(),
                key: std::mem::take(&mut self.key),
                event_id: std::mem::take(&mut self.event_id),
            };
            let mut batch = Batch::new();
            batch.put(
                Key {
                    space: space::DEDUP,
                    id: journal.next_id(),
                },
                &codec::to_bytes(&record),
                crate::journal::now_ms().saturating_add(window_ms).max(1),
            );
            journal.write_detached(batch);
        }
    }
}

impl Drop for ClaimGuard<'_> {
    fn drop(&mut self) {
        if !self.committed {
            if let Some(shared) = &self.shared {
                shared.release(&self.key, &self.event_id);
            }
            let mut inner = self.store.lock();
            if inner
                .entries
                .get(&self.key)
                .is_some_and(|entry| entry.event_id == self.event_id)
            {
                inner.entries.remove(&self.key);
                inner.compact(self.store.capacity);
            }
        }
    }
}

#[derive(Debug)]
struct Entry {
    event_id: String,
    at: Instant,
    committed: bool,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// Keys in claim order, with their claim time, for expiry and eviction. Records whose entry
    /// is gone or newer are skipped, and compacted away when they pile up.
    order: VecDeque<(String, Instant)>,
}

/// A committed id as the journal holds it.
#[derive(Debug, Serialize, Deserialize)]
struct DedupRecord {
    route: String,
    key: String,
    event_id: String,
}

/// Ids seen by one route.
#[derive(Debug)]
pub struct DedupStore {
    key: DedupKey,
    window: Duration,
    capacity: usize,
    inner: Mutex<Inner>,
    /// The journal committed ids are written to, and this store's route id.
    journal: Option<(Journal, String)>,
    /// The window shared with other routers, if any.
    shared: OnceLock<Arc<dyn SharedWindow>>,
}

impl DedupStore {
    /// A store reading ids from `key`, remembering at most `capacity` for `window`.
    pub fn new(key: DedupKey, window: Duration, capacity: usize) -> DedupStore {
        DedupStore {
            key,
            window,
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
            journal: None,
            shared: OnceLock::new(),
        }
    }

    /// Shares the window with other routers through `shared` (set once, at start).
    pub fn share(&self, shared: Arc<dyn SharedWindow>) {
        let _ = self.shared.set(shared);
    }

    /// How long ids are remembered.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Also writes committed ids to `journal`, under route `route`.
    pub fn journaled(mut self, journal: Option<Journal>, route: &str) -> DedupStore {
        self.journal = journal.map(|journal| (journal, route.to_owned()));
        self
    }

    /// Remembers `id` as accepted as `event_id`, for what is left of its window: it expires
    /// at `expires_ms` (Unix milliseconds).
    fn restore(&self, id: String, event_id: String, expires_ms: u64, now: Instant) {
        let left = Duration::from_millis(expires_ms.saturating_sub(crate::journal::now_ms()));
        let at = now
            .checked_sub(self.window.saturating_sub(left))
            .unwrap_or(now);
        let mut inner = self.lock();
        inner.make_room(self.capacity);
        inner.order.push_back((id.clone(), at));
        inner.entries.insert(
            id,
            Entry {
                event_id,
                at,
                committed: true,
            },
        );
    }

    /// Where ids are read from.
    pub fn key(&self) -> &DedupKey {
        &self.key
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claims `id` for `event_id` as of `now`, or says who has it.
    pub fn claim(&self, id: &str, event_id: &str, now: Instant) -> Claim<'_> {
        let mut inner = self.lock();
        inner.expire(now, self.window);
        if let Some(entry) = inner.entries.get(id) {
            return if entry.committed {
                Claim::Duplicate(entry.event_id.clone())
            } else {
                Claim::InProgress
            };
        }
        inner.make_room(self.capacity);
        inner.entries.insert(
            id.to_owned(),
            Entry {
                event_id: event_id.to_owned(),
                at: now,
                committed: false,
            },
        );
        inner.order.push_back((id.to_owned(), now));
        inner.compact(self.capacity);
        Claim::New(ClaimGuard {
            store: self,
            key: id.to_owned(),
            event_id: event_id.to_owned(),
            committed: false,
            shared: None,
        })
    }

    /// Ids remembered now (claimed or accepted).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads the ids `recovered` holds back into the stores of their routes (at start); `store`
/// gives a route's store by id. Returns how many ids were restored.
pub fn restore_dedup<'a>(
    recovered: &mut Recovered,
    store: impl Fn(&str) -> Option<&'a DedupStore>,
) -> usize {
    let now = Instant::now();
    let mut count = 0;
    for (_, value, expires_ms) in recovered.take_space_with_expiry(space::DEDUP) {
        let Ok(record) = codec::from_bytes::<DedupRecord>(&value) else {
            continue;
        };
        if let Some(dedup) = store(&record.route) {
            dedup.restore(record.key, record.event_id, expires_ms, now);
            count += 1;
        }
    }
    count
}

impl Inner {
    /// Forgets the oldest ids until there is room for one more under `capacity`.
    fn make_room(&mut self, capacity: usize) {
        while self.entries.len() >= capacity {
            let Some((oldest, at)) = self.order.pop_front() else {
                break;
            };
            if self
                .entries
                .get(&oldest)
                .is_some_and(|entry| entry.at == at)
            {
                self.entries.remove(&oldest);
            }
        }
    }

    fn expire(&mut self, now: Instant, window: Duration) {
        while let Some((key, at)) = self.order.front() {
            let stale_place = self.entries.get(key).is_none_or(|entry| entry.at != *at);
            if !stale_place && now.duration_since(*at) < window {
                break;
            }
            if let Some((key, at)) = self.order.pop_front()
                && self.entries.get(&key).is_some_and(|entry| entry.at == at)
            {
                self.entries.remove(&key);
            }
        }
    }

    /// Drops records of released ids once they outnumber the live ones, so that memory stays
    /// bounded by `capacity` even when most claims are released.
    fn compact(&mut self, capacity: usize) {
        if self.order.len() > 2 * capacity.max(self.entries.len()) + 16 {
            let entries = &self.entries;
            self.order
                .retain(|(key, at)| entries.get(key).is_some_and(|entry| entry.at == *at));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn store(capacity: usize) -> DedupStore {
        DedupStore::new(
            DedupKey::Header("x-id".into()),
            Duration::from_secs(60),
            capacity,
        )
    }

    fn accept(store: &DedupStore, id: &str, event: &str, now: Instant) {
        match store.claim(id, event, now) {
            Claim::New(guard) => guard.commit(),
            other => panic!("{id}: expected a new claim, got {other:?}"),
        }
    }

    #[test]
    fn a_repeat_within_the_window_is_a_duplicate_of_the_accepted_one() {
        let store = store(10);
        let t0 = Instant::now();
        accept(&store, "a", "evt-1", t0);
        assert!(matches!(
            store.claim("a", "evt-2", t0 + Duration::from_secs(59)),
            Claim::Duplicate(id) if id == "evt-1"
        ));
        accept(&store, "a", "evt-3", t0 + Duration::from_secs(60));
    }

    #[test]
    fn a_claim_in_progress_is_neither_new_nor_a_duplicate_and_is_released_when_dropped() {
        let store = store(10);
        let t0 = Instant::now();
        let guard = store.claim("a", "evt-1", t0);
        assert!(matches!(store.claim("a", "evt-2", t0), Claim::InProgress));
        drop(guard);
        assert!(store.is_empty(), "an uncommitted claim is released");
        accept(&store, "a", "evt-3", t0);
    }

    #[test]
    fn capacity_evicts_the_oldest_and_released_claims_leave_no_trace() {
        let store = store(2);
        let t0 = Instant::now();
        accept(&store, "a", "evt-1", t0);
        accept(&store, "b", "evt-2", t0);
        accept(&store, "c", "evt-3", t0);
        assert_eq!(store.len(), 2);
        accept(&store, "a", "evt-4", t0);
        assert!(matches!(store.claim("c", "evt-5", t0), Claim::Duplicate(id) if id == "evt-3"));
        for n in 0..1_000 {
            drop(store.claim(&format!("released-{n}"), "evt", t0));
        }
        assert!(store.len() <= 2, "never more than capacity");
        assert!(
            store.lock().order.len() <= 2 * 2 + 17,
            "released records are compacted"
        );
    }

    #[test]
    fn ids_come_from_a_header_or_a_json_pointer() {
        let mut headers = HeaderMap::new();
        headers.insert("x-github-delivery", HeaderValue::from_static(" 72d3162e "));
        let github = DedupKey::for_preset("github").unwrap();
        assert_eq!(github.read(&headers, b""), Some("72d3162e".into()));
        let stripe = DedupKey::for_preset("stripe").unwrap();
        assert_eq!(
            stripe.read(&headers, br#"{"id":"evt_1"}"#),
            Some("evt_1".into())
        );
        assert_eq!(stripe.read(&headers, br#"{"id":{}}"#), None);
        assert_eq!(stripe.read(&headers, b"not json"), None);
        let long = format!(r#"{{"id":"{}"}}"#, "x".repeat(MAX_KEY_BYTES + 1));
        assert_eq!(stripe.read(&headers, long.as_bytes()), None);
        assert_eq!(DedupKey::for_preset("zoom"), None);
        assert_eq!(DedupKey::for_preset("hmac"), None);
    }

    #[test]
    fn presets_read_their_senders_ids_under_every_name_they_use() {
        let mut svix = HeaderMap::new();
        svix.insert("svix-id", HeaderValue::from_static("msg_2"));
        let mut both = svix.clone();
        both.insert("webhook-id", HeaderValue::from_static("msg_1"));
        let standard = DedupKey::for_preset("standard-webhooks").unwrap();
        assert_eq!(standard.read(&svix, b""), Some("msg_2".into()));
        assert_eq!(standard.read(&both, b""), Some("msg_1".into()));
        assert_eq!(standard.read(&HeaderMap::new(), b""), None);
        let mut shopify = HeaderMap::new();
        shopify.insert("shopify-webhook-id", HeaderValue::from_static("b54557e4"));
        assert_eq!(
            DedupKey::for_preset("shopify").unwrap().read(&shopify, b""),
            Some("b54557e4".into())
        );
        let body = br#"{"event":{"id":"01DEN1HFHR6FB3FPU8OE2U1LJR"},"event_id":"evt_9","id":"x"}"#;
        let none = HeaderMap::new();
        for (preset, id) in [
            ("pagerduty", "01DEN1HFHR6FB3FPU8OE2U1LJR"),
            ("paddle", "evt_9"),
            ("square", "evt_9"),
            ("slack", "evt_9"),
            ("intercom", "x"),
            ("discord", "x"),
        ] {
            let key = DedupKey::for_preset(preset).unwrap();
            assert_eq!(key.read(&none, body), Some(id.into()), "{preset}");
        }
        let mut gitlab = HeaderMap::new();
        gitlab.insert("x-gitlab-event-uuid", HeaderValue::from_static("e-1"));
        assert_eq!(
            DedupKey::for_preset("gitlab").unwrap().read(&gitlab, b""),
            Some("e-1".into())
        );
        gitlab.insert("idempotency-key", HeaderValue::from_static("k-1"));
        assert_eq!(
            DedupKey::for_preset("gitlab").unwrap().read(&gitlab, b""),
            Some("k-1".into())
        );
    }
}
