//! What one plugin may use per event: memory, CPU time (as wasmtime fuel, with a wall-clock
//! backstop), output size and fan-out width.
//!
//! # How time is measured
//!
//! `limits.time` is a budget of the guest's own work, not of wall-clock time: each call gets
//! [`FUEL_PER_MICROSECOND`] units of wasmtime fuel per microsecond of the limit, and wasmtime
//! spends one unit per WebAssembly instruction the guest executes. A plugin that runs out of
//! fuel fails with `timeout`. Time the guest spends waiting for the machine (its task not
//! scheduled, the host busy with other requests) costs no fuel, so a loaded machine never turns
//! a fast plugin into a timeout. A call also ends, as a `timeout`, at a backstop of
//! [`WALL_CLOCK_BACKSTOP_FACTOR`] times the limit, for what fuel does not count: a guest
//! spending its time in host calls is stopped after that many 1 ms epoch ticks seen while it
//! runs (a descheduled thread sees one overdue tick, however long it waited), and one blocked in
//! a WASI `poll` or sleep after that much wall-clock time.

use std::time::Duration;

use wasmtime::ResourceLimiter;

/// Fuel per microsecond of `limits.time`: what one core of a current x86-64 server spends per
/// microsecond running typical plugin code (JSON parsing and matching) compiled by cranelift.
/// Measured with the bundled `event_filter`: 37,375 fuel in about 2.2 µs of guest time on a
/// 288-byte event, 578,000 in about 24 µs on a 64 KiB one (17,000–24,000 per µs); a tight
/// arithmetic loop spends about 10,000 per µs, so its budget lasts up to twice the limit. Fixed
/// rather than measured at start-up, so a limit means the same on every run and a machine busy
/// at start-up cannot shrink every plugin's budget (see README, "How time is measured").
pub const FUEL_PER_MICROSECOND: u64 = 20_000;
/// A call ends when its wall-clock time reaches this many times `limits.time`, whatever its
/// fuel: the backstop for waits that burn no fuel.
pub const WALL_CLOCK_BACKSTOP_FACTOR: u32 = 10;

/// Limits of one plugin (route config `limits = { memory, time, output, fan_out }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginLimits {
    /// Most linear memory the plugin's instance may have, in bytes.
    pub memory_bytes: usize,
    /// Most time one call may run.
    pub time: Duration,
    /// Output cap in bytes; the effective cap is the larger of this and 4 × the input body.
    pub output_bytes: usize,
    /// Most deliveries a `fan-out` verdict may name.
    pub fan_out: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 16 * 1024 * 1024,
            time: Duration::from_millis(10),
            output_bytes: 1024 * 1024,
            fan_out: 64,
        }
    }
}

impl PluginLimits {
    /// The output cap for an event whose body is `input_bytes` long.
    pub fn output_cap(&self, input_bytes: usize) -> usize {
        self.output_bytes.max(input_bytes.saturating_mul(4))
    }

    /// The fuel one call gets: [`FUEL_PER_MICROSECOND`] per microsecond of `time` (at least 1).
    pub fn fuel(&self) -> u64 {
        fuel_for(self.time)
    }

    /// The wall-clock time after which a call ends whatever its fuel.
    pub fn backstop(&self) -> Duration {
        self.time.saturating_mul(WALL_CLOCK_BACKSTOP_FACTOR)
    }

    /// The backstop in epoch ticks of length `tick` seen by a running call (at least 2).
    pub fn backstop_ticks(&self, tick: Duration) -> u64 {
        let tick = tick.as_nanos().max(1);
        u64::try_from(self.backstop().as_nanos().div_ceil(tick))
            .unwrap_or(u64::MAX)
            .max(2)
    }
}

/// The fuel that [`FUEL_PER_MICROSECOND`] gives for `time` (at least 1).
pub fn fuel_for(time: Duration) -> u64 {
    let micros = u64::try_from(time.as_micros()).unwrap_or(u64::MAX);
    micros.saturating_mul(FUEL_PER_MICROSECOND).max(1)
}

/// A size for a person, e.g. `16.0 MiB`.
pub fn human_bytes(bytes: usize) -> String {
    bytesize::ByteSize::b(u64::try_from(bytes).unwrap_or(u64::MAX))
        .display()
        .iec()
        .to_string()
}

/// Per-store memory limiter that remembers whether it refused a growth, so that the trap that
/// follows is reported as a memory error rather than a generic trap.
#[derive(Debug)]
pub struct MemoryLimiter {
    limit: usize,
    /// Set when a growth past the limit was refused.
    pub exceeded: bool,
}

impl MemoryLimiter {
    /// A limiter allowing `limit` bytes of linear memory.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            exceeded: false,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            let limit = human_bytes(self.limit);
            if current == 0 {
                // Called as the memory is created: the module itself asks for more.
                wasmtime::bail!(
                    "the module's initial memory of {} is over the plugin's memory limit of {limit}",
                    human_bytes(desired)
                );
            }
            wasmtime::bail!(
                "plugin memory limit of {limit} reached (growing from {} to {})",
                human_bytes(current),
                human_bytes(desired)
            );
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a generous fixed bound stops runaway growth.
        Ok(desired <= 100_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_past_the_limit_names_the_limit_and_says_when_it_is_the_initial_memory() {
        let mut limiter = MemoryLimiter::new(1024 * 1024);
        assert!(limiter.memory_growing(0, 64 * 1024, None).unwrap());
        assert!(!limiter.exceeded);
        let error = limiter
            .memory_growing(64 * 1024, 2 * 1024 * 1024, None)
            .unwrap_err()
            .to_string();
        assert!(limiter.exceeded);
        assert_eq!(
            error,
            "plugin memory limit of 1.0 MiB reached (growing from 64.0 KiB to 2.0 MiB)"
        );
        let error = MemoryLimiter::new(64 * 1024)
            .memory_growing(0, 1024 * 1024, None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "the module's initial memory of 1.0 MiB is over the plugin's memory limit of 64.0 KiB"
        );
    }

    #[test]
    fn fuel_follows_the_time_limit_and_the_backstop_is_ten_times_it() {
        let limits = PluginLimits::default();
        assert_eq!(limits.fuel(), 10_000 * FUEL_PER_MICROSECOND);
        assert_eq!(limits.backstop(), Duration::from_millis(100));
        assert_eq!(limits.backstop_ticks(Duration::from_millis(1)), 100);
        let tiny = PluginLimits {
            time: Duration::from_micros(10),
            ..limits
        };
        assert_eq!(tiny.backstop_ticks(Duration::from_millis(1)), 2);
        assert_eq!(fuel_for(Duration::ZERO), 1);
        assert_eq!(fuel_for(Duration::MAX), u64::MAX);
    }

    #[test]
    fn output_cap_is_the_larger_of_fixed_and_four_times_input() {
        let limits = PluginLimits::default();
        assert_eq!(limits.output_cap(10), 1024 * 1024);
        assert_eq!(limits.output_cap(1024 * 1024), 4 * 1024 * 1024);
    }
}
