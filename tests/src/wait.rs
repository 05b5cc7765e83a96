//! Waiting for a condition the tests cannot be told about: poll, and fail naming what was
//! awaited and what was last seen.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

/// How long [`wait_until`] sleeps between two looks.
const POLL: Duration = Duration::from_millis(20);

/// Looks with `observe` until `done` holds for what it saw, and returns that; every [`POLL`],
/// for at most `patience`. Panics after that, naming `what` was awaited and the last
/// observation.
///
/// ```no_run
/// # async fn example(router: &webhook_router_tests::TestRouter) {
/// use std::time::Duration;
/// use webhook_router_tests::wait::wait_until;
///
/// wait_until(
///     "the queue drained",
///     Duration::from_secs(20),
///     || router.metric("webhook_queue_depth"),
///     |depth| *depth == Some(0.0),
/// )
/// .await;
/// # }
/// ```
pub async fn wait_until<O, F>(
    what: &str,
    patience: Duration,
    mut observe: impl FnMut() -> F,
    mut done: impl FnMut(&O) -> bool,
) -> O
where
    O: Debug,
    F: Future<Output = O>,
{
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let observed = observe().await;
        if done(&observed) {
            return observed;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {patience:?} for {what}; last seen: {observed:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}
