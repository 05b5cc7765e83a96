//! Event inspection: a bounded record of recent events, what their plugins decided and every
//! delivery attempt, served by `GET /events` and `GET /events/{id}` (`webhook-router events`).
//!
//! - [`record`]: one event's record (id, route, receipt, the sender's delivery id, plugin
//!   verdicts, each destination's attempts and outcome, the body where the route keeps it);
//! - [`store`]: the records in memory, by id in a concurrent map, in arrival order in a ring
//!   that bounds them (`[inspect] events`, `max_age`), listed newest first by cursor;
//! - `saver`: the records in the journal, when there is one, so they survive a restart.
//!
//! The [`Inspector`] is the handle the ingress and delivery call at each step; with the record
//! off (`events = 0`) every call does nothing.

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
use crate::supervise::Supervisor;

pub use record::{Decision, DeliveryOutcome, EventRecord, PluginVerdict};
pub use store::{Cursor, EventStore, ListQuery, Page};

use record::{Attempt, StoredBody};

/// What the record keeps of one route.
#[derive(Debug)]
struct RouteSettings {
    /// The route's id, shared by its records.
    id: Arc<str>,
    /// Keep bodies (`inspect_bodies = true`).
    bodies: bool,
    /// Where the sender's delivery id is, when the route has no `dedup` (which reads it itself)
    /// and its verify preset names one.
    delivery_key: Option<DedupKey>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<EventStore>,
    routes: HashMap<String, RouteSettings>,
}

/// The handle through which events are recorded. Cheap to clone; does nothing when the record
/// is off.
#[derive(Debug, Clone, Default)]
pub struct Inspector {
    inner: Option<Arc<Inner>>,
}

impl Inspector {
    /// The record for `config` (off when `[inspect] events = 0`), kept in `journal` when there
    /// is one: the records it holds are read back from `recovered` first, and a writer task is
    /// started under `supervisor`.
    pub fn open(
        config: &Config,
        journal: Option<(&Journal, &mut Recovered)>,
        metrics: &Metrics,
        supervisor: &Supervisor,
    ) -> Self {
        let settings = &config.inspect;
        if settings.events == 0 {
            return Self::default();
        }
        let (saver, restored) = match journal {
            Some((journal, recovered)) => {
                let restored = saver::recover(recovered, journal);
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
        if let Some(inbox) = inbox {
            saver::start(&store, inbox, supervisor);
        }
        if restored_count > 0 {
            tracing::info!(
                records = store.len(),
                "inspect: event records read back from the journal"
            );
        }
        let routes = config
            .routes
            .iter()
            .map(|route| (route.id.clone(), RouteSettings::of(route)))
            .collect();
        Self {
            inner: Some(Arc::new(Inner { store, routes })),
        }
    }

    /// The record, if it is on.
    pub fn store(&self) -> Option<Arc<EventStore>> {
        self.inner.as_ref().map(|inner| Arc::clone(&inner.store))
    }

    /// Records a received event; `delivery_id` is the sender's, if the route's dedup read it.
    /// (Written to the journal with the decision that follows at once, not before.)
    pub fn received(&self, event: &Event, delivery_id: Option<&str>) {
        let (Some(inner), Some(id)) = (&self.inner, parse_id(&event.id)) else {
            return;
        };
        let route = inner.routes.get(&event.route);
        let route_id = route.map_or_else(|| Arc::from(event.route.as_str()), |r| Arc::clone(&r.id));
        let delivery_id = delivery_id.map(str::to_owned).or_else(|| {
            route
                .and_then(|r| r.delivery_key.as_ref())
                .and_then(|key| key.read(&event.headers, &event.body))
        });
        let body = route
            .is_some_and(|r| r.bodies)
            .then(|| StoredBody(event.body.clone()));
        let journal_key = inner.store.saver().map_or(0, saver::Saver::new_key);
        inner.store.insert(EventRecord {
            id,
            route: route_id,
            received_ms: event.received_at_ms(),
            delivery_id,
            decision: Decision::Received,
            verdicts: Vec::new(),
            destinations: Vec::new(),
            body,
            journal_key,
        });
    }

    /// Records what the ingress decided for event `id`, and its plugins' verdicts.
    pub fn decided(&self, id: &str, verdicts: Vec<PluginVerdict>, decision: Decision) {
        self.update(id, true, |record| {
            record.verdicts = verdicts;
            record.decision = decision;
        });
    }

    /// Records that event `id` was taken off the queue for `destinations` (again, for a replay
    /// or after a restart: their deliveries are pending once more). Written to the journal
    /// with the attempt that follows: a record read back without it still shows the event
    /// pending, and it is queued again.
    pub fn queued<S: AsRef<str>>(&self, id: &str, destinations: impl IntoIterator<Item = S>) {
        self.update(id, false, |record| {
            for name in destinations {
                record.destination(name.as_ref()).outcome = DeliveryOutcome::Pending;
            }
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
            (None, Some(verifier)) => DedupKey::for_preset(verifier.preset()),
            _ => None,
        };
        Self {
            id: Arc::from(route.id.as_str()),
            bodies: route.inspect_bodies,
            delivery_key,
        }
    }
}

/// An event id (a UUID) as the record's key.
pub fn parse_id(id: &str) -> Option<u128> {
    uuid::Uuid::try_parse(id).ok().map(|id| id.as_u128())
}
