//! `/api/v1/conversations` and `/api/v1/settings`: conversations, their messages, and the
//! user's preferences.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::documents::Citation;
use crate::error::ErrorCode;
use crate::images::Attachment;
use crate::stream::{FinishReason, Usage};

/// Sampling settings of a conversation (the server's defaults where `None`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConversationSettings {
    /// Softmax temperature, 0 to 2.
    pub temperature: Option<f32>,
    /// Nucleus sampling mass, in (0, 1].
    pub top_p: Option<f32>,
    /// Upper bound on tokens per answer.
    pub max_tokens: Option<u32>,
    /// Answer from the user's documents when a message does not say.
    pub use_documents: Option<bool>,
    /// The documents to answer from when a message does not say (all of the user's when
    /// absent and documents are used).
    pub document_ids: Option<Vec<Uuid>>,
}

/// A user's preferences, as the settings page edits them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserSettings {
    /// `dark`, `light` or `system`.
    pub theme: Option<String>,
    /// Model id for new conversations.
    pub default_model: Option<String>,
    /// System prompt for new conversations.
    pub default_system_prompt: Option<String>,
}

/// A conversation (in the list, and the head of an opened one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    /// Its id.
    pub id: Uuid,
    /// Its title.
    pub title: String,
    /// The model it uses (the server's default when absent).
    pub model: Option<String>,
    /// Its system prompt.
    pub system_prompt: Option<String>,
    /// Its sampling settings.
    #[serde(default)]
    pub settings: ConversationSettings,
    /// Pinned on top of the list.
    pub pinned: bool,
    /// Folder name, if filed.
    #[serde(default)]
    pub folder: Option<String>,
    /// The message the conversation currently ends at (the branch shown).
    #[serde(default)]
    pub active_leaf_id: Option<Uuid>,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// Last change, RFC 3339.
    pub updated_at: String,
}

/// `GET /conversations`: one page of the list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationPage {
    /// Pinned first, then newest first.
    pub items: Vec<Conversation>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

/// The query of `GET /conversations`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListQuery {
    /// Conversations per page, 1 to 200 (50 when absent).
    pub limit: Option<usize>,
    /// Where the previous page ended.
    pub cursor: Option<String>,
    /// Only conversations whose title contains this (case-insensitive).
    pub q: Option<String>,
}

/// `POST /conversations`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateConversation {
    /// Title; "New chat" (then one written by the model) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Model id; the user's default, else the server's, when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// System prompt; the user's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// Sampling settings.
    #[serde(default)]
    pub settings: ConversationSettings,
}

/// `PATCH /conversations/{id}`: only the fields sent change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateConversation {
    /// New title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// New system prompt; an empty string clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// Pin or unpin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<bool>,
    /// File into a folder; an empty string takes it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder: Option<String>,
    /// Model id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Sampling settings (replaced whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<ConversationSettings>,
    /// Show the branch through this message (its newest descendant becomes the leaf).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_message_id: Option<Uuid>,
}

/// `POST /conversations/{id}/messages`: answered with the SSE stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// The user's words.
    pub content: String,
    /// Answer under this message instead of after the current leaf.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_message_id: Option<Uuid>,
    /// Send as a new version of this earlier user message (edit and resend: a new branch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edit_message_id: Option<Uuid>,
    /// Images to send with the text (ids from `POST /images`), at most the server's
    /// `max_images_per_message`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// Answer from these documents (implies `use_documents`); the conversation's setting when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_ids: Option<Vec<Uuid>>,
    /// Answer from the user's documents (all of them, or `document_ids`); the conversation's
    /// setting when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_documents: Option<bool>,
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    /// The person.
    User,
    /// The model.
    Assistant,
}

/// How a message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// Finished normally (or a user message).
    Complete,
    /// Stopped by the user, a disconnect or a shutdown; the text is partial.
    Stopped,
    /// The provider failed; the text (if any) is partial and `error_code` says why.
    Error,
}

/// A message of the active branch, with its siblings for branch navigation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Its id.
    pub id: Uuid,
    /// Its parent (`None` for the first message).
    pub parent_id: Option<Uuid>,
    /// Who wrote it.
    pub role: MessageRole,
    /// Its text.
    pub content: String,
    /// How it ended.
    pub status: MessageStatus,
    /// The model that wrote it.
    pub model: Option<String>,
    /// Token counts (answers).
    pub usage: Option<Usage>,
    /// Why generation ended (answers).
    pub finish_reason: Option<FinishReason>,
    /// Why it failed.
    pub error_code: Option<ErrorCode>,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// Every message with the same parent (this one included), oldest first.
    #[serde(default)]
    pub sibling_ids: Vec<Uuid>,
    /// The sources an answer drew on, most relevant first.
    #[serde(default)]
    pub citations: Vec<Citation>,
    /// What the message carried besides its text (its images), in the order sent.
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

/// `GET /conversations/{id}`: the conversation and its active branch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationDetail {
    /// The conversation.
    #[serde(flatten)]
    pub conversation: Conversation,
    /// The active branch, root first.
    pub messages: Vec<Message>,
}
