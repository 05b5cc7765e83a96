//! Sender verification: is this webhook really from the sender the route names?
//!
//! A route's `verify = { preset = "...", secrets = [...], tolerance = "5m" }` becomes a
//! [`Verifier`], which checks the request's signature header(s) against the raw body exactly as
//! received, with every configured secret (rotation: any match passes), comparing in constant
//! time, and rejects timestamps outside the tolerance (replays).
//!
//! One file per scheme: [`github`], [`stripe`], [`shopify`], [`slack`], [`standard`] (Standard
//! Webhooks `v1` HMAC and `v1a` ed25519; it also signs outbound deliveries), [`gitlab`],
//! [`bitbucket`], [`twilio`], [`discord`], [`linear`], [`paddle`], [`zoom`], [`square`],
//! [`intercom`], [`pagerduty`] and [`generic`] (any HMAC header); [`mac`] holds the shared HMAC
//! and comparison helpers.
//!
//! [`Verifier::precheck`] runs first, on the headers alone, so that a request without a
//! well-formed signature, or with a stale signed timestamp, is refused before its body is read.
//!
//! Some senders check a new endpoint with a handshake that must be answered at once (Slack's
//! `url_verification`, Zoom's `endpoint.url_validation`, Discord's `PING`). A route whose
//! `verify` sets `challenge = true` has the router answer it ([`Verifier::challenge`]), after
//! verifying it like any other request; the handshake is not delivered.

/// Request headers that carry a credential, not a signature: the router removes them once the
/// request is verified, so they are neither stored nor forwarded (a route's `keep_headers` may
/// keep some). `x-gitlab-token` is the gitlab preset's secret itself; every other preset sends
/// a signature, which proves nothing about any other body and is kept.
pub const CREDENTIAL_HEADERS: [&str; 4] = [
    "authorization",
    "cookie",
    "proxy-authorization",
    "x-gitlab-token",
];

/// Most entries a signature header may carry (signatures of any version, and the timestamp
/// where the header has one); a header with more is malformed, so that one request cannot ask
/// for an unbounded number of checks (ed25519 ones are costly).
pub const MAX_SIGNATURE_ENTRIES: usize = 8;

pub mod bitbucket;
pub mod discord;
pub mod generic;
pub mod github;
pub mod gitlab;
pub mod intercom;
pub mod linear;
pub mod mac;
pub mod paddle;
pub mod pagerduty;
pub mod shopify;
pub mod slack;
pub mod square;
pub mod standard;
pub mod stripe;
pub mod timestamped;
pub mod twilio;
pub mod zoom;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::VerifyingKey;
use http::HeaderMap;

pub use generic::GenericScheme;
pub use standard::{StandardKey, StandardSigner};

/// Why a request failed verification. Messages are what the sender reads in the 401; none
/// carries a secret or a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A header the scheme needs is absent (or not text).
    #[error("missing signature header")]
    MissingHeader,
    /// A header is present but cannot be read as the scheme says.
    #[error("malformed signature header")]
    Malformed,
    /// No signature matches any secret.
    #[error("signature mismatch")]
    Mismatch,
    /// The signed timestamp is too old or too far in the future.
    #[error("timestamp outside tolerance")]
    Stale,
}

impl VerifyError {
    /// Every reason, in metric-label order.
    pub const ALL: [VerifyError; 4] = [
        Self::MissingHeader,
        Self::Malformed,
        Self::Mismatch,
        Self::Stale,
    ];

    /// The `reason` label of `webhook_verification_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingHeader => "missing_header",
            Self::Malformed => "malformed",
            Self::Mismatch => "mismatch",
            Self::Stale => "timestamp",
        }
    }
}

/// The senders the router knows how to verify.
#[derive(Debug, Clone)]
pub enum Scheme {
    /// `X-Hub-Signature-256: sha256=<hex>` (and legacy `X-Hub-Signature: sha1=<hex>` if allowed).
    GitHub {
        /// Accept the legacy SHA-1 header when the SHA-256 one is absent.
        allow_sha1: bool,
    },
    /// `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>]` over `<t>.<body>`.
    Stripe,
    /// `X-Shopify-Hmac-Sha256` (or `shopify-hmac-sha256`): `<base64>` over the body.
    Shopify,
    /// `X-Slack-Signature: v0=<hex>` over `v0:<X-Slack-Request-Timestamp>:<body>`.
    Slack,
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature` (or Svix's
    /// `svix-*` names).
    Standard,
    /// `X-Gitlab-Token: <token>`, the secret itself.
    GitLab,
    /// `X-Hub-Signature: sha256=<hex>` over the body (Bitbucket Cloud).
    Bitbucket,
    /// `X-Twilio-Signature: <base64>` HMAC-SHA1 over the public URL and the sorted form
    /// parameters.
    Twilio {
        /// The full public URL Twilio posts to.
        url: String,
    },
    /// `X-Signature-Ed25519: <hex>` over `<X-Signature-Timestamp><body>` (Discord interactions).
    Discord {
        /// The application's public key.
        public_key: VerifyingKey,
    },
    /// `Linear-Signature: <hex>` over the body, with `webhookTimestamp` in the body.
    Linear,
    /// `Paddle-Signature: ts=<unix>;h1=<hex>` over `<ts>:<body>` (Paddle Billing).
    Paddle,
    /// `x-zm-signature: v0=<hex>` over `v0:<x-zm-request-timestamp>:<body>`.
    Zoom,
    /// `X-Square-HmacSha256-Signature: <base64>` over the notification URL and the body.
    Square {
        /// The notification URL Square posts to.
        url: String,
    },
    /// `X-Hub-Signature: sha1=<hex>` over the body (Intercom).
    Intercom,
    /// `X-PagerDuty-Signature: v1=<hex>[,v1=<hex>]` over the body (PagerDuty v3).
    PagerDuty,
    /// A configured HMAC header.
    Generic(GenericScheme),
}

/// A route's verifier: its scheme, secrets and timestamp tolerance.
#[derive(Clone)]
pub struct Verifier {
    preset: &'static str,
    scheme: Scheme,
    secrets: Vec<Vec<u8>>,
    standard_keys: Vec<StandardKey>,
    tolerance: Duration,
    challenge: bool,
    /// Each secret's fingerprint, for the admin API (see [`fingerprint`]).
    fingerprints: Vec<String>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("preset", &self.preset)
            .field("secrets", &self.secrets.len().max(self.standard_keys.len()))
            .field("tolerance", &self.tolerance)
            .field("challenge", &self.challenge)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier for `preset` (its config name) with `secrets` as written in the config.
    /// Standard Webhooks secrets are `whsec_<base64>` (HMAC) or `whpk_<base64>` (ed25519 public
    /// keys); Discord's key is in its scheme and takes no secret; other schemes use each
    /// secret's bytes as the HMAC key (or, for GitLab, as the token).
    pub fn new(
        preset: &'static str,
        scheme: Scheme,
        secrets: &[&str],
        tolerance: Duration,
    ) -> Result<Verifier, String> {
        if let Scheme::Discord { .. } = scheme {
            if !secrets.is_empty() {
                return Err(format!(
                    "the {preset} preset checks signatures with `public_key`, not `secrets`"
                ));
            }
            return Ok(Verifier {
                preset,
                scheme,
                secrets: Vec::new(),
                standard_keys: Vec::new(),
                tolerance,
                challenge: false,
                fingerprints: Vec::new(),
            });
        }
        if secrets.is_empty() {
            return Err("at least one secret is needed".to_owned());
        }
        let secrets_as_written = secrets;
        let (secrets, standard_keys) = match scheme {
            Scheme::Standard => {
                let keys = secrets
                    .iter()
                    .enumerate()
                    .map(|(i, s)| StandardKey::parse(s).map_err(|e| format!("secrets[{i}]: {e}")))
                    .collect::<Result<Vec<_>, _>>()?;
                (Vec::new(), keys)
            }
            _ => {
                if let Some(i) = secrets.iter().position(|s| s.is_empty()) {
                    return Err(format!("secrets[{i}] is empty"));
                }
                (
                    secrets.iter().map(|s| s.as_bytes().to_vec()).collect(),
                    Vec::new(),
                )
            }
        };
        Ok(Verifier {
            preset,
            scheme,
            secrets,
            standard_keys,
            tolerance,
            challenge: false,
            fingerprints: secrets_as_written.iter().map(|s| fingerprint(s)).collect(),
        })
    }

    /// The same verifier, also answering the sender's endpoint handshake (`challenge = true`);
    /// an error for a preset that has none.
    pub fn answering_challenges(mut self) -> Result<Verifier, String> {
        match self.scheme {
            Scheme::Slack | Scheme::Zoom | Scheme::Discord { .. } => {
                self.challenge = true;
                Ok(self)
            }
            _ => Err(format!(
                "challenge applies to the slack, zoom and discord presets only, not {}",
                self.preset
            )),
        }
    }

    /// The answer to the sender's endpoint handshake, if the route answers them and `body` is
    /// one. Call it only on a request that passed [`Verifier::verify`].
    pub fn challenge(&self, headers: &HeaderMap, body: &[u8]) -> Option<serde_json::Value> {
        if !self.challenge {
            return None;
        }
        match &self.scheme {
            Scheme::Slack => slack::challenge(body),
            Scheme::Zoom => zoom::challenge(headers, body, &self.secrets),
            Scheme::Discord { .. } => discord::challenge(body),
            _ => None,
        }
    }

    /// The preset's config name (`github`, `stripe`, ...), told to plugins as
    /// `x-webhook-verified`.
    pub fn preset(&self) -> &'static str {
        self.preset
    }

    /// Each secret's fingerprint, in config order (none for a preset checked with a public
    /// key): enough to tell which secret is loaded, nothing to sign with.
    pub fn secret_fingerprints(&self) -> &[String] {
        &self.fingerprints
    }

    /// How far a signed timestamp may be from now, for schemes that sign one (a verified request
    /// can be replayed only within it); `None` for schemes that sign no timestamp.
    pub fn signed_tolerance(&self) -> Option<Duration> {
        let timed = match &self.scheme {
            Scheme::Stripe
            | Scheme::Slack
            | Scheme::Standard
            | Scheme::Discord { .. }
            | Scheme::Linear
            | Scheme::Paddle
            | Scheme::Zoom => true,
            Scheme::Generic(scheme) => scheme.signs_timestamp(),
            Scheme::GitHub { .. }
            | Scheme::Shopify
            | Scheme::GitLab
            | Scheme::Bitbucket
            | Scheme::Twilio { .. }
            | Scheme::Square { .. }
            | Scheme::Intercom
            | Scheme::PagerDuty => false,
        };
        timed.then_some(self.tolerance)
    }

    /// Checks a request's headers and raw body, as of `now`.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), VerifyError> {
        let keys = &self.secrets;
        let window = Window {
            now,
            tolerance: self.tolerance,
        };
        match &self.scheme {
            Scheme::GitHub { allow_sha1 } => github::verify(headers, body, keys, *allow_sha1),
            Scheme::Stripe => stripe::SCHEME.verify(headers, body, keys, window),
            Scheme::Shopify => shopify::verify(headers, body, keys),
            Scheme::Slack => slack::verify(headers, body, keys, window),
            Scheme::Standard => standard::verify(headers, body, &self.standard_keys, window),
            Scheme::GitLab => gitlab::verify(headers, keys),
            Scheme::Bitbucket => bitbucket::verify(headers, body, keys),
            Scheme::Twilio { url } => twilio::verify(headers, body, keys, url),
            Scheme::Discord { public_key } => discord::verify(headers, body, public_key, window),
            Scheme::Linear => linear::verify(headers, body, keys, window),
            Scheme::Paddle => paddle::SCHEME.verify(headers, body, keys, window),
            Scheme::Zoom => zoom::verify(headers, body, keys, window),
            Scheme::Square { url } => square::verify(headers, body, keys, url),
            Scheme::Intercom => intercom::verify(headers, body, keys),
            Scheme::PagerDuty => pagerduty::verify(headers, body, keys),
            Scheme::Generic(scheme) => scheme.verify(headers, body, keys, window),
        }
    }

    /// What the headers alone decide, as of `now`, before the body is read: the signature
    /// header is there and well-formed, and a signed timestamp sent in a header is within the
    /// tolerance (GitLab's token, which signs nothing, is checked whole). A request it refuses
    /// would fail [`Verifier::verify`] too; one it passes still needs `verify`.
    pub fn precheck(&self, headers: &HeaderMap, now: SystemTime) -> Result<(), VerifyError> {
        let window = Window {
            now,
            tolerance: self.tolerance,
        };
        match &self.scheme {
            Scheme::GitHub { allow_sha1 } => github::signature(headers, *allow_sha1).map(drop),
            Scheme::Stripe => stripe::SCHEME.precheck(headers, window),
            Scheme::Shopify => shopify::precheck(headers),
            Scheme::Slack => slack::precheck(headers, window),
            Scheme::Standard => standard::precheck(headers, window),
            Scheme::GitLab => gitlab::verify(headers, &self.secrets),
            Scheme::Bitbucket => bitbucket::precheck(headers),
            Scheme::Twilio { .. } => twilio::precheck(headers),
            Scheme::Discord { .. } => discord::precheck(headers, window),
            Scheme::Linear => linear::precheck(headers),
            Scheme::Paddle => paddle::SCHEME.precheck(headers, window),
            Scheme::Zoom => zoom::precheck(headers, window),
            Scheme::Square { .. } => square::precheck(headers),
            Scheme::Intercom => intercom::precheck(headers),
            Scheme::PagerDuty => pagerduty::precheck(headers),
            Scheme::Generic(scheme) => scheme.precheck(headers, window),
        }
    }
}

/// A secret's fingerprint: the first 8 hex digits of the SHA-256 of the secret as written.
pub fn fingerprint(secret: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(secret.as_bytes());
    hex::encode(&digest[..4])
}

/// The accepted time window around `now`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// The time to judge by (the clock, or a vector's time in tests).
    pub now: SystemTime,
    /// How far a signed timestamp may be from `now`, either way.
    pub tolerance: Duration,
}

impl Window {
    /// Checks a signed Unix timestamp (seconds, as text).
    pub fn check(&self, timestamp: &str) -> Result<(), VerifyError> {
        let seconds: u64 = timestamp
            .trim()
            .parse()
            .map_err(|_| VerifyError::Malformed)?;
        // A timestamp past what the clock can hold is as stale as it gets (and must not panic).
        let signed = UNIX_EPOCH
            .checked_add(Duration::from_secs(seconds))
            .ok_or(VerifyError::Stale)?;
        self.check_time(signed)
    }

    /// Checks a signed instant.
    pub fn check_time(&self, signed: SystemTime) -> Result<(), VerifyError> {
        let distance = match self.now.duration_since(signed) {
            Ok(age) => age,
            Err(ahead) => ahead.duration(),
        };
        if distance > self.tolerance {
            return Err(VerifyError::Stale);
        }
        Ok(())
    }
}

/// The first value of header `name` as text, or [`VerifyError::MissingHeader`].
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, VerifyError> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .ok_or(VerifyError::MissingHeader)
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use http::{HeaderMap, HeaderName, HeaderValue};

    /// Asserts what every preset's vector test checks: `verify` passes `headers` over `body`
    /// with `secret` after a rotated-out key, and refuses (mismatch) the body changed by its
    /// first byte and a wrong secret.
    pub fn assert_only_genuine(
        verify: impl Fn(&HeaderMap, &[u8], &[Vec<u8>]) -> Result<(), super::VerifyError>,
        headers: &HeaderMap,
        body: &[u8],
        secret: &[u8],
    ) {
        assert_eq!(
            verify(headers, body, &[b"old".to_vec(), secret.to_vec()]),
            Ok(())
        );
        assert_eq!(
            verify(headers, &body[1..], &[secret.to_vec()]),
            Err(super::VerifyError::Mismatch)
        );
        assert_eq!(
            verify(headers, body, &[b"wrong".to_vec()]),
            Err(super::VerifyError::Mismatch)
        );
    }

    /// Headers from `(name, value)` pairs.
    pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    /// The instant `seconds` after the Unix epoch.
    pub fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    /// The replay window at Unix second `now`, with the presets' usual 5-minute tolerance.
    pub fn window(now: u64) -> super::Window {
        super::Window {
            now: at(now),
            tolerance: Duration::from_secs(300),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_support::at;

    #[test]
    fn the_window_accepts_both_sides_within_tolerance_only() {
        let window = Window {
            now: at(1_000),
            tolerance: Duration::from_secs(300),
        };
        assert_eq!(window.check("1000"), Ok(()));
        assert_eq!(window.check("700"), Ok(()));
        assert_eq!(window.check("1300"), Ok(()));
        assert_eq!(window.check("699"), Err(VerifyError::Stale));
        assert_eq!(window.check("1301"), Err(VerifyError::Stale));
        assert_eq!(window.check("soon"), Err(VerifyError::Malformed));
        assert_eq!(window.check(&u64::MAX.to_string()), Err(VerifyError::Stale));
        assert_eq!(window.check("9223372036854775808"), Err(VerifyError::Stale));
    }

    #[test]
    fn secrets_are_required_and_never_shown() {
        let none = Verifier::new(
            "github",
            Scheme::GitHub { allow_sha1: false },
            &[],
            Duration::ZERO,
        );
        assert!(none.is_err());
        let verifier = Verifier::new(
            "github",
            Scheme::GitHub { allow_sha1: false },
            &["hunter2"],
            Duration::ZERO,
        )
        .unwrap();
        assert!(!format!("{verifier:?}").contains("hunter2"));
    }
}

#[cfg(test)]
mod fuzz {
    use std::time::Duration;

    use http::{HeaderMap, HeaderName, HeaderValue};
    use proptest::prelude::*;

    use super::*;
    use crate::verify::test_support::at;

    /// Every scheme, with a secret it accepts.
    pub(super) fn verifiers() -> Vec<Verifier> {
        let generic = GenericScheme::new(
            "x-signature",
            mac::Algorithm::Sha256,
            generic::Encoding::Base64,
            "v=",
            Some("x-timestamp"),
            None,
        )
        .unwrap();
        [
            ("github", Scheme::GitHub { allow_sha1: true }, "s"),
            ("stripe", Scheme::Stripe, "s"),
            ("shopify", Scheme::Shopify, "s"),
            ("slack", Scheme::Slack, "s"),
            ("standard-webhooks", Scheme::Standard, "whsec_c2VjcmV0"),
            ("hmac", Scheme::Generic(generic), "s"),
            ("gitlab", Scheme::GitLab, "a-token-no-random-header-equals"),
            ("bitbucket", Scheme::Bitbucket, "s"),
            (
                "twilio",
                Scheme::Twilio {
                    url: "https://x/".into(),
                },
                "s",
            ),
            ("linear", Scheme::Linear, "s"),
            ("paddle", Scheme::Paddle, "s"),
            ("zoom", Scheme::Zoom, "s"),
            (
                "square",
                Scheme::Square {
                    url: "https://x/".into(),
                },
                "s",
            ),
            ("intercom", Scheme::Intercom, "s"),
            ("pagerduty", Scheme::PagerDuty, "s"),
        ]
        .into_iter()
        .map(|(name, scheme, secret)| {
            Verifier::new(name, scheme, &[secret], Duration::from_secs(300)).unwrap()
        })
        .chain([Verifier::new(
            "discord",
            Scheme::Discord {
                public_key: discord::parse_public_key(
                    "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8",
                )
                .unwrap(),
            },
            &[],
            Duration::from_secs(300),
        )
        .unwrap()])
        .collect()
    }

    const HEADERS: &[&str] = &[
        "x-hub-signature-256",
        "x-hub-signature",
        "stripe-signature",
        "x-shopify-hmac-sha256",
        "shopify-hmac-sha256",
        "x-slack-signature",
        "x-slack-request-timestamp",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "svix-id",
        "svix-timestamp",
        "svix-signature",
        "x-signature",
        "x-timestamp",
        "x-gitlab-token",
        "x-twilio-signature",
        "x-signature-ed25519",
        "x-signature-timestamp",
        "linear-signature",
        "paddle-signature",
        "x-zm-signature",
        "x-zm-request-timestamp",
        "x-square-hmacsha256-signature",
        "x-pagerduty-signature",
    ];

    proptest! {
        #[test]
        fn arbitrary_signature_headers_never_panic(
            value in proptest::collection::vec(any::<u8>(), 0..160),
            text in "\\PC{0,120}",
            body in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let lossy = String::from_utf8_lossy(&value).into_owned();
            let _ = stripe::SCHEME.parse(&lossy);
            let _ = standard::parse(&lossy);
            let _ = paddle::SCHEME.parse(&lossy);
            let _ = pagerduty::parse(&lossy);
            let _ = stripe::SCHEME.parse(&text);
            let _ = standard::parse(&text);
            let mut headers = HeaderMap::new();
            for (i, name) in HEADERS.iter().enumerate() {
                let candidate = if i % 2 == 0 { value.as_slice() } else { text.as_bytes() };
                if let Ok(header_value) = HeaderValue::from_bytes(candidate) {
                    headers.insert(HeaderName::from_static(name), header_value);
                }
            }
            for verifier in verifiers() {
                let result = verifier.verify(&headers, &body, at(1_700_000_000));
                prop_assert!(result.is_err(), "{} accepted random bytes", verifier.preset());
                let _ = verifier.precheck(&headers, at(1_700_000_000));
            }
        }
    }
}

#[cfg(test)]
mod precheck {
    use super::test_support::{at, headers};
    use super::*;

    #[test]
    fn every_preset_refuses_a_request_without_its_headers_as_verify_does() {
        for verifier in fuzz::verifiers() {
            assert_eq!(
                verifier.precheck(&HeaderMap::new(), at(1_700_000_000)),
                Err(VerifyError::MissingHeader),
                "{}",
                verifier.preset()
            );
            assert_eq!(
                verifier.verify(&HeaderMap::new(), b"{}", at(1_700_000_000)),
                Err(VerifyError::MissingHeader),
                "{}",
                verifier.preset()
            );
        }
    }

    #[test]
    fn malformed_and_stale_headers_are_refused_and_only_the_body_decides_a_match() {
        let stripe =
            Verifier::new("stripe", Scheme::Stripe, &["s"], Duration::from_secs(300)).unwrap();
        let now = at(1_700_000_000);
        let signed = |value: &str| headers(&[("stripe-signature", value)]);
        let wrong = format!("t=1700000000,v1={}", "00".repeat(32));
        assert_eq!(stripe.precheck(&signed(&wrong), now), Ok(()));
        assert_eq!(
            stripe.verify(&signed(&wrong), b"{}", now),
            Err(VerifyError::Mismatch)
        );
        let stale = format!("t=1699999000,v1={}", "00".repeat(32));
        assert_eq!(
            stripe.precheck(&signed(&stale), now),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            stripe.precheck(&signed("t=1700000000,v1=zz"), now),
            Err(VerifyError::Malformed)
        );

        let github = Verifier::new(
            "github",
            Scheme::GitHub { allow_sha1: false },
            &["s"],
            Duration::ZERO,
        )
        .unwrap();
        let hub = |value: &str| headers(&[("x-hub-signature-256", value)]);
        assert_eq!(
            github.precheck(&hub(&format!("sha256={}", "ab".repeat(32))), now),
            Ok(())
        );
        assert_eq!(
            github.precheck(&hub("sha256=not-hex"), now),
            Err(VerifyError::Malformed)
        );

        // GitLab's token signs nothing: the headers decide it whole.
        let gitlab = Verifier::new("gitlab", Scheme::GitLab, &["token"], Duration::ZERO).unwrap();
        let token = |value: &str| headers(&[("x-gitlab-token", value)]);
        assert_eq!(gitlab.precheck(&token("token"), now), Ok(()));
        assert_eq!(
            gitlab.precheck(&token("guess"), now),
            Err(VerifyError::Mismatch)
        );
    }
}
