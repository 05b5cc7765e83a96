//! `serve --watch`: reloads when the config file or one of its plugin modules changes; and, for
//! every router with a TLS listener, [`watch_certs`]: reads the certificates again when their
//! files change.
//!
//! The folders holding them are watched (`notify`), not the files, so that an editor's
//! write-then-rename is seen too. Changes are debounced: the reload runs once no change has
//! come for [`QUIET`], so a burst of writes gives one reload. A file caught half-written fails
//! to parse and is refused whole like any bad config; the write that completes it reloads
//! again. Certificates are read again on any change in their folders (a secret volume swaps a
//! symlink to a new folder, not the files), and served only if their bytes changed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Reloader;

/// How long the watched files must stay unchanged before a reload.
pub const QUIET: Duration = Duration::from_millis(200);

/// Why watching could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {path}: {source}")]
pub struct WatchError {
    /// The folder that could not be watched.
    pub path: PathBuf,
    /// Why.
    pub source: notify::Error,
}

/// A running watch; dropping it stops watching.
#[derive(Debug)]
pub struct Watch {
    task: JoinHandle<()>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts reloading `reloader`'s config whenever its file or a plugin module of the config
/// serving changes.
pub fn watch(reloader: Arc<Reloader>) -> Result<Watch, WatchError> {
    let (send, mut changes) = mpsc::unbounded_channel();
    let handler = move |event| {
        // The receiver is gone once the watch stopped.
        let _ = send.send(event);
    };
    let mut watcher = notify::recommended_watcher(handler).map_err(|source| WatchError {
        path: reloader.path().to_path_buf(),
        source,
    })?;
    let mut folders = HashSet::new();
    watch_folders(&mut watcher, &mut folders, &watched_files(&reloader))?;
    let task = tokio::spawn(async move {
        // The watcher lives as long as the task.
        let mut watcher = watcher;
        while let Some(event) = changes.recv().await {
            if !touches(&event, &watched_files(&reloader)) {
                continue;
            }
            // Debounce: wait until the files have been quiet for `QUIET`.
            loop {
                match tokio::time::timeout(QUIET, changes.recv()).await {
                    Ok(Some(_)) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            tracing::info!(file = %reloader.path().display(), "config or plugin module changed: reloading");
            if reloader.reload().await.is_ok() {
                // The new config may name modules in folders not watched yet.
                if let Err(error) =
                    watch_folders(&mut watcher, &mut folders, &watched_files(&reloader))
                {
                    tracing::warn!(%error, "a plugin module's folder cannot be watched");
                }
            }
        }
    });
    Ok(Watch { task })
}

/// Starts reading `reloader`'s certificates again ([`Reloader::reread_certs`]) whenever a file
/// in the folders holding them changes, and after each reload (which may move them to another
/// folder); `None` when no listener has `tls`.
pub fn watch_certs(reloader: Arc<Reloader>) -> Result<Option<Watch>, WatchError> {
    if reloader.cert_files().is_empty() {
        return Ok(None);
    }
    let (send, mut changes) = mpsc::unbounded_channel();
    let on_change = send.clone();
    let handler = move |event: notify::Result<notify::Event>| {
        if event.as_ref().is_ok_and(|event| event.kind.is_access()) {
            return;
        }
        // The receiver is gone once the watch stopped.
        let _ = on_change.send(());
    };
    reloader.on_switch(move |_| {
        let _ = send.send(());
    });
    let mut watcher = notify::recommended_watcher(handler).map_err(|source| WatchError {
        path: reloader.path().to_path_buf(),
        source,
    })?;
    let mut folders = HashSet::new();
    watch_folders(&mut watcher, &mut folders, &reloader.cert_files())?;
    let task = tokio::spawn(async move {
        // The watcher lives as long as the task.
        let mut watcher = watcher;
        while changes.recv().await.is_some() {
            loop {
                match tokio::time::timeout(QUIET, changes.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            if let Err(error) = watch_folders(&mut watcher, &mut folders, &reloader.cert_files()) {
                tracing::warn!(%error, "a TLS certificate's folder cannot be watched");
            }
            reloader.reread_certs().await;
        }
    });
    Ok(Some(Watch { task }))
}

/// The config file and the plugin modules of the config serving.
fn watched_files(reloader: &Reloader) -> Vec<PathBuf> {
    let mut files = reloader.module_files();
    files.push(reloader.path().to_path_buf());
    files
}

/// Whether `event` is about one of `files` (compared by file name within the same folder).
fn touches(event: &notify::Result<notify::Event>, files: &[PathBuf]) -> bool {
    let Ok(event) = event else {
        // An error from the watcher: reload to be safe.
        return true;
    };
    if event.kind.is_access() {
        return false;
    }
    event
        .paths
        .iter()
        .any(|path| files.iter().any(|file| same_file(path, file)))
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b || (a.file_name() == b.file_name() && canonical_parent(a) == canonical_parent(b))
}

fn canonical_parent(path: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(parent_of(path)).ok()
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Watches the folder of each of `files` not in `folders` yet.
fn watch_folders(
    watcher: &mut RecommendedWatcher,
    folders: &mut HashSet<PathBuf>,
    files: &[PathBuf],
) -> Result<(), WatchError> {
    for file in files {
        let folder = parent_of(file).to_path_buf();
        if folders.contains(&folder) {
            continue;
        }
        watcher
            .watch(&folder, RecursiveMode::NonRecursive)
            .map_err(|source| WatchError {
                path: folder.clone(),
                source,
            })?;
        folders.insert(folder);
    }
    Ok(())
}
