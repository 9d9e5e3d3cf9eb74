//! The scheduler with images, end to end on a tiny Qwen3-VL: greedy output is the same alone,
//! in a batch of 16 mixed text and image requests and under KV preemption; the prefix cache
//! shares blocks of the same picture only.

use std::sync::Arc;

use crate::engine::test_support::{collect, wait_for_stats as wait_for};
use crate::engine::tiny::{self, TinyVisionShape};
use crate::engine::{
    load, EngineError, GenerateEvent, GenerateRequest, LoadProgress, LocalEngine, LocalModelConfig, SchedulerConfig,
};
use crate::generation::GenerationParams;

/// KV bytes of one block of 16 tokens of the tiny Qwen3-VL: K and V × 3 layers × 16 tokens ×
/// 2 heads × 16 values, f16.
const BLOCK_BYTES: usize = 2 * 3 * 16 * 2 * 16 * 2;

fn model() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    tiny::write_tiny_qwen3_vl(dir.path(), 21, &TinyVisionShape::default()).unwrap();
    dir
}

fn engine(dir: &std::path::Path, scheduler: SchedulerConfig) -> LocalEngine {
    let mut config = LocalModelConfig::from_path("tiny-vl", dir);
    config.scheduler = scheduler;
    load(&config, &LoadProgress::new()).unwrap()
}

fn png(width: u32, height: u32, seed: u32) -> Vec<u8> {
    let image = image::RgbaImage::from_fn(width, height, |x, y| {
        image::Rgba([
            ((x * 29 + y * 3 + seed * 17) % 256) as u8,
            ((x * 11 + y * 41 + seed * 5) % 256) as u8,
            ((x ^ y).wrapping_add(seed * 13) % 256) as u8,
            if (x + y + seed).is_multiple_of(7) { 128 } else { 255 },
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A request: `before` text tokens, the images (each framed by the vision tokens), `after`
/// text tokens.
fn request(
    engine: &LocalEngine,
    seed: u64,
    before: usize,
    images: &[Vec<u8>],
    after: usize,
    max_tokens: u32,
) -> GenerateRequest {
    let tokenizer_marker = engine.image_marker().unwrap().to_owned();
    let marker_tokens = engine.encode(&tokenizer_marker).unwrap();
    assert_eq!(marker_tokens.len(), 3, "start, image, end: {marker_tokens:?}");
    let mut tokens = tiny::random_prompt(seed, before);
    for _ in images {
        tokens.extend_from_slice(&marker_tokens);
    }
    tokens.extend(tiny::random_prompt(seed + 1000, after));
    let prepared = images
        .iter()
        .map(|png| Arc::new(engine.prepare_image(png).unwrap()))
        .collect();
    let (prompt_tokens, images) = engine.place_images(&tokens, prepared).unwrap();
    GenerateRequest {
        prompt_tokens,
        images,
        sampling: GenerationParams {
            max_tokens: Some(max_tokens),
            ..GenerationParams::default()
        },
        fairness_key: String::new(),
    }
}

/// 16 requests: text alone, one image, two images, at several sizes.
fn workload(engine: &LocalEngine) -> Vec<GenerateRequest> {
    (0..16u64)
        .map(|i| {
            let images: Vec<Vec<u8>> = match i % 3 {
                0 => Vec::new(),
                1 => vec![png(8 + 8 * (i as u32 % 4), 16 + 8 * (i as u32 % 3), i as u32)],
                _ => vec![png(24, 8, i as u32), png(16, 40, i as u32 + 1)],
            };
            request(
                engine,
                i,
                3 + (i as usize * 5) % 20,
                &images,
                2 + i as usize % 7,
                12 + (i as u32 * 7) % 17,
            )
        })
        .collect()
}

fn run_alone(engine: &LocalEngine, requests: &[GenerateRequest]) -> Vec<(String, GenerateEvent)> {
    requests
        .iter()
        .map(|r| collect(engine.submit(r.clone()).unwrap()))
        .collect()
}

fn run_together(engine: &LocalEngine, requests: &[GenerateRequest]) -> Vec<(String, GenerateEvent)> {
    let mut receivers = Vec::new();
    for wave in requests.chunks(4) {
        let before = engine.stats().steps;
        for r in wave {
            receivers.push(engine.submit(r.clone()).unwrap());
        }
        wait_for(engine, |s| s.steps >= before + 2);
    }
    receivers.into_iter().map(collect).collect()
}

#[test]
fn image_requests_give_the_same_greedy_output_alone_batched_and_preempted() {
    let dir = model();
    let roomy = engine(dir.path(), SchedulerConfig::default());
    let requests = workload(&roomy);
    assert!(requests.iter().any(|r| r.images.len() == 2));
    let expected = run_alone(&roomy, &requests);
    for (_, end) in &expected {
        assert!(
            matches!(end, GenerateEvent::Finished { completion_tokens, .. } if *completion_tokens > 0),
            "{end:?}"
        );
    }
    let distinct: std::collections::HashSet<&String> = expected.iter().map(|(text, _)| text).collect();
    assert!(distinct.len() > 8, "the answers differ: {expected:?}");
    // Small steps: prompts (and images) cut into chunks beside decodes.
    let batched = engine(
        dir.path(),
        SchedulerConfig {
            max_batch_tokens: 24,
            max_running: 16,
            ..SchedulerConfig::default()
        },
    );
    assert_eq!(run_together(&batched, &requests), expected);
    let stats = batched.stats();
    assert!(stats.max_step_sequences >= 8, "{stats:?}");
    // A KV cache of 7 blocks (the longest request needs 5): sequences are preempted and
    // recomputed (their images' features kept), the prefix cache on.
    let tight = engine(
        dir.path(),
        SchedulerConfig {
            kv_cache_bytes: 7 * BLOCK_BYTES,
            max_running: 16,
            ..SchedulerConfig::default()
        },
    );
    assert_eq!(run_together(&tight, &requests), expected);
    assert!(tight.stats().preemptions > 0, "{:?}", tight.stats());
}

#[test]
fn the_prefix_cache_shares_blocks_of_the_same_picture_only() {
    let dir = model();
    let engine = engine(dir.path(), SchedulerConfig::default());
    // 16 text tokens, then a 32 × 32 picture (16 tokens) framed, then text.
    let picture = png(32, 32, 1);
    let other = png(32, 32, 2);
    let first = request(&engine, 7, 16, std::slice::from_ref(&picture), 20, 8);
    assert_eq!(first.images[0].image.tokens(), 16);
    let a = collect(engine.submit(first.clone()).unwrap());
    assert_eq!(engine.stats().prefix_hit_tokens, 0);
    // The same picture again: every full block comes from the cache, the answer is the same.
    let again = collect(engine.submit(first.clone()).unwrap());
    assert_eq!(a, again);
    let full_blocks = (first.prompt_tokens.len() - 1) / 16 * 16;
    assert_eq!(engine.stats().prefix_hit_tokens as usize, full_blocks);
    // Another picture in the same place: the same token ids, but only the text block before it
    // is shared, and the answer differs.
    let before = engine.stats().prefix_hit_tokens;
    let second = request(&engine, 7, 16, &[other], 20, 8);
    assert_eq!(second.prompt_tokens, first.prompt_tokens, "image tokens look alike");
    let b = collect(engine.submit(second).unwrap());
    assert_eq!(engine.stats().prefix_hit_tokens - before, 16);
    assert_ne!(a.0, b.0, "another picture, another answer");
}

#[test]
fn bad_image_requests_are_refused() {
    let dir = model();
    let engine = engine(dir.path(), SchedulerConfig::default());
    let good = request(&engine, 1, 4, &[png(8, 8, 1)], 4, 4);
    // An image whose place holds other tokens.
    let mut shifted = good.clone();
    shifted.images[0].start -= 1;
    assert!(matches!(engine.submit(shifted), Err(EngineError::InvalidRequest(_))));
    // More images than places in the text.
    let tokens = tiny::random_prompt(3, 5);
    let image = Arc::new(engine.prepare_image(&png(8, 8, 1)).unwrap());
    assert!(matches!(
        engine.place_images(&tokens, vec![image]),
        Err(EngineError::InvalidRequest(_))
    ));
    // A file that is no image.
    assert!(matches!(
        engine.prepare_image(b"not an image"),
        Err(EngineError::InvalidRequest(_))
    ));
    // A text model refuses images.
    let text_dir = tempfile::tempdir().unwrap();
    let path = text_dir.path().join("tiny.gguf");
    tiny::write_tiny_llama(&path, 1).unwrap();
    let text = load(&LocalModelConfig::from_path("t", &path), &LoadProgress::new()).unwrap();
    assert!(!text.can_see() && text.image_marker().is_none());
    assert!(matches!(text.submit(good.clone()), Err(EngineError::InvalidRequest(_))));
    // A text model that models.toml says can see does not load.
    let mut config = LocalModelConfig::from_path("t", &path);
    config.vision = true;
    let error = load(&config, &LoadProgress::new()).unwrap_err();
    assert!(error.to_string().contains("text model"), "{error}");
    // The engine stays healthy.
    assert!(matches!(
        collect(engine.submit(good).unwrap()).1,
        GenerateEvent::Finished { .. }
    ));
}
