//! Conversations and the per-owner index that orders the sidebar (pinned first, newest first).

use redb::{ReadableDatabase, ReadableTable, Table};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::schema::*;
use super::{decode, encode, new_id, now_ms, Store, StoreError, StoreResult};

/// Sampling settings are stored as the API shows them (the type only ever gains defaulted
/// fields, so older records still read).
pub use enclave_protocol::ConversationSettings;

/// A stored conversation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConversationRecord {
    /// Time-ordered id.
    pub id: Uuid,
    /// The user who owns it; nobody else sees it.
    pub owner_id: Uuid,
    /// Sidebar title.
    pub title: String,
    /// Whether the title was set by the user (then it is never regenerated).
    #[serde(default)]
    pub title_set_by_user: bool,
    /// Model id from models.toml; `None` means the default model.
    pub model: Option<String>,
    /// System prompt sent first to the model.
    pub system_prompt: Option<String>,
    /// Sampling settings.
    #[serde(default)]
    pub settings: ConversationSettings,
    /// Pinned conversations come first in the sidebar.
    #[serde(default)]
    pub pinned: bool,
    /// Folder name, if filed.
    pub folder: Option<String>,
    /// The message the conversation currently ends at (the branch being shown).
    pub active_leaf_id: Option<Uuid>,
    /// Creation time (ms).
    pub created_at: i64,
    /// Last change (ms): new messages, renames.
    pub updated_at: i64,
}

/// Where a listing page ends; pass it back to get the next page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListCursor {
    unpinned: u8,
    rev_updated: u64,
    id: u128,
}

impl ListCursor {
    /// The opaque text form used in URLs.
    pub fn encode(&self) -> String {
        format!("{}.{:016x}.{:032x}", self.unpinned, self.rev_updated, self.id)
    }

    /// Parses the text form; `None` if it was tampered with.
    pub fn decode(text: &str) -> Option<ListCursor> {
        let mut parts = text.split('.');
        let unpinned = parts.next()?.parse().ok()?;
        let rev_updated = u64::from_str_radix(parts.next()?, 16).ok()?;
        let id = u128::from_str_radix(parts.next()?, 16).ok()?;
        if parts.next().is_some() || unpinned > 1 {
            return None;
        }
        Some(ListCursor {
            unpinned,
            rev_updated,
            id,
        })
    }
}

/// One page of a user's conversations.
#[derive(Debug)]
pub struct ConversationPage {
    /// Conversations in sidebar order.
    pub items: Vec<ConversationRecord>,
    /// Cursor for the next page, if there is one.
    pub next: Option<ListCursor>,
}

type OwnerIndexKey = (u128, u8, u64, u128);

fn index_key(c: &ConversationRecord) -> OwnerIndexKey {
    (
        c.owner_id.as_u128(),
        u8::from(!c.pinned),
        u64::MAX - c.updated_at.max(0) as u64,
        c.id.as_u128(),
    )
}

/// Writes a conversation and moves its index entry when its sort position changed.
pub(super) fn save_conversation(
    conversations: &mut Table<u128, &[u8]>,
    index: &mut Table<OwnerIndexKey, ()>,
    old: Option<&ConversationRecord>,
    new: &ConversationRecord,
) -> StoreResult<()> {
    if let Some(old) = old {
        index.remove(index_key(old))?;
    }
    index.insert(index_key(new), ())?;
    conversations.insert(new.id.as_u128(), encode(new)?.as_slice())?;
    Ok(())
}

/// Reads a conversation and checks its owner; another user's conversation is `NotFound`.
pub(super) fn load_owned(
    conversations: &impl ReadableTable<u128, &'static [u8]>,
    owner: Uuid,
    id: Uuid,
) -> StoreResult<ConversationRecord> {
    let record: ConversationRecord = match conversations.get(id.as_u128())? {
        Some(v) => decode(v.value())?,
        None => return Err(StoreError::NotFound),
    };
    if record.owner_id != owner {
        return Err(StoreError::NotFound);
    }
    Ok(record)
}

impl Store {
    /// Creates a conversation owned by `owner`.
    pub fn create_conversation(
        &self,
        owner: Uuid,
        title: String,
        model: Option<String>,
        system_prompt: Option<String>,
        settings: ConversationSettings,
        title_set_by_user: bool,
    ) -> StoreResult<ConversationRecord> {
        let now = now_ms();
        let record = ConversationRecord {
            id: new_id(),
            owner_id: owner,
            title,
            title_set_by_user,
            model,
            system_prompt,
            settings,
            pinned: false,
            folder: None,
            active_leaf_id: None,
            created_at: now,
            updated_at: now,
        };
        let txn = self.db.begin_write()?;
        {
            let mut conversations = txn.open_table(CONVERSATIONS)?;
            let mut index = txn.open_table(CONVERSATIONS_BY_OWNER)?;
            save_conversation(&mut conversations, &mut index, None, &record)?;
        }
        txn.commit()?;
        Ok(record)
    }

    /// A conversation of `owner`.
    pub fn get_conversation(&self, owner: Uuid, id: Uuid) -> StoreResult<ConversationRecord> {
        let txn = self.db.begin_read()?;
        load_owned(&txn.open_table(CONVERSATIONS)?, owner, id)
    }

    /// Changes a conversation of `owner` with `edit`. `touch` moves it to the top of the list.
    pub fn update_conversation(
        &self,
        owner: Uuid,
        id: Uuid,
        touch: bool,
        edit: impl FnOnce(&mut ConversationRecord),
    ) -> StoreResult<ConversationRecord> {
        let txn = self.db.begin_write()?;
        let updated = {
            let mut conversations = txn.open_table(CONVERSATIONS)?;
            let mut index = txn.open_table(CONVERSATIONS_BY_OWNER)?;
            let old = load_owned(&conversations, owner, id)?;
            let mut new = old.clone();
            edit(&mut new);
            new.id = old.id;
            new.owner_id = old.owner_id;
            if touch {
                new.updated_at = now_ms().max(old.updated_at);
            }
            save_conversation(&mut conversations, &mut index, Some(&old), &new)?;
            new
        };
        txn.commit()?;
        Ok(updated)
    }

    /// Deletes a conversation of `owner`, all its messages and the records of the images they
    /// carry; returns those images' ids (the caller removes their files).
    pub fn delete_conversation(&self, owner: Uuid, id: Uuid) -> StoreResult<Vec<Uuid>> {
        let txn = self.db.begin_write()?;
        let images = {
            let mut conversations = txn.open_table(CONVERSATIONS)?;
            let mut index = txn.open_table(CONVERSATIONS_BY_OWNER)?;
            let mut messages = txn.open_table(MESSAGES)?;
            let mut by_conversation = txn.open_table(MESSAGES_BY_CONVERSATION)?;
            let record = load_owned(&conversations, owner, id)?;
            let key = id.as_u128();
            let message_ids: Vec<u128> = by_conversation
                .range((key, 0u128)..=(key, u128::MAX))?
                .map(|entry| entry.map(|(k, _)| k.value().1))
                .collect::<Result<_, _>>()?;
            for message_id in message_ids {
                messages.remove(message_id)?;
                by_conversation.remove((key, message_id))?;
            }
            index.remove(index_key(&record))?;
            conversations.remove(key)?;
            super::images::remove_for_conversation(
                &mut txn.open_table(IMAGES)?,
                &mut txn.open_table(IMAGES_BY_OWNER)?,
                &mut txn.open_table(IMAGES_BY_CONVERSATION)?,
                owner,
                id,
            )?
        };
        txn.commit()?;
        Ok(images)
    }

    /// One page of `owner`'s conversations, pinned first then newest first, optionally only
    /// those whose title contains `title_filter` (case-insensitive).
    pub fn list_conversations(
        &self,
        owner: Uuid,
        after: Option<ListCursor>,
        limit: usize,
        title_filter: Option<&str>,
    ) -> StoreResult<ConversationPage> {
        let txn = self.db.begin_read()?;
        let index = txn.open_table(CONVERSATIONS_BY_OWNER)?;
        let conversations = txn.open_table(CONVERSATIONS)?;
        let owner_key = owner.as_u128();
        let start = match after {
            Some(c) => (owner_key, c.unpinned, c.rev_updated, c.id),
            None => (owner_key, 0, 0, 0),
        };
        let needle = title_filter.map(str::to_lowercase).filter(|n| !n.is_empty());
        let mut items = Vec::new();
        let mut next = None;
        for entry in index.range(start..=(owner_key, u8::MAX, u64::MAX, u128::MAX))? {
            let (key, _) = entry?;
            let (_, unpinned, rev_updated, id) = key.value();
            let cursor = ListCursor {
                unpinned,
                rev_updated,
                id,
            };
            if Some(cursor) == after {
                continue;
            }
            if items.len() == limit {
                break;
            }
            let Some(value) = conversations.get(id)? else { continue };
            let record: ConversationRecord = decode(value.value())?;
            if let Some(needle) = &needle {
                if !record.title.to_lowercase().contains(needle) {
                    continue;
                }
            }
            items.push(record);
            next = Some(cursor);
        }
        // Only hand out a cursor when something may follow it.
        let has_more = match next {
            Some(c) => index
                .range((owner_key, c.unpinned, c.rev_updated, c.id)..=(owner_key, u8::MAX, u64::MAX, u128::MAX))?
                .nth(1)
                .is_some(),
            None => false,
        };
        Ok(ConversationPage {
            items,
            next: next.filter(|_| has_more),
        })
    }
}
