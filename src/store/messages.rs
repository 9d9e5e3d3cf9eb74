//! Messages: a tree per conversation (each points at its parent), for branching answers.

use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::conversations::{load_owned, save_conversation};
use super::schema::*;
use super::{decode, encode, new_id, now_ms, Store, StoreError, StoreResult};

use enclave_protocol::{Citation, ErrorCode};
pub use enclave_protocol::{FinishReason, MessageRole, MessageStatus, Usage};

/// A stored message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageRecord {
    /// Time-ordered id.
    pub id: Uuid,
    /// The conversation it belongs to.
    pub conversation_id: Uuid,
    /// The message it answers or follows; `None` for the first message.
    pub parent_id: Option<Uuid>,
    /// Author.
    pub role: MessageRole,
    /// Text.
    pub content: String,
    /// How it ended.
    pub status: MessageStatus,
    /// Model id that wrote it (assistant messages).
    pub model: Option<String>,
    /// Token counts (assistant messages).
    pub usage: Option<Usage>,
    /// Why it failed (status `error`, or stopped by a shutdown).
    pub error_code: Option<ErrorCode>,
    /// Why generation ended (assistant messages).
    pub finish_reason: Option<FinishReason>,
    /// The sources an answer drew on, most relevant first.
    #[serde(default)]
    pub citations: Vec<Citation>,
    /// The images the message carries (ids of image records), in the order sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Uuid>,
    /// Creation time (ms).
    pub created_at: i64,
}

impl MessageRecord {
    /// A new message with a fresh id and the current time.
    pub fn new(conversation_id: Uuid, parent_id: Option<Uuid>, role: MessageRole, content: String) -> MessageRecord {
        MessageRecord {
            id: new_id(),
            conversation_id,
            parent_id,
            role,
            content,
            status: MessageStatus::Complete,
            model: None,
            usage: None,
            error_code: None,
            finish_reason: None,
            citations: Vec::new(),
            attachments: Vec::new(),
            created_at: now_ms(),
        }
    }
}

impl Store {
    /// Adds a message to a conversation of `owner`, makes it the active leaf, moves the
    /// conversation to the top and marks the message's images as the conversation's; all in
    /// one transaction. The parent must be in the same conversation; the images must be
    /// `owner`'s (`NotFound`) and not another conversation's (`Conflict`).
    pub fn append_message(&self, owner: Uuid, message: &MessageRecord) -> StoreResult<()> {
        let txn = self.db.begin_write()?;
        {
            let mut conversations = txn.open_table(CONVERSATIONS)?;
            let mut index = txn.open_table(CONVERSATIONS_BY_OWNER)?;
            let mut messages = txn.open_table(MESSAGES)?;
            let mut by_conversation = txn.open_table(MESSAGES_BY_CONVERSATION)?;
            let old = load_owned(&conversations, owner, message.conversation_id)?;
            if let Some(parent) = message.parent_id {
                if by_conversation.get((old.id.as_u128(), parent.as_u128()))?.is_none() {
                    return Err(StoreError::NotFound);
                }
            }
            if !message.attachments.is_empty() {
                super::images::attach(
                    &mut txn.open_table(IMAGES)?,
                    &mut txn.open_table(IMAGES_BY_CONVERSATION)?,
                    owner,
                    old.id,
                    &message.attachments,
                )?;
            }
            messages.insert(message.id.as_u128(), encode(message)?.as_slice())?;
            by_conversation.insert((old.id.as_u128(), message.id.as_u128()), ())?;
            let mut new = old.clone();
            new.active_leaf_id = Some(message.id);
            new.updated_at = now_ms().max(old.updated_at);
            save_conversation(&mut conversations, &mut index, Some(&old), &new)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// All messages of a conversation of `owner`, oldest first.
    pub fn list_messages(&self, owner: Uuid, conversation_id: Uuid) -> StoreResult<Vec<MessageRecord>> {
        let txn = self.db.begin_read()?;
        load_owned(&txn.open_table(CONVERSATIONS)?, owner, conversation_id)?;
        let by_conversation = txn.open_table(MESSAGES_BY_CONVERSATION)?;
        let messages = txn.open_table(MESSAGES)?;
        let key = conversation_id.as_u128();
        let mut out = Vec::new();
        for entry in by_conversation.range((key, 0u128)..=(key, u128::MAX))? {
            let (k, _) = entry?;
            if let Some(value) = messages.get(k.value().1)? {
                out.push(decode(value.value())?);
            }
        }
        Ok(out)
    }
}
