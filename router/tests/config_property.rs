//! A property test of the config loader over arbitrary TOML values in every key: loading (what
//! `check` and `serve` do first) never panics, and every config it accepts starts a router that
//! answers `/healthz`.

use std::net::SocketAddr;
use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use webhook_router::{Config, Router};

/// Cases per run: enough to cover every key many times, few enough for about half a second.
/// About one case in five is accepted (measured over 15 seeds: 8 to 19 of 64), so 256 cases
/// accept about 56 configs and `MIN_ACCEPTED` is several standard deviations below that.
const CASES: u32 = 256;

/// The fewest accepted configs a run may serve for the property to mean something.
const MIN_ACCEPTED: u32 = 16;

/// The shape of a key's sensible values.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Address,
    Duration,
    Size,
    Count,
    Bool,
    Text,
    Networks,
    Jitter,
    OnError,
    Headers,
}

/// (table, key, kind): every numeric, duration, size and flag key of the config.
const KEYS: &[(Table, &str, Kind)] = &[
    (Table::Server, "listen", Kind::Address),
    (Table::Server, "admin_listen", Kind::Address),
    (Table::Server, "max_body_bytes", Kind::Size),
    (Table::Server, "queue_capacity", Kind::Count),
    (Table::Server, "header_read_timeout", Kind::Duration),
    (Table::Server, "body_read_timeout", Kind::Duration),
    (
        Table::Server,
        "max_requests_in_flight_per_client",
        Kind::Count,
    ),
    (Table::Server, "min_body_rate", Kind::Size),
    (Table::Server, "min_body_rate_grace", Kind::Duration),
    (Table::Server, "shutdown_grace", Kind::Duration),
    (Table::Server, "dead_letter_capacity", Kind::Count),
    (Table::Server, "dead_letter_max_bytes", Kind::Size),
    (Table::Server, "admin_token", Kind::Text),
    (Table::Server, "admin_public", Kind::Bool),
    (Table::Server, "trusted_proxies", Kind::Networks),
    (Table::Destination, "timeout", Kind::Duration),
    (Table::Destination, "max_in_flight", Kind::Count),
    (Table::Destination, "max_held", Kind::Count),
    (Table::Destination, "circuit.failures", Kind::Count),
    (Table::Destination, "circuit.open_for", Kind::Duration),
    (Table::Destination, "circuit.max_open_for", Kind::Duration),
    (Table::Destination, "retry.max_attempts", Kind::Count),
    (Table::Destination, "retry.initial_backoff", Kind::Duration),
    (Table::Destination, "retry.max_backoff", Kind::Duration),
    (Table::Destination, "retry.jitter", Kind::Jitter),
    (Table::Destination, "headers", Kind::Headers),
    (Table::Route, "on_plugin_error", Kind::OnError),
    (Table::Route, "rate_limit.per_second", Kind::Count),
    (Table::Route, "rate_limit.burst", Kind::Count),
    (Table::Route, "allow_ips", Kind::Networks),
    (Table::Route, "verify.tolerance", Kind::Duration),
    (Table::Route, "dedup.window", Kind::Duration),
    (Table::Route, "dedup.capacity", Kind::Count),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    Server,
    Destination,
    Route,
}

/// A TOML string literal.
fn quoted(text: &str) -> String {
    format!("{text:?}")
}

/// A sensible value of `kind`: often in range, sometimes just outside it.
fn sensible(kind: Kind) -> BoxedStrategy<String> {
    let unit = prop::sample::select(vec!["ns", "ms", "s", "m", "h", "d", "w", "y"]);
    match kind {
        Kind::Address => prop::sample::select(vec!["127.0.0.1:0", "0.0.0.0:0"])
            .prop_map(quoted)
            .boxed(),
        Kind::Duration => (0u64..200, unit)
            .prop_map(|(n, unit)| quoted(&format!("{n}{unit}")))
            .boxed(),
        Kind::Size => (
            0u64..300,
            prop::sample::select(vec!["B", "KiB", "MiB", "GiB", "KB"]),
        )
            .prop_map(|(n, unit)| quoted(&format!("{n}{unit}")))
            .boxed(),
        Kind::Count => (0u64..300).prop_map(|n| n.to_string()).boxed(),
        Kind::Bool => any::<bool>().prop_map(|b| b.to_string()).boxed(),
        Kind::Text => "[a-zA-Z0-9$]{0,12}".prop_map(|t| quoted(&t)).boxed(),
        Kind::Networks => prop::collection::vec(
            prop::sample::select(vec!["10.0.0.0/8", "127.0.0.1", "::1", "192.168.1.0/24"]),
            0..3,
        )
        .prop_map(|nets| {
            format!(
                "[{}]",
                nets.iter()
                    .map(|n| quoted(n))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
        .boxed(),
        Kind::Jitter => prop::sample::select(vec!["full", "none"])
            .prop_map(quoted)
            .boxed(),
        Kind::OnError => prop::sample::select(vec!["reject", "drop", "forward"])
            .prop_map(quoted)
            .boxed(),
        Kind::Headers => "[a-z]{1,6}"
            .prop_map(|name| format!("{{ x-{name} = \"v\" }}"))
            .boxed(),
    }
}

/// Any TOML value: numbers of every size, strings, booleans, arrays and tables.
fn anything() -> impl Strategy<Value = String> {
    let unit = prop::sample::select(vec!["ns", "ms", "s", "m", "h", "d", "y", "KiB", "TiB", ""]);
    let leaf = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        (-1.0e12f64..1.0e12).prop_map(|f| format!("{f:.3}")),
        any::<bool>().prop_map(|b| b.to_string()),
        (any::<u64>(), unit).prop_map(|(n, unit)| quoted(&format!("{n}{unit}"))),
        "[ -~]{0,16}".prop_map(|t| quoted(&t)),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec(("[a-z_]{1,8}", inner), 0..3).prop_map(|pairs| {
                let pairs: Vec<String> = pairs.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{ {} }}", pairs.join(", "))
            }),
        ]
    })
}

/// A config file with a few keys (one to four) set: each to a sensible value or to anything.
fn config_text() -> impl Strategy<Value = String> {
    let choices = KEYS
        .iter()
        .map(|&(_, _, kind)| prop_oneof![2 => sensible(kind), 1 => anything().boxed()])
        .collect::<Vec<_>>();
    (
        prop::sample::subsequence((0..KEYS.len()).collect::<Vec<_>>(), 1..=4),
        choices,
    )
        .prop_map(|(chosen, values)| {
            let mut tables = [Vec::new(), Vec::new(), Vec::new()];
            for index in chosen {
                let (table, key, _) = KEYS[index];
                tables[table as usize].push(format!("{key} = {}", values[index]));
            }
            let [server, destination, route] = tables;
            let mut text = String::from("[server]\n");
            // Only ephemeral ports, so that accepted configs can start side by side.
            for key in ["listen", "admin_listen"] {
                if !server
                    .iter()
                    .any(|line| line.starts_with(&format!("{key} =")))
                {
                    text.push_str(&format!("{key} = \"127.0.0.1:0\"\n"));
                }
            }
            for line in server {
                text.push_str(&format!("{line}\n"));
            }
            text.push_str("[destinations.d]\nurl = \"http://127.0.0.1:9/in\"\n");
            for line in destination {
                text.push_str(&format!("{line}\n"));
            }
            text.push_str(
                "[[routes]]\nid = \"r\"\npath = \"/hooks\"\ndestinations = [\"d\"]\n\
                 verify.preset = \"github\"\nverify.secrets = [\"s3cret\"]\n",
            );
            for line in route {
                text.push_str(&format!("{line}\n"));
            }
            text
        })
}

/// `GET /healthz` on `admin`; the status code.
async fn healthz(admin: SocketAddr) -> std::io::Result<String> {
    let admin = SocketAddr::from(([127, 0, 0, 1], admin.port()));
    let mut stream = tokio::net::TcpStream::connect(admin).await?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: router\r\nconnection: close\r\n\r\n")
        .await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    Ok(answer)
}

#[test]
fn loading_never_panics_and_every_accepted_config_serves() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut runner = TestRunner::new(ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let accepted = std::cell::Cell::new(0u32);
    let result = runner.run(&config_text(), |text| {
        // A panic here fails the case (proptest catches it and shrinks the input).
        let Ok(config) = Config::parse(&text, Path::new("fuzz.toml")) else {
            return Ok(());
        };
        accepted.set(accepted.get() + 1);
        runtime.block_on(async {
            let router = Router::start(&config).await.map_err(|e| {
                TestCaseError::fail(format!("accepted but did not start: {e}\n{text}"))
            })?;
            let answer = healthz(router.admin_addr())
                .await
                .map_err(|e| TestCaseError::fail(format!("no /healthz answer: {e}\n{text}")))?;
            router.shutdown().await;
            prop_assert!(answer.starts_with("HTTP/1.1 200"), "{answer}\n{text}");
            Ok(())
        })
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    // The property is about accepted configs: make sure some were.
    assert!(
        accepted.get() >= MIN_ACCEPTED,
        "only {} of {CASES} configs were accepted",
        accepted.get()
    );
}
