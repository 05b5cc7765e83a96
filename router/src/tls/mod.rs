//! TLS with rustls (the ring provider, as reqwest's): the PEM files a certificate, its key and a
//! CA bundle are read from ([`files`]), and the certificate a listener serves, swapped by a
//! reload or a change of its files ([`served`]).

pub mod files;
pub mod served;

pub use files::{CertPair, TlsError, load_ca};
pub use served::ServedCert;
