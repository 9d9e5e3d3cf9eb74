//! The shapes of the server's JSON (`/api/v1`), as the UI reads and writes them.

use serde::{Deserialize, Serialize};

/// The signed-in user.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct User {
    /// Account id.
    pub id: String,
    /// Email address.
    pub email: String,
    /// Username.
    pub username: String,
    /// `super_admin`, `admin`, `user` or `viewer`.
    pub role: String,
}

/// What login and refresh return (the refresh token stays in the HttpOnly cookie).
#[derive(Clone, Debug, Deserialize)]
pub struct Tokens {
    /// The bearer token for API calls.
    pub access_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// Per-conversation generation settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConversationSettings {
    /// Softmax temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Most tokens per answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
}

/// A conversation in the list (and the head of an opened one).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Conversation {
    /// Its id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// The model it uses (the server default when absent).
    pub model: Option<String>,
    /// Its system prompt.
    pub system_prompt: Option<String>,
    /// Its generation settings.
    #[serde(default)]
    pub settings: ConversationSettings,
    /// Pinned on top of the list.
    pub pinned: bool,
    /// Last change, RFC 3339.
    pub updated_at: String,
}

/// A page of conversations.
#[derive(Clone, Debug, Deserialize)]
pub struct ConversationPage {
    /// The conversations, pinned first, newest first.
    pub items: Vec<Conversation>,
    /// The cursor of the next page, when there is one.
    pub next_cursor: Option<String>,
}

/// Token counts of an answer.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
pub struct Usage {
    /// Tokens of the prompt.
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
}

/// A message of the active branch.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Message {
    /// Its id.
    pub id: String,
    /// Its parent (`None` for the first message).
    pub parent_id: Option<String>,
    /// `user`, `assistant` or `system`.
    pub role: String,
    /// Its text.
    pub content: String,
    /// `complete`, `stopped` or `error`.
    pub status: String,
    /// The model that wrote it.
    pub model: Option<String>,
    /// Token counts.
    pub usage: Option<Usage>,
    /// Why generation ended.
    pub finish_reason: Option<String>,
    /// The error code when it failed.
    pub error_code: Option<String>,
    /// Every message with the same parent, this one included, oldest first.
    #[serde(default)]
    pub sibling_ids: Vec<String>,
}

/// An opened conversation: its head and its active branch.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ConversationDetail {
    /// The conversation.
    #[serde(flatten)]
    pub conversation: Conversation,
    /// The active branch, root first.
    pub messages: Vec<Message>,
}

/// A model and whether it can answer.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ModelStatus {
    /// Its id.
    pub id: String,
    /// Its display name.
    pub name: String,
    /// `chat`, `vision`, `embed` or `rerank`.
    pub role: String,
    /// `local`, or the remote provider's name.
    #[serde(default)]
    pub provider: String,
    /// `ready`, `loading`, `downloading`, `pending`, `failed` or `unavailable`.
    pub status: String,
    /// Progress of a download or load, 0 to 1.
    pub progress: Option<f32>,
    /// Why it cannot answer.
    pub error: Option<String>,
    /// Whether it is the server's default.
    #[serde(default)]
    pub default: bool,
}

/// The model list.
#[derive(Clone, Debug, Deserialize)]
pub struct Models {
    /// Every model.
    pub models: Vec<ModelStatus>,
    /// The default chat model's id.
    pub default: String,
}

/// The user's preferences.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UserSettings {
    /// `dark`, `light` or `system`.
    pub theme: Option<String>,
    /// Model for new conversations.
    pub default_model: Option<String>,
    /// System prompt for new conversations.
    pub default_system_prompt: Option<String>,
}
