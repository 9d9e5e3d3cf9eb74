//! What a request for generated text may ask, in one place for every room: the APIs check
//! requests with [`GenerationParams::validate`], the chat service fills the parameters from a
//! conversation's settings, providers send them, and the engine checks them again and samples
//! by them. It depends on nothing else in the crate, so that the engine can use it without
//! knowing the providers.

mod estimate;
mod params;

pub use estimate::estimate_tokens;
pub use params::{GenerationParams, InvalidParam, DEFAULT_MAX_TOKENS, MAX_TEMPERATURE, MAX_TOKENS_LIMIT};
