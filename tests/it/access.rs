//! Every route, every role: anonymous, viewer, user, admin and super_admin call each route and
//! get the status the permission table (`src/auth/roles.rs`) says; another user's ids are 404;
//! and changes to an account (disabling, a new role, signing it out) take effect at its very
//! next request.

use serde_json::{json, Value};

use crate::common::{Client, Options, Reply, TestServer};

/// What a caller should get.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Exactly this status.
    Is(u16),
    /// Let through: any answer but 401, 403 and 404 (the route's own checks may still refuse
    /// the body, which is fine: the permission let it reach them).
    Through,
}

use Expect::{Is, Through};

/// The callers, in the order of each row's expectations.
const CALLERS: [&str; 5] = ["anonymous", "viewer", "user", "admin", "super_admin"];

struct Caller {
    client: Client,
    id: String,
    /// A conversation of its own.
    conversation: String,
}

async fn signed_in(server: &TestServer, name: &str) -> Client {
    let mut client = Client::new(server);
    let r = client
        .post(
            "/api/v1/auth/login",
            json!({"username": name, "password": format!("{name}-password-123")}),
        )
        .await;
    assert_eq!(r.status, 200, "{name}: {:?}", r.body);
    client.token = Some(r.body["access_token"].as_str().unwrap().to_string());
    client
}

/// The five callers: the first account (super_admin) creates the others through the admin API;
/// each makes a conversation while it may (the viewer is demoted afterwards).
async fn callers(server: &TestServer) -> (Vec<Caller>, Caller) {
    let mut root = Client::new(server);
    let me = root.signup("root").await;
    assert!(me["access_token"].is_string());
    for (name, role) in [("vera", "user"), ("uma", "user"), ("adam", "admin"), ("otto", "user")] {
        let r = root
            .post(
                "/api/v1/admin/users",
                json!({"email": format!("{name}@example.com"), "username": name,
                       "password": format!("{name}-password-123"), "role": role}),
            )
            .await;
        assert_eq!(r.status, 201, "{name}: {:?}", r.body);
    }
    let mut out = Vec::new();
    for name in ["", "vera", "uma", "adam", "root"] {
        let client = if name.is_empty() {
            Client::new(server)
        } else {
            signed_in(server, name).await
        };
        let (id, conversation) = if name.is_empty() {
            (uuid::Uuid::nil().to_string(), uuid::Uuid::nil().to_string())
        } else {
            let me = client.get("/api/v1/auth/me").await;
            (
                me.body["id"].as_str().unwrap().to_string(),
                client.new_conversation(json!({})).await,
            )
        };
        out.push(Caller {
            client,
            id,
            conversation,
        });
    }
    let root_client = &out[4].client;
    let r = root_client
        .patch(&format!("/api/v1/admin/users/{}", out[1].id), json!({"role": "viewer"}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["role"], "viewer");
    let otto = signed_in(server, "otto").await;
    let otto_id = otto.get("/api/v1/auth/me").await.body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let otto_conversation = otto.new_conversation(json!({})).await;
    (
        out,
        Caller {
            client: otto,
            id: otto_id,
            conversation: otto_conversation,
        },
    )
}

async fn call(client: &Client, method: &str, path: &str, body: &Value) -> Reply {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut builder = client.request(method, path);
    if !body.is_null() {
        builder = builder.json(body);
    }
    client.send(builder).await
}

#[tokio::test]
async fn every_route_answers_each_role_as_the_permission_table_says() {
    let server = TestServer::start_with(Options {
        env: vec![
            ("ENCLAVE_RATE_LIMIT_PER_MINUTE", "0".into()),
            ("ENCLAVE_METRICS_TOKEN", "scrape-secret-123".into()),
        ],
        ..Options::default()
    });
    let (callers, other) = callers(&server).await;
    let all = [Is(401), Is(200), Is(200), Is(200), Is(200)];
    let chat = [Is(401), Is(403), Through, Through, Through];
    let admin = [Is(401), Is(403), Is(403), Is(200), Is(200)];
    let no_body = Value::Null;
    // {own} is the caller's own conversation, {other} another user's; {otto} that user's id.
    let rows: Vec<(&str, &str, Value, [Expect; 5])> = vec![
        ("GET", "/api/v1/auth/me", no_body.clone(), all),
        ("GET", "/api/v1/auth/sessions", no_body.clone(), all),
        ("GET", "/api/v1/settings", no_body.clone(), all),
        ("GET", "/api/v1/models", no_body.clone(), all),
        ("GET", "/v1/models", no_body.clone(), all),
        ("GET", "/api/v1/conversations", no_body.clone(), all),
        ("GET", "/api/v1/conversations/{own}", no_body.clone(), all),
        ("GET", "/api/v1/documents", no_body.clone(), all),
        (
            "POST",
            "/api/v1/conversations",
            json!({}),
            [Is(401), Is(403), Is(201), Is(201), Is(201)],
        ),
        (
            "PATCH",
            "/api/v1/conversations/{own}",
            json!({"title": "renamed"}),
            [Is(401), Is(403), Is(200), Is(200), Is(200)],
        ),
        // An image that does not exist is refused after the permission check (no generation
        // starts).
        (
            "POST",
            "/api/v1/conversations/{own}/messages",
            json!({"content": "hi", "attachments": [{"type": "image", "image_id": "00000000-0000-0000-0000-000000000001"}]}),
            [Is(401), Is(403), Is(404), Is(404), Is(404)],
        ),
        ("POST", "/api/v1/conversations/{own}/regenerate", json!({}), chat),
        ("POST", "/api/v1/conversations/{own}/stop", json!({}), chat),
        ("POST", "/api/v1/documents/upload", json!({}), chat),
        // Not multipart: refused after the permission check.
        ("POST", "/api/v1/images", json!({}), chat),
        (
            "GET",
            "/api/v1/images/00000000-0000-0000-0000-000000000001/info",
            no_body.clone(),
            [Is(401), Is(404), Is(404), Is(404), Is(404)],
        ),
        (
            "DELETE",
            "/api/v1/images/00000000-0000-0000-0000-000000000001",
            no_body.clone(),
            [Is(401), Is(403), Is(404), Is(404), Is(404)],
        ),
        // A temperature out of range is refused after the permission check.
        (
            "POST",
            "/v1/chat/completions",
            json!({"model": "tiny", "temperature": 9, "messages": [{"role": "user", "content": "x"}]}),
            chat,
        ),
        // This server has no embedding model: past the permission check, the model is not found.
        (
            "POST",
            "/v1/embeddings",
            json!({"input": "x"}),
            [Is(401), Is(403), Is(404), Is(404), Is(404)],
        ),
        ("POST", "/api/v1/auth/2fa/setup", json!({}), all),
        (
            "GET",
            "/metrics",
            no_body.clone(),
            [Is(401), Is(403), Is(403), Is(200), Is(200)],
        ),
        ("GET", "/api/v1/admin/users", no_body.clone(), admin),
        ("GET", "/api/v1/admin/users/{otto}", no_body.clone(), admin),
        ("GET", "/api/v1/admin/users/{otto}/sessions", no_body.clone(), admin),
        ("GET", "/api/v1/admin/users/{otto}/documents", no_body.clone(), admin),
        (
            "POST",
            "/api/v1/admin/users/{otto}/unlock",
            json!({}),
            [Is(401), Is(403), Is(403), Is(204), Is(204)],
        ),
        ("GET", "/api/v1/admin/registration", no_body.clone(), admin),
        ("GET", "/api/v1/admin/invites", no_body.clone(), admin),
        ("GET", "/api/v1/admin/audit", no_body.clone(), admin),
        ("GET", "/api/v1/admin/audit?format=jsonl", no_body.clone(), admin),
        ("GET", "/api/v1/admin/audit/verify", no_body.clone(), admin),
        (
            "POST",
            "/api/v1/admin/invites",
            json!({"role": "user"}),
            [Is(401), Is(403), Is(403), Is(201), Is(201)],
        ),
        // An admin manages viewers and users; only a super_admin grants admin.
        (
            "POST",
            "/api/v1/admin/invites",
            json!({"role": "admin"}),
            [Is(401), Is(403), Is(403), Is(403), Is(201)],
        ),
        (
            "PATCH",
            "/api/v1/admin/users/{super}",
            json!({"role": "user"}),
            [Is(401), Is(403), Is(403), Is(403), Is(403)],
        ),
        (
            "GET",
            "/api/v1/admin/users/00000000-0000-0000-0000-000000000001",
            no_body.clone(),
            [Is(401), Is(403), Is(403), Is(404), Is(404)],
        ),
        // Another user's conversation does not exist for anyone, administrators included.
        (
            "GET",
            "/api/v1/conversations/{other}",
            no_body.clone(),
            [Is(401), Is(404), Is(404), Is(404), Is(404)],
        ),
        (
            "PATCH",
            "/api/v1/conversations/{other}",
            json!({"title": "x"}),
            [Is(401), Is(403), Is(404), Is(404), Is(404)],
        ),
        (
            "DELETE",
            "/api/v1/conversations/{other}",
            no_body.clone(),
            [Is(401), Is(403), Is(404), Is(404), Is(404)],
        ),
    ];
    let mut failures = Vec::new();
    for (method, template, body, expected) in &rows {
        for (i, caller) in callers.iter().enumerate() {
            let path = template
                .replace("{own}", &caller.conversation)
                .replace("{other}", &other.conversation)
                .replace("{otto}", &other.id)
                .replace("{super}", &callers[4].id);
            let reply = call(&caller.client, method, &path, body).await;
            let ok = match expected[i] {
                Is(status) => reply.status == status,
                Through => ![401, 403, 404].contains(&reply.status),
            };
            if !ok {
                failures.push(format!(
                    "{method} {template} as {}: {} {:?}, expected {:?}",
                    CALLERS[i], reply.status, reply.body, expected[i]
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The metrics' bearer secret opens /metrics without an account; a wrong one does not.
    let scrape = reqwest::Client::new();
    let r = scrape
        .get(server.url("/metrics"))
        .bearer_auth("scrape-secret-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = scrape
        .get(server.url("/metrics"))
        .bearer_auth("guess")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn disabling_a_new_role_and_signing_out_take_effect_at_the_next_request() {
    let server = TestServer::start();
    let (callers, other) = callers(&server).await;
    let root = &callers[4].client;
    let otto = &other.client;
    let otto_path = format!("/api/v1/admin/users/{}", other.id);
    // A new role: the very next request is judged by it.
    let r = root.patch(&otto_path, json!({"role": "viewer"})).await;
    assert_eq!(r.status, 200);
    assert_eq!(otto.post("/api/v1/conversations", json!({})).await.status, 403);
    root.patch(&otto_path, json!({"role": "user"})).await;
    assert_eq!(otto.post("/api/v1/conversations", json!({})).await.status, 201);
    // Signed out by an administrator.
    let r = root.post(&format!("{otto_path}/sign-out"), json!({})).await;
    assert_eq!(r.status, 204);
    assert_eq!(otto.get("/api/v1/auth/me").await.code(), "INVALID_TOKEN");
    // Disabled: refused at once, and the login is refused too; enabled again, it logs in.
    let otto = signed_in(&server, "otto").await;
    let r = root.patch(&otto_path, json!({"disabled": true})).await;
    assert_eq!((r.status, r.body["disabled"].as_bool()), (200, Some(true)));
    let r = otto.get("/api/v1/auth/me").await;
    assert_eq!(
        (r.status, r.code()),
        (403, "ACCOUNT_DISABLED"),
        "refused at once, saying why: {:?}",
        r.body
    );
    let r = otto
        .post(
            "/api/v1/auth/login",
            json!({"username": "otto", "password": "otto-password-123"}),
        )
        .await;
    assert_eq!(r.code(), "ACCOUNT_DISABLED");
    root.patch(&otto_path, json!({"disabled": false})).await;
    signed_in(&server, "otto").await;
    // Nobody disables or demotes their own account.
    let r = root
        .patch(
            &format!("/api/v1/admin/users/{}", callers[4].id),
            json!({"disabled": true}),
        )
        .await;
    assert_eq!(r.status, 403);
}
