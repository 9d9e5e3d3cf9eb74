//! Two-factor authentication over real HTTP: setting up an authenticator (secret, otpauth URI,
//! QR code), confirming it, logins that need the code (each code once), recovery codes,
//! disabling, wrong codes counted like wrong passwords, and an administrator's reset from the
//! command line.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use totp_rs::{Algorithm, Secret, TOTP};

use crate::common::{Client, Options, Reply, TestServer};

/// The authenticator app: the code of `secret` at `offset_secs` from now.
fn code(secret: &str, offset_secs: i64) -> String {
    let bytes = Secret::Encoded(secret.to_owned()).to_bytes().unwrap();
    let app = TOTP::new(Algorithm::SHA1, 6, 1, 30, bytes, None, String::new()).unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    app.generate((now + offset_secs) as u64)
}

/// A code that is not the current one (nor its neighbours).
fn wrong_code(secret: &str) -> String {
    let taken = [code(secret, -30), code(secret, 0), code(secret, 30)];
    (0..10)
        .map(|d| format!("{d}{d}{d}{d}{d}{d}"))
        .find(|c| !taken.contains(c))
        .unwrap()
}

async fn login(client: &Client, name: &str, extra: Value) -> Reply {
    let mut body = json!({"username": name, "password": format!("{name}-password-123")});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    client.post("/api/v1/auth/login", body).await
}

/// Sets up and confirms 2FA for the signed-in `client`: the secret and the recovery codes.
async fn enable(client: &Client) -> (String, Vec<String>) {
    let setup = client.post("/api/v1/auth/2fa/setup", json!({})).await;
    assert_eq!(setup.status, 200, "{:?}", setup.body);
    let secret = setup.body["secret"].as_str().unwrap().to_string();
    let r = client
        .post("/api/v1/auth/2fa/verify", json!({"code": code(&secret, 0)}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let codes = r.body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    (secret, codes)
}

#[tokio::test]
async fn an_authenticator_guards_logins_its_codes_work_once_and_recovery_codes_stand_in() {
    let server = TestServer::start_with(Options {
        env: vec![("ENCLAVE_LOGIN_FAILURES_PER_MINUTE", "1000".into())],
        ..Options::default()
    });
    let mut ann = Client::new(&server);
    ann.signup("ann").await;
    assert_eq!(ann.get("/api/v1/auth/me").await.body["totp_enabled"], false);
    let r = ann.post("/api/v1/auth/2fa/verify", json!({"code": "123456"})).await;
    assert_eq!((r.status, r.code()), (409, "TOTP_NOT_SET_UP"));

    let setup = ann.post("/api/v1/auth/2fa/setup", json!({})).await;
    assert_eq!(setup.status, 200);
    assert_eq!(setup.headers["cache-control"], "no-store");
    let secret = setup.body["secret"].as_str().unwrap().to_string();
    let uri = setup.body["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/Enclave:ann%40example.com?"), "{uri}");
    assert!(uri.contains(&format!("secret={secret}")));
    assert!(setup.body["qr_svg"].as_str().unwrap().starts_with("<?xml"));
    // Not in force before it is confirmed.
    assert_eq!(login(&ann, "ann", json!({})).await.status, 200);
    let r = ann
        .post("/api/v1/auth/2fa/verify", json!({"code": wrong_code(&secret)}))
        .await;
    assert_eq!((r.status, r.code()), (401, "INVALID_TOTP"));
    let r = ann
        .post("/api/v1/auth/2fa/verify", json!({"code": code(&secret, 0)}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let recovery: Vec<String> = serde_json::from_value(r.body["recovery_codes"].clone()).unwrap();
    assert_eq!(recovery.len(), 10);
    assert_eq!(ann.get("/api/v1/auth/me").await.body["totp_enabled"], true);
    let r = ann.post("/api/v1/auth/2fa/setup", json!({})).await;
    assert_eq!((r.status, r.code()), (409, "TOTP_ALREADY_ENABLED"));

    // The password alone is not enough; a wrong password says so first.
    let r = login(&ann, "ann", json!({})).await;
    assert_eq!((r.status, r.code()), (401, "TOTP_REQUIRED"));
    let r = ann
        .post(
            "/api/v1/auth/login",
            json!({"username": "ann", "password": "not-the-password", "totp_code": code(&secret, 0)}),
        )
        .await;
    assert_eq!(r.code(), "INVALID_CREDENTIALS");
    // The next step's code logs in, once; the code confirmed at setup (an earlier step) is spent.
    let next = code(&secret, 30);
    assert_eq!(login(&ann, "ann", json!({"totp_code": next})).await.status, 200);
    let r = login(&ann, "ann", json!({"totp_code": next})).await;
    assert_eq!((r.status, r.code()), (401, "INVALID_TOTP"), "a code works once");
    let r = login(&ann, "ann", json!({"totp_code": code(&secret, -30)})).await;
    assert_eq!(r.code(), "INVALID_TOTP");
    // A recovery code stands in for the app, once, typed however.
    let typed = recovery[0].to_uppercase();
    assert_eq!(login(&ann, "ann", json!({"recovery_code": typed})).await.status, 200);
    let r = login(&ann, "ann", json!({"recovery_code": recovery[0]})).await;
    assert_eq!(r.code(), "INVALID_TOTP");
    let r = login(&ann, "ann", json!({"totp_code": "1", "recovery_code": recovery[1]})).await;
    assert_eq!(r.status, 422, "one factor at a time");

    // Disabling needs the password and a code.
    let r = ann
        .post(
            "/api/v1/auth/2fa/disable",
            json!({"password": "wrong-password-1", "recovery_code": recovery[1]}),
        )
        .await;
    assert_eq!(r.code(), "INVALID_CREDENTIALS");
    let r = ann
        .post("/api/v1/auth/2fa/disable", json!({"password": "ann-password-123"}))
        .await;
    assert_eq!(r.code(), "TOTP_REQUIRED");
    let r = ann
        .post(
            "/api/v1/auth/2fa/disable",
            json!({"password": "ann-password-123", "recovery_code": recovery[1]}),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(ann.get("/api/v1/auth/me").await.body["totp_enabled"], false);
    assert_eq!(login(&ann, "ann", json!({})).await.status, 200);
    let r = ann
        .post("/api/v1/auth/2fa/disable", json!({"password": "ann-password-123"}))
        .await;
    assert_eq!(r.code(), "TOTP_NOT_SET_UP");
}

#[tokio::test]
async fn wrong_codes_lock_the_account_like_wrong_passwords_and_an_administrator_resets_2fa() {
    let mut server = TestServer::start_with(Options {
        env: vec![("ENCLAVE_LOGIN_FAILURES_PER_MINUTE", "1000".into())],
        ..Options::default()
    });
    let mut bob = Client::new(&server);
    bob.signup("bob").await;
    let (secret, _) = enable(&bob).await;
    for _ in 0..5 {
        let r = login(&bob, "bob", json!({"totp_code": wrong_code(&secret)})).await;
        assert_eq!(r.code(), "INVALID_TOTP");
    }
    let r = login(&bob, "bob", json!({"totp_code": code(&secret, 30)})).await;
    assert_eq!((r.status, r.code()), (429, "ACCOUNT_LOCKED"));

    // Bob lost his phone: an administrator unlocks the account and removes its second factor.
    server.terminate();
    for command in ["unlock", "reset-2fa"] {
        let out = server.command(&["user", command, "bob"]);
        assert!(
            out.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = server.command(&["user", "reset-2fa", "nobody"]);
    assert!(!out.status.success());
    server.restart();
    let bob = Client::new(&server);
    let r = login(&bob, "bob", json!({})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[tokio::test]
async fn a_role_that_requires_2fa_gets_only_its_own_account_until_it_is_set_up() {
    let server = TestServer::start();
    let mut root = Client::new(&server);
    root.signup("root").await;
    let mut pat = Client::new(&server);
    pat.signup("pat").await;
    assert_eq!(pat.get("/api/v1/conversations").await.status, 200);
    let r = root
        .put("/api/v1/admin/security", json!({"require_2fa_for": ["user"]}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        root.get("/api/v1/admin/security").await.body["require_2fa_for"],
        json!(["user"])
    );
    // At pat's next request: only the own-account routes answer.
    let r = pat.get("/api/v1/conversations").await;
    assert_eq!((r.status, r.code()), (403, "TOTP_SETUP_REQUIRED"));
    let me = pat.get("/api/v1/auth/me").await;
    assert_eq!(me.body["totp_setup_required"], true);
    // The super_admin's role is not concerned.
    assert_eq!(root.get("/api/v1/conversations").await.status, 200);
    enable(&pat).await;
    assert_eq!(pat.get("/api/v1/conversations").await.status, 200);
    assert_eq!(pat.get("/api/v1/auth/me").await.body["totp_setup_required"], false);
    let r = pat.put("/api/v1/admin/security", json!({"require_2fa_for": []})).await;
    assert_eq!(r.status, 403, "users do not set the rules");
}
