//! Enclave: a private, self-hosted ChatGPT in one binary.
//!
//! Rooms: `api` (HTTP only), `auth`, `chat`, `providers`, `engine` (knows nothing of users),
//! `store` (the only place that knows redb), `config`, `telemetry`.

pub mod engine;
pub mod providers;
