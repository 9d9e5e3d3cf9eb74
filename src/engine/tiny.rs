//! A tiny random-weight Llama (or Qwen2 / Qwen3) GGUF with a real (small) byte-level BPE tokenizer and a ChatML
//! template, for fast deterministic tests and benches.
//!
//! The output head has all-zero rows for the special tokens, so their logits are always 0
//! while some ordinary token's is almost surely higher: greedy generation never ends on its
//! own and runs until `max_tokens` or a stop string.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::engine::error::EngineError;

/// Hidden size.
pub const DIM: usize = 64;
/// Transformer blocks.
pub const LAYERS: usize = 2;
/// Attention heads.
pub const HEADS: usize = 4;
/// Key/value heads (grouped-query attention).
pub const KV_HEADS: usize = 2;
/// Feed-forward hidden size.
pub const FFN: usize = 128;
/// Context length written in the metadata.
pub const CONTEXT_LENGTH: usize = 2048;
/// The special tokens, ids 0, 1, 2 (as in SmolLM2): `<|endoftext|>`, `<|im_start|>` (BOS),
/// `<|im_end|>` (EOS).
pub const SPECIAL_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
/// The BPE merges after the 256 byte symbols, in rank order.
const MERGES: [(&str, &str); 16] = [
    ("Ġ", "t"),
    ("h", "e"),
    ("Ġt", "he"),
    ("i", "n"),
    ("Ġ", "a"),
    ("r", "e"),
    ("o", "n"),
    ("e", "r"),
    ("Ġ", "s"),
    ("Ġ", "c"),
    ("a", "t"),
    ("i", "s"),
    ("Ġ", "o"),
    ("e", "n"),
    ("Ġ", "w"),
    ("o", "u"),
];
/// A ChatML template shaped like SmolLM2's (a default system prompt when none is given).
pub const CHAT_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// The vocabulary size of the tiny model.
pub fn vocab_size() -> usize {
    SPECIAL_TOKENS.len() + 256 + MERGES.len()
}

/// `len` pseudo-random ordinary token ids of the tiny vocabulary (no special tokens), the same
/// for the same seed: prompts for the engine's tests and its self-test.
pub fn random_prompt(seed: u64, len: usize) -> Vec<u32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            // xorshift64: cheap, and never stuck at zero (the state starts odd).
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            3 + (state % (vocab_size() as u64 - 3)) as u32
        })
        .collect()
}

/// The layouts [`write_tiny_model`] can write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TinyArchitecture {
    /// `llama`: the plain Llama block.
    Llama,
    /// `qwen2`: Llama with biases on the q, k and v projections.
    Qwen2,
    /// `qwen3`: Llama with RMS norms on the queries and keys.
    Qwen3,
}

impl TinyArchitecture {
    /// The `general.architecture` name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
        }
    }
}

/// Writes the tiny Llama model to `path`; the same `seed` gives the same file.
pub fn write_tiny_llama(path: &Path, seed: u64) -> Result<(), EngineError> {
    write_tiny_model(path, seed, TinyArchitecture::Llama)
}

/// Writes a tiny model of `architecture` to `path`; the same `seed` gives the same file.
pub fn write_tiny_model(path: &Path, seed: u64, architecture: TinyArchitecture) -> Result<(), EngineError> {
    write_tiny_model_with(path, seed, architecture, &TinyShape::default())
}

/// The sizes and weight format of a tiny model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TinyShape {
    /// Hidden size.
    pub dim: usize,
    /// Feed-forward hidden size.
    pub ffn: usize,
    /// Attention heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// The format of the weight matrices (K-quants need `dim` and `ffn` multiples of 256).
    pub weights: GgmlDType,
    /// Transformer blocks.
    pub layers: usize,
    /// Vocabulary size: the tokenizer's [`vocab_size`] tokens, then `<|pad_N|>` tokens that
    /// no text encodes to (for a model whose embedding and output head are full-sized).
    pub vocab: usize,
    /// Whether the output head is the token embedding (no `output.weight`), as in Qwen2.5's
    /// small models.
    pub tied: bool,
    /// The context length the file declares.
    pub context: usize,
}

impl TinyShape {
    /// Qwen2.5-0.5B's shape (896 wide: not a multiple of 256, so `llama-quantize`'s K-quant
    /// types fall back to Q5_0 / Q8_0 for most of its matrices) in `weights`, with random
    /// weights: 494M parameters, for speed measurements, whose results do not depend on the
    /// weights' values.
    pub fn qwen2_0_5b(weights: GgmlDType) -> Self {
        Self {
            dim: 896,
            ffn: 4864,
            heads: 14,
            kv_heads: 2,
            weights,
            layers: 24,
            vocab: 151_936,
            tied: true,
            // Qwen2.5-0.5B's; also room for the benchmarks' prompts, which the tiny tokenizer
            // (few merges) cuts into about six tokens a word.
            context: 32_768,
        }
    }
}

impl Default for TinyShape {
    fn default() -> Self {
        Self {
            dim: DIM,
            ffn: FFN,
            heads: HEADS,
            kv_heads: KV_HEADS,
            weights: GgmlDType::Q8_0,
            layers: LAYERS,
            vocab: vocab_size(),
            tied: false,
            context: CONTEXT_LENGTH,
        }
    }
}

/// Writes a tiny model of `architecture` and `shape` to `path`; the same `seed` gives the
/// same file.
pub fn write_tiny_model_with(
    path: &Path,
    seed: u64,
    architecture: TinyArchitecture,
    shape: &TinyShape,
) -> Result<(), EngineError> {
    let mut rng = StdRng::seed_from_u64(seed);
    let device = Device::Cpu;
    let vocab = shape.vocab.max(vocab_size());
    let (dim, ffn) = (shape.dim, shape.ffn);
    let head_dim = dim / shape.heads;
    let kv = shape.kv_heads * head_dim;

    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let values = |rng: &mut StdRng, count: usize, scale: f32| -> Vec<f32> {
        (0..count).map(|_| rng.random_range(-scale..scale)).collect()
    };
    let q8 = |rng: &mut StdRng, rows: usize, cols: usize, scale: f32| -> candle_core::Result<QTensor> {
        let t = Tensor::from_vec(values(rng, rows * cols, scale), (rows, cols), &device)?;
        QTensor::quantize(&t, shape.weights)
    };
    let f32s = |data: Vec<f32>| -> candle_core::Result<QTensor> {
        let len = data.len();
        QTensor::quantize(&Tensor::from_vec(data, len, &device)?, GgmlDType::F32)
    };
    // Uniform(-a, a) with a = sqrt(3 / fan_in) has variance 1 / fan_in.
    let scale = |fan_in: usize| (3.0 / fan_in as f32).sqrt();

    let mut embedding = values(&mut rng, vocab * dim, 1.0);
    if shape.tied {
        // The embedding is the output head too: special-token rows zero (see the module docs).
        embedding[..SPECIAL_TOKENS.len() * dim]
            .iter_mut()
            .for_each(|w| *w = 0.0);
    }
    let embedding = Tensor::from_vec(embedding, (vocab, dim), &device)?;
    tensors.push((
        "token_embd.weight".into(),
        QTensor::quantize(&embedding, shape.weights)?,
    ));
    for layer in 0..shape.layers {
        let p = format!("blk.{layer}");
        tensors.push((format!("{p}.attn_norm.weight"), f32s(vec![1.0; dim])?));
        tensors.push((format!("{p}.attn_q.weight"), q8(&mut rng, dim, dim, scale(dim))?));
        tensors.push((format!("{p}.attn_k.weight"), q8(&mut rng, kv, dim, scale(dim))?));
        tensors.push((format!("{p}.attn_v.weight"), q8(&mut rng, kv, dim, scale(dim))?));
        tensors.push((format!("{p}.attn_output.weight"), q8(&mut rng, dim, dim, scale(dim))?));
        match architecture {
            TinyArchitecture::Llama => {}
            TinyArchitecture::Qwen2 => {
                tensors.push((format!("{p}.attn_q.bias"), f32s(values(&mut rng, dim, 0.1))?));
                tensors.push((format!("{p}.attn_k.bias"), f32s(values(&mut rng, kv, 0.1))?));
                tensors.push((format!("{p}.attn_v.bias"), f32s(values(&mut rng, kv, 0.1))?));
            }
            TinyArchitecture::Qwen3 => {
                tensors.push((format!("{p}.attn_q_norm.weight"), f32s(vec![1.0; head_dim])?));
                tensors.push((format!("{p}.attn_k_norm.weight"), f32s(vec![1.0; head_dim])?));
            }
        }
        tensors.push((format!("{p}.ffn_norm.weight"), f32s(vec![1.0; dim])?));
        tensors.push((format!("{p}.ffn_gate.weight"), q8(&mut rng, ffn, dim, scale(dim))?));
        tensors.push((format!("{p}.ffn_up.weight"), q8(&mut rng, ffn, dim, scale(dim))?));
        tensors.push((format!("{p}.ffn_down.weight"), q8(&mut rng, dim, ffn, scale(ffn))?));
    }
    tensors.push(("output_norm.weight".into(), f32s(vec![1.0; dim])?));
    if !shape.tied {
        // The output head: special-token rows are zero (see the module docs).
        let mut head = values(&mut rng, vocab * dim, scale(dim) * 4.0);
        head[..SPECIAL_TOKENS.len() * dim].iter_mut().for_each(|w| *w = 0.0);
        let head = QTensor::quantize(&Tensor::from_vec(head, (vocab, dim), &device)?, shape.weights)?;
        tensors.push(("output.weight".into(), head));
    }

    let metadata = metadata(architecture, shape);
    let metadata_refs: Vec<(&str, &gguf_file::Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = BufWriter::new(File::create(path)?);
    gguf_file::write(&mut out, &metadata_refs, &tensor_refs)?;
    std::io::Write::flush(&mut out)?;
    Ok(())
}

/// Writes a tiny Hugging Face model of `architecture` into the directory `dir` (f32
/// safetensors in Hugging Face names and layout, `config.json`, `tokenizer.json`,
/// `tokenizer_config.json` with the chat template, `generation_config.json`). The same
/// `seed` gives the same files.
pub fn write_tiny_hf(dir: &Path, seed: u64, architecture: TinyArchitecture) -> Result<(), EngineError> {
    use std::collections::HashMap;
    let mut rng = StdRng::seed_from_u64(seed);
    let device = Device::Cpu;
    let vocab = vocab_size();
    let head_dim = DIM / HEADS;
    let kv = KV_HEADS * head_dim;
    let scale = |fan_in: usize| (3.0 / fan_in as f32).sqrt();
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut matrix =
        |rng: &mut StdRng, name: String, rows: usize, cols: usize, scale: f32| -> candle_core::Result<()> {
            let values: Vec<f32> = (0..rows * cols).map(|_| rng.random_range(-scale..scale)).collect();
            tensors.insert(name, Tensor::from_vec(values, (rows, cols), &device)?);
            Ok(())
        };
    matrix(&mut rng, "model.embed_tokens.weight".into(), vocab, DIM, 1.0)?;
    for layer in 0..LAYERS {
        let p = format!("model.layers.{layer}");
        matrix(&mut rng, format!("{p}.self_attn.q_proj.weight"), DIM, DIM, scale(DIM))?;
        matrix(&mut rng, format!("{p}.self_attn.k_proj.weight"), kv, DIM, scale(DIM))?;
        matrix(&mut rng, format!("{p}.self_attn.v_proj.weight"), kv, DIM, scale(DIM))?;
        matrix(&mut rng, format!("{p}.self_attn.o_proj.weight"), DIM, DIM, scale(DIM))?;
        matrix(&mut rng, format!("{p}.mlp.gate_proj.weight"), FFN, DIM, scale(DIM))?;
        matrix(&mut rng, format!("{p}.mlp.up_proj.weight"), FFN, DIM, scale(DIM))?;
        matrix(&mut rng, format!("{p}.mlp.down_proj.weight"), DIM, FFN, scale(FFN))?;
    }
    // Vectors: norms near 1, small biases.
    let mut vector = |rng: &mut StdRng, name: String, len: usize, around: f32| -> candle_core::Result<()> {
        let values: Vec<f32> = (0..len).map(|_| around + rng.random_range(-0.1..0.1)).collect();
        tensors.insert(name, Tensor::from_vec(values, len, &device)?);
        Ok(())
    };
    for layer in 0..LAYERS {
        let p = format!("model.layers.{layer}");
        vector(&mut rng, format!("{p}.input_layernorm.weight"), DIM, 1.0)?;
        vector(&mut rng, format!("{p}.post_attention_layernorm.weight"), DIM, 1.0)?;
        match architecture {
            TinyArchitecture::Llama => {}
            TinyArchitecture::Qwen2 => {
                vector(&mut rng, format!("{p}.self_attn.q_proj.bias"), DIM, 0.0)?;
                vector(&mut rng, format!("{p}.self_attn.k_proj.bias"), kv, 0.0)?;
                vector(&mut rng, format!("{p}.self_attn.v_proj.bias"), kv, 0.0)?;
            }
            TinyArchitecture::Qwen3 => {
                vector(&mut rng, format!("{p}.self_attn.q_norm.weight"), head_dim, 1.0)?;
                vector(&mut rng, format!("{p}.self_attn.k_norm.weight"), head_dim, 1.0)?;
            }
        }
    }
    vector(&mut rng, "model.norm.weight".into(), DIM, 1.0)?;
    let mut head: Vec<f32> = (0..vocab * DIM)
        .map(|_| rng.random_range(-scale(DIM) * 4.0..scale(DIM) * 4.0))
        .collect();
    head[..SPECIAL_TOKENS.len() * DIM].iter_mut().for_each(|w| *w = 0.0);
    tensors.insert("lm_head.weight".into(), Tensor::from_vec(head, (vocab, DIM), &device)?);
    std::fs::create_dir_all(dir)?;
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))?;

    let config = serde_json::json!({
        "model_type": architecture.name(),
        "architectures": [match architecture {
            TinyArchitecture::Llama => "LlamaForCausalLM",
            TinyArchitecture::Qwen2 => "Qwen2ForCausalLM",
            TinyArchitecture::Qwen3 => "Qwen3ForCausalLM",
        }],
        "hidden_size": DIM,
        "intermediate_size": FFN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "head_dim": head_dim,
        "vocab_size": vocab,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": CONTEXT_LENGTH,
        "tie_word_embeddings": false,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "attention_bias": false,
        "sliding_window": CONTEXT_LENGTH,
        "max_window_layers": LAYERS,
        "use_sliding_window": false,
    });
    std::fs::write(dir.join("config.json"), config.to_string())?;
    write_tokenizer_files(dir, seed, &[])
}

/// Writes `tokenizer.json` (the tiny GGUF tokenizer, plus `added` special tokens with the
/// next ids), `tokenizer_config.json` and `generation_config.json` into `dir`.
fn write_tokenizer_files(dir: &Path, seed: u64, added: &[&str]) -> Result<(), EngineError> {
    let gguf = dir.join("tokenizer-source.gguf");
    write_tiny_model(&gguf, seed, TinyArchitecture::Llama)?;
    let mut reader = std::io::BufReader::new(File::open(&gguf)?);
    let content = gguf_file::Content::read(&mut reader)?;
    let tokenizer = crate::engine::load::tokenizer::TextTokenizer::load(
        &crate::engine::load::gguf::Metadata(&content.metadata),
        &gguf,
    )?;
    let mut inner = tokenizer.inner().clone();
    let tokens: Vec<tokenizers::AddedToken> = added
        .iter()
        .map(|t| tokenizers::AddedToken::from(t.to_string(), true))
        .collect();
    inner
        .add_special_tokens(tokens)
        .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
    inner
        .save(dir.join("tokenizer.json"), false)
        .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
    std::fs::remove_file(&gguf)?;
    let tokenizer_config = serde_json::json!({
        "bos_token": SPECIAL_TOKENS[1],
        "eos_token": {"content": SPECIAL_TOKENS[2], "special": true},
        "add_bos_token": false,
        "chat_template": CHAT_TEMPLATE,
    });
    std::fs::write(dir.join("tokenizer_config.json"), tokenizer_config.to_string())?;
    std::fs::write(
        dir.join("generation_config.json"),
        serde_json::json!({"eos_token_id": [2, 0]}).to_string(),
    )?;
    Ok(())
}

/// Adds a random tensor: `(rng, name, shape, spread, centre)`.
type AddTensor<'a> = dyn FnMut(&mut StdRng, String, &[usize], f32, f32) -> candle_core::Result<()> + 'a;

/// The special tokens a tiny Qwen3-VL adds after the tiny vocabulary, in id order.
pub const VISION_TOKENS: [&str; 3] = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>"];

/// The shape of a tiny Qwen3-VL ([`write_tiny_qwen3_vl`]).
#[derive(Clone, Debug, PartialEq)]
pub struct TinyVisionShape {
    /// Language model hidden size.
    pub dim: usize,
    /// Language model layers.
    pub layers: usize,
    /// Vision blocks.
    pub vision_depth: usize,
    /// Vision hidden size.
    pub vision_dim: usize,
    /// Pixels on a patch's side.
    pub patch_size: usize,
    /// Vision blocks feeding DeepStack.
    pub deepstack: Vec<usize>,
    /// The most pixels an image is scaled to.
    pub max_pixels: usize,
}

impl Default for TinyVisionShape {
    fn default() -> Self {
        Self {
            dim: DIM,
            layers: 3,
            vision_depth: 3,
            vision_dim: 32,
            patch_size: 4,
            deepstack: vec![0, 1],
            max_pixels: 64 * 64,
        }
    }
}

/// Writes a tiny random-weight Qwen3-VL (Hugging Face layout: `config.json` with text and
/// vision configs, f32 safetensors, tokenizer with the vision tokens, ChatML template,
/// `preprocessor_config.json`) into `dir`; the same `seed` gives the same files.
pub fn write_tiny_qwen3_vl(dir: &Path, seed: u64, shape: &TinyVisionShape) -> Result<(), EngineError> {
    use std::collections::HashMap;
    let mut rng = StdRng::seed_from_u64(seed);
    let device = Device::Cpu;
    let vocab = vocab_size() + VISION_TOKENS.len();
    let dim = shape.dim;
    let (heads, kv_heads, head_dim, ffn) = (HEADS, KV_HEADS, dim / HEADS, FFN);
    let (v, vi, p, merge) = (shape.vision_dim, shape.vision_dim * 3 / 2, shape.patch_size, 2);
    let scale = |fan_in: usize| (3.0 / fan_in as f32).sqrt();
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut random =
        |rng: &mut StdRng, name: String, shape: &[usize], scale: f32, around: f32| -> candle_core::Result<()> {
            let count: usize = shape.iter().product();
            let values: Vec<f32> = (0..count).map(|_| around + rng.random_range(-scale..scale)).collect();
            tensors.insert(name, Tensor::from_vec(values, shape, &device)?);
            Ok(())
        };
    // The embedding is the output head too: special-token rows zero (see the module docs).
    let mut embedding: Vec<f32> = (0..vocab * dim).map(|_| rng.random_range(-1.0..1.0)).collect();
    embedding[..SPECIAL_TOKENS.len() * dim]
        .iter_mut()
        .for_each(|w| *w = 0.0);
    embedding[vocab_size() * dim..].iter_mut().for_each(|w| *w = 0.0);
    let lm = "model.language_model";
    let mut named = vec![(
        format!("{lm}.embed_tokens.weight"),
        Tensor::from_vec(embedding, (vocab, dim), &device)?,
    )];
    for layer in 0..shape.layers {
        let l = format!("{lm}.layers.{layer}");
        random(
            &mut rng,
            format!("{l}.self_attn.q_proj.weight"),
            &[heads * head_dim, dim],
            scale(dim),
            0.0,
        )?;
        random(
            &mut rng,
            format!("{l}.self_attn.k_proj.weight"),
            &[kv_heads * head_dim, dim],
            scale(dim),
            0.0,
        )?;
        random(
            &mut rng,
            format!("{l}.self_attn.v_proj.weight"),
            &[kv_heads * head_dim, dim],
            scale(dim),
            0.0,
        )?;
        random(
            &mut rng,
            format!("{l}.self_attn.o_proj.weight"),
            &[dim, heads * head_dim],
            scale(dim),
            0.0,
        )?;
        random(&mut rng, format!("{l}.self_attn.q_norm.weight"), &[head_dim], 0.1, 1.0)?;
        random(&mut rng, format!("{l}.self_attn.k_norm.weight"), &[head_dim], 0.1, 1.0)?;
        random(&mut rng, format!("{l}.input_layernorm.weight"), &[dim], 0.1, 1.0)?;
        random(
            &mut rng,
            format!("{l}.post_attention_layernorm.weight"),
            &[dim],
            0.1,
            1.0,
        )?;
        random(
            &mut rng,
            format!("{l}.mlp.gate_proj.weight"),
            &[ffn, dim],
            scale(dim),
            0.0,
        )?;
        random(
            &mut rng,
            format!("{l}.mlp.up_proj.weight"),
            &[ffn, dim],
            scale(dim),
            0.0,
        )?;
        random(
            &mut rng,
            format!("{l}.mlp.down_proj.weight"),
            &[dim, ffn],
            scale(ffn),
            0.0,
        )?;
    }
    random(&mut rng, format!("{lm}.norm.weight"), &[dim], 0.1, 1.0)?;
    let vis = "model.visual";
    let patch_values = 3 * 2 * p * p;
    random(
        &mut rng,
        format!("{vis}.patch_embed.proj.weight"),
        &[v, 3, 2, p, p],
        scale(patch_values),
        0.0,
    )?;
    random(&mut rng, format!("{vis}.patch_embed.proj.bias"), &[v], 0.1, 0.0)?;
    random(&mut rng, format!("{vis}.pos_embed.weight"), &[16, v], 0.5, 0.0)?;
    let linear = |rng: &mut StdRng,
                  random: &mut AddTensor<'_>,
                  name: String,
                  out: usize,
                  inp: usize|
     -> candle_core::Result<()> {
        random(rng, format!("{name}.weight"), &[out, inp], scale(inp), 0.0)?;
        random(rng, format!("{name}.bias"), &[out], 0.1, 0.0)
    };
    let norm = |rng: &mut StdRng, random: &mut AddTensor<'_>, name: String, d: usize| -> candle_core::Result<()> {
        random(rng, format!("{name}.weight"), &[d], 0.1, 1.0)?;
        random(rng, format!("{name}.bias"), &[d], 0.1, 0.0)
    };
    for block in 0..shape.vision_depth {
        let b = format!("{vis}.blocks.{block}");
        norm(&mut rng, &mut random, format!("{b}.norm1"), v)?;
        norm(&mut rng, &mut random, format!("{b}.norm2"), v)?;
        linear(&mut rng, &mut random, format!("{b}.attn.qkv"), 3 * v, v)?;
        linear(&mut rng, &mut random, format!("{b}.attn.proj"), v, v)?;
        linear(&mut rng, &mut random, format!("{b}.mlp.linear_fc1"), vi, v)?;
        linear(&mut rng, &mut random, format!("{b}.mlp.linear_fc2"), v, vi)?;
    }
    let merged = v * merge * merge;
    let mergers = std::iter::once((format!("{vis}.merger"), v))
        .chain((0..shape.deepstack.len()).map(|i| (format!("{vis}.deepstack_merger_list.{i}"), merged)));
    for (name, norm_dim) in mergers {
        norm(&mut rng, &mut random, format!("{name}.norm"), norm_dim)?;
        linear(&mut rng, &mut random, format!("{name}.linear_fc1"), merged, merged)?;
        linear(&mut rng, &mut random, format!("{name}.linear_fc2"), dim, merged)?;
    }
    named.extend(tensors);
    let tensors: HashMap<String, Tensor> = named.into_iter().collect();
    std::fs::create_dir_all(dir)?;
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))?;

    let base = vocab_size() as u32;
    let config = serde_json::json!({
        "model_type": "qwen3_vl",
        "architectures": ["Qwen3VLForConditionalGeneration"],
        "image_token_id": base + 2,
        "video_token_id": base + 2,
        "vision_start_token_id": base,
        "vision_end_token_id": base + 1,
        "tie_word_embeddings": true,
        "text_config": {
            "model_type": "qwen3_vl_text",
            "hidden_size": dim,
            "intermediate_size": ffn,
            "num_hidden_layers": shape.layers,
            "num_attention_heads": heads,
            "num_key_value_heads": kv_heads,
            "head_dim": head_dim,
            "vocab_size": vocab,
            "hidden_act": "silu",
            "rms_norm_eps": 1e-6,
            "rope_theta": 5_000_000.0,
            "max_position_embeddings": CONTEXT_LENGTH,
            "tie_word_embeddings": true,
            "rope_scaling": {"rope_type": "default", "mrope_section": [2, 3, 3], "mrope_interleaved": true},
        },
        "vision_config": {
            "model_type": "qwen3_vl",
            "depth": shape.vision_depth,
            "hidden_size": v,
            "hidden_act": "gelu_pytorch_tanh",
            "intermediate_size": vi,
            "num_heads": 2,
            "in_channels": 3,
            "patch_size": p,
            "spatial_merge_size": merge,
            "temporal_patch_size": 2,
            "out_hidden_size": dim,
            "num_position_embeddings": 16,
            "deepstack_visual_indexes": shape.deepstack,
        },
    });
    std::fs::write(dir.join("config.json"), config.to_string())?;
    let factor = p * merge;
    std::fs::write(
        dir.join("preprocessor_config.json"),
        serde_json::json!({
            "image_processor_type": "Qwen2VLImageProcessorFast",
            "patch_size": p,
            "merge_size": merge,
            "temporal_patch_size": 2,
            "size": {"shortest_edge": factor * factor, "longest_edge": shape.max_pixels},
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
        })
        .to_string(),
    )?;
    write_tokenizer_files(dir, seed, &VISION_TOKENS)
}

/// The GGUF metadata: Llama hyper-parameters and SmolLM2-style tokenizer keys.
pub(crate) fn metadata(architecture: TinyArchitecture, shape: &TinyShape) -> Vec<(String, gguf_file::Value)> {
    use gguf_file::Value;
    let mut tokens: Vec<String> = SPECIAL_TOKENS.iter().map(|s| s.to_string()).collect();
    let byte_chars = byte_to_unicode();
    tokens.extend(byte_chars.iter().map(|c| c.to_string()));
    tokens.extend(MERGES.iter().map(|(a, b)| format!("{a}{b}")));
    let padding = shape.vocab.saturating_sub(tokens.len());
    tokens.extend((0..padding).map(|i| format!("<|pad_{i}|>")));
    let token_types: Vec<Value> = (0..tokens.len())
        .map(|i| Value::I32(if i < SPECIAL_TOKENS.len() { 3 } else { 1 }))
        .collect();
    let strings = |items: Vec<String>| Value::Array(items.into_iter().map(Value::String).collect());
    let u32v = |v: usize| Value::U32(v as u32);
    let arch = architecture.name();
    let mut metadata: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        ("general.name".into(), Value::String(format!("enclave-tiny-{arch}"))),
        ("general.alignment".into(), Value::U32(32)),
        (format!("{arch}.context_length"), u32v(shape.context)),
        (format!("{arch}.embedding_length"), u32v(shape.dim)),
        (format!("{arch}.block_count"), u32v(shape.layers)),
        (format!("{arch}.feed_forward_length"), u32v(shape.ffn)),
        (format!("{arch}.attention.head_count"), u32v(shape.heads)),
        (format!("{arch}.attention.head_count_kv"), u32v(shape.kv_heads)),
        (format!("{arch}.rope.dimension_count"), u32v(shape.dim / shape.heads)),
        (format!("{arch}.rope.freq_base"), Value::F32(10_000.0)),
        (format!("{arch}.attention.layer_norm_rms_epsilon"), Value::F32(1e-5)),
        (format!("{arch}.vocab_size"), u32v(tokens.len())),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String("smollm".into())),
        ("tokenizer.ggml.tokens".into(), strings(tokens)),
        ("tokenizer.ggml.token_type".into(), Value::Array(token_types)),
        (
            "tokenizer.ggml.merges".into(),
            strings(MERGES.iter().map(|(a, b)| format!("{a} {b}")).collect()),
        ),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
        ("tokenizer.ggml.unknown_token_id".into(), Value::U32(0)),
        ("tokenizer.ggml.padding_token_id".into(), Value::U32(2)),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)),
        ("tokenizer.chat_template".into(), Value::String(CHAT_TEMPLATE.into())),
    ];
    if architecture == TinyArchitecture::Qwen3 {
        metadata.push((format!("{arch}.attention.key_length"), u32v(shape.dim / shape.heads)));
        metadata.push((format!("{arch}.attention.value_length"), u32v(shape.dim / shape.heads)));
    }
    metadata
}

/// GPT-2's byte-to-symbol table: printable bytes stand for themselves, the others are
/// shifted to code points from U+0100 on (so a space is `Ġ`).
fn byte_to_unicode() -> Vec<char> {
    let printable = |b: u32| (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
    let mut shifted = 0;
    (0u32..256)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).expect("a byte is a char")
            } else {
                shifted += 1;
                char::from_u32(255 + shifted).expect("below U+0200")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_table_matches_gpt2() {
        let table = byte_to_unicode();
        assert_eq!(table[b' ' as usize], 'Ġ');
        assert_eq!(table[b'\n' as usize], 'Ċ');
        assert_eq!(table[b'a' as usize], 'a');
        let unique: std::collections::HashSet<_> = table.iter().collect();
        assert_eq!(unique.len(), 256);
    }

    #[test]
    fn same_seed_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
        write_tiny_llama(&a, 7).unwrap();
        write_tiny_llama(&b, 7).unwrap();
        write_tiny_llama(&c, 8).unwrap();
        let (a, b, c) = (
            std::fs::read(a).unwrap(),
            std::fs::read(b).unwrap(),
            std::fs::read(c).unwrap(),
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}

#[cfg(test)]
mod padded_vocabulary_tests {
    use super::*;

    /// The tokenizer of the model at `path`.
    fn tokenizer(path: &Path) -> crate::engine::load::tokenizer::TextTokenizer {
        let mut reader = std::io::BufReader::new(File::open(path).unwrap());
        let content = gguf_file::Content::read(&mut reader).unwrap();
        crate::engine::load::tokenizer::TextTokenizer::load(
            &crate::engine::load::gguf::Metadata(&content.metadata),
            path,
        )
        .unwrap()
    }

    #[test]
    fn padding_tokens_do_not_change_how_text_encodes() {
        let dir = tempfile::tempdir().unwrap();
        let (plain, padded) = (dir.path().join("plain.gguf"), dir.path().join("padded.gguf"));
        write_tiny_llama(&plain, 3).unwrap();
        let shape = TinyShape {
            vocab: 151_936,
            ..TinyShape::default()
        };
        write_tiny_model_with(&padded, 3, TinyArchitecture::Llama, &shape).unwrap();
        let text = "<|im_start|>user\nRequest 7. Tell me a story about the river and the garden.<|im_end|>\n";
        let (plain, padded) = (tokenizer(&plain), tokenizer(&padded));
        assert_eq!(padded.vocab_size(), 151_936);
        assert_eq!(padded.encode(text).unwrap(), plain.encode(text).unwrap());
    }
}
