//! Model providers behind one trait: the local engine, OpenAI-compatible servers, Gemini.
//!
//! The chat service talks only to [`ChatProvider`]; which provider serves a model id is decided
//! by the [`registry`] from models.toml, with fallbacks when a provider is rate-limited or down.

mod endpoint;
pub mod gemini;
pub mod local;
pub mod openai;
pub mod registry;
mod sse;

use std::pin::Pin;

use futures::Stream;
use serde::{Deserialize, Serialize};

use crate::generation::estimate_tokens;
pub use crate::generation::GenerationParams;
pub use crate::images::PromptImage;
pub use enclave_protocol::{FinishReason, Usage};

/// Who said a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions that frame the whole conversation.
    System,
    /// The person typing.
    User,
    /// The model.
    Assistant,
}

impl Role {
    /// The role's name as chat templates and OpenAI-style APIs spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One message of the prompt sent to a provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who said it.
    pub role: Role,
    /// What was said (plain text).
    pub content: String,
    /// The images it carries, in order (sent after the text); only models that can see get
    /// messages with images.
    #[serde(skip)]
    pub images: Vec<PromptImage>,
}

impl ChatMessage {
    /// A message of text alone.
    pub fn text(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            images: Vec::new(),
        }
    }
}

/// A request for one streamed chat completion.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// The model's name as the provider knows it (e.g. `gemini-2.0-flash`).
    pub model: String,
    /// The whole prompt, system message first.
    pub messages: Vec<ChatMessage>,
    /// Sampling settings.
    pub params: GenerationParams,
    /// Who asks (the user id), so that the local engine shares its time fairly; never sent
    /// to remote providers.
    pub user: Option<String>,
}

impl ChatRequest {
    /// Whether any message carries an image (only a model that can see may take it).
    pub fn has_images(&self) -> bool {
        self.messages.iter().any(|m| !m.images.is_empty())
    }
}

/// One event of a streamed chat completion.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    /// A piece of the answer's text, in order.
    Token(String),
    /// The end of the stream; nothing follows it.
    Done {
        /// Why generation ended.
        finish_reason: FinishReason,
        /// Token counts (estimated when the provider does not report them).
        usage: Usage,
    },
}

/// A stream of chat events; dropping it cancels the generation.
pub type ChatStream = Pin<Box<dyn Stream<Item = Result<ChatEvent, ProviderError>> + Send>>;

/// What can go wrong when asking a provider.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// The provider asked us to slow down (HTTP 429); try a fallback.
    #[error("rate limited by the provider")]
    RateLimited {
        /// Seconds the provider asked us to wait, when it said.
        retry_after: Option<u64>,
    },
    /// The provider cannot be reached or answered 5xx; try a fallback.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// Our local queue is full; the caller should retry later.
    #[error("the model is overloaded, try again shortly")]
    Overloaded,
    /// The provider refused the request as malformed (HTTP 4xx other than 429).
    #[error("the provider rejected the request: {0}")]
    Rejected(String),
    /// Credentials are missing or refused.
    #[error("the provider refused the credentials: {0}")]
    Unauthorized(String),
    /// This provider cannot do what was asked (e.g. embeddings from a chat-only model).
    #[error("not supported by this provider: {0}")]
    Unsupported(String),
    /// Anything else the provider sent that we could not understand.
    #[error("provider error: {0}")]
    Other(String),
}

impl ProviderError {
    /// Whether a fallback provider should be tried instead.
    pub fn should_fall_back(&self) -> bool {
        matches!(
            self,
            ProviderError::RateLimited { .. } | ProviderError::Unavailable(_) | ProviderError::Overloaded
        )
    }
}

/// A backend that can stream chat completions and compute embeddings.
#[async_trait::async_trait]
pub trait ChatProvider: Send + Sync {
    /// A short name for logs and metrics (`local`, `openai`, `gemini`).
    fn kind(&self) -> &'static str;

    /// Starts a streamed chat completion. Errors before the first event are returned here so
    /// that the registry can fall back; later errors arrive in the stream.
    async fn chat_stream(&self, request: ChatRequest) -> Result<ChatStream, ProviderError>;

    /// Embeds each input text with `model`.
    async fn embed(&self, model: &str, inputs: Vec<String>) -> Result<Vec<Vec<f32>>, ProviderError>;

    /// Counts (or, for remote providers, estimates) the tokens of `text` for `model`.
    fn count_tokens(&self, model: &str, text: &str) -> usize {
        let _ = model;
        estimate_tokens(text)
    }

    /// Counts (or estimates) the tokens an image of `width × height` pixels takes in
    /// `model`'s prompt.
    fn count_image_tokens(&self, model: &str, width: u32, height: u32) -> usize {
        default_image_tokens(model, width, height)
    }
}

/// Tokens of one image for a remote model, estimated the way Gemini counts them: 258 per
/// tile of 768 x 768 pixels (OpenAI's high-detail count is close: 765 for 1024 x 1024).
pub fn default_image_tokens(model: &str, width: u32, height: u32) -> usize {
    let _ = model;
    let tiles = |side: u32| side.div_ceil(768).max(1) as usize;
    258 * tiles(width) * tiles(height)
}
