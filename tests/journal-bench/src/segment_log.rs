//! The minimal segment log candidate, written here: append-only files `<n>.seg` of records
//! `[len u32 LE][crc32c u32 LE][payload]`, where the payload is `[kind u8][id 16 B][body]`
//! (kind 1 = event, kind 2 = ack tombstone with an empty body). A commit is one `write` of all
//! the batch's records and, for fsync=always, one `fdatasync`. A segment is closed (synced) at
//! [`SEGMENT_BYTES`] and a new one started (the directory is synced so its entry is durable).
//!
//! Open reads every segment in order and checks each record's checksum. A record that fails is
//! resynchronised past: the scan moves one byte at a time to the next offset where a whole record
//! checks. Bad bytes followed by good records are a **corrupt region**: counted, reported with
//! segment and offset, skipped. Bad bytes with no good record after them in the last segment are
//! a **torn tail**: the file is truncated to the last good record (and synced) and reported.
//!
//! Preallocated variant (`SegmentLog<true>`): a new segment is first filled with zeros and
//! synced, and records then overwrite those zeros, so an `fdatasync` has no file size or block
//! allocation to journal, only data. Open treats zeros up to the end of a segment as its clean end;
//! a torn tail is zeroed again instead of truncated, so the segment stays preallocated.
//!
//! Reclaim: the log keeps, per segment, how many of its events are not yet acked. Whole segments
//! are deleted from the oldest while they have none left (oldest first, so a tombstone is never
//! deleted while the event it acks is still on disk); an active segment with nothing held is
//! closed first so it can go too.

use crate::store::{Id, OpenReport, Record, Store};
use anyhow::{Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A segment is closed once it holds this many bytes.
pub const SEGMENT_BYTES: u64 = 16 << 20;
const HEADER: usize = 8;
const KIND_EVENT: u8 = 1;
const KIND_ACK: u8 = 2;
/// Smallest valid payload: kind + id. Also rejects all-zero bytes (len 0, crc 0) as a record.
const MIN_PAYLOAD: usize = 17;
/// Largest payload accepted when parsing; longer lengths are corruption.
const MAX_PAYLOAD: usize = 16 << 20;

/// An append-only log of checksummed records in numbered segment files; `PREALLOC` fills each
/// new segment with zeros first.
#[derive(Debug)]
pub struct SegmentLog<const PREALLOC: bool> {
    dir: PathBuf,
    active: File,
    active_no: u64,
    active_len: u64,
    /// Held (not acked) events per segment; every segment on disk has an entry.
    live: BTreeMap<u64, u64>,
    /// Which segment each held event is in.
    index: HashMap<Id, u64>,
    buf: Vec<u8>,
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:020}.seg"))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("sync dir {}", dir.display()))
}

fn encode(buf: &mut Vec<u8>, kind: u8, id: &Id, body: &[u8]) {
    let len = (1 + id.len() + body.len()) as u32;
    let mut crc = crc32c::crc32c(&[kind]);
    crc = crc32c::crc32c_append(crc, id);
    crc = crc32c::crc32c_append(crc, body);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc.to_le_bytes());
    buf.push(kind);
    buf.extend_from_slice(id);
    buf.extend_from_slice(body);
}

/// The payload of a whole, checksum-valid record at `at`, if there is one.
fn record_at(data: &[u8], at: usize) -> Option<&[u8]> {
    let header = data.get(at..at + HEADER)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    if !(MIN_PAYLOAD..=MAX_PAYLOAD).contains(&len) {
        return None;
    }
    let payload = data.get(at + HEADER..at + HEADER + len)?;
    let kind = payload[0];
    (crc32c::crc32c(payload) == crc && (kind == KIND_EVENT || kind == KIND_ACK)).then_some(payload)
}

/// Segment numbers present in `dir`, ascending.
fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("read dir {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) == Some("seg")
            && let Some(n) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse().ok())
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Creates segment `n`, zero-filled to [`SEGMENT_BYTES`] and synced when `prealloc`.
fn create_segment(dir: &Path, n: u64, prealloc: bool) -> Result<File> {
    let path = segment_path(dir, n);
    let file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("create {}", path.display()))?;
    if prealloc {
        let zeros = vec![0u8; 1 << 20];
        let mut at = 0;
        while at < SEGMENT_BYTES {
            file.write_all_at(&zeros, at)
                .context("preallocate segment")?;
            at += zeros.len() as u64;
        }
        file.sync_all().context("sync preallocated segment")?;
    }
    sync_dir(dir)?;
    Ok(file)
}

impl<const PREALLOC: bool> SegmentLog<PREALLOC> {
    fn rotate(&mut self) -> Result<()> {
        self.active.sync_data().context("sync closed segment")?;
        self.active_no += 1;
        self.active = create_segment(&self.dir, self.active_no, PREALLOC)?;
        self.active_len = 0;
        self.live.insert(self.active_no, 0);
        Ok(())
    }

    fn write_buf(&mut self, sync: bool) -> Result<()> {
        self.active
            .write_all_at(&self.buf, self.active_len)
            .context("segment write")?;
        self.active_len += self.buf.len() as u64;
        self.buf.clear();
        if sync {
            self.active.sync_data().context("segment fdatasync")?;
        }
        Ok(())
    }
}

impl<const PREALLOC: bool> Store for SegmentLog<PREALLOC> {
    const NAME: &'static str = if PREALLOC {
        "segment log, preallocated"
    } else {
        "segment log"
    };
    const PREALLOCATES: bool = PREALLOC;

    fn open(dir: &Path, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<(Self, OpenReport)> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let mut report = OpenReport::default();
        let segments = list_segments(dir)?;
        let mut live = BTreeMap::new();
        // Events in log order; an ack empties its event's slot.
        let mut events: Vec<Option<(Id, Vec<u8>)>> = Vec::new();
        let mut slot: HashMap<Id, (usize, u64)> = HashMap::new();
        let mut last_len = 0;
        for (i, &n) in segments.iter().enumerate() {
            let path = segment_path(dir, n);
            let data = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
            live.insert(n, 0u64);
            let mut at = 0;
            let mut good_end = 0;
            while at < data.len() {
                if let Some(payload) = record_at(&data, at) {
                    let mut id = [0u8; 16];
                    id.copy_from_slice(&payload[1..17]);
                    if payload[0] == KIND_EVENT {
                        slot.insert(id, (events.len(), n));
                        events.push(Some((id, payload[17..].to_vec())));
                        *live.entry(n).or_default() += 1;
                    } else if let Some((s, seg)) = slot.remove(&id) {
                        events[s] = None;
                        *live.entry(seg).or_default() -= 1;
                    }
                    at += HEADER + payload.len();
                    good_end = at;
                    continue;
                }
                if PREALLOC && data[at..].iter().all(|&b| b == 0) {
                    break; // The preallocated, never written rest of the segment.
                }
                // Bad bytes: find the next offset where a whole record checks.
                let bad = at;
                let next = (bad + 1..data.len()).find(|&o| record_at(&data, o).is_some());
                match next {
                    Some(o) => {
                        report.notes.push(format!(
                            "corrupt region skipped: segment {n} bytes {bad}..{o} ({} B)",
                            o - bad
                        ));
                        at = o;
                    }
                    None if i + 1 == segments.len() => {
                        let f = OpenOptions::new()
                            .write(true)
                            .open(&path)
                            .with_context(|| format!("open {}", path.display()))?;
                        let cut = if PREALLOC {
                            // Zero the torn bytes so the segment stays preallocated.
                            let end = data.iter().rposition(|&b| b != 0).map_or(0, |e| e + 1);
                            f.write_all_at(&vec![0; end - good_end], good_end as u64)
                                .context("zero torn tail")?;
                            end - good_end
                        } else {
                            f.set_len(good_end as u64).context("truncate torn tail")?;
                            data.len() - good_end
                        };
                        f.sync_all().context("sync repaired tail")?;
                        report.notes.push(format!(
                            "torn tail {}: segment {n} at byte {good_end} ({cut} B)",
                            if PREALLOC { "zeroed" } else { "truncated" }
                        ));
                        at = data.len();
                    }
                    None => {
                        report.notes.push(format!(
                            "corrupt region skipped: segment {n} bytes {bad}..{} (to segment end)",
                            data.len()
                        ));
                        at = data.len();
                    }
                }
            }
            last_len = good_end as u64;
        }
        for (id, payload) in events.iter().flatten() {
            visit(id, payload);
            report.held += 1;
        }
        let index = slot.into_iter().map(|(id, (_, seg))| (id, seg)).collect();
        let (active_no, active_len) = match segments.last() {
            Some(&n) => (n, last_len),
            None => (0, 0),
        };
        let active = if segments.is_empty() {
            create_segment(dir, active_no, PREALLOC)?
        } else {
            let path = segment_path(dir, active_no);
            OpenOptions::new()
                .write(true)
                .open(&path)
                .with_context(|| format!("open {}", path.display()))?
        };
        live.entry(active_no).or_insert(0);
        let log = Self {
            dir: dir.to_path_buf(),
            active,
            active_no,
            active_len,
            live,
            index,
            buf: Vec::new(),
        };
        Ok((log, report))
    }

    fn append(&mut self, batch: &[Record], sync: bool) -> Result<()> {
        if self.active_len >= SEGMENT_BYTES {
            self.rotate()?;
        }
        for r in batch {
            encode(&mut self.buf, KIND_EVENT, &r.id, &r.payload);
            self.index.insert(r.id, self.active_no);
        }
        *self.live.entry(self.active_no).or_default() += batch.len() as u64;
        self.write_buf(sync)
    }

    fn ack(&mut self, ids: &[Id], sync: bool) -> Result<()> {
        if self.active_len >= SEGMENT_BYTES {
            self.rotate()?;
        }
        for id in ids {
            if let Some(seg) = self.index.remove(id) {
                encode(&mut self.buf, KIND_ACK, id, &[]);
                if let Some(n) = self.live.get_mut(&seg) {
                    *n -= 1;
                }
            }
        }
        self.write_buf(sync)
    }

    fn reclaim(&mut self) -> Result<()> {
        if self.active_len > 0 && self.live.get(&self.active_no) == Some(&0) {
            self.rotate()?;
        }
        let mut deleted = false;
        while let Some((&n, &held)) = self.live.first_key_value() {
            if held > 0 || n == self.active_no {
                break;
            }
            let path = segment_path(&self.dir, n);
            std::fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))?;
            self.live.remove(&n);
            deleted = true;
        }
        if deleted {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    fn tail_file(dir: &Path) -> Result<PathBuf> {
        let last = list_segments(dir)?.pop().context("no segment file")?;
        Ok(segment_path(dir, last))
    }
}
