//! What one plugin may use per event: memory, CPU time (with a wall-clock backstop), output
//! size and fan-out width.
//!
//! # How time is measured
//!
//! `limits.time` is a budget of CPU time, not of wall-clock time: the CPU time of the thread
//! running the call, while it runs it (the guest's code and the host functions it calls), read
//! at epoch ticks (see [`super::cpu`]). A call that uses it up fails with `timeout`, less than
//! two ticks after it was spent. Time the call is not running (its task not scheduled, the
//! host busy with other requests) is not charged, so a loaded machine never turns a fast
//! plugin into a timeout. A guest waiting in a WASI `poll` or sleep uses no CPU: its call ends,
//! as a `timeout`, once it is found waiting past a backstop of [`WALL_CLOCK_BACKSTOP_FACTOR`]
//! times the limit in wall-clock time, counted from the call's first pause (within two ticks of
//! running); a call only waiting for its turn on a busy thread is never ended by it (see
//! `super::backstop`).

use std::time::Duration;

use wasmtime::ResourceLimiter;

/// A call waiting (in a WASI `poll` or sleep) once its wall-clock time has reached this many
/// times `limits.time` ends, whatever its CPU time: the backstop for waits, which use none.
pub const WALL_CLOCK_BACKSTOP_FACTOR: u32 = 10;

/// Limits of one plugin (route config `limits = { memory, time, output, fan_out }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginLimits {
    /// Most linear memory the plugin's instance may have, in bytes.
    pub memory_bytes: usize,
    /// Most CPU time one call may use.
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

    /// The wall-clock time after which a call ends whatever its CPU time.
    pub fn backstop(&self) -> Duration {
        self.time.saturating_mul(WALL_CLOCK_BACKSTOP_FACTOR)
    }
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
    fn the_backstop_is_ten_times_the_time_limit() {
        let limits = PluginLimits::default();
        assert_eq!(limits.backstop(), Duration::from_millis(100));
        let longest = PluginLimits {
            time: Duration::MAX,
            ..limits
        };
        assert_eq!(longest.backstop(), Duration::MAX);
    }

    #[test]
    fn output_cap_is_the_larger_of_fixed_and_four_times_input() {
        let limits = PluginLimits::default();
        assert_eq!(limits.output_cap(10), 1024 * 1024);
        assert_eq!(limits.output_cap(1024 * 1024), 4 * 1024 * 1024);
    }
}
