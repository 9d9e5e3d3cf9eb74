//! The scheduler end to end on the tiny model: batch invariance of greedy output (arrival
//! times, prompt lengths, chunked prefill, preemption, prefix caching), fairness, limits.

use std::path::{Path, PathBuf};

use crate::engine::test_support::{collect, wait_for_stats as wait_for};
use crate::engine::{
    load, tiny, EngineError, EngineStats, GenerateEvent, GenerateRequest, LoadProgress, LocalEngine, LocalModelConfig,
    SchedulerConfig, StopReason,
};
use crate::generation::GenerationParams;

/// Writes the tiny model into a fresh directory.
fn tiny_model() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    tiny::write_tiny_llama(&path, 42).unwrap();
    (dir, path)
}

/// The tiny model's KV bytes per block of 16 tokens: K and V x 2 layers x 16 x 32 values of
/// the CPU engine's default f16 cache.
const BLOCK_BYTES: usize = 2 * tiny::LAYERS * 16 * tiny::KV_HEADS * (tiny::DIM / tiny::HEADS) * 2;

/// An engine on `path` with `scheduler`.
fn engine(path: &Path, scheduler: SchedulerConfig) -> LocalEngine {
    let mut config = LocalModelConfig::from_path("tiny", path);
    config.scheduler = scheduler;
    load(&config, &LoadProgress::new()).unwrap()
}

fn request(tokens: Vec<u32>, max_tokens: usize, key: &str) -> GenerateRequest {
    GenerateRequest {
        images: Vec::new(),
        prompt_tokens: tokens,
        sampling: GenerationParams {
            max_tokens: Some(max_tokens as u32),
            ..GenerationParams::default()
        },
        fairness_key: key.into(),
    }
}

/// 32 requests of different prompt lengths and answer lengths.
fn workload() -> Vec<GenerateRequest> {
    (0..32)
        .map(|i| {
            request(
                tiny::random_prompt(i, 5 + (i as usize * 7) % 61),
                8 + (i as usize * 5) % 25,
                "",
            )
        })
        .collect()
}

/// Runs `requests` together on an engine with `scheduler` and checks that each output is the
/// `expected` one (token for token); returns the engine's counters.
fn same_together(
    path: &Path,
    requests: &[GenerateRequest],
    expected: &[(String, GenerateEvent)],
    scheduler: SchedulerConfig,
) -> EngineStats {
    let engine = engine(path, scheduler);
    let got = together(&engine, requests);
    assert_eq!(got.len(), expected.len());
    for (i, (want, have)) in expected.iter().zip(&got).enumerate() {
        assert_eq!(want, have, "request {i}");
    }
    engine.stats()
}

/// Each request alone, one after the other, on a roomy engine.
fn alone(path: &Path, requests: &[GenerateRequest]) -> Vec<(String, GenerateEvent)> {
    let engine = engine(path, SchedulerConfig::default());
    requests
        .iter()
        .map(|r| collect(engine.submit(r.clone()).unwrap()))
        .collect()
}

/// All requests on `engine`, arriving in four waves a few steps apart.
fn together(engine: &LocalEngine, requests: &[GenerateRequest]) -> Vec<(String, GenerateEvent)> {
    let mut receivers = Vec::new();
    for wave in requests.chunks(8) {
        let before = engine.stats().steps;
        for r in wave {
            receivers.push(engine.submit(r.clone()).unwrap());
        }
        wait_for(engine, |s| s.steps >= before + 3);
    }
    receivers.into_iter().map(collect).collect()
}

#[test]
fn greedy_output_is_the_same_alone_or_in_a_batch_of_32() {
    let (_dir, path) = tiny_model();
    let requests = workload();
    let expected = alone(&path, &requests);
    for (text, end) in &expected {
        assert!(matches!(end, GenerateEvent::Finished { .. }), "{end:?}");
        assert!(!text.is_empty());
    }
    // Small steps: prefills are cut into chunks and share steps with decodes.
    let stats = same_together(
        &path,
        &requests,
        &expected,
        SchedulerConfig {
            max_batch_tokens: 48,
            max_running: 32,
            ..SchedulerConfig::default()
        },
    );
    assert!(stats.max_step_sequences >= 16, "the requests ran batched: {stats:?}");
    assert!(stats.max_prefill_beside_decodes > 20, "{stats:?}");
    assert_eq!(stats.preemptions, 0, "{stats:?}");
}

#[test]
fn prompts_beside_decodes_come_in_small_chunks_and_change_no_output() {
    let (_dir, path) = tiny_model();
    let requests = workload();
    let expected = alone(&path, &requests);
    let stats = same_together(
        &path,
        &requests,
        &expected,
        SchedulerConfig {
            max_batch_tokens: 64,
            max_prefill_while_decoding: Some(16),
            max_running: 32,
            ..SchedulerConfig::default()
        },
    );
    // Prompts shared steps with decodes, never more than 16 of their tokens at a time.
    assert!(
        (1..=16).contains(&stats.max_prefill_beside_decodes),
        "prompt tokens beside decodes: {stats:?}"
    );
}

#[test]
fn preemption_under_a_small_kv_budget_changes_no_output() {
    let (_dir, path) = tiny_model();
    let requests = workload();
    let expected = alone(&path, &requests);
    // 12 blocks of 16 tokens: a few sequences at a time; the longest needs 6.
    let stats = same_together(
        &path,
        &requests,
        &expected,
        SchedulerConfig {
            kv_cache_bytes: 12 * BLOCK_BYTES,
            prefix_caching: false,
            ..SchedulerConfig::default()
        },
    );
    assert!(stats.preemptions > 0, "the budget forced preemptions: {stats:?}");
    assert_eq!(stats.requests_finished, 32);
}

#[test]
fn preemption_with_prefix_caching_changes_no_output() {
    let (_dir, path) = tiny_model();
    // Shared 40-token prefixes (a system prompt) in front of different questions.
    let system = tiny::random_prompt(99, 40);
    let requests: Vec<GenerateRequest> = (0..16)
        .map(|i| {
            let mut tokens = system.clone();
            tokens.extend(tiny::random_prompt(i, 3 + i as usize));
            request(tokens, 20, "")
        })
        .collect();
    let expected = alone(&path, &requests);
    let stats = same_together(
        &path,
        &requests,
        &expected,
        SchedulerConfig {
            kv_cache_bytes: 14 * BLOCK_BYTES,
            ..SchedulerConfig::default()
        },
    );
    assert!(stats.preemptions > 0, "{stats:?}");
    assert!(
        stats.prefix_hit_tokens >= 32 * 8,
        "the shared prefix was reused: {stats:?}"
    );
}

#[test]
fn a_repeated_prompt_reuses_its_cached_blocks() {
    let (_dir, path) = tiny_model();
    let engine = engine(&path, SchedulerConfig::default());
    let tokens = tiny::random_prompt(5, 50);
    let first = collect(engine.submit(request(tokens.clone(), 12, "")).unwrap());
    assert_eq!(engine.stats().prefix_hit_tokens, 0);
    let second = collect(engine.submit(request(tokens.clone(), 12, "")).unwrap());
    assert_eq!(first, second);
    // 50 prompt tokens: three full blocks of 16 come from the cache.
    assert_eq!(engine.stats().prefix_hit_tokens, 48);
    // A longer prompt that starts the same way (the next turn) reuses them too.
    let mut next = tokens;
    next.extend(tiny::random_prompt(6, 20));
    collect(engine.submit(request(next, 4, "")).unwrap());
    assert_eq!(engine.stats().prefix_hit_tokens, 96, "{:?}", engine.stats());
}

#[test]
fn one_clients_many_requests_do_not_starve_another() {
    let (_dir, path) = tiny_model();
    let engine = engine(
        &path,
        SchedulerConfig {
            max_running: 1,
            ..SchedulerConfig::default()
        },
    );
    let mut greedy_client = Vec::new();
    greedy_client.push(engine.submit(request(tiny::random_prompt(1, 10), 30, "ann")).unwrap());
    wait_for(&engine, |s| s.steps > 0);
    for i in 2..6 {
        greedy_client.push(engine.submit(request(tiny::random_prompt(i, 10), 300, "ann")).unwrap());
    }
    let other = engine.submit(request(tiny::random_prompt(9, 10), 30, "bob")).unwrap();
    let (_, end) = collect(other);
    assert!(matches!(end, GenerateEvent::Finished { .. }));
    // Bob's one request ran right after Ann's first: of Ann's other four, at most the next
    // one has started, none has finished.
    let stats = wait_for(&engine, |s| s.requests_finished >= 2);
    assert_eq!(stats.requests_finished, 2, "{stats:?}");
    for receiver in &mut greedy_client[2..] {
        assert!(receiver.try_recv().is_err(), "still waiting");
    }
    for receiver in greedy_client {
        collect(receiver);
    }
}

#[test]
fn a_cancelled_request_frees_its_blocks_within_a_step() {
    let (_dir, path) = tiny_model();
    let engine = engine(&path, SchedulerConfig::default());
    let mut events = engine.submit(request(tiny::random_prompt(1, 30), 1500, "")).unwrap();
    assert!(events.blocking_recv().is_some());
    let steps = engine.stats().steps;
    drop(events);
    let stats = wait_for(&engine, |s| s.requests_cancelled == 1);
    // At most the step running at the drop and one more (the receiver is checked every step).
    assert!(stats.steps <= steps + 2, "{stats:?} after {steps} steps");
    assert!(stats.completion_tokens < 1500);
    let (_, end) = collect(engine.submit(request(tiny::random_prompt(2, 5), 3, "")).unwrap());
    assert!(matches!(
        end,
        GenerateEvent::Finished {
            completion_tokens: 3,
            ..
        }
    ));
}

#[test]
fn a_sequence_that_fills_the_whole_cache_ends_with_length() {
    let (_dir, path) = tiny_model();
    let engine = engine(
        &path,
        SchedulerConfig {
            kv_cache_bytes: 3 * BLOCK_BYTES,
            ..SchedulerConfig::default()
        },
    );
    assert_eq!(engine.max_sequence_tokens(), 48);
    assert!(matches!(
        engine.submit(request(tiny::random_prompt(1, 48), 5, "")),
        Err(EngineError::PromptTooLong { tokens: 48, limit: 48 })
    ));
    let (_, end) = collect(engine.submit(request(tiny::random_prompt(1, 20), 1000, "")).unwrap());
    // 48 positions computed; the 29th answer token comes from the last one's logits.
    assert_eq!(
        end,
        GenerateEvent::Finished {
            reason: StopReason::Length,
            prompt_tokens: 20,
            completion_tokens: 29
        }
    );
}

#[test]
fn sampled_output_is_the_same_alone_or_batched() {
    let (_dir, path) = tiny_model();
    let requests: Vec<GenerateRequest> = (0..8)
        .map(|i| GenerateRequest {
            images: Vec::new(),
            prompt_tokens: tiny::random_prompt(i, 12),
            sampling: GenerationParams {
                temperature: Some(0.9),
                top_k: Some(40),
                top_p: Some(0.95),
                min_p: Some(0.01),
                repetition_penalty: Some(1.1),
                seed: Some(i),
                max_tokens: Some(16),
                ..GenerationParams::default()
            },
            fairness_key: String::new(),
        })
        .collect();
    let expected = alone(&path, &requests);
    let engine = engine(&path, SchedulerConfig::default());
    let receivers: Vec<_> = requests.iter().map(|r| engine.submit(r.clone()).unwrap()).collect();
    let got: Vec<_> = receivers.into_iter().map(collect).collect();
    assert_eq!(expected, got);
}

#[test]
fn the_configuration_is_checked() {
    let bad = SchedulerConfig {
        max_running: 100,
        max_batch_tokens: 50,
        ..SchedulerConfig::default()
    };
    assert!(bad.validate().is_err());
    assert!(SchedulerConfig::default().validate().is_ok());
}
