//! The answer stream (`text/event-stream`): the data of its `token` and `done` events; an
//! `error` event carries an [`crate::ErrorBody`]. Field order is docs/ARCHITECTURE.md's.

use serde::{Deserialize, Serialize};

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its answer (end-of-sequence token or a stop string).
    Stop,
    /// `max_tokens` or the context window was reached.
    Length,
    /// The client stopped it or went away.
    Stopped,
    /// The provider filtered the answer.
    ContentFilter,
}

/// Token counts of one generation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
}

/// `event: token`: the next piece of the answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenEvent {
    /// The text.
    pub content: String,
    /// Always `null` (the end comes as a `done` event).
    pub finish_reason: Option<FinishReason>,
}

/// `event: done`: the answer is complete and stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DoneEvent {
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Token counts.
    pub usage: Usage,
}
