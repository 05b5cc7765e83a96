//! The CPU budget of one plugin call (`limits.time`): the CPU time of the threads the call
//! runs on, summed over the stretches it runs in, read at epoch ticks.
//!
//! # How time is measured
//!
//! A call is a future, polled by the async runtime on whichever worker thread holds its task.
//! Each poll runs the guest (and the host functions it calls) on that one thread, until the
//! guest ends, yields at an epoch tick, or waits in a host call (a WASI sleep or `poll`). The
//! call is charged, for each poll, the thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`) during that
//! poll: time the thread is descheduled, the task waits in the runtime's queue, or the thread
//! runs other tasks between polls is never charged, so a loaded machine never turns a fast
//! plugin into a timeout, and a call that moves to another worker is charged on each thread
//! only for its own polls.
//!
//! Reading a thread's CPU clock is a system call (about 1 µs on a virtual machine, where the
//! whole call of a small plugin takes 3–5 µs), so it is read only where it costs nothing that
//! matters: at each epoch tick the guest runs past (the store's epoch deadline callback, every
//! [`super::engine::EPOCH_TICK`]) and around every poll after the first. The first poll's clock
//! is read at its first tick: the time before that, less than a tick, is not charged. So a call
//! that ends within its first tick, as almost every call does, reads no clock at all, and a
//! call that runs on is stopped at the first tick after its budget is spent: less than two
//! ticks late, never early. [`Reading::Exact`] reads the clock at the start of the first poll
//! as well, for an exact figure ([`CpuMeter::used`]) where one is shown.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The start of a stretch whose clock has not been read yet.
const UNREAD: u64 = u64::MAX;

/// How a call's CPU clock is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// At epoch ticks and around resumed polls only: a call shorter than a tick reads no
    /// clock, and [`CpuMeter::used`] says nothing about it. What the ingress uses.
    AtTicks,
    /// At the start and end of every poll as well: [`CpuMeter::used`] is the call's CPU time,
    /// for two more clock reads per call. For `plugin run` and traced calls.
    Exact,
}

/// The CPU time one call of a store has used, against its budget. Shared by the store's epoch
/// deadline callback ([`Self::tick`]) and [`metered`], which polls the call; both run on the
/// thread that polls, one after the other, so relaxed loads and stores suffice (no locked
/// read-modify-write on the call's path).
#[derive(Debug)]
pub struct CpuMeter {
    /// The thread's CPU time (ns) when the running stretch began, or [`UNREAD`].
    stretch_start: AtomicU64,
    /// CPU time (ns) charged to the call so far, for the stretches already ended.
    used: AtomicU64,
    /// The call's budget (ns).
    budget: AtomicU64,
}

impl Default for CpuMeter {
    fn default() -> Self {
        Self {
            stretch_start: AtomicU64::new(UNREAD),
            used: AtomicU64::new(0),
            budget: AtomicU64::new(u64::MAX),
        }
    }
}

impl CpuMeter {
    /// Arms the meter for a call allowed `budget` of CPU time.
    pub fn start(&self, budget: Duration) {
        self.budget.store(nanos(budget), Ordering::Relaxed);
        self.used.store(0, Ordering::Relaxed);
        self.stretch_start.store(UNREAD, Ordering::Relaxed);
    }

    /// At an epoch tick, on the thread running the call: charges the stretch up to now and
    /// says whether the budget is spent. At the first tick of a stretch not read at its start,
    /// only starts reading.
    pub fn tick(&self) -> bool {
        let now = thread_cpu_nanos();
        let start = self.stretch_start.load(Ordering::Relaxed);
        self.stretch_start.store(now, Ordering::Relaxed);
        if start == UNREAD {
            return false;
        }
        let used = self.used.load(Ordering::Relaxed) + now.saturating_sub(start);
        self.used.store(used, Ordering::Relaxed);
        used >= self.budget.load(Ordering::Relaxed)
    }

    /// CPU time charged to the call so far: all of it with [`Reading::Exact`], else from the
    /// first tick on.
    pub fn used(&self) -> Duration {
        Duration::from_nanos(self.used.load(Ordering::Relaxed))
    }

    fn begin_stretch(&self) {
        self.stretch_start
            .store(thread_cpu_nanos(), Ordering::Relaxed);
    }

    fn end_stretch(&self) {
        let start = self.stretch_start.load(Ordering::Relaxed);
        if start != UNREAD {
            self.stretch_start.store(UNREAD, Ordering::Relaxed);
            let used = self.used.load(Ordering::Relaxed);
            let spent = thread_cpu_nanos().saturating_sub(start);
            self.used.store(used + spent, Ordering::Relaxed);
        }
    }
}

/// Runs `call` (a call into the store `meter` belongs to, armed with [`CpuMeter::start`]),
/// charging `meter` the CPU time of each of its polls as `reading` says.
pub async fn metered<F: Future>(meter: &CpuMeter, reading: Reading, call: F) -> F::Output {
    let mut call = std::pin::pin!(call);
    let mut read_start = reading == Reading::Exact;
    std::future::poll_fn(|cx| {
        if read_start {
            meter.begin_stretch();
        }
        // Every poll after the first starts on a thread whose clock has moved on meanwhile.
        read_start = true;
        let poll = call.as_mut().poll(cx);
        meter.end_stretch();
        poll
    })
    .await
}

/// The calling thread's CPU time, in nanoseconds.
fn thread_cpu_nanos() -> u64 {
    let time = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    let secs = u64::try_from(time.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(time.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::task::Poll;

    use super::*;

    /// Spins on this thread for about `cpu` of CPU time.
    fn spin(cpu: Duration) {
        let until = thread_cpu_nanos() + nanos(cpu);
        while thread_cpu_nanos() < until {
            std::hint::spin_loop();
        }
    }

    #[test]
    fn ticks_charge_the_running_stretch_and_say_when_the_budget_is_spent() {
        let meter = CpuMeter::default();
        meter.start(Duration::from_millis(3));
        // The first tick of an unread stretch only starts reading: nothing is charged.
        spin(Duration::from_millis(2));
        assert!(!meter.tick());
        assert_eq!(meter.used(), Duration::ZERO);
        spin(Duration::from_millis(2));
        assert!(!meter.tick());
        assert!(
            meter.used() >= Duration::from_millis(2),
            "{:?}",
            meter.used()
        );
        spin(Duration::from_millis(1));
        assert!(meter.tick(), "3 ms spent: {:?}", meter.used());
        // A new call starts from nothing.
        meter.start(Duration::from_millis(3));
        assert_eq!(meter.used(), Duration::ZERO);
    }

    #[test]
    fn time_between_polls_and_asleep_is_not_charged_and_exact_reading_counts_it_all() {
        let meter = CpuMeter::default();
        // A call that spins 2 ms per poll, and waits 30 ms of wall-clock time between polls
        // while this thread spins 5 ms for something else.
        let call = || {
            let mut polls = 0;
            std::future::poll_fn(move |cx| {
                spin(Duration::from_millis(2));
                polls += 1;
                if polls == 3 {
                    return Poll::Ready(());
                }
                cx.waker().wake_by_ref();
                Poll::Pending
            })
        };
        let drive = |reading| {
            let mut future = std::pin::pin!(metered(&meter, reading, call()));
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            while future.as_mut().poll(&mut cx).is_pending() {
                spin(Duration::from_millis(5));
                std::thread::sleep(Duration::from_millis(30));
            }
        };
        meter.start(Duration::from_secs(1));
        drive(Reading::Exact);
        let used = meter.used();
        assert!(
            used >= Duration::from_millis(6) && used < Duration::from_millis(9),
            "three polls of 2 ms: {used:?}"
        );
        // Read at ticks only, the first poll (it saw no tick) is not charged; the others are.
        meter.start(Duration::from_secs(1));
        drive(Reading::AtTicks);
        let used = meter.used();
        assert!(
            used >= Duration::from_millis(4) && used < Duration::from_millis(6),
            "two polls of 2 ms: {used:?}"
        );
    }
}
