//! A route's ordered delivery: `order_by` (a JSON pointer into the body) or `order_by_header`
//! (a request header) names the key, and `on_dead_letter` what a dead letter does to its key.

use serde::Deserialize;
use toml::Spanned;

use super::error::ErrorSink;
use crate::dedup::DedupKey;

/// How a route orders its events' deliveries: per destination, events with the same key are
/// delivered one at a time, in the order they were accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderConfig {
    /// Where the key is read from, in the request as received (before plugins). A request
    /// without it (or whose key is not a string or a number) is delivered unordered.
    pub key: DedupKey,
    /// What a dead-lettered delivery does to the later events of its key.
    pub on_dead_letter: OnDeadLetter,
}

/// What a dead-lettered delivery does to the later events of its key at that destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDeadLetter {
    /// The next event of the key goes on at once (the default): one lost update does not stop
    /// an object's later ones.
    #[default]
    Skip,
    /// The key stops: its later events wait (in `webhook_ordered_keys_waiting`) until the
    /// dead letter is replayed, which delivers it first, or discarded.
    Hold,
}

/// The order keys of a raw `[[routes]]` entry.
#[derive(Debug, Default)]
pub(super) struct RawOrder {
    pub order_by: Option<Spanned<String>>,
    pub order_by_header: Option<Spanned<String>>,
    pub on_dead_letter: Option<Spanned<OnDeadLetter>>,
}

impl RawOrder {
    /// The route's ordering (`None`: unordered), recording problems under `routes[i]` (`key`).
    pub(super) fn build(self, key: &str, sink: &mut ErrorSink<'_>) -> Option<OrderConfig> {
        let key_source = match (self.order_by, self.order_by_header) {
            (Some(_), Some(header)) => {
                sink.push(
                    Some(header.span()),
                    format!("{key}.order_by_header"),
                    "set `order_by` (a JSON pointer) or `order_by_header`, not both",
                );
                return None;
            }
            (Some(pointer), None) => {
                let span = pointer.span();
                let pointer = pointer.into_inner();
                if !pointer.starts_with('/') {
                    sink.push(
                        Some(span),
                        format!("{key}.order_by"),
                        format!(
                            "{pointer:?} is not a JSON pointer: it must start with '/', as in \"/data/object/id\""
                        ),
                    );
                    return None;
                }
                DedupKey::Pointer(pointer)
            }
            (None, Some(header)) => {
                let span = header.span();
                let name = header.into_inner();
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    sink.push(
                        Some(span),
                        format!("{key}.order_by_header"),
                        format!("{name:?} is not a valid header name"),
                    );
                    return None;
                }
                DedupKey::Header(name.to_ascii_lowercase())
            }
            (None, None) => {
                if let Some(policy) = self.on_dead_letter {
                    sink.push(
                        Some(policy.span()),
                        format!("{key}.on_dead_letter"),
                        "applies to ordered routes only: set `order_by` or `order_by_header`",
                    );
                }
                return None;
            }
        };
        Some(OrderConfig {
            key: key_source,
            on_dead_letter: self
                .on_dead_letter
                .map(Spanned::into_inner)
                .unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, QueueBackend};
    use crate::dedup::DedupKey;

    use super::*;

    const BASE: &str = "[destinations.a]\nurl = \"http://127.0.0.1:1/\"\n\
                        [[routes]]\nid = \"r\"\npath = \"/r\"\ndestinations = [\"a\"]\n";

    fn parse(extra: &str) -> Result<Config, String> {
        Config::parse(&format!("{BASE}{extra}"), Path::new("t.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn order_keys_are_read_and_checked() {
        let order = |extra: &str| parse(extra).expect("valid").routes[0].order.clone();
        assert_eq!(order(""), None);
        assert_eq!(
            order("order_by = \"/data/object/id\"\n"),
            Some(OrderConfig {
                key: DedupKey::Pointer("/data/object/id".into()),
                on_dead_letter: OnDeadLetter::Skip,
            })
        );
        assert_eq!(
            order("order_by_header = \"X-Shopify-Order-Id\"\non_dead_letter = \"hold\"\n"),
            Some(OrderConfig {
                key: DedupKey::Header("x-shopify-order-id".into()),
                on_dead_letter: OnDeadLetter::Hold,
            })
        );

        for (extra, key, says) in [
            (
                "order_by = \"/id\"\norder_by_header = \"x-id\"\n",
                "routes[0].order_by_header",
                "not both",
            ),
            (
                "order_by = \"data.id\"\n",
                "routes[0].order_by",
                "must start with '/'",
            ),
            (
                "order_by_header = \"bad header\"\n",
                "routes[0].order_by_header",
                "not a valid header name",
            ),
            (
                "on_dead_letter = \"skip\"\n",
                "routes[0].on_dead_letter",
                "ordered routes only",
            ),
            (
                "order_by = \"/id\"\non_dead_letter = \"drop\"\n",
                "t.toml:8:",
                "unknown variant `drop`, expected `skip` or `hold`",
            ),
        ] {
            let error = parse(extra).expect_err(extra);
            assert!(
                error.contains(key) && error.contains(says) && error.contains("t.toml:"),
                "{extra}: {error}"
            );
        }
        let nats = parse(
            "order_by = \"/id\"\n[queue]\nbackend = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\n\
             partitions = 4\n",
        )
        .expect("an ordered route on NATS");
        assert_eq!(nats.queue.backend, Some(QueueBackend::Nats));
        assert_eq!(nats.queue.partitions.get(), 4);
        assert!(nats.routes[0].order.is_some());
    }
}
