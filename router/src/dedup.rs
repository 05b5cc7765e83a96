//! Deduplication: senders retry, and a delivery id seen twice within the window is the same
//! webhook. A route's `dedup` table names where the id is (a header, or a JSON pointer into the
//! body; by default the verified preset's delivery id), and the store remembers ids for a window,
//! bounded in count: when full, the oldest id is forgotten first.
//!
//! An id is *claimed* when its first request is being accepted and *released* if that request
//! ends in anything but 202, so a sender's retry after a 503 is not mistaken for a duplicate.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::HeaderMap;

/// Longest key remembered; longer ones are not deduplicated.
pub const MAX_KEY_BYTES: usize = 256;

/// Where a route's delivery id is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DedupKey {
    /// A request header (lower-case name).
    Header(String),
    /// A JSON pointer into the body (e.g. Stripe's `/id`).
    Pointer(String),
}

impl DedupKey {
    /// The delivery id preset `preset` sends, if it has one.
    pub fn for_preset(preset: &str) -> Option<DedupKey> {
        match preset {
            "github" => Some(Self::Header("x-github-delivery".to_owned())),
            "shopify" => Some(Self::Header("x-shopify-webhook-id".to_owned())),
            "standard-webhooks" => Some(Self::Header("webhook-id".to_owned())),
            "stripe" => Some(Self::Pointer("/id".to_owned())),
            _ => None,
        }
    }

    /// The id of a request, if it has a usable one.
    pub fn read(&self, headers: &HeaderMap, body: &[u8]) -> Option<String> {
        let key = match self {
            Self::Header(name) => headers.get(name)?.to_str().ok()?.trim().to_owned(),
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

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The id is new: it is now claimed for `event_id`.
    New,
    /// The id was seen within the window, for this event.
    Duplicate(String),
}

#[derive(Debug)]
struct Entry {
    event_id: String,
    at: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// Keys in claim order, with their claim time, for expiry and eviction.
    order: VecDeque<(String, Instant)>,
}

/// Ids seen by one route.
#[derive(Debug)]
pub struct DedupStore {
    key: DedupKey,
    window: Duration,
    capacity: usize,
    inner: Mutex<Inner>,
}

impl DedupStore {
    /// A store reading ids from `key`, remembering at most `capacity` for `window`.
    pub fn new(key: DedupKey, window: Duration, capacity: usize) -> DedupStore {
        DedupStore {
            key,
            window,
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Where ids are read from.
    pub fn key(&self) -> &DedupKey {
        &self.key
    }

    /// Claims `id` for `event_id` as of `now`, or says which event already has it.
    pub fn claim(&self, id: &str, event_id: &str, now: Instant) -> Claim {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.expire(now, self.window);
        if let Some(entry) = inner.entries.get(id) {
            return Claim::Duplicate(entry.event_id.clone());
        }
        while inner.entries.len() >= self.capacity {
            let Some((oldest, at)) = inner.order.pop_front() else {
                break;
            };
            if inner
                .entries
                .get(&oldest)
                .is_some_and(|entry| entry.at == at)
            {
                inner.entries.remove(&oldest);
            }
        }
        inner.entries.insert(
            id.to_owned(),
            Entry {
                event_id: event_id.to_owned(),
                at: now,
            },
        );
        inner.order.push_back((id.to_owned(), now));
        Claim::New
    }

    /// Forgets `id` claimed for `event_id` (its request was not accepted).
    pub fn release(&self, id: &str, event_id: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner
            .entries
            .get(id)
            .is_some_and(|e| e.event_id == event_id)
        {
            inner.entries.remove(id);
            // Its place in `order` goes when it reaches the front.
        }
    }

    /// Ids remembered now.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn a_second_claim_within_the_window_is_a_duplicate_of_the_first() {
        let store = DedupStore::new(DedupKey::Header("x-id".into()), Duration::from_secs(60), 10);
        let t0 = Instant::now();
        assert_eq!(store.claim("a", "evt-1", t0), Claim::New);
        assert_eq!(
            store.claim("a", "evt-2", t0 + Duration::from_secs(59)),
            Claim::Duplicate("evt-1".into())
        );
        assert_eq!(
            store.claim("a", "evt-3", t0 + Duration::from_secs(60)),
            Claim::New
        );
    }

    #[test]
    fn released_ids_can_be_claimed_again_and_capacity_evicts_the_oldest() {
        let store = DedupStore::new(DedupKey::Header("x-id".into()), Duration::from_secs(60), 2);
        let t0 = Instant::now();
        assert_eq!(store.claim("a", "evt-1", t0), Claim::New);
        store.release("a", "evt-1");
        assert_eq!(store.claim("a", "evt-2", t0), Claim::New);
        assert_eq!(store.claim("b", "evt-3", t0), Claim::New);
        assert_eq!(store.claim("c", "evt-4", t0), Claim::New);
        assert_eq!(store.len(), 2);
        assert_eq!(
            store.claim("a", "evt-5", t0),
            Claim::New,
            "the oldest was evicted"
        );
        assert_eq!(
            store.claim("c", "evt-6", t0),
            Claim::Duplicate("evt-4".into())
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
        assert_eq!(DedupKey::for_preset("slack"), None);
    }
}
