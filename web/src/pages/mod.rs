//! The pages: sign-in and sign-up, the chat, the settings.

pub mod auth;
pub mod chat;
pub mod settings;
