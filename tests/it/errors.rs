//! Bad input gets a JSON error with a stable code and the right status, never a panic.

use serde_json::json;

use crate::common::{Client, Options, TestServer};

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let server = TestServer::start_with(Options {
        config: "max_body_bytes = 4096\n".into(),
        ..Default::default()
    });
    let mut c = Client::new(&server);
    c.signup("olga").await;
    let raw = |method: reqwest::Method, path: &str| c.request(method, path);

    // Malformed JSON.
    let r = c
        .send(
            raw(reqwest::Method::POST, "/api/v1/conversations")
                .header("content-type", "application/json")
                .body("{\"title\": "),
        )
        .await;
    assert_eq!((r.status, r.code()), (400, "MALFORMED_JSON"));
    assert!(r.body["error"].is_string());
    // Missing field and wrong type.
    let r = c.post("/api/v1/auth/login", json!({"email": "olga@example.com"})).await;
    assert_eq!((r.status, r.code()), (422, "VALIDATION_ERROR"));
    let r = c.post("/api/v1/conversations", json!({"title": 5})).await;
    assert_eq!((r.status, r.code()), (422, "VALIDATION_ERROR"));
    // No JSON content type.
    let r = c
        .send(raw(reqwest::Method::POST, "/api/v1/conversations").body("{}"))
        .await;
    assert_eq!((r.status, r.code()), (415, "UNSUPPORTED_MEDIA_TYPE"));
    // Body over the limit.
    let r = c
        .post("/api/v1/conversations", json!({"title": "x".repeat(10_000)}))
        .await;
    assert_eq!((r.status, r.code()), (413, "PAYLOAD_TOO_LARGE"));
    // Oversize and empty fields.
    let id = c.new_conversation(json!({})).await;
    let r = c
        .stream(
            &format!("/api/v1/conversations/{id}/messages"),
            json!({"content": "   "}),
        )
        .await;
    assert_eq!(r.status, 422);
    let r = c
        .post(
            "/api/v1/conversations",
            json!({"system_prompt": "y".repeat(3000), "title": "z".repeat(300)}),
        )
        .await;
    assert_eq!((r.status, r.code()), (422, "VALIDATION_ERROR"));
    let r = c
        .post("/api/v1/conversations", json!({"settings": {"max_tokens": 0}}))
        .await;
    assert_eq!((r.status, r.code()), (422, "VALIDATION_ERROR"));
    // Query strings of the wrong type are JSON errors too, naming the field.
    for query in ["limit=abc", "limit=-1", "limit=1.5"] {
        let r = c.get(&format!("/api/v1/conversations?{query}")).await;
        assert_eq!((r.status, r.code()), (422, "VALIDATION_ERROR"), "{query}");
        assert!(
            r.body["error"].as_str().unwrap().contains("limit"),
            "{query}: {}",
            r.body
        );
    }
    // Unknown ids, malformed ids, unknown routes and methods.
    let r = c.get(&format!("/api/v1/conversations/{}", uuid::Uuid::now_v7())).await;
    assert_eq!((r.status, r.code()), (404, "NOT_FOUND"));
    let r = c.get("/api/v1/conversations/not-a-uuid").await;
    assert_eq!((r.status, r.code()), (404, "NOT_FOUND"));
    let r = c.get("/api/v1/models/no-such-model/status").await;
    assert_eq!((r.status, r.code()), (404, "MODEL_NOT_FOUND"));
    let r = c.get("/api/v1/nothing-here").await;
    assert_eq!((r.status, r.code()), (404, "NOT_FOUND"));
    let r = c.send(raw(reqwest::Method::DELETE, "/api/v1/auth/login")).await;
    assert_eq!((r.status, r.code()), (405, "METHOD_NOT_ALLOWED"));
    // An attachment must name an image; one that does not exist is refused by name.
    let r = c
        .stream(
            &format!("/api/v1/conversations/{id}/messages"),
            json!({"content": "see file", "attachments": [{"type": "image"}]}),
        )
        .await;
    assert_eq!(r.status, 422);
    let r = c
        .stream(
            &format!("/api/v1/conversations/{id}/messages"),
            json!({"content": "see file", "attachments": [{"type": "image", "image_id": uuid::Uuid::now_v7()}]}),
        )
        .await;
    assert_eq!(r.status, 404);
    // Documents named in a message must exist.
    let r = c
        .stream(
            &format!("/api/v1/conversations/{id}/messages"),
            json!({"content": "see file", "document_ids": [uuid::Uuid::now_v7()]}),
        )
        .await;
    assert_eq!(r.status, 404);

    // The server is still healthy after all of that.
    assert_eq!(c.get("/health").await.status, 200);
}
