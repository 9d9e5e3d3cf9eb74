//! Enclave: a private, self-hosted ChatGPT in one binary.
//!
//! Rooms: `api` (HTTP only), `auth`, `chat`, `providers`, `engine` (knows nothing of users),
//! `store` (the only place that knows redb), `config`, `telemetry`; `server` assembles them.

pub mod api;
pub mod auth;
pub mod chat;
pub mod config;
pub mod engine;
pub mod generation;
pub mod providers;
pub mod server;
pub mod store;
pub mod telemetry;
