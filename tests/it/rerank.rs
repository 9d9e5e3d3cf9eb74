//! Reranking through the real binary: a catalogue `rerank` model (a tiny generated BERT
//! cross-encoder with all-MiniLM-L6-v2's tokenizer) reorders hybrid search's hits by its own
//! relevance, a request can skip or ask for it, and without a working reranker search keeps
//! the fused order unless reranking was asked for.

use serde_json::{json, Value};

use crate::common::{minilm, Client, Options, TestServer};
use enclave::engine::tiny_cross_encoder::{write_tiny_cross_encoder, CrossShape, TinyCrossFamily};
use enclave::engine::{load_reranker, EmbedPrecision, EmbeddingModelConfig, LoadProgress, Priority};

/// Paragraphs about one island, so that every one of them is a plausible hit.
const GUIDE: &str = "# Island guide\n\nThe ferry to the island leaves at seven from the north pier.\n\n\
# Tickets\n\nFerry tickets are sold on board; the island pass covers the bus as well.\n\n\
# Bicycles\n\nBicycles cross on the ferry free of charge except in August.\n\n\
# Lodging\n\nThe island has two inns near the ferry landing and a campsite on the hill.\n\n\
# Weather\n\nStorms can cancel the last ferry back from the island in winter.\n\n\
# Food\n\nThe bakery by the pier opens when the first ferry arrives at the island.\n";

const QUERY: &str = "When does the island ferry leave?";

/// A server with all-MiniLM-L6-v2 and `rerank` as extra catalogue lines, linear layers in f32
/// so that the test's own forward gives the same numbers, chunks of one section.
fn server(rerank: String) -> TestServer {
    TestServer::start_with(Options {
        embed_model: Some(minilm()),
        extra_models: rerank,
        // Small chunks: one per section of the guide.
        config: "embed_precision = \"f32\"\nchunk_tokens = 24\nchunk_overlap = 0\n".into(),
        ..Default::default()
    })
}

/// A catalogue entry for a cross-encoder in `path`.
fn rerank_entry(id: &str, path: &std::path::Path) -> String {
    format!(
        "\n[[models]]\nid = \"{id}\"\nrole = \"rerank\"\nprovider = \"local\"\npath = \"{}\"\n",
        path.display()
    )
}

/// Uploads the guide and waits until it is indexed.
async fn upload_guide(c: &Client) -> String {
    let r = c.upload(&[("guide.md", GUIDE.as_bytes())]).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let id = r.body["documents"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(c.wait_ingested(&id).await["status"], "indexed");
    id
}

/// Waits until model `id` has left its loading states; returns its status.
async fn settled(c: &Client, id: &str) -> Value {
    crate::common::eventually(|| async move {
        let r = c.get(&format!("/api/v1/models/{id}/status")).await;
        matches!(r.body["status"].as_str(), Some("ready" | "failed")).then_some(r.body)
    })
    .await
}

fn texts(answer: &Value) -> Vec<String> {
    answer["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["text"].as_str().unwrap().to_owned())
        .collect()
}

fn relevances(answer: &Value) -> Vec<f64> {
    answer["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["relevance"].as_f64().unwrap())
        .collect()
}

#[tokio::test]
async fn a_cross_encoder_orders_hybrid_hits_by_its_own_relevance() {
    let model = tempfile::tempdir().unwrap();
    write_tiny_cross_encoder(
        model.path(),
        &minilm().join("tokenizer.json"),
        TinyCrossFamily::Bert,
        CrossShape::TINY,
        5,
    )
    .unwrap();
    let server = server(rerank_entry("tiny-reranker", model.path()));
    let mut c = Client::new(&server);
    c.signup("rhea").await;
    upload_guide(&c).await;
    let status = settled(&c, "tiny-reranker").await;
    assert_eq!(status["status"], "ready", "{status}");
    assert_eq!(status["role"], "rerank", "{status}");

    // The fused order, without the reranker.
    let fused = c
        .post(
            "/api/v1/documents/search",
            json!({"query": QUERY, "limit": 6, "rerank": false}),
        )
        .await;
    assert_eq!(fused.status, 200, "{:?}", fused.body);
    assert!(fused.body["reranked_by"].is_null(), "{:?}", fused.body);
    // By default hybrid search reranks.
    let reranked = c
        .post("/api/v1/documents/search", json!({"query": QUERY, "limit": 6}))
        .await;
    assert_eq!(reranked.status, 200, "{:?}", reranked.body);
    assert_eq!(reranked.body["reranked_by"], "tiny-reranker", "{:?}", reranked.body);
    let hits = texts(&reranked.body);
    assert!(hits.len() >= 4, "{:?}", reranked.body);
    let mut same_set = texts(&fused.body);
    same_set.sort();
    let mut sorted_hits = hits.clone();
    sorted_hits.sort();
    assert_eq!(sorted_hits, same_set, "reranking reorders the same hits");

    // Each hit's relevance is the cross-encoder's score of (query, hit), highest first: the
    // same model loaded here gives the numbers.
    let mut config = EmbeddingModelConfig::from_path("reference", model.path());
    config.precision = EmbedPrecision::F32;
    let reference = load_reranker(&config, &LoadProgress::new()).unwrap();
    let want = reference.score(QUERY, &hits, Priority::Interactive).await.unwrap();
    let got = relevances(&reranked.body);
    for (g, w) in got.iter().zip(&want) {
        assert!((g - f64::from(*w)).abs() < 1e-4, "relevance {g}, the model says {w}");
    }
    assert!(got.windows(2).all(|w| w[0] >= w[1]), "{got:?}");
    let spread = got.first().unwrap() - got.last().unwrap();
    assert!(spread > 0.01, "the scores differ, so the order is the model's: {got:?}");

    // Asked for, it reranks a BM25 search too.
    let text = c
        .post(
            "/api/v1/documents/search",
            json!({"query": QUERY, "mode": "text", "rerank": true}),
        )
        .await;
    assert_eq!(text.status, 200, "{:?}", text.body);
    assert_eq!(text.body["reranked_by"], "tiny-reranker");
    let got = relevances(&text.body);
    assert!(got.windows(2).all(|w| w[0] >= w[1]), "{got:?}");

    // A cross-encoder is not an embedding or chat model.
    let r = c
        .post("/v1/embeddings", json!({"model": "tiny-reranker", "input": "x"}))
        .await;
    assert!(r.status == 404 || r.status == 422 || r.status == 400, "{:?}", r.body);
}

#[tokio::test]
async fn without_a_working_reranker_search_keeps_its_order_unless_reranking_is_asked_for() {
    let mut server = server(rerank_entry(
        "broken-reranker",
        std::path::Path::new("/nonexistent/reranker"),
    ));
    let mut c = Client::new(&server);
    c.signup("ravi").await;
    let id = upload_guide(&c).await;
    let status = settled(&c, "broken-reranker").await;
    assert_eq!(status["status"], "failed", "{status}");

    // The default goes on without it, and says so.
    let r = c.post("/api/v1/documents/search", json!({"query": QUERY})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.body["reranked_by"].is_null(), "{:?}", r.body);
    assert_eq!(r.body["hits"][0]["document_id"], id.as_str());
    // Asked for, it is an error that names the model.
    let r = c
        .post("/api/v1/documents/search", json!({"query": QUERY, "rerank": true}))
        .await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert_eq!(r.code(), "MODEL_UNAVAILABLE", "{:?}", r.body);
    assert!(
        r.body["error"].as_str().unwrap().contains("broken-reranker"),
        "{:?}",
        r.body
    );
    // A chat answer from the documents still comes, with citations.
    let conversation = c.new_conversation(json!({"settings": {"max_tokens": 4}})).await;
    let mut stream = c
        .stream(
            &format!("/api/v1/conversations/{conversation}/messages"),
            json!({"content": QUERY, "use_documents": true}),
        )
        .await;
    assert_eq!(stream.status, 200, "{:?}", stream.error_body);
    let events = stream.collect().await;
    assert!(events.iter().any(|e| e.event == "citation"), "{events:?}");
    assert_eq!(events.last().unwrap().event, "done", "{events:?}");

    // Without a rerank model in the catalogue, asking for reranking is refused.
    let catalogue = server.dir.path().join("models.toml");
    let toml = std::fs::read_to_string(&catalogue).unwrap();
    let cut = toml.find("\n[[models]]\nid = \"broken-reranker\"").unwrap();
    std::fs::write(&catalogue, &toml[..cut]).unwrap();
    server.restart();
    let mut c2 = Client::new(&server);
    c2.token = c.token.clone();
    let r = c2
        .post("/api/v1/documents/search", json!({"query": QUERY, "rerank": true}))
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(r.code(), "VALIDATION_ERROR", "{:?}", r.body);
    assert!(r.body["error"].as_str().unwrap().contains("rerank"), "{:?}", r.body);
}
