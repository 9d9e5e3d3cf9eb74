//! What a caller hands the engine, and what comes back.

use std::sync::Arc;

use crate::engine::run::vision::PreparedImage;
use crate::generation::GenerationParams;

/// An image in a prompt (a vision-language model): where its tokens start and the image,
/// prepared ([`crate::engine::LocalEngine::prepare_image`]).
#[derive(Clone, Debug)]
pub struct ImageInput {
    /// The index of its first image token in the prompt; `image.tokens()` image tokens
    /// follow.
    pub start: usize,
    /// The image.
    pub image: Arc<PreparedImage>,
}

/// One generation: a tokenized prompt and how to sample its continuation.
#[derive(Clone, Debug)]
pub struct GenerateRequest {
    /// The prompt's token ids, as [`crate::engine::LocalEngine::encode`] returns them.
    pub prompt_tokens: Vec<u32>,
    /// How to sample, and when to stop (checked by [`crate::engine::LocalEngine::submit`];
    /// the answer also ends where the context window does).
    pub sampling: GenerationParams,
    /// Who asks, as an opaque key (the provider passes the user id): waiting requests are
    /// started round-robin across keys. Empty for "anyone".
    pub fairness_key: String,
    /// The prompt's images, in order (only for a model that can see).
    pub images: Vec<ImageInput>,
}

/// One event of a generation's stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GenerateEvent {
    /// The next piece of the answer's text (never half a UTF-8 character, never part of a
    /// stop string).
    Text(String),
    /// The generation ended; nothing follows.
    Finished {
        /// Why it ended.
        reason: StopReason,
        /// Tokens in the prompt.
        prompt_tokens: usize,
        /// Tokens generated (the end-of-sequence token included when there was one).
        completion_tokens: usize,
    },
    /// The generation failed; nothing follows.
    Failed(String),
}

/// Reads a generation's stream to its end (blocking: not for async code): the text and the
/// final event, or `None` when the stream closed without one.
pub fn read_to_end(mut events: tokio::sync::mpsc::UnboundedReceiver<GenerateEvent>) -> (String, Option<GenerateEvent>) {
    let mut text = String::new();
    while let Some(event) = events.blocking_recv() {
        match event {
            GenerateEvent::Text(piece) => text.push_str(&piece),
            last => return (text, Some(last)),
        }
    }
    (text, None)
}

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced an end-of-sequence token.
    EndOfSequence,
    /// The output reached a stop string.
    StopString,
    /// `max_tokens` or the context window was reached.
    Length,
    /// The receiver was dropped (client gone or stopped).
    Cancelled,
}
