//! The dead-letter API: `GET /dead-letters` and `POST /dead-letters/{id}/replay`.

use http::{Method, Response, StatusCode};

use super::Admin;
use crate::reply::{self, ResponseBody};

impl Admin {
    /// Serves `/dead-letters` and `/dead-letters/{id}/replay`.
    pub(super) async fn dead_letter_api(
        &self,
        method: &Method,
        path: &str,
    ) -> Response<ResponseBody> {
        if path == "/dead-letters" {
            if method != Method::GET {
                return reply::error(StatusCode::METHOD_NOT_ALLOWED, "use GET");
            }
            let letters = self.dead_letters.list();
            let summaries: Vec<_> = letters.iter().map(|l| l.summary()).collect();
            return reply::json(StatusCode::OK, &summaries);
        }
        let Some(id) = path
            .strip_prefix("/dead-letters/")
            .and_then(|rest| rest.strip_suffix("/replay"))
        else {
            return reply::error(StatusCode::NOT_FOUND, "not found");
        };
        if method != Method::POST {
            return reply::error(StatusCode::METHOD_NOT_ALLOWED, "use POST");
        }
        self.replay(id).await
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
        match self
            .queue
            .enqueue(taken.letter.event.clone(), vec![destination])
            .await
        {
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
