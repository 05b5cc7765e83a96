//! A plugin module file, read with bounds and compiled under a deadline: what `serve`, `check`,
//! `plugin run` and `plugin inspect` all go through, so that no module file can hang or exhaust
//! the router.
//!
//! - **Regular files only.** The path is looked at first and opened only if it is a regular
//!   file; it is opened without blocking (`O_NONBLOCK`, so a FIFO swapped in meanwhile does not
//!   wait for a writer) and the opened file is checked again. Symlinks are followed, as users
//!   link modules from where they are built: a link to a regular file is that file, a link to
//!   `/dev/zero` or a FIFO is refused like the device or FIFO itself.
//! - **Bounded size.** A file over `[plugins] max_module_bytes` is refused before it is read,
//!   and at most that many bytes (plus one, to notice a file that grew) are ever read.
//! - **WebAssembly only.** Bytes that do not start with the WebAssembly magic number are refused
//!   before the parser sees them, and no error quotes the file's bytes.
//! - **Compile deadline.** Compiling is synchronous CPU work: it runs on a thread of its own,
//!   and loading fails once `[plugins] compile_timeout` has passed. wasmtime cannot stop a
//!   compile part way, so a compile that ran out finishes on its thread in the background and
//!   its result is dropped; it holds no lock and no runtime thread, and ends with the process.

use std::io::Read as _;
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::{Mode, OFlags};
use wasmtime::component::Component;

use super::engine::{EngineError, PluginEngine};
use crate::config::PluginsConfig;

/// The first four bytes of every WebAssembly binary, module or component.
const WASM_MAGIC: &[u8; 4] = b"\0asm";

/// Why a module file could not be loaded. Messages name the file, never quote its contents.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// The file could not be looked at, opened or read.
    #[error("cannot read plugin module {path}: {source}")]
    Read {
        /// The module's path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The path is a FIFO, device, socket or directory.
    #[error("plugin module {path} is {kind}, not a regular file")]
    NotAFile {
        /// The module's path.
        path: PathBuf,
        /// What it is instead, e.g. "a FIFO".
        kind: &'static str,
    },
    /// The file is over `max_module_bytes`.
    #[error("plugin module {path} is larger than max_module_bytes ({max})")]
    TooLarge {
        /// The module's path.
        path: PathBuf,
        /// The limit, for the message (e.g. "64 MiB").
        max: String,
    },
    /// The file is not WebAssembly.
    #[error("plugin module {path} is not WebAssembly (it does not start with \"\\0asm\")")]
    NotWasm {
        /// The module's path.
        path: PathBuf,
    },
    /// The engine could not start, or could not compile the component.
    #[error("cannot compile plugin module {path}: {source}")]
    Compile {
        /// The module's path.
        path: PathBuf,
        /// What the engine said.
        source: EngineError,
    },
    /// Compiling took longer than `compile_timeout`.
    #[error(
        "compiling plugin module {path} took longer than compile_timeout ({}); raise \
         [plugins] compile_timeout for a module this large",
        humantime::format_duration(*.timeout)
    )]
    Timeout {
        /// The module's path.
        path: PathBuf,
        /// The deadline it missed.
        timeout: Duration,
    },
}

/// What a module may be: at most `max_bytes` long, compiled within `compile_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleBounds {
    /// Largest module file accepted.
    pub max_bytes: u64,
    /// Longest a compile may take.
    pub compile_timeout: Duration,
}

impl From<&PluginsConfig> for ModuleBounds {
    fn from(config: &PluginsConfig) -> Self {
        Self {
            max_bytes: config.max_module_bytes.0,
            compile_timeout: config.compile_timeout.0,
        }
    }
}

impl Default for ModuleBounds {
    /// The `[plugins]` defaults (for `plugin run` and `plugin inspect`, which have no config).
    fn default() -> Self {
        Self::from(&PluginsConfig::default())
    }
}

/// Reads the module file at `path`: a regular file (symlinks followed) of at most `max_bytes`
/// that starts as WebAssembly does. Never blocks on a FIFO or reads past `max_bytes + 1`.
pub fn read_module(path: &Path, max_bytes: u64) -> Result<Vec<u8>, ModuleError> {
    let read_error = |source| ModuleError::Read {
        path: path.to_path_buf(),
        source,
    };
    let too_large = || ModuleError::TooLarge {
        path: path.to_path_buf(),
        max: bytesize::ByteSize(max_bytes).display().iec().to_string(),
    };
    // Looked at before it is opened: opening a device can have effects of its own.
    let metadata = std::fs::metadata(path).map_err(read_error)?;
    regular_file(path, &metadata)?;
    if metadata.len() > max_bytes {
        return Err(too_large());
    }
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let file = std::fs::File::from(
        rustix::fs::open(path, flags, Mode::empty())
            .map_err(|errno| read_error(std::io::Error::from(errno)))?,
    );
    // The path may have been replaced between the look and the open.
    regular_file(path, &file.metadata().map_err(read_error)?)?;
    let mut wasm = Vec::new();
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut wasm)
        .map_err(read_error)?;
    if u64::try_from(wasm.len()).unwrap_or(u64::MAX) > max_bytes {
        return Err(too_large());
    }
    if !wasm.starts_with(WASM_MAGIC) {
        return Err(ModuleError::NotWasm {
            path: path.to_path_buf(),
        });
    }
    Ok(wasm)
}

/// Fails unless `metadata` is a regular file's, naming what it is instead.
fn regular_file(path: &Path, metadata: &std::fs::Metadata) -> Result<(), ModuleError> {
    let kind = metadata.file_type();
    if kind.is_file() {
        return Ok(());
    }
    let kind = if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_dir() {
        "a directory"
    } else {
        "not a file"
    };
    Err(ModuleError::NotAFile {
        path: path.to_path_buf(),
        kind,
    })
}

/// Compiles `wasm` (the module at `path`) on a thread of its own, waiting at most `timeout`.
pub async fn compile_within(
    engine: &'static PluginEngine,
    wasm: Vec<u8>,
    path: &Path,
    timeout: Duration,
) -> Result<Component, ModuleError> {
    let (send, receive) = tokio::sync::oneshot::channel();
    spawn_compile(engine, wasm, path, move |result| {
        // The receiver is gone when the deadline passed: the result is dropped.
        let _ = send.send(result);
    })?;
    match tokio::time::timeout(timeout, receive).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(compile_thread_died(path)),
        Err(_) => Err(ModuleError::Timeout {
            path: path.to_path_buf(),
            timeout,
        }),
    }
}

/// [`compile_within`] for synchronous callers: blocks the calling thread until the compile
/// ends or `timeout` passes.
pub fn compile_within_blocking(
    engine: &'static PluginEngine,
    wasm: Vec<u8>,
    path: &Path,
    timeout: Duration,
) -> Result<Component, ModuleError> {
    let (send, receive) = std::sync::mpsc::sync_channel(1);
    spawn_compile(engine, wasm, path, move |result| {
        let _ = send.send(result);
    })?;
    match receive.recv_timeout(timeout) {
        Ok(result) => result,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(ModuleError::Timeout {
            path: path.to_path_buf(),
            timeout,
        }),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(compile_thread_died(path)),
    }
}

/// Starts compiling `wasm` on a detached thread that hands its result to `done`.
fn spawn_compile(
    engine: &'static PluginEngine,
    wasm: Vec<u8>,
    path: &Path,
    done: impl FnOnce(Result<Component, ModuleError>) + Send + 'static,
) -> Result<(), ModuleError> {
    let owned = path.to_path_buf();
    std::thread::Builder::new()
        .name("plugin-compile".into())
        .spawn(move || {
            let result = engine
                .compile(&wasm)
                .map_err(|source| ModuleError::Compile {
                    path: owned,
                    source,
                });
            done(result);
        })
        .map(drop)
        .map_err(|source| ModuleError::Compile {
            path: path.to_path_buf(),
            source: EngineError(format!("cannot start a compile thread: {source}")),
        })
}

/// The error for a compile thread that ended without an answer (it panicked).
fn compile_thread_died(path: &Path) -> ModuleError {
    ModuleError::Compile {
        path: path.to_path_buf(),
        source: EngineError("the compile thread panicked".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_regular_wasm_file_is_read_whole_and_anything_else_refused() {
        let temp = tempfile::tempdir().expect("temp dir");
        let good = temp.path().join("good.wasm");
        let bytes = b"\0asm\x0d\0\x01\0rest".to_vec();
        std::fs::write(&good, &bytes).expect("write");
        assert_eq!(read_module(&good, 1024).expect("read"), bytes);

        // Exactly at the cap is fine, one byte over is not.
        let cap = u64::try_from(bytes.len()).expect("small");
        assert!(read_module(&good, cap).is_ok());
        let error = read_module(&good, cap - 1).expect_err("too large");
        assert!(matches!(error, ModuleError::TooLarge { .. }), "{error}");

        // A symlink to it is it.
        let link = temp.path().join("link.wasm");
        std::os::unix::fs::symlink(&good, &link).expect("symlink");
        assert_eq!(read_module(&link, 1024).expect("read via link"), bytes);

        let error = read_module(temp.path(), 1024).expect_err("a directory");
        assert_eq!(
            error.to_string(),
            format!(
                "plugin module {} is a directory, not a regular file",
                temp.path().display()
            )
        );

        let error = read_module(Path::new("/dev/null"), 1024).expect_err("a device");
        assert!(error.to_string().contains("a character device"), "{error}");
    }

    #[test]
    fn a_text_file_is_refused_without_quoting_it() {
        let temp = tempfile::tempdir().expect("temp dir");
        let secret = temp.path().join("shadow");
        std::fs::write(&secret, "root:$6$hash-that-must-not-leak:19000::::::\n").expect("write");
        let error = read_module(&secret, 1024).expect_err("not wasm");
        let message = error.to_string();
        assert!(matches!(error, ModuleError::NotWasm { .. }), "{message}");
        assert!(!message.contains("root"), "{message}");
        assert!(!message.contains("hash-that"), "{message}");
    }
}
