//! Supervision of the router's long-lived tasks (dispatch, lane workers, the retry scheduler,
//! listeners, metrics upkeep, the plugin epoch ticker, and with NATS the outbox, the fetches,
//! the keep-alive and the dead-letter mirror): a panic is logged with the task's name, counted
//! in `webhook_task_panics_total{task}`, and the task is started again. A task that keeps
//! panicking ([`FAILING_PANICS`] times within [`FAILING_WINDOW`]) marks the router unhealthy:
//! `/healthz` and `/readyz` answer 503, so that an orchestrator restarts the process instead
//! of leaving it running empty.
//!
//! Supervision restarts a task; keeping the events it held is the task's own design: a lane
//! worker puts back the delivery whose attempt panicked, the retry scheduler keeps its waiting
//! deliveries outside the task (see `dispatch`), the NATS outbox and dead-letter mirror keep
//! their channel and watch outside theirs (a restart reads on after what panicked).
// Time arithmetic meets configured and remote values here: no operator may overflow.
#![warn(clippy::arithmetic_side_effects)]

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::metrics::Metrics;

/// Panics of one task (by name, all its instances together) that make it "failing"...
pub const FAILING_PANICS: usize = 6;
/// ... when they happen within this window.
pub const FAILING_WINDOW: Duration = Duration::from_secs(60);
/// Pause before a panicked task is started again, so a task that panics at once cannot spin.
const RESTART_PAUSE: Duration = Duration::from_millis(10);

/// Test-only fault injection, to prove that supervision keeps its promises. Never set by a
/// config file.
#[doc(hidden)]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestFaults {
    /// A lane worker panics when it is about to attempt an event whose body contains this.
    pub panic_on_body: Option<String>,
}

/// Starts tasks under supervision and tracks their health. Clones share their state.
#[derive(Debug, Clone)]
pub struct Supervisor {
    metrics: Metrics,
    state: Arc<Mutex<Record>>,
}

/// Panics by task name.
#[derive(Debug, Default)]
struct Record {
    /// Recent panic times.
    recent: HashMap<&'static str, VecDeque<Instant>>,
    /// Tasks that keep failing; once there, a task stays: the process needs a restart.
    failing: BTreeSet<&'static str>,
    /// Panics in all (for the threads, whose counters are copied into each router's metrics).
    totals: BTreeMap<&'static str, u64>,
}

impl Record {
    /// Records a panic of `name` at `now`; true if that makes the task failing.
    fn panicked(&mut self, name: &'static str, now: Instant) -> bool {
        let total = self.totals.entry(name).or_default();
        *total = total.saturating_add(1);
        let times = self.recent.entry(name).or_default();
        times.push_back(now);
        while times
            .front()
            .is_some_and(|&at| now.saturating_duration_since(at) > FAILING_WINDOW)
        {
            times.pop_front();
        }
        times.len() >= FAILING_PANICS && self.failing.insert(name)
    }
}

/// Panics of supervised threads, which serve every router of the process (the plugin epoch
/// ticker); each router's [`Supervisor`] reports them with its own.
static THREADS: Mutex<Option<Record>> = Mutex::new(None);

impl Supervisor {
    /// A supervisor counting panics in `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        Self {
            metrics,
            state: Arc::default(),
        }
    }

    /// Names of the tasks (and process-wide threads) that keep failing; empty when healthy.
    pub fn failing(&self) -> Vec<&'static str> {
        let mut failing = lock(&self.state).failing.clone();
        if let Some(threads) = lock(&THREADS).as_ref() {
            failing.extend(threads.failing.iter().copied());
        }
        failing.into_iter().collect()
    }

    /// Copies the panic counts of the process-wide threads into this router's metrics.
    pub fn report_threads(&self) {
        if let Some(threads) = lock(&THREADS).as_ref() {
            for (&name, &total) in &threads.totals {
                self.metrics.task_panics(name).absolute(total);
            }
        }
    }

    /// Spawns the task `name`, made by `make`, and starts it again (with a new `make()`)
    /// whenever it panics; the returned handle finishes when the task returns. Aborting the
    /// handle aborts the task (each run is polled inside the supervising task itself).
    pub fn spawn<F, Fut>(&self, name: &'static str, mut make: F) -> JoinHandle<()>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let supervisor = self.clone();
        // Registered up front, so the series shows 0 until a panic.
        let panics = self.metrics.task_panics(name);
        tokio::spawn(async move {
            while let Err(panic) = catch_unwind(make()).await {
                panics.increment(1);
                log_panic(name, panic.as_ref());
                let now_failing = lock(&supervisor.state).panicked(name, Instant::now());
                if now_failing {
                    log_failing(name);
                }
                tokio::time::sleep(RESTART_PAUSE).await;
            }
        })
    }
}

/// Runs the body of the thread `name` until it returns, starting it again after each panic;
/// its panics count in every router's `webhook_task_panics_total`.
pub fn supervise_thread(name: &'static str, mut run: impl FnMut()) {
    lock(&THREADS)
        .get_or_insert_with(Record::default)
        .totals
        .entry(name)
        .or_default();
    while let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(&mut run)) {
        log_panic(name, panic.as_ref());
        let now_failing = lock(&THREADS)
            .get_or_insert_with(Record::default)
            .panicked(name, Instant::now());
        if now_failing {
            log_failing(name);
        }
        std::thread::sleep(RESTART_PAUSE);
    }
}

fn log_panic(name: &'static str, panic: &(dyn Any + Send)) {
    let message = panic_message(panic);
    tracing::error!(task = name, panic = %message, "task panicked; started it again");
}

fn log_failing(name: &'static str) {
    tracing::error!(
        task = name,
        panics = FAILING_PANICS,
        window = %humantime::format_duration(FAILING_WINDOW),
        "task keeps panicking: the router reports itself unhealthy (/healthz and /readyz answer 503)"
    );
}

/// Polls `future`, turning a panic inside it into `Err` with the panic's payload.
pub async fn catch_unwind<F: Future>(future: F) -> Result<F::Output, Box<dyn Any + Send>> {
    let mut future = Box::pin(future);
    std::future::poll_fn(move |cx| {
        match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        }
    })
    .await
}

/// The message of a panic payload (`panic!("...")` gives a `&str` or a `String`).
pub fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_panicking_task_is_restarted_counted_and_marked_failing() {
        let metrics = Metrics::new();
        let supervisor = Supervisor::new(metrics.clone());
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&runs);
        // Panics on its first FAILING_PANICS runs, then returns.
        let handle = supervisor.spawn("flaky", move || {
            let run = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                assert!(run >= FAILING_PANICS, "injected panic {run}");
            }
        });
        handle.await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), FAILING_PANICS + 1);
        assert!(
            metrics.render().contains(&format!(
                "webhook_task_panics_total{{task=\"flaky\"}} {FAILING_PANICS}"
            )),
            "{}",
            metrics.render()
        );
        assert_eq!(supervisor.failing(), vec!["flaky"]);
    }

    #[tokio::test]
    async fn a_task_that_panics_now_and_then_stays_healthy() {
        let supervisor = Supervisor::new(Metrics::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&runs);
        let handle = supervisor.spawn("rare", move || {
            let run = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                assert!(run >= 2, "injected panic {run}");
            }
        });
        handle.await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert!(supervisor.failing().is_empty());
    }

    #[test]
    fn a_panicking_thread_body_is_run_again_and_counted_in_every_router() {
        let mut runs = 0;
        supervise_thread("test_thread", || {
            runs += 1;
            assert!(runs > 2, "injected panic {runs}");
        });
        assert_eq!(runs, 3);
        let metrics = Metrics::new();
        let supervisor = Supervisor::new(metrics.clone());
        supervisor.report_threads();
        assert!(
            metrics
                .render()
                .contains("webhook_task_panics_total{task=\"test_thread\"} 2"),
            "{}",
            metrics.render()
        );
        assert!(!supervisor.failing().contains(&"test_thread"));
    }

    #[tokio::test]
    async fn catch_unwind_returns_the_payload() {
        let caught = catch_unwind(async {
            if true {
                panic!("boom");
            }
        })
        .await;
        let panic = caught.unwrap_err();
        assert_eq!(panic_message(panic.as_ref()), "boom");
        assert_eq!(catch_unwind(async { 7 }).await.ok(), Some(7));
    }
}
