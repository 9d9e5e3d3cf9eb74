//! A local model fetched from the Hugging Face Hub through hf-hub (a fake Hub on this
//! machine, reached through `HF_ENDPOINT`): progress while it downloads, an answer once it
//! is loaded, and a restart in offline mode that loads it from the cache without the Hub.

use std::time::Duration;

use serde_json::json;

use crate::common::{eventually, text_of, Client, LOCAL_MODEL};
use crate::fake_hub::server_downloading_the_tiny_model;

#[tokio::test]
async fn a_model_downloads_with_progress_then_loads_offline_from_the_cache() {
    let (hub, mut server) = server_downloading_the_tiny_model(20, Duration::from_millis(150));
    let mut c = Client::new(&server);
    c.signup("dora").await;
    let status_path = format!("/api/v1/models/{LOCAL_MODEL}/status");

    // Partway: downloading, with a fraction of the file.
    let partway = eventually(|| async {
        let r = c.get(&status_path).await;
        let progress = r.body["progress"].as_f64().unwrap_or(0.0);
        (r.body["status"] == "downloading" && progress > 0.0 && progress < 1.0).then_some(progress)
    })
    .await;
    assert!(partway > 0.0 && partway < 1.0, "{partway}");
    eventually(|| async { (c.get(&status_path).await.body["status"] == "ready").then_some(()) }).await;
    assert_eq!(hub.downloads(), 1);
    let cached = server.dir.path().join("data/models");
    assert!(cached.is_dir(), "the hf-hub cache is under the data directory");

    let id = c.new_conversation(json!({"settings": {"max_tokens": 8}})).await;
    let mut stream = c
        .stream(
            &format!("/api/v1/conversations/{id}/messages"),
            json!({"content": "Hello"}),
        )
        .await;
    let events = stream.collect().await;
    assert_eq!(events.last().map(|e| e.event.as_str()), Some("done"), "{events:?}");
    assert!(!text_of(&events).is_empty());

    // Offline, with the Hub gone: the cached file is used.
    drop(hub);
    std::fs::write(server.dir.path().join("enclave.toml"), "offline = true\n").unwrap();
    server.restart();
    let c = Client::new(&server);
    let r = c.get("/ready").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}
