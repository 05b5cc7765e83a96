//! The listener-wide cap on requests being received and handled at once
//! (`max_requests_in_flight`): a request past it is answered 503 + `Retry-After` at once,
//! without its body being read, and counted in `webhook_rejected_requests_total{reason="busy"}`.

use std::sync::Arc;

use http::{Response, StatusCode};
use metrics::Counter;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::reply::{self, ResponseBody};

/// `Retry-After` (seconds) sent with the busy 503.
const BUSY_RETRY_AFTER: u32 = 1;

/// The requests in flight on one listener, against its cap.
#[derive(Debug, Clone)]
pub(super) struct InFlightLimit {
    permits: Arc<Semaphore>,
    busy: Counter,
}

impl InFlightLimit {
    /// A cap of `max` requests; refusals are counted in `busy`.
    pub(super) fn new(max: usize, busy: Counter) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS))),
            busy,
        }
    }

    /// A place for one more request (held until it is answered), or `None` (counted): answer
    /// it with [`busy`].
    pub(super) fn enter(&self) -> Option<OwnedSemaphorePermit> {
        let permit = Arc::clone(&self.permits).try_acquire_owned().ok();
        if permit.is_none() {
            self.busy.increment(1);
        }
        permit
    }
}

/// The answer to a request past the cap: 503 + `Retry-After` with a short reason.
pub(super) fn busy() -> Response<ResponseBody> {
    reply::retry_after(
        reply::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy: too many requests in flight, retry later",
        ),
        BUSY_RETRY_AFTER,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn past_the_cap_requests_get_503_until_one_ends() {
        let metrics = Metrics::new();
        let limit = InFlightLimit::new(2, metrics.listener("ingress").busy);
        let first = limit.enter().expect("room");
        let _second = limit.enter().expect("room");
        assert!(limit.enter().is_none(), "full");
        let refused = busy();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()["retry-after"], "1");
        drop(first);
        assert!(limit.enter().is_some());
        assert!(
            metrics.render().contains(
                "webhook_rejected_requests_total{listener=\"ingress\",reason=\"busy\"} 1"
            )
        );
    }
}
