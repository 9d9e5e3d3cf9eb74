//! What access control costs each request: the session check (JWT, live session, the account
//! as stored now) and the per-user request budget, measured two ways in one run.
//!
//! 1. In process, on a real store in a temporary directory: `AuthService::authenticate` and
//!    `AuthService::charge_request`, each call timed alone (p50/p99). This is the latency the
//!    checks add to a request; "before" them a request paid nothing for them.
//! 2. Over real HTTP against `enclave serve` (one keep-alive connection, requests one after
//!    another): `GET /health` (no authentication), `GET /api/v1/auth/me` (session check) and
//!    `GET /v1/models` (session check and request budget), p50/p99 each.
//!
//! ```text
//! cargo bench --bench auth
//! ```
//!
//! `BENCH_CALLS` (default 100000 in process, a twentieth of it over HTTP). Under `cargo test`
//! (no `--bench`) it runs a few calls, to keep the harness itself tested.

mod common;

use std::time::{Duration, Instant};

use common::{enclave_serve, free_port, register_and_sign_in, wait_ready, Process};
use enclave::auth::limits::LimitSettings;
use enclave::auth::{AuthService, AuthSettings, Registration, SecondFactor};
use enclave::store::{SessionClient, Store, UserRole};

/// p50 and p99 of `samples`, in microseconds.
fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6;
    (at(0.50), at(0.99))
}

fn print_row(what: &str, samples: Vec<Duration>) {
    let calls = samples.len();
    let (p50, p99) = percentiles(samples);
    println!("| {what} | {calls} | {p50:.1} | {p99:.1} |");
}

async fn in_process(calls: usize) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::open(&dir.path().join("enclave.redb")).expect("the store opens");
    let auth = AuthService::new(
        store,
        AuthSettings {
            access_ttl: Duration::from_secs(900),
            refresh_ttl: Duration::from_secs(7 * 86400),
            session_lifetime: Duration::from_secs(30 * 86400),
            registration: enclave::store::RegistrationPolicy::Open,
            // A budget that is never spent: the cost of taking a token, not of refusing.
            limits: LimitSettings {
                requests_per_minute: u32::MAX / 2,
                request_burst: u32::MAX / 2,
                failures_per_minute: 20,
            },
        },
    )
    .expect("the auth service starts");
    let password = "a long bench password".to_string();
    // Other accounts in the store, so that the account read is not from a one-row table.
    let accounts = if calls >= 10_000 { 200 } else { 5 };
    for i in 0..accounts {
        auth.create_user(
            Registration {
                email: format!("user{i}@example.com"),
                username: format!("user{i}"),
                password: password.clone(),
            },
            UserRole::User,
        )
        .await
        .expect("an account");
    }
    let (user, tokens) = auth
        .login("user3", password, SecondFactor::Missing, SessionClient::default())
        .await
        .expect("sign in");
    let token = tokens.access_token;
    auth.authenticate(&token).expect("the token is good");
    let mut checks = Vec::with_capacity(calls);
    let mut charges = Vec::with_capacity(calls);
    for _ in 0..calls {
        let start = Instant::now();
        let caller = auth.authenticate(&token).expect("the token is good");
        checks.push(start.elapsed());
        let start = Instant::now();
        auth.charge_request(caller.user_id).expect("within the budget");
        charges.push(start.elapsed());
    }
    assert_eq!(auth.authenticate(&token).map(|c| c.user_id).ok(), Some(user.id));
    println!("In process (one thread):\n");
    println!("| call | calls | p50 µs | p99 µs |\n|---|---|---|---|");
    print_row("authenticate (JWT, live session, account read)", checks);
    print_row("charge_request (per-user token bucket)", charges);
}

async fn over_http(calls: usize) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let model = dir.path().join("tiny.gguf");
    enclave::engine::tiny::write_tiny_llama(&model, 7).expect("the tiny model");
    let port = free_port();
    let mut command = enclave_serve(dir.path(), &model, "tiny", port);
    // The request budget on (the shared helper turns it off), large enough never to refuse.
    command
        .env("ENCLAVE_RATE_LIMIT_PER_MINUTE", "1000000000")
        .env("ENCLAVE_RATE_LIMIT_BURST", "1000000000");
    let mut server = Process(command.spawn().expect("start enclave"));
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_ready(&http, &format!("{base}/ready"), &mut server.0).await;
    let token = register_and_sign_in(&http, &base).await;
    println!("\nOver HTTP (one keep-alive connection, sequential requests):\n");
    println!("| request | calls | p50 µs | p99 µs |\n|---|---|---|---|");
    for (what, path, signed_in) in [
        ("GET /health (no authentication)", "/health", false),
        ("GET /api/v1/auth/me (session check)", "/api/v1/auth/me", true),
        ("GET /v1/models (session check + request budget)", "/v1/models", true),
    ] {
        let mut samples = Vec::with_capacity(calls);
        for i in 0..calls + calls / 10 {
            let mut request = http.get(format!("{base}{path}"));
            if signed_in {
                request = request.bearer_auth(&token);
            }
            let start = Instant::now();
            let response = request.send().await.expect("an answer");
            assert!(response.status().is_success(), "{path}: {}", response.status());
            response.bytes().await.expect("the body");
            // The first tenth warms the connection and the caches.
            if i >= calls / 10 {
                samples.push(start.elapsed());
            }
        }
        print_row(what, samples);
    }
}

#[tokio::main]
async fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let calls: usize = std::env::var("BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let calls = if bench { calls } else { 200 };
    in_process(calls).await;
    over_http((calls / 20).max(10)).await;
}
