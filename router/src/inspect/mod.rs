//! Event inspection: a bounded record of recent events, what their plugins decided and every
//! delivery attempt, served by `GET /events` and `GET /events/{id}` (`webhook-router events`).
//!
//! - [`record`]: one event's record (id, route, receipt, the sender's delivery id, plugin
//!   verdicts, each destination's attempts and outcome, the body where the route keeps it);
//! - [`store`]: the records in memory, by id in a concurrent map, in arrival order in a ring
//!   that bounds them (`[inspect] events`, `max_age`), listed newest first by cursor;
//! - `saver`: the records in the journal, when there is one, so they survive a restart;
//! - `name`: the route and destination names records hold, interned.
//!
//! The [`Inspector`] is the handle the ingress and delivery call at each step; with the record
//! off (`events = 0`) every call does nothing.

mod name;
pub mod record;
mod saver;
pub mod store;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::{Config, RouteConfig};
use crate::dedup::DedupKey;
use crate::delivery::attempt::AttemptOutcome;
use crate::event::{Event, unix_millis};
use crate::journal::{Journal, Recovered};
use crate::metrics::Metrics;
use crate::queue::ResumedEvent;
use crate::supervise::Supervisor;

pub use record::{Decision, DeliveryOutcome, EventRecord, Name, PluginVerdict};
pub use store::{Cursor, EventStore, ListQuery, Page};

use record::{Attempt, Inline, StoredBody};

/// A table by route or destination name: names come from the config, not from senders, so
/// the cheap id hasher serves (SipHash cost about as much as the rest of a lookup here).
type Names<T> = HashMap<String, T, crate::id_hash::IdHash>;

/// What the record keeps of one route.
#[derive(Debug)]
struct RouteSettings {
    /// The route's id.
    id: Name,
    /// Keep bodies (`inspect_bodies = true`).
    bodies: bool,
    /// Where the sender's delivery id is: the route's `dedup` key, or else its verify
    /// preset's, if it names one.
    delivery_key: Option<DedupKey>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<EventStore>,
    routes: Names<RouteSettings>,
}

/// The handle through which events are recorded. Cheap to clone; does nothing when the record
/// is off.
#[derive(Debug, Clone, Default)]
pub struct Inspector {
    inner: Option<Arc<Inner>>,
}

impl Inspector {
    /// The record for `config` (off when `[inspect] events = 0`), kept in `journal` when there
    /// is one: the records it holds are read back from `recovered` first, the events in
    /// `resumed` that have none get theirs rebuilt from the event (see [`Inspector::decided`]),
    /// and a writer task is started under `supervisor`.
    pub fn open(
        config: &Config,
        journal: Option<(&Journal, &mut Recovered, &[ResumedEvent])>,
        metrics: &Metrics,
        supervisor: &Supervisor,
    ) -> Self {
        let settings = &config.inspect;
        if settings.events == 0 {
            return Self::default();
        }
        let routes: Names<RouteSettings> = config
            .routes
            .iter()
            .map(|route| (route.id.clone(), RouteSettings::of(route)))
            .collect();
        let (saver, restored) = match journal {
            Some((journal, recovered, resumed)) => {
                let restored = saver::recover(recovered, journal);
                let known = |name: &str| config.destinations.contains_key(name);
                let restored = with_rebuilt(restored, resumed, &routes, &known);
                (Some(saver::Saver::new(journal.clone())), restored)
            }
            None => (None, Vec::new()),
        };
        let (saver, inbox) = saver.unzip();
        let store = Arc::new(EventStore::new(settings.events, settings.max_age.0, saver));
        // Set at each render rather than at each event: the hot path touches no shared gauge.
        let (held, unsaved) = metrics.inspect();
        let shown = Arc::downgrade(&store);
        metrics.on_render(move || {
            if let Some(store) = shown.upgrade() {
                held.set(store.len() as f64);
                unsaved.set(store.saver().map_or(0, saver::Saver::unsaved) as f64);
            }
        });
        let restored_count = restored.len();
        for record in restored {
            store.insert(record);
        }
        // Inserted with their own receipts as the clock: those too old by now go.
        store.evict_too_old();
        if let Some(inbox) = inbox {
            saver::start(&store, inbox, supervisor);
        }
        if restored_count > 0 {
            tracing::info!(
                records = store.len(),
                "inspect: event records read back from the journal"
            );
        }
        Self {
            inner: Some(Arc::new(Inner { store, routes })),
        }
    }

    /// The record, if it is on.
    pub fn store(&self) -> Option<Arc<EventStore>> {
        self.inner.as_ref().map(|inner| Arc::clone(&inner.store))
    }

    /// Whether the record is on.
    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    /// Records a received event; `delivery_id` is the sender's, if the route's dedup read it.
    /// An event of a route without plugins has nothing left to decide: it is recorded as
    /// queued at once for the destinations `queued_to` names, and [`Inspector::decided`] is
    /// called only if the queue refuses it; `None` while plugins are to decide. (Written to
    /// the journal with the decision that follows, if at all, not before.)
    pub fn received<N>(&self, event: &Event, delivery_id: Option<&str>, queued_to: Option<N>)
    where
        N: IntoIterator<Item = Name>,
    {
        if let Some(inner) = &self.inner
            && let Some(mut record) = record_of(event, delivery_id, &inner.routes)
        {
            if let Some(names) = queued_to {
                record.decision = Decision::Queued;
                record.queued_to(names);
            }
            inner.store.insert(record);
        }
    }

    /// Records what the ingress decided for event `id`, its plugins' verdicts, and the
    /// destinations `queued_to` names if it was queued (a refused event keeps none).
    ///
    /// An event queued without plugin verdicts is not written to the journal here: the
    /// journaled event holds every fact of its record until its first attempt (id, route,
    /// receipt, headers with the delivery id, destinations, body), so the record is rebuilt
    /// from it at start ([`Inspector::open`]) and written first at that attempt. A record
    /// evicted before it costs the journal neither a put nor a delete.
    pub fn decided(
        &self,
        id: &str,
        verdicts: Vec<PluginVerdict>,
        decision: Decision,
        queued_to: impl IntoIterator<Item = Name>,
    ) {
        let save = !(verdicts.is_empty() && decision == Decision::Queued);
        self.update(id, save, |record| {
            record.verdicts = verdicts;
            if decision == Decision::Queued {
                record.queued_to(queued_to);
            } else {
                record.destinations.clear();
            }
            record.decision = decision;
        });
    }

    /// Records that event `id` was queued again for `destination` (a dead letter replayed):
    /// its delivery there is pending once more. Written to the journal with the attempt that
    /// follows: a record read back without it is set pending again at start, from the
    /// journaled event ([`Inspector::open`]).
    pub fn requeued(&self, id: &str, destination: &str) {
        self.update(id, false, |record| {
            record.destination(destination).outcome = DeliveryOutcome::Pending;
        });
    }

    /// Records an attempt at delivering event `id` to `destination`, started at `started` and
    /// taking `took`.
    pub fn attempt(
        &self,
        id: &str,
        destination: &str,
        started: SystemTime,
        took: Duration,
        outcome: &AttemptOutcome,
    ) {
        let (status, error) = match outcome {
            AttemptOutcome::Delivered { status } => (Some(*status), None),
            AttemptOutcome::Retry { status, error, .. }
            | AttemptOutcome::Permanent { status, error } => (*status, Some(error.as_str())),
        };
        let attempt = Attempt::new(unix_millis(started), took, status, error);
        self.update(id, true, |record| {
            let delivery = record.destination(destination);
            delivery.attempts.push(attempt);
            if matches!(outcome, AttemptOutcome::Delivered { .. }) {
                delivery.outcome = DeliveryOutcome::Delivered;
            }
        });
    }

    /// Records that delivering event `id` to `destination` failed for good.
    pub fn dead_lettered(&self, id: &str, destination: &str) {
        self.update(id, true, |record| {
            record.destination(destination).outcome = DeliveryOutcome::DeadLettered;
        });
    }

    /// Waits until every change recorded so far is in the journal (at shutdown, before the
    /// journal closes).
    pub async fn settle(&self) {
        if let Some(saver) = self.inner.as_ref().and_then(|i| i.store.saver()) {
            saver.settle().await;
        }
    }

    fn update(&self, id: &str, save: bool, change: impl FnOnce(&mut EventRecord)) {
        if let (Some(inner), Some(id)) = (&self.inner, parse_id(id)) {
            inner.store.update(id, save, change);
        }
    }
}

impl RouteSettings {
    fn of(route: &RouteConfig) -> Self {
        let delivery_key = match (&route.dedup, &route.verify) {
            (Some(dedup), _) => Some(dedup.key.clone()),
            (None, Some(verifier)) => DedupKey::for_preset(verifier.preset()),
            (None, None) => None,
        };
        Self {
            id: Name::intern(&route.id),
            bodies: route.inspect_bodies,
            delivery_key,
        }
    }
}

/// The record of `event` as it is received (`delivery_id`: the sender's, if already read);
/// `None` if its id is not a UUID.
fn record_of(
    event: &Event,
    delivery_id: Option<&str>,
    routes: &Names<RouteSettings>,
) -> Option<EventRecord> {
    let id = parse_id(&event.id)?;
    let route = routes.get(&event.route);
    let route_id = route.map_or_else(|| Name::intern(&event.route), |r| r.id);
    let delivery_id = delivery_id.map(str::to_owned).or_else(|| {
        route
            .and_then(|r| r.delivery_key.as_ref())
            .and_then(|key| key.read(&event.headers, &event.body))
    });
    let body = route
        .is_some_and(|r| r.bodies)
        .then(|| StoredBody(event.body.clone()));
    Some(EventRecord {
        id,
        route: route_id,
        received_ms: event.received_at_ms(),
        delivery_id,
        decision: Decision::Received,
        verdicts: Vec::new(),
        destinations: Inline::new(),
        body,
        journal_key: 0,
    })
}

/// `restored` (the records read back from the journal) with a record rebuilt for each event
/// of `resumed` that has none there (queued without plugins, and not yet attempted: see
/// [`Inspector::decided`]), oldest first. Each resumed event's destinations without a final
/// outcome are pending in its record (a replay, say, queued it again since the record was
/// written), or dead-lettered if the config no longer has them (`known` says which it has),
/// as the start does with their deliveries.
fn with_rebuilt(
    mut records: Vec<EventRecord>,
    resumed: &[ResumedEvent],
    routes: &Names<RouteSettings>,
    known: &dyn Fn(&str) -> bool,
) -> Vec<EventRecord> {
    let mut held: HashMap<u128, usize, crate::id_hash::IdHash> = records
        .iter()
        .enumerate()
        .map(|(index, record)| (record.id, index))
        .collect();
    let before = records.len();
    for resumed in resumed {
        let Some(id) = parse_id(&resumed.event.id) else {
            continue;
        };
        let index = match held.get(&id) {
            Some(&index) => index,
            None => {
                let Some(record) = record_of(&resumed.event, None, routes) else {
                    continue;
                };
                records.push(EventRecord {
                    decision: Decision::Queued,
                    ..record
                });
                held.insert(id, records.len() - 1);
                records.len() - 1
            }
        };
        let pending = resumed
            .destinations
            .iter()
            .zip(&resumed.progress)
            .filter(|(_, progress)| !progress.done);
        for (name, _) in pending {
            records[index].destination(name).outcome = if known(name) {
                DeliveryOutcome::Pending
            } else {
                DeliveryOutcome::DeadLettered
            };
        }
    }
    if records.len() > before {
        records.sort_unstable_by_key(|record| (record.received_ms, record.id));
    }
    records
}

/// An event id (a UUID) as the record's key.
pub fn parse_id(id: &str) -> Option<u128> {
    uuid::Uuid::try_parse(id).ok().map(|id| id.as_u128())
}
