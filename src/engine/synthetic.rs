//! Random-weight GGUF models of a real size (Llama-3-8B's shape by default), for speed
//! measurements: how fast a model runs does not depend on its weights' values, and a GPU
//! check must not need a download.
//!
//! Quantizing eight billion random floats would take the GPU machine's whole time budget, so
//! the quantized blocks are written directly: random code bytes, and block scales chosen so
//! that every weight is a small number of about the size a trained model's has (no
//! infinities, no NaNs, activations that stay finite through every layer). The Q4_K_M
//! recipe is llama.cpp's: Q6_K for the output head and for `attn_v` and `ffn_down` in the
//! layers where `llama-quantize` gives those more bits, Q4_K everywhere else.
//!
//! The tokenizer is the tiny model's (see [`super::tiny`]) padded to the shape's vocabulary,
//! and, as there, the output head's rows for the special tokens are zero, so greedy
//! generation never ends on its own.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use candle_core::quantized::{ggml_file::qtensor_from_ggml, gguf_file, GgmlDType, QTensor};
use candle_core::Device;

use crate::engine::error::EngineError;
use crate::engine::tiny::{self, TinyArchitecture, TinyShape};

/// The sizes of a synthetic model (a Llama-architecture transformer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyntheticShape {
    /// Hidden size (a multiple of 256, the K-quants' super-block).
    pub dim: usize,
    /// Feed-forward hidden size (a multiple of 256).
    pub ffn: usize,
    /// Attention heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// The context length the file declares.
    pub context: usize,
}

impl SyntheticShape {
    /// Llama-3-8B: 4096 wide, 32 layers, 32 heads of which 8 key/value, 128,256 tokens.
    pub const LLAMA3_8B: Self = Self {
        dim: 4096,
        ffn: 14336,
        heads: 32,
        kv_heads: 8,
        layers: 32,
        vocab: 128_256,
        context: 8192,
    };

    /// Llama-3.2-1B's widths (2048 wide, 16 layers), for a quicker look.
    pub const LLAMA3_1B: Self = Self {
        dim: 2048,
        ffn: 8192,
        heads: 32,
        kv_heads: 8,
        layers: 16,
        vocab: 128_256,
        context: 8192,
    };

    /// A small model of the same structure (tests).
    pub const SMALL: Self = Self {
        dim: 256,
        ffn: 512,
        heads: 4,
        kv_heads: 2,
        layers: 2,
        vocab: 1024,
        context: 4096,
    };

    /// The shape called `name` (`llama3-8b`, `llama3-1b`, `small`).
    pub fn by_name(name: &str) -> Option<Self> {
        match name {
            "llama3-8b" => Some(Self::LLAMA3_8B),
            "llama3-1b" => Some(Self::LLAMA3_1B),
            "small" => Some(Self::SMALL),
            _ => None,
        }
    }

    /// Parameters in the weight matrices and the embedding (norms left out).
    pub fn parameters(&self) -> usize {
        let kv = self.kv_heads * (self.dim / self.heads);
        let layer = 2 * self.dim * self.dim + 2 * kv * self.dim + 3 * self.dim * self.ffn;
        self.layers * layer + 2 * self.vocab * self.dim
    }
}

/// The weight formats a synthetic model comes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyntheticWeights {
    /// llama.cpp's Q4_K_M mix of Q4_K and Q6_K.
    Q4KM,
    /// Half-precision floats throughout.
    F16,
}

impl SyntheticWeights {
    /// The format called `name` (`q4_k_m`, `f16`, any case).
    pub fn by_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "q4_k_m" => Some(Self::Q4KM),
            "f16" => Some(Self::F16),
            _ => None,
        }
    }

    /// The format of one matrix: `role` is the GGUF name's last part before `.weight`.
    fn format_of(self, role: &str, layer: usize, layers: usize) -> GgmlDType {
        match self {
            Self::F16 => GgmlDType::F16,
            Self::Q4KM => match role {
                "output" => GgmlDType::Q6K,
                "attn_v" | "ffn_down" if more_bits(layer, layers) => GgmlDType::Q6K,
                _ => GgmlDType::Q4K,
            },
        }
    }
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers and every third one
/// between them.
fn more_bits(layer: usize, layers: usize) -> bool {
    layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2
}

/// What was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntheticSummary {
    /// Tensors in the file.
    pub tensors: usize,
    /// Bytes of tensor data.
    pub tensor_bytes: usize,
    /// Bytes a decode step reads: every matrix but the token embedding (of which it reads one
    /// row per token).
    pub bytes_read_per_token: usize,
}

/// Writes a random-weight Llama model of `shape` in `weights` to `path`; the same `seed`
/// gives the same file.
pub fn write_synthetic_model(
    path: &Path,
    shape: &SyntheticShape,
    weights: SyntheticWeights,
    seed: u64,
) -> Result<SyntheticSummary, EngineError> {
    if !shape.dim.is_multiple_of(256) || !shape.ffn.is_multiple_of(256) || !shape.dim.is_multiple_of(shape.heads) {
        return Err(EngineError::InvalidRequest(format!(
            "a synthetic model needs widths that are multiples of 256 and heads that divide them, not {shape:?}"
        )));
    }
    let kv = shape.kv_heads * (shape.dim / shape.heads);
    let mut seeds = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next_seed = move || {
        seeds = splitmix(seeds);
        seeds
    };
    let matrix = |name: String, role: &str, layer: usize, (rows, cols): (usize, usize), seed: u64| {
        let dtype = weights.format_of(role, layer, shape.layers);
        let zero_rows = if role == "output" {
            tiny::SPECIAL_TOKENS.len()
        } else {
            0
        };
        random_matrix(dtype, rows, cols, seed, zero_rows).map(|t| (name, t))
    };
    let ones = |name: String, len: usize| -> Result<(String, QTensor), EngineError> {
        let bytes: Vec<u8> = std::iter::repeat_n(1f32.to_le_bytes(), len).flatten().collect();
        Ok((
            name,
            qtensor_from_ggml(GgmlDType::F32, &bytes, vec![len], &Device::Cpu)?,
        ))
    };

    let mut tensors = vec![matrix(
        "token_embd.weight".into(),
        "token_embd",
        0,
        (shape.vocab, shape.dim),
        next_seed(),
    )?];
    for layer in 0..shape.layers {
        let p = format!("blk.{layer}");
        let attention = [
            ("attn_q", shape.dim, shape.dim),
            ("attn_k", kv, shape.dim),
            ("attn_v", kv, shape.dim),
            ("attn_output", shape.dim, shape.dim),
        ];
        let feed_forward = [
            ("ffn_gate", shape.ffn, shape.dim),
            ("ffn_up", shape.ffn, shape.dim),
            ("ffn_down", shape.dim, shape.ffn),
        ];
        // Each half of the layer: its norm, then its matrices, in the order llama.cpp writes.
        for (norm, matrices) in [("attn_norm", &attention[..]), ("ffn_norm", &feed_forward[..])] {
            tensors.push(ones(format!("{p}.{norm}.weight"), shape.dim)?);
            for &(role, rows, cols) in matrices {
                tensors.push(matrix(
                    format!("{p}.{role}.weight"),
                    role,
                    layer,
                    (rows, cols),
                    next_seed(),
                )?);
            }
        }
    }
    tensors.push(ones("output_norm.weight".into(), shape.dim)?);
    tensors.push(matrix(
        "output.weight".into(),
        "output",
        0,
        (shape.vocab, shape.dim),
        next_seed(),
    )?);

    let tiny_shape = TinyShape {
        dim: shape.dim,
        ffn: shape.ffn,
        heads: shape.heads,
        kv_heads: shape.kv_heads,
        weights: GgmlDType::F16,
        layers: shape.layers,
        vocab: shape.vocab,
        tied: false,
        context: shape.context,
    };
    let mut metadata = tiny::metadata(TinyArchitecture::Llama, &tiny_shape);
    for (key, value) in metadata.iter_mut() {
        if key == "general.name" {
            *value = gguf_file::Value::String("enclave-synthetic-llama".into());
        } else if key == "llama.rope.freq_base" {
            *value = gguf_file::Value::F32(500_000.0);
        }
    }
    let metadata_refs: Vec<(&str, &gguf_file::Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = BufWriter::with_capacity(8 << 20, File::create(path)?);
    gguf_file::write(&mut out, &metadata_refs, &tensor_refs)?;
    std::io::Write::flush(&mut out)?;
    let tensor_bytes: usize = tensors.iter().map(|(_, t)| t.storage_size_in_bytes()).sum();
    Ok(SyntheticSummary {
        tensors: tensors.len(),
        tensor_bytes,
        bytes_read_per_token: tensor_bytes - tensors[0].1.storage_size_in_bytes(),
    })
}

/// A `rows` x `cols` matrix in `dtype` of random blocks (see the module docs); the first
/// `zero_rows` rows are zero. `cols` is a multiple of the format's block size.
fn random_matrix(
    dtype: GgmlDType,
    rows: usize,
    cols: usize,
    seed: u64,
    zero_rows: usize,
) -> Result<QTensor, EngineError> {
    let row_bytes = cols / dtype.block_size() * dtype.type_size();
    let mut bytes = vec![0u8; rows * row_bytes];
    // Weights of standard deviation about 1/sqrt(fan_in), as a trained model's.
    let spread = 1.0 / (cols as f32).sqrt();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rows_per_part = rows.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        for (part, chunk) in bytes.chunks_mut(rows_per_part * row_bytes).enumerate() {
            scope.spawn(move || {
                for (i, row) in chunk.chunks_mut(row_bytes).enumerate() {
                    // A seed per row: the file does not depend on the number of threads.
                    let index = part * rows_per_part + i;
                    let mut state = splitmix(seed ^ (index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03)) | 1;
                    fill_row(dtype, row, &mut state, spread, index < zero_rows);
                }
            });
        }
    });
    Ok(qtensor_from_ggml(dtype, &bytes, vec![rows, cols], &Device::Cpu)?)
}

/// Fills one row of `dtype` blocks with random codes and scales that make weights of
/// standard deviation about `spread`; all zero when `zero`.
fn fill_row(dtype: GgmlDType, row: &mut [u8], state: &mut u64, spread: f32, zero: bool) {
    match dtype {
        GgmlDType::F16 => {
            for value in row.chunks_exact_mut(2) {
                let bits = if zero {
                    0
                } else {
                    // Uniform in (-a, a), a = sqrt(3) * spread: standard deviation `spread`.
                    let unit = (next(state) >> 40) as f32 / (1u64 << 24) as f32;
                    half::f16::from_f32((2.0 * unit - 1.0) * 1.732 * spread).to_bits()
                };
                value.copy_from_slice(&bits.to_le_bytes());
            }
        }
        GgmlDType::Q4K => {
            // d, dmin (f16), 12 bytes of 6-bit scales and mins, 128 bytes of nibbles: a
            // weight is d * scale * q - dmin * min, q in 0..16. With scales and mins about
            // 32 and q about 7.5 +- 4.6, dmin = 7.5 d centres the weights and d = spread /
            // 150 gives them the standard deviation `spread`.
            let d = half::f16::from_f32(if zero { 0.0 } else { spread / 150.0 }).to_bits();
            let dmin = half::f16::from_f32(if zero { 0.0 } else { 7.5 * spread / 150.0 }).to_bits();
            for block in row.chunks_exact_mut(144) {
                block[0..2].copy_from_slice(&d.to_le_bytes());
                block[2..4].copy_from_slice(&dmin.to_le_bytes());
                fill_random(&mut block[4..], state);
            }
        }
        GgmlDType::Q6K => {
            // 128 bytes of low nibbles, 64 of upper bit pairs, 16 signed scales, d (f16): a
            // weight is d * scale * (q - 32), q in 0..64. Scales kept in 0..64 (about 32)
            // and q - 32 about +-18: d = spread / 576.
            let d = half::f16::from_f32(if zero { 0.0 } else { spread / 576.0 }).to_bits();
            for block in row.chunks_exact_mut(210) {
                fill_random(&mut block[..208], state);
                block[192..208].iter_mut().for_each(|s| *s &= 0x3F);
                block[208..210].copy_from_slice(&d.to_le_bytes());
            }
        }
        other => unreachable!("synthetic models are written in F16, Q4_K and Q6_K only, not {other:?}"),
    }
}

/// Fills `bytes` from the generator.
fn fill_random(bytes: &mut [u8], state: &mut u64) {
    let mut words = bytes.chunks_exact_mut(8);
    for word in &mut words {
        word.copy_from_slice(&next(state).to_le_bytes());
    }
    let rest = words.into_remainder();
    let last = next(state).to_le_bytes();
    rest.copy_from_slice(&last[..rest.len()]);
}

/// xorshift64: fast, and plenty for random weights.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// SplitMix64's mixing step: independent-looking seeds from consecutive numbers.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::run::forward::LlamaBatchModel;

    #[test]
    fn the_q4_k_m_recipe_gives_more_bits_where_llama_cpp_does() {
        // llama.cpp's choice for 32 layers: 0-3, 28-31 and 6, 9, 12, ... 27.
        let more: Vec<usize> = (0..32).filter(|&l| more_bits(l, 32)).collect();
        assert_eq!(more, vec![0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]);
        let q = SyntheticWeights::Q4KM;
        assert_eq!(q.format_of("output", 0, 32), GgmlDType::Q6K);
        assert_eq!(q.format_of("ffn_down", 6, 32), GgmlDType::Q6K);
        assert_eq!(q.format_of("ffn_down", 7, 32), GgmlDType::Q4K);
        assert_eq!(q.format_of("attn_q", 0, 32), GgmlDType::Q4K);
        assert_eq!(SyntheticWeights::F16.format_of("output", 0, 32), GgmlDType::F16);
    }

    #[test]
    fn an_8b_shape_has_8_billion_parameters() {
        let billions = SyntheticShape::LLAMA3_8B.parameters() as f64 / 1e9;
        assert!((7.9..8.1).contains(&billions), "{billions}");
    }

    /// Loads the file, runs a prompt and returns the logits of its last token.
    fn logits_of(path: &Path) -> Vec<f32> {
        use crate::engine::run::forward::Batch;
        use crate::engine::run::kv::KvCache;
        let model = LlamaBatchModel::load(path, &Device::Cpu).unwrap();
        let mut kv = KvCache::with_blocks(model.kv_config(16), 2, &Device::Cpu).unwrap();
        let mut table = kv.new_table();
        kv.reserve(&mut table, 8).unwrap();
        let tokens = [40u32, 41, 42, 43, 44, 45, 46, 47];
        let mut batch = Batch::new();
        batch.push(&tokens, 0, &table, true);
        model
            .forward(&batch, &mut kv)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    #[test]
    fn synthetic_models_load_and_give_finite_logits_with_silent_special_tokens() {
        let dir = tempfile::tempdir().unwrap();
        for weights in [SyntheticWeights::Q4KM, SyntheticWeights::F16] {
            let path = dir.path().join(format!("{weights:?}.gguf"));
            let summary = write_synthetic_model(&path, &SyntheticShape::SMALL, weights, 3).unwrap();
            assert_eq!(summary.tensors, 1 + 9 * 2 + 2);
            let logits = logits_of(&path);
            assert_eq!(logits.len(), SyntheticShape::SMALL.vocab);
            assert!(logits.iter().all(|l| l.is_finite()), "{weights:?}");
            assert!(logits[..3].iter().all(|&l| l == 0.0), "{:?}", &logits[..3]);
            let max = logits.iter().copied().fold(f32::MIN, f32::max);
            let spread = (logits.iter().map(|l| l * l).sum::<f32>() / logits.len() as f32).sqrt();
            assert!(
                max > 0.0 && spread > 0.1 && spread < 100.0,
                "{weights:?}: rms {spread}, max {max}"
            );
        }
    }

    #[test]
    fn the_same_seed_writes_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.gguf"), dir.path().join("b.gguf"));
        write_synthetic_model(&a, &SyntheticShape::SMALL, SyntheticWeights::Q4KM, 9).unwrap();
        write_synthetic_model(&b, &SyntheticShape::SMALL, SyntheticWeights::Q4KM, 9).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    }

    #[test]
    fn widths_that_are_not_super_blocks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let shape = SyntheticShape {
            dim: 896,
            ..SyntheticShape::SMALL
        };
        let error = write_synthetic_model(&dir.path().join("x.gguf"), &shape, SyntheticWeights::F16, 1).unwrap_err();
        assert!(error.to_string().contains("multiples of 256"), "{error}");
    }
}
