//! The journal's directory: created with its creation made durable (the directory above each
//! directory created is synced, so that a fresh journal does not vanish in a power cut with
//! the events it was given).

use std::fs::File;
use std::path::{Path, PathBuf};

use super::JournalError;

fn io_error(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> JournalError {
    let path = path.to_path_buf();
    move |cause| JournalError::Io {
        path,
        action,
        cause,
    }
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

/// Creates `dir` and any missing parents, and syncs the directory above each one created.
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
    std::fs::create_dir_all(dir).map_err(io_error(dir, "create"))?;
    for created in missing.iter().rev() {
        sync(parent(created))?;
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
}
