//! The `[destinations.NAME]` tables: where events are delivered, how fast, and how failed
//! attempts are retried, with their defaults and the checks between their keys.

use std::collections::{BTreeMap, HashSet};
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};
use toml::Spanned;
use toml::de::DeValue;

use super::error::ErrorSink;
use super::{
    EnvString, HumanDuration, SignConfig, bounds, deserialize_item, is_identifier, span_of,
};

/// A `[destinations.NAME]` table: an HTTP endpoint events are delivered to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// The URL events are POSTed to (`http` or `https`; `${ENV}` is expanded).
    pub url: DestinationUrl,
    /// Time limit for one delivery attempt, from connect to the end of the response head.
    #[serde(default = "defaults::timeout", deserialize_with = "bounds::timeout")]
    pub timeout: HumanDuration,
    /// Most requests in flight to this destination at once.
    #[serde(
        default = "defaults::max_in_flight",
        deserialize_with = "bounds::max_in_flight"
    )]
    pub max_in_flight: NonZeroUsize,
    /// Most undelivered events this destination may hold (queued, in flight or waiting to
    /// retry); past it only the routes that deliver here answer 503. Default: half of
    /// `queue_capacity` (all of it for a config's only destination), so that one dead
    /// destination leaves room for the others.
    #[serde(default, deserialize_with = "bounds::max_held")]
    pub max_held: Option<NonZeroUsize>,
    /// Most attempts a second, if set: deliveries wait for their turn (see [`DeliveryRate`]).
    #[serde(default)]
    pub rate: Option<DeliveryRate>,
    /// How failed attempts are retried.
    #[serde(default)]
    pub retry: RetryConfig,
    /// When to stop sending attempts to a destination that keeps failing.
    #[serde(default)]
    pub circuit: CircuitConfig,
    /// Extra headers sent with every delivery (e.g. `Authorization`); `${ENV}` is expanded.
    #[serde(default)]
    pub headers: BTreeMap<String, EnvString>,
    /// Signs every delivery (Standard Webhooks), if set.
    #[serde(default)]
    pub sign: Option<SignConfig>,
    /// PEM file of the CA certificates trusted for this destination's `https` URL, instead of
    /// the public roots (a private CA).
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// PEM file of the client certificate (chain) presented to the destination (mutual TLS);
    /// goes with `client_key`.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Deliver over HTTP/2 only, many attempts multiplexed on a connection: with prior
    /// knowledge (h2c) to an `http` URL, by ALPN offering only `h2` to an `https` one.
    #[serde(default)]
    pub http2: bool,
}

/// A destination URL, checked at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationUrl(pub reqwest::Url);

impl<'de> Deserialize<'de> for DestinationUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let EnvString(text) = EnvString::deserialize(deserializer)?;
        let url = reqwest::Url::parse(&text)
            .map_err(|e| de::Error::custom(format!("invalid URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(de::Error::custom(format!(
                "URL scheme must be http or https, not {:?}",
                url.scheme()
            )));
        }
        if url.host().is_none() {
            return Err(de::Error::custom("URL has no host"));
        }
        Ok(DestinationUrl(url))
    }
}

/// A destination's delivery rate (`rate = { per_second = 50, burst = 100 }`): `burst` attempts
/// may go at once after a quiet spell, and `per_second` a second after that (GCRA). Retries count
/// like first attempts; a delivery that waits for its turn is not failed, and the wait is not an
/// attempt.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryRate {
    /// Sustained attempts per second: 0.001 to 1 000 000, fractions allowed (`0.5` is one
    /// attempt every 2 s).
    #[serde(deserialize_with = "bounds::delivery_per_second")]
    pub per_second: f64,
    /// Attempts that may go at once (1 to 1 000 000); see [`DeliveryRate::burst`] for the
    /// default.
    #[serde(default, deserialize_with = "bounds::burst")]
    pub burst: Option<NonZeroU32>,
}

impl DeliveryRate {
    /// The burst as written, or `per_second` rounded up (at least 1): a second's worth.
    pub fn burst(&self) -> NonZeroU32 {
        self.burst.unwrap_or_else(|| {
            // At most 1 000 000 from a file (`bounds`); `as` saturates for a rate built in code.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let second = self.per_second.ceil() as u32;
            NonZeroU32::new(second).unwrap_or(NonZeroU32::MIN)
        })
    }

    /// The time between two attempts at the sustained rate: 1 µs to 1 000 s, the range of
    /// `per_second` in a file (a rate built in code out of it is held to it).
    pub fn period(&self) -> Duration {
        const LONGEST: Duration = Duration::from_secs(1000);
        Duration::try_from_secs_f64(1.0 / self.per_second)
            .unwrap_or(LONGEST)
            .clamp(Duration::from_micros(1), LONGEST)
    }
}

/// Retry policy of one destination (`retry = { ... }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts in all, the first included, before an event is dead-lettered.
    #[serde(
        default = "defaults::max_attempts",
        deserialize_with = "bounds::max_attempts"
    )]
    pub max_attempts: NonZeroU32,
    /// Wait before the second attempt; it doubles for each further attempt.
    #[serde(
        default = "defaults::initial_backoff",
        deserialize_with = "bounds::initial_backoff"
    )]
    pub initial_backoff: HumanDuration,
    /// Longest wait between attempts, also the cap on a destination's `Retry-After`.
    #[serde(
        default = "defaults::max_backoff",
        deserialize_with = "bounds::max_backoff"
    )]
    pub max_backoff: HumanDuration,
    /// How waits are randomised.
    #[serde(default)]
    pub jitter: Jitter,
}

/// A destination's circuit breaker: after `failures` failed attempts in a row (connect errors,
/// timeouts, 5xx, 429; each within `window` of the one before), no attempts for `open_for`;
/// then one probe: success closes the circuit, failure opens it again for twice as long, up
/// to `max_open_for`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitConfig {
    /// Failed attempts in a row that open the circuit.
    #[serde(
        default = "defaults::circuit_failures",
        deserialize_with = "bounds::circuit_failures"
    )]
    pub failures: NonZeroU32,
    /// A failure further than this from the one before starts the count again.
    #[serde(
        default = "defaults::circuit_window",
        deserialize_with = "bounds::circuit_window"
    )]
    pub window: HumanDuration,
    /// How long the circuit first stays open.
    #[serde(
        default = "defaults::circuit_open_for",
        deserialize_with = "bounds::circuit_open_for"
    )]
    pub open_for: HumanDuration,
    /// The longest it stays open (the wait doubles after each failed probe).
    #[serde(
        default = "defaults::circuit_max_open_for",
        deserialize_with = "bounds::circuit_max_open_for"
    )]
    pub max_open_for: HumanDuration,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        Self {
            failures: defaults::circuit_failures(),
            window: defaults::circuit_window(),
            open_for: defaults::circuit_open_for(),
            max_open_for: defaults::circuit_max_open_for(),
        }
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: defaults::max_attempts(),
            initial_backoff: defaults::initial_backoff(),
            max_backoff: defaults::max_backoff(),
            jitter: Jitter::default(),
        }
    }
}

/// Randomisation of retry waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Jitter {
    /// Wait a uniformly random time between zero and the exponential backoff (the default).
    #[default]
    Full,
    /// Wait exactly the exponential backoff.
    None,
}

/// Reads the `[destinations]` table into `out`, each name into `names` (even a table with
/// errors); relative file paths are taken from `base`, the config file's folder.
pub(super) fn parse_destinations(
    value: Spanned<DeValue<'_>>,
    base: &Path,
    sink: &mut ErrorSink<'_>,
    out: &mut BTreeMap<String, DestinationConfig>,
    names: &mut HashSet<String>,
) {
    let span = value.span();
    let DeValue::Table(table) = value.into_inner() else {
        sink.push(
            Some(span),
            "destinations",
            "must be a table of named destinations",
        );
        return;
    };
    for (name, value) in table {
        let name_span = name.span();
        let name = name.into_inner().into_owned();
        let key = format!("destinations.{name}");
        // Known even if its table has errors, so routes naming it are not reported too.
        names.insert(name.clone());
        if !is_identifier(&name) {
            sink.push(
                Some(name_span.clone()),
                &key,
                "destination names may use only letters, digits, '-' and '_'",
            );
        }
        let retry_span = span_of(&value, &["retry"]).or_else(|| Some(name_span.clone()));
        let circuit_span = span_of(&value, &["circuit"]).or_else(|| Some(name_span.clone()));
        if let Some(mut destination) = deserialize_item::<DestinationConfig>(value, &key, sink) {
            super::tls::check_destination(
                &mut destination,
                base,
                (&key, Some(name_span.clone())),
                sink,
            );
            let mut problems = Vec::new();
            for (header, value) in &destination.headers {
                if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                    problems.push(("headers", format!("invalid header name {header:?}")));
                } else if http::HeaderValue::from_str(&value.0).is_err() {
                    problems.push(("headers", format!("header {header:?} has an invalid value")));
                }
            }
            for (field, message) in problems {
                sink.push(Some(name_span.clone()), format!("{key}.{field}"), message);
            }
            // Each value is in range (`bounds`); these contradict each other.
            let retry = destination.retry;
            if retry.initial_backoff > retry.max_backoff {
                sink.push(
                    retry_span,
                    format!("{key}.retry"),
                    "initial_backoff is longer than max_backoff",
                );
            }
            let circuit = destination.circuit;
            if circuit.open_for > circuit.max_open_for {
                sink.push(
                    circuit_span,
                    format!("{key}.circuit"),
                    "open_for is longer than max_open_for",
                );
            }
            out.insert(name, destination);
        }
    }
}

/// Defaults of the keys not written.
mod defaults {
    use super::*;
    pub fn circuit_failures() -> NonZeroU32 {
        NonZeroU32::new(20).expect("non-zero")
    }
    pub fn circuit_window() -> HumanDuration {
        HumanDuration(Duration::from_secs(30))
    }
    pub fn circuit_open_for() -> HumanDuration {
        HumanDuration(Duration::from_secs(5))
    }
    pub fn circuit_max_open_for() -> HumanDuration {
        HumanDuration(Duration::from_secs(300))
    }
    pub fn timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(10))
    }
    pub fn max_in_flight() -> NonZeroUsize {
        NonZeroUsize::new(64).expect("non-zero")
    }
    pub fn max_attempts() -> NonZeroU32 {
        NonZeroU32::new(8).expect("non-zero")
    }
    pub fn initial_backoff() -> HumanDuration {
        HumanDuration(Duration::from_secs(1))
    }
    pub fn max_backoff() -> HumanDuration {
        HumanDuration(Duration::from_secs(600))
    }
}
