//! Driving the `wrk` HTTP load generator: installing it when missing, a Lua script that POSTs
//! one fixed request, and parsing what it reports.
//!
//! Every run is bounded by its duration and targets loopback; the benchmarks compare the
//! req/s it measures against a baseline measured the same way in the same run.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

/// Prefix of the machine-readable line the script's `done()` prints.
const SUMMARY_TAG: &str = "WRK_SUMMARY";

/// A wrk Lua script in a temporary file, removed on drop.
#[derive(Debug)]
pub struct WrkScript {
    path: PathBuf,
}

impl WrkScript {
    /// Writes a script that POSTs `body` with `headers` and, when done, prints one
    /// machine-readable summary line (requests, duration, latency percentiles, errors;
    /// `status` counts answers >= 400). `label` tells scripts of one process apart.
    pub fn write(label: &str, body: &str, headers: &[(String, String)]) -> Result<WrkScript> {
        ensure!(
            !body.contains("]==]"),
            "the body cannot be quoted in the wrk script"
        );
        let mut script = format!("wrk.method = \"POST\"\nwrk.body = [==[{body}]==]\n");
        for (name, value) in headers {
            ensure!(
                !name.contains('"') && !value.contains('"'),
                "header {name} cannot be quoted in the wrk script"
            );
            script.push_str(&format!("wrk.headers[\"{name}\"] = \"{value}\"\n"));
        }
        script.push_str(&format!(
            r#"
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "{SUMMARY_TAG} requests=%d duration_us=%d p50_us=%.0f p99_us=%.0f status=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect, e.read, e.write, e.timeout))
end
"#
        ));
        let path =
            std::env::temp_dir().join(format!("webhook-router-{label}-{}.lua", std::process::id()));
        std::fs::write(&path, script)
            .with_context(|| format!("cannot write the wrk script {}", path.display()))?;
        Ok(WrkScript { path })
    }

    /// Where the script is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WrkScript {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// wrk's settings, the same for every run of a comparison.
#[derive(Debug, Clone)]
pub struct Wrk {
    /// wrk threads (`-t`).
    pub threads: u32,
    /// Open connections (`-c`).
    pub connections: u32,
    /// How long each run lasts, in whole seconds (`-d`).
    pub seconds: u64,
}

/// What one wrk run measured.
#[derive(Debug, Default, Clone)]
pub struct WrkRun {
    /// Requests completed.
    pub requests: u64,
    /// Completed requests per second.
    pub requests_per_sec: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Answers with a status >= 400.
    pub non_2xx: u64,
    /// Connect, read, write and timeout errors.
    pub socket_errors: u64,
}

impl Wrk {
    /// Runs wrk with `script` against `url` (on a blocking thread) and parses its report.
    pub async fn run(&self, script: &WrkScript, url: &str) -> Result<WrkRun> {
        let mut command = Command::new("wrk");
        command
            .arg(format!("-t{}", self.threads))
            .arg(format!("-c{}", self.connections))
            .arg(format!("-d{}s", self.seconds))
            .arg("--timeout")
            .arg("10s")
            .arg("-s")
            .arg(script.path())
            .arg(url);
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .context("the wrk thread panicked")?
            .context("cannot run wrk")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "wrk failed ({}):\n{stdout}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        parse(&stdout).with_context(|| format!("cannot understand wrk's report:\n{stdout}"))
    }
}

/// Parses the script's summary line.
fn parse(stdout: &str) -> Option<WrkRun> {
    let summary = stdout
        .lines()
        .find_map(|line| line.strip_prefix(SUMMARY_TAG))?;
    let field = |name: &str| -> Option<u64> {
        summary.split_whitespace().find_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            (key == name).then(|| value.parse().ok()).flatten()
        })
    };
    let requests = field("requests")?;
    let duration_us = field("duration_us")?.max(1);
    Some(WrkRun {
        requests,
        requests_per_sec: requests as f64 / (duration_us as f64 / 1e6),
        p50: Duration::from_micros(field("p50_us")?),
        p99: Duration::from_micros(field("p99_us")?),
        non_2xx: field("status").unwrap_or(0),
        socket_errors: ["connect", "read", "write", "timeout"]
            .iter()
            .filter_map(|name| field(name))
            .sum(),
    })
}

/// Makes sure `wrk` is on `PATH`, installing Debian's package with apt-get if it is not.
pub fn ensure_installed() -> Result<()> {
    if present()? {
        return Ok(());
    }
    eprintln!("wrk is not installed: installing it with apt-get (Debian package `wrk`) ...");
    let hint = "install wrk yourself (e.g. `sudo apt-get install wrk`) and run again";
    let sudo = !is_root();
    for args in [&["update"][..], &["install", "-y", "wrk"][..]] {
        let mut command = if sudo {
            let mut command = Command::new("sudo");
            command.arg("-n").arg("apt-get");
            command
        } else {
            Command::new("apt-get")
        };
        let status = command
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .with_context(|| format!("cannot run `apt-get {}`; {hint}", args.join(" ")))?;
        if !status.success() {
            bail!("`apt-get {}` failed ({status}); {hint}", args.join(" "));
        }
    }
    ensure!(
        present()?,
        "apt-get installed wrk but it is still not on PATH; {hint}"
    );
    Ok(())
}

/// Whether this process runs as root (so apt-get needs no sudo).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().next())
            == Some("0")
    })
}

/// Whether `wrk` can be started.
fn present() -> Result<bool> {
    // `wrk -v` prints its version and exits non-zero; only "not found" matters.
    match Command::new("wrk").arg("-v").output() {
        Ok(_) => Ok(true),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error).context("cannot run wrk"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_summary_line() {
        let stdout = "Running 1s test\n  1 threads\nWRK_SUMMARY requests=5000 duration_us=2000000 \
                      p50_us=120 p99_us=900 status=3 connect=0 read=1 write=0 timeout=2\n";
        let run = parse(stdout).expect("parses");
        assert_eq!(run.requests, 5000);
        assert!((run.requests_per_sec - 2500.0).abs() < 1e-9);
        assert_eq!(run.p50, Duration::from_micros(120));
        assert_eq!(run.p99, Duration::from_micros(900));
        assert_eq!(run.non_2xx, 3);
        assert_eq!(run.socket_errors, 3);
        assert!(parse("no summary here").is_none());
    }
}
