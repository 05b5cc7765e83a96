//! TLS (issue #26), with certificates made by `openssl` at test time: the ingress and admin
//! listeners over HTTPS to curl and to a Rust client, HTTP/1.1 and h2 by ALPN; a certificate
//! swapped on disk is served to the next connection while a slow request on an old one
//! completes; a stalled handshake is closed at `header_read_timeout`; a bad pair is refused by
//! a reload and the old certificate keeps serving; a destination over HTTPS with a private CA
//! and a client certificate (mutual TLS); destinations with `http2 = true`, over h2c and over
//! HTTPS by ALPN, their deliveries multiplexed on one connection each.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use webhook_router_tests::certs::{Pair, TestCerts};
use webhook_router_tests::wait::wait_until;
use webhook_router_tests::{Reply, Sink, TestRouter};

use crate::{PATIENCE, destination, route};

/// A fresh folder for test `name`: its certificates and its config file.
fn folder(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("tls")
        .join(name)
}

/// Copies `pair` over the files the ingress serves (`served.pem`, `served.key` in `dir`): the
/// key first, then the certificate, as a renewal tool would.
fn serve_pair(dir: &Path, pair: &Pair) {
    std::fs::copy(&pair.key, dir.join("served.key")).expect("copy key");
    std::fs::copy(&pair.cert, dir.join("served.pem")).expect("copy certificate");
}

/// A config whose ingress serves `served.pem` and whose admin listener serves `admin.pem`
/// (relative paths: from the config's folder), delivering `/hooks/tls` to `sink`.
fn config(sink: &Sink) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         tls = {{ cert = \"served.pem\", key = \"served.key\" }}\n\
         admin_tls = {{ cert = \"admin.pem\", key = \"admin.key\" }}\n{}{}",
        destination("sink", &sink.url("/in"), 3),
        route("tls", "/hooks/tls", &["sink"])
    )
}

/// Writes `text` as the config file of `dir`.
fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("router.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// A new TLS connection to `addr` trusting only the test CA, and the DER of the certificate it
/// was served.
async fn connect(tls: &TlsConnector, addr: SocketAddr) -> (TlsStream<TcpStream>, Vec<u8>) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = rustls_pki_types::ServerName::from(addr.ip());
    let stream = tls.connect(name, tcp).await.expect("TLS handshake");
    let served = stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("a certificate")[0]
        .to_vec();
    (stream, served)
}

/// `curl --cacert CA version` to `url`, POSTing `{}` if `post`: the status and the HTTP
/// version curl reports (`1.1`, `2`).
async fn curl(ca: &Path, version: &str, url: &str, post: bool) -> String {
    let mut command = std::process::Command::new("curl");
    command
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
        ])
        .arg("--cacert")
        .arg(ca)
        .arg(version)
        .arg(url);
    if post {
        command.args(["-H", "content-type: application/json", "--data", "{}"]);
    }
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run curl (tests/servers.sh installs it)");
    assert!(
        output.status.success(),
        "curl {version}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Asserts that the ingress's certificate-expiry gauge exists and says `days` from now (within
/// ten minutes).
async fn assert_ingress_expires_in(router: &TestRouter, days: u64) {
    let expiry = "webhook_tls_cert_expiry_timestamp_seconds{listener=\"ingress\"}";
    let served_until = router
        .metric(expiry)
        .await
        .expect("the expiry gauge exists");
    let then = (SystemTime::now() + Duration::from_secs(days * 86_400))
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs_f64();
    assert!((served_until - then).abs() < 600.0, "{served_until}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_by_alpn_to_curl_and_reqwest_and_a_swapped_certificate_serves_the_next_connection() {
    let dir = folder("swap");
    let certs = TestCerts::make(&dir);
    let first = certs.server("first", 30);
    let second = certs.server("second", 5);
    // `admin.pem` and `admin.key`, as the config names them.
    certs.server("admin", 30);
    serve_pair(&dir, &first);
    let sink = Sink::healthy().await;
    let path = write_config(&dir, &config(&sink));
    let router = TestRouter::start_file(&path, certs.client_trusting_ca(false)).await;
    let url = router.url("/hooks/tls");
    assert!(url.starts_with("https://"), "{url}");

    // Real clients over both versions, agreed by ALPN.
    assert_eq!(curl(&certs.ca(), "--http1.1", &url, true).await, "202 1.1");
    assert_eq!(curl(&certs.ca(), "--http2", &url, true).await, "202 2");
    for (client, version) in [
        (&router.client, http::Version::HTTP_2),
        (&certs.client_trusting_ca(true), http::Version::HTTP_11),
    ] {
        let answer = client
            .post(&url)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .expect("router answers");
        assert_eq!((answer.status().as_u16(), answer.version()), (202, version));
    }
    assert_ingress_expires_in(&router, 30).await;

    // A request on a connection made with the first certificate, its body sent slowly, spans
    // the swap.
    let tls = TlsConnector::from(certs.rustls_client());
    let (mut old, served) = connect(&tls, router.router.ingress_addr()).await;
    assert_eq!(served, first.leaf_der());
    let body = format!("{{\"slow\":\"{}\"}}", "x".repeat(3000));
    let head = format!(
        "POST /hooks/tls HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    old.write_all(head.as_bytes()).await.expect("send head");
    let (start, rest) = body.as_bytes().split_at(1000);
    old.write_all(start).await.expect("send body");
    old.flush().await.expect("flush");
    let began = Instant::now();

    serve_pair(&dir, &second);
    wait_until(
        "a new connection to be served the certificate written on disk",
        PATIENCE,
        || async { connect(&tls, router.router.ingress_addr()).await.1 },
        |served| *served == second.leaf_der(),
    )
    .await;
    let swapped_after = began.elapsed();
    for chunk in rest.chunks(500) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        old.write_all(chunk).await.expect("send body");
        old.flush().await.expect("flush");
    }
    let mut answer = vec![0; 1024];
    let read = old.read(&mut answer).await.expect("the answer");
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    assert!(
        began.elapsed() > swapped_after,
        "the request ended after the swap"
    );
    assert_eq!(
        old.get_ref().1.peer_certificates().expect("certificate")[0].as_ref(),
        first.leaf_der(),
        "the old connection kept its certificate"
    );

    // The new certificate expires within 14 days: the gauge says when.
    assert_ingress_expires_in(&router, 5).await;
    let delivered = sink.wait_for_delivered(5, PATIENCE).await;
    assert_eq!(delivered.len(), 5);
    assert!(
        delivered
            .iter()
            .any(|received| received.body.as_ref() == body.as_bytes())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_over_tls_and_a_bad_pair_is_refused_by_a_reload_while_the_old_certificate_serves() {
    let dir = folder("refused");
    let certs = TestCerts::make(&dir);
    let first = certs.server("first", 30);
    let other = certs.server("other", 30);
    // `admin.pem` and `admin.key`, as the config names them.
    let admin = certs.server("admin", 30);
    serve_pair(&dir, &first);
    let sink = Sink::healthy().await;
    let text = config(&sink).replace("[server]\n", "[server]\nheader_read_timeout = \"500ms\"\n");
    let path = write_config(&dir, &text);
    let router = TestRouter::start_file(&path, certs.client_trusting_ca(false)).await;

    // The admin listener serves its own certificate.
    let admin_url = router.admin_url("/healthz");
    assert!(admin_url.starts_with("https://"), "{admin_url}");
    let (_, served) = connect(
        &TlsConnector::from(certs.rustls_client()),
        router.router.admin_addr(),
    )
    .await;
    assert_eq!(served, admin.leaf_der());
    let healthz = router.client.get(&admin_url).send().await.expect("answer");
    assert_eq!(healthz.status(), 200);
    let metrics = curl(&certs.ca(), "--http2", &router.admin_url("/metrics"), false).await;
    assert_eq!(metrics, "200 2");
    let admin_expiry = "webhook_tls_cert_expiry_timestamp_seconds{listener=\"admin\"}";
    assert!(router.metric(admin_expiry).await.is_some());

    // Plain HTTP to a TLS listener fails the handshake, and is counted.
    let plain = format!("http://{}/hooks/tls", router.router.ingress_addr());
    assert!(reqwest::Client::new().post(&plain).send().await.is_err());
    router
        .wait_for_metric(
            "webhook_connections_closed_total{listener=\"ingress\",reason=\"tls_handshake\"}",
            1.0,
            PATIENCE,
        )
        .await;

    // A client that stalls part-way through its handshake is closed at header_read_timeout,
    // like a silent one.
    let mut stalled = TcpStream::connect(router.router.ingress_addr())
        .await
        .expect("connect");
    // A handshake record's header announcing 512 bytes that never come.
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
        .await
        .expect("send");
    let started = Instant::now();
    let closed = tokio::time::timeout(PATIENCE, stalled.read(&mut [0; 64])).await;
    assert!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "closed, not answered: {closed:?}"
    );
    let held = started.elapsed();
    assert!(
        held >= Duration::from_millis(400) && held < Duration::from_secs(5),
        "{held:?}"
    );
    router
        .wait_for_metric(
            "webhook_connections_closed_total{listener=\"ingress\",reason=\"header_timeout\"}",
            1.0,
            PATIENCE,
        )
        .await;

    let reload = || async {
        let answer = router
            .client
            .post(router.admin_url("/reload"))
            .send()
            .await
            .expect("admin answers");
        let status = answer.status().as_u16();
        (status, answer.text().await.expect("text"))
    };
    assert_eq!(reload().await.0, 200);

    let tls = TlsConnector::from(certs.rustls_client());
    let ingress = router.router.ingress_addr();
    // A certificate with another's key, then a certificate that is not there.
    let mismatched = text.replace(
        "cert = \"served.pem\"",
        &format!("cert = \"{}\"", other.cert.display()),
    );
    let missing = text.replace("cert = \"served.pem\"", "cert = \"missing.pem\"");
    for (config, named) in [
        (
            &mismatched,
            format!(
                "server.tls: {} is not the private key of the certificate in {}",
                dir.join("served.key").display(),
                other.cert.display()
            ),
        ),
        (
            &missing,
            format!("cannot read {}", dir.join("missing.pem").display()),
        ),
    ] {
        write_config(&dir, config);
        let (status, answer) = reload().await;
        assert_eq!(status, 400, "{answer}");
        assert!(answer.contains(&named), "{named} in {answer}");
        assert_eq!(connect(&tls, ingress).await.1, first.leaf_der());
    }

    // The key on disk replaced by another's: the change is seen and refused, and so is a
    // reload; the old certificate serves.
    write_config(&dir, &text);
    std::fs::copy(&other.key, dir.join("served.key")).expect("copy key");
    let (status, answer) = reload().await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("is not the private key"), "{answer}");
    assert_eq!(connect(&tls, ingress).await.1, first.leaf_der());
    let accepted = router
        .client
        .post(router.url("/hooks/tls"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("ingress answers");
    assert_eq!(accepted.status(), 202);
    router
        .wait_for_metric(
            "webhook_config_reloads_total{result=\"error\"}",
            3.0,
            PATIENCE,
        )
        .await;

    // The pair made whole again serves on reload.
    serve_pair(&dir, &other);
    assert_eq!(reload().await.0, 200);
    assert_eq!(connect(&tls, ingress).await.1, other.leaf_der());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_over_https_with_a_private_ca_and_a_client_certificate() {
    let dir = folder("mtls");
    let certs = TestCerts::make(&dir);
    let sink_pair = certs.server("sink", 30);
    let client = certs.client("router-client");
    let sink = Sink::healthy_tls(certs.sink_config(&sink_pair)).await;
    let url = sink.url("/in");
    assert!(url.starts_with("https://"), "{url}");
    let ca = certs.ca();
    let tls_keys = format!(
        "ca = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n",
        ca.display(),
        client.cert.display(),
        client.key.display()
    );
    let config = format!(
        "{}{tls_keys}{}ca = \"{}\"\n{}{}{}{}",
        destination("mtls", &url, 3),
        destination("anonymous", &url, 1),
        ca.display(),
        destination("public_roots", &url, 1),
        route("mtls", "/hooks/mtls", &["mtls"]),
        route("anonymous", "/hooks/anonymous", &["anonymous"]),
        route("public", "/hooks/public", &["public_roots"]),
    );
    let router = TestRouter::start(&config).await;
    for path in ["/hooks/mtls", "/hooks/anonymous", "/hooks/public"] {
        let answer = router
            .post_json(path, &format!("{{\"to\":\"{path}\"}}"))
            .await;
        assert_eq!(answer.status(), 202, "{path}");
    }
    let delivered = sink.wait_for_delivered(1, PATIENCE).await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].body.as_ref(), b"{\"to\":\"/hooks/mtls\"}");
    router.wait_idle(PATIENCE).await;
    // Without a client certificate the sink refuses the handshake; with the public roots the
    // router does not trust the sink: both dead-lettered, neither reached the sink.
    let letters = router.admin_json("/dead-letters").await;
    let mut failed: Vec<(&str, &str)> = letters
        .as_array()
        .expect("dead letters")
        .iter()
        .map(|letter| {
            let destination = letter["destination"].as_str().expect("destination");
            (destination, letter["last_error"].as_str().expect("error"))
        })
        .collect();
    failed.sort_unstable();
    assert_eq!(failed.len(), 2, "{letters}");
    assert_eq!(failed[0].0, "anonymous", "{letters}");
    assert_eq!(failed[1].0, "public_roots", "{letters}");
    assert!(failed[1].1.contains("UnknownIssuer"), "{letters}");
    assert_eq!(sink.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_destinations_multiplex_over_h2c_and_over_tls_by_alpn_and_the_key_reloads() {
    let dir = folder("http2");
    let certs = TestCerts::make(&dir);
    let sink_pair = certs.server("sink", 30);
    let client = certs.client("router-client");
    // Each answer a little late, so that deliveries overlap: over HTTP/1.1 they would need a
    // connection each.
    let late = |_| Reply {
        delay: Some(Duration::from_millis(20)),
        ..Reply::ok()
    };
    // h2c: a sink that speaks either version, the version of each request recorded.
    let h2c = Sink::start(late).await;
    // TLS: a sink whose ALPN offers only `h2` and which speaks only HTTP/2.
    let mut tls = rustls::ServerConfig::clone(&certs.sink_config(&sink_pair));
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let h2 = Sink::http2_only(Some(Arc::new(tls)), late).await;
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         {}http2 = true\n{}http2 = true\nca = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n{}",
        destination("h2c", &h2c.url("/in"), 1),
        destination("tls", &h2.url("/in"), 1),
        certs.ca().display(),
        client.cert.display(),
        client.key.display(),
        route("both", "/hooks/both", &["h2c", "tls"]),
    );
    let path = write_config(&dir, &text);
    let router = TestRouter::start_file(&path, reqwest::Client::new()).await;

    let events = 100;
    for n in 0..events {
        let answer = router
            .post_json("/hooks/both", &format!("{{\"n\":{n}}}"))
            .await;
        assert_eq!(answer.status(), 202);
    }
    for sink in [&h2c, &h2] {
        let delivered = sink.wait_for_delivered(events, PATIENCE).await;
        assert_eq!(delivered.len(), events, "{}", sink.url(""));
    }
    router.wait_idle(PATIENCE).await;
    for sink in [&h2c, &h2] {
        let requests = sink.requests();
        let mut bodies: Vec<&[u8]> = requests.iter().map(|r| r.body.as_ref()).collect();
        bodies.sort_unstable();
        bodies.dedup();
        assert_eq!(
            (requests.len(), bodies.len()),
            (events, events),
            "each event once"
        );
        assert!(
            requests.iter().all(|r| r.version == http::Version::HTTP_2),
            "{:?}",
            requests.iter().map(|r| r.version).collect::<Vec<_>>()
        );
        // Every attempt in flight on the one connection.
        assert_eq!(sink.connections(), 1, "{}", sink.url(""));
    }

    // `http2` off by a reload: the next delivery to h2c is HTTP/1.1; the TLS sink still gets
    // HTTP/2, now agreed by an ALPN offering both.
    write_config(&dir, &text.replace("http2 = true\n", ""));
    let reload = router
        .client
        .post(router.admin_url("/reload"))
        .send()
        .await
        .expect("admin answers");
    assert_eq!(reload.status(), 200, "{:?}", reload.text().await);
    let answer = router
        .post_json("/hooks/both", "{\"after\":\"reload\"}")
        .await;
    assert_eq!(answer.status(), 202);
    for (sink, version) in [(&h2c, http::Version::HTTP_11), (&h2, http::Version::HTTP_2)] {
        let delivered = sink.wait_for_delivered(events + 1, PATIENCE).await;
        let last = delivered.last().expect("a delivery");
        assert_eq!(last.body.as_ref(), b"{\"after\":\"reload\"}");
        assert_eq!(last.version, version, "{}", sink.url(""));
    }
}
