//! The pages: sign-in and sign-up, the chat, the documents, the settings, security, and the
//! administrators' pages.

pub mod admin;
pub mod auth;
pub mod chat;
pub mod documents;
pub mod security;
pub mod settings;
