//! A route's plugin chain: each plugin in order, and what its verdict does.
//!
//! - `forward(event)`: the (possibly changed) event goes to the next plugin, or, after the
//!   last one, to the route's destinations;
//! - `drop(reason)`: the sender gets 202, nothing is delivered; counted and logged;
//! - `reject(status, message)`: the sender gets that status (4xx/5xx only); nothing queued;
//! - `fan-out(deliveries)`: each event goes to its named destination, ending the chain. A
//!   destination outside the route's `destinations` and `fan_out` list is refused: the verdict
//!   is a failure (`bad_verdict`), handled by `on_plugin_error` like any other.
//!
//! A failure (trap, timeout, memory, oversized output, error, or a verdict the router cannot
//! act on) is counted and handled by the route's `on_plugin_error`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;
use tracing::field::Empty;

use super::bindings::{Verdict, from_guest};
use super::{CallOutcome, LoadedPlugin, OnPluginError, PluginErrorKind, PluginFailure};
use crate::event::Event;
use crate::inspect::PluginVerdict;
use crate::metrics::{Metrics, PluginMetrics};
use crate::queue::DestinationId;
use crate::telemetry;

/// What a chain decided for an event.
#[derive(Debug)]
pub enum ChainOutcome {
    /// Queue these events, each for its destinations.
    Deliver(Vec<(Event, Vec<DestinationId>)>),
    /// Accept without delivery.
    Drop {
        /// Why (for logs).
        reason: String,
    },
    /// Answer the sender with this status and message.
    Reject {
        /// 4xx or 5xx.
        status: u16,
        /// Short reason for the sender.
        message: String,
    },
}

/// A plugin and its metric handles.
#[derive(Debug)]
struct Step {
    plugin: LoadedPlugin,
    metrics: PluginMetrics,
}

/// The plugins of one route.
#[derive(Debug)]
pub struct PluginChain {
    route: String,
    steps: Vec<Step>,
    on_error: OnPluginError,
    destination_ids: Arc<HashMap<String, DestinationId>>,
}

impl PluginChain {
    /// A chain of `plugins` for `route`; fan-out names are resolved with `destination_ids`,
    /// which holds only the destinations the route may fan out to.
    pub fn new(
        route: &str,
        plugins: Vec<LoadedPlugin>,
        on_error: OnPluginError,
        destination_ids: Arc<HashMap<String, DestinationId>>,
        metrics: &Metrics,
    ) -> Self {
        let steps = plugins
            .into_iter()
            .map(|plugin| Step {
                metrics: metrics.plugin(route, plugin.name()),
                plugin,
            })
            .collect();
        Self {
            route: route.to_owned(),
            steps,
            on_error,
            destination_ids,
        }
    }

    /// Whether the chain has no plugins.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// How many plugins the chain runs.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Runs `event` through every plugin; `destinations` are the route's. Each plugin's verdict
    /// is added to `verdicts` (for the event record). Each guest yields to the async runtime
    /// every epoch tick, so this never holds a runtime thread for long.
    pub async fn run(
        &self,
        mut event: Event,
        destinations: &[DestinationId],
        verdicts: &mut Vec<PluginVerdict>,
    ) -> ChainOutcome {
        for step in &self.steps {
            let started = Instant::now();
            let span = telemetry::span(|| {
                tracing::info_span!(
                    "plugin",
                    plugin = step.plugin.name(),
                    verdict = Empty,
                    cpu_us = Empty
                )
            });
            // A traced call reads its CPU time exactly, for the span; an untraced one only at
            // epoch ticks, which a short call never sees.
            let CallOutcome {
                result,
                stdio,
                cpu_time,
            } = if span.is_none() {
                step.plugin.call(&event).await
            } else {
                step.plugin
                    .call_exact(&event)
                    .instrument(span.clone())
                    .await
            };
            step.metrics
                .duration
                .record(started.elapsed().as_secs_f64());
            stdio.log(step.plugin.name(), &self.route, &event.id);
            step.metrics.stdio_cut.increment(stdio.cut_lines);
            let acted = result.and_then(|verdict| self.act_on(verdict, &event));
            let verdict = noted(step.plugin.name(), &acted);
            span.record("verdict", verdict.verdict.as_str());
            if let Some(cpu_time) = cpu_time {
                span.record("cpu_us", cpu_time.as_secs_f64() * 1e6);
            }
            drop(span);
            verdicts.push(verdict);
            let failure = match acted {
                Ok(Acted::Next(changed)) => {
                    step.metrics.forward.increment(1);
                    event = *changed;
                    continue;
                }
                Ok(Acted::Same) => {
                    step.metrics.forward.increment(1);
                    continue;
                }
                Ok(Acted::Done(outcome)) => {
                    let counter = match &outcome {
                        ChainOutcome::Drop { .. } => &step.metrics.drop,
                        ChainOutcome::Reject { .. } => &step.metrics.reject,
                        ChainOutcome::Deliver(_) => &step.metrics.fan_out,
                    };
                    counter.increment(1);
                    if let ChainOutcome::Drop { reason } = &outcome {
                        // Per event, a verdict like any other (counted above): at debug.
                        tracing::debug!(event_id = %event.id, route = %self.route, plugin = step.plugin.name(), reason = %reason, "dropped by plugin");
                    }
                    return outcome;
                }
                Err(failure) => failure,
            };
            step.metrics.errors[kind_index(failure.kind)].increment(1);
            tracing::warn!(
                event_id = %event.id,
                route = %self.route,
                plugin = step.plugin.name(),
                kind = failure.kind.label(),
                error = %failure.message,
                on_plugin_error = ?self.on_error,
                "plugin failed"
            );
            if failure.unavailable {
                return ChainOutcome::Reject {
                    status: 503,
                    message: "plugins are busy, retry later".to_owned(),
                };
            }
            match self.on_error {
                OnPluginError::Reject => {
                    return ChainOutcome::Reject {
                        status: 500,
                        message: "plugin failed".to_owned(),
                    };
                }
                OnPluginError::Drop => {
                    return ChainOutcome::Drop {
                        reason: format!("plugin {} failed", step.plugin.name()),
                    };
                }
                OnPluginError::Forward => {}
            }
        }
        ChainOutcome::Deliver(vec![(event, destinations.to_vec())])
    }

    /// Turns a verdict into the next step, checking what the router must not trust.
    fn act_on(&self, verdict: Verdict, event: &Event) -> Result<Acted, PluginFailure> {
        let bad = |message: String| PluginFailure::new(PluginErrorKind::BadVerdict, message);
        match verdict {
            Verdict::Forward(changed) => Ok(Acted::Next(Box::new(
                from_guest(changed, event).map_err(bad)?,
            ))),
            Verdict::Pass => Ok(Acted::Same),
            Verdict::Drop(reason) => Ok(Acted::Done(ChainOutcome::Drop { reason })),
            Verdict::Reject(rejection) => {
                if !(400..=599).contains(&rejection.status) {
                    return Err(bad(format!(
                        "reject status {} is not 4xx or 5xx",
                        rejection.status
                    )));
                }
                Ok(Acted::Done(ChainOutcome::Reject {
                    status: rejection.status,
                    message: rejection.message,
                }))
            }
            Verdict::FanOut(deliveries) => {
                if deliveries.is_empty() {
                    return Ok(Acted::Done(ChainOutcome::Drop {
                        reason: "fan-out to no destination".to_owned(),
                    }));
                }
                let mut routed = Vec::with_capacity(deliveries.len());
                for delivery in deliveries {
                    let Some(&id) = self.destination_ids.get(&delivery.destination) else {
                        return Err(bad(format!(
                            "fan-out to {:?}, which is not among the route's destinations or its fan_out list",
                            delivery.destination
                        )));
                    };
                    routed.push((from_guest(delivery.event, event).map_err(bad)?, vec![id]));
                }
                Ok(Acted::Done(ChainOutcome::Deliver(routed)))
            }
        }
    }
}

/// A plugin's verdict (or failure) as the event record keeps it.
fn noted(plugin: &str, acted: &Result<Acted, PluginFailure>) -> PluginVerdict {
    let (verdict, detail) = match acted {
        Ok(Acted::Next(_)) => ("forward", None),
        Ok(Acted::Same) => ("pass", None),
        Ok(Acted::Done(ChainOutcome::Drop { reason })) => ("drop", Some(reason.clone())),
        Ok(Acted::Done(ChainOutcome::Reject { status, message })) => {
            ("reject", Some(format!("{status} {message}")))
        }
        Ok(Acted::Done(ChainOutcome::Deliver(events))) => {
            ("fan_out", Some(format!("{} deliveries", events.len())))
        }
        Err(failure) => ("error", Some(failure.to_string())),
    };
    PluginVerdict::new(plugin, verdict, detail)
}

enum Acted {
    Next(Box<Event>),
    /// `pass`: the event goes on as it is.
    Same,
    Done(ChainOutcome),
}

fn kind_index(kind: PluginErrorKind) -> usize {
    PluginErrorKind::ALL
        .iter()
        .position(|&k| k == kind)
        .unwrap_or(0)
}
