//! The ingress's refusal log: what it writes when it turns a request away (403, 429, 401, 503),
//! bounded however many requests are refused.
//!
//! The first refusal of a route for a [`Reason`] is logged in full, with its cause. Later ones
//! for the same route and reason are only counted here (the metrics count every request, by
//! route and status), and every [`SUMMARY_INTERVAL`] one line per reason gives how many were not
//! logged, by route. A route and reason with nothing left to summarise at a summary is logged in
//! full again at its next refusal, so a new episode starts with its cause. Under a flood this
//! writes one line per route and reason, then one per reason per interval, where it used to
//! write one per request.
//!
//! The hot path is a relaxed atomic load, and an atomic add once the first line is written: no
//! lock, no allocation, and the cause is formatted only when it is logged.

use std::fmt::{Display, Write as _};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::queue::EnqueueError;

/// How often the refusals not logged one by one are summarised (one line per reason).
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// Why the ingress refused a request: the key of the refusal log, with its level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// 403: the client's address is not in the route's `allow_ips`.
    AddressNotAllowed,
    /// 429: over the route's `rate_limit`.
    RateLimited,
    /// 401: the signature is missing, wrong or stale.
    VerificationFailed,
    /// 503: the shared (NATS) dedup window cannot be reached.
    DedupUnavailable,
    /// 503: the router holds `queue_capacity` events.
    QueueFull,
    /// 503: a destination holds its `max_held` events.
    DestinationFull,
    /// 503: the store (journal, NATS stream) is at its `max_bytes`.
    NoSpace,
    /// 503: the event could not be stored (a failed write).
    NotStored,
}

/// How many reasons there are: the width of each route's row.
const REASONS: usize = 8;

impl Reason {
    /// Every reason, in the order of a route's row.
    const ALL: [Reason; REASONS] = [
        Reason::AddressNotAllowed,
        Reason::RateLimited,
        Reason::VerificationFailed,
        Reason::DedupUnavailable,
        Reason::QueueFull,
        Reason::DestinationFull,
        Reason::NoSpace,
        Reason::NotStored,
    ];

    /// The reason's name in log lines.
    pub fn label(self) -> &'static str {
        match self {
            Reason::AddressNotAllowed => "address_not_allowed",
            Reason::RateLimited => "rate_limited",
            Reason::VerificationFailed => "verification_failed",
            Reason::DedupUnavailable => "dedup_unavailable",
            Reason::QueueFull => "queue_full",
            Reason::DestinationFull => "destination_full",
            Reason::NoSpace => "no_space",
            Reason::NotStored => "not_stored",
        }
    }

    /// Why `error` refused an event, or `None` when it is no refusal to log (shutting down).
    pub fn of(error: &EnqueueError) -> Option<Reason> {
        match error {
            EnqueueError::Full => Some(Reason::QueueFull),
            EnqueueError::NoSpace(_) => Some(Reason::NoSpace),
            EnqueueError::DestinationFull(_) => Some(Reason::DestinationFull),
            EnqueueError::Storage(_) => Some(Reason::NotStored),
            EnqueueError::Closed => None,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One route and reason: whether its first refusal was logged, and the refusals since that
/// were not.
#[derive(Debug, Default)]
struct Cell {
    logged: AtomicBool,
    unlogged: AtomicU64,
}

/// The refusal log of one ingress: a fixed table of cells by route index and reason.
#[derive(Debug)]
pub struct RefusalLog {
    routes: Vec<String>,
    cells: Vec<[Cell; REASONS]>,
}

/// One summary line: a reason, and the refusals not logged one by one since the last summary,
/// by route (route id, count), routes with none left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The reason.
    pub reason: Reason,
    /// The refusals of each route not logged one by one.
    pub routes: Vec<(String, u64)>,
}

impl RefusalLog {
    /// A refusal log for `routes` (route ids); a route is then named by its index here.
    pub fn new(routes: Vec<String>) -> Self {
        let cells = routes.iter().map(|_| Default::default()).collect();
        Self { routes, cells }
    }

    /// Records that route number `route` refused a request for `reason`, because of `cause`:
    /// logs it in full if it is the first since the route and reason were last quiet, else
    /// counts it for the next summary. Returns whether it was logged.
    pub fn refused(&self, route: usize, reason: Reason, cause: &dyn Display) -> bool {
        let Some(cell) = self.cells.get(route).map(|row| &row[reason.index()]) else {
            return false;
        };
        // A load first: under a flood the flag is set, and a read-only check keeps the cache
        // line shared instead of bouncing it between cores.
        if cell.logged.load(Ordering::Relaxed) || cell.logged.swap(true, Ordering::Relaxed) {
            cell.unlogged.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let route = self.routes[route].as_str();
        let reason_label = reason.label();
        let interval = humantime::format_duration(SUMMARY_INTERVAL);
        match reason {
            Reason::AddressNotAllowed | Reason::RateLimited | Reason::VerificationFailed => {
                tracing::info!(route, reason = reason_label, %cause, "request refused; more like it are counted and summarised every {interval}");
            }
            Reason::DedupUnavailable
            | Reason::QueueFull
            | Reason::DestinationFull
            | Reason::NoSpace => {
                tracing::warn!(route, reason = reason_label, %cause, "event refused: answered 503; more like it are counted and summarised every {interval}");
            }
            Reason::NotStored => {
                tracing::error!(route, reason = reason_label, %cause, "event not stored: answered 503; more like it are counted and summarised every {interval}");
            }
        }
        true
    }

    /// Takes the refusals not logged one by one since the last summary and logs one line per
    /// reason that has any; a route and reason with none is logged in full at its next refusal.
    /// Returns what it logged.
    pub fn summarise(&self) -> Vec<Summary> {
        let mut summaries = Vec::new();
        for reason in Reason::ALL {
            let mut routes = Vec::new();
            for (id, row) in self.routes.iter().zip(&self.cells) {
                let cell = &row[reason.index()];
                match cell.unlogged.swap(0, Ordering::Relaxed) {
                    0 => cell.logged.store(false, Ordering::Relaxed),
                    count => routes.push((id.clone(), count)),
                }
            }
            if !routes.is_empty() {
                let summary = Summary { reason, routes };
                summary.log();
                summaries.push(summary);
            }
        }
        summaries
    }

    /// Summarises every [`SUMMARY_INTERVAL`], for ever (the router's `refusal_log` task).
    pub async fn run(&self) {
        let mut ticks = tokio::time::interval(SUMMARY_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is at once: nothing to summarise yet.
        ticks.tick().await;
        loop {
            ticks.tick().await;
            self.summarise();
        }
    }
}

impl Summary {
    fn log(&self) {
        let refused: u64 = self.routes.iter().map(|(_, count)| count).sum();
        let mut routes = String::new();
        for (id, count) in &self.routes {
            let separator = if routes.is_empty() { "" } else { ", " };
            let _ = write!(routes, "{separator}{id}: {count}");
        }
        let reason = self.reason.label();
        match self.reason {
            Reason::AddressNotAllowed | Reason::RateLimited | Reason::VerificationFailed => {
                tracing::info!(reason, refused, routes = ?routes, "{refused} more requests refused ({reason}) since the last summary");
            }
            Reason::DedupUnavailable
            | Reason::QueueFull
            | Reason::DestinationFull
            | Reason::NoSpace => {
                tracing::warn!(reason, refused, routes = ?routes, "{refused} more events refused ({reason}) since the last summary");
            }
            Reason::NotStored => {
                tracing::error!(reason, refused, routes = ?routes, "{refused} more events not stored ({reason}) since the last summary");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> RefusalLog {
        RefusalLog::new(vec!["a".to_owned(), "b".to_owned()])
    }

    #[test]
    fn the_first_refusal_of_each_route_and_reason_is_logged_and_the_rest_counted() {
        let log = log();
        let cause = EnqueueError::DestinationFull("d".to_owned());
        assert!(log.refused(0, Reason::DestinationFull, &cause));
        assert!(
            log.refused(1, Reason::DestinationFull, &cause),
            "another route"
        );
        assert!(log.refused(0, Reason::QueueFull, &"full"), "another reason");
        for _ in 0..1000 {
            assert!(!log.refused(0, Reason::DestinationFull, &cause));
        }
        assert!(!log.refused(1, Reason::DestinationFull, &cause));
        assert!(
            !log.refused(2, Reason::DestinationFull, &cause),
            "no such route"
        );
        assert_eq!(
            log.summarise(),
            [Summary {
                reason: Reason::DestinationFull,
                routes: vec![("a".to_owned(), 1000), ("b".to_owned(), 1)],
            }],
            "one line per reason; queue_full had only its first, logged"
        );
    }

    #[test]
    fn a_route_and_reason_quiet_for_an_interval_is_logged_in_full_again() {
        let log = log();
        assert!(log.refused(0, Reason::RateLimited, &"over"));
        assert!(!log.refused(0, Reason::RateLimited, &"over"));
        assert_eq!(log.summarise().len(), 1);
        // Still refusing: counted, not logged.
        assert!(!log.refused(0, Reason::RateLimited, &"over"));
        assert_eq!(log.summarise().len(), 1);
        // Quiet for an interval: nothing to summarise, and the next refusal is logged in full.
        assert!(log.summarise().is_empty());
        assert!(log.refused(0, Reason::RateLimited, &"over"));
    }

    #[test]
    fn every_enqueue_refusal_has_a_reason_but_shutting_down() {
        assert_eq!(
            Reason::of(&EnqueueError::NoSpace("journal")),
            Some(Reason::NoSpace)
        );
        assert_eq!(Reason::of(&EnqueueError::Closed), None);
        for (index, reason) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(reason.index(), index);
        }
    }
}
