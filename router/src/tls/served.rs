//! The certificate a TLS listener serves. It is swapped whole (chain and key) by a reload or a
//! change of its files: each new handshake gets the one in place then, while open connections
//! go on with the one they started with. Each swap sets the listener's
//! `webhook_tls_cert_expiry_timestamp_seconds` and warns when the certificate expires within
//! [`EXPIRY_WARNING`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use metrics::Gauge;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::files::{CertPair, TlsError};

/// A certificate that expires sooner than this from when it is loaded is logged as a warning.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

/// The protocols offered by ALPN, preferred first.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The certificate one listener serves, and the files it was read from.
#[derive(Debug)]
pub struct ServedCert {
    listener: &'static str,
    current: ArcSwap<CertifiedKey>,
    files: Mutex<Files>,
    expiry: Gauge,
}

/// The files a served certificate was read from, and the SHA-256 of their bytes then.
#[derive(Debug)]
struct Files {
    cert: PathBuf,
    key: PathBuf,
    digest: [u8; 32],
}

impl ServedCert {
    /// Serves `pair`, read from `cert` and `key`, on `listener`; `expiry` is its
    /// `webhook_tls_cert_expiry_timestamp_seconds`.
    pub fn new(
        listener: &'static str,
        (cert, key): (&Path, &Path),
        pair: &CertPair,
        expiry: Gauge,
    ) -> Arc<Self> {
        let served = Arc::new(Self {
            listener,
            current: ArcSwap::new(Arc::clone(&pair.certified)),
            files: Mutex::new(Files {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                digest: [0; 32],
            }),
            expiry,
        });
        served.install((cert, key), pair);
        served
    }

    /// The rustls config the listener accepts with: TLS 1.2 and 1.3, ALPN `h2` and
    /// `http/1.1`, no client certificate, and this certificate.
    pub fn server_config(self: &Arc<Self>) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = ALPN.iter().map(|protocol| protocol.to_vec()).collect();
        Arc::new(config)
    }

    /// The certificate and key files now served.
    pub fn files(&self) -> (PathBuf, PathBuf) {
        let files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        (files.cert.clone(), files.key.clone())
    }

    /// Serves `pair`, read from `cert` and `key`, to the connections that start from now on.
    pub fn install(&self, (cert, key): (&Path, &Path), pair: &CertPair) {
        self.current.store(Arc::clone(&pair.certified));
        self.expiry.set(pair.not_after_unix_seconds());
        let left = pair.not_after.duration_since(SystemTime::now());
        let not_after = httpdate::fmt_http_date(pair.not_after);
        let Ok(left) = left else {
            tracing::error!(
                listener = self.listener,
                cert = %cert.display(),
                %not_after,
                "the TLS certificate has expired: clients will refuse it; renew it (a reload or a change of the file serves the new one)"
            );
            return self.remember((cert, key), pair);
        };
        if left < EXPIRY_WARNING {
            tracing::warn!(
                listener = self.listener,
                cert = %cert.display(),
                %not_after,
                days_left = left.as_secs() / 86_400,
                "the TLS certificate expires within 14 days: renew it (a reload or a change of the file serves the new one)"
            );
        } else {
            tracing::info!(listener = self.listener, cert = %cert.display(), %not_after, "serving TLS certificate");
        }
        self.remember((cert, key), pair);
    }

    /// Records that `pair` was read from `cert` and `key`.
    fn remember(&self, (cert, key): (&Path, &Path), pair: &CertPair) {
        *self.files.lock().unwrap_or_else(PoisonError::into_inner) = Files {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            digest: pair.digest(),
        };
    }

    /// Reads the files served again and serves them if they changed: `Ok(true)` if it did,
    /// `Ok(false)` if they are as served, an error (the old certificate keeps serving) if they
    /// are no longer a usable pair, e.g. a certificate written before its key.
    pub fn reread(&self) -> Result<bool, TlsError> {
        let (cert, key) = self.files();
        let pair = CertPair::load(&cert, &key)?;
        let unchanged = self
            .files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .digest
            == pair.digest();
        if unchanged {
            return Ok(false);
        }
        self.install((&cert, &key), &pair);
        Ok(true)
    }
}

impl ResolvesServerCert for ServedCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}
