//! Pieces of the pages: the sidebar, messages, the composer, the conversation settings.

pub mod composer;
pub mod conversation_settings;
pub mod message;
pub mod sidebar;
