//! The hyper-parameters of a Llama-family GGUF, read the way candle-transformers' reference
//! implementations read them.

use candle_core::quantized::gguf_file::{Content, Value};

use crate::engine::error::EngineError;
use crate::engine::load::gguf::Metadata;
use crate::engine::model::Architecture;
use crate::engine::run::vision::MropeSection;

/// Positions when the file names no context length (candle's `quantized_llama` limit).
const DEFAULT_MAX_POSITIONS: usize = 4096;

/// What the batched forward needs to know about a model.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchModelConfig {
    /// The family (`general.architecture`).
    pub(crate) architecture: Architecture,
    /// Hidden size.
    pub dim: usize,
    /// Transformer blocks.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `num_heads`).
    pub num_kv_heads: usize,
    /// Dimensions per head.
    pub head_dim: usize,
    /// Tokens in the vocabulary (rows of the output head).
    pub vocab_size: usize,
    /// Epsilon of every RMS norm.
    pub rms_norm_eps: f32,
    /// Rotary base frequency.
    pub rope_freq_base: f32,
    /// Rotary layout: NEOX pairs `(i, i + d/2)` (Qwen), otherwise interleaved pairs
    /// `(2i, 2i+1)` (Llama in GGUF).
    pub rope_neox: bool,
    /// The most positions a sequence may hold (`<arch>.context_length`).
    pub max_positions: usize,
    /// Divisors of the rotary frequencies (Llama 3.1+ long-context scaling), one per pair of
    /// dimensions; `None` for plain rotary embeddings.
    pub rope_freq_factors: Option<Vec<f32>>,
    /// How the rotary frequencies are shared among time, rows and columns (Qwen3-VL's
    /// multimodal positions); `None` for 1-D positions.
    pub mrope: Option<MropeSection>,
}

impl BatchModelConfig {
    /// Reads the hyper-parameters of `content` (the vocabulary size is filled in from the
    /// output head by the loader).
    pub(crate) fn from_gguf(content: &Content) -> Result<Self, EngineError> {
        let md = Metadata(&content.metadata);
        let name = md
            .str("general.architecture")
            .ok_or_else(|| EngineError::InvalidModel("no general.architecture".into()))?;
        let architecture = Architecture::from_gguf(name)?;
        let key = |k: &str| format!("{name}.{k}");
        let required = |k: &str| {
            md.u64(&key(k))
                .map(|v| v as usize)
                .ok_or_else(|| EngineError::InvalidModel(format!("no {} in the GGUF metadata", key(k))))
        };
        let dim = required("embedding_length")?;
        let num_heads = required("attention.head_count")?;
        let num_kv_heads = required("attention.head_count_kv")?;
        let num_layers = required("block_count")?;
        if num_heads == 0 || num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            return Err(EngineError::InvalidModel(format!(
                "{num_heads} query heads cannot share {num_kv_heads} key/value heads"
            )));
        }
        // Qwen3 states its head size; the others derive it (as candle does).
        let head_dim = match architecture {
            Architecture::Qwen3 => md
                .u64(&key("attention.key_length"))
                .map(|v| v as usize)
                .unwrap_or(dim / num_heads),
            Architecture::Llama | Architecture::Qwen2 | Architecture::Qwen3Vl => dim / num_heads,
        };
        if let Some(rope_dim) = md.u64(&key("rope.dimension_count")) {
            if rope_dim as usize != head_dim {
                return Err(EngineError::InvalidModel(format!(
                    "partial rotary embeddings ({rope_dim} of {head_dim} dimensions) are not supported"
                )));
            }
        }
        if head_dim % 2 != 0 {
            return Err(EngineError::InvalidModel(format!("odd head size {head_dim}")));
        }
        let rms_norm_eps = float(content.metadata.get(&key("attention.layer_norm_rms_epsilon")))
            .ok_or_else(|| EngineError::InvalidModel(format!("no {}", key("attention.layer_norm_rms_epsilon"))))?;
        let rope_freq_base = float(content.metadata.get(&key("rope.freq_base"))).unwrap_or(10_000.0);
        let max_positions = md
            .u64(&key("context_length"))
            .map(|v| v as usize)
            .unwrap_or(DEFAULT_MAX_POSITIONS);
        Ok(Self {
            architecture,
            dim,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            vocab_size: 0,
            rms_norm_eps,
            rope_freq_base,
            rope_neox: matches!(architecture, Architecture::Qwen2 | Architecture::Qwen3),
            max_positions,
            rope_freq_factors: None,
            mrope: None,
        })
    }

    /// `general.architecture`: `llama`, `qwen2`, `qwen3` (or `qwen3_vl`).
    pub fn architecture_name(&self) -> &'static str {
        self.architecture.name()
    }

    /// The inverse frequencies of the rotary embedding, `head_dim / 2` of them, computed
    /// exactly as the reference implementation of the family does (Qwen3 in f64; Qwen3-VL in
    /// f32 like candle-transformers' `qwen3_vl`).
    pub(crate) fn rope_inv_freq(&self) -> Vec<f32> {
        let d = self.head_dim;
        let mut inv_freq: Vec<f32> = match self.architecture {
            Architecture::Llama | Architecture::Qwen2 | Architecture::Qwen3Vl => (0..d)
                .step_by(2)
                .map(|i| 1f32 / self.rope_freq_base.powf(i as f32 / d as f32))
                .collect(),
            Architecture::Qwen3 => (0..d)
                .step_by(2)
                .map(|i| 1f32 / (self.rope_freq_base as f64).powf(i as f64 / d as f64) as f32)
                .collect(),
        };
        if let Some(factors) = &self.rope_freq_factors {
            for (f, factor) in inv_freq.iter_mut().zip(factors) {
                *f /= factor;
            }
        }
        inv_freq
    }
}

/// A float metadata value (f32 or f64 in the file).
fn float(value: Option<&Value>) -> Option<f32> {
    match value? {
        Value::F32(v) => Some(*v),
        Value::F64(v) => Some(*v as f32),
        _ => None,
    }
}
