//! A user's preferences (theme, default model, default system prompt) and their rules.

use enclave_protocol::UserSettings;
use uuid::Uuid;

use super::conversations::check_system_prompt;
use super::{ChatError, ChatService};

impl ChatService {
    /// `owner`'s preferences (defaults when never saved).
    pub fn user_settings(&self, owner: Uuid) -> Result<UserSettings, ChatError> {
        Ok(self.inner.store.get_user_settings(owner)?)
    }

    /// Replaces `owner`'s preferences after checking them.
    pub fn put_user_settings(&self, owner: Uuid, settings: UserSettings) -> Result<UserSettings, ChatError> {
        if let Some(theme) = &settings.theme {
            if !matches!(theme.as_str(), "dark" | "light" | "system") {
                return Err(ChatError::Invalid("theme must be dark, light or system".into()));
            }
        }
        if let Some(model) = &settings.default_model {
            if !self.inner.registry.is_chat_model(model) {
                return Err(ChatError::Invalid(format!("unknown chat model {model:?}")));
            }
        }
        check_system_prompt("default_system_prompt", settings.default_system_prompt.as_deref())?;
        self.inner.store.put_user_settings(owner, &settings)?;
        Ok(settings)
    }
}
