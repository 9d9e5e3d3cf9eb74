//! The transformer itself: candle-transformers' single-sequence quantized models behind one
//! interface (forward a chunk of tokens at a position, get the last position's logits).

use std::io::{Read, Seek};

use candle_core::quantized::gguf_file::Content;
use candle_core::{DType, Device, Tensor};
use candle_transformers::models::{quantized_llama, quantized_qwen2, quantized_qwen3};

use super::error::EngineError;
use super::gguf::Metadata;

/// The model families this engine runs, by `general.architecture`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Architecture {
    /// Llama, Mistral, SmolLM and friends.
    Llama,
    /// Qwen2 / Qwen2.5.
    Qwen2,
    /// Qwen3.
    Qwen3,
}

impl Architecture {
    /// The family named by `general.architecture`.
    pub(crate) fn from_gguf(name: &str) -> Result<Self, EngineError> {
        match name {
            "llama" => Ok(Self::Llama),
            "qwen2" => Ok(Self::Qwen2),
            "qwen3" => Ok(Self::Qwen3),
            other => Err(EngineError::InvalidModel(format!(
                "unsupported architecture {other:?} (supported: llama, qwen2, qwen3)"
            ))),
        }
    }

    /// The name GGUF uses, which is also the prefix of its hyper-parameter keys.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
        }
    }

    /// The most positions candle's implementation can hold, whatever the file says:
    /// `quantized_llama` precomputes its rotary table for a fixed length; the Qwen models
    /// size theirs from `<arch>.context_length`.
    pub(crate) fn max_positions(self, md: &Metadata<'_>) -> Option<usize> {
        match self {
            Self::Llama => Some(quantized_llama::MAX_SEQ_LEN),
            Self::Qwen2 | Self::Qwen3 => md.u64(&format!("{}.context_length", self.name())).map(|v| v as usize),
        }
    }
}

/// A loaded model with its KV cache for one sequence.
pub(crate) enum Model {
    /// `general.architecture` = `llama`.
    Llama(quantized_llama::ModelWeights),
    /// `general.architecture` = `qwen2`.
    Qwen2(quantized_qwen2::ModelWeights),
    /// `general.architecture` = `qwen3`.
    Qwen3(quantized_qwen3::ModelWeights),
}

impl Model {
    /// Reads the weights of `content` from `reader` onto `device`.
    pub(crate) fn load<R: Read + Seek>(
        architecture: Architecture,
        content: Content,
        reader: &mut R,
        device: &Device,
    ) -> Result<Self, EngineError> {
        let model = match architecture {
            Architecture::Llama => Self::Llama(quantized_llama::ModelWeights::from_gguf(content, reader, device)?),
            Architecture::Qwen2 => Self::Qwen2(quantized_qwen2::ModelWeights::from_gguf(content, reader, device)?),
            Architecture::Qwen3 => Self::Qwen3(quantized_qwen3::ModelWeights::from_gguf(content, reader, device)?),
        };
        Ok(model)
    }

    /// Runs `tokens` at positions `index_pos..` (after the cached ones) and returns the
    /// logits of the last one as a 1-D f32 tensor.
    pub(crate) fn forward(&mut self, tokens: &[u32], index_pos: usize, device: &Device) -> Result<Tensor, EngineError> {
        let input = Tensor::new(tokens, device)?.unsqueeze(0)?;
        let logits = match self {
            Self::Llama(m) => m.forward(&input, index_pos)?,
            Self::Qwen2(m) => m.forward(&input, index_pos)?,
            Self::Qwen3(m) => m.forward(&input, index_pos)?,
        };
        Ok(logits.squeeze(0)?.to_dtype(DType::F32)?)
    }

    /// Forgets the cached sequence.
    pub(crate) fn clear(&mut self) {
        match self {
            Self::Llama(m) => m.clear_kv_cache(),
            Self::Qwen2(m) => m.clear_kv_cache(),
            Self::Qwen3(m) => m.clear_kv_cache(),
        }
    }
}
