//! Pieces of the pages: the sidebar, messages and their sources and images, the composer and
//! its attached images, the conversation settings and its documents.

pub mod attachments;
pub mod citations;
pub mod composer;
pub mod conversation_settings;
pub mod document_scope;
pub mod images;
pub mod message;
pub mod sidebar;
