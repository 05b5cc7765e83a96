//! CPU time and resident memory of this process, another process or one thread, read from
//! `/proc` (Linux).

use std::time::Duration;

/// CPU time (user + system) this process has used so far; child processes (wrk) are not
/// included. `None` where `/proc` cannot be read.
pub fn cpu_time() -> Option<Duration> {
    cpu_time_at("/proc/self/stat")
}

/// CPU time the process `pid` has used so far (its children not included).
pub fn cpu_time_of(pid: u32) -> Option<Duration> {
    cpu_time_at(&format!("/proc/{pid}/stat"))
}

/// CPU time the thread `tid` of this process has used so far.
pub fn thread_cpu_time(tid: u32) -> Option<Duration> {
    cpu_time_at(&format!("/proc/self/task/{tid}/stat"))
}

/// The calling thread's id (its `/proc/self/task/` entry).
pub fn current_thread_id() -> Option<u32> {
    // "/proc/thread-self" links to "<pid>/task/<tid>".
    std::fs::read_link("/proc/thread-self")
        .ok()?
        .file_name()?
        .to_str()?
        .parse()
        .ok()
}

/// The ids of the processes whose parent is `pid` (nginx's workers, say).
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    // Field 4, after the state, is the parent's id.
                    stat.rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .nth(1)?
                        .parse::<u32>()
                        .ok()
                })
                == Some(pid)
        })
        .collect()
}

fn cpu_time_at(path: &str) -> Option<Duration> {
    /// Linux reports these times in USER_HZ, 100 per second on every architecture.
    const TICKS_PER_SECOND: u64 = 100;
    let stat = std::fs::read_to_string(path).ok()?;
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
        let thread = current_thread_id().expect("the thread id is readable");
        // Both are in clock ticks, each scaled by the kernel on its own (its user/system
        // split): the thread's part may show one tick more than the whole.
        let tick = Duration::from_millis(10);
        assert!(
            thread_cpu_time(thread).expect("thread CPU time") <= cpu_time().expect("CPU") + tick
        );
        assert!(cpu_time_of(std::process::id()).is_some());
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("run sleep");
        assert!(children_of(std::process::id()).contains(&child.id()));
        let _ = child.kill();
        let _ = child.wait();
    }
}
