//! The journal's directory and how its files are opened.
//!
//! The directory is created private (0700), and its creation made durable (the directory above
//! each directory created is synced, so that a fresh journal does not vanish in a power cut
//! with the events it was given). A directory that group or others may write to is refused:
//! whoever can write there can change what the router delivers. Files are created 0600 and
//! never opened through a symbolic link (`O_NOFOLLOW`).

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::JournalError;

/// Turns an I/O error on `path` while doing `action` into a [`JournalError::Io`].
pub(super) fn io_error(
    path: &Path,
    action: &'static str,
) -> impl FnOnce(std::io::Error) -> JournalError {
    let path = path.to_path_buf();
    move |cause| JournalError::Io {
        path,
        action,
        cause,
    }
}

/// The mode of a directory the journal creates.
const DIRECTORY_MODE: u32 = 0o700;
/// The mode of a file the journal creates.
const FILE_MODE: u32 = 0o600;

/// Options to open a journal file with: created 0600, never through a symbolic link.
pub(super) fn file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options
        .mode(FILE_MODE)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    options
}

/// The whole of a journal file (opened as [`file_options`] says).
pub(super) fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    file_options()
        .read(true)
        .open(path)?
        .read_to_end(&mut data)?;
    Ok(data)
}

/// Makes the directory's entries (new or deleted files) durable.
pub(super) fn sync(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir, "sync the directory"))
}

/// The directory holding `path` (`.` for a bare name).
fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Creates `dir` and any missing parents (0700), syncs the directory above each one created,
/// and refuses `dir` if group or others may write to it.
pub(super) fn create(dir: &Path) -> Result<(), JournalError> {
    let mut missing: Vec<PathBuf> = Vec::new();
    let mut at = dir;
    while std::fs::symlink_metadata(at).is_err() {
        missing.push(at.to_path_buf());
        match at.parent() {
            Some(up) if !up.as_os_str().is_empty() => at = up,
            _ => break,
        }
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIRECTORY_MODE)
        .create(dir)
        .map_err(io_error(dir, "create"))?;
    for created in missing.iter().rev() {
        sync(parent(created))?;
    }
    let mode = std::fs::metadata(dir)
        .map_err(io_error(dir, "inspect"))?
        .permissions()
        .mode();
    if mode & 0o022 != 0 {
        return Err(JournalError::Writable {
            path: dir.to_path_buf(),
            mode: mode & 0o7777,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_parents_are_created_and_an_existing_directory_is_kept() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("a/b/data");
        create(&dir).expect("create");
        assert!(dir.is_dir());
        std::fs::write(dir.join("kept"), "x").expect("write");
        create(&dir).expect("again");
        assert!(dir.join("kept").exists());
    }

    #[test]
    fn a_directory_others_may_write_is_refused_and_links_are_not_followed() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("data");
        create(&dir).expect("create");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o770)).expect("chmod");
        let error = create(&dir).expect_err("group-writable");
        assert!(
            matches!(error, JournalError::Writable { mode: 0o770, .. }),
            "{error}"
        );
        std::os::unix::fs::symlink(root.path().join("elsewhere"), root.path().join("link"))
            .expect("symlink");
        let opened = file_options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.path().join("link"));
        assert!(opened.is_err(), "opened through a link");
        assert!(!root.path().join("elsewhere").exists());
    }
}
