//! What one plugin may use per event: memory, time and output size.

use std::time::Duration;

use wasmtime::ResourceLimiter;

/// Limits of one plugin (route config `limits = { memory, time, output }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginLimits {
    /// Most linear memory the plugin's instance may have, in bytes.
    pub memory_bytes: usize,
    /// Most time one call may run.
    pub time: Duration,
    /// Output cap in bytes; the effective cap is the larger of this and 4 × the input body.
    pub output_bytes: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 16 * 1024 * 1024,
            time: Duration::from_millis(10),
            output_bytes: 1024 * 1024,
        }
    }
}

impl PluginLimits {
    /// The output cap for an event whose body is `input_bytes` long.
    pub fn output_cap(&self, input_bytes: usize) -> usize {
        self.output_bytes.max(input_bytes.saturating_mul(4))
    }
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
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            wasmtime::bail!("plugin memory limit of {} bytes reached", self.limit);
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
    fn output_cap_is_the_larger_of_fixed_and_four_times_input() {
        let limits = PluginLimits::default();
        assert_eq!(limits.output_cap(10), 1024 * 1024);
        assert_eq!(limits.output_cap(1024 * 1024), 4 * 1024 * 1024);
    }
}
