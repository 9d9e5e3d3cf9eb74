//! The rules of conversations outside a turn: listing, creating with the user's defaults,
//! reading the active branch, editing (title, system prompt, pin, folder, model, settings,
//! branch) and deleting (a running answer is stopped first).

use std::collections::HashMap;

use enclave_protocol::{ConversationSettings, CreateConversation, UpdateConversation};
use uuid::Uuid;

use super::{path_to, ChatError, ChatService, DEFAULT_TITLE};
use crate::generation::GenerationParams;
use crate::store::{ConversationPage, ConversationRecord, ListCursor, MessageRecord};

/// Longest title, in characters.
const MAX_TITLE_CHARS: usize = 200;
/// Longest system prompt, in characters.
pub(super) const MAX_SYSTEM_PROMPT_CHARS: usize = 20_000;
/// Longest folder name, in characters.
const MAX_FOLDER_CHARS: usize = 100;
/// Conversations per page when the caller does not say.
const DEFAULT_PAGE: usize = 50;
/// The most conversations per page.
const MAX_PAGE: usize = 200;

/// A message of the active branch with the versions beside it.
pub struct BranchMessage {
    /// The message.
    pub message: MessageRecord,
    /// Every message with the same parent (this one included), oldest first.
    pub sibling_ids: Vec<Uuid>,
}

impl ChatService {
    /// One page of `owner`'s conversations, pinned first then newest first; `cursor` is the
    /// text a previous page returned, `title_filter` keeps titles that contain it.
    pub fn list_conversations(
        &self,
        owner: Uuid,
        limit: Option<usize>,
        cursor: Option<&str>,
        title_filter: Option<&str>,
    ) -> Result<ConversationPage, ChatError> {
        let limit = limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        let cursor = match cursor.filter(|c| !c.is_empty()) {
            Some(text) => {
                Some(ListCursor::decode(text).ok_or_else(|| ChatError::Invalid("cursor is not valid".into()))?)
            }
            None => None,
        };
        Ok(self
            .inner
            .store
            .list_conversations(owner, cursor, limit, title_filter)?)
    }

    /// Creates a conversation; what the request leaves out comes from the user's settings
    /// (model, system prompt), then from the server's defaults.
    pub fn create_conversation(
        &self,
        owner: Uuid,
        request: CreateConversation,
    ) -> Result<ConversationRecord, ChatError> {
        let defaults = self.inner.store.get_user_settings(owner)?;
        let chosen_title = request.title.as_deref().filter(|t| !t.trim().is_empty());
        let title = clean_title(chosen_title.unwrap_or(DEFAULT_TITLE))?;
        // A default model that has since left the catalogue is skipped, not an error.
        let model = request
            .model
            .or(defaults.default_model.filter(|m| self.inner.registry.is_chat_model(m)));
        self.check_model(model.as_deref())?;
        let system_prompt = request.system_prompt.or(defaults.default_system_prompt);
        check_system_prompt("system_prompt", system_prompt.as_deref())?;
        check_settings(&request.settings)?;
        Ok(self.inner.store.create_conversation(
            owner,
            title,
            model,
            system_prompt,
            request.settings,
            chosen_title.is_some(),
        )?)
    }

    /// A conversation and its active branch, root first.
    pub fn conversation_with_branch(
        &self,
        owner: Uuid,
        id: Uuid,
    ) -> Result<(ConversationRecord, Vec<BranchMessage>), ChatError> {
        let conversation = self.inner.store.get_conversation(owner, id)?;
        let all = self.inner.store.list_messages(owner, id)?;
        let mut siblings: HashMap<Option<Uuid>, Vec<Uuid>> = HashMap::new();
        for m in &all {
            siblings.entry(m.parent_id).or_default().push(m.id);
        }
        let branch = match conversation.active_leaf_id {
            Some(leaf) => path_to(&all, leaf)
                .into_iter()
                .map(|m| BranchMessage {
                    sibling_ids: siblings.get(&m.parent_id).cloned().unwrap_or_default(),
                    message: m.clone(),
                })
                .collect(),
            None => Vec::new(),
        };
        Ok((conversation, branch))
    }

    /// Changes what `request` names, after checking all of it.
    pub fn update_conversation(
        &self,
        owner: Uuid,
        id: Uuid,
        request: UpdateConversation,
    ) -> Result<ConversationRecord, ChatError> {
        let title = request.title.as_deref().map(clean_title).transpose()?;
        if let Some(model) = &request.model {
            self.check_model(Some(model))?;
        }
        check_system_prompt("system_prompt", request.system_prompt.as_deref())?;
        if let Some(settings) = &request.settings {
            check_settings(settings)?;
        }
        if request
            .folder
            .as_ref()
            .is_some_and(|f| f.chars().count() > MAX_FOLDER_CHARS)
        {
            return Err(ChatError::Invalid(format!(
                "folder must be at most {MAX_FOLDER_CHARS} characters"
            )));
        }
        let leaf = match request.active_message_id {
            Some(message_id) => {
                let all = self.inner.store.list_messages(owner, id)?;
                Some(newest_leaf_under(&all, message_id).ok_or(ChatError::MessageNotFound)?)
            }
            None => None,
        };
        let record = self.inner.store.update_conversation(owner, id, false, |c| {
            if let Some(title) = title {
                c.title = title;
                c.title_set_by_user = true;
            }
            if let Some(prompt) = request.system_prompt {
                c.system_prompt = Some(prompt).filter(|p| !p.is_empty());
            }
            if let Some(pinned) = request.pinned {
                c.pinned = pinned;
            }
            if let Some(folder) = request.folder {
                c.folder = Some(folder).filter(|f| !f.trim().is_empty());
            }
            if request.model.is_some() {
                c.model = request.model;
            }
            if let Some(settings) = request.settings {
                c.settings = settings;
            }
            if leaf.is_some() {
                c.active_leaf_id = leaf;
            }
        })?;
        Ok(record)
    }

    /// Deletes a conversation, its messages and their images, after stopping an answer running
    /// in it (so that the answer is not stored into a conversation that no longer exists).
    pub async fn delete_conversation(&self, owner: Uuid, id: Uuid) -> Result<(), ChatError> {
        self.stop(owner, id).await?;
        let images = self.inner.store.delete_conversation(owner, id)?;
        self.inner.images.remove_files(&images).await;
        Ok(())
    }

    /// Fails unless `model` is absent or a chat model of the catalogue.
    fn check_model(&self, model: Option<&str>) -> Result<(), ChatError> {
        match model {
            Some(m) if !self.inner.registry.is_chat_model(m) => Err(ChatError::UnknownModel(m.to_owned())),
            _ => Ok(()),
        }
    }
}

/// The newest leaf in the subtree of `message_id`, following the newest child at each step.
fn newest_leaf_under(all: &[MessageRecord], message_id: Uuid) -> Option<Uuid> {
    all.iter().find(|m| m.id == message_id)?;
    let mut current = message_id;
    // Ids are time-ordered, so the largest id is the newest child.
    while let Some(child) = all.iter().filter(|m| m.parent_id == Some(current)).map(|m| m.id).max() {
        current = child;
    }
    Some(current)
}

/// A title trimmed, non-empty and not too long.
fn clean_title(raw: &str) -> Result<String, ChatError> {
    let title = raw.trim();
    if title.is_empty() {
        return Err(ChatError::Invalid("title must not be empty".into()));
    }
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(ChatError::Invalid(format!(
            "title must be at most {MAX_TITLE_CHARS} characters"
        )));
    }
    Ok(title.to_string())
}

/// Fails when a system prompt is too long; `field` names it in the message.
pub(super) fn check_system_prompt(field: &str, prompt: Option<&str>) -> Result<(), ChatError> {
    if prompt.is_some_and(|p| p.chars().count() > MAX_SYSTEM_PROMPT_CHARS) {
        return Err(ChatError::Invalid(format!(
            "{field} must be at most {MAX_SYSTEM_PROMPT_CHARS} characters"
        )));
    }
    Ok(())
}

/// A conversation's settings checked by the same rules as every generation request.
fn check_settings(settings: &ConversationSettings) -> Result<(), ChatError> {
    settings_params(settings)
        .validate()
        .map_err(|e| ChatError::Invalid(format!("settings.{e}")))
}

/// The generation parameters a conversation's settings ask for.
pub(super) fn settings_params(settings: &ConversationSettings) -> GenerationParams {
    GenerationParams {
        temperature: settings.temperature,
        top_p: settings.top_p,
        max_tokens: settings.max_tokens,
        ..GenerationParams::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MessageRole;

    fn message(id: u128, parent: Option<u128>) -> MessageRecord {
        let mut m = MessageRecord::new(
            Uuid::from_u128(1),
            parent.map(Uuid::from_u128),
            MessageRole::User,
            String::new(),
        );
        m.id = Uuid::from_u128(id);
        m
    }

    #[test]
    fn the_branch_through_a_message_ends_at_its_newest_descendant() {
        // 10 -> {20 -> 40, 30 -> {50, 60}}
        let all = [
            message(10, None),
            message(20, Some(10)),
            message(30, Some(10)),
            message(40, Some(20)),
            message(50, Some(30)),
            message(60, Some(30)),
        ];
        assert_eq!(newest_leaf_under(&all, Uuid::from_u128(10)), Some(Uuid::from_u128(60)));
        assert_eq!(newest_leaf_under(&all, Uuid::from_u128(20)), Some(Uuid::from_u128(40)));
        assert_eq!(newest_leaf_under(&all, Uuid::from_u128(50)), Some(Uuid::from_u128(50)));
        assert_eq!(newest_leaf_under(&all, Uuid::from_u128(99)), None);
    }

    #[test]
    fn titles_are_trimmed_and_bounded() {
        assert_eq!(clean_title("  Trip  ").unwrap(), "Trip");
        assert!(clean_title("   ").is_err());
        assert!(clean_title(&"x".repeat(MAX_TITLE_CHARS + 1)).is_err());
    }

    #[test]
    fn settings_follow_the_generation_ranges_and_name_the_field() {
        let hot = ConversationSettings {
            temperature: Some(2.5),
            ..Default::default()
        };
        let error = check_settings(&hot).unwrap_err().to_string();
        assert!(error.starts_with("settings.temperature"), "{error}");
        assert!(check_settings(&ConversationSettings::default()).is_ok());
    }
}
