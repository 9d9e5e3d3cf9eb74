//! The audit log over real HTTP and on the real store: a scripted session's events come back
//! in order with who, what, outcome and address (and never a message's text), filters, pages
//! and the JSON Lines export agree, and editing one entry in the database file makes
//! `enclave audit verify` (and the running server's check) fail at that entry.

use std::time::{SystemTime, UNIX_EPOCH};

use redb::ReadableTable;
use serde_json::{json, Value};
use totp_rs::{Algorithm, Secret, TOTP};

use crate::common::{Client, Options, TestServer};

/// The audit log's table, as the store defines it.
const AUDIT_LOG: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("audit_log");

fn current_code(secret: &str) -> String {
    let bytes = Secret::Encoded(secret.to_owned()).to_bytes().unwrap();
    let app = TOTP::new(Algorithm::SHA1, 6, 1, 30, bytes, None, String::new()).unwrap();
    app.generate(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs())
}

/// Every entry of the filter `query`, oldest first, read page by page (`limit` a page).
async fn all_entries(admin: &Client, query: &str, limit: usize) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let cursor = before.map(|b| format!("&before={b}")).unwrap_or_default();
        let r = admin
            .get(&format!("/api/v1/admin/audit?limit={limit}{query}{cursor}"))
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let page = r.body["entries"].as_array().unwrap().clone();
        assert!(page.len() <= limit);
        entries.extend(page);
        match r.body["next_before"].as_u64() {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    entries.reverse();
    entries
}

fn actions(entries: &[Value]) -> Vec<(&str, &str)> {
    entries
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["outcome"].as_str().unwrap()))
        .collect()
}

#[tokio::test]
async fn a_scripted_session_is_recorded_in_order_and_an_edited_entry_breaks_the_chain_there() {
    let mut server = TestServer::start_with(Options {
        env: vec![
            ("ENCLAVE_LOGIN_FAILURES_PER_MINUTE", "1000".into()),
            // One chat or /v1 request, then refusals: the limit's entry.
            ("ENCLAVE_RATE_LIMIT_PER_MINUTE", "1".into()),
            ("ENCLAVE_RATE_LIMIT_BURST", "1".into()),
        ],
        ..Options::default()
    });
    let mut root = Client::new(&server);
    root.signup("root").await;
    let mut una = Client::new(&server);
    una.signup("una").await;
    let una_id = una.get("/api/v1/auth/me").await.body["id"]
        .as_str()
        .unwrap()
        .to_string();

    // The script: a wrong password, a chat answer, a request over her budget and a page she
    // may not open (each twice: logged once a minute), an upload and its deletion, 2FA on, a password change; then an administrator's role
    // change and disabling.
    let r = Client::new(&server)
        .post(
            "/api/v1/auth/login",
            json!({"username": "una", "password": "not-her-password"}),
        )
        .await;
    assert_eq!(r.code(), "INVALID_CREDENTIALS");
    let conversation = una.new_conversation(json!({"settings": {"max_tokens": 8}})).await;
    let secret_words = "the secret words of una's question";
    let events = una
        .stream(
            &format!("/api/v1/conversations/{conversation}/messages"),
            json!({"content": secret_words}),
        )
        .await
        .collect()
        .await;
    assert_eq!(events.last().unwrap().event, "done", "{events:?}");
    for _ in 0..2 {
        assert_eq!(una.get("/v1/models").await.code(), "RATE_LIMITED");
    }
    for _ in 0..2 {
        assert_eq!(una.get("/api/v1/admin/users").await.code(), "FORBIDDEN");
    }
    let upload = una.upload(&[("notes.txt", b"Audit notes: nothing to see here.")]).await;
    assert_eq!(upload.status, 202, "{:?}", upload.body);
    let document = upload.body["documents"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(una.delete(&format!("/api/v1/documents/{document}")).await.status, 204);
    let setup = una.post("/api/v1/auth/2fa/setup", json!({})).await;
    let secret = setup.body["secret"].as_str().unwrap().to_string();
    let r = una
        .post("/api/v1/auth/2fa/verify", json!({"code": current_code(&secret)}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = una
        .put(
            "/api/v1/auth/password/change",
            json!({"current_password": "una-password-123", "new_password": "una-new-password-456"}),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = root
        .patch(&format!("/api/v1/admin/users/{una_id}"), json!({"role": "viewer"}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = root
        .patch(&format!("/api/v1/admin/users/{una_id}"), json!({"disabled": true}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // Her entries, in order, read three at a time.
    let entries = all_entries(&root, &format!("&user={una_id}"), 3).await;
    assert_eq!(
        actions(&entries),
        vec![
            ("auth.register", "ok"),
            ("auth.login", "ok"),
            ("auth.login", "INVALID_CREDENTIALS"),
            ("chat.answer", "ok"),
            ("limit.refused", "RATE_LIMITED"),
            ("access.denied", "FORBIDDEN"),
            ("document.upload", "ok"),
            ("document.delete", "ok"),
            ("auth.2fa_enable", "ok"),
            ("auth.password_change", "ok"),
            ("admin.role_change", "ok"),
            ("admin.user_disable", "ok"),
        ]
    );
    let seqs: Vec<u64> = entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(entries[5]["resource"], "GET /api/v1/admin/users");
    for entry in &entries[..10] {
        assert_eq!(entry["actor_user"]["username"], "una", "{entry}");
        assert_eq!(entry["ip"], "127.0.0.1", "{entry}");
        assert!(
            entry["actor"].as_str().unwrap().starts_with("p-"),
            "a pseudonym: {entry}"
        );
        // As stored (without the names the server resolves for the reader), no account id.
        let mut stored = entry.clone();
        stored
            .as_object_mut()
            .unwrap()
            .retain(|k, _| k != "actor_user" && k != "subject_user");
        assert!(
            !stored.to_string().contains(&una_id),
            "the id itself is never stored: {entry}"
        );
    }
    let answer = &entries[3];
    assert_eq!(answer["details"]["model"], "tiny", "{answer}");
    assert!(answer["details"]["prompt_tokens"].as_u64().unwrap() > 0, "{answer}");
    assert!(answer["details"]["completion_tokens"].as_u64().is_some(), "{answer}");
    assert!(answer["resource"]
        .as_str()
        .unwrap()
        .starts_with(&format!("conversation/{conversation}/message/")));
    assert_eq!(entries[7]["resource"], format!("document/{document}"));
    assert_eq!(entries[10]["details"], json!({"from": "user", "to": "viewer"}));
    for by_root in &entries[10..] {
        assert_eq!(by_root["actor_user"]["username"], "root", "{by_root}");
        assert_eq!(by_root["subject_user"]["username"], "una", "{by_root}");
    }
    // The chain links each entry to the one before it in the whole log.
    let everything = all_entries(&root, "", 500).await;
    for pair in everything.windows(2) {
        assert_eq!(pair[1]["prev_hash"], pair[0]["hash"]);
    }
    let whole_log = everything.iter().map(Value::to_string).collect::<String>();
    assert!(!whole_log.contains(secret_words), "never a message's text");
    assert!(
        !whole_log.contains("una-new-password-456") && !whole_log.contains(&secret),
        "never a secret"
    );

    // Filters.
    let logins = all_entries(&root, &format!("&user={una_id}&action=auth.login"), 100).await;
    assert_eq!(
        actions(&logins),
        vec![("auth.login", "ok"), ("auth.login", "INVALID_CREDENTIALS")]
    );
    let failed = all_entries(&root, "&outcome=INVALID_CREDENTIALS", 100).await;
    assert_eq!(failed.len(), 1);
    let after = everything[3]["at"].as_str().unwrap();
    let since = all_entries(&root, &format!("&since={after}"), 100).await;
    assert!(since.iter().all(|e| e["at"].as_str().unwrap() >= after));
    assert!(since.iter().any(|e| e["seq"] == everything[3]["seq"]));
    let until = all_entries(&root, &format!("&until={after}"), 100).await;
    assert!(until.iter().all(|e| e["at"].as_str().unwrap() < after));
    assert_eq!(since.len() + until.len(), everything.len());
    let r = root.get("/api/v1/admin/audit?action=auth.nothing").await;
    assert_eq!((r.status, r.code()), (422, "VALIDATION_ERROR"));
    let r = root.get("/api/v1/admin/audit?since=yesterday").await;
    assert_eq!((r.status, r.code()), (422, "VALIDATION_ERROR"));
    let r = root.get("/api/v1/admin/audit?shape=round").await;
    assert_eq!((r.status, r.code()), (422, "VALIDATION_ERROR"));
    assert!(
        r.body.to_string().contains("shape"),
        "unknown parameters are refused by name: {:?}",
        r.body
    );

    // The export: the same entries, oldest first, one JSON object a line.
    let response = root
        .request(
            reqwest::Method::GET,
            &format!("/api/v1/admin/audit?format=jsonl&user={una_id}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let text = response.text().await.unwrap();
    let exported: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(exported, entries);
    let last = all_entries(&root, "&action=admin.audit_export", 10).await;
    assert_eq!(last.len(), 1, "the export itself is recorded");

    let r = root.get("/api/v1/admin/audit/verify").await;
    assert_eq!(r.body["intact"], true, "{:?}", r.body);
    assert!(r.body["checked"].as_u64().unwrap() >= everything.len() as u64);

    // Someone covers up the failed login in the database file.
    server.terminate();
    let output = server.command(&["audit", "verify"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("intact"));
    let edited = entries[2]["seq"].as_u64().unwrap();
    {
        let db = redb::Database::open(server.dir.path().join("data/enclave.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut log = txn.open_table(AUDIT_LOG).unwrap();
            let value = log.get(edited).unwrap().unwrap().value().to_vec();
            let body = String::from_utf8(value[32..].to_vec()).unwrap();
            assert!(body.contains("\"INVALID_CREDENTIALS\""), "{body}");
            let mut changed = value[..32].to_vec();
            changed.extend_from_slice(body.replace("\"INVALID_CREDENTIALS\"", "\"ok\"").as_bytes());
            log.insert(edited, changed.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let output = server.command(&["audit", "verify"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("broken at entry {edited}:")), "{stderr}");

    server.restart();
    let mut root = Client::new(&server);
    let r = root
        .post(
            "/api/v1/auth/login",
            json!({"username": "root", "password": "root-password-123"}),
        )
        .await;
    root.token = Some(r.body["access_token"].as_str().unwrap().to_string());
    let r = root.get("/api/v1/admin/audit/verify").await;
    assert_eq!(r.body["intact"], false, "{:?}", r.body);
    assert_eq!(r.body["broken_at"], edited, "{:?}", r.body);
}

#[tokio::test]
async fn refused_logins_of_a_flood_are_recorded_once_a_minute_not_each() {
    let server = TestServer::start_with(Options {
        env: vec![("ENCLAVE_LOGIN_FAILURES_PER_MINUTE", "2".into())],
        ..Options::default()
    });
    let mut root = Client::new(&server);
    root.signup("root").await;
    let stranger = Client::new(&server);
    let mut codes = Vec::new();
    for _ in 0..12 {
        let r = stranger
            .post(
                "/api/v1/auth/login",
                json!({"username": "nobody", "password": "guess-guess-guess"}),
            )
            .await;
        codes.push(r.code().to_string());
    }
    assert_eq!(&codes[..2], ["INVALID_CREDENTIALS", "INVALID_CREDENTIALS"]);
    assert!(codes[2..].iter().all(|c| c == "RATE_LIMITED"), "{codes:?}");
    let logins = all_entries(&root, "&action=auth.login", 100).await;
    let outcomes: Vec<&str> = logins.iter().map(|e| e["outcome"].as_str().unwrap()).collect();
    assert_eq!(
        outcomes,
        vec!["ok", "INVALID_CREDENTIALS", "INVALID_CREDENTIALS", "RATE_LIMITED"]
    );
    assert_eq!(logins[1]["details"]["account"], "unknown");
    assert!(logins[1]["actor"].is_null());
    assert!(
        !logins.iter().any(|e| e.to_string().contains("nobody")),
        "the tried name is not kept"
    );
}
