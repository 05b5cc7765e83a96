//! Keyed events for the ordered-delivery tests (`order_by = "/key"`): bodies
//! `{"key":"k<key>","n":<n>}`, each key's events posted one after the other until each is 202'd,
//! and the first deliveries a sink received per key, to compare with the order of acceptance.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::task::JoinSet;

use crate::numbered::{PATIENCE, client};
use crate::sink::Sink;
use crate::wait::wait_until;

/// The posting tasks [`post_keyed`] started, and how many of their events were 202'd so far.
#[derive(Debug)]
pub struct KeyedPosts {
    senders: JoinSet<()>,
    accepted: Arc<AtomicU64>,
    total: u64,
}

impl KeyedPosts {
    /// How many events were 202'd so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Acquire)
    }

    /// Waits (at most [`PATIENCE`]) until at least half the events were 202'd.
    pub async fn wait_half_accepted(&self) {
        wait_until(
            "half the events accepted",
            PATIENCE,
            || async { self.accepted() },
            |&count| count >= self.total / 2,
        )
        .await;
    }

    /// Waits for every task to end and asserts that every event was 202'd.
    pub async fn finish(mut self) {
        while let Some(sent) = self.senders.join_next().await {
            sent.expect("a sender panicked");
        }
        assert_eq!(self.accepted(), self.total);
    }
}

/// Posts `per_key` events for each of `keys` keys, one task a key, each event sent again until
/// it is 202'd (a post a kill cut off goes again, to whichever router is left). Event `n` of key
/// `key` goes to `ingresses[(key + n) % len]`, read at each try so that a test can swap the
/// routers under it.
pub fn post_keyed(keys: u64, per_key: u64, ingresses: &Arc<RwLock<Vec<String>>>) -> KeyedPosts {
    let accepted = Arc::new(AtomicU64::new(0));
    let mut senders = JoinSet::new();
    for key in 0..keys {
        let (ingresses, accepted) = (Arc::clone(ingresses), Arc::clone(&accepted));
        senders.spawn(async move {
            let client = client();
            for n in 0..per_key {
                loop {
                    let ingress = {
                        let ingresses = ingresses.read().expect("lock");
                        ingresses[(key + n) as usize % ingresses.len()].clone()
                    };
                    let answer = client
                        .post(format!("http://{ingress}/hooks"))
                        .header("content-type", "application/json")
                        .body(format!("{{\"key\":\"k{key}\",\"n\":{n}}}"))
                        .send()
                        .await;
                    if answer.is_ok_and(|answer| answer.status() == 202) {
                        accepted.fetch_add(1, Ordering::AcqRel);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
    }
    KeyedPosts {
        senders,
        accepted,
        total: keys * per_key,
    }
}

/// Each key's event numbers in the order of their first delivery to `sink` (a redelivery is not
/// counted again), and how many distinct events were delivered.
pub fn first_deliveries(sink: &Sink) -> (BTreeMap<String, Vec<u64>>, u64) {
    let mut first: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for received in sink.delivered() {
        let body: serde_json::Value = serde_json::from_slice(&received.body).expect("json");
        let key = body["key"].as_str().expect("key").to_owned();
        let n = body["n"].as_u64().expect("n");
        if seen.insert((key.clone(), n)) {
            first.entry(key).or_default().push(n);
        }
    }
    (first, seen.len() as u64)
}

/// Asserts that `sink` got all `keys` keys, and each key's events `0..per_key` first delivered
/// in that order (the order they were accepted in).
pub fn assert_first_deliveries_in_order(sink: &Sink, keys: u64, per_key: u64) {
    let (first, _) = first_deliveries(sink);
    assert_eq!(first.len() as u64, keys);
    let in_order: Vec<u64> = (0..per_key).collect();
    for (key, delivered) in &first {
        assert_eq!(
            delivered, &in_order,
            "key {key}: first deliveries out of order"
        );
    }
}
