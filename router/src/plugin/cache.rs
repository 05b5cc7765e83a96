//! The directory where compiled plugin code is cached (`[plugins] cache`).
//!
//! wasmtime loads what it finds there as native code, without a check of its own: anyone who
//! can write to the directory runs code in the router. So the router uses a directory of its
//! own (`$XDG_CACHE_HOME/webhook-router`, else `$HOME/.cache/webhook-router`, not wasmtime's
//! shared `~/.cache/wasmtime`), creates it with mode 0700, and uses an existing one only if it
//! is a directory owned by the router's user that neither group nor others can write to. A
//! directory that fails this is not used: the cache is turned off with a warning and every
//! module is compiled at load (slower, never unsafe). A path the router cannot place (no
//! `$HOME`) turns the cache off as well.
//!
//! Only the directory itself is checked: what is inside it can only have been written by its
//! owner, since no one else may enter a 0700 directory (nor write to a directory without
//! group and other write bits).

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::CompileCache;

/// Why a cache directory is not used.
#[derive(Debug, thiserror::Error)]
pub enum CacheDirError {
    /// It could not be created or looked at.
    #[error("cannot create or open {dir}: {source}")]
    Io {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// It is there, but is not a directory.
    #[error("{dir} is not a directory")]
    NotDirectory {
        /// The path.
        dir: PathBuf,
    },
    /// It belongs to another user, who could put code in it.
    #[error("{dir} belongs to uid {owner}, not to the router's user (uid {user})")]
    NotOwned {
        /// The directory.
        dir: PathBuf,
        /// Its owner.
        owner: u32,
        /// The router's effective uid.
        user: u32,
    },
    /// Group or others may write to it.
    #[error("{dir} is writable by group or others (mode {mode:o}); make it 0700")]
    Writable {
        /// The directory.
        dir: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// The directory to cache compiled code in for `setting`, made ready, or `None` (cache off).
/// A directory that cannot be used safely is logged as a warning.
pub fn directory(setting: &CompileCache) -> Option<PathBuf> {
    let dir = match setting {
        CompileCache::Off => return None,
        CompileCache::Directory(dir) => dir.clone(),
        CompileCache::Default => match default_directory() {
            Some(dir) => dir,
            None => {
                tracing::warn!(
                    "plugin compile cache off: neither XDG_CACHE_HOME nor HOME is set \
                     (set [plugins] cache to a directory)"
                );
                return None;
            }
        },
    };
    match prepare(&dir) {
        Ok(dir) => Some(dir),
        Err(error) => {
            tracing::warn!("plugin compile cache off: {error}");
            None
        }
    }
}

/// `$XDG_CACHE_HOME/webhook-router`, else `$HOME/.cache/webhook-router` (absolute values only).
fn default_directory() -> Option<PathBuf> {
    let absolute = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|path| path.is_absolute())
    };
    absolute("XDG_CACHE_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".cache")))
        .map(|base| base.join("webhook-router"))
}

/// Creates `dir` (and missing parents) with mode 0700, or checks that the existing one is the
/// router's own and writable by it alone; returns its absolute path.
pub fn prepare(dir: &Path) -> Result<PathBuf, CacheDirError> {
    let io = |source| CacheDirError::Io {
        dir: dir.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    // Followed if it is a symlink: what counts is the directory wasmtime will write in.
    let metadata = std::fs::metadata(dir).map_err(io)?;
    if !metadata.is_dir() {
        return Err(CacheDirError::NotDirectory {
            dir: dir.to_path_buf(),
        });
    }
    let user = rustix::process::geteuid().as_raw();
    if metadata.uid() != user {
        return Err(CacheDirError::NotOwned {
            dir: dir.to_path_buf(),
            owner: metadata.uid(),
            user,
        });
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(CacheDirError::Writable {
            dir: dir.to_path_buf(),
            mode,
        });
    }
    std::fs::canonicalize(dir).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_directory_is_created_0700_with_its_parents() {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().join("a/b/cache");
        let prepared = prepare(&dir).expect("prepared");
        assert_eq!(prepared, std::fs::canonicalize(&dir).expect("canonical"));
        let mode = std::fs::metadata(&dir).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{mode:o}");
        // Prepared again, as at the next start: still accepted, still 0700.
        assert_eq!(prepare(&dir).expect("prepared again"), prepared);
    }

    #[test]
    fn a_directory_others_or_group_may_write_to_is_refused() {
        let temp = tempfile::tempdir().expect("temp dir");
        for mode in [0o777, 0o770, 0o702, 0o1777] {
            let dir = temp.path().join(format!("cache-{mode:o}"));
            std::fs::create_dir(&dir).expect("create");
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let error = prepare(&dir).expect_err("refused");
            assert!(
                matches!(error, CacheDirError::Writable { mode: m, .. } if m == mode),
                "{mode:o}: {error}"
            );
            assert!(error.to_string().contains("make it 0700"), "{error}");
            // And the setting that names it turns the cache off.
            assert_eq!(directory(&CompileCache::Directory(dir)), None);
        }
        // Readable by others but writable by the owner only: the owner's alone to fill.
        let readable = temp.path().join("cache-755");
        std::fs::create_dir(&readable).expect("create");
        std::fs::set_permissions(&readable, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert!(prepare(&readable).is_ok());
    }

    #[test]
    fn a_file_in_place_of_the_directory_is_refused() {
        let temp = tempfile::tempdir().expect("temp dir");
        let file = temp.path().join("cache");
        std::fs::write(&file, b"not a directory").expect("write");
        assert!(prepare(&file).is_err());
        assert_eq!(directory(&CompileCache::Directory(file)), None);
    }

    #[test]
    fn off_is_off() {
        assert_eq!(directory(&CompileCache::Off), None);
    }
}
