//! The OpenAI-compatible endpoints, driven the way OpenAI clients drive them.

use serde_json::{json, Value};

use crate::common::{Client, TestServer, LOCAL_MODEL};

#[tokio::test]
async fn chat_completions_whole_and_streamed() {
    let server = TestServer::start();
    let mut c = Client::new(&server);
    assert_eq!(
        c.post("/v1/chat/completions", json!({"messages": []})).await.status,
        401
    );
    c.signup("pia").await;

    let models = c.get("/v1/models").await;
    assert_eq!(models.body["object"], "list");
    assert_eq!(models.body["data"][0]["id"], LOCAL_MODEL);

    let body = json!({"model": LOCAL_MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5, "temperature": 0});
    let whole = c.post("/v1/chat/completions", body.clone()).await;
    assert_eq!(whole.status, 200, "{:?}", whole.body);
    assert_eq!(whole.body["object"], "chat.completion");
    assert_eq!(whole.body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(whole.body["choices"][0]["finish_reason"], "length");
    assert_eq!(whole.body["usage"]["completion_tokens"], 5);
    let text = whole.body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();

    // Streamed: the same greedy text, chunk by chunk, then usage and [DONE].
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let response = c
        .request(reqwest::Method::POST, "/v1/chat/completions")
        .json(&streamed)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let raw = response.text().await.unwrap();
    let payloads: Vec<&str> = raw.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(payloads.last(), Some(&"[DONE]"));
    let chunks: Vec<Value> = payloads[..payloads.len() - 1]
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0)?["delta"]["content"].as_str().map(String::from))
        .collect();
    assert_eq!(content, text);
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 5);
    assert!(chunks
        .iter()
        .any(|c| c["choices"].get(0).is_some_and(|ch| ch["finish_reason"] == "length")));

    // Errors in OpenAI's shape.
    let unknown = c
        .post(
            "/v1/chat/completions",
            json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.body["error"]["message"].as_str().unwrap().contains("nope"));
    let parts = c
        .post(
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}], "max_tokens": 2}),
        )
        .await;
    assert_eq!(parts.status, 200, "{:?}", parts.body);
    let image = c
        .post(
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
        )
        .await;
    // Images come as data: URLs only; the server never fetches a URL.
    assert_eq!((image.status, image.code()), (422, "IMAGE_URL_NOT_ALLOWED"));
    // Sampling values are checked by the same rules as the native API's settings.
    for (field, value) in [
        ("temperature", json!(2.5)),
        ("top_p", json!(0)),
        ("min_p", json!(1.5)),
        ("presence_penalty", json!(-3)),
        ("max_tokens", json!(0)),
    ] {
        let mut body = json!({"messages": [{"role": "user", "content": "Hi"}]});
        body[field] = value;
        let r = c.post("/v1/chat/completions", body).await;
        assert_eq!((r.status, r.code()), (422, "VALIDATION_ERROR"), "{field}");
        assert!(
            r.body["error"].as_str().unwrap().starts_with(field),
            "{field}: {}",
            r.body
        );
    }
}
