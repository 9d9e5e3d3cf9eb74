//! candle-transformers' single-sequence quantized models behind one interface (forward a
//! chunk of tokens at a position, get the last position's logits): the reference the batched
//! forward is checked against in tests.

use std::io::{Read, Seek};

use candle_core::quantized::gguf_file::Content;
use candle_core::{DType, Device, Tensor};
use candle_transformers::models::{quantized_llama, quantized_qwen2, quantized_qwen3};

use crate::engine::error::EngineError;
use crate::engine::model::Architecture;

/// candle-transformers' model with its KV cache for one sequence (the reference).
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
            Architecture::Qwen3Vl => return Err(EngineError::InvalidModel("Qwen3-VL has no GGUF reference".into())),
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
}
