//! Test certificates, made with the `openssl` command at test time (`tests/servers.sh`
//! installs it): a root CA, an intermediate CA under it, server certificates for `127.0.0.1`
//! and `localhost` issued by the intermediate (served with it as their chain), client
//! certificates issued by the root, and rustls configs for test servers and clients.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A folder of test certificates under one root CA.
#[derive(Debug)]
pub struct TestCerts {
    dir: PathBuf,
}

/// A certificate (chain) and key, as PEM files.
#[derive(Debug, Clone)]
pub struct Pair {
    /// The certificate chain: the certificate, then its intermediate if any.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

impl Pair {
    /// The DER of the first certificate in `cert` (what a handshake shows).
    pub fn leaf_der(&self) -> Vec<u8> {
        let pem = std::fs::read(&self.cert).expect("read certificate");
        let first = CertificateDer::pem_slice_iter(&pem)
            .next()
            .expect("a certificate")
            .expect("PEM");
        first.to_vec()
    }
}

/// Runs `openssl` with the words of `args` in `dir`; panics with its stderr if it fails.
fn openssl(dir: &Path, args: &str) {
    let output = Command::new("openssl")
        .args(args.split_whitespace())
        .current_dir(dir)
        .output()
        .expect("run openssl (tests/servers.sh installs it)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A new P-256 key in `name.key` and a signing request for `subject` (no spaces) in
/// `name.csr`.
fn request(dir: &Path, name: &str, subject: &str) {
    openssl(
        dir,
        &format!(
            "req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
             -keyout {name}.key -out {name}.csr -subj {subject}"
        ),
    );
}

/// Signs `name.csr` with the CA `issuer` (`issuer.pem`, `issuer.key`) for `days`, with the
/// extensions `extensions`, into `name.pem`.
fn sign(dir: &Path, name: &str, issuer: &str, days: u32, extensions: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), extensions).expect("write extensions");
    openssl(
        dir,
        &format!(
            "x509 -req -in {name}.csr -CA {issuer}.pem -CAkey {issuer}.key -CAcreateserial \
             -out {name}.pem -days {days} -extfile {name}.ext"
        ),
    );
}

impl TestCerts {
    /// Makes the root CA (`ca.pem`) and the intermediate (`intermediate.pem`) in `dir`, a
    /// fresh folder.
    pub fn make(dir: &Path) -> TestCerts {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).expect("create certificate folder");
        openssl(
            dir,
            "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
             -keyout ca.key -out ca.pem -days 60 -subj /CN=test-ca \
             -addext basicConstraints=critical,CA:TRUE \
             -addext keyUsage=critical,keyCertSign,cRLSign",
        );
        request(dir, "intermediate", "/CN=test-intermediate");
        sign(
            dir,
            "intermediate",
            "ca",
            60,
            "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n",
        );
        TestCerts {
            dir: dir.to_path_buf(),
        }
    }

    /// The root CA's certificate file.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A server certificate `name` for `127.0.0.1` and `localhost`, valid for `days`, issued
    /// by the intermediate: `name.pem` holds it and the intermediate.
    pub fn server(&self, name: &str, days: u32) -> Pair {
        request(&self.dir, name, &format!("/CN={name}"));
        sign(
            &self.dir,
            name,
            "intermediate",
            days,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        );
        let cert = self.dir.join(format!("{name}.pem"));
        let mut chain = std::fs::read(&cert).expect("read certificate");
        chain.extend(std::fs::read(self.dir.join("intermediate.pem")).expect("intermediate"));
        std::fs::write(&cert, chain).expect("write chain");
        self.pair(name)
    }

    /// A client certificate `name` issued by the root CA.
    pub fn client(&self, name: &str) -> Pair {
        request(&self.dir, name, &format!("/CN={name}"));
        sign(
            &self.dir,
            name,
            "ca",
            30,
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=clientAuth\n",
        );
        self.pair(name)
    }

    fn pair(&self, name: &str) -> Pair {
        Pair {
            cert: self.dir.join(format!("{name}.pem")),
            key: self.dir.join(format!("{name}.key")),
        }
    }

    /// A reqwest client that trusts only the root CA.
    pub fn client_trusting_ca(&self, http1_only: bool) -> reqwest::Client {
        let ca = std::fs::read(self.ca()).expect("read CA");
        let mut builder = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA"));
        if http1_only {
            builder = builder.http1_only();
        }
        builder.build().expect("client")
    }

    /// A rustls client config that trusts only the root CA (ALPN `http/1.1`).
    pub fn rustls_client(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(self.ca()).expect("CA") {
            roots.add(ca.expect("CA PEM")).expect("CA certificate");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// The DER of the certificate a new TLS connection to `addr` is served (trusting only the
    /// root CA).
    pub async fn served_leaf(&self, addr: SocketAddr) -> Vec<u8> {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let name = rustls_pki_types::ServerName::from(addr.ip());
        let stream = tokio_rustls::TlsConnector::from(self.rustls_client())
            .connect(name, tcp)
            .await
            .expect("TLS handshake");
        stream
            .get_ref()
            .1
            .peer_certificates()
            .expect("a certificate")[0]
            .to_vec()
    }

    /// A rustls server config serving `pair` that requires a client certificate issued by
    /// the root CA.
    pub fn sink_config(&self, pair: &Pair) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(self.ca()).expect("CA") {
            roots.add(ca.expect("CA PEM")).expect("CA certificate");
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&provider),
        )
        .build()
        .expect("client verifier");
        let chain = CertificateDer::pem_file_iter(&pair.cert)
            .expect("certificate")
            .collect::<Result<Vec<_>, _>>()
            .expect("certificate PEM");
        let key = PrivateKeyDer::from_pem_file(&pair.key).expect("key");
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .expect("server certificate");
        Arc::new(config)
    }
}
