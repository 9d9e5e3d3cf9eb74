//! The language model with images: our batched forward against candle-transformers'
//! `qwen3_vl` and against a dense reference of the Hugging Face model, on a tiny random
//! Qwen3-VL.
//!
//! candle-transformers' `qwen3_vl` (0.11.1) has no multimodal positions (1-D positions for
//! every token) and no causal mask when a call holds several tokens (candle issue #3505), and
//! its mergers use the tanh GELU. Fed one token per call, its attention is causal; with images
//! of one token each, multimodal positions are the 1-D ones. So those prompts compare exactly
//! (our mergers switched to tanh). Images of several tokens are compared with a dense
//! reference written here from the Hugging Face model (causal, interleaved M-RoPE, DeepStack).

use std::path::Path;
use std::sync::Arc;

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor, D};
use candle_transformers::models::qwen3_vl;

use super::positions::ImageGrid;
use super::*;
use crate::engine::load::config::LocalModelConfig;
use crate::engine::load::loader::{read_model, LoadedModel};
use crate::engine::run::forward::{AttentionBackend, Batch, VisualRows};
use crate::engine::run::kv::KvCache;
use crate::engine::tiny::{self, TinyVisionShape};

/// A PNG of `width × height` with varied pixels.
fn png(width: u32, height: u32, seed: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([
            ((x * 37 + y * 11 + seed * 101) % 256) as u8,
            ((x * 5 + y * 53 + seed * 7) % 256) as u8,
            ((x * y + seed * 31) % 256) as u8,
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// The tiny model, loaded with `backend`.
fn load(dir: &Path, backend: AttentionBackend) -> LoadedModel {
    let config = LocalModelConfig::from_path("tiny-vl", dir);
    let mut loaded = read_model(&config, dir).unwrap();
    loaded.model.set_attention_backend(backend).unwrap();
    loaded.model.set_kv_dtype(DType::F32).unwrap();
    loaded
}

/// A prompt: text tokens around `images` (each placed after `text_before` tokens of text).
struct Prompt {
    tokens: Vec<u32>,
    images: Vec<(usize, Arc<PreparedImage>)>,
}

impl Prompt {
    /// The multimodal positions of its tokens and the delta after them.
    fn positions(&self) -> (Vec<[u32; 3]>, i64) {
        let grids: Vec<ImageGrid> = self
            .images
            .iter()
            .map(|(start, i)| ImageGrid {
                start: *start,
                rows: i.token_rows,
                cols: i.token_cols,
            })
            .collect();
        mrope_positions(self.tokens.len(), &grids).unwrap()
    }
}

fn prompt(loaded: &LoadedModel, parts: &[(usize, Option<Arc<PreparedImage>>)], seed: u64) -> Prompt {
    let vision = loaded.vision.as_ref().unwrap();
    let mut text = tiny::random_prompt(seed, 64).into_iter();
    let mut tokens = Vec::new();
    let mut images = Vec::new();
    for (before, image) in parts {
        tokens.extend(text.by_ref().take(*before));
        if let Some(image) = image {
            tokens.push(vision.tokens.start);
            images.push((tokens.len(), image.clone()));
            tokens.extend(std::iter::repeat_n(vision.tokens.image, image.tokens()));
            tokens.push(vision.tokens.end);
        }
    }
    Prompt { tokens, images }
}

/// Our logits for `prompt`, fed in `chunks` (token counts; the rest in one more chunk), then
/// for each `decode` token; with `other` (a text sequence) in the same batches.
fn ours(loaded: &LoadedModel, prompt: &Prompt, chunks: &[usize], decode: &[u32], tanh: bool) -> Vec<Vec<f32>> {
    let vision = loaded.vision.as_ref().unwrap();
    let mut encoder_tanh;
    let encoder = if tanh {
        encoder_tanh = VisionEncoder::load(
            vision.encoder.config().clone(),
            &[loaded.info.file.join("model.safetensors")],
            "model.visual",
            &Device::Cpu,
        )
        .unwrap();
        encoder_tanh.set_tanh_mergers();
        &encoder_tanh
    } else {
        &vision.encoder
    };
    let refs: Vec<&PreparedImage> = prompt.images.iter().map(|(_, i)| i.as_ref()).collect();
    let features = encoder.encode(&refs).unwrap();
    let (positions, delta) = prompt.positions();
    let model = &loaded.model;
    let total = prompt.tokens.len() + decode.len();
    let other: Vec<u32> = tiny::random_prompt(99, 7);
    let mut kv = KvCache::with_blocks(model.kv_config(4), total.div_ceil(4) + 8, &Device::Cpu).unwrap();
    let mut table = kv.new_table();
    kv.reserve(&mut table, total).unwrap();
    let mut other_table = kv.new_table();
    kv.reserve(&mut other_table, other.len()).unwrap();
    let mut all = prompt.tokens.clone();
    all.extend_from_slice(decode);
    let mut position_of = positions.clone();
    for i in prompt.tokens.len()..total {
        position_of.push([(i as i64 + delta) as u32; 3]);
    }
    let mut bounds = vec![0];
    for c in chunks {
        bounds.push(bounds.last().unwrap() + c);
    }
    bounds.push(prompt.tokens.len());
    for i in prompt.tokens.len()..total {
        bounds.push(i + 1);
    }
    let mut out = Vec::new();
    for (step, pair) in bounds.windows(2).enumerate() {
        let (start, end) = (pair[0], pair[1]);
        let visual: Vec<VisualRows<'_>> = prompt
            .images
            .iter()
            .zip(&features)
            .filter_map(|((at, image), f)| {
                let (from, to) = ((*at).max(start), (at + image.tokens()).min(end));
                (from < to).then(|| VisualRows {
                    row: from - start,
                    features: f,
                    from: from - at,
                    len: to - from,
                })
            })
            .collect();
        let mut batch = Batch::new();
        if step == 0 {
            // A text sequence beside it in the first step.
            batch.push(&other, 0, &other_table, true);
        }
        let wants = end >= prompt.tokens.len();
        batch.push_multimodal(
            &all[start..end],
            start,
            &table,
            wants,
            Some(&position_of[start..end]),
            &visual,
        );
        let logits = model.forward(&batch, &mut kv).unwrap();
        if wants {
            let row = logits.dim(0).unwrap() - 1;
            out.push(logits.get(row).unwrap().to_vec1::<f32>().unwrap());
        }
    }
    out
}

/// candle-transformers' logits for the same run, one token per call (see the module docs).
fn candle_logits(dir: &Path, prompt: &Prompt, decode: &[u32]) -> Vec<Vec<f32>> {
    let config: qwen3_vl::Config =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    // SAFETY: a test's own file, mapped read-only.
    let vb = unsafe {
        candle_nn::VarBuilder::from_mmaped_safetensors(&[dir.join("model.safetensors")], DType::F32, &Device::Cpu)
    }
    .unwrap();
    let model = qwen3_vl::Qwen3VLModel::new(&config, vb).unwrap();
    let mut all = prompt.tokens.clone();
    all.extend_from_slice(decode);
    let mut out = Vec::new();
    for (i, &token) in all.iter().enumerate() {
        let input = Tensor::new(&[token], &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let image = prompt.images.iter().find(|(at, _)| *at == i).map(|(_, image)| image);
        let (pixels, grid, spans) = match image {
            Some(image) => {
                assert_eq!(image.tokens(), 1, "one token per call: one-token images only");
                let values = image.patches.len() / image.num_patches();
                (
                    Some(Tensor::from_vec(image.patches.clone(), (image.num_patches(), values), &Device::Cpu).unwrap()),
                    Some(
                        Tensor::new(
                            &[[1u32, image.patch_rows as u32, image.patch_cols as u32]],
                            &Device::Cpu,
                        )
                        .unwrap(),
                    ),
                    vec![vec![(0usize, 1usize)]],
                )
            }
            None => (None, None, vec![vec![]]),
        };
        let logits = model
            .forward(&input, pixels, None, grid, None, vec![1], spans, vec![vec![]], &[i])
            .unwrap();
        if i + 1 >= prompt.tokens.len() {
            out.push(
                logits
                    .squeeze(0)
                    .unwrap()
                    .to_dtype(DType::F32)
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap(),
            );
        }
    }
    out
}

fn worst(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f32::max)
}

fn tiny_model(seed: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    tiny::write_tiny_qwen3_vl(dir.path(), seed, &TinyVisionShape::default()).unwrap();
    dir
}

#[test]
fn logits_match_candle_transformers_with_no_one_or_two_images() {
    let dir = tiny_model(11);
    let decode = [40u32, 41, 42];
    for backend in [AttentionBackend::CpuKernel, AttentionBackend::CandleOps] {
        let loaded = load(dir.path(), backend);
        let processing = &loaded.vision.as_ref().unwrap().processing;
        // 8 × 8 pixels: one merged patch, one token.
        let a = Arc::new(prepare_image(&png(8, 8, 1), processing).unwrap());
        let b = Arc::new(prepare_image(&png(8, 8, 2), processing).unwrap());
        assert_eq!((a.tokens(), b.tokens()), (1, 1));
        let prompts = [
            prompt(&loaded, &[(9, None)], 1),
            prompt(&loaded, &[(3, Some(a.clone())), (5, None)], 2),
            prompt(&loaded, &[(2, Some(a.clone())), (4, Some(b.clone())), (3, None)], 3),
        ];
        for (images, p) in prompts.iter().enumerate() {
            let candle = candle_logits(dir.path(), p, &decode);
            let ours = ours(&loaded, p, &[], &decode, true);
            let diff = worst(&ours, &candle);
            println!("{backend:?}, {images} image(s): max |ours - candle| = {diff:.2e}");
            assert!(diff < 1e-3, "{backend:?}, {images} image(s): {diff}");
        }
    }
}

/// The Hugging Face model, densely, for one sequence: embeddings with the images' spliced
/// in, causal attention with interleaved M-RoPE at `positions`, DeepStack after the first
/// layers. Returns the last token's logits.
fn dense_logits(dir: &Path, tokens: &[u32], positions: &[[u32; 3]], images: &[(usize, &ImageFeatures)]) -> Vec<f32> {
    let dev = Device::Cpu;
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let text = &config["text_config"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap() as usize;
    let (hidden, layers, heads, kv_heads, hd) = (
        n(&text["hidden_size"]),
        n(&text["num_hidden_layers"]),
        n(&text["num_attention_heads"]),
        n(&text["num_key_value_heads"]),
        n(&text["head_dim"]),
    );
    let eps = text["rms_norm_eps"].as_f64().unwrap() as f32;
    let theta = text["rope_theta"].as_f64().unwrap() as f32;
    let section: Vec<usize> = serde_json::from_value(text["rope_scaling"]["mrope_section"].clone()).unwrap();
    // SAFETY: a test's own file, mapped read-only.
    let st = unsafe { MmapedSafetensors::new(dir.join("model.safetensors")) }.unwrap();
    let w = |name: &str| st.load(&format!("model.language_model.{name}"), &dev).unwrap();
    let s = tokens.len();
    let embed = w("embed_tokens.weight");
    let mut x = embed.index_select(&Tensor::new(tokens, &dev).unwrap(), 0).unwrap();
    let mut rows: Vec<u32> = Vec::new();
    let mut deepstack: Vec<Vec<Tensor>> = Vec::new();
    for (start, features) in images {
        let len = features.embeds.dim(0).unwrap();
        x = x
            .slice_assign(&[*start..start + len, 0..hidden], &features.embeds)
            .unwrap();
        rows.extend((*start..start + len).map(|r| r as u32));
        for (l, f) in features.deepstack.iter().enumerate() {
            if deepstack.len() <= l {
                deepstack.push(Vec::new());
            }
            deepstack[l].push(f.clone());
        }
    }
    // Interleaved M-RoPE, as Hugging Face's apply_interleaved_mrope writes it: time for
    // every frequency, then rows at 1, 4, ... < 3 × section[1], columns at 2, 5, ... < 3 × section[2].
    let half = hd / 2;
    let mut axis = vec![0usize; half];
    // (Python's slices stop at the end.)
    for j in (1..(3 * section[1]).min(half)).step_by(3) {
        axis[j] = 1;
    }
    for j in (2..(3 * section[2]).min(half)).step_by(3) {
        axis[j] = 2;
    }
    let angles: Vec<f32> = positions
        .iter()
        .flat_map(|p| {
            let axis = &axis;
            (0..2 * half).map(move |d| {
                let j = d % half;
                p[axis[j]] as f32 * (1.0 / theta.powf((2 * j) as f32 / hd as f32))
            })
        })
        .collect();
    let angles = Tensor::from_vec(angles, (s, 1, hd), &dev).unwrap();
    let (cos, sin) = (angles.cos().unwrap(), angles.sin().unwrap());
    let rope = |t: &Tensor| -> Tensor {
        let first = t.narrow(D::Minus1, 0, half).unwrap();
        let second = t.narrow(D::Minus1, half, half).unwrap();
        let rotated = Tensor::cat(&[&second.neg().unwrap(), &first], D::Minus1).unwrap();
        (t.broadcast_mul(&cos).unwrap() + rotated.broadcast_mul(&sin).unwrap()).unwrap()
    };
    let rms = |t: &Tensor, weight: &Tensor| candle_nn::ops::rms_norm(&t.contiguous().unwrap(), weight, eps).unwrap();
    let mask: Vec<f32> = (0..s)
        .flat_map(|i| (0..s).map(move |j| if j <= i { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    let mask = Tensor::from_vec(mask, (s, s), &dev).unwrap();
    let rows = Tensor::new(rows.as_slice(), &dev).unwrap();
    for l in 0..layers {
        let p = |name: &str| w(&format!("layers.{l}.{name}"));
        let h = rms(&x, &p("input_layernorm.weight"));
        let q = h
            .matmul(&p("self_attn.q_proj.weight").t().unwrap())
            .unwrap()
            .reshape((s, heads, hd))
            .unwrap();
        let k = h
            .matmul(&p("self_attn.k_proj.weight").t().unwrap())
            .unwrap()
            .reshape((s, kv_heads, hd))
            .unwrap();
        let v = h
            .matmul(&p("self_attn.v_proj.weight").t().unwrap())
            .unwrap()
            .reshape((s, kv_heads, hd))
            .unwrap();
        let q = rope(&rms(&q, &p("self_attn.q_norm.weight")));
        let k = rope(&rms(&k, &p("self_attn.k_norm.weight")));
        let mut outs = Vec::new();
        for head in 0..heads {
            let g = head / (heads / kv_heads);
            let qh = q.narrow(1, head, 1).unwrap().squeeze(1).unwrap();
            let kh = k.narrow(1, g, 1).unwrap().squeeze(1).unwrap();
            let vh = v.narrow(1, g, 1).unwrap().squeeze(1).unwrap();
            let scores = ((qh.matmul(&kh.t().unwrap()).unwrap() / (hd as f64).sqrt()).unwrap() + &mask).unwrap();
            outs.push(candle_nn::ops::softmax_last_dim(&scores).unwrap().matmul(&vh).unwrap());
        }
        let attn = Tensor::cat(&outs, 1)
            .unwrap()
            .matmul(&p("self_attn.o_proj.weight").t().unwrap())
            .unwrap();
        x = (x + attn).unwrap();
        let h = rms(&x, &p("post_attention_layernorm.weight"));
        let gate = candle_nn::ops::silu(&h.matmul(&p("mlp.gate_proj.weight").t().unwrap()).unwrap()).unwrap();
        let up = h.matmul(&p("mlp.up_proj.weight").t().unwrap()).unwrap();
        x = (&x
            + (gate * up)
                .unwrap()
                .matmul(&p("mlp.down_proj.weight").t().unwrap())
                .unwrap())
        .unwrap();
        if let Some(features) = deepstack.get(l) {
            let add = Tensor::cat(features, 0).unwrap();
            x = x.index_add(&rows, &add, 0).unwrap();
        }
    }
    let last = rms(&x.narrow(0, s - 1, 1).unwrap(), &w("norm.weight"));
    last.matmul(&embed.t().unwrap())
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

#[test]
fn logits_with_grid_images_match_the_hugging_face_model_however_the_prompt_is_cut() {
    let dir = tiny_model(12);
    let loaded = load(dir.path(), AttentionBackend::CpuKernel);
    let processing = &loaded.vision.as_ref().unwrap().processing;
    // 16 × 24 pixels: 3 × 2 tokens; 40 × 8: 1 × 5.
    let a = Arc::new(prepare_image(&png(16, 24, 3), processing).unwrap());
    let b = Arc::new(prepare_image(&png(40, 8, 4), processing).unwrap());
    assert_eq!((a.token_rows, a.token_cols, b.token_rows, b.token_cols), (3, 2, 1, 5));
    let p = prompt(&loaded, &[(4, Some(a.clone())), (3, Some(b.clone())), (5, None)], 5);
    let encoder = &loaded.vision.as_ref().unwrap().encoder;
    let features = encoder.encode(&[&a, &b]).unwrap();
    let (positions, delta) = p.positions();
    assert!(delta < 0, "text after a grid image runs behind its index");
    let decode = [50u32, 51];
    let mut expected = Vec::new();
    let mut all = p.tokens.clone();
    let mut all_positions = positions.clone();
    let images: Vec<(usize, &ImageFeatures)> = p.images.iter().map(|(s, _)| *s).zip(&features).collect();
    expected.push(dense_logits(dir.path(), &all, &all_positions, &images));
    for &token in &decode {
        let index = all.len() as i64;
        all.push(token);
        all_positions.push([(index + delta) as u32; 3]);
        expected.push(dense_logits(dir.path(), &all, &all_positions, &images));
    }
    // Whole, and cut inside each image (the second chunk ends inside the second image).
    for chunks in [vec![], vec![7], vec![7, 7], vec![1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]] {
        let got = ours(&loaded, &p, &chunks, &decode, false);
        let diff = worst(&got, &expected);
        println!("chunks {chunks:?}: max |ours - dense| = {diff:.2e}");
        assert!(diff < 1e-3, "chunks {chunks:?}: {diff}");
    }
    // The positions matter: 1-D positions give other logits.
    let flat: Vec<[u32; 3]> = (0..p.tokens.len() as u32).map(|i| [i; 3]).collect();
    let wrong = dense_logits(dir.path(), &p.tokens, &flat, &images);
    assert!(worst(&[wrong], &expected[..1]) > 1e-2);
}
