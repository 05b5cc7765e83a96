//! A fault-injection seam in the journal's write path, for crash tests: it fails an append or
//! the syncs on request and reports how far the newest segment is synced, so that a test can
//! put the disk in a window (a failed write, a power cut's lost page cache) and count what
//! survives.
//!
//! It is off unless the environment variable `WEBHOOK_ROUTER_JOURNAL_FAULTS` names a
//! directory when the journal opens (read once there). Off, it costs the write path one branch
//! per commit. In that directory:
//!
//! - `fail-append`, if present at open, holds `N` or `N SPACE`: the `N`-th append from the
//!   open (counting only appends holding a put in key space `SPACE`, if given) fails with
//!   `EIO` before writing anything. Once.
//! - `fail-sync`: while this file exists, every `fdatasync` of the journal fails with `EIO`.
//! - `synced` is written (atomically) by the journal after each successful sync:
//!   `<segment file name> <offset>`, the newest segment and the offset up to which it is on
//!   disk. A test zeroing that segment past the offset drops what a power cut would.

use std::io;
use std::path::{Path, PathBuf};

use super::record::{Key, Op};

/// The environment variable naming the fault directory.
pub const FAULTS_VAR: &str = "WEBHOOK_ROUTER_JOURNAL_FAULTS";

/// `EIO`, the error injected.
const EIO: i32 = 5;

/// The faults asked for (see the module header).
#[derive(Debug)]
pub(super) struct Faults {
    dir: PathBuf,
    /// Which append fails: its number (1-based) and the key space it must hold a put of.
    fail_append: Option<(u64, Option<u8>)>,
    /// Appends counted towards `fail_append`.
    counted: u64,
}

impl Faults {
    /// The faults `WEBHOOK_ROUTER_JOURNAL_FAULTS` asks for, if it is set.
    pub(super) fn from_env() -> Option<Faults> {
        let dir = PathBuf::from(std::env::var_os(FAULTS_VAR)?);
        let fail_append = std::fs::read_to_string(dir.join("fail-append"))
            .ok()
            .and_then(|text| {
                let mut words = text.split_whitespace();
                let n = words.next()?.parse().ok()?;
                let space = words.next().and_then(|s| s.parse().ok());
                Some((n, space))
            });
        tracing::warn!(dir = %dir.display(), ?fail_append, "journal: fault injection is on (tests only)");
        Some(Faults {
            dir,
            fail_append,
            counted: 0,
        })
    }

    /// Faults in `dir` that fail the `n`-th append holding a put in `space` (for unit tests,
    /// which cannot set the environment).
    #[cfg(test)]
    pub(super) fn failing_append(dir: &Path, n: u64, space: u8) -> Faults {
        Faults {
            dir: dir.to_path_buf(),
            fail_append: Some((n, Some(space))),
            counted: 0,
        }
    }

    /// Called before an append of records `entries`: the injected failure, if this is the
    /// append asked to fail.
    pub(super) fn before_append(&mut self, entries: &[(Key, Op, u64, u64)]) -> io::Result<()> {
        let Some((n, space)) = self.fail_append else {
            return Ok(());
        };
        let counts = space.is_none_or(|space| {
            entries
                .iter()
                .any(|(key, op, _, _)| key.space == space && *op == Op::Put)
        });
        if counts {
            self.counted += 1;
            if self.counted == n {
                self.fail_append = None;
                return Err(io::Error::from_raw_os_error(EIO));
            }
        }
        Ok(())
    }

    /// Called before a sync: fails while `fail-sync` exists.
    pub(super) fn before_sync(&self) -> io::Result<()> {
        if self.dir.join("fail-sync").exists() {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        Ok(())
    }

    /// Records that `segment` is on disk up to `offset`.
    pub(super) fn synced(&self, segment: &Path, offset: u64) {
        let name = segment.file_name().map(Path::new).unwrap_or(segment);
        let temporary = self.dir.join("synced.tmp");
        let written = std::fs::write(&temporary, format!("{} {offset}\n", name.display()))
            .and_then(|()| std::fs::rename(&temporary, self.dir.join("synced")));
        if let Err(error) = written {
            tracing::warn!(%error, "journal: fault injection could not record the synced offset");
        }
    }
}
