//! The web UI's budgets, measured in Debian's headless Chromium against the release server:
//! bytes transferred on first load (compressed), time to interactive from a warm server, long
//! tasks while the sidebar renders and scrolls through many conversations, and the time from a
//! token's arrival to the frame that shows it.
//!
//! ```text
//! scripts/build-web.sh && cargo bench --bench web_ui
//! ```
//!
//! `BENCH_CONVERSATIONS` sets the sidebar's size (default 10000). Under `cargo test` (no
//! `--bench`) it runs once with 300 conversations, to keep the measuring code working.
//! Needs chromium and chromium-driver (scripts/test.sh installs them) and a server built with
//! the UI.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

mod common;
use common::{enclave_serve, free_port, register_and_sign_in, wait_ready, Process, BENCH_PASSWORD, BENCH_USER};

/// Starts the server with the tiny generated model; returns it and its base URL.
async fn start_server(dir: &std::path::Path) -> (Process, String) {
    let model = dir.join("tiny.gguf");
    enclave::engine::tiny::write_tiny_llama(&model, 3).unwrap();
    let port = free_port();
    let mut child = Process(enclave_serve(dir, &model, "tiny", port).spawn().expect("start enclave"));
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&reqwest::Client::new(), &format!("{base}/ready"), &mut child.0).await;
    (child, base)
}

/// Creates the benchmark account and `count` conversations through the API.
async fn seed(base: &str, count: usize) {
    let http = reqwest::Client::new();
    let token = register_and_sign_in(&http, base).await;
    let started = Instant::now();
    for i in 0..count {
        let title = format!("Conversation {i}: notes about project {}", i % 97);
        let r = http
            .post(format!("{base}/api/v1/conversations"))
            .bearer_auth(&token)
            .json(&json!({ "title": title }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    eprintln!(
        "seeded {count} conversations in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Starts chromedriver and a headless Chromium.
async fn start_browser() -> (Process, Client) {
    let port = free_port();
    let driver = Process(
        Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver (apt-get install chromium-driver)"),
    );
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({ "binary": "/usr/bin/chromium", "args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--window-size=1280,860"
        ]}),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        enclave::server::install_crypto_provider();
        match ClientBuilder::rustls()
            .unwrap()
            .capabilities(capabilities.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(client) => return (driver, client),
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => panic!("cannot start Chromium: {e}"),
        }
    }
}

/// Waits until the JavaScript `condition` holds.
async fn wait_for(client: &Client, condition: &str) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if client
            .execute(&format!("return !!({condition})"), vec![])
            .await
            .unwrap()
            == json!(true)
        {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {condition}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A performance mark's time, in milliseconds from navigation start.
async fn mark(client: &Client, name: &str) -> f64 {
    client
        .execute(
            &format!(
                "const m = performance.getEntriesByName({name:?}); return m.length ? m[m.length - 1].startTime : null"
            ),
            vec![],
        )
        .await
        .unwrap()
        .as_f64()
        .unwrap_or(f64::NAN)
}

/// The value below which `fraction` of `values` lie (nearest rank).
fn percentile(mut values: Vec<f64>, fraction: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = ((values.len() as f64 * fraction).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

fn median(values: Vec<f64>) -> f64 {
    percentile(values, 0.5)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let count: usize = if bench {
        std::env::var("BENCH_CONVERSATIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000)
    } else {
        300
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let (_server, base) = start_server(dir.path()).await;
        let page = reqwest::get(format!("{base}/")).await.unwrap().text().await.unwrap();
        if !page.contains("/boot.") {
            println!("web_ui bench: the server has no web UI (run scripts/build-web.sh, then build again); skipped");
            return;
        }
        if Command::new("chromedriver").arg("--version").output().is_err() {
            println!("web_ui bench: chromedriver is not installed; skipped");
            return;
        }
        seed(&base, count).await;
        let (_driver, client) = start_browser().await;
        // Loading thousands of conversations page by page takes a while.
        client
            .update_timeouts(fantoccini::wd::TimeoutConfiguration::new(
                Some(Duration::from_secs(600)),
                None,
                None,
            ))
            .await
            .unwrap();

        // First load (cold cache): every byte the page needs to become interactive.
        client.goto(&format!("{base}/login")).await.unwrap();
        wait_for(&client, "performance.getEntriesByName('enclave-interactive').length").await;
        let bytes = client
            .execute(
                "const nav = performance.getEntriesByType('navigation')[0];
                 const res = performance.getEntriesByType('resource');
                 return [nav.transferSize + res.reduce((s, r) => s + r.transferSize, 0),
                         res.map(r => [r.name.replace(location.origin, ''), r.transferSize, r.decodedBodySize])];",
                vec![],
            )
            .await
            .unwrap();
        let total = bytes[0].as_f64().unwrap_or(0.0);
        println!("first load: {:.0} KiB transferred (compressed, headers included)", total / 1024.0);
        for entry in bytes[1].as_array().into_iter().flatten() {
            println!("  {} {} B over the wire ({} B decoded)", entry[0], entry[1], entry[2]);
        }
        let cold_tti = mark(&client, "enclave-interactive").await;
        // Warm: the server is up and the browser has the immutable files.
        let mut warm = Vec::new();
        for _ in 0..5 {
            client.goto(&format!("{base}/login")).await.unwrap();
            wait_for(&client, "performance.getEntriesByName('enclave-interactive').length").await;
            warm.push(mark(&client, "enclave-interactive").await);
        }
        println!(
            "time to interactive: cold {cold_tti:.0} ms, warm median {:.0} ms (max {:.0})",
            median(warm.clone()),
            warm.iter().cloned().fold(0.0, f64::max)
        );

        // Sign in; long tasks while the list renders and is scrolled to its end.
        client.find(Locator::Css("#login")).await.unwrap().send_keys(BENCH_USER).await.unwrap();
        client.find(Locator::Css("#password")).await.unwrap().send_keys(BENCH_PASSWORD).await.unwrap();
        client
            .execute(
                "window.__long = []; new PerformanceObserver(l => l.getEntries().forEach(e => window.__long.push(e.duration))).observe({type: 'longtask', buffered: false});",
                vec![],
            )
            .await
            .unwrap();
        let started = Instant::now();
        client.find(Locator::Css("button[type=submit]")).await.unwrap().click().await.unwrap();
        wait_for(&client, "document.querySelectorAll('.row').length >= 10").await;
        let first_rows = started.elapsed();
        let scrolled = Instant::now();
        let loaded = client
            .execute(
                &format!(
                    "const list = document.querySelector('.conversation-list');
                     const deadline = performance.now() + 600000;
                     return new Promise(done => {{
                       const step = () => {{
                         list.scrollTop = list.scrollHeight;
                         if (Number(document.querySelector('.rows').dataset.count) >= {count}) done(true);
                         else if (performance.now() > deadline) done(false);
                         else requestAnimationFrame(step);
                       }};
                       step();
                     }});"
                ),
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(loaded, Value::Bool(true), "the list never loaded all {count} conversations");
        let scroll_time = scrolled.elapsed();
        // Scroll back up through the whole list, a screen at a time.
        client
            .execute(
                "const list = document.querySelector('.conversation-list');
                 return new Promise(done => {
                   const step = () => {
                     list.scrollTop -= list.clientHeight;
                     if (list.scrollTop <= 0) done(true); else requestAnimationFrame(step);
                   };
                   step();
                 });",
                vec![],
            )
            .await
            .unwrap();
        // The list is windowed: only rows near the visible part are in the page.
        let rows_in_page = client
            .execute("return document.querySelectorAll('.row').length", vec![])
            .await
            .unwrap()
            .as_u64()
            .unwrap_or(0);
        assert!(
            rows_in_page > 0 && (rows_in_page as usize) < count.min(200),
            "{rows_in_page} rows in the page"
        );
        let long: Vec<f64> = client
            .execute("return window.__long", vec![])
            .await
            .unwrap()
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        println!(
            "sidebar, {count} conversations: first rows after {:.0} ms; loading all while scrolling down {:.1} s; \
             long tasks (over 50 ms): {}, longest {:.0} ms; {rows_in_page} rows in the page at the top",
            first_rows.as_secs_f64() * 1000.0,
            scroll_time.as_secs_f64(),
            long.len(),
            long.iter().cloned().fold(0.0, f64::max)
        );

        // First token: from its arrival to the frame that shows it.
        let answers = if bench { 20 } else { 3 };
        let mut delays = Vec::new();
        for i in 0..answers {
            client.goto(&format!("{base}/c")).await.unwrap();
            wait_for(&client, "document.querySelector('.welcome') && document.querySelector('#composer-input')").await;
            let input = client.find(Locator::Css("#composer-input")).await.unwrap();
            input.send_keys(&format!("Question number {i}\u{E007}")).await.unwrap();
            wait_for(&client, "performance.getEntriesByName('enclave-first-token-shown').length").await;
            let received = mark(&client, "enclave-first-token-received").await;
            let shown = mark(&client, "enclave-first-token-shown").await;
            delays.push(shown - received);
            wait_for(&client, "!document.querySelector('.streaming')").await;
        }
        println!(
            "first token, arrival to frame ({answers} answers): median {:.1} ms, p90 {:.1} ms, max {:.1} ms",
            median(delays.clone()),
            percentile(delays.clone(), 0.9),
            delays.iter().cloned().fold(0.0, f64::max)
        );
        let _ = client.close().await;
    });
}
