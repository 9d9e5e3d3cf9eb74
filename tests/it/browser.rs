//! Debian's headless Chromium driven through chromedriver (fantoccini): the web UI's
//! end-to-end tests. Screenshots go to `screenshots/` at the repository root.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// How long a UI condition may take to hold.
const PATIENCE: Duration = Duration::from_secs(30);

/// WebDriver's key code for Enter.
pub const ENTER: &str = "\u{E007}";
/// WebDriver's key code for Escape.
pub const ESCAPE: &str = "\u{E00C}";
/// WebDriver's key code for Shift.
pub const SHIFT: &str = "\u{E008}";

/// Whether the UI tests can run here: chromedriver and Chromium installed.
pub fn available() -> Result<(), String> {
    for tool in ["chromedriver", "chromium"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Err(format!(
                "{tool} is not installed (apt-get install chromium chromium-driver)"
            ));
        }
    }
    Ok(())
}

/// Skips a UI test where the tools or the built UI are missing, unless the run requires the UI
/// tests (`ENCLAVE_REQUIRE_UI_TESTS=1`, set by scripts/test.sh and so by CI): then it fails.
pub fn skip_or_fail(reason: &str) -> bool {
    if std::env::var("ENCLAVE_REQUIRE_UI_TESTS").is_ok_and(|v| v == "1") {
        panic!("the UI tests are required but cannot run: {reason}");
    }
    eprintln!("UI test skipped: {reason}");
    true
}

/// A browser session; chromedriver is killed when it is dropped.
pub struct Browser {
    /// The WebDriver client.
    pub client: Client,
    /// The chromedriver process.
    driver: Child,
    /// Screenshot names are prefixed with this.
    prefix: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The folder screenshots are saved in.
pub fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("screenshots");
    std::fs::create_dir_all(&dir).expect("create screenshots/");
    dir
}

impl Browser {
    /// Starts chromedriver and a headless Chromium window of `width` x `height`.
    pub async fn start(prefix: &str, width: u32, height: u32) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-extensions",
                    format!("--window-size={width},{height}"), "--hide-scrollbars", "--force-device-scale-factor=1",
                    "--lang=en-US",
                ],
            }),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            enclave::server::install_crypto_provider();
            match ClientBuilder::rustls()
                .expect("rustls client")
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => break client,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("cannot start Chromium through chromedriver: {e}"),
            }
        };
        client.set_window_size(width, height).await.expect("window size");
        Browser {
            client,
            driver,
            prefix: prefix.to_owned(),
        }
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    /// Runs JavaScript and returns its value.
    pub async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.expect("run JavaScript")
    }

    /// Waits until the JavaScript expression `condition` is true.
    pub async fn wait_for(&self, what: &str, condition: &str) {
        let script = format!("return !!({condition});");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if self.js(&script).await == json!(true) {
                return;
            }
            if Instant::now() > deadline {
                self.screenshot(&format!("FAILED-{}", what.replace(' ', "-"))).await;
                let body = self.js("return document.body.innerText").await;
                panic!("timed out waiting for {what} ({condition}); page text: {body}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The element for `css` (waiting for it to exist).
    pub async fn find(&self, css: &str) -> Element {
        self.wait_for(&format!("element {css}"), &format!("document.querySelector({css:?})"))
            .await;
        self.client.find(Locator::Css(css)).await.expect("find element")
    }

    /// Runs `action` on the element for `css`, finding it again when the page re-rendered it
    /// in between (a stale reference).
    async fn with_element<F, Fut>(&self, css: &str, what: &str, action: F)
    where
        F: Fn(Element) -> Fut,
        Fut: std::future::Future<Output = Result<(), fantoccini::error::CmdError>>,
    {
        for attempt in 0..5 {
            let element = self.find(css).await;
            match action(element).await {
                Ok(()) => return,
                Err(e) if attempt < 4 && e.to_string().contains("stale") => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("{what} {css}: {e}"),
            }
        }
    }

    /// Clicks the element for `css`.
    pub async fn click(&self, css: &str) {
        self.with_element(css, "click", |e| async move { e.click().await })
            .await;
    }

    /// Types `text` into the element for `css`.
    pub async fn type_into(&self, css: &str, text: &str) {
        self.with_element(css, "type into", |e| async move { e.send_keys(text).await })
            .await;
    }

    /// Clears the field for `css` and types `text`.
    pub async fn fill(&self, css: &str, text: &str) {
        self.with_element(css, "fill", |e| async move {
            e.clear().await?;
            e.send_keys(text).await
        })
        .await;
    }

    /// The visible text of the element for `css`.
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.expect("text")
    }

    /// Saves a screenshot as `screenshots/{prefix}-{name}.png`.
    pub async fn screenshot(&self, name: &str) {
        if let Ok(png) = self.client.screenshot().await {
            let path = screenshot_dir().join(format!("{}-{name}.png", self.prefix));
            let _ = std::fs::write(path, png);
        }
    }

    /// Resizes the window.
    pub async fn resize(&self, width: u32, height: u32) {
        self.client.set_window_size(width, height).await.expect("resize");
    }

    /// Ends the session.
    pub async fn close(self) {
        let client = self.client.clone();
        let _ = client.close().await;
    }
}
