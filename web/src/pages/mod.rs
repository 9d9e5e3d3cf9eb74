//! The pages: sign-in and sign-up, the chat, the documents, the settings.

pub mod auth;
pub mod chat;
pub mod documents;
pub mod settings;
