//! The vision path's cost: images a second through the vision encoder, and the time to the
//! first token of a question about an image against the same question with text in the
//! image's place (what seeing adds: preparing and encoding the image).
//!
//! ```text
//! cargo bench --bench vision
//! ```
//!
//! On the tiny random-weight Qwen3-VL of the tests (to watch the overhead of the path, not a
//! model), then the vision encoder at Qwen3-VL-2B's real shape (24 blocks of 1024, patch 16,
//! DeepStack at 5, 11, 17) with random weights, on 448 × 448 and 896 × 896 pictures.
//! `BENCH_ROUNDS` (default 3) rounds, the best kept. Under `cargo test` (no `--bench`) one
//! round of the tiny model only, to keep the harness itself tested.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use enclave::engine::run::vision::{prepare_image, ImageProcessing, VisionConfig, VisionEncoder};
use enclave::engine::tiny::{self, TinyVisionShape};
use enclave::engine::{load, GenerateEvent, GenerateRequest, LoadProgress, LocalEngine, LocalModelConfig};
use enclave::generation::GenerationParams;

/// A PNG of `side × side` with varied pixels.
fn png(side: u32, seed: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(side, side, |x, y| {
        image::Rgb([
            ((x * 31 + y * 7 + seed) % 256) as u8,
            ((x * 3 + y * 17) % 256) as u8,
            ((x ^ y) % 256) as u8,
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).expect("encode a PNG");
    out.into_inner()
}

/// The best of `rounds` timings of `work`.
fn best(rounds: usize, mut work: impl FnMut()) -> Duration {
    (0..rounds)
        .map(|_| {
            let started = Instant::now();
            work();
            started.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// Time to the end of a one-token answer (the prefill and one sample), best of `rounds`.
fn time_to_first_token(engine: &LocalEngine, request: &GenerateRequest, rounds: usize) -> Duration {
    best(rounds, || {
        let events = engine.submit(request.clone()).expect("submit");
        let (_, end) = enclave::engine::read_to_end(events);
        assert!(matches!(end, Some(GenerateEvent::Finished { .. })), "{end:?}");
    })
}

fn tiny_model(rounds: usize) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    tiny::write_tiny_qwen3_vl(dir.path(), 1, &TinyVisionShape::default()).expect("the tiny model");
    let mut config = LocalModelConfig::from_path("tiny-vl", dir.path());
    // No prefix cache: every round computes the whole prompt.
    config.scheduler.prefix_caching = false;
    let engine = load(&config, &LoadProgress::new()).expect("load");
    let picture = png(64, 1);
    let marker = engine
        .encode(engine.image_marker().expect("a vision model"))
        .expect("encode");
    let mut tokens = tiny::random_prompt(1, 20);
    tokens.extend_from_slice(&marker);
    tokens.extend(tiny::random_prompt(2, 10));
    let prepare = best(rounds * 5, || {
        engine.prepare_image(&picture).expect("prepare");
    });
    let image = Arc::new(engine.prepare_image(&picture).expect("prepare"));
    let (with_image, images) = engine.place_images(&tokens, vec![image.clone()]).expect("place");
    let sampling = GenerationParams {
        max_tokens: Some(1),
        ..GenerationParams::default()
    };
    let image_request = GenerateRequest {
        prompt_tokens: with_image.clone(),
        images,
        sampling: sampling.clone(),
        fairness_key: String::new(),
    };
    // The same length of text where the image was.
    let mut text_tokens = tiny::random_prompt(1, 20);
    text_tokens.extend(tiny::random_prompt(3, with_image.len() - 30));
    text_tokens.extend(tiny::random_prompt(2, 10));
    let text_request = GenerateRequest {
        prompt_tokens: text_tokens,
        images: Vec::new(),
        sampling,
        fairness_key: String::new(),
    };
    let with = time_to_first_token(&engine, &image_request, rounds);
    let without = time_to_first_token(&engine, &text_request, rounds);
    println!(
        "## tiny Qwen3-VL (random weights), 64 × 64 picture = {} image tokens, prompt {} tokens",
        image.tokens(),
        with_image.len()
    );
    println!("| measure | best of {rounds} |");
    println!("|---|---|");
    println!(
        "| prepare the picture (decode, resize, patches) | {:.2} ms |",
        prepare.as_secs_f64() * 1e3
    );
    println!("| time to first token, picture | {:.2} ms |", with.as_secs_f64() * 1e3);
    println!(
        "| time to first token, text in its place | {:.2} ms |",
        without.as_secs_f64() * 1e3
    );
    let encoder_config: VisionConfig = serde_json::from_value(
        serde_json::from_str::<serde_json::Value>(
            &std::fs::read_to_string(dir.path().join("config.json")).expect("config"),
        )
        .expect("json")["vision_config"]
            .clone(),
    )
    .expect("vision config");
    let encoder = VisionEncoder::load(
        encoder_config,
        &[dir.path().join("model.safetensors")],
        "model.visual",
        &Device::Cpu,
    )
    .expect("encoder");
    encoder_rate(&encoder, &[image.as_ref().clone()], 8, rounds);
}

/// Images a second through `encoder`, one at a time and `batch` at a time.
fn encoder_rate(encoder: &VisionEncoder, images: &[enclave::engine::PreparedImage], batch: usize, rounds: usize) {
    for image in images {
        let one = best(rounds, || {
            encoder.encode(&[image]).expect("encode");
        });
        let many: Vec<&enclave::engine::PreparedImage> = std::iter::repeat_n(image, batch).collect();
        let together = best(rounds, || {
            encoder.encode(&many).expect("encode");
        });
        println!(
            "| encoder, {} patches ({} tokens), 1 image a call | {:.1} ms | {:.2} images/s |",
            image.num_patches(),
            image.tokens(),
            one.as_secs_f64() * 1e3,
            1.0 / one.as_secs_f64()
        );
        println!(
            "| encoder, same, {batch} images a call | {:.1} ms | {:.2} images/s |",
            together.as_secs_f64() * 1e3,
            batch as f64 / together.as_secs_f64()
        );
    }
}

/// Qwen3-VL-2B's vision encoder shape with random weights.
fn real_size_encoder() -> VisionEncoder {
    let config = VisionConfig {
        depth: 24,
        hidden_size: 1024,
        hidden_act: "gelu_pytorch_tanh".into(),
        intermediate_size: 4096,
        num_heads: 16,
        in_channels: 3,
        patch_size: 16,
        spatial_merge_size: 2,
        temporal_patch_size: 2,
        out_hidden_size: 2048,
        num_position_embeddings: 2304,
        deepstack_visual_indexes: vec![5, 11, 17],
    };
    let device = Device::Cpu;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut add = |name: String, shape: &[usize]| {
        let t = Tensor::randn(0f32, 0.02, shape, &device).expect("random");
        tensors.insert(name, t);
    };
    let (v, vi, m) = (1024, 4096, 4096);
    add("patch_embed.proj.weight".into(), &[v, 3, 2, 16, 16]);
    add("patch_embed.proj.bias".into(), &[v]);
    add("pos_embed.weight".into(), &[2304, v]);
    for b in 0..24 {
        for (name, shape) in [
            ("norm1.weight", vec![v]),
            ("norm1.bias", vec![v]),
            ("norm2.weight", vec![v]),
            ("norm2.bias", vec![v]),
            ("attn.qkv.weight", vec![3 * v, v]),
            ("attn.qkv.bias", vec![3 * v]),
            ("attn.proj.weight", vec![v, v]),
            ("attn.proj.bias", vec![v]),
            ("mlp.linear_fc1.weight", vec![vi, v]),
            ("mlp.linear_fc1.bias", vec![vi]),
            ("mlp.linear_fc2.weight", vec![v, vi]),
            ("mlp.linear_fc2.bias", vec![v]),
        ] {
            add(format!("blocks.{b}.{name}"), &shape);
        }
    }
    let mergers =
        std::iter::once(("merger".to_string(), v)).chain((0..3).map(|i| (format!("deepstack_merger_list.{i}"), m)));
    for (name, norm) in mergers {
        add(format!("{name}.norm.weight"), &[norm]);
        add(format!("{name}.norm.bias"), &[norm]);
        add(format!("{name}.linear_fc1.weight"), &[m, m]);
        add(format!("{name}.linear_fc1.bias"), &[m]);
        add(format!("{name}.linear_fc2.weight"), &[2048, m]);
        add(format!("{name}.linear_fc2.bias"), &[2048]);
    }
    let vb = candle_nn::VarBuilder::from_tensors(tensors, DType::F32, &device);
    VisionEncoder::new(config, vb, &device).expect("the real-size encoder")
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let rounds = if benchmarking { rounds } else { 1 };
    tiny_model(rounds);
    if benchmarking {
        let encoder = real_size_encoder();
        let processing = ImageProcessing::from_json(encoder.config(), None).expect("processing");
        let images: Vec<_> = [448, 896]
            .iter()
            .map(|&side| prepare_image(&png(side, 2), &processing).expect("prepare"))
            .collect();
        println!("## Qwen3-VL-2B vision encoder shape (random weights, f32, CPU)");
        println!("| measure | best of {rounds} | rate |");
        println!("|---|---|---|");
        encoder_rate(&encoder, &images, 2, rounds);
    }
}
