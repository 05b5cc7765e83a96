//! The TLS keys: `[server]`'s `tls` and `admin_tls` (`{ cert, key }`: the certificate a
//! listener serves) and a destination's `ca`, `client_cert` and `client_key`. Relative paths
//! are taken from the config file's folder. The files are read when the config is loaded, so
//! that `check`, the start and a reload refuse one that cannot be used, naming it.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::DestinationConfig;
use super::error::ErrorSink;
use crate::tls::{CertPair, load_ca};

/// `tls = { cert = "…", key = "…" }`: the PEM files of a listener's certificate.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The certificate chain: the listener's own certificate first, then its intermediates.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Makes `path` relative to `base` (the config file's folder) if it is relative.
fn resolve(path: &mut PathBuf, base: &Path) {
    if path.is_relative() {
        *path = base.join(&*path);
    }
}

/// Resolves the paths of a listener's `tls` (at `key`, written at `span`) and checks that they
/// hold a certificate and its key.
pub(super) fn check_listener(
    files: Option<&mut TlsFiles>,
    base: &Path,
    (key, span): (&str, Option<Range<usize>>),
    sink: &mut ErrorSink<'_>,
) {
    let Some(files) = files else { return };
    resolve(&mut files.cert, base);
    resolve(&mut files.key, base);
    if let Err(error) = CertPair::load(&files.cert, &files.key) {
        sink.push(span, key, error.to_string());
    }
}

/// Resolves the paths of a destination's `ca`, `client_cert` and `client_key` (the
/// destination `key`, written at `span`) and checks them: an `https` URL, a usable CA bundle,
/// a certificate with its key.
pub(super) fn check_destination(
    destination: &mut DestinationConfig,
    base: &Path,
    (key, span): (&str, Option<Range<usize>>),
    sink: &mut ErrorSink<'_>,
) {
    for path in [
        &mut destination.ca,
        &mut destination.client_cert,
        &mut destination.client_key,
    ]
    .into_iter()
    .flatten()
    {
        resolve(path, base);
    }
    let any = destination.ca.is_some() || destination.client_cert.is_some();
    if any && destination.url.0.scheme() != "https" {
        sink.push(
            span.clone(),
            format!("{key}.url"),
            "`ca` and `client_cert` need an https URL",
        );
    }
    if let Some(ca) = &destination.ca
        && let Err(error) = load_ca(ca)
    {
        sink.push(span.clone(), format!("{key}.ca"), error.to_string());
    }
    match (&destination.client_cert, &destination.client_key) {
        (Some(cert), Some(client_key)) => {
            if let Err(error) = CertPair::load(cert, client_key) {
                sink.push(span, format!("{key}.client_cert"), error.to_string());
            }
        }
        (None, None) => {}
        _ => sink.push(
            span,
            format!("{key}.client_cert"),
            "`client_cert` and `client_key` go together",
        ),
    }
}
