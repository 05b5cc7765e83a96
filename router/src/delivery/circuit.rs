//! The circuit breaker of one destination: after `failures` failed attempts in a row it stops
//! sending attempts for `open_for`, then lets one probe through; a success closes it, a failure
//! opens it again for twice as long, up to `max_open_for`.
//!
//! A failure is what the retry policy retries (connect errors, timeouts, 5xx, 429); any answer
//! that is not (2xx, other 4xx) shows the destination is up and closes the count. While the
//! circuit is open, deliveries wait in the retry scheduler without an attempt (so the attempts
//! they skip do not count toward `max_attempts`), and no worker is spent on them.
// Time arithmetic meets configured values here: no operator may overflow.
#![warn(clippy::arithmetic_side_effects)]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use metrics::Gauge;

use crate::config::CircuitConfig;

/// Whether an attempt may go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// The circuit is closed: go.
    Go,
    /// The circuit was open long enough: this attempt is the probe.
    Probe,
    /// The circuit is open (or a probe is out): wait this long, then ask again.
    Wait(Duration),
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed {
        failures: u32,
        last_failure: Option<Instant>,
    },
    Open {
        until: Instant,
        open_for: Duration,
    },
    HalfOpen {
        open_for: Duration,
    },
}

/// One destination's circuit. `webhook_destination_circuit_state` shows it: 0 closed,
/// 1 half-open, 2 open.
pub struct Circuit {
    /// Its settings, which a config reload may replace.
    config: Mutex<CircuitConfig>,
    state: Mutex<State>,
    gauge: Gauge,
}

impl std::fmt::Debug for Circuit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Circuit")
            .field("config", &self.config())
            .field("state", &*self.lock())
            .finish_non_exhaustive()
    }
}

impl Circuit {
    /// A closed circuit with `config`, shown on `gauge`.
    pub fn new(config: CircuitConfig, gauge: Gauge) -> Circuit {
        gauge.set(0.0);
        Circuit {
            config: Mutex::new(config),
            state: Mutex::new(State::Closed {
                failures: 0,
                last_failure: None,
            }),
            gauge,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Its settings now.
    fn config(&self) -> CircuitConfig {
        *self
            .config
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies `config` (a config reload) from the next recorded outcome on; the state stays.
    pub fn reconfigure(&self, config: CircuitConfig) {
        *self
            .config
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = config;
    }

    /// `closed`, `half-open` or `open`.
    pub fn state_name(&self) -> &'static str {
        match *self.lock() {
            State::Closed { .. } => "closed",
            State::HalfOpen { .. } => "half-open",
            State::Open { .. } => "open",
        }
    }

    /// Whether an attempt may start at `now`.
    pub fn admit(&self, now: Instant) -> Admit {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Admit::Go,
            State::Open { until, open_for } if now >= until => {
                *state = State::HalfOpen { open_for };
                self.gauge.set(1.0);
                Admit::Probe
            }
            State::Open { until, .. } => Admit::Wait(until.saturating_duration_since(now)),
            State::HalfOpen { open_for } => Admit::Wait(open_for),
        }
    }

    /// Records the outcome of an attempt that ended at `now`: `failed` for one the retry
    /// policy retries.
    pub fn record(&self, failed: bool, now: Instant) -> Option<&'static str> {
        let config = self.config();
        let mut state = self.lock();
        let (next, change) = match (*state, failed) {
            (State::Closed { .. }, false) => (
                State::Closed {
                    failures: 0,
                    last_failure: None,
                },
                None,
            ),
            (
                State::Closed {
                    failures,
                    last_failure,
                },
                true,
            ) => {
                let in_window = last_failure
                    .is_some_and(|at| now.saturating_duration_since(at) <= config.window.0);
                let failures = if in_window {
                    failures.saturating_add(1)
                } else {
                    1
                };
                if failures >= config.failures.get() {
                    let open_for = config.open_for.0;
                    (
                        State::Open {
                            until: crate::clock::after(now, open_for),
                            open_for,
                        },
                        Some("opened"),
                    )
                } else {
                    (
                        State::Closed {
                            failures,
                            last_failure: Some(now),
                        },
                        None,
                    )
                }
            }
            (State::HalfOpen { .. } | State::Open { .. }, false) => (
                State::Closed {
                    failures: 0,
                    last_failure: None,
                },
                Some("closed"),
            ),
            (State::HalfOpen { open_for }, true) => {
                let open_for = open_for.saturating_mul(2).min(config.max_open_for.0);
                (
                    State::Open {
                        until: crate::clock::after(now, open_for),
                        open_for,
                    },
                    Some("reopened"),
                )
            }
            // An attempt that started before the circuit opened: it changes nothing.
            (open @ State::Open { .. }, true) => (open, None),
        };
        *state = next;
        self.gauge.set(match next {
            State::Closed { .. } => 0.0,
            State::HalfOpen { .. } => 1.0,
            State::Open { .. } => 2.0,
        });
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HumanDuration;
    use std::num::NonZeroU32;

    fn circuit() -> Circuit {
        Circuit::new(
            CircuitConfig {
                failures: NonZeroU32::new(3).expect("non-zero"),
                window: HumanDuration(Duration::from_secs(10)),
                open_for: HumanDuration(Duration::from_secs(1)),
                max_open_for: HumanDuration(Duration::from_secs(3)),
            },
            crate::metrics::Metrics::new().destination_circuit("d"),
        )
    }

    #[test]
    fn opens_after_failures_in_a_row_probes_and_backs_off() {
        let circuit = circuit();
        let t = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(circuit.record(true, t), None);
        assert_eq!(circuit.record(false, t), None, "a success resets the count");
        assert_eq!(circuit.record(true, t), None);
        assert_eq!(circuit.record(true, t), None);
        assert_eq!(circuit.admit(t), Admit::Go);
        assert_eq!(circuit.record(true, t), Some("opened"));
        assert_eq!(circuit.admit(t), Admit::Wait(s(1)));
        // One probe after open_for; the others wait while it is out.
        assert_eq!(circuit.admit(t + s(1)), Admit::Probe);
        assert_eq!(circuit.admit(t + s(1)), Admit::Wait(s(1)));
        assert_eq!(circuit.record(true, t + s(1)), Some("reopened"));
        assert_eq!(circuit.admit(t + s(1)), Admit::Wait(s(2)), "doubled");
        assert_eq!(circuit.admit(t + s(3)), Admit::Probe);
        assert_eq!(circuit.record(true, t + s(3)), Some("reopened"));
        assert_eq!(
            circuit.admit(t + s(3)),
            Admit::Wait(s(3)),
            "capped at max_open_for"
        );
        assert_eq!(circuit.admit(t + s(6)), Admit::Probe);
        assert_eq!(circuit.record(false, t + s(6)), Some("closed"));
        assert_eq!(circuit.admit(t + s(6)), Admit::Go);
    }

    #[test]
    fn failures_further_apart_than_the_window_do_not_add_up() {
        let circuit = circuit();
        let t = Instant::now();
        for n in 0..10 {
            assert_eq!(circuit.record(true, t + Duration::from_secs(11 * n)), None);
        }
        assert_eq!(circuit.admit(t), Admit::Go);
    }
}
