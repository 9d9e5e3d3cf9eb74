//! What can go wrong while loading a model or generating with it.

/// An error of the local engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The model file is neither at its path nor obtainable from Hugging Face.
    #[error("model not found: {0}")]
    NotFound(String),
    /// Downloading the model file failed.
    #[error("download failed: {0}")]
    Download(String),
    /// The file is not a model this engine can run (bad GGUF, unknown architecture, missing
    /// metadata).
    #[error("invalid model: {0}")]
    InvalidModel(String),
    /// The tokenizer could not be built or refused a text.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    /// The chat template failed to compile or to render.
    #[error("chat template error: {0}")]
    Template(String),
    /// The request queue is full; retry later.
    #[error("the model is overloaded, try again shortly")]
    Overloaded,
    /// The prompt does not fit the model's context window.
    #[error("the prompt has {tokens} tokens, the model's context window is {limit} tokens")]
    PromptTooLong {
        /// Tokens in the prompt.
        tokens: usize,
        /// The model's context length.
        limit: usize,
    },
    /// The request itself is unusable (for example an empty prompt).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The model failed while computing (a panic or a tensor error in a batch).
    #[error("the model failed: {0}")]
    Failed(String),
    /// The runner thread is gone; no request can be served any more.
    #[error("the engine has stopped")]
    Stopped,
    /// Reading a file failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A tensor operation failed.
    #[error("candle error: {0}")]
    Candle(#[from] candle_core::Error),
}
