//! Brute force and abuse over real HTTP: account lockout (and the same answers for a name of
//! no account), the failure budget per client address (behind a trusted proxy too), the
//! per-user request budget on chat and /v1, and a flood of logins against the bounded hashing
//! pool.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{Client, Options, Reply, TestServer};

fn options(env: &[(&'static str, &str)]) -> Options {
    Options {
        env: env.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        ..Options::default()
    }
}

/// A login from `address` (sent as `X-Forwarded-For`, which only a trusted proxy's peer may set).
async fn login_from(client: &Client, address: &str, login: &str, password: &str) -> Reply {
    let builder = client
        .request(reqwest::Method::POST, "/api/v1/auth/login")
        .header("x-forwarded-for", address)
        .json(&json!({"username": login, "password": password}));
    client.send(builder).await
}

fn retry_after(reply: &Reply) -> u64 {
    reply
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a Retry-After header: {:?}", reply.headers))
}

/// The value of a counter in a Prometheus scrape (0 when absent).
fn counter(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .filter(|line| line.starts_with(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn fifty_wrong_passwords_lock_the_account_a_name_of_no_account_answers_the_same_and_others_log_in() {
    let mut server = TestServer::start_with(options(&[
        ("ENCLAVE_TRUSTED_PROXIES", "127.0.0.1"),
        // This test watches the account lock; the address budget has its own test.
        ("ENCLAVE_LOGIN_FAILURES_PER_MINUTE", "1000"),
    ]));
    let mut alice = Client::new(&server);
    alice.signup("alice").await;
    let mut bob = Client::new(&server);
    bob.signup("bob").await;
    let hashes_before = counter(&alice.metrics().await, "enclave_password_hashes_total");

    // Bob keeps logging in from his own address while the attack runs.
    let bob_logins = {
        let bob = Client::new(&server);
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..5 {
                statuses.push(login_from(&bob, "198.51.100.2", "bob", "bob-password-123").await.status);
            }
            statuses
        })
    };
    let attacker = Client::new(&server);
    let mut answers = Vec::new();
    for name in ["alice", "nobody"] {
        let mut codes = Vec::new();
        for i in 0..50 {
            let r = login_from(&attacker, "203.0.113.7", name, &format!("guess-{i}-password")).await;
            if r.code() == "ACCOUNT_LOCKED" {
                assert_eq!(r.status, 429);
                let wait = retry_after(&r);
                assert!((1..=60).contains(&wait), "the first lock lasts a minute: {wait}");
            } else {
                assert_eq!((r.status, r.code()), (401, "INVALID_CREDENTIALS"));
            }
            codes.push(r.code().to_string());
        }
        answers.push(codes);
    }
    assert_eq!(answers[0][..5], vec!["INVALID_CREDENTIALS"; 5]);
    assert_eq!(answers[0][5..], vec!["ACCOUNT_LOCKED"; 45]);
    assert_eq!(
        answers[0], answers[1],
        "a name of no account answers exactly like a real one"
    );
    assert_eq!(
        bob_logins.await.unwrap(),
        vec![200; 5],
        "other users log in during the attack"
    );
    // Locked attempts are refused before any hashing: the attack cost 5 checks per name (and
    // one hash of the dummy password), so it cannot slow other logins down.
    let hashes = counter(&alice.metrics().await, "enclave_password_hashes_total") - hashes_before;
    assert!(hashes <= (5 + 5 + 1 + 5) as f64, "{hashes} password hashes");

    // The right password is refused too while the lock lasts, also after a restart.
    let r = login_from(&attacker, "198.51.100.9", "alice", "alice-password-123").await;
    assert_eq!((r.status, r.code()), (429, "ACCOUNT_LOCKED"));
    server.restart();
    let alice = Client::new(&server);
    let r = login_from(&alice, "198.51.100.9", "alice", "alice-password-123").await;
    assert_eq!(
        (r.status, r.code()),
        (429, "ACCOUNT_LOCKED"),
        "the lock is stored with the account"
    );

    // An administrator ends it from the command line (with the server stopped).
    server.terminate();
    let out = server.command(&["user", "unlock", "alice@example.com"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = server.command(&["user", "unlock", "ghost"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no account has"));
    server.restart();
    let alice = Client::new(&server);
    let r = login_from(&alice, "198.51.100.9", "alice", "alice-password-123").await;
    assert_eq!(r.status, 200, "unlocked: {:?}", r.body);
    // A good login clears the count: four more failures do not lock.
    for _ in 0..4 {
        let r = login_from(&alice, "198.51.100.9", "alice", "wrong-password-123").await;
        assert_eq!(r.code(), "INVALID_CREDENTIALS");
    }
    let r = login_from(&alice, "198.51.100.9", "alice", "alice-password-123").await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn an_address_that_keeps_failing_is_refused_while_its_good_logins_never_count() {
    let server = TestServer::start_with(options(&[("ENCLAVE_LOGIN_FAILURES_PER_MINUTE", "5")]));
    let mut carol = Client::new(&server);
    carol.signup("carol").await;
    let good = json!({"username": "carol", "password": "carol-password-123"});
    for _ in 0..10 {
        assert_eq!(carol.post("/api/v1/auth/login", good.clone()).await.status, 200);
    }
    // Five failures of three kinds (different names, so no account locks).
    for name in ["x1", "x2"] {
        let r = carol
            .post(
                "/api/v1/auth/login",
                json!({"username": name, "password": "some-password-1"}),
            )
            .await;
        assert_eq!(r.code(), "INVALID_CREDENTIALS");
    }
    for name in ["carol", "CAROL"] {
        let r = carol
            .post(
                "/api/v1/auth/register",
                json!({"email": "carol@example.com", "username": name, "password": "another-password-1"}),
            )
            .await;
        assert_eq!(r.status, 409, "{:?}", r.body);
    }
    let r = carol
        .put(
            "/api/v1/auth/password/change",
            json!({"current_password": "not-my-password", "new_password": "brand-new-password-1"}),
        )
        .await;
    assert_eq!(r.code(), "INVALID_CREDENTIALS");
    // Now every attempt from the address is refused, the right password too, and a forged
    // X-Forwarded-For from a peer that is not a trusted proxy changes nothing.
    let r = carol.post("/api/v1/auth/login", good.clone()).await;
    assert_eq!((r.status, r.code()), (429, "RATE_LIMITED"), "{:?}", r.body);
    let wait = retry_after(&r);
    assert!((1..=12).contains(&wait), "one failure drains in 12 s: {wait}");
    let r = login_from(&carol, "203.0.113.50", "carol", "carol-password-123").await;
    assert_eq!(r.code(), "RATE_LIMITED");
    let r = carol
        .post(
            "/api/v1/auth/register",
            json!({"email": "dave@example.com", "username": "dave", "password": "dave-password-123"}),
        )
        .await;
    assert_eq!(r.code(), "RATE_LIMITED");
    // Signed-in work is not affected.
    assert_eq!(carol.get("/api/v1/auth/me").await.status, 200);
    assert!(
        counter(
            &carol.metrics().await,
            "enclave_limit_refusals_total{limit=\"address_failures\"}"
        ) >= 3.0
    );
}

#[tokio::test]
async fn chat_and_v1_requests_beyond_a_users_burst_are_refused_with_retry_after() {
    let server = TestServer::start_with(options(&[
        ("ENCLAVE_RATE_LIMIT_PER_MINUTE", "2"),
        ("ENCLAVE_RATE_LIMIT_BURST", "3"),
    ]));
    let mut erin = Client::new(&server);
    erin.signup("erin").await;
    let mut frank = Client::new(&server);
    frank.signup("frank").await;
    let conversation = erin.new_conversation(json!({})).await;
    for _ in 0..3 {
        assert_eq!(erin.get("/v1/models").await.status, 200);
    }
    let refused = erin.get("/v1/models").await;
    assert_eq!((refused.status, refused.code()), (429, "RATE_LIMITED"));
    let wait = retry_after(&refused);
    assert!((1..=30).contains(&wait), "a token comes back every 30 s: {wait}");
    // The budget is shared by /v1 and chat, and is per user.
    let r = erin
        .post(
            &format!("/api/v1/conversations/{conversation}/messages"),
            json!({"content": "hello"}),
        )
        .await;
    assert_eq!(r.code(), "RATE_LIMITED");
    let r = erin
        .post(
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}),
        )
        .await;
    assert_eq!(r.code(), "RATE_LIMITED");
    assert_eq!(frank.get("/v1/models").await.status, 200);
    // Reading is not charged; an anonymous request is still a 401, not a 429.
    assert_eq!(erin.get("/api/v1/conversations").await.status, 200);
    let anonymous = Client::new(&server).get("/v1/models").await;
    assert_eq!(anonymous.status, 401);
}

/// The most the server's resident memory may grow while 300 logins arrive at once (measured:
/// 2 MiB). Unbounded, each concurrent argon2 check holds 19 MiB: 6.6 GiB measured.
const FLOOD_MEMORY_GROWTH_MAX: u64 = 128 << 20;

/// The peak resident memory of a process (VmHWM), in bytes.
fn peak_memory(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib << 10
}

#[tokio::test]
async fn three_hundred_concurrent_logins_keep_memory_bounded_and_are_answered_or_refused() {
    let server = TestServer::start_with(options(&[("ENCLAVE_LOGIN_FAILURES_PER_MINUTE", "0")]));
    let mut grace = Client::new(&server);
    grace.signup("grace").await;
    let before = peak_memory(server.pid());
    let http = reqwest::Client::new();
    let url = server.url("/api/v1/auth/login");
    let attempts = (0..300).map(|i| {
        let http = http.clone();
        let url = url.clone();
        // Half right, half names of no account (each tried once: nothing locks, every
        // attempt needs a hash).
        let (name, password) = if i % 2 == 0 {
            ("grace".to_string(), "grace-password-123".to_string())
        } else {
            (format!("nobody{i}"), format!("wrong-{i}-password"))
        };
        tokio::spawn(async move {
            let response = http
                .post(url)
                .json(&json!({"username": name, "password": password}))
                .timeout(Duration::from_secs(120))
                .send()
                .await
                .expect("every login is answered");
            let status = response.status().as_u16();
            let retry = response.headers().contains_key("retry-after");
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, body["code"].as_str().unwrap_or("").to_string(), retry)
        })
    });
    let mut answers = Vec::new();
    for attempt in attempts.collect::<Vec<_>>() {
        answers.push(attempt.await.unwrap());
    }
    for (status, code, retry) in &answers {
        match (*status, code.as_str()) {
            (200, _) | (401, "INVALID_CREDENTIALS") => {}
            (503, "OVERLOADED") => assert!(retry, "{code} says when to retry"),
            other => panic!("unexpected answer {other:?}"),
        }
    }
    let growth = peak_memory(server.pid()).saturating_sub(before);
    assert!(
        growth < FLOOD_MEMORY_GROWTH_MAX,
        "peak memory grew by {} MiB",
        growth >> 20
    );
    // Still serving.
    assert_eq!(crate::common::get_status(&server.base, "/health"), Some(200));
}
