//! What protects a route from forged and repeated webhooks (its `verify` and `dedup` tables)
//! and how the router signs its own deliveries (a destination's `sign` table).
//!
//! ```toml
//! verify = { preset = "github", secrets = ["${GITHUB_WEBHOOK_SECRET}"] }
//! verify = { preset = "stripe", secrets = ["${STRIPE_SECRET}", "${STRIPE_OLD_SECRET}"], tolerance = "5m" }
//! verify = { preset = "hmac", secrets = ["${SECRET}"], header = "X-Signature", algorithm = "sha512",
//!            encoding = "base64", prefix = "sha512=", timestamp_header = "X-Timestamp",
//!            signed_content = "{timestamp}.{body}" }
//! verify = { preset = "twilio", secrets = ["${TWILIO_AUTH_TOKEN}"], public_url = "https://hooks.example.com/hooks/twilio" }
//! verify = { preset = "discord", public_key = "${DISCORD_PUBLIC_KEY}", challenge = true }
//! ```

use std::time::Duration;

use serde::Deserialize;

use super::{EnvString, HumanDuration, Secret};
use crate::dedup::DedupKey;
use crate::verify::generic::Encoding;
use crate::verify::mac::Algorithm;
use crate::verify::{GenericScheme, Scheme, StandardSigner, Verifier, discord};

/// Longest accepted `tolerance`.
const MAX_TOLERANCE: Duration = Duration::from_secs(24 * 3600);

/// The senders with a preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Preset {
    Github,
    Stripe,
    Shopify,
    Slack,
    StandardWebhooks,
    Gitlab,
    Bitbucket,
    Twilio,
    Discord,
    Linear,
    Paddle,
    Zoom,
    Square,
    Intercom,
    Pagerduty,
    Hmac,
}

impl Preset {
    fn name(self) -> &'static str {
        match self {
            Self::Github => "github",
            Self::Stripe => "stripe",
            Self::Shopify => "shopify",
            Self::Slack => "slack",
            Self::StandardWebhooks => "standard-webhooks",
            Self::Gitlab => "gitlab",
            Self::Bitbucket => "bitbucket",
            Self::Twilio => "twilio",
            Self::Discord => "discord",
            Self::Linear => "linear",
            Self::Paddle => "paddle",
            Self::Zoom => "zoom",
            Self::Square => "square",
            Self::Intercom => "intercom",
            Self::Pagerduty => "pagerduty",
            Self::Hmac => "hmac",
        }
    }
}

/// The raw `verify` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVerify {
    preset: Preset,
    #[serde(default)]
    secrets: Vec<Secret>,
    #[serde(
        default = "default_tolerance",
        deserialize_with = "super::bounds::tolerance"
    )]
    tolerance: HumanDuration,
    #[serde(default)]
    allow_sha1: bool,
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    algorithm: Option<Algorithm>,
    #[serde(default)]
    encoding: Option<Encoding>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    timestamp_header: Option<String>,
    #[serde(default)]
    signed_content: Option<String>,
    #[serde(default)]
    public_url: Option<EnvString>,
    #[serde(default)]
    public_key: Option<EnvString>,
    #[serde(default)]
    challenge: bool,
}

fn default_tolerance() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}

impl RawVerify {
    /// The verifier this table describes, or what is wrong with it.
    pub(crate) fn build(self) -> Result<Verifier, String> {
        if self.tolerance.0 > MAX_TOLERANCE {
            return Err("tolerance may be at most 24h".to_owned());
        }
        if self.allow_sha1 && self.preset != Preset::Github {
            return Err("allow_sha1 applies to the github preset only".to_owned());
        }
        let generic_keys = [
            ("header", self.header.is_some()),
            ("algorithm", self.algorithm.is_some()),
            ("encoding", self.encoding.is_some()),
            ("prefix", self.prefix.is_some()),
            ("timestamp_header", self.timestamp_header.is_some()),
            ("signed_content", self.signed_content.is_some()),
        ];
        if self.preset != Preset::Hmac
            && let Some((key, _)) = generic_keys.iter().find(|(_, set)| *set)
        {
            return Err(format!("{key} applies to the hmac preset only"));
        }
        let needs_url = matches!(self.preset, Preset::Twilio | Preset::Square);
        if self.public_url.is_some() && !needs_url {
            return Err("public_url applies to the twilio and square presets only".to_owned());
        }
        if self.public_key.is_some() && self.preset != Preset::Discord {
            return Err("public_key applies to the discord preset only".to_owned());
        }
        let public_url = || -> Result<String, String> {
            let url = self.public_url.as_ref().map(|url| url.0.clone()).ok_or_else(|| {
                format!(
                    "the {} preset needs `public_url`: the full URL the sender posts to, as configured at the sender",
                    self.preset.name()
                )
            })?;
            reqwest::Url::parse(&url)
                .ok()
                .filter(|parsed| matches!(parsed.scheme(), "http" | "https"))
                .ok_or_else(|| format!("public_url {url:?} is not an http(s) URL"))?;
            Ok(url)
        };
        let scheme = match self.preset {
            Preset::Github => Scheme::GitHub {
                allow_sha1: self.allow_sha1,
            },
            Preset::Gitlab => Scheme::GitLab,
            Preset::Bitbucket => Scheme::Bitbucket,
            Preset::Twilio => Scheme::Twilio { url: public_url()? },
            Preset::Discord => Scheme::Discord {
                public_key: discord::parse_public_key(
                    &self
                        .public_key
                        .as_ref()
                        .ok_or("the discord preset needs `public_key`: the application's public key, hex")?
                        .0,
                )?,
            },
            Preset::Linear => Scheme::Linear,
            Preset::Paddle => Scheme::Paddle,
            Preset::Zoom => Scheme::Zoom,
            Preset::Square => Scheme::Square { url: public_url()? },
            Preset::Intercom => Scheme::Intercom,
            Preset::Pagerduty => Scheme::PagerDuty,
            Preset::Stripe => Scheme::Stripe,
            Preset::Shopify => Scheme::Shopify,
            Preset::Slack => Scheme::Slack,
            Preset::StandardWebhooks => Scheme::Standard,
            Preset::Hmac => {
                let header = self
                    .header
                    .as_deref()
                    .ok_or("the hmac preset needs `header`: the signature's header name")?;
                Scheme::Generic(GenericScheme::new(
                    header,
                    self.algorithm.unwrap_or(Algorithm::Sha256),
                    self.encoding.unwrap_or_default(),
                    self.prefix.as_deref().unwrap_or_default(),
                    self.timestamp_header.as_deref(),
                    self.signed_content.as_deref(),
                )?)
            }
        };
        let secrets: Vec<&str> = self.secrets.iter().map(Secret::expose).collect();
        let verifier = Verifier::new(self.preset.name(), scheme, &secrets, self.tolerance.0)?;
        if self.challenge {
            verifier.answering_challenges()
        } else {
            Ok(verifier)
        }
    }
}

/// A destination's `sign` table: outbound deliveries carry Standard Webhooks signatures.
///
/// ```toml
/// sign = { scheme = "standard-webhooks", secrets = ["${SIGNING_SECRET}", "${NEXT_SIGNING_SECRET}"] }
/// ```
///
/// Secrets are `whsec_<base64>` (HMAC, `v1`) or `whsk_<base64>` (an ed25519 seed, `v1a`); each
/// gives one signature, so receivers can rotate.
#[derive(Debug, Clone)]
pub struct SignConfig(pub StandardSigner);

impl<'de> Deserialize<'de> for SignConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        enum SignScheme {
            #[serde(rename = "standard-webhooks")]
            StandardWebhooks,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct RawSign {
            #[allow(dead_code)]
            scheme: SignScheme,
            secrets: Vec<Secret>,
        }
        let raw = RawSign::deserialize(deserializer)?;
        let secrets: Vec<&str> = raw.secrets.iter().map(Secret::expose).collect();
        StandardSigner::new(&secrets)
            .map(SignConfig)
            .map_err(serde::de::Error::custom)
    }
}

/// A route's `dedup` key as written: `false`, or a table.
#[derive(Debug)]
pub(crate) enum RawDedupSetting {
    /// `dedup = false`: no dedup, not even the preset's default.
    Off,
    /// A `dedup` table.
    Table(RawDedup),
}

impl<'de> Deserialize<'de> for RawDedupSetting {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Setting;
        impl<'de> serde::de::Visitor<'de> for Setting {
            type Value = RawDedupSetting;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a table such as `{}` or `{ window = \"1h\" }`, or `false`")
            }
            fn visit_bool<E: serde::de::Error>(self, on: bool) -> Result<Self::Value, E> {
                if on {
                    return Err(E::custom(
                        "write `dedup = {}` to name the preset's delivery id, or `false` to turn dedup off",
                    ));
                }
                Ok(RawDedupSetting::Off)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                RawDedup::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawDedupSetting::Table)
            }
        }
        deserializer.deserialize_any(Setting)
    }
}

impl RawDedupSetting {
    /// The route's dedup settings: as written, or, when `dedup` is not written, the verify
    /// preset's delivery id for [`crate::dedup::default_window`] (none if the route does not
    /// verify or its preset sends no id).
    pub(crate) fn build(
        setting: Option<Self>,
        verifier: Option<&Verifier>,
    ) -> Result<Option<DedupConfig>, String> {
        match setting {
            Some(Self::Off) => Ok(None),
            Some(Self::Table(raw)) => raw.build(verifier).map(Some),
            None => Ok(verifier.and_then(|verifier| {
                Some(DedupConfig {
                    key: DedupKey::for_preset(verifier.preset())?,
                    window: crate::dedup::default_window(verifier.signed_tolerance()),
                    capacity: crate::dedup::DEFAULT_CAPACITY,
                })
            })),
        }
    }
}

/// A route's `dedup` table: where its delivery id is, and for how long ids are remembered.
///
/// ```toml
/// dedup = {}                                   # the verify preset's delivery id
/// dedup = { header = "X-Request-Id", window = "1h", capacity = 50_000 }
/// dedup = { pointer = "/event/id" }
/// dedup = false                                # not even the preset's default
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDedup {
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    pointer: Option<String>,
    #[serde(
        default = "default_dedup_window",
        deserialize_with = "super::bounds::dedup_window"
    )]
    window: HumanDuration,
    #[serde(
        default = "default_dedup_capacity",
        deserialize_with = "super::bounds::dedup_capacity"
    )]
    capacity: usize,
}

fn default_dedup_window() -> HumanDuration {
    HumanDuration(Duration::from_secs(24 * 3600))
}

fn default_dedup_capacity() -> usize {
    crate::dedup::DEFAULT_CAPACITY
}

/// A route's validated `dedup` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupConfig {
    /// Where the delivery id is read.
    pub key: DedupKey,
    /// How long an id is remembered.
    pub window: Duration,
    /// Most ids remembered; the oldest is forgotten first.
    pub capacity: usize,
}

impl RawDedup {
    /// The dedup settings, given the route's verifier (whose preset may name the id).
    pub(crate) fn build(self, verifier: Option<&Verifier>) -> Result<DedupConfig, String> {
        if verifier.is_none() {
            return Err("dedup needs `verify`: on an unverified route anyone could post delivery ids first and have the real deliveries dropped as duplicates".to_owned());
        }
        let key = match (self.header, self.pointer) {
            (Some(_), Some(_)) => return Err("set `header` or `pointer`, not both".to_owned()),
            (Some(header), None) => {
                http::HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| format!("header {header:?} is not a valid header name"))?;
                DedupKey::Header(header.to_ascii_lowercase())
            }
            (None, Some(pointer)) => {
                if !pointer.starts_with('/') {
                    return Err(format!("pointer {pointer:?} must start with '/'"));
                }
                DedupKey::Pointer(pointer)
            }
            (None, None) => verifier
                .and_then(|v| DedupKey::for_preset(v.preset()))
                .ok_or("dedup needs `header` or `pointer`: this verify preset's sender sends no delivery id to default to")?,
        };
        if self.capacity == 0 || self.window.0.is_zero() {
            return Err("window and capacity must be above zero".to_owned());
        }
        Ok(DedupConfig {
            key,
            window: self.window.0,
            capacity: self.capacity,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::Config;
    use crate::dedup::DedupKey;

    fn errors(text: &str) -> String {
        Config::parse(text, Path::new("routes.toml"))
            .expect_err("the config is refused")
            .to_string()
    }

    const BASE: &str = "[destinations.ci]\nurl = \"http://127.0.0.1:9000/\"\n";

    #[test]
    fn bad_verify_and_sign_tables_name_their_place() {
        let text = format!(
            "{BASE}sign = {{ scheme = \"standard-webhooks\", secrets = [\"not-whsec\"] }}\n\n\
             [[routes]]\nid = \"a\"\npath = \"/a\"\ndestinations = [\"ci\"]\n\
             verify = {{ preset = \"hmac\", secrets = [\"s\"] }}\n\n\
             [[routes]]\nid = \"b\"\npath = \"/b\"\ndestinations = [\"ci\"]\n\
             verify = {{ preset = \"github\", secrets = [\"s\"], prefix = \"x\" }}\n\n\
             [[routes]]\nid = \"c\"\npath = \"/c\"\ndestinations = [\"ci\"]\n\
             verify = {{ preset = \"standard-webhooks\", secrets = [\"plain\"] }}\n\n\
             [[routes]]\nid = \"d\"\npath = \"/d\"\ndestinations = [\"ci\"]\n\
             dedup = {{ header = \"x-id\" }}\n"
        );
        let errors = errors(&text);
        assert!(errors.contains("routes.toml:3:"), "{errors}");
        assert!(
            errors.contains("signing secret starts with whsec_"),
            "{errors}"
        );
        assert!(
            errors.contains("routes.toml:9:") && errors.contains("needs `header`"),
            "{errors}"
        );
        assert!(
            errors.contains("prefix applies to the hmac preset only"),
            "{errors}"
        );
        assert!(
            errors.contains("routes[2].verify") && errors.contains("secrets[0]"),
            "{errors}"
        );
        assert!(
            errors.contains("routes[3].dedup") && errors.contains("dedup needs `verify`"),
            "{errors}"
        );
    }

    #[test]
    fn an_unverified_route_may_not_feed_a_signing_destination_unless_it_says_so() {
        let signing = format!(
            "{BASE}sign = {{ scheme = \"standard-webhooks\", secrets = [\"whsec_c2VjcmV0\"] }}\n\
             [destinations.plain]\nurl = \"http://127.0.0.1:9001/\"\n\n\
             [[routes]]\nid = \"a\"\npath = \"/a\"\ndestinations = [\"plain\", \"ci\"]\n\n\
             [[routes]]\nid = \"b\"\npath = \"/b\"\ndestinations = [\"plain\"]\nfan_out = [\"ci\"]\n"
        );
        let errors = errors(&signing);
        assert!(
            errors.contains("routes.toml:10:")
                && errors.contains("routes[0].destinations")
                && errors.contains("destination \"ci\" signs its deliveries")
                && errors.contains("unverified = \"sign-anyway\""),
            "{errors}"
        );
        assert!(
            errors.contains("routes.toml:16:") && errors.contains("routes[1].fan_out"),
            "{errors}"
        );
        let anyway = signing.replace(
            "destinations = [\"plain\"",
            "unverified = \"sign-anyway\"\ndestinations = [\"plain\"",
        );
        assert!(Config::parse(&anyway, Path::new("routes.toml")).is_ok());
        let verified = format!("{anyway}verify = {{ preset = \"github\", secrets = [\"s\"] }}\n");
        let refused = super::tests::errors(&verified);
        assert!(
            refused.contains("routes[1].unverified")
                && refused.contains("applies to routes without `verify` only"),
            "{refused}"
        );
    }

    #[test]
    fn route_protection_keys_are_checked() {
        let text = format!(
            "{BASE}\n[[routes]]\nid = \"a\"\npath = \"/a\"\ndestinations = [\"ci\"]\n\
             keep_headers = [\"Authorization\", \"x-request-id\"]\nfan_out = [\"nowhere\"]\n\
             rate_limit = {{ per_second = 5, unverified = {{ per_second = 1 }} }}\n\n\
             [[routes]]\nid = \"b\"\npath = \"/b\"\ndestinations = [\"ci\"]\n\
             verify = {{ preset = \"github\", secrets = [\"s\"] }}\ndedup = true\n"
        );
        let errors = errors(&text);
        assert!(
            errors.contains("routes[0].keep_headers")
                && errors.contains("\"x-request-id\" is kept anyway"),
            "{errors}"
        );
        assert!(
            errors.contains("routes[0].fan_out")
                && errors.contains("unknown destination \"nowhere\""),
            "{errors}"
        );
        assert!(
            errors.contains("routes[0].rate_limit.unverified")
                && errors.contains("applies to routes with `verify` only"),
            "{errors}"
        );
        assert!(
            errors.contains("routes.toml:17:") && errors.contains("`false` to turn dedup off"),
            "{errors}"
        );
    }

    #[test]
    fn verified_routes_dedup_by_their_presets_id_unless_turned_off() {
        let route = |id: &str, extra: &str| {
            format!(
                "[[routes]]\nid = \"{id}\"\npath = \"/{id}\"\ndestinations = [\"ci\"]\n{extra}\n"
            )
        };
        let text = [
            BASE.to_owned(),
            route(
                "github",
                "verify = { preset = \"github\", secrets = [\"s\"] }",
            ),
            route(
                "stripe",
                "verify = { preset = \"stripe\", secrets = [\"s\"], tolerance = \"2m\" }",
            ),
            route(
                "off",
                "verify = { preset = \"stripe\", secrets = [\"s\"] }\ndedup = false",
            ),
            route(
                "written",
                "verify = { preset = \"github\", secrets = [\"s\"] }\ndedup = { window = \"1h\" }",
            ),
            route("zoom", "verify = { preset = \"zoom\", secrets = [\"s\"] }"),
            route("open", ""),
        ]
        .concat();
        let config = Config::parse(&text, Path::new("routes.toml")).expect("valid");
        let dedup: Vec<_> = config
            .routes
            .iter()
            .map(|route| {
                route
                    .dedup
                    .as_ref()
                    .map(|d| (d.key.clone(), d.window, d.capacity))
            })
            .collect();
        let header = |name: &str| DedupKey::Header(name.to_owned());
        assert_eq!(
            dedup,
            [
                Some((
                    header("x-github-delivery"),
                    Duration::from_secs(600),
                    100_000
                )),
                Some((
                    DedupKey::Pointer("/id".into()),
                    Duration::from_secs(240),
                    100_000
                )),
                None,
                Some((
                    header("x-github-delivery"),
                    Duration::from_secs(3600),
                    100_000
                )),
                None,
                None,
            ]
        );
    }

    #[test]
    fn a_good_verify_table_builds_its_verifier() {
        let text = format!(
            "{BASE}\n[[routes]]\nid = \"a\"\npath = \"/a\"\ndestinations = [\"ci\"]\n\
             verify = {{ preset = \"stripe\", secrets = [\"whsec_x\"], tolerance = \"2m\" }}\n"
        );
        let config = Config::parse(&text, Path::new("routes.toml")).expect("valid");
        let verifier = config.routes[0].verify.as_ref().expect("a verifier");
        assert_eq!(verifier.preset(), "stripe");
    }

    #[test]
    fn whsec_secrets_may_leave_out_their_base64_padding() {
        let text = format!(
            "{BASE}sign = {{ scheme = \"standard-webhooks\", secrets = [\"whsec_b2xkLXNlY3JldA\"] }}\n\n\
             [[routes]]\nid = \"a\"\npath = \"/a\"\ndestinations = [\"ci\"]\n\
             verify = {{ preset = \"standard-webhooks\", secrets = [\"whsec_b2xkLXNlY3JldA\"] }}\n"
        );
        let config = Config::parse(&text, Path::new("routes.toml"));
        assert!(config.is_ok(), "{}", config.unwrap_err());
    }

    #[test]
    fn presets_missing_what_they_need_name_their_place() {
        let text = format!(
            "{BASE}\n[[routes]]\nid = \"a\"\npath = \"/a\"\ndestinations = [\"ci\"]\n\
             verify = {{ preset = \"twilio\", secrets = [\"token\"] }}\n\n\
             [[routes]]\nid = \"b\"\npath = \"/b\"\ndestinations = [\"ci\"]\n\
             verify = {{ preset = \"square\", secrets = [\"key\"], public_url = \"not a url\" }}\n\n\
             [[routes]]\nid = \"c\"\npath = \"/c\"\ndestinations = [\"ci\"]\n\
             verify = {{ preset = \"discord\", secrets = [\"s\"] }}\n\n\
             [[routes]]\nid = \"d\"\npath = \"/d\"\ndestinations = [\"ci\"]\n\
             verify = {{ preset = \"github\", secrets = [\"s\"], public_key = \"00\" }}\n\n\
             [[routes]]\nid = \"e\"\npath = \"/e\"\ndestinations = [\"ci\"]\n\
             verify = {{ preset = \"gitlab\", secrets = [\"s\"], public_url = \"https://x/\" }}\n\n\
             [[routes]]\nid = \"f\"\npath = \"/f\"\ndestinations = [\"ci\"]\n\
             verify = {{ preset = \"github\", secrets = [\"s\"], challenge = true }}\n"
        );
        let errors = errors(&text);
        assert!(
            errors.contains("routes.toml:8:")
                && errors.contains("routes[0].verify")
                && errors.contains("the twilio preset needs `public_url`"),
            "{errors}"
        );
        assert!(
            errors.contains("routes.toml:14:") && errors.contains("is not an http(s) URL"),
            "{errors}"
        );
        assert!(
            errors.contains("routes.toml:20:") && errors.contains("needs `public_key`"),
            "{errors}"
        );
        assert!(
            errors.contains("routes.toml:26:")
                && errors.contains("public_key applies to the discord preset only"),
            "{errors}"
        );
        assert!(
            errors.contains("routes.toml:32:")
                && errors.contains("public_url applies to the twilio and square presets only"),
            "{errors}"
        );
        assert!(
            errors.contains("routes.toml:38:")
                && errors.contains("challenge applies to the slack, zoom and discord presets only"),
            "{errors}"
        );
    }

    #[test]
    fn new_presets_build_from_what_they_need() {
        let text = format!(
            "{BASE}\n[[routes]]\nid = \"a\"\npath = \"/a\"\ndestinations = [\"ci\"]\n\
             verify = {{ preset = \"twilio\", secrets = [\"t\"], public_url = \"https://h.example/a?x=1\" }}\n\
             [[routes]]\nid = \"b\"\npath = \"/b\"\ndestinations = [\"ci\"]\n\
             verify = {{ preset = \"discord\", public_key = \"03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8\", challenge = true }}\n\
             [[routes]]\nid = \"c\"\npath = \"/c\"\ndestinations = [\"ci\"]\n\
             verify = {{ preset = \"zoom\", secrets = [\"z\"], challenge = true }}\n"
        );
        let config = Config::parse(&text, Path::new("routes.toml")).expect("valid");
        let presets: Vec<&str> = config
            .routes
            .iter()
            .filter_map(|route| route.verify.as_ref().map(|v| v.preset()))
            .collect();
        assert_eq!(presets, ["twilio", "discord", "zoom"]);
    }
}
