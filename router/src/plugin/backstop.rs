//! The wall-clock backstop of a plugin call: the end of a guest that waits (in a WASI `poll` or
//! sleep, which use no CPU time and so never reach the CPU budget) for longer than the backstop.
//!
//! Only waiting counts. A call also pauses when it yields at an epoch tick: it wakes itself at
//! once and waits for nothing but its turn on a thread, and on a loaded machine that turn can
//! come late. A backstop that fired then would turn a fast plugin into a timeout because the
//! host was busy, which the CPU budget exists to avoid (see [`super::limits`]). So the call's
//! wake-ups are watched: once the backstop has passed, the call ends the first time it is found
//! waiting (pending, and not woken since it was last polled), never while it is ready to run.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use futures_util::task::AtomicWaker;

/// Runs `call` until it has been waiting past `backstop` of wall-clock time after its first
/// pause (`None` then). The first pause (a yield at the second epoch tick, or a wait) comes
/// within two ticks of running time, so the backstop starts that late at most; a call that
/// finishes in its first poll, as most do, reads no clock, sets no timer and wraps no waker.
pub async fn with_backstop<F: Future>(call: F, backstop: Duration) -> Option<F::Output> {
    let mut call = std::pin::pin!(call);
    match std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await {
        Poll::Ready(output) => Some(output),
        Poll::Pending => Backstopped::new(call, backstop).await,
    }
}

/// A call past its first pause, with the timer of its backstop.
struct Backstopped<F> {
    call: F,
    deadline: Pin<Box<tokio::time::Sleep>>,
    wakes: Arc<Wakes>,
    waker: Waker,
}

/// Whether the call woke itself (or was woken) since it was last polled, and the task to wake.
#[derive(Default)]
struct Wakes {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: Future + Unpin> Backstopped<F> {
    fn new(call: F, backstop: Duration) -> Self {
        let wakes = Arc::new(Wakes::default());
        Self {
            call,
            deadline: Box::pin(tokio::time::sleep(backstop)),
            waker: Waker::from(Arc::clone(&wakes)),
            wakes,
        }
    }
}

impl<F: Future + Unpin> Future for Backstopped<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        this.wakes.task.register(cx.waker());
        this.wakes.woken.store(false, Ordering::Release);
        if let Poll::Ready(output) =
            Pin::new(&mut this.call).poll(&mut Context::from_waker(&this.waker))
        {
            return Poll::Ready(Some(output));
        }
        if this.wakes.woken.load(Ordering::Acquire) {
            // Ready to run again (a yield): the task is woken, and this is no wait.
            return Poll::Pending;
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// Pauses once, woken at once: how a call yields at an epoch tick (wasmtime's yield).
    async fn yield_once() {
        let mut yielded = false;
        std::future::poll_fn(|cx| {
            if yielded {
                return Poll::Ready(());
            }
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        })
        .await;
    }

    /// A call that yields until `busy` has passed, then ends.
    async fn yielding_for(busy: Duration) -> u32 {
        let started = Instant::now();
        let mut yields = 0;
        while started.elapsed() < busy {
            yield_once().await;
            yields += 1;
        }
        yields
    }

    #[tokio::test]
    async fn a_call_that_keeps_yielding_past_the_backstop_is_not_ended() {
        let yields = with_backstop(
            yielding_for(Duration::from_millis(60)),
            Duration::from_millis(10),
        )
        .await
        .expect("a call ready to run is never ended by the backstop");
        assert!(yields > 0);
    }

    #[tokio::test]
    async fn a_call_waiting_past_the_backstop_is_ended_then() {
        let started = Instant::now();
        let ended = with_backstop(
            async {
                yield_once().await;
                tokio::time::sleep(Duration::from_secs(5)).await;
            },
            Duration::from_millis(20),
        )
        .await;
        assert!(ended.is_none());
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(20) && took < Duration::from_secs(5),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn waits_and_yields_add_up_to_the_backstop() {
        // Short waits between yields: waiting at the first pause after the backstop ends it.
        let ended = with_backstop(
            async {
                loop {
                    yield_once().await;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            },
            Duration::from_millis(30),
        )
        .await;
        assert!(ended.is_none());
    }
}
