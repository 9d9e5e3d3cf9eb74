//! Enclave: a private, self-hosted ChatGPT in one binary.
//!
//! Rooms: `api` (HTTP only), `auth`, `chat`, `documents`, `images`, `providers`, `engine` (knows
//! nothing of users), `generation` (what a generation may ask), `store` (the only place that
//! knows redb and LanceDB), `config`, `telemetry`; `server` assembles them
//! (docs/ARCHITECTURE.md).

pub mod api;
pub mod audit;
pub mod auth;
pub mod chat;
pub mod config;
pub mod documents;
pub mod engine;
pub mod generation;
pub mod images;
pub mod providers;
pub mod server;
pub mod store;
pub mod telemetry;
