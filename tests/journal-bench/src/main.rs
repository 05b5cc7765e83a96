//! `journal-bench`: measures the candidate stores for the durable event journal (fjall, redb, a
//! segment log written here) on the workloads a durable webhook queue puts on them, against
//! baselines measured in the same run, and prints one table plus what each store does with a torn
//! tail and with garbage in the middle of its file. Everything it writes is under one temporary
//! directory (`--dir`) that it removes at the end; every workload is bounded in time or count.

mod fjall_store;
mod redb_store;
mod segment_log;
mod store;

use anyhow::{Context, Result};
use clap::Parser;
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use store::{Committer, Id, Record, Store};

#[derive(Parser, Debug)]
#[command(about = "Benchmark fjall, redb and a segment log as the router's durable journal")]
struct Args {
    /// Scratch directory (created, then removed); keep it on the disk the router would use.
    #[arg(long, default_value = "target/journal-bench-tmp")]
    dir: PathBuf,
    /// Concurrent writers in the ingest workloads.
    #[arg(long, default_value_t = 32)]
    writers: usize,
    /// Time limit of each ingest run, in seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Record limit of each ingest run.
    #[arg(long, default_value_t = 200_000)]
    max_records: u64,
    /// Held records for the recovery, ack and disk-use workloads.
    #[arg(long, default_value_t = 100_000)]
    held: u64,
    /// Records written before each corruption test.
    #[arg(long, default_value_t = 10_000)]
    corrupt_records: u64,
    /// Payload bytes per record.
    #[arg(long, default_value_t = 1024)]
    payload: usize,
    /// Time limit of the raw write+fdatasync baseline, in seconds.
    #[arg(long, default_value_t = 3.0)]
    baseline_duration: f64,
    /// Stores to measure (comma-separated): fjall, redb, segment, segment-prealloc.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "fjall,redb,segment,segment-prealloc"
    )]
    stores: Vec<String>,
    /// Rounds of the fsync=always comparison: each round measures the raw sync baseline, then
    /// every store's fsync=always ingest (in a rotated order); the table gives the median round.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// Runs `$body` with `$S` bound to the store type named `$name` (checked in `main`).
macro_rules! with_store {
    ($name:expr, $S:ident => $body:expr) => {
        match $name.as_str() {
            "fjall" => {
                type $S = fjall_store::FjallStore;
                $body
            }
            "redb" => {
                type $S = redb_store::RedbStore;
                $body
            }
            "segment" => {
                type $S = segment_log::SegmentLog<false>;
                $body
            }
            _ => {
                type $S = segment_log::SegmentLog<true>;
                $body
            }
        }
    };
}

/// Removes the scratch directory however the run ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        // A store's background thread may still be finishing a file: try again once.
        if std::fs::remove_dir_all(&self.0).is_err() {
            std::thread::sleep(Duration::from_millis(500));
            if let Err(e) = std::fs::remove_dir_all(&self.0) {
                eprintln!("could not remove {}: {e}", self.0.display());
            }
        }
    }
}

/// Throughput and latency of one ingest run.
#[derive(Debug, Clone, Copy, Default)]
struct Rate {
    records: u64,
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Records per commit (one sync each with fsync=always).
    batch: f64,
}

/// Everything measured for one store.
#[derive(Debug, Default)]
struct Row {
    name: &'static str,
    /// Each round's raw sync baseline and this store's fsync=always run in that round.
    rounds: Vec<(Rate, Rate)>,
    never: Rate,
    recovered: u64,
    recover_s: f64,
    recover_cpu_s: f64,
    ack_cpu_s: f64,
    /// CPU time of the whole process per record in the fsync=never run, in µs.
    never_cpu_us: f64,
    bytes_held: u64,
    ack_s: f64,
    bytes_acked: u64,
    reclaim_s: f64,
    bytes_reclaimed: u64,
    /// After reclaim, closed and opened again (fjall deletes replaced files at that point).
    bytes_reopened: u64,
    torn_tail: String,
    garbage: Vec<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    log::set_logger(&Capture).map_err(|e| anyhow::anyhow!("set logger: {e}"))?;
    log::set_max_level(log::LevelFilter::Off);
    std::fs::create_dir_all(&args.dir).with_context(|| format!("create {}", args.dir.display()))?;
    let scratch = Scratch(
        args.dir
            .canonicalize()?
            .join(format!("run-{}", std::process::id())),
    );
    std::fs::create_dir_all(&scratch.0)?;
    eprintln!("scratch dir: {}", scratch.0.display());

    let load_start = loadavg();
    let mut rows = Vec::new();
    for name in &args.stores {
        anyhow::ensure!(
            ["fjall", "redb", "segment", "segment-prealloc"].contains(&name.as_str()),
            "unknown store {name:?} (fjall, redb, segment, segment-prealloc)"
        );
        rows.push(Row::default());
    }
    // The disk's sync rate moves by several times within a minute on a shared VM: compare
    // fsync=always rates in rounds, each against a raw baseline measured in that round.
    for round in 0..args.rounds {
        eprintln!("round {}: raw write+fdatasync baseline", round + 1);
        let raw = raw_sync_baseline(&scratch.0.join(format!("raw-{round}")), &args)?;
        for k in 0..args.stores.len() {
            let i = (k + round) % args.stores.len();
            let name = &args.stores[i];
            eprintln!("round {}: {name} fsync=always", round + 1);
            let dir = scratch.0.join(format!("{name}-always-{round}"));
            let rate = with_store!(name, S => ingest::<S>(&dir, &args, true))?;
            std::fs::remove_dir_all(&dir)?;
            rows[i].rounds.push((raw, rate));
        }
    }
    for (name, row) in args.stores.iter().zip(&mut rows) {
        let dir = scratch.0.join(name);
        with_store!(name, S => measure::<S>(&dir, &args, row))?;
    }
    println!("load average at start: {load_start}; at end: {}", loadavg());
    print_table(&args, &rows);
    drop(scratch);
    // Removes the parent too if this run made it and nothing else is in it.
    let _ = std::fs::remove_dir(&args.dir);
    Ok(())
}

/// A record id: a big-endian counter, so ids arrive in order like UUIDv7s do.
fn id_of(n: u64) -> Id {
    (u128::from(n) | (0x0190_0000_0000_u128 << 80)).to_be_bytes()
}

/// An incompressible payload (the conservative case for disk use).
fn payload(rng: &mut fastrand::Rng, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    rng.fill(&mut p);
    p
}

/// The payload of record `n`: pseudo-random bytes from `n`, so a reader can check them.
fn payload_of(n: u64, len: usize) -> Vec<u8> {
    payload(&mut fastrand::Rng::with_seed(n), len)
}

/// Whether `value` is exactly what [`fill`] wrote under `key`.
fn is_intact(key: &[u8], value: &[u8]) -> bool {
    let Ok(id) = <[u8; 16]>::try_from(key) else {
        return false;
    };
    let n = u64::from_be_bytes(id[8..].try_into().unwrap_or_default());
    id == id_of(n) && value == payload_of(n, value.len()).as_slice()
}

/// CPU seconds this process has used, all threads (`/proc/self/stat` utime + stime, at the
/// usual 100 ticks a second). Wall time on a busy 2-core machine mostly measures the neighbours;
/// CPU time is what the store itself costs.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    f.iter().sum::<u64>() as f64 / 100.0
}

/// The load average line, to show how busy the machine was.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

/// The disk's raw sync rate: one writer, one 1 KiB `write` then one `fdatasync`, repeated.
fn raw_sync_baseline(dir: &Path, args: &Args) -> Result<Rate> {
    std::fs::create_dir_all(dir)?;
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("raw.log"))?;
    let mut rng = fastrand::Rng::with_seed(1);
    let limit = Duration::from_secs_f64(args.baseline_duration);
    let mut lat = Vec::new();
    let start = Instant::now();
    while start.elapsed() < limit && (lat.len() as u64) < args.max_records {
        let rec = payload(&mut rng, args.payload);
        let t = Instant::now();
        f.write_all(&rec)?;
        f.sync_data()?;
        lat.push(t.elapsed().as_micros() as u32);
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    Ok(Rate {
        records: lat.len() as u64,
        per_sec: lat.len() as f64 / secs,
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        batch: 1.0,
    })
}

/// `writers` threads each append a record and wait until it is committed (and synced when
/// `sync`) before the next, until the time or record limit.
fn ingest<S: Store>(dir: &Path, args: &Args, sync: bool) -> Result<Rate> {
    let (store, _) = S::open(dir, &mut |_, _| {})?;
    let (committer, submitter) = Committer::spawn(store, sync);
    let issued = Arc::new(AtomicU64::new(0));
    let limit = Duration::from_secs_f64(args.duration);
    let start = Instant::now();
    let handles: Vec<_> = (0..args.writers)
        .map(|w| {
            let submitter = submitter.clone();
            let issued = Arc::clone(&issued);
            let (max, len) = (args.max_records, args.payload);
            std::thread::spawn(move || -> Result<Vec<u32>> {
                let mut rng = fastrand::Rng::with_seed(w as u64);
                let reply = store::reply_channel();
                let mut lat = Vec::new();
                loop {
                    let n = issued.fetch_add(1, Ordering::Relaxed);
                    if n >= max || start.elapsed() >= limit {
                        return Ok(lat);
                    }
                    let record = Record {
                        id: id_of(n),
                        payload: payload(&mut rng, len),
                    };
                    let t = Instant::now();
                    submitter.append(record, &reply)?;
                    lat.push(t.elapsed().as_micros() as u32);
                }
            })
        })
        .collect();
    drop(submitter);
    let mut lat = Vec::new();
    for h in handles {
        lat.extend(h.join().map_err(|_| anyhow::anyhow!("writer panicked"))??);
    }
    let secs = start.elapsed().as_secs_f64();
    let (store, stats) = committer.join()?;
    drop(store);
    lat.sort_unstable();
    Ok(Rate {
        records: lat.len() as u64,
        per_sec: lat.len() as f64 / secs,
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        batch: stats.records as f64 / stats.commits.max(1) as f64,
    })
}

/// Writes `count` records, `batch` to a commit, syncing the last commit, and closes the store.
fn fill<S: Store>(dir: &Path, count: u64, len: usize, batch: u64) -> Result<()> {
    let (mut store, _) = S::open(dir, &mut |_, _| {})?;
    let mut n = 0;
    while n < count {
        let end = (n + batch).min(count);
        let batch: Vec<Record> = (n..end)
            .map(|i| Record {
                id: id_of(i),
                payload: payload_of(i, len),
            })
            .collect();
        store.append(&batch, end == count)?;
        n = end;
    }
    Ok(())
}

/// Bytes allocated on disk under `dir` (st_blocks × 512, what `du` counts).
fn disk_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            total += disk_bytes(&entry.path())?;
        } else {
            total += meta.blocks() * 512;
        }
    }
    Ok(total)
}

/// Collects what the stores log while a corrupted store is reopened (fjall logs through the `log`
/// crate; redb, built without its `logging` feature, logs nothing), so the report can say
/// exactly what the store itself said.
struct Capture;

static CAPTURED: Mutex<Vec<String>> = Mutex::new(Vec::new());

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let msg = record.args().to_string();
        let lower = msg.to_lowercase();
        let relevant = record.level() <= log::Level::Warn
            || [
                "truncat", "corrupt", "checksum", "invalid", "repair", "discard",
            ]
            .iter()
            .any(|w| lower.contains(w));
        if relevant && let Ok(mut lines) = CAPTURED.lock() {
            lines.push(format!("{} {}: {msg}", record.level(), record.target()));
        }
    }

    fn flush(&self) {}
}

/// Opens `dir` and counts the records it hands back, or says why it could not (an error, or a
/// panic inside the store, caught here so the run goes on), with what the store logged.
fn reopen_outcome<S: Store>(dir: &Path, expected: u64) -> String {
    let mut damaged = 0u64;
    log::set_max_level(log::LevelFilter::Trace);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        S::open(dir, &mut |k, v| damaged += u64::from(!is_intact(k, v)))
    }));
    log::set_max_level(log::LevelFilter::Off);
    let logged = CAPTURED
        .lock()
        .map(|mut l| std::mem::take(&mut *l))
        .unwrap_or_default();
    let logged = if logged.is_empty() {
        "nothing logged".to_string()
    } else {
        format!("logged: {}", logged.join(" / "))
    };
    let outcome = reopen_report(outcome, expected);
    if damaged > 0 {
        format!("{outcome}; {damaged} of them with WRONG bytes, not reported; {logged}")
    } else {
        format!("{outcome}; {logged}")
    }
}

/// One line for the outcome of a reopen: the panic, the error, or the records and notes.
fn reopen_report<S>(
    outcome: std::thread::Result<Result<(S, store::OpenReport)>>,
    expected: u64,
) -> String {
    match outcome {
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            format!("PANICS in the store: {msg}")
        }
        Ok(Ok((_, report))) => {
            let notes = if report.notes.is_empty() {
                "no report returned".to_string()
            } else {
                report.notes.join("; ")
            };
            format!("opens; {} of {expected} records back; {notes}", report.held)
        }
        Ok(Err(e)) => format!("open fails: {e:#}"),
    }
}

/// Copies the files under `src` to `dst` (a closed store, for a second experiment on it).
fn copy_dir(src: &Path, dst: &Path) -> Result<()> {
    std::fs::create_dir_all(dst)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let to = dst.join(entry.file_name());
        if entry.metadata()?.is_dir() {
            copy_dir(&entry.path(), &to)?;
        } else {
            std::fs::copy(entry.path(), &to)?;
        }
    }
    Ok(())
}

/// Where the data in `file` ends: after its last non-zero byte (fjall preallocates its journal
/// with zeros, so its length says nothing).
fn data_end(file: &Path) -> Result<u64> {
    let data = std::fs::read(file)?;
    Ok(data
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i as u64 + 1))
}

/// The two corruption cases, each on a fresh store of `corrupt_records` synced records written
/// 32 to a commit: the tail cut mid-record (the file truncated, or, in a preallocated file, the
/// last bytes of data zeroed: what a torn write leaves in each), and 100 random bytes written in
/// the middle of the data. A store with its own integrity check also runs it on the second.
fn corruption<S: Store>(dir: &Path, args: &Args) -> Result<(String, Vec<String>)> {
    let n = args.corrupt_records;
    let cut = args.payload as u64 / 2;
    let torn_dir = dir.join("torn");
    fill::<S>(&torn_dir, n, args.payload, 32)?;
    let tail = S::tail_file(&torn_dir)?;
    let len = std::fs::metadata(&tail)?.len();
    let end = data_end(&tail)?;
    let how = if S::PREALLOCATES {
        let mut f = OpenOptions::new().write(true).open(&tail)?;
        f.seek(SeekFrom::Start(end - cut))?;
        f.write_all(&vec![0; cut as usize])?;
        f.sync_all()?;
        format!("{cut} B before its data end ({end} B; file {len} B) zeroed")
    } else {
        OpenOptions::new()
            .write(true)
            .open(&tail)?
            .set_len(len - cut)?;
        format!("cut from {len} B to {} B", len - cut)
    };
    let torn = format!(
        "{} {how}: {}",
        tail.file_name().unwrap_or_default().to_string_lossy(),
        reopen_outcome::<S>(&torn_dir, n)
    );

    let source = dir.join("garbage");
    fill::<S>(&source, n, args.payload, 32)?;
    let mut garbage = Vec::new();
    for quarter in 1..=3u64 {
        let copy = dir.join(format!("garbage-{quarter}"));
        copy_dir(&source, &copy)?;
        let file = S::tail_file(&copy)?;
        let end = data_end(&file)?;
        let at = end * quarter / 4;
        let mut f = OpenOptions::new().write(true).open(&file)?;
        f.seek(SeekFrom::Start(at))?;
        let mut rng = fastrand::Rng::with_seed(99);
        f.write_all(&payload(&mut rng, 100))?;
        f.sync_all()?;
        drop(f);
        let mut line = format!(
            "100 B at offset {at} of {} (data end {end} B): {}",
            file.file_name().unwrap_or_default().to_string_lossy(),
            reopen_outcome::<S>(&copy, n)
        );
        match std::panic::catch_unwind(|| S::integrity_check(&copy)) {
            Ok(Some(said)) => line.push_str(&format!("; its integrity check: {said}")),
            Ok(None) => {}
            Err(_) => line.push_str("; its integrity check PANICS"),
        }
        garbage.push(line);
    }
    Ok((torn, garbage))
}

/// Runs every workload but the fsync=always rounds on store `S` in `dir`.
fn measure<S: Store>(dir: &Path, args: &Args, row: &mut Row) -> Result<()> {
    row.name = S::NAME;
    eprintln!("{}: ingest fsync=never", S::NAME);
    let cpu = cpu_seconds();
    row.never = ingest::<S>(&dir.join("never"), args, false)?;
    row.never_cpu_us = (cpu_seconds() - cpu) * 1e6 / row.never.records.max(1) as f64;

    eprintln!("{}: {} held records", S::NAME, args.held);
    let held_dir = dir.join("held");
    fill::<S>(&held_dir, args.held, args.payload, 1000)?;
    row.bytes_held = disk_bytes(&held_dir)?;
    let (start, cpu) = (Instant::now(), cpu_seconds());
    let mut bytes = 0u64;
    let (mut store, report) = S::open(&held_dir, &mut |_, v| bytes += v.len() as u64)?;
    row.recover_s = start.elapsed().as_secs_f64();
    row.recover_cpu_s = cpu_seconds() - cpu;
    row.recovered = report.held;
    anyhow::ensure!(
        report.held == args.held && bytes == args.held * args.payload as u64,
        "{}: recovered {} records ({bytes} B), wrote {}",
        S::NAME,
        report.held,
        args.held
    );

    let (start, cpu) = (Instant::now(), cpu_seconds());
    let ids: Vec<Id> = (0..args.held).map(id_of).collect();
    let chunks = ids.chunks(1000).count();
    for (i, chunk) in ids.chunks(1000).enumerate() {
        store.ack(chunk, i + 1 == chunks)?;
    }
    row.ack_s = start.elapsed().as_secs_f64();
    row.ack_cpu_s = cpu_seconds() - cpu;
    row.bytes_acked = disk_bytes(&held_dir)?;
    let start = Instant::now();
    store.reclaim()?;
    row.reclaim_s = start.elapsed().as_secs_f64();
    row.bytes_reclaimed = disk_bytes(&held_dir)?;
    drop(store);
    let (store, report) = S::open(&held_dir, &mut |_, _| {})?;
    anyhow::ensure!(
        report.held == 0,
        "{}: {} records back after acking all",
        S::NAME,
        report.held
    );
    drop(store);
    row.bytes_reopened = disk_bytes(&held_dir)?;

    eprintln!("{}: corruption", S::NAME);
    (row.torn_tail, row.garbage) = corruption::<S>(dir, args)?;
    Ok(())
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

#[allow(clippy::print_stdout)]
fn print_table(args: &Args, rows: &[Row]) {
    println!(
        "journal-bench: {} B payloads, 16 B ids; ingest: {} writers, {} s or {} records; {} held records; {} rounds",
        args.payload, args.writers, args.duration, args.max_records, args.held, args.rounds
    );
    if let Some(first) = rows.first() {
        let raw: Vec<String> = first
            .rounds
            .iter()
            .map(|(raw, _)| {
                format!(
                    "{:.0}/s (p50 {:.1} ms, p99 {:.1} ms)",
                    raw.per_sec, raw.p50_ms, raw.p99_ms
                )
            })
            .collect();
        println!(
            "raw write+fdatasync, 1 writer, by round: {}",
            raw.join(", ")
        );
    }
    for round in 0..args.rounds {
        let rates: Vec<String> = rows
            .iter()
            .filter_map(|r| {
                r.rounds
                    .get(round)
                    .map(|(_, a)| format!("{} {:.0}", r.name, a.per_sec))
            })
            .collect();
        println!(
            "round {} fsync=always rec/s: {}",
            round + 1,
            rates.join(", ")
        );
    }
    println!();
    println!(
        "| store | fsync=always rec/s, median round [min–max] (its records) | p50 ms | p99 ms | rec/sync | × raw sync, median [min–max] | fsync=never rec/s (records, p99) [CPU µs/rec] | always × never | recover {} s (CPU s) | ack {} s (CPU s) | disk held | after ack | after reclaim (s) | reclaimed, reopened | B / held rec |",
        args.held, args.held
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let mut by_rate: Vec<&(Rate, Rate)> = r.rounds.iter().collect();
        by_rate.sort_by(|a, b| a.1.per_sec.total_cmp(&b.1.per_sec));
        let Some(median) = by_rate.get(by_rate.len() / 2).map(|m| m.1) else {
            continue;
        };
        let (lo, hi) = (by_rate[0].1.per_sec, by_rate[by_rate.len() - 1].1.per_sec);
        let mut ratios: Vec<f64> = r
            .rounds
            .iter()
            .map(|(raw, a)| a.per_sec / raw.per_sec)
            .collect();
        ratios.sort_by(f64::total_cmp);
        let batch = r.rounds.iter().map(|(_, a)| a.batch).sum::<f64>() / r.rounds.len() as f64;
        println!(
            "| {} | {:.0} [{:.0}–{:.0}] ({}) | {:.2} | {:.2} | {:.1} | {:.1} [{:.1}–{:.1}] | {:.0} ({}, {:.1} ms) [{:.0}] | {:.3} | {:.3} ({:.2}) | {:.3} ({:.2}) | {} | {} | {} ({:.2}) | {} | {:.0} |",
            r.name,
            median.per_sec,
            lo,
            hi,
            median.records,
            median.p50_ms,
            median.p99_ms,
            batch,
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1],
            r.never.per_sec,
            r.never.records,
            r.never.p99_ms,
            r.never_cpu_us,
            median.per_sec / r.never.per_sec,
            r.recover_s,
            r.recover_cpu_s,
            r.ack_s,
            r.ack_cpu_s,
            mib(r.bytes_held),
            mib(r.bytes_acked),
            mib(r.bytes_reclaimed),
            r.reclaim_s,
            mib(r.bytes_reopened),
            r.bytes_held as f64 / r.recovered.max(1) as f64,
        );
    }
    println!();
    println!(
        "Torn tail ({} B of the last record lost) and garbage (100 random bytes mid-data), {} synced records in commits of 32:",
        args.payload / 2,
        args.corrupt_records
    );
    for r in rows {
        println!("- {} torn tail: {}", r.name, r.torn_tail);
        for g in &r.garbage {
            println!("- {} garbage: {g}", r.name);
        }
    }
}
