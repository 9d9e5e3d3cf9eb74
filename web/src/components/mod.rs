//! Pieces of the pages: the sidebar, messages and their sources, the composer, the
//! conversation settings and its documents.

pub mod citations;
pub mod composer;
pub mod conversation_settings;
pub mod document_scope;
pub mod message;
pub mod sidebar;
