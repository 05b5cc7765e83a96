//! The `[inspect]` table: how many recent events, and for how long, the router keeps a record
//! of (`GET /events`, `webhook-router events`).

use std::time::Duration;

use serde::Deserialize;

use super::{HumanDuration, bounds};

/// The `[inspect]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InspectConfig {
    /// Most events recorded; the oldest is forgotten first. 0 turns the record off.
    #[serde(
        default = "default_events",
        deserialize_with = "bounds::inspect_events"
    )]
    pub events: usize,
    /// How long an event stays recorded.
    #[serde(
        default = "default_max_age",
        deserialize_with = "bounds::inspect_max_age"
    )]
    pub max_age: HumanDuration,
}

impl Default for InspectConfig {
    fn default() -> Self {
        Self {
            events: default_events(),
            max_age: default_max_age(),
        }
    }
}

fn default_events() -> usize {
    10_000
}

fn default_max_age() -> HumanDuration {
    HumanDuration(Duration::from_secs(24 * 3600))
}
