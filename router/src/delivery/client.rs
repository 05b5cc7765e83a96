//! The HTTP clients deliveries go through: one shared, pooled client for every destination
//! that trusts the public roots, shows no certificate and leaves the protocol to be agreed,
//! and one of its own for a destination with a `ca` (trusted instead of the public roots), a
//! `client_cert` (mutual TLS) or `http2 = true` (HTTP/2 only).

use std::time::Duration;

use crate::config::DestinationConfig;
use crate::tls::{CertPair, TlsError, load_ca};

/// Why a destination's own client cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Its `ca` file cannot be used.
    #[error(transparent)]
    Ca(TlsError),
    /// Its `client_cert` or `client_key` file cannot be used.
    #[error(transparent)]
    ClientCert(TlsError),
    /// reqwest refused the certificates or the settings.
    #[error("cannot build its HTTP client: {0}")]
    Build(#[from] reqwest::Error),
}

impl ClientError {
    /// The destination's key at fault.
    pub fn key(&self) -> &'static str {
        match self {
            Self::Ca(_) | Self::Build(_) => "ca",
            Self::ClientCert(_) => "client_cert",
        }
    }
}

/// A client with the settings every delivery uses: rustls, pooled connections, no redirects
/// followed, the proxy the environment names (if any).
pub fn builder() -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder()
        .user_agent(concat!("webhook-router/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10));
    if names_a_proxy(|name| std::env::var_os(name)) {
        builder
    } else {
        // reqwest's proxy matcher from the environment would match nothing, yet it runs for
        // every request (about 1.7 k instructions of a delivery).
        builder.no_proxy()
    }
}

/// The environment variables reqwest reads a proxy from.
const PROXY_VARIABLES: [&str; 6] = [
    "ALL_PROXY",
    "all_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
];

/// Whether the environment (`var`) names a proxy reqwest would use: one of
/// [`PROXY_VARIABLES`], not empty.
fn names_a_proxy(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> bool {
    PROXY_VARIABLES
        .into_iter()
        .any(|name| var(name).is_some_and(|value| !value.is_empty()))
}

/// The client shared by the destinations without a client of their own.
pub fn shared() -> Result<reqwest::Client, reqwest::Error> {
    builder().build()
}

/// The client of the destination `config`, if it needs its own: it trusts only the
/// certificates in `ca` (when set), shows `client_cert` (when set) and speaks only HTTP/2
/// (with `http2`). The files are read now.
pub fn for_destination(config: &DestinationConfig) -> Result<Option<reqwest::Client>, ClientError> {
    if config.ca.is_none() && config.client_cert.is_none() && !config.http2 {
        return Ok(None);
    }
    let mut builder = builder();
    if config.http2 {
        // reqwest's "prior knowledge" is HTTP/2 only: h2c from the first byte over `http`,
        // and over `https` an ALPN offering only `h2` (the shared client offers `h2` and
        // `http/1.1`, and a server may pick either).
        builder = builder.http2_prior_knowledge();
    }
    if let Some(ca) = &config.ca {
        builder = builder.tls_built_in_root_certs(false);
        for certificate in load_ca(ca).map_err(ClientError::Ca)? {
            builder = builder.add_root_certificate(reqwest::Certificate::from_der(&certificate)?);
        }
    }
    if let (Some(cert), Some(key)) = (&config.client_cert, &config.client_key) {
        // Checked to be a pair first, so that a mismatch is told with the files' names.
        let pair = CertPair::load(cert, key).map_err(ClientError::ClientCert)?;
        builder = builder.identity(reqwest::Identity::from_pem(&pair.pem)?);
    }
    Ok(Some(builder.build()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_is_named_by_any_of_the_six_variables_when_not_empty() {
        assert!(!names_a_proxy(|_| None));
        assert!(!names_a_proxy(|_| Some("".into())));
        // NO_PROXY alone names no proxy.
        assert!(!names_a_proxy(|name| {
            (name == "NO_PROXY").then(|| "example.com".into())
        }));
        for variable in PROXY_VARIABLES {
            assert!(
                names_a_proxy(|name| (name == variable).then(|| "http://proxy:3128".into())),
                "{variable}"
            );
        }
    }
}
