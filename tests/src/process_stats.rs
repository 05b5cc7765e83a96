//! This process's CPU time and resident memory, and another process's resident memory, read
//! from `/proc` (Linux).

use std::time::Duration;

/// CPU time (user + system) this process has used so far; child processes (wrk) are not
/// included. `None` where `/proc` cannot be read.
pub fn cpu_time() -> Option<Duration> {
    /// Linux reports these times in USER_HZ, 100 per second on every architecture.
    const TICKS_PER_SECOND: u64 = 100;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces) start at field 3, "state";
    // utime and stime are fields 14 and 15.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis(
        (user + system) * 1000 / TICKS_PER_SECOND,
    ))
}

/// Resident set size of this process, in bytes (`VmRSS`).
pub fn resident_bytes() -> Option<u64> {
    resident_bytes_at("/proc/self/status")
}

/// Resident set size of the process `pid`, in bytes (`VmRSS`).
pub fn resident_bytes_of(pid: u32) -> Option<u64> {
    resident_bytes_at(&format!("/proc/{pid}/status"))
}

fn resident_bytes_at(path: &str) -> Option<u64> {
    let status = std::fs::read_to_string(path).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_and_memory() {
        let resident = resident_bytes().expect("VmRSS is readable");
        assert!(resident_bytes_of(std::process::id()).is_some_and(|other| other > 1024 * 1024));
        assert!(
            resident > 1024 * 1024,
            "a test process holds over 1 MiB, got {resident}"
        );
        let before = cpu_time().expect("CPU time is readable");
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_millis(30) {
            std::hint::black_box(started.elapsed());
        }
        assert!(cpu_time().expect("CPU time is readable") >= before);
    }
}
