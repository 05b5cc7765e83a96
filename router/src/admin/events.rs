//! `GET /events` and `GET /events/{id}`: the event record as JSON.
//!
//! - `GET /events/{id}`: the event's record with its body, if the route keeps bodies;
//! - `GET /events?route=&destination=&outcome=&since=&limit=&cursor=`: `{"events": [...],
//!   "next_cursor": ...}`, newest first, without bodies; `next_cursor` (`null` on the last
//!   page) given back as `cursor` gives the next page, each event on one page only.

use http::{Method, Response, StatusCode};
use serde_json::json;

use crate::inspect::{EventStore, ListQuery, parse_id};
use crate::reply::{self, ResponseBody};

/// Events on a page unless `limit` says otherwise.
const DEFAULT_LIMIT: usize = 50;
/// Most events on a page.
const MAX_LIMIT: usize = 1000;
/// The outcomes `outcome=` accepts.
const OUTCOMES: &[&str] = &[
    "pending",
    "delivered",
    "dead_lettered",
    "dropped",
    "rejected",
    "refused",
];

/// Answers a request for `/events` or `/events/...`; `store` is `None` when the record is off.
pub(super) fn handle(
    store: Option<&EventStore>,
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Response<ResponseBody> {
    if method != Method::GET {
        return reply::error(StatusCode::METHOD_NOT_ALLOWED, "use GET");
    }
    let Some(store) = store else {
        return reply::error(
            StatusCode::NOT_FOUND,
            "the event record is off ([inspect] events = 0)",
        );
    };
    if let Some(id) = path.strip_prefix("/events/") {
        return match parse_id(id).and_then(|id| store.get(id)) {
            Some(record) => reply::json(StatusCode::OK, &record.to_json(true)),
            None => reply::error(StatusCode::NOT_FOUND, "no recorded event with this id"),
        };
    }
    match parse_query(query.unwrap_or_default()) {
        Ok(query) => {
            let page = store.list(&query);
            let events: Vec<_> = page.events.iter().map(|e| e.to_json(false)).collect();
            let next = page.next.map(|cursor| cursor.to_string());
            reply::json(
                StatusCode::OK,
                &json!({ "events": events, "next_cursor": next }),
            )
        }
        Err(message) => reply::error(StatusCode::BAD_REQUEST, &message),
    }
}

/// Reads the list's query string; an unknown parameter or a bad value is an error naming it.
fn parse_query(text: &str) -> Result<ListQuery, String> {
    let mut query = ListQuery {
        limit: DEFAULT_LIMIT,
        ..ListQuery::default()
    };
    for (key, value) in form_urlencoded::parse(text.as_bytes()) {
        let value = value.into_owned();
        match key.as_ref() {
            "route" => query.route = Some(value),
            "destination" => query.destination = Some(value),
            "outcome" if OUTCOMES.contains(&value.as_str()) => query.outcome = Some(value),
            "outcome" => {
                return Err(format!(
                    "outcome {value:?} is not one of {}",
                    OUTCOMES.join(", ")
                ));
            }
            "since" => query.since_ms = Some(parse_since(&value)?),
            "limit" => {
                query.limit = value
                    .parse()
                    .ok()
                    .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                    .ok_or_else(|| {
                        format!("limit {value:?} is not a number from 1 to {MAX_LIMIT}")
                    })?;
            }
            "cursor" => {
                query.cursor = Some(
                    value
                        .parse()
                        .map_err(|()| format!("cursor {value:?} is not one this API gave"))?,
                );
            }
            other => {
                return Err(format!(
                    "unknown parameter {other:?}: use route, destination, outcome, since, limit or cursor"
                ));
            }
        }
    }
    Ok(query)
}

/// `since`: Unix milliseconds, or an RFC 3339 time.
fn parse_since(value: &str) -> Result<u64, String> {
    if let Ok(ms) = value.parse() {
        return Ok(ms);
    }
    humantime::parse_rfc3339_weak(value)
        .map(crate::event::unix_millis)
        .map_err(|_| format!("since {value:?} is neither Unix milliseconds nor an RFC 3339 time"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_reads_every_filter_and_names_a_bad_one() {
        let query = parse_query(
            "route=gh&destination=ci&outcome=dead_lettered&since=2026-01-01T00:00:00Z&limit=100",
        )
        .expect("valid");
        assert_eq!(query.route.as_deref(), Some("gh"));
        assert_eq!(query.destination.as_deref(), Some("ci"));
        assert_eq!(query.outcome.as_deref(), Some("dead_lettered"));
        assert_eq!(query.since_ms, Some(1_767_225_600_000));
        assert_eq!(query.limit, 100);
        assert_eq!(parse_query("").expect("empty").limit, DEFAULT_LIMIT);
        for (bad, named) in [
            ("outcome=lost", "outcome"),
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("since=yesterday", "since"),
            ("cursor=abc", "cursor"),
            ("colour=red", "colour"),
        ] {
            let error = parse_query(bad).expect_err(bad);
            assert!(error.contains(named), "{bad}: {error}");
        }
    }
}
