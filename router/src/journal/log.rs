//! The segment log: numbered files of records, an index of the live keys, and reclaiming the
//! disk space of what is no longer held.
//!
//! Records are appended to the newest segment (`<n>.log`); past `segment_bytes` a new one is
//! started. A key's latest put is the one that counts, until a delete or its expiry. Each
//! segment knows which keys' latest puts it holds; the oldest segment is deleted once it holds
//! none. A segment pinned by a few long-held keys (an event retried for hours) does not pin the
//! disk: when the log holds more than twice what is live, the oldest segment's live records are
//! copied forward to the newest and the segment is deleted. Deleting only ever the oldest
//! segment keeps deletes sound: a delete is never on disk without the puts it cancels before it.
//!
//! Segments are preallocated: a new one is filled with zeros and synced before it is used (by a
//! helper thread, ahead of time), so that a commit's `fdatasync` has only data to flush, no file
//! size or block allocation (on ext4 this halves its time). Zeros after the last record are a
//! segment's clean end.
//!
//! Opening reads every segment, checking each record. Damaged bytes followed by whole records
//! are a corrupt region: counted, reported with file and offset, skipped. Damaged bytes at the
//! end of the newest segment are a torn tail (a write cut short): zeroed and reported. A live
//! record that no longer reads back when it is copied forward is reported once and dropped, so
//! that it does not pin its segment. A batch record (see [`super::record`]) is applied whole or,
//! damaged or cut short, not at all.
//!
//! A segment is deleted only once every record that frees it is on disk: the records that
//! delete or supersede its keys are in newer segments, so before deleting, the newest segment
//! is synced if anything was appended to it since its last sync (or since the open: what was
//! read may be page cache the last process never synced). After a failed sync nothing is
//! deleted until the next start, since the OS may have dropped the pages it could not write
//! and a later sync that succeeds says nothing about them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::JournalError;
use super::directory::{self, io_error};
use super::faults::Faults;
use super::record::{self, Key, Op, Record};
use crate::id_hash::IdHash;

/// Where a key's latest put is.
#[derive(Debug, Clone, Copy)]
struct Location {
    segment: u64,
    offset: u64,
    len: u64,
    expires_ms: u64,
}

/// One segment file.
#[derive(Debug, Default)]
struct Segment {
    /// Where its records end.
    len: u64,
    /// Its size on disk (zeros past `len` in a preallocated segment).
    file_bytes: u64,
    /// Keys whose latest put is in this segment (router-made: hashed cheaply).
    live: HashSet<Key, IdHash>,
}

/// The name of the next segment while it is being preallocated.
const SPARE_NAME: &str = "next-segment.tmp";

/// Damage found while opening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// The newest segment ended in a partial record; it was cut off (zeroed).
    TornTail {
        /// The segment file.
        path: PathBuf,
        /// Where the last whole record ends.
        offset: u64,
        /// Bytes cut.
        bytes: u64,
    },
    /// Bytes that are no record, with whole records after them; skipped.
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Where the damage starts.
        offset: u64,
        /// Bytes skipped.
        bytes: u64,
    },
    /// A live record, whole when written and read, that no longer reads back (the disk
    /// changed it since); dropped.
    Changed {
        /// The segment file.
        path: PathBuf,
        /// The record's offset.
        offset: u64,
        /// The record's length.
        bytes: u64,
    },
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::TornTail {
                path,
                offset,
                bytes,
            } => write!(
                f,
                "{}: torn last record at byte {offset}: {bytes} bytes cut off",
                path.display()
            ),
            Damage::Corrupt {
                path,
                offset,
                bytes,
            } => write!(
                f,
                "{}: {bytes} damaged bytes at byte {offset} skipped",
                path.display()
            ),
            Damage::Changed {
                path,
                offset,
                bytes,
            } => write!(
                f,
                "{}: the live record at byte {offset} ({bytes} bytes) no longer reads back; dropped",
                path.display()
            ),
        }
    }
}

/// What opening found.
#[derive(Debug, Default)]
pub struct Opened {
    /// The value and expiry (Unix ms, 0: none) of every live key, in key order.
    pub live: BTreeMap<Key, (Vec<u8>, u64)>,
    /// Damage found (and repaired or skipped).
    pub damage: Vec<Damage>,
    /// The largest id of any record read (0 if none).
    pub max_id: u64,
}

/// The log, owned by the committer thread.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    segment_bytes: u64,
    active: File,
    active_no: u64,
    segments: BTreeMap<u64, Segment>,
    index: HashMap<Key, Location, IdHash>,
    disk_bytes: u64,
    live_bytes: u64,
    /// The next segment, being preallocated by a helper thread.
    spare: Option<std::thread::JoinHandle<Result<(), JournalError>>>,
    /// Whether the newest segment may hold records not yet synced (true after the open).
    unsynced: bool,
    /// Whether a sync failed: no segment is deleted from then on.
    sync_failed: bool,
    /// Damage found since [`Log::take_damage`] was last called.
    damage: Vec<Damage>,
    /// The test seam (see [`super::faults`]); `None` unless asked for.
    faults: Option<Faults>,
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:016}.log"))
}

/// Segment numbers in `dir`, ascending.
fn list_segments(dir: &Path) -> Result<Vec<u64>, JournalError> {
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir, "list"))? {
        let path = entry.map_err(io_error(dir, "list"))?.path();
        if path.extension().is_some_and(|e| e == "log")
            && let Some(n) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse().ok())
        {
            numbers.push(n);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// Creates (or recreates) `path` as `bytes` of zeros, synced.
fn preallocate(path: &Path, bytes: u64) -> Result<(), JournalError> {
    let file = directory::file_options()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)
        .map_err(io_error(path, "create"))?;
    let zeros = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < bytes {
        let chunk = zeros
            .len()
            .min(usize::try_from(bytes - at).unwrap_or(usize::MAX));
        file.write_all_at(&zeros[..chunk], at)
            .map_err(io_error(path, "preallocate"))?;
        at += chunk as u64;
    }
    file.sync_all().map_err(io_error(path, "sync"))
}

/// Creates segment `n`, preallocated to `bytes`: the spare if one is ready (or being made),
/// else now.
fn create_segment(
    dir: &Path,
    n: u64,
    bytes: u64,
    spare: Option<std::thread::JoinHandle<Result<(), JournalError>>>,
) -> Result<File, JournalError> {
    let path = segment_path(dir, n);
    let spare_path = dir.join(SPARE_NAME);
    let ready = match spare.map(std::thread::JoinHandle::join) {
        Some(Ok(Ok(()))) => true,
        Some(Ok(Err(error))) => {
            tracing::warn!(%error, "journal: the next segment could not be prepared ahead");
            false
        }
        Some(Err(_)) | None => false,
    };
    if ready {
        std::fs::rename(&spare_path, &path).map_err(io_error(&path, "create"))?;
    } else {
        preallocate(&path, bytes)?;
    }
    let file = directory::file_options()
        .write(true)
        .read(true)
        .open(&path)
        .map_err(io_error(&path, "open"))?;
    directory::sync(dir)?;
    Ok(file)
}

/// Starts preallocating the next segment on a helper thread.
fn start_spare(
    dir: &Path,
    bytes: u64,
) -> Option<std::thread::JoinHandle<Result<(), JournalError>>> {
    let path = dir.join(SPARE_NAME);
    std::thread::Builder::new()
        .name("journal-spare".into())
        .spawn(move || preallocate(&path, bytes))
        .ok()
}

impl Log {
    /// Opens the log in `dir` (created if missing), reading every live record; records whose
    /// expiry is before `now_ms` are not live. `faults`: the test seam, if on.
    pub fn open(
        dir: &Path,
        segment_bytes: u64,
        now_ms: u64,
        faults: Option<Faults>,
    ) -> Result<(Log, Opened), JournalError> {
        let numbers = list_segments(dir)?;
        let mut opened = Opened::default();
        let mut segments: BTreeMap<u64, Segment> = BTreeMap::new();
        let mut index: HashMap<Key, Location, IdHash> = HashMap::default();
        let mut values: HashMap<Key, (Vec<u8>, u64), IdHash> = HashMap::default();
        for (position, &n) in numbers.iter().enumerate() {
            let path = segment_path(dir, n);
            let data = directory::read(&path).map_err(io_error(&path, "read"))?;
            let mut segment = Segment::default();
            let mut at = 0;
            let mut good_end = 0;
            while at < data.len() {
                if let Some((record, len)) = record::read_at(&data, at) {
                    // A batch's members, at their offsets in the segment; a record alone.
                    let applied = if record.op == Op::Batch {
                        record::members(record.value).map(|members| {
                            let first = at + record::BATCH_HEADER_BYTES;
                            members
                                .into_iter()
                                .map(|(member, offset, len)| (member, first + offset, len))
                                .collect()
                        })
                    } else {
                        Some(vec![(record, at, len)])
                    };
                    let Some(applied) = applied else {
                        // Its checksum holds but it is no batch: applied in part it would
                        // break the all or nothing, so none of it is.
                        opened.damage.push(Damage::Corrupt {
                            path: path.clone(),
                            offset: at as u64,
                            bytes: len as u64,
                        });
                        at += len;
                        good_end = at;
                        continue;
                    };
                    for (record, offset, len) in applied {
                        opened.max_id = opened.max_id.max(record.key.id);
                        if let Some(old) = index.remove(&record.key) {
                            if old.segment == n {
                                segment.live.remove(&record.key);
                            } else if let Some(s) = segments.get_mut(&old.segment) {
                                s.live.remove(&record.key);
                            }
                            values.remove(&record.key);
                        }
                        if record.op == Op::Put {
                            index.insert(
                                record.key,
                                Location {
                                    segment: n,
                                    offset: offset as u64,
                                    len: len as u64,
                                    expires_ms: record.expires_ms,
                                },
                            );
                            segment.live.insert(record.key);
                            values.insert(record.key, (record.value.to_vec(), record.expires_ms));
                        }
                    }
                    at += len;
                    good_end = at;
                    continue;
                }
                if data[at..].iter().all(|&b| b == 0) {
                    // The preallocated, never written rest of the segment.
                    break;
                }
                let last = position + 1 == numbers.len();
                match record::next_record(&data, at + 1) {
                    Some(next) => {
                        opened.damage.push(Damage::Corrupt {
                            path: path.clone(),
                            offset: at as u64,
                            bytes: (next - at) as u64,
                        });
                        at = next;
                    }
                    None if last => {
                        // Zeroed rather than cut, so that the segment stays preallocated.
                        let end = data.iter().rposition(|&b| b != 0).map_or(at, |e| e + 1);
                        let file = directory::file_options()
                            .write(true)
                            .open(&path)
                            .map_err(io_error(&path, "open"))?;
                        file.write_all_at(&vec![0; end - good_end], good_end as u64)
                            .and_then(|()| file.sync_all())
                            .map_err(io_error(&path, "cut off the torn tail of"))?;
                        opened.damage.push(Damage::TornTail {
                            path: path.clone(),
                            offset: good_end as u64,
                            bytes: (end - good_end) as u64,
                        });
                        at = data.len();
                    }
                    None => {
                        opened.damage.push(Damage::Corrupt {
                            path: path.clone(),
                            offset: at as u64,
                            bytes: (data.len() - at) as u64,
                        });
                        at = data.len();
                    }
                }
            }
            segment.len = good_end as u64;
            segment.file_bytes = data.len() as u64;
            segments.insert(n, segment);
        }
        // Expired puts are not live.
        index.retain(|key, location| {
            let live = location.expires_ms == 0 || location.expires_ms > now_ms;
            if !live {
                if let Some(segment) = segments.get_mut(&location.segment) {
                    segment.live.remove(key);
                }
                values.remove(key);
            }
            live
        });
        let (active_no, active) = match numbers.last() {
            Some(&n) => {
                let path = segment_path(dir, n);
                let file = directory::file_options()
                    .write(true)
                    .read(true)
                    .open(&path)
                    .map_err(io_error(&path, "open"))?;
                (n, file)
            }
            None => {
                segments.insert(
                    0,
                    Segment {
                        file_bytes: segment_bytes,
                        ..Segment::default()
                    },
                );
                (0, create_segment(dir, 0, segment_bytes, None)?)
            }
        };
        let disk_bytes = segments.values().map(|s| s.file_bytes).sum::<u64>() + segment_bytes;
        let live_bytes = index.values().map(|l| l.len).sum();
        opened.live = values.into_iter().collect();
        let mut log = Log {
            dir: dir.to_path_buf(),
            segment_bytes,
            active,
            active_no,
            segments,
            index,
            disk_bytes,
            live_bytes,
            spare: start_spare(dir, segment_bytes),
            unsynced: true,
            sync_failed: false,
            damage: Vec::new(),
            faults,
        };
        log.reclaim(now_ms)?;
        opened.damage.append(&mut log.damage);
        Ok((log, opened))
    }

    /// Bytes of every segment on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.disk_bytes
    }

    /// Keys live now.
    pub fn live_keys(&self) -> usize {
        self.index.len()
    }

    fn active_len(&self) -> u64 {
        self.segments.get(&self.active_no).map_or(0, |s| s.len)
    }

    /// Writes the encoded `records` (whose keys, ops, expiries and lengths are `entries`, in
    /// order; a batch record's entry is its head, followed by its members' entries) at the end
    /// of the newest segment. On failure the segment is cut back to where it was.
    pub fn append(
        &mut self,
        bytes: &[u8],
        entries: &[(Key, Op, u64, u64)],
    ) -> Result<(), JournalError> {
        if self.active_len() >= self.segment_bytes {
            self.rotate()?;
        }
        let start = self.active_len();
        let injected = match &mut self.faults {
            Some(faults) => faults.before_append(entries),
            None => Ok(()),
        };
        if let Err(error) = injected.and_then(|()| self.active.write_all_at(bytes, start)) {
            // Leave no partial record behind for the next append to follow.
            let _ = self.active.set_len(start);
            return Err(io_error(&segment_path(&self.dir, self.active_no), "write")(
                error,
            ));
        }
        self.unsynced = true;
        let n = self.active_no;
        let mut offset = start;
        for &(key, op, expires_ms, len) in entries {
            if op == Op::Batch {
                // The head of a batch record: its members follow.
                offset += len;
                continue;
            }
            self.forget(&key);
            if op == Op::Put {
                self.index.insert(
                    key,
                    Location {
                        segment: n,
                        offset,
                        len,
                        expires_ms,
                    },
                );
                self.live_bytes += len;
                if let Some(segment) = self.segments.get_mut(&n) {
                    segment.live.insert(key);
                }
            }
            offset += len;
        }
        if let Some(segment) = self.segments.get_mut(&n) {
            segment.len = start + bytes.len() as u64;
            if segment.len > segment.file_bytes {
                self.disk_bytes += segment.len - segment.file_bytes;
                segment.file_bytes = segment.len;
            }
        }
        Ok(())
    }

    /// Removes `key` from the index and from its segment's live set.
    fn forget(&mut self, key: &Key) {
        if let Some(old) = self.index.remove(key) {
            self.live_bytes -= old.len;
            if let Some(segment) = self.segments.get_mut(&old.segment) {
                segment.live.remove(key);
            }
        }
    }

    /// Makes what was appended durable. A failure is remembered: no segment is deleted after
    /// it.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        let path = segment_path(&self.dir, self.active_no);
        let injected = match &self.faults {
            Some(faults) => faults.before_sync(),
            None => Ok(()),
        };
        match injected.and_then(|()| self.active.sync_data()) {
            Ok(()) => {
                self.unsynced = false;
                if let Some(faults) = &self.faults {
                    faults.synced(&path, self.active_len());
                }
                Ok(())
            }
            Err(cause) => {
                if !self.sync_failed {
                    tracing::error!(
                        "journal: a sync failed; no segment is deleted (no disk space given back) until the router restarts"
                    );
                }
                self.sync_failed = true;
                Err(io_error(&path, "sync")(cause))
            }
        }
    }

    /// Whether segments may be deleted now: nothing appended is unsynced (synced now if need
    /// be) and no sync has failed.
    fn ready_to_delete(&mut self) -> Result<bool, JournalError> {
        if self.sync_failed {
            return Ok(false);
        }
        if self.unsynced {
            self.sync()?;
        }
        Ok(true)
    }

    /// The damage found since the last call (records dropped while copying forward).
    pub fn take_damage(&mut self) -> Vec<Damage> {
        std::mem::take(&mut self.damage)
    }

    /// Closes the newest segment (synced) and starts a new one.
    fn rotate(&mut self) -> Result<(), JournalError> {
        self.sync()?;
        let next = self.active_no + 1;
        self.active = create_segment(&self.dir, next, self.segment_bytes, self.spare.take())?;
        self.active_no = next;
        self.segments.insert(
            next,
            Segment {
                file_bytes: self.segment_bytes,
                ..Segment::default()
            },
        );
        // The new segment was the spare (counted already); the next spare is counted now.
        self.disk_bytes += self.segment_bytes;
        self.spare = start_spare(&self.dir, self.segment_bytes);
        Ok(())
    }

    /// Gives back disk space: drops expired keys of the oldest segment, deletes the oldest
    /// segments while they hold nothing live, and copies one pinned segment's live records
    /// forward when the log holds more than twice what is live. Returns whether anything was
    /// deleted.
    pub fn reclaim(&mut self, now_ms: u64) -> Result<bool, JournalError> {
        // A newest segment with nothing live is closed once it is worth a file.
        if self.active_len() >= (self.segment_bytes / 4).max(1)
            && self
                .segments
                .get(&self.active_no)
                .is_some_and(|s| s.live.is_empty())
        {
            self.rotate()?;
        }
        let mut deleted = false;
        let mut copied = false;
        while let Some((&n, segment)) = self.segments.first_key_value() {
            if n == self.active_no {
                break;
            }
            let expired: Vec<Key> = segment
                .live
                .iter()
                .filter(|key| {
                    self.index
                        .get(key)
                        .is_some_and(|l| l.expires_ms != 0 && l.expires_ms <= now_ms)
                })
                .copied()
                .collect();
            for key in expired {
                self.forget(&key);
            }
            let pinned = self.segments.get(&n).is_some_and(|s| !s.live.is_empty());
            if pinned {
                let wasteful = self.disk_bytes
                    > self.live_bytes.saturating_mul(2) + self.segment_bytes.saturating_mul(2);
                if copied || !wasteful {
                    break;
                }
            }
            // The records that free the segment (or its copies) must be on disk first.
            if !self.ready_to_delete()? {
                break;
            }
            if pinned {
                self.copy_forward(n)?;
                copied = true;
            }
            let path = segment_path(&self.dir, n);
            std::fs::remove_file(&path).map_err(io_error(&path, "delete"))?;
            if let Some(segment) = self.segments.remove(&n) {
                self.disk_bytes -= segment.file_bytes;
            }
            deleted = true;
        }
        if deleted {
            directory::sync(&self.dir)?;
        }
        Ok(deleted)
    }

    /// Appends the live records of segment `n` to the newest segment, synced. A record that no
    /// longer reads back is dropped (and reported in [`Log::take_damage`]).
    fn copy_forward(&mut self, n: u64) -> Result<(), JournalError> {
        let path = segment_path(&self.dir, n);
        let file = directory::file_options()
            .read(true)
            .open(&path)
            .map_err(io_error(&path, "open"))?;
        let keys: Vec<Key> = self
            .segments
            .get(&n)
            .map(|s| s.live.iter().copied().collect())
            .unwrap_or_default();
        let mut bytes = Vec::new();
        let mut entries = Vec::new();
        for key in keys {
            let Some(location) = self.index.get(&key).copied() else {
                continue;
            };
            let mut data = vec![0u8; location.len as usize];
            let whole = match file.read_exact_at(&mut data, location.offset) {
                Ok(()) => {
                    // Copied alone, a batch's member is a record of its own.
                    record::member_to_record(&mut data);
                    record::read_at(&data, 0).is_some_and(|(record, _)| record.key == key)
                }
                Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => false,
                Err(error) => return Err(io_error(&path, "read")(error)),
            };
            if !whole {
                // The record was whole when written: the disk changed it since. Kept, it would
                // pin the segment for good.
                self.damage.push(Damage::Changed {
                    path: path.clone(),
                    offset: location.offset,
                    bytes: location.len,
                });
                self.forget(&key);
                continue;
            }
            bytes.extend_from_slice(&data);
            entries.push((key, Op::Put, location.expires_ms, location.len));
        }
        if entries.is_empty() {
            return Ok(());
        }
        self.append(&bytes, &entries)?;
        self.sync()
    }

    /// Encodes `record` into `out` and returns its index entry.
    pub fn encode(record: &Record<'_>, out: &mut Vec<u8>) -> (Key, Op, u64, u64) {
        record.encode(out);
        (
            record.key,
            record.op,
            record.expires_ms,
            record.encoded_len() as u64,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(log: &mut Log, id: u64, value: &[u8], expires_ms: u64) {
        let mut bytes = Vec::new();
        let entry = Log::encode(
            &Record {
                op: Op::Put,
                key: Key { space: 1, id },
                expires_ms,
                value,
            },
            &mut bytes,
        );
        log.append(&bytes, &[entry]).expect("append");
    }

    fn delete(log: &mut Log, id: u64) {
        let mut bytes = Vec::new();
        let entry = Log::encode(
            &Record {
                op: Op::Delete,
                key: Key { space: 1, id },
                expires_ms: 0,
                value: &[],
            },
            &mut bytes,
        );
        log.append(&bytes, &[entry]).expect("append");
    }

    fn ids(opened: &Opened) -> Vec<u64> {
        opened.live.keys().map(|k| k.id).collect()
    }

    #[test]
    fn live_keys_survive_a_reopen_and_deleted_or_expired_ones_do_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, opened) = Log::open(dir.path(), 1 << 20, 1000, None).expect("open");
        assert!(opened.live.is_empty());
        put(&mut log, 1, b"one", 0);
        put(&mut log, 2, b"two", 0);
        put(&mut log, 3, b"three", 1500);
        put(&mut log, 1, b"one again", 0);
        delete(&mut log, 2);
        drop(log);
        let (_, opened) = Log::open(dir.path(), 1 << 20, 1000, None).expect("reopen");
        assert_eq!(ids(&opened), [1, 3]);
        assert_eq!(opened.live[&Key { space: 1, id: 1 }].0, b"one again");
        assert_eq!(opened.max_id, 3);
        let (_, later) = Log::open(dir.path(), 1 << 20, 2000, None).expect("reopen later");
        assert_eq!(ids(&later), [1], "key 3 expired at 1500");
    }

    #[test]
    fn disk_use_follows_what_is_held_even_when_one_key_stays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let segment = 64 * 1024;
        let (mut log, _) = Log::open(dir.path(), segment, 0, None).expect("open");
        put(&mut log, 0, b"held for a long time", 0);
        let value = vec![7u8; 1000];
        for id in 1..2000 {
            put(&mut log, id, &value, 0);
            delete(&mut log, id);
            log.reclaim(0).expect("reclaim");
        }
        // 2 MB passed through; one small record is held.
        // The newest segment, the spare being prepared, and at most two being given back.
        assert!(
            log.disk_bytes() <= 4 * segment,
            "{} bytes on disk",
            log.disk_bytes()
        );
        let on_disk: u64 = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|entry| entry.expect("entry").metadata().expect("stat").len())
            .sum();
        assert!(on_disk <= 4 * segment, "{on_disk} bytes in the directory");
        drop(log);
        let (_, opened) = Log::open(dir.path(), segment, 0, None).expect("reopen");
        assert_eq!(ids(&opened), [0]);
        assert_eq!(
            opened.live[&Key { space: 1, id: 0 }].0,
            b"held for a long time"
        );
    }

    /// A held member of an all-or-nothing batch is copied forward (as a record of its own)
    /// when its segment is given back, and reads back after a reopen.
    #[test]
    fn a_held_member_of_a_batch_is_copied_forward() {
        let dir = tempfile::tempdir().expect("tempdir");
        let segment = 64 * 1024;
        let (mut log, _) = Log::open(dir.path(), segment, 0, None).expect("open");
        let mut members = Vec::new();
        let mut entries = Vec::new();
        for (id, value) in [(0, &b"held for a long time"[..]), (1, &b"let go"[..])] {
            entries.push(Log::encode(
                &Record {
                    op: Op::Put,
                    key: Key { space: 1, id },
                    expires_ms: 0,
                    value,
                },
                &mut members,
            ));
        }
        let mut bytes = Vec::new();
        let head = record::encode_batch(&members, &mut bytes);
        entries.insert(0, (record::BATCH_KEY, Op::Batch, 0, head as u64));
        log.append(&bytes, &entries).expect("append");
        delete(&mut log, 1);
        let value = vec![7u8; 1000];
        for id in 2..2000 {
            put(&mut log, id, &value, 0);
            delete(&mut log, id);
            log.reclaim(0).expect("reclaim");
        }
        assert!(
            !segment_path(dir.path(), 0).exists(),
            "the batch's segment was given back"
        );
        assert!(log.take_damage().is_empty());
        drop(log);
        let (_, opened) = Log::open(dir.path(), segment, 0, None).expect("reopen");
        assert_eq!(ids(&opened), [0]);
        assert_eq!(
            opened.live[&Key { space: 1, id: 0 }].0,
            b"held for a long time"
        );
        assert!(opened.damage.is_empty(), "{:?}", opened.damage);
    }

    #[test]
    fn a_torn_tail_is_truncated_and_damage_in_the_middle_is_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = Log::open(dir.path(), 1 << 20, 0, None).expect("open");
        for id in 1..=10 {
            put(&mut log, id, &[id as u8; 100], 0);
        }
        drop(log);
        let path = segment_path(dir.path(), 0);
        let mut data = std::fs::read(&path).expect("read");
        assert_eq!(data.len(), 1 << 20, "preallocated");
        let end = data.iter().rposition(|&b| b != 0).expect("records") + 1;
        let record = end / 10;
        // Garbage inside record 3, and record 10 cut in half (what follows it is still zeros).
        data[2 * record + 40..2 * record + 60].fill(0xAB);
        data[end - record / 2..end].fill(0);
        std::fs::write(&path, &data).expect("write");
        let (_, opened) = Log::open(dir.path(), 1 << 20, 0, None).expect("reopen");
        assert_eq!(ids(&opened), [1, 2, 4, 5, 6, 7, 8, 9]);
        assert_eq!(opened.damage.len(), 2, "{:?}", opened.damage);
        assert!(
            matches!(opened.damage[0], Damage::Corrupt { offset, .. } if offset == 2 * record as u64)
        );
        assert!(
            matches!(opened.damage[1], Damage::TornTail { offset, .. } if offset == 9 * record as u64)
        );
        let after = std::fs::read(&path).expect("read");
        assert_eq!(after.len(), 1 << 20, "still preallocated");
        assert!(
            after[9 * record..].iter().all(|&b| b == 0),
            "the torn record was cut off"
        );
        let (_, again) = Log::open(dir.path(), 1 << 20, 0, None).expect("third open");
        assert_eq!(ids(&again), [1, 2, 4, 5, 6, 7, 8, 9]);
        assert_eq!(again.damage.len(), 1, "only the skipped region is left");
    }
}
