//! Loading a model, once: where its file comes from (a path, or Hugging Face through hf-hub
//! with progress), reading GGUF or safetensors weights into the batched forward, and building
//! what turns text into tokens and back (tokenizer, chat template). Everything here runs when
//! a model is loaded; nothing here runs per request except the tokenizer and the template,
//! which [`crate::engine::LocalEngine`] holds.
//!
//! A new model family adds its weight names in `loader` / `hf` and its forward in
//! [`crate::engine::run::forward`]; an embedding or vision model adds its own loader here.

pub(crate) mod config;
pub mod embedding;
pub(crate) mod gguf;
pub(crate) mod hf;
pub(crate) mod loader;
pub(crate) mod progress;
pub mod reranker;
pub(crate) mod source;
pub(crate) mod template;
pub(crate) mod tensor_types;
pub(crate) mod tokenizer;
