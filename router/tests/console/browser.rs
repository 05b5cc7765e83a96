//! Debian's headless chromium, driven through its chromedriver (WebDriver) with fantoccini:
//! a fresh profile per browser, the flags that work in a sandbox-less container, and the few
//! steps the console tests take (open, click, type, wait for text, run a script, screenshot).
//!
//! A missing browser fails the test with what to install: the suite installs both packages
//! (`tests/servers.sh`), so a test that cannot find them must not pass.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use webhook_router_tests::numbered::PATIENCE;
use webhook_router_tests::wait::wait_until;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The Tab key, in WebDriver's key codes.
pub const TAB: &str = "\u{E004}";
/// The Enter key, in WebDriver's key codes.
pub const ENTER: &str = "\u{E007}";

/// The desktop and phone widths the console must be readable at.
pub const WIDTHS: [(u32, u32); 2] = [(1280, 900), (390, 844)];

/// A headless chromium and its chromedriver, both stopped on drop.
pub struct Browser {
    client: Client,
    driver: Child,
}

impl Browser {
    /// Starts chromedriver on a free port and a chromium session with a fresh profile under
    /// `dir`, `WIDTHS[0]` wide.
    pub async fn start(dir: &Path) -> Browser {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(path).is_file(),
                "{path} is missing: the console tests drive Debian's headless chromium; \
                 install the package {package} (tests/servers.sh does, as root)"
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let http = webhook_router_tests::numbered::client();
        wait_until(
            "chromedriver to be ready",
            PATIENCE,
            || http.get(format!("{url}/status")).send(),
            |answer| answer.is_ok(),
        )
        .await
        .expect("chromedriver's status");
        let profile: PathBuf = dir.join("chromium-profile");
        let _ = std::fs::remove_dir_all(&profile);
        let (width, height) = WIDTHS[0];
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&url)
            .await
            .expect("a chromium session through chromedriver");
        Browser { client, driver }
    }

    /// Opens `url` and waits until the console has drawn its view (ready, refused or failed).
    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("open the page");
        self.wait_drawn().await;
    }

    /// Goes to the view `hash` (`#events`, ...) of the open console and waits until it is drawn.
    pub async fn view(&self, hash: &str) {
        self.js(&format!(
            "document.getElementById('view').dataset.state = 'loading'; location.hash = {};",
            json!(hash)
        ))
        .await;
        self.wait_drawn().await;
    }

    /// Waits until the view is drawn (its `data-state` is no longer `loading`); the state.
    pub async fn wait_drawn(&self) -> String {
        wait_until(
            "the console's view to be drawn",
            PATIENCE,
            || self.js("return document.getElementById('view').dataset.state"),
            |state| state.as_str().is_some_and(|s| s != "loading"),
        )
        .await
        .as_str()
        .expect("state")
        .to_owned()
    }

    /// Runs `script` in the page; what it returns.
    pub async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|error| panic!("script {script:?}: {error}"))
    }

    /// The text of the first element `css` matches (`None` if there is none).
    pub async fn text(&self, css: &str) -> Option<String> {
        self.js(&format!(
            "const e = document.querySelector({}); return e ? e.textContent : null;",
            json!(css)
        ))
        .await
        .as_str()
        .map(str::to_owned)
    }

    /// Waits until the text at `css` satisfies `done`; that text.
    pub async fn wait_text(&self, css: &str, done: impl Fn(&str) -> bool) -> String {
        wait_until(
            &format!("the text at {css}"),
            PATIENCE,
            || self.text(css),
            |text| text.as_deref().is_some_and(&done),
        )
        .await
        .expect("text")
    }

    /// Clicks the element `css` matches, as a user does (WebDriver element click).
    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("find {css}: {error}"))
            .click()
            .await
            .unwrap_or_else(|error| panic!("click {css}: {error}"));
    }

    /// Types `text` into the field `css` matches (emptied first).
    pub async fn type_into(&self, css: &str, text: &str) {
        let field = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("find {css}: {error}"));
        field.clear().await.expect("clear");
        field.send_keys(text).await.expect("type");
    }

    /// Presses `keys` (WebDriver key codes allowed: [`TAB`], [`ENTER`]) on the element that
    /// has the focus, as a keyboard user does.
    pub async fn press(&self, keys: &str) {
        self.client
            .active_element()
            .await
            .expect("the focused element")
            .send_keys(keys)
            .await
            .expect("press keys");
    }

    /// Gives the element `css` matches the focus.
    pub async fn focus(&self, css: &str) {
        self.js(&format!("document.querySelector({}).focus()", json!(css)))
            .await;
    }

    /// Sets the window's size.
    pub async fn resize(&self, (width, height): (u32, u32)) {
        self.client
            .set_window_size(width, height)
            .await
            .expect("resize the window");
    }

    /// Writes a PNG of the page to `target/console-screenshots/{name}-{width}.png`, for each
    /// of [`WIDTHS`], and leaves the window at the desktop width.
    pub async fn screenshots(&self, name: &str) {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("target/")
            .join("console-screenshots");
        std::fs::create_dir_all(&dir).expect("create the screenshot directory");
        for size in WIDTHS {
            self.resize(size).await;
            let png = self.client.screenshot().await.expect("screenshot");
            std::fs::write(dir.join(format!("{name}-{}.png", size.0)), png)
                .expect("write the screenshot");
        }
        self.resize(WIDTHS[0]).await;
    }

    /// Ends the session and stops the driver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
