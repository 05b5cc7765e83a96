//! What a plugin module asks for and offers (`webhook-router plugin inspect MODULE`): each import
//! with what the router does with it, and each export.
//!
//! An import is
//! - **granted** when the router gives it for real: the contract (`log`, its types), the wall
//!   and monotonic clocks, random, stdout and stderr (captured into the log) and the `wasi:io`
//!   streams and polls they need;
//! - **linked, denied** when the router links it so the module instantiates, but with nothing
//!   behind it: the rest of `wasi:cli` (an empty environment and stdin, no terminal),
//!   `wasi:filesystem` (no directories, so every open fails inside the guest), and
//!   `wasi:sockets` and `wasi:http`, whose every way in (creating a socket, looking up a name,
//!   sending a request) fails the call with `denied`, naming the function (see
//!   [`super::denied`]);
//! - **not available** otherwise (WASI 0.3, anything else): the module loads, and a call that
//!   uses one fails (`error`), naming the function.

use std::fmt::Write as _;
use std::path::Path;

use super::engine::{EngineError, PluginEngine};
use super::module::{ModuleBounds, ModuleError, compile_within_blocking, read_module};
use crate::config::CompileCache;

/// What the router does with one import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportStatus {
    /// Given for real.
    Granted,
    /// Linked so the module instantiates, with nothing behind it.
    LinkedDenied,
    /// Not provided: a call that uses it fails, naming it.
    NotAvailable,
}

impl ImportStatus {
    /// How `plugin inspect` prints it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Granted => "granted",
            Self::LinkedDenied => "linked, denied",
            Self::NotAvailable => "not available",
        }
    }
}

/// A module's imports (each with its status) and exports, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// Imports, in the module's order.
    pub imports: Vec<(String, ImportStatus)>,
    /// Exports, in the module's order.
    pub exports: Vec<String>,
}

/// Why a module could not be inspected.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The file could not be read within the `[plugins]` default bounds, or not compiled.
    #[error(transparent)]
    Module(#[from] ModuleError),
    /// The engine could not start.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Compiles `module` (read and compiled within the `[plugins]` defaults) and lists its imports
/// and exports.
pub fn inspect(module: &Path) -> Result<Inspection, InspectError> {
    let bounds = ModuleBounds::default();
    let wasm = read_module(module, bounds.max_bytes)?;
    let engine = PluginEngine::shared(&CompileCache::Default)?;
    let component = compile_within_blocking(engine, wasm, module, bounds.compile_timeout)?;
    let ty = component.component_type();
    let imports = ty
        .imports(engine.engine())
        .map(|(name, _)| (name.to_owned(), import_status(name)))
        .collect();
    let exports = ty
        .exports(engine.engine())
        .map(|(name, _)| name.to_owned())
        .collect();
    Ok(Inspection { imports, exports })
}

/// What the router does with the import named `name` (e.g. `wasi:cli/stdout@0.2.3`).
pub fn import_status(name: &str) -> ImportStatus {
    let (interface, version) = name.split_once('@').unwrap_or((name, ""));
    if !interface.starts_with("wasi:") {
        return if name == "log" || interface.starts_with("webhook-router:plugin/") {
            ImportStatus::Granted
        } else {
            ImportStatus::NotAvailable
        };
    }
    // The router links WASI 0.2 (any 0.2.x, as wasmtime does); 0.3 is not linked.
    if !version.starts_with("0.2.") {
        return ImportStatus::NotAvailable;
    }
    const GRANTED: [&str; 9] = [
        "wasi:clocks/monotonic-clock",
        "wasi:clocks/wall-clock",
        "wasi:random/random",
        "wasi:random/insecure",
        "wasi:random/insecure-seed",
        "wasi:cli/stdout",
        "wasi:cli/stderr",
        "wasi:io/streams",
        "wasi:io/poll",
    ];
    const LINKED_PACKAGES: [&str; 7] = [
        "wasi:cli/",
        "wasi:clocks/",
        "wasi:filesystem/",
        "wasi:http/",
        "wasi:io/",
        "wasi:random/",
        "wasi:sockets/",
    ];
    if GRANTED.contains(&interface) || interface == "wasi:io/error" {
        ImportStatus::Granted
    } else if LINKED_PACKAGES.iter().any(|p| interface.starts_with(p)) {
        ImportStatus::LinkedDenied
    } else {
        ImportStatus::NotAvailable
    }
}

impl Inspection {
    /// The listing `plugin inspect` prints.
    pub fn render(&self) -> String {
        let width = self
            .imports
            .iter()
            .map(|(name, _)| name.len())
            .max()
            .unwrap_or(0);
        let mut out = String::from("imports:\n");
        for (name, status) in &self.imports {
            let _ = writeln!(out, "  {name:width$}  {}", status.label());
        }
        out.push_str("exports:\n");
        for name in &self.exports {
            let _ = writeln!(out, "  {name}");
        }
        out
    }

    /// Whether every import is at least linked by the router (none fails a call just for being
    /// called).
    pub fn fully_linked(&self) -> bool {
        self.imports
            .iter()
            .all(|(_, status)| *status != ImportStatus::NotAvailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_are_granted_denied_or_not_available() {
        for (name, status) in [
            ("log", ImportStatus::Granted),
            ("webhook-router:plugin/types@0.1.0", ImportStatus::Granted),
            ("wasi:cli/stdout@0.2.3", ImportStatus::Granted),
            ("wasi:clocks/monotonic-clock@0.2.0", ImportStatus::Granted),
            ("wasi:io/error@0.2.6", ImportStatus::Granted),
            ("wasi:random/random@0.2.3", ImportStatus::Granted),
            ("wasi:cli/environment@0.2.3", ImportStatus::LinkedDenied),
            ("wasi:filesystem/preopens@0.2.0", ImportStatus::LinkedDenied),
            ("wasi:sockets/tcp@0.2.0", ImportStatus::LinkedDenied),
            (
                "wasi:http/outgoing-handler@0.2.0",
                ImportStatus::LinkedDenied,
            ),
            ("wasi:http/types@0.3.0", ImportStatus::NotAvailable),
            ("wasi:cli/stdout@0.3.0", ImportStatus::NotAvailable),
            ("acme:thing/api", ImportStatus::NotAvailable),
        ] {
            assert_eq!(import_status(name), status, "{name}");
        }
    }

    #[test]
    fn the_listing_aligns_statuses_and_lists_exports() {
        let inspection = Inspection {
            imports: vec![
                ("log".to_owned(), ImportStatus::Granted),
                (
                    "acme:thing/api@1.0.0".to_owned(),
                    ImportStatus::NotAvailable,
                ),
            ],
            exports: vec!["configure".to_owned(), "handle".to_owned()],
        };
        assert_eq!(
            inspection.render(),
            "imports:\n  log                   granted\n  acme:thing/api@1.0.0  not available\nexports:\n  configure\n  handle\n"
        );
        assert!(!inspection.fully_linked());
    }
}
