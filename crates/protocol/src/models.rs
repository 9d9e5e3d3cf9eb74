//! `/api/v1/models`: the catalogue and where each model stands.

use serde::{Deserialize, Serialize};

/// What a model is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelRole {
    /// Chat completion (seeing images is a capability of a chat model, not a role).
    Chat,
    /// Text embeddings.
    Embed,
    /// Reranking.
    Rerank,
}

/// What a chat model can do besides text (`capabilities` in models.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelCapability {
    /// It reads images attached to messages.
    Vision,
}

/// Whether a model can answer now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelState {
    /// It answers.
    Ready,
    /// Waiting for its turn to load.
    Pending,
    /// Its weights are being downloaded.
    Downloading,
    /// Its weights are being read.
    Loading,
    /// Loading failed; `error` says why.
    Failed,
    /// It cannot answer (e.g. a remote model without its API key); `error` says why.
    Unavailable,
}

impl ModelState {
    /// The state as the API spells it (`ready`, `downloading`...).
    pub fn as_str(self) -> &'static str {
        match self {
            ModelState::Ready => "ready",
            ModelState::Pending => "pending",
            ModelState::Downloading => "downloading",
            ModelState::Loading => "loading",
            ModelState::Failed => "failed",
            ModelState::Unavailable => "unavailable",
        }
    }

    /// Whether the model is on its way to ready (worth asking again soon).
    pub fn is_loading(self) -> bool {
        matches!(
            self,
            ModelState::Pending | ModelState::Downloading | ModelState::Loading
        )
    }
}

/// A model and whether it can answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelStatus {
    /// Model id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// What it is for.
    pub role: ModelRole,
    /// `local`, or the remote provider's name.
    pub provider: String,
    /// Whether this is the server's default chat model.
    pub default: bool,
    /// Context window in tokens.
    pub context_length: usize,
    /// Quantization, when known.
    pub quantization: Option<String>,
    /// Fallback model ids.
    pub fallback: Vec<String>,
    /// What it can do besides text (`vision`).
    #[serde(default)]
    pub capabilities: Vec<ModelCapability>,
    /// Whether this is the model that answers messages with images when the conversation's
    /// model cannot see (`default_vision`).
    #[serde(default)]
    pub default_vision: bool,
    /// Whether it can answer now.
    pub status: ModelState,
    /// Download or load progress, 0 to 1, while not ready.
    pub progress: Option<f32>,
    /// Why it is failed or unavailable.
    pub error: Option<String>,
}

/// `GET /models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelList {
    /// Every model of the catalogue.
    pub models: Vec<ModelStatus>,
    /// The default chat model's id.
    pub default: String,
}
