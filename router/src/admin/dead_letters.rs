//! The dead-letter API.
//!
//! - `GET /dead-letters`: a page of letters (a JSON array, in id order), filtered by the query
//!   keys of [`LetterFilter`]; `limit` (default 1000) letters a page, the next page from
//!   `cursor`, the value of the answer's `x-next-cursor` header (absent on the last page).
//! - `POST /dead-letters/replay` and `DELETE /dead-letters`: every letter the filter matches,
//!   queued again (answering how many were queued) or discarded (answering how many). A filter
//!   or `all=true` is required, so that a bare request does not act on everything by mistake.
//! - `GET /dead-letters/{id}`, `POST /dead-letters/{id}/replay` and `DELETE /dead-letters/{id}`:
//!   one letter.

use futures_util::StreamExt;
use http::{HeaderValue, Method, Response, StatusCode};
use serde::Serialize;

use super::Admin;
use std::sync::Arc;

use crate::delivery::dead_letter::filter::FILTER_KEYS;
use crate::delivery::dead_letter::{DeadLetter, DeadLetterStore, LetterFilter, Taken};
use crate::inspect::Inspector;
use crate::queue::{DestinationId, DispatchQueue, EnqueueError};
use crate::reply::{self, ResponseBody};

/// Letters on a page unless `limit` says otherwise.
const DEFAULT_PAGE: usize = 1000;
/// The most letters one page may hold.
const MAX_PAGE: usize = 10_000;
/// Replays queued at once by a bulk replay (the journal commits them together).
const REPLAYS_AT_ONCE: usize = 64;
/// The header naming where the next page starts.
const NEXT_CURSOR: &str = "x-next-cursor";

/// A request's query: the filter, and the paging and confirmation keys.
#[derive(Debug, Default)]
struct Query {
    filter: LetterFilter,
    all: bool,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// What a bulk replay did.
#[derive(Debug, Default, Serialize)]
struct ReplayCounts {
    /// Letters the filter matched.
    matched: usize,
    /// Letters queued again (and removed from the dead letters).
    queued: usize,
    /// Letters kept because their destination is no longer in the config.
    not_replayable: usize,
    /// Letters kept because the queue refused them (full, or shutting down).
    not_queued: usize,
}

impl Query {
    fn parse(query: Option<&str>) -> Result<Query, String> {
        let mut parsed = Query::default();
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*key {
                "all" => {
                    parsed.all = value
                        .parse()
                        .map_err(|_| format!("all: {value:?} is not true or false"))?;
                }
                "limit" => {
                    let limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_PAGE).contains(n))
                        .ok_or_else(|| format!("limit: {value:?} is not 1 to {MAX_PAGE}"))?;
                    parsed.limit = Some(limit);
                }
                "cursor" => parsed.cursor = Some(value.into_owned()),
                _ => {
                    if !parsed.filter.set(&key, &value).map_err(|e| e.to_string())? {
                        return Err(format!(
                            "unknown query key {key:?} (filters: {}; also all, limit, cursor)",
                            FILTER_KEYS.join(", ")
                        ));
                    }
                }
            }
        }
        Ok(parsed)
    }

    /// The filter of a bulk replay or discard: one must be given, or `all=true`.
    fn bulk_filter(self) -> Result<LetterFilter, String> {
        if self.limit.is_some() || self.cursor.is_some() {
            return Err("limit and cursor apply to GET only".to_owned());
        }
        if self.filter.is_empty() && !self.all {
            return Err(format!(
                "give a filter ({}) or all=true",
                FILTER_KEYS.join(", ")
            ));
        }
        Ok(self.filter)
    }
}

impl Admin {
    /// Serves `/dead-letters` and the paths under it.
    pub(super) async fn dead_letter_api(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
    ) -> Response<ResponseBody> {
        let query = match Query::parse(query) {
            Ok(query) => query,
            Err(message) => return reply::error(StatusCode::BAD_REQUEST, &message),
        };
        let rest = path.strip_prefix("/dead-letters/");
        match (method, rest) {
            (&Method::GET, None) => self.list(&query),
            (&Method::DELETE, None) => match query.bulk_filter() {
                Ok(filter) => {
                    let discarded = self.dead_letters.discard_matching(&filter);
                    tracing::info!(discarded, ?filter, "dead letters discarded");
                    reply::json(
                        StatusCode::OK,
                        &serde_json::json!({ "discarded": discarded }),
                    )
                }
                Err(message) => reply::error(StatusCode::BAD_REQUEST, &message),
            },
            (_, None) => reply::error(StatusCode::METHOD_NOT_ALLOWED, "use GET or DELETE"),
            (&Method::POST, Some("replay")) => match query.bulk_filter() {
                Ok(filter) => self.replay_matching(&filter).await,
                Err(message) => reply::error(StatusCode::BAD_REQUEST, &message),
            },
            (_, Some("replay")) => reply::error(StatusCode::METHOD_NOT_ALLOWED, "use POST"),
            (method, Some(rest)) => match (method, rest.strip_suffix("/replay")) {
                (&Method::POST, Some(id)) => self.replay(id).await,
                (_, Some(_)) => reply::error(StatusCode::METHOD_NOT_ALLOWED, "use POST"),
                (_, None) if rest.is_empty() || rest.contains('/') => {
                    reply::error(StatusCode::NOT_FOUND, "not found")
                }
                (&Method::GET, None) => match self.dead_letters.get(rest) {
                    Some(letter) => reply::json(StatusCode::OK, &letter.summary()),
                    None => reply::error(StatusCode::NOT_FOUND, "no dead letter with this id"),
                },
                (&Method::DELETE, None) => self.discard(rest),
                (_, None) => reply::error(StatusCode::METHOD_NOT_ALLOWED, "use GET or DELETE"),
            },
        }
    }

    /// One page of the letters `query` asks for.
    fn list(&self, query: &Query) -> Response<ResponseBody> {
        let page = self.dead_letters.page(
            &query.filter,
            query.cursor.as_deref(),
            query.limit.unwrap_or(DEFAULT_PAGE),
        );
        let summaries: Vec<_> = page.letters.iter().map(|l| l.summary()).collect();
        let mut answer = reply::json(StatusCode::OK, &summaries);
        if let Some(next) = page.next.and_then(|n| HeaderValue::from_str(&n).ok()) {
            answer.headers_mut().insert(NEXT_CURSOR, next);
        }
        answer
    }

    /// Discards one letter.
    fn discard(&self, id: &str) -> Response<ResponseBody> {
        let Some(taken) = self.dead_letters.take(id) else {
            return reply::error(StatusCode::NOT_FOUND, "no dead letter with this id");
        };
        self.dead_letters.discarded(std::slice::from_ref(&taken));
        tracing::info!(dead_letter = %id, event_id = %taken.letter.event.id, "dead letter discarded");
        reply::json(StatusCode::OK, &serde_json::json!({ "discarded": 1 }))
    }

    /// Puts every letter `filter` matches back on the queue, each for its one destination
    /// with fresh attempts. Letters that cannot be queued stay dead letters; if the queue
    /// refused any, the answer is a 503 with `Retry-After` (and the counts).
    async fn replay_matching(&self, filter: &LetterFilter) -> Response<ResponseBody> {
        let taken = self.dead_letters.take_matching(filter);
        // From here each letter is out of the store until it is queued (and forgotten) or
        // restored. The work runs on a task of its own, so an admin client that goes away
        // mid-way cannot leave a letter in neither place.
        let replay = tokio::spawn(replay_taken(
            Arc::clone(&self.dead_letters),
            Arc::clone(&self.queue),
            self.inspect.clone(),
            taken,
        ));
        let Ok((counts, refusal)) = replay.await else {
            return reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the replay failed (see the log)",
            );
        };
        tracing::info!(
            matched = counts.matched,
            queued = counts.queued,
            not_replayable = counts.not_replayable,
            not_queued = counts.not_queued,
            ?filter,
            "replaying dead letters"
        );
        match refusal {
            None => reply::json(StatusCode::ACCEPTED, &counts),
            Some(error) => {
                let mut body = serde_json::to_value(&counts).unwrap_or_default();
                body["error"] = error.answer().into();
                reply::retry_after(reply::json(StatusCode::SERVICE_UNAVAILABLE, &body), 1)
            }
        }
    }

    /// Puts a dead letter back on the queue, for its one destination, with fresh attempts.
    async fn replay(&self, id: &str) -> Response<ResponseBody> {
        let Some(taken) = self.dead_letters.take(id) else {
            return reply::error(StatusCode::NOT_FOUND, "no dead letter with this id");
        };
        let Some(destination) = taken.letter.destination else {
            let message = format!(
                "destination {:?} is no longer in the config",
                taken.letter.destination_name
            );
            self.dead_letters.restore(taken);
            return reply::error(StatusCode::CONFLICT, &message);
        };
        let event_id = taken.letter.event.id.clone();
        match requeue(&*self.queue, &self.inspect, &taken.letter, destination).await {
            Ok(()) => {
                tracing::info!(dead_letter = %id, event_id = %event_id, destination = %taken.letter.destination_name, "replaying dead letter");
                self.dead_letters.replayed(&taken);
                reply::json(StatusCode::ACCEPTED, &serde_json::json!({ "id": event_id }))
            }
            Err(error) => {
                self.dead_letters.restore(taken);
                let answer = reply::error(StatusCode::SERVICE_UNAVAILABLE, &error.answer());
                reply::retry_after(answer, 1)
            }
        }
    }
}

/// Queues `letter`'s event again for its one destination (`destination`, by id), with fresh
/// attempts. Its record (`inspect`) shows the delivery pending from before it is queued, as its
/// first attempt may come before this returns, and dead-lettered again if the queue refuses it.
async fn requeue(
    queue: &dyn DispatchQueue,
    inspect: &Inspector,
    letter: &DeadLetter,
    destination: DestinationId,
) -> Result<(), EnqueueError> {
    inspect.requeued(&letter.event.id, &letter.destination_name);
    let queued = queue.enqueue(letter.event.clone(), vec![destination]).await;
    if queued.is_err() {
        inspect.dead_lettered(&letter.event.id, &letter.destination_name);
    }
    queued
}

/// Queues each of `taken` again for its one destination ([`requeue`]): those queued are
/// forgotten, the others restored as dead letters. Returns the counts and the queue's first
/// refusal, if any.
async fn replay_taken(
    dead_letters: Arc<DeadLetterStore>,
    queue: Arc<dyn DispatchQueue>,
    inspect: Inspector,
    taken: Vec<Taken>,
) -> (ReplayCounts, Option<EnqueueError>) {
    let mut counts = ReplayCounts {
        matched: taken.len(),
        ..ReplayCounts::default()
    };
    let mut queued = Vec::with_capacity(taken.len());
    let mut attempts = futures_util::stream::iter(taken)
        .map(|taken| {
            let (queue, inspect) = (&queue, &inspect);
            async move {
                let Some(destination) = taken.letter.destination else {
                    return (taken, Err(None));
                };
                let result = requeue(&**queue, inspect, &taken.letter, destination)
                    .await
                    .map_err(Some);
                (taken, result)
            }
        })
        .buffer_unordered(REPLAYS_AT_ONCE);
    let mut refusal = None;
    while let Some((taken, result)) = attempts.next().await {
        match result {
            Ok(()) => queued.push(taken),
            Err(None) => {
                counts.not_replayable += 1;
                dead_letters.restore(taken);
            }
            Err(Some(error)) => {
                counts.not_queued += 1;
                refusal.get_or_insert(error);
                dead_letters.restore(taken);
            }
        }
    }
    drop(attempts);
    counts.queued = queued.len();
    dead_letters.forget(&queued);
    (counts, refusal)
}
