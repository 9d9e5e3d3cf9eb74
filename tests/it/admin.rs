//! The administrators' API over real HTTP: the registration policy with invitation links,
//! password reset links, searching accounts, unlocking and removing 2FA, another user's
//! documents and sessions.

use serde_json::json;

use crate::common::{Client, Options, TestServer};

fn register_body(name: &str, invite: Option<&str>) -> serde_json::Value {
    let mut body = json!({"email": format!("{name}@example.com"), "username": name,
                          "password": format!("{name}-password-123")});
    if let Some(invite) = invite {
        body["invite"] = json!(invite);
    }
    body
}

#[tokio::test]
async fn invitations_admit_accounts_under_an_invite_only_policy_and_closed_admits_none() {
    let server = TestServer::start_with(Options {
        env: vec![("ENCLAVE_LOGIN_FAILURES_PER_MINUTE", "1000".into())],
        ..Options::default()
    });
    let mut root = Client::new(&server);
    root.signup("root").await;
    let anonymous = Client::new(&server);
    let r = root.get("/api/v1/admin/registration").await;
    assert_eq!(r.body["policy"], "open");

    let r = root
        .put("/api/v1/admin/registration", json!({"policy": "invite_only"}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = anonymous
        .post("/api/v1/auth/register", register_body("ivy", None))
        .await;
    assert_eq!((r.status, r.code()), (403, "INVITE_REQUIRED"));
    let invite = root
        .post(
            "/api/v1/admin/invites",
            json!({"role": "viewer", "expires_in_hours": 2}),
        )
        .await;
    assert_eq!(invite.status, 201, "{:?}", invite.body);
    assert_eq!(invite.headers["cache-control"], "no-store");
    let token = invite.body["token"].as_str().unwrap().to_string();
    assert_eq!(
        invite.body["path"].as_str().unwrap(),
        format!("/register?invite={token}")
    );
    let listed = root.get("/api/v1/admin/invites").await;
    assert_eq!(listed.body["invites"].as_array().unwrap().len(), 1);
    assert!(
        listed.body["invites"][0].get("token").is_none(),
        "the token is shown once"
    );
    let r = anonymous
        .post("/api/v1/auth/register", register_body("ivy", Some("not-a-real-invite")))
        .await;
    assert_eq!((r.status, r.code()), (400, "INVALID_LINK"));
    // A refused registration (the email is taken) leaves the invitation usable.
    let r = anonymous
        .post(
            "/api/v1/auth/register",
            json!({"email": "root@example.com", "username": "ivy", "password": "ivy-password-123", "invite": token}),
        )
        .await;
    assert_eq!(r.code(), "EMAIL_TAKEN");
    let r = anonymous
        .post("/api/v1/auth/register", register_body("ivy", Some(&token)))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["role"], "viewer", "the invitation sets the role");
    let r = anonymous
        .post("/api/v1/auth/register", register_body("jay", Some(&token)))
        .await;
    assert_eq!(r.code(), "INVALID_LINK", "an invitation works once");
    assert_eq!(
        root.get("/api/v1/admin/invites").await.body["invites"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    // Revoked invitations stop working.
    let second = root.post("/api/v1/admin/invites", json!({})).await;
    let id = second.body["id"].as_str().unwrap();
    assert_eq!(second.body["role"], "user");
    assert_eq!(root.delete(&format!("/api/v1/admin/invites/{id}")).await.status, 204);
    assert_eq!(root.delete(&format!("/api/v1/admin/invites/{id}")).await.status, 404);
    let r = anonymous
        .post(
            "/api/v1/auth/register",
            register_body("jay", second.body["token"].as_str()),
        )
        .await;
    assert_eq!(r.code(), "INVALID_LINK");
    let r = root.post("/api/v1/admin/invites", json!({"expires_in_hours": 0})).await;
    assert_eq!(r.status, 422);

    let r = root
        .put("/api/v1/admin/registration", json!({"policy": "closed"}))
        .await;
    assert_eq!(r.status, 200);
    let third = root.post("/api/v1/admin/invites", json!({})).await;
    let r = anonymous
        .post(
            "/api/v1/auth/register",
            register_body("kay", third.body["token"].as_str()),
        )
        .await;
    assert_eq!(r.code(), "REGISTRATION_CLOSED");
    let r = root
        .put("/api/v1/admin/registration", json!({"policy": "sometimes"}))
        .await;
    assert_eq!(r.status, 422);
}

#[tokio::test]
async fn a_password_reset_link_sets_a_new_password_once_and_ends_every_session() {
    let server = TestServer::start();
    let mut root = Client::new(&server);
    root.signup("root").await;
    let mut lee = Client::new(&server);
    let session = lee.signup("lee").await;
    let lee_id = lee.get("/api/v1/auth/me").await.body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let link = root
        .post(&format!("/api/v1/admin/users/{lee_id}/password-reset"), json!({}))
        .await;
    assert_eq!(link.status, 201, "{:?}", link.body);
    let token = link.body["token"].as_str().unwrap().to_string();
    assert_eq!(
        link.body["path"].as_str().unwrap(),
        format!("/reset-password?token={token}")
    );
    let anonymous = Client::new(&server);
    let r = anonymous
        .post(
            "/api/v1/auth/password/reset",
            json!({"token": token, "new_password": "short"}),
        )
        .await;
    assert_eq!(r.code(), "WEAK_PASSWORD", "{:?}", r.body);
    let r = anonymous
        .post(
            "/api/v1/auth/password/reset",
            json!({"token": token, "new_password": "a brand new password"}),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    // The old session is over, the old password too; the new one works.
    assert_eq!(lee.get("/api/v1/auth/me").await.status, 401);
    let r = anonymous
        .post(
            "/api/v1/auth/refresh",
            json!({"refresh_token": session["refresh_token"]}),
        )
        .await;
    assert_eq!(r.status, 401);
    let r = anonymous
        .post(
            "/api/v1/auth/login",
            json!({"username": "lee", "password": "lee-password-123"}),
        )
        .await;
    assert_eq!(r.code(), "INVALID_CREDENTIALS");
    let r = anonymous
        .post(
            "/api/v1/auth/login",
            json!({"username": "lee", "password": "a brand new password"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = anonymous
        .post(
            "/api/v1/auth/password/reset",
            json!({"token": token, "new_password": "another new password"}),
        )
        .await;
    assert_eq!(r.code(), "INVALID_LINK", "a link works once");
}

#[tokio::test]
async fn administrators_search_accounts_unlock_them_remove_2fa_and_see_their_sessions() {
    let server = TestServer::start_with(Options {
        env: vec![("ENCLAVE_LOGIN_FAILURES_PER_MINUTE", "1000".into())],
        ..Options::default()
    });
    let mut root = Client::new(&server);
    root.signup("root").await;
    for name in ["max", "mia", "ned"] {
        Client::new(&server).signup(name).await;
    }
    let r = root.get("/api/v1/admin/users?search=MI").await;
    let names: Vec<&str> = r.body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["mia"], "email or username, any case");
    let page = root.get("/api/v1/admin/users?limit=2").await;
    assert_eq!(page.body["users"].as_array().unwrap().len(), 2);
    let cursor = page.body["next_cursor"].as_str().unwrap();
    let rest = root.get(&format!("/api/v1/admin/users?limit=2&cursor={cursor}")).await;
    assert_eq!(rest.body["users"].as_array().unwrap().len(), 2);
    assert!(rest.body["next_cursor"].is_null());
    assert_eq!(root.get("/api/v1/admin/users?limit=0").await.status, 422);
    let ned = rest.body["users"][1].clone();
    assert_eq!(ned["username"], "ned");
    let ned_id = ned["id"].as_str().unwrap();

    // Locked by failed logins, then unlocked.
    for _ in 0..5 {
        let r = root
            .post(
                "/api/v1/auth/login",
                json!({"username": "ned", "password": "wrong-password-1"}),
            )
            .await;
        assert_eq!(r.code(), "INVALID_CREDENTIALS");
    }
    let r = root.get(&format!("/api/v1/admin/users/{ned_id}")).await;
    assert!(r.body["locked_until"].is_string(), "{:?}", r.body);
    assert_eq!(r.body["failed_logins"], 5);
    assert_eq!(
        root.post(&format!("/api/v1/admin/users/{ned_id}/unlock"), json!({}))
            .await
            .status,
        204
    );
    let r = Client::new(&server)
        .post(
            "/api/v1/auth/login",
            json!({"username": "ned", "password": "ned-password-123", "cookie": false}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mut ned_client = Client::new(&server);
    ned_client.token = Some(r.body["access_token"].as_str().unwrap().to_string());
    // His sessions, one ended by the administrator.
    let sessions = root.get(&format!("/api/v1/admin/users/{ned_id}/sessions")).await;
    let list = sessions.body["sessions"].as_array().unwrap().clone();
    assert!(list.len() >= 2, "{list:?}");
    for session in &list {
        let id = session["id"].as_str().unwrap();
        let r = root
            .delete(&format!("/api/v1/admin/users/{ned_id}/sessions/{id}"))
            .await;
        assert_eq!(r.status, 204);
    }
    assert_eq!(ned_client.get("/api/v1/auth/me").await.status, 401);
    // 2FA removed by an administrator.
    let mut ned_client = Client::new(&server);
    ned_client.token = Some(
        Client::new(&server)
            .post(
                "/api/v1/auth/login",
                json!({"username": "ned", "password": "ned-password-123"}),
            )
            .await
            .body["access_token"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    assert_eq!(ned_client.post("/api/v1/auth/2fa/setup", json!({})).await.status, 200);
    assert_eq!(
        root.post(&format!("/api/v1/admin/users/{ned_id}/reset-2fa"), json!({}))
            .await
            .status,
        204
    );
    let r = ned_client
        .post("/api/v1/auth/2fa/verify", json!({"code": "123456"}))
        .await;
    assert_eq!(r.code(), "TOTP_NOT_SET_UP");
    // His documents, as an administrator sees them (none yet).
    let r = root.get(&format!("/api/v1/admin/users/{ned_id}/documents")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["items"].as_array().unwrap().len(), 0);
}
