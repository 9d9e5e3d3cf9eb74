//! The model families the engine runs.

use crate::engine::error::EngineError;

/// The model families this engine runs, by `general.architecture`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Architecture {
    /// Llama, Mistral, SmolLM and friends.
    Llama,
    /// Qwen2 / Qwen2.5.
    Qwen2,
    /// Qwen3.
    Qwen3,
    /// Qwen3-VL: Qwen3's language model with multimodal positions and a vision encoder
    /// (Hugging Face checkpoints only).
    Qwen3Vl,
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
            Self::Qwen3Vl => "qwen3_vl",
        }
    }
}
