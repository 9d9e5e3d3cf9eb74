//! Conversation CRUD, ordering, paging, filtering and isolation between users.

use serde_json::json;

use crate::common::{Client, TestServer};

#[tokio::test]
async fn crud_order_paging_and_filter() {
    let server = TestServer::start();
    let mut c = Client::new(&server);
    c.signup("erin").await;

    let created = c
        .post(
            "/api/v1/conversations",
            json!({"title": "Trip to Lyon", "system_prompt": "Be terse.", "settings": {"temperature": 0.2, "top_p": 0.9, "max_tokens": 64}}),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let lyon = created.body["id"].as_str().unwrap().to_string();
    assert_eq!(created.body["system_prompt"], "Be terse.");
    assert_eq!(created.body["settings"]["max_tokens"], 64);
    assert!(created.body["model"].is_null(), "no model means the server default");

    let untitled = c.post("/api/v1/conversations", json!({})).await;
    assert_eq!(untitled.body["title"], "New chat");
    let mut ids = vec![lyon.clone(), untitled.body["id"].as_str().unwrap().to_string()];
    for i in 0..3 {
        ids.push(c.new_conversation(json!({"title": format!("Notes {i}")})).await);
    }

    // Newest first.
    let list = c.get("/api/v1/conversations").await;
    let listed: Vec<&str> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
    expected.reverse();
    assert_eq!(listed, expected);
    assert!(list.body["next_cursor"].is_null());

    // Pinned first.
    let pinned = c
        .patch(&format!("/api/v1/conversations/{lyon}"), json!({"pinned": true}))
        .await;
    assert_eq!(pinned.status, 200);
    assert_eq!(pinned.body["pinned"], true);
    let list = c.get("/api/v1/conversations").await;
    assert_eq!(list.body["items"][0]["id"], lyon.as_str());

    // Pages of two cover everything exactly once.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = c.get(&format!("/api/v1/conversations?limit=2&cursor={cursor}")).await;
        assert_eq!(page.status, 200);
        for item in page.body["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_string());
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[0], lyon);
    let bad_cursor = c.get("/api/v1/conversations?cursor=garbage").await;
    assert_eq!((bad_cursor.status, bad_cursor.code()), (422, "VALIDATION_ERROR"));

    // Filter by title.
    let notes = c.get("/api/v1/conversations?q=notes").await;
    assert_eq!(notes.body["items"].as_array().unwrap().len(), 3);

    // Rename, system prompt, folder; get returns the record and its (empty) messages.
    let updated = c
        .patch(
            &format!("/api/v1/conversations/{lyon}"),
            json!({"title": "Lyon 2027", "system_prompt": "", "folder": "Travel"}),
        )
        .await;
    assert_eq!(updated.status, 200, "{:?}", updated.body);
    let got = c.get(&format!("/api/v1/conversations/{lyon}")).await;
    assert_eq!(got.body["title"], "Lyon 2027");
    assert!(got.body["system_prompt"].is_null());
    assert_eq!(got.body["folder"], "Travel");
    assert_eq!(got.body["messages"], json!([]));
    let put = c
        .put(
            &format!("/api/v1/conversations/{lyon}"),
            json!({"settings": {"temperature": 1.5}}),
        )
        .await;
    assert_eq!(put.body["settings"]["temperature"], 1.5);

    // Invalid updates.
    let bad = c
        .patch(
            &format!("/api/v1/conversations/{lyon}"),
            json!({"settings": {"temperature": 9}}),
        )
        .await;
    assert_eq!((bad.status, bad.code()), (422, "VALIDATION_ERROR"));
    let bad = c
        .patch(
            &format!("/api/v1/conversations/{lyon}"),
            json!({"title": "x".repeat(201)}),
        )
        .await;
    assert_eq!((bad.status, bad.code()), (422, "VALIDATION_ERROR"));
    let bad = c.post("/api/v1/conversations", json!({"model": "no-such-model"})).await;
    assert_eq!((bad.status, bad.code()), (422, "MODEL_NOT_FOUND"));
    let bad = c.post("/api/v1/conversations", json!({"colour": "red"})).await;
    assert_eq!((bad.status, bad.code()), (422, "VALIDATION_ERROR"));

    // Delete.
    assert_eq!(c.delete(&format!("/api/v1/conversations/{lyon}")).await.status, 204);
    let gone = c.get(&format!("/api/v1/conversations/{lyon}")).await;
    assert_eq!((gone.status, gone.code()), (404, "NOT_FOUND"));
    assert_eq!(c.delete(&format!("/api/v1/conversations/{lyon}")).await.status, 404);
    assert_eq!(
        c.get("/api/v1/conversations").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

#[tokio::test]
async fn users_cannot_see_each_others_conversations() {
    let server = TestServer::start();
    let mut frank = Client::new(&server);
    frank.signup("frank").await;
    let mut grace = Client::new(&server);
    grace.signup("grace").await;
    let id = frank.new_conversation(json!({"title": "Frank's secrets"})).await;
    let path = format!("/api/v1/conversations/{id}");

    assert_eq!(grace.get(&path).await.status, 404);
    assert_eq!(grace.patch(&path, json!({"title": "mine now"})).await.status, 404);
    assert_eq!(grace.delete(&path).await.status, 404);
    assert_eq!(grace.post(&format!("{path}/stop"), json!({})).await.status, 404);
    assert_eq!(grace.post(&format!("{path}/regenerate"), json!({})).await.status, 404);
    let send = grace
        .stream(&format!("{path}/messages"), json!({"content": "hi"}))
        .await;
    assert_eq!(send.status, 404);
    assert_eq!(grace.get("/api/v1/conversations").await.body["items"], json!([]));

    // Frank's conversation is untouched.
    let mine = frank.get(&path).await;
    assert_eq!(mine.status, 200);
    assert_eq!(mine.body["title"], "Frank's secrets");
}

#[tokio::test]
async fn settings_round_trip() {
    let server = TestServer::start();
    let mut c = Client::new(&server);
    c.signup("heidi").await;
    assert_eq!(c.get("/api/v1/settings").await.body["theme"], serde_json::Value::Null);
    let put = c
        .put(
            "/api/v1/settings",
            json!({"theme": "dark", "default_system_prompt": "You are kind."}),
        )
        .await;
    assert_eq!(put.status, 200, "{:?}", put.body);
    assert_eq!(c.get("/api/v1/settings").await.body["theme"], "dark");
    let bad = c.put("/api/v1/settings", json!({"theme": "neon"})).await;
    assert_eq!((bad.status, bad.code()), (422, "VALIDATION_ERROR"));
    // New conversations take the default system prompt.
    let conv = c.post("/api/v1/conversations", json!({})).await;
    assert_eq!(conv.body["system_prompt"], "You are kind.");
}
