//! The admin console (`/console`), driven in Debian's headless chromium against a real router
//! process and real sinks:
//! - over the journal: without the token every view and action is refused; with it, a
//!   delivered, a retried and a dead-lettered event show their plugin verdict and attempt
//!   timelines; a body and a delivery-id header full of HTML and `javascript:` show literally
//!   and run nothing; 30 dead letters filtered by destination, selected across two pages and
//!   replayed arrive at the sink as many times as the confirmation said; a stopped
//!   destination's row shows its circuit open within the refresh interval and closed once it
//!   is back; a reload of a broken file lists its errors while the old routes keep serving; a
//!   screenshot of every view at both widths;
//! - over memory and NATS: the Events and Dead-letters views list what happened, and a
//!   dead letter is selected and replayed with the keyboard alone.

mod browser;
mod stoppable;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use browser::Browser;
use serde_json::Value;
use stoppable::Stoppable;
use webhook_router_tests::github;
use webhook_router_tests::nats::NatsServer;
use webhook_router_tests::numbered::{self, PATIENCE, client, wait_idle};
use webhook_router_tests::wait::wait_until;
use webhook_router_tests::{RouterProcess, Sink};

const TOKEN: &str = "console-admin-token";
const SECRET: &str = "gh-secret";
/// The console's refresh interval (`REFRESH_MS` in console.js).
const REFRESH: Duration = Duration::from_secs(2);
/// Dead letters posted to the bulk route: more than one page of the view (25).
const BULK: usize = 30;
/// What an event's body and delivery id carry: each would set `window.__xss` if interpreted.
const XSS_BODY: &str = "<script>window.__xss = 'script'</script>\
    <img src=x onerror=\"window.__xss = 'img'\">\
    <a href=\"javascript:window.__xss = 'link'\">click me</a>";
const XSS_DELIVERY: &str = "<img src=x onerror=window.__xss='header'>";

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_webhook-router"))
}

fn fresh_dir(name: &str) -> PathBuf {
    numbered::fresh_dir(Path::new(env!("CARGO_TARGET_TMPDIR")), "console", name)
}

/// Posts `body` to `/hooks` signed with [`SECRET`] as GitHub signs it, with delivery id
/// `delivery`; the event id of the 202.
async fn post_signed(ingress: &str, body: &str, delivery: &str) -> String {
    github::post_signed(ingress, SECRET, body, delivery).await
}

/// Posts `body` unsigned to `path`; the status.
async fn post(ingress: &str, path: &str, body: &str) -> u16 {
    client()
        .post(format!("http://{ingress}{path}"))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("post")
        .status()
        .as_u16()
}

/// `method path` on the admin API, with the token or without; the status.
async fn admin_status(admin: &str, method: &str, path: &str, token: Option<&str>) -> u16 {
    let mut request = client().request(
        method.parse().expect("method"),
        format!("http://{admin}{path}"),
    );
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request
        .send()
        .await
        .expect("admin request")
        .status()
        .as_u16()
}

async fn admin_json(admin: &str, path: &str) -> Value {
    client()
        .get(format!("http://{admin}{path}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("admin request")
        .json()
        .await
        .expect("json")
}

/// The circuit `/destinations` shows for `name`.
async fn circuit(admin: &str, name: &str) -> String {
    let all = admin_json(admin, "/destinations").await;
    all.as_array()
        .expect("destinations")
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {all}"))["circuit"]
        .as_str()
        .expect("circuit")
        .to_owned()
}

/// Each attempt's status on the event page's timeline for `destination`.
async fn timeline(browser: &Browser, destination: &str) -> Value {
    browser
        .js(&format!(
            "return Array.from(document.querySelectorAll('.timeline[data-destination=\"{destination}\"] li.attempt'))\
             .map(li => li.dataset.status);"
        ))
        .await
}

/// Logs in with the keyboard: types the token and presses Enter; waits for the view.
async fn log_in(browser: &Browser) {
    browser.type_into("#token", TOKEN).await;
    browser.press(browser::ENTER).await;
    assert_eq!(browser.wait_drawn().await, "ready");
}

fn journal_config(dir: &Path, sink: &Sink, bulk: &Sink, flaky: &Stoppable) -> String {
    let retry = |attempts: u32| {
        format!(
            "retry = {{ max_attempts = {attempts}, initial_backoff = \"50ms\", max_backoff = \"200ms\", jitter = \"none\" }}\n"
        )
    };
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nadmin_token = \"{TOKEN}\"\n\
         [queue]\npath = \"{}\"\n\
         [destinations.sink]\nurl = \"{}\"\n{}\
         [destinations.bulk]\nurl = \"{}\"\ncircuit = {{ failures = 1000 }}\n{}\
         [destinations.flaky]\nurl = \"{}\"\ntimeout = \"2s\"\n{}\
         circuit = {{ failures = 3, window = \"10s\", open_for = \"1s\", max_open_for = \"1s\" }}\n\
         [[routes]]\nid = \"hooks\"\npath = \"/hooks\"\ndestinations = [\"sink\"]\ninspect_bodies = true\n\
         verify = {{ preset = \"github\", secrets = [\"{SECRET}\"] }}\n\
         [[routes.plugins]]\nmodule = \"{}\"\nname = \"push-only\"\nconfig = {{ allow_events = [\"push\"] }}\n\
         [[routes]]\nid = \"bulk\"\npath = \"/bulk\"\ndestinations = [\"bulk\"]\n\
         [[routes]]\nid = \"flaky\"\npath = \"/flaky\"\ndestinations = [\"flaky\"]\n",
        dir.join("data").display(),
        sink.url("/in"),
        retry(2),
        bulk.url("/in"),
        retry(1),
        flaky.url(),
        retry(100),
        webhook_router_tests::wasm::module("event_filter").display(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_over_the_journal() {
    let dir = fresh_dir("journal");
    let sink = Sink::start_by_word(Arc::new(AtomicBool::new(true))).await;
    let bulk_healthy = Arc::new(AtomicBool::new(false));
    let bulk = Sink::start_by_word(Arc::clone(&bulk_healthy)).await;
    let mut flaky = Stoppable::new().await;
    let config = dir.join("router.toml");
    let good_config = journal_config(&dir, &sink, &bulk, &flaky);
    std::fs::write(&config, &good_config).expect("write config");
    let router = RouterProcess::start(binary(), &config);
    let admin = router.admin.clone();
    let console = format!("http://{admin}/console");

    // The page's headers.
    let page = client().get(&console).send().await.expect("console");
    assert_eq!(page.status().as_u16(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("csp");
    assert!(
        csp.contains("default-src 'self'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");

    let browser = Browser::start(&dir).await;

    // Without the token: every view and action is refused.
    browser.open(&console).await;
    assert_eq!(browser.wait_drawn().await, "refused", "#overview");
    for hash in [
        "#routes",
        "#destinations",
        "#events",
        "#dead-letters",
        "#event/0190b6a1-0000-7000-8000-000000000000",
    ] {
        browser.view(hash).await;
        assert_eq!(browser.wait_drawn().await, "refused", "{hash}");
        let error = browser.text("#view .error").await.expect("an error");
        assert!(error.starts_with("Refused (401)"), "{hash}: {error}");
    }
    browser.click("#reload").await;
    let refused = browser
        .wait_text("#reload-answer p", |t| t != "Reloading…")
        .await;
    assert!(refused.starts_with("Refused (401)"), "{refused}");
    for (method, path) in [
        ("GET", "/stats"),
        ("GET", "/destinations"),
        ("GET", "/routes"),
        ("GET", "/events"),
        ("GET", "/dead-letters"),
        ("POST", "/dead-letters/replay?all=true"),
        ("DELETE", "/dead-letters?all=true"),
        ("POST", "/reload"),
    ] {
        assert_eq!(
            admin_status(&admin, method, path, None).await,
            401,
            "{method} {path}"
        );
        assert_eq!(
            admin_status(&admin, method, path, Some("wrong")).await,
            401,
            "{method} {path}"
        );
    }
    browser.click("#reload-answer .dismiss").await;
    browser.view("#overview").await;

    // Log in; three events with their timelines, and one full of markup.
    log_in(&browser).await;
    let token_in_storage = browser
        .js("return [sessionStorage.length, document.cookie, location.href]")
        .await;
    assert_eq!(token_in_storage[0], 1, "{token_in_storage}");
    assert_eq!(token_in_storage[1], "", "no cookie: {token_in_storage}");
    assert!(!token_in_storage[2].as_str().expect("url").contains(TOKEN));
    // The bulk route's first, so that the newest events (on the first page) are the others.
    for n in 0..BULK {
        assert_eq!(
            post(&router.ingress, "/bulk", &format!(r#"{{"bulk":{n}}}"#)).await,
            202
        );
    }
    assert_eq!(post(&router.ingress, "/flaky", r#"{"first":1}"#).await, 202);
    let delivered = post_signed(&router.ingress, r#"{"kind":"delivered"}"#, "d-1").await;
    let retried = post_signed(&router.ingress, r#"{"kind":"retried"}"#, "d-2").await;
    let dead = post_signed(&router.ingress, r#"{"kind":"dead"}"#, "d-3").await;
    let xss = post_signed(&router.ingress, XSS_BODY, XSS_DELIVERY).await;
    wait_idle(&admin).await;

    browser.view("#events").await;
    let outcomes = browser
        .js("return Object.fromEntries(Array.from(document.querySelectorAll('tr[data-event]')).map(tr => [tr.dataset.event, tr.dataset.outcome]))")
        .await;
    assert_eq!(outcomes[&delivered], "delivered", "{outcomes}");
    assert_eq!(outcomes[&retried], "delivered", "{outcomes}");
    assert_eq!(outcomes[&dead], "dead_lettered", "{outcomes}");
    assert_eq!(outcomes[&xss], "delivered", "{outcomes}");
    // 30 + 1 + 4 events: the first page holds the newest 25, the next the rest.
    assert_eq!(outcomes.as_object().expect("rows").len(), 25);
    assert_eq!(
        browser
            .js("return document.getElementById('events-next').disabled")
            .await,
        false
    );
    browser.screenshots("events").await;

    // The route filter.
    browser.type_into("#event-filters-route", "hooks").await;
    browser.click("#event-filters button[type=submit]").await;
    browser.wait_drawn().await;
    let routes = browser
        .js("return Array.from(document.querySelectorAll('tr[data-event] td:nth-child(3)')).map(td => td.textContent)")
        .await;
    assert_eq!(
        routes,
        serde_json::json!(["hooks", "hooks", "hooks", "hooks"])
    );

    for (id, statuses, outcome) in [
        (&delivered, vec!["200"], "delivered"),
        (&retried, vec!["500", "200"], "delivered"),
        (&dead, vec!["500", "500"], "dead_lettered"),
    ] {
        browser.view(&format!("#event/{id}")).await;
        let verdicts = browser
            .js("return Array.from(document.querySelectorAll('tr[data-plugin]')).map(tr => [tr.cells[0].textContent, tr.cells[1].textContent])")
            .await;
        assert_eq!(verdicts, serde_json::json!([["push-only", "pass"]]), "{id}");
        assert_eq!(
            timeline(&browser, "sink").await,
            serde_json::json!(statuses),
            "{id}"
        );
        assert_eq!(
            browser
                .text(".timeline[data-destination=sink] h4 .outcome")
                .await
                .as_deref(),
            Some(outcome)
        );
    }
    browser.screenshots("event").await;

    // Markup from the event shows as text and runs nothing.
    browser.view(&format!("#event/{xss}")).await;
    assert_eq!(browser.text("#event-body").await.as_deref(), Some(XSS_BODY));
    let facts = browser.text("#view .facts").await.expect("facts");
    assert!(facts.contains(XSS_DELIVERY), "{facts}");
    browser.view("#events").await;
    let shown = browser
        .js(&format!(
            "return document.querySelector('tr[data-event=\"{xss}\"] .delivery-id').textContent"
        ))
        .await;
    assert_eq!(shown, XSS_DELIVERY);
    let ran = browser
        .js("return [window.__xss === undefined, document.querySelectorAll('#view img, #view script, #view a[href^=\"javascript\"]').length]")
        .await;
    assert_eq!(
        ran,
        serde_json::json!([true, 0]),
        "the payload ran or became markup"
    );

    // Dead letters: filter by destination, select all matching (two pages), replay.
    browser.view("#dead-letters").await;
    browser
        .type_into("#letter-filters-destination", "bulk")
        .await;
    browser.click("#letter-filters button[type=submit]").await;
    browser.wait_drawn().await;
    let first_page = browser
        .js("return [Array.from(document.querySelectorAll('tr[data-letter]')).filter(tr => tr.dataset.destination === 'bulk').length, \
             document.querySelectorAll('tr[data-letter]').length, document.getElementById('letters-next').disabled]")
        .await;
    assert_eq!(
        first_page,
        serde_json::json!([25, 25, false]),
        "two pages of bulk"
    );
    browser.screenshots("dead-letters").await;
    browser.click("#select-all-matching").await;
    browser
        .wait_text("#selection", |t| t.starts_with("All letters matching"))
        .await;
    browser.click("#replay").await;
    let question = browser
        .wait_text("#confirm-text", |t| t.starts_with("Replay "))
        .await;
    let confirmed: usize = question
        .split(' ')
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count in {question:?}"));
    assert_eq!(confirmed, BULK, "{question}");
    assert!(question.contains("destination=bulk"), "{question}");
    bulk_healthy.store(true, Ordering::SeqCst);
    browser.click("#confirm-ok").await;
    let answer = browser
        .wait_text("#letters-answer", |t| t.starts_with("Replayed"))
        .await;
    assert!(
        answer.starts_with(&format!("Replayed {BULK} dead letters")),
        "{answer}"
    );
    wait_idle(&admin).await;
    let arrived = bulk.delivered().len();
    assert_eq!(arrived, confirmed, "delivered at the sink vs confirmed");
    // The other destination's letter stays.
    let left = admin_json(&admin, "/dead-letters").await;
    assert_eq!(left.as_array().expect("letters").len(), 1, "{left}");
    assert_eq!(left[0]["destination"], "sink");

    // A stopped destination's circuit opens in its row within the refresh interval.
    browser.view("#destinations").await;
    browser
        .wait_text("tr[data-destination=flaky] .circuit", |t| t == "closed")
        .await;
    flaky.stop();
    for n in 0..3 {
        assert_eq!(
            post(
                &router.ingress,
                "/flaky",
                &format!(r#"{{"while_down":{n}}}"#)
            )
            .await,
            202
        );
    }
    wait_until(
        "the circuit of flaky to open",
        PATIENCE,
        || circuit(&admin, "flaky"),
        |c| c == "open",
    )
    .await;
    let opened = Instant::now();
    browser
        .wait_text("tr[data-destination=flaky] .circuit", |t| t == "open")
        .await;
    let shown_after = opened.elapsed();
    eprintln!("the row showed the circuit open {shown_after:?} after /destinations did");
    assert!(
        shown_after <= REFRESH + Duration::from_secs(1),
        "the row showed the circuit open {shown_after:?} after it opened (refresh {REFRESH:?})"
    );
    // The backend's age of the oldest held event, in /stats and in the row.
    let stats = admin_json(&admin, "/stats").await;
    let backlog = stats["destinations"]
        .as_array()
        .expect("destinations")
        .iter()
        .find(|d| d["name"] == "flaky")
        .cloned()
        .expect("flaky in /stats");
    assert_eq!(backlog["held"], 3, "{stats}");
    assert!(
        backlog["oldest_event_age_ms"].as_u64().expect("age") > 0,
        "{stats}"
    );
    let oldest = browser
        .text("tr[data-destination=flaky] td[data-label='Oldest event']")
        .await
        .expect("the oldest event cell");
    assert_ne!(oldest, "none held");
    browser.screenshots("destinations").await;
    flaky.start().await;
    browser
        .wait_text("tr[data-destination=flaky] .circuit", |t| t == "closed")
        .await;
    wait_idle(&admin).await;
    assert_eq!(
        flaky.received(),
        4,
        "the first event and the three held while it was down"
    );

    browser.view("#overview").await;
    browser
        .wait_text("[data-stat=delivered] .total", |t| {
            t == format!("{} since start", 3 + 1 + BULK + 3)
        })
        .await;
    browser.screenshots("overview").await;
    browser.view("#routes").await;
    let routes = browser
        .js("return Array.from(document.querySelectorAll('tr[data-route]')).map(tr => tr.dataset.route)")
        .await;
    assert_eq!(routes, serde_json::json!(["hooks", "bulk", "flaky"]));
    browser.screenshots("routes").await;

    // Reload a broken file: the errors show, and the old routes keep serving.
    std::fs::write(
        &config,
        format!("{good_config}[destinations.broken]\nurl = \"ftp://nowhere\"\ncolour = \"red\"\n"),
    )
    .expect("write the broken config");
    browser.click("#reload").await;
    browser
        .wait_text("#reload-answer p", |t| t.starts_with("Failed (400)"))
        .await;
    let shown: Vec<String> = serde_json::from_value(
        browser
            .js("return Array.from(document.querySelectorAll('#reload-answer .errors li')).map(li => li.textContent)")
            .await,
    )
    .expect("errors");
    let refused = client()
        .post(format!("http://{admin}/reload"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("reload")
        .json::<Value>()
        .await
        .expect("json");
    let errors: Vec<String> = serde_json::from_value(refused["errors"].clone()).expect("errors");
    assert!(!errors.is_empty(), "{refused}");
    assert_eq!(shown, errors);
    browser.screenshots("reload").await;
    post_signed(&router.ingress, r#"{"after":"reload"}"#, "d-after").await;
    // delivered, retried (its second attempt), the markup one, and this one.
    assert_eq!(sink.wait_for_delivered(4, PATIENCE).await.len(), 4);

    browser.close().await;
    let (clean, log) = router.stop();
    assert!(clean, "{log:#?}");
}

/// The Events and Dead-letters views over `queue` (a `[queue]` table's keys): a delivered and
/// a dead-lettered event listed, the dead letter selected and replayed to the sink, now up.
async fn events_and_dead_letters_over(browser: &Browser, name: &str, queue: &str) {
    let dir = fresh_dir(name);
    let healthy = Arc::new(AtomicBool::new(true));
    let sink = Sink::start_by_word(Arc::clone(&healthy)).await;
    let config = dir.join("router.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nadmin_token = \"{TOKEN}\"\n\
             [queue]\n{queue}\n\
             [destinations.sink]\nurl = \"{}\"\nretry = {{ max_attempts = 1 }}\n\
             [[routes]]\nid = \"hooks\"\npath = \"/hooks\"\ndestinations = [\"sink\"]\ninspect_bodies = true\n",
            sink.url("/in")
        ),
    )
    .expect("write config");
    let router = RouterProcess::start(binary(), &config);
    assert_eq!(
        post(&router.ingress, "/hooks", r#"{"kind":"first"}"#).await,
        202
    );
    wait_idle(&router.admin).await;
    healthy.store(false, Ordering::SeqCst);
    assert_eq!(
        post(&router.ingress, "/hooks", r#"{"kind":"second"}"#).await,
        202
    );
    wait_idle(&router.admin).await;

    browser
        .open(&format!("http://{}/console#events", router.admin))
        .await;
    if browser.wait_drawn().await == "refused" {
        log_in(browser).await;
    }
    let outcomes = browser
        .js("return Array.from(document.querySelectorAll('tr[data-event]')).map(tr => tr.dataset.outcome)")
        .await;
    assert_eq!(
        outcomes,
        serde_json::json!(["dead_lettered", "delivered"]),
        "{name}"
    );

    browser.view("#dead-letters").await;
    assert_eq!(
        browser
            .js("return document.querySelectorAll('tr[data-letter]').length")
            .await,
        1,
        "{name}"
    );
    // With the keyboard: Space ticks the letter, Enter presses Replay, and in the dialog
    // (which opens on Cancel) Tab moves to Confirm.
    browser.focus("tr[data-letter] input.select").await;
    browser.press(" ").await;
    browser
        .wait_text("#selection", |t| t == "1 selected.")
        .await;
    browser.focus("#replay").await;
    browser.press(browser::ENTER).await;
    browser
        .wait_text("#confirm-text", |t| t == "Replay 1 selected dead letters?")
        .await;
    healthy.store(true, Ordering::SeqCst);
    browser.press(browser::TAB).await;
    assert_eq!(
        browser.js("return document.activeElement.id").await,
        "confirm-ok"
    );
    browser.press(browser::ENTER).await;
    browser
        .wait_text("#letters-answer", |t| t.starts_with("Replayed 1 of 1"))
        .await;
    let delivered = sink.wait_for_delivered(2, PATIENCE).await;
    assert_eq!(delivered.len(), 2, "{name}");
    assert!(delivered[1].body.ends_with(br#""second"}"#), "{name}");
    wait_idle(&router.admin).await;
    let (clean, log) = router.stop();
    assert!(clean, "{name}: {log:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_dead_letters_over_memory_and_nats() {
    let dir = fresh_dir("backends");
    let browser = Browser::start(&dir).await;
    events_and_dead_letters_over(&browser, "memory", "backend = \"memory\"").await;
    let nats = NatsServer::start(&dir.join("nats-store"));
    events_and_dead_letters_over(
        &browser,
        "nats",
        &format!(
            "backend = \"nats\"\nurl = \"{}\"\nack_wait = \"2s\"\nmax_bytes = \"256MiB\"",
            nats.url()
        ),
    )
    .await;
    browser.close().await;
}
