//! The PEM files TLS is configured with: a certificate chain and its private key (checked to be
//! a pair, with the first certificate's notAfter read), and a bundle of CA certificates. Every
//! error names the file at fault.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use x509_cert::der::Decode;

/// Why a certificate, key or CA file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file holds no usable certificate or key.
    #[error("{}: {what}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// The key is not the certificate's.
    #[error(
        "{} is not the private key of the certificate in {}",
        key.display(),
        cert.display()
    )]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
}

/// A certificate chain and its private key, read from two PEM files and checked to be a pair.
#[derive(Clone)]
pub struct CertPair {
    /// The chain and signing key, as rustls serves them.
    pub certified: Arc<CertifiedKey>,
    /// When the first (end-entity) certificate expires.
    pub not_after: SystemTime,
    /// The bytes of the certificate file, then those of the key file (a client identity is
    /// made from both; a changed file is told by them).
    pub pem: Vec<u8>,
}

impl std::fmt::Debug for CertPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the PEM bytes: they hold the private key.
        f.debug_struct("CertPair")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl CertPair {
    /// The SHA-256 of the files' bytes: tells a changed file without keeping the key twice.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(&self.pem).into()
    }

    /// Reads the chain in `cert` (end-entity certificate first, then its intermediates) and
    /// the private key in `key` (PKCS#8, PKCS#1 or SEC1), and checks that the key is the
    /// certificate's.
    pub fn load(cert: &Path, key: &Path) -> Result<CertPair, TlsError> {
        let cert_pem = read(cert)?;
        let key_pem = read(key)?;
        let chain = certificates(cert, &cert_pem)?;
        let private_key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| {
            invalid(
                key,
                format!("no private key in it (a PEM PRIVATE KEY block): {error}"),
            )
        })?;
        let not_after = not_after(cert, &chain[0])?;
        let provider = rustls::crypto::ring::default_provider();
        let certified =
            CertifiedKey::from_der(chain, private_key, &provider).map_err(|error| match error {
                rustls::Error::InconsistentKeys(_) => TlsError::Mismatch {
                    cert: cert.to_path_buf(),
                    key: key.to_path_buf(),
                },
                other => invalid(key, format!("unusable private key: {other}")),
            })?;
        let mut pem = cert_pem;
        pem.push(b'\n');
        pem.extend_from_slice(&key_pem);
        Ok(CertPair {
            certified: Arc::new(certified),
            not_after,
            pem,
        })
    }

    /// Seconds from the Unix epoch to `not_after`.
    pub fn not_after_unix_seconds(&self) -> f64 {
        self.not_after
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |since| since.as_secs_f64())
    }
}

/// The CA certificates in the PEM file `path` (at least one).
pub fn load_ca(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    certificates(path, &read(path)?)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn invalid(path: &Path, what: String) -> TlsError {
    TlsError::Invalid {
        path: path.to_path_buf(),
        what,
    }
}

/// The certificates of the PEM text `pem`, read from `path`: at least one, each a well-formed
/// X.509 certificate.
fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| invalid(path, format!("unreadable PEM: {error}")))?;
    if chain.is_empty() {
        return Err(invalid(
            path,
            "no certificate in it (a PEM CERTIFICATE block)".to_owned(),
        ));
    }
    for certificate in &chain {
        x509_cert::Certificate::from_der(certificate)
            .map_err(|error| invalid(path, format!("not an X.509 certificate: {error}")))?;
    }
    Ok(chain)
}

/// The notAfter of `certificate`, read from `path`.
fn not_after(path: &Path, certificate: &CertificateDer<'_>) -> Result<SystemTime, TlsError> {
    let parsed = x509_cert::Certificate::from_der(certificate)
        .map_err(|error| invalid(path, format!("not an X.509 certificate: {error}")))?;
    Ok(parsed.tbs_certificate.validity.not_after.to_system_time())
}
