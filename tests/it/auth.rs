//! Accounts over real HTTP: registration, login, refresh rotation and reuse detection,
//! logout, password change, access tokens ending with their session, token errors, closed
//! registration, the CLI.

use serde_json::json;

use crate::common::{Client, Options, TestServer};

#[tokio::test]
async fn register_login_refresh_rotation_and_reuse() {
    let server = TestServer::start();
    let mut ann = Client::new(&server);
    let first = ann
        .post(
            "/api/v1/auth/register",
            json!({"email": "Ann@Example.com", "username": "ann", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    assert_eq!(first.body["email"], "ann@example.com");
    assert_eq!(first.body["role"], "super_admin", "the first account owns the instance");
    assert!(first.body.get("password_hash").is_none());

    let second = ann
        .post(
            "/api/v1/auth/register",
            json!({"email": "bob@example.com", "username": "bob", "password": "another long password"}),
        )
        .await;
    assert_eq!(second.status, 201);
    assert_eq!(second.body["role"], "user");

    let dup = ann
        .post(
            "/api/v1/auth/register",
            json!({"email": "ANN@example.com", "username": "ann2", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!((dup.status, dup.code()), (409, "EMAIL_TAKEN"));
    let dup = ann
        .post(
            "/api/v1/auth/register",
            json!({"email": "ann2@example.com", "username": "ANN", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!((dup.status, dup.code()), (409, "USERNAME_TAKEN"));
    let weak = ann
        .post(
            "/api/v1/auth/register",
            json!({"email": "c@example.com", "username": "cat", "password": "short"}),
        )
        .await;
    assert_eq!((weak.status, weak.code()), (422, "WEAK_PASSWORD"));
    let bad = ann
        .post(
            "/api/v1/auth/register",
            json!({"email": "not-an-email", "username": "cat", "password": "long enough password"}),
        )
        .await;
    assert_eq!((bad.status, bad.code()), (422, "VALIDATION_ERROR"));

    let wrong = ann
        .post(
            "/api/v1/auth/login",
            json!({"email": "ann@example.com", "password": "wrong password!!"}),
        )
        .await;
    assert_eq!((wrong.status, wrong.code()), (401, "INVALID_CREDENTIALS"));
    let nobody = ann
        .post(
            "/api/v1/auth/login",
            json!({"email": "nobody@example.com", "password": "wrong password!!"}),
        )
        .await;
    assert_eq!((nobody.status, nobody.code()), (401, "INVALID_CREDENTIALS"));

    let by_name = ann
        .post(
            "/api/v1/auth/login",
            json!({"username": "Ann", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(by_name.status, 200, "{:?}", by_name.body);
    let login = ann
        .post(
            "/api/v1/auth/login",
            json!({"email": "ann@example.com", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(login.status, 200);
    assert_eq!(login.body["token_type"], "bearer");
    assert_eq!(login.body["expires_in"], 900);
    let refresh1 = login.body["refresh_token"].as_str().unwrap().to_string();
    ann.token = Some(login.body["access_token"].as_str().unwrap().to_string());
    let me = ann.get("/api/v1/auth/me").await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["username"], "ann");

    // Rotation: the old token gives a new pair once.
    let rotated = ann
        .post("/api/v1/auth/refresh", json!({"refresh_token": refresh1}))
        .await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.body);
    let refresh2 = rotated.body["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(refresh1, refresh2);
    ann.token = Some(rotated.body["access_token"].as_str().unwrap().to_string());
    assert_eq!(ann.get("/api/v1/auth/me").await.status, 200);

    // Reuse of the rotated token revokes the whole family, the newest token included.
    let reused = ann
        .post("/api/v1/auth/refresh", json!({"refresh_token": refresh1}))
        .await;
    assert_eq!((reused.status, reused.code()), (401, "TOKEN_REUSED"));
    let after = ann
        .post("/api/v1/auth/refresh", json!({"refresh_token": refresh2}))
        .await;
    assert_eq!(after.status, 401, "the family is revoked: {:?}", after.body);

    // Another login is a separate family and still works; logout ends it.
    let login = ann
        .post(
            "/api/v1/auth/login",
            json!({"email": "ann@example.com", "password": "correct horse battery"}),
        )
        .await;
    let refresh3 = login.body["refresh_token"].as_str().unwrap().to_string();
    let out = ann
        .post("/api/v1/auth/logout", json!({"refresh_token": refresh3}))
        .await;
    assert_eq!(out.status, 204);
    let after = ann
        .post("/api/v1/auth/refresh", json!({"refresh_token": refresh3}))
        .await;
    assert_eq!(after.status, 401);
    let unknown = ann
        .post("/api/v1/auth/refresh", json!({"refresh_token": "made-up"}))
        .await;
    assert_eq!((unknown.status, unknown.code()), (401, "INVALID_TOKEN"));
}

#[tokio::test]
async fn password_change_ends_sessions() {
    let server = TestServer::start();
    let mut c = Client::new(&server);
    let login = c.signup("carol").await;
    let refresh = login["refresh_token"].as_str().unwrap().to_string();

    let wrong = c
        .put(
            "/api/v1/auth/password/change",
            json!({"current_password": "not my password", "new_password": "a brand new password"}),
        )
        .await;
    assert_eq!((wrong.status, wrong.code()), (401, "INVALID_CREDENTIALS"));
    let weak = c
        .put(
            "/api/v1/auth/password/change",
            json!({"current_password": "carol-password-123", "new_password": "short"}),
        )
        .await;
    assert_eq!((weak.status, weak.code()), (422, "WEAK_PASSWORD"));
    let ok = c
        .put(
            "/api/v1/auth/password/change",
            json!({"current_password": "carol-password-123", "new_password": "a brand new password"}),
        )
        .await;
    assert_eq!(ok.status, 204, "{:?}", ok.body);

    let old = c
        .post(
            "/api/v1/auth/login",
            json!({"email": "carol@example.com", "password": "carol-password-123"}),
        )
        .await;
    assert_eq!(old.status, 401);
    let new = c
        .post(
            "/api/v1/auth/login",
            json!({"email": "carol@example.com", "password": "a brand new password"}),
        )
        .await;
    assert_eq!(new.status, 200);
    let stale = c.post("/api/v1/auth/refresh", json!({"refresh_token": refresh})).await;
    assert_eq!(stale.status, 401, "sessions from before the change are revoked");
}

#[tokio::test]
async fn access_tokens_die_with_their_session_at_once() {
    let mut server = TestServer::start();
    let mut dora = Client::new(&server);
    let first = dora.signup("dora").await;
    let token_a = first["access_token"].as_str().unwrap().to_owned();
    let refresh_a = first["refresh_token"].as_str().unwrap().to_owned();
    let login = |c: &Client, password: &'static str| {
        let c = c.clone();
        async move {
            c.post(
                "/api/v1/auth/login",
                json!({"email": "dora@example.com", "password": password}),
            )
            .await
        }
    };
    let second = login(&dora, "dora-password-123").await;
    assert_eq!(second.status, 200, "{:?}", second.body);
    assert_eq!(second.headers["cache-control"], "no-store", "tokens are never cached");
    let token_b = second.body["access_token"].as_str().unwrap().to_owned();
    let refresh_b = second.body["refresh_token"].as_str().unwrap().to_owned();
    let me = |c: &Client, token: &str| {
        let mut c = c.clone();
        c.token = Some(token.to_owned());
        async move { c.get("/api/v1/auth/me").await }
    };
    assert_eq!(me(&dora, &token_a).await.status, 200);
    assert_eq!(me(&dora, &token_b).await.status, 200);

    // Logout ends its session's access tokens on the next request, and only those.
    let out = dora
        .post("/api/v1/auth/logout", json!({"refresh_token": refresh_a}))
        .await;
    assert_eq!(out.status, 204);
    let refused = me(&dora, &token_a).await;
    assert_eq!(
        (refused.status, refused.code()),
        (401, "INVALID_TOKEN"),
        "{:?}",
        refused.body
    );
    assert_eq!(me(&dora, &token_b).await.status, 200, "the other session lives");

    // Reuse of a rotated refresh token ends the session: its newest access token too.
    let rotated = dora
        .post("/api/v1/auth/refresh", json!({"refresh_token": refresh_b}))
        .await;
    assert_eq!(rotated.status, 200);
    assert_eq!(rotated.headers["cache-control"], "no-store");
    let token_b2 = rotated.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(me(&dora, &token_b2).await.status, 200);
    let reused = dora
        .post("/api/v1/auth/refresh", json!({"refresh_token": refresh_b}))
        .await;
    assert_eq!(reused.code(), "TOKEN_REUSED");
    assert_eq!(me(&dora, &token_b2).await.status, 401);
    assert_eq!(me(&dora, &token_b).await.status, 401);

    // A password change ends every session, the one that asked for it included.
    let third = login(&dora, "dora-password-123").await;
    let token_c = third.body["access_token"].as_str().unwrap().to_owned();
    let fourth = login(&dora, "dora-password-123").await;
    let token_d = fourth.body["access_token"].as_str().unwrap().to_owned();
    dora.token = Some(token_c.clone());
    let changed = dora
        .put(
            "/api/v1/auth/password/change",
            json!({"current_password": "dora-password-123", "new_password": "a much newer password"}),
        )
        .await;
    assert_eq!(changed.status, 204, "{:?}", changed.body);
    assert_eq!(me(&dora, &token_c).await.status, 401);
    assert_eq!(me(&dora, &token_d).await.status, 401);

    // After a restart the store still knows which sessions ended.
    let fifth = login(&dora, "a much newer password").await;
    let token_e = fifth.body["access_token"].as_str().unwrap().to_owned();
    server.restart();
    let dora = Client::new(&server);
    assert_eq!(me(&dora, &token_e).await.status, 200);
    assert_eq!(me(&dora, &token_d).await.status, 401);
    assert_eq!(me(&dora, &token_a).await.status, 401);
}

#[tokio::test]
async fn a_session_ends_at_its_absolute_lifetime_however_often_it_is_refreshed() {
    let server = TestServer::start_with(Options {
        config: "session_lifetime_secs = 3\n".into(),
        ..Default::default()
    });
    let mut erin = Client::new(&server);
    let login = erin.signup("erin").await;
    let started = std::time::Instant::now();
    let mut refresh = login["refresh_token"].as_str().unwrap().to_owned();
    // Refreshing keeps it going within the lifetime...
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let rotated = erin
        .post("/api/v1/auth/refresh", json!({"refresh_token": refresh}))
        .await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.body);
    refresh = rotated.body["refresh_token"].as_str().unwrap().to_owned();
    erin.token = Some(rotated.body["access_token"].as_str().unwrap().to_owned());
    assert_eq!(erin.get("/api/v1/auth/me").await.status, 200);
    // ...but not past it: the newest access token and refresh token are both refused.
    tokio::time::sleep(std::time::Duration::from_millis(3300).saturating_sub(started.elapsed())).await;
    let me = erin.get("/api/v1/auth/me").await;
    assert_eq!((me.status, me.code()), (401, "INVALID_TOKEN"), "{:?}", me.body);
    let again = erin
        .post("/api/v1/auth/refresh", json!({"refresh_token": refresh}))
        .await;
    assert_eq!(again.status, 401, "{:?}", again.body);
}

#[tokio::test]
async fn a_user_lists_their_sessions_and_signs_one_out() {
    let server = TestServer::start();
    let mut fay = Client::new(&server);
    let laptop = fay.signup("fay").await;
    let laptop_token = laptop["access_token"].as_str().unwrap().to_owned();
    let phone = fay
        .send(
            fay.request(::reqwest::Method::POST, "/api/v1/auth/login")
                .header("User-Agent", "Enclave-Test-Phone/1.0")
                .json(&json!({"email": "fay@example.com", "password": "fay-password-123"})),
        )
        .await;
    assert_eq!(phone.status, 200, "{:?}", phone.body);
    fay.token = Some(phone.body["access_token"].as_str().unwrap().to_owned());

    let list = fay.get("/api/v1/auth/sessions").await;
    assert_eq!(list.status, 200, "{:?}", list.body);
    let sessions = list.body["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 2, "{:?}", list.body);
    let (first, second) = (&sessions[0], &sessions[1]);
    assert_eq!(first["current"], false);
    assert_eq!(second["current"], true, "the phone asked");
    assert_eq!(second["user_agent"], "Enclave-Test-Phone/1.0");
    assert_eq!(second["ip"], "127.0.0.1");
    assert!(first["created_at"].as_str().unwrap() <= second["created_at"].as_str().unwrap());
    assert!(second["last_seen_at"].is_string());

    // Another user's session is not hers to end.
    let mut gus = Client::new(&server);
    gus.signup("gus").await;
    let theirs = gus.get("/api/v1/auth/sessions").await.body["sessions"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = fay.delete(&format!("/api/v1/auth/sessions/{theirs}")).await;
    assert_eq!((r.status, r.code()), (404, "NOT_FOUND"), "{:?}", r.body);
    assert_eq!(gus.get("/api/v1/auth/me").await.status, 200);

    // Signing the laptop out ends its token at once; a second time it is gone.
    let laptop_id = first["id"].as_str().unwrap();
    assert_eq!(
        fay.delete(&format!("/api/v1/auth/sessions/{laptop_id}")).await.status,
        204
    );
    let mut old = fay.clone();
    old.token = Some(laptop_token);
    assert_eq!(old.get("/api/v1/auth/me").await.status, 401);
    let r = fay.delete(&format!("/api/v1/auth/sessions/{laptop_id}")).await;
    assert_eq!(r.status, 404);
    let r = fay.delete("/api/v1/auth/sessions/not-a-uuid").await;
    assert_eq!((r.status, r.code()), (404, "NOT_FOUND"), "{:?}", r.body);
    let list = fay.get("/api/v1/auth/sessions").await;
    assert_eq!(list.body["sessions"].as_array().unwrap().len(), 1);

    // Ending the current session signs the caller out.
    let own = second["id"].as_str().unwrap();
    assert_eq!(fay.delete(&format!("/api/v1/auth/sessions/{own}")).await.status, 204);
    assert_eq!(fay.get("/api/v1/auth/me").await.status, 401);
}

#[tokio::test]
async fn bad_and_expired_access_tokens() {
    let server = TestServer::start_with(Options {
        config: "access_token_ttl_secs = 1\n".into(),
        ..Default::default()
    });
    let mut c = Client::new(&server);
    let none = c.get("/api/v1/conversations").await;
    assert_eq!((none.status, none.code()), (401, "UNAUTHENTICATED"));
    c.token = Some("not.a.jwt".into());
    let garbage = c.get("/api/v1/conversations").await;
    assert_eq!((garbage.status, garbage.code()), (401, "INVALID_TOKEN"));
    // A well-formed token signed with another key.
    c.token = Some("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIwMTkzMDAwMC0wMDAwLTcwMDAtODAwMC0wMDAwMDAwMDAwMDAiLCJyb2xlIjoic3VwZXJfYWRtaW4iLCJpYXQiOjEsImV4cCI6NDEwMjQ0NDgwMCwianRpIjoieCJ9.c2lnbmF0dXJl".into());
    let forged = c.get("/api/v1/conversations").await;
    assert_eq!((forged.status, forged.code()), (401, "INVALID_TOKEN"));

    let login = c.signup("dave").await;
    assert_eq!(login["expires_in"], 1);
    assert_eq!(c.get("/api/v1/conversations").await.status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let expired = c.get("/api/v1/conversations").await;
    assert_eq!((expired.status, expired.code()), (401, "TOKEN_EXPIRED"));
    // The refresh token still works and gives a fresh access token.
    let fresh = c
        .post("/api/v1/auth/refresh", json!({"refresh_token": login["refresh_token"]}))
        .await;
    assert_eq!(fresh.status, 200);
    c.token = Some(fresh.body["access_token"].as_str().unwrap().to_string());
    assert_eq!(c.get("/api/v1/conversations").await.status, 200);
}

#[tokio::test]
async fn closed_registration_and_cli_accounts() {
    let server = TestServer::start_with(Options {
        config: "allow_registration = false\n".into(),
        ..Default::default()
    });
    let mut owner = Client::new(&server);
    owner.signup("owner").await; // the first account can always be created
    let late = owner
        .post(
            "/api/v1/auth/register",
            json!({"email": "late@example.com", "username": "late", "password": "long enough password"}),
        )
        .await;
    assert_eq!((late.status, late.code()), (403, "REGISTRATION_CLOSED"));

    // The CLI creates accounts in the same data dir (redb allows one process at a time, so
    // stop the server first).
    let mut server = server;
    server.terminate();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_enclave"))
        .args([
            "user",
            "add",
            "--email",
            "admin@example.com",
            "--username",
            "admin",
            "--role",
            "admin",
        ])
        .arg("--data-dir")
        .arg(server.dir.path().join("data"))
        .env("ENCLAVE_NEW_PASSWORD", "administrator password")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Admin"));
    let bad_role = std::process::Command::new(env!("CARGO_BIN_EXE_enclave"))
        .args([
            "user",
            "add",
            "--email",
            "x@example.com",
            "--username",
            "xx1",
            "--role",
            "emperor",
        ])
        .arg("--data-dir")
        .arg(server.dir.path().join("data"))
        .env("ENCLAVE_NEW_PASSWORD", "administrator password")
        .output()
        .unwrap();
    assert!(!bad_role.status.success());
    assert!(String::from_utf8_lossy(&bad_role.stderr).contains("unknown role"));

    server.restart();
    let mut admin = Client::new(&server);
    let login = admin
        .post(
            "/api/v1/auth/login",
            json!({"username": "admin", "password": "administrator password"}),
        )
        .await;
    assert_eq!(login.status, 200, "{:?}", login.body);
    admin.token = Some(login.body["access_token"].as_str().unwrap().to_string());
    assert_eq!(admin.get("/api/v1/auth/me").await.body["role"], "admin");
}

/// The web UI's session: the refresh token lives in an HttpOnly cookie, never in a body a
/// script could read; refresh rotates the cookie; the old cookie is refused; logout clears it.
#[tokio::test]
async fn the_browser_session_keeps_its_refresh_token_in_a_cookie() {
    let server = TestServer::start();
    let mut c = Client::new(&server);
    c.signup("cora").await;
    let login = c
        .post(
            "/api/v1/auth/login",
            json!({"email": "cora@example.com", "password": "cora-password-123", "cookie": true}),
        )
        .await;
    assert_eq!(login.status, 200, "{:?}", login.body);
    assert!(login.body["access_token"].is_string());
    assert!(login.body["refresh_token"].is_null(), "not readable by scripts");
    let set_cookie = |reply: &crate::common::Reply| -> String {
        reply.headers[reqwest::header::SET_COOKIE].to_str().unwrap().to_owned()
    };
    let cookie = set_cookie(&login);
    assert!(cookie.starts_with("enclave_refresh="), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/api/v1/auth"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let pair = cookie.split(';').next().unwrap().to_owned();

    let refresh = |cookie: String| {
        let c = &c;
        async move {
            c.send(
                c.request(reqwest::Method::POST, "/api/v1/auth/refresh")
                    .header(reqwest::header::COOKIE, cookie)
                    .json(&json!({})),
            )
            .await
        }
    };
    let rotated = refresh(pair.clone()).await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.body);
    assert!(rotated.body["access_token"].is_string() && rotated.body["refresh_token"].is_null());
    let new_pair = set_cookie(&rotated).split(';').next().unwrap().to_owned();
    assert_ne!(new_pair, pair);
    // The old cookie was rotated away: reusing it is refused (and revokes the family).
    assert_eq!(refresh(pair).await.status, 401);
    assert_eq!(refresh(new_pair.clone()).await.status, 401, "the family is revoked");

    // A fresh session, then logout clears the cookie.
    let login = c
        .post(
            "/api/v1/auth/login",
            json!({"username": "cora", "password": "cora-password-123", "cookie": true}),
        )
        .await;
    let pair = set_cookie(&login).split(';').next().unwrap().to_owned();
    let logout = c
        .send(
            c.request(reqwest::Method::POST, "/api/v1/auth/logout")
                .header(reqwest::header::COOKIE, pair.clone())
                .json(&json!({})),
        )
        .await;
    assert_eq!(logout.status, 204);
    assert!(set_cookie(&logout).contains("Max-Age=0"));
    assert_eq!(refresh(pair).await.status, 401);
    // No token anywhere (a browser's first visit): 401 NOT_SIGNED_IN, for logout too.
    let none = c.post("/api/v1/auth/refresh", json!({})).await;
    assert_eq!((none.status, none.code()), (401, "NOT_SIGNED_IN"));
    let none = c.post("/api/v1/auth/logout", json!({})).await;
    assert_eq!((none.status, none.code()), (401, "NOT_SIGNED_IN"));
}

#[tokio::test]
async fn the_refresh_cookie_is_secure_when_a_trusted_proxy_says_the_client_came_over_https() {
    let server = TestServer::start_with(crate::common::Options {
        env: vec![("ENCLAVE_TRUSTED_PROXIES", "127.0.0.1".into())],
        ..Default::default()
    });
    let mut c = Client::new(&server);
    c.signup("sid").await;
    let login = |proto: Option<&'static str>| {
        let c = &c;
        async move {
            let mut builder = c
                .request(reqwest::Method::POST, "/api/v1/auth/login")
                .json(&json!({"username": "sid", "password": "sid-password-123", "cookie": true}));
            if let Some(proto) = proto {
                builder = builder.header("x-forwarded-proto", proto);
            }
            let reply = c.send(builder).await;
            assert_eq!(reply.status, 200, "{:?}", reply.body);
            reply.headers[reqwest::header::SET_COOKIE].to_str().unwrap().to_owned()
        }
    };
    assert!(login(Some("https")).await.contains("; Secure"));
    // Plain HTTP (localhost): a Secure cookie would never be sent back.
    assert!(!login(None).await.contains("Secure"));
    assert!(!login(Some("http")).await.contains("Secure"));
    // From a peer that is not a trusted proxy the header means nothing.
    let untrusted = TestServer::start();
    let mut d = Client::new(&untrusted);
    d.signup("sid").await;
    let reply = d
        .send(
            d.request(reqwest::Method::POST, "/api/v1/auth/login")
                .header("x-forwarded-proto", "https")
                .json(&json!({"username": "sid", "password": "sid-password-123", "cookie": true})),
        )
        .await;
    let cookie = reply.headers[reqwest::header::SET_COOKIE].to_str().unwrap();
    assert!(!cookie.contains("Secure"), "{cookie}");
}
