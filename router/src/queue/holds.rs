//! Per-destination holding caps: how many undelivered events each destination holds (queued,
//! in flight or waiting to retry) against its `max_held`, so that a destination that stops
//! answering fills its own share of the queue and no more: only the routes that deliver to it
//! get 503, the others keep accepting.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use metrics::Gauge;

use super::DestinationId;
use crate::metrics::Metrics;

/// Each destination's count of held events and its cap.
#[derive(Debug)]
pub struct Holds {
    destinations: Vec<Hold>,
}

#[derive(Debug)]
struct Hold {
    name: String,
    limit: usize,
    held: AtomicUsize,
    gauge: GaugeHandle,
}

/// `webhook_destination_held{destination}`.
struct GaugeHandle(Gauge);

impl std::fmt::Debug for GaugeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gauge")
    }
}

impl Holds {
    /// Caps for the destinations `(name, max_held)`, by id.
    pub fn new(destinations: Vec<(String, usize)>, metrics: &Metrics) -> Holds {
        Holds {
            destinations: destinations
                .into_iter()
                .map(|(name, limit)| {
                    let gauge = metrics.destination_held(&name);
                    gauge.set(0.0);
                    Hold {
                        name,
                        limit,
                        held: AtomicUsize::new(0),
                        gauge: GaugeHandle(gauge),
                    }
                })
                .collect(),
        }
    }

    /// No caps (a queue built without a destination table, as in unit tests).
    pub fn none() -> Holds {
        Holds {
            destinations: Vec::new(),
        }
    }

    /// Takes one place at each of `destinations` (a repeat takes two), all or none. `force`
    /// takes them past the caps (events already promised, read back at start). Otherwise the
    /// name of a destination that is full.
    pub fn reserve(&self, destinations: &[DestinationId], force: bool) -> Result<(), String> {
        for (taken, &id) in destinations.iter().enumerate() {
            let Some(hold) = self.destinations.get(id) else {
                continue;
            };
            let before = hold.held.fetch_add(1, Ordering::AcqRel);
            if !force && before >= hold.limit {
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
        if let Some(hold) = self.destinations.get(destination) {
            hold.held.fetch_sub(1, Ordering::AcqRel);
            hold.gauge.0.decrement(1.0);
        }
    }

    /// The cap of `destination` (0 if unknown).
    pub fn limit(&self, destination: DestinationId) -> usize {
        self.destinations
            .get(destination)
            .map_or(0, |hold| hold.limit)
    }

    /// Events `destination` holds.
    pub fn held(&self, destination: DestinationId) -> usize {
        self.destinations
            .get(destination)
            .map_or(0, |hold| hold.held.load(Ordering::Acquire))
    }
}

/// The places one held event takes, by its destinations' positions: each is given back when
/// its delivery is final, and whatever is left when the event is let go.
#[derive(Debug)]
pub struct Holding {
    holds: std::sync::Arc<Holds>,
    /// By position: the destination whose place is still taken.
    taken: Mutex<Vec<Option<DestinationId>>>,
}

impl Holding {
    /// The places `taken` (by position; `None`: none taken there) in `holds`.
    pub fn new(holds: &std::sync::Arc<Holds>, taken: Vec<Option<DestinationId>>) -> Holding {
        Holding {
            holds: std::sync::Arc::clone(holds),
            taken: Mutex::new(taken),
        }
    }

    /// Gives back the place of the destination at `position`.
    pub fn release(&self, position: usize) {
        let mut taken = self
            .taken
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(destination) = taken.get_mut(position).and_then(Option::take) {
            self.holds.release(destination);
        }
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        let taken = self
            .taken
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for destination in taken.drain(..).flatten() {
            self.holds.release(destination);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_destination_refuses_and_takes_nothing_elsewhere() {
        let holds = std::sync::Arc::new(Holds::new(
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
            let holding = Holding::new(&holds, vec![Some(0), Some(1)]);
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
