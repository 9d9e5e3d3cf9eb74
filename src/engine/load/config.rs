//! What the engine needs to know to load one local model.

use std::path::PathBuf;

use crate::engine::run::scheduler::SchedulerConfig;

/// Where a model's weights come from: a local file, Hugging Face, or both (the path is tried
/// first, Hugging Face is the fallback).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelSource {
    /// A GGUF file on disk.
    pub path: Option<PathBuf>,
    /// A Hugging Face repository, `owner/name`.
    pub hf_repo: Option<String>,
    /// The GGUF file inside `hf_repo`.
    pub hf_file: Option<String>,
    /// The revision (branch, tag or commit) of `hf_repo`; `main` when absent.
    pub hf_revision: Option<String>,
}

/// The configuration of one local chat model.
#[derive(Clone, Debug)]
pub struct LocalModelConfig {
    /// The model's id as clients name it.
    pub id: String,
    /// Where the weights come from.
    pub source: ModelSource,
    /// Overrides the context length read from the GGUF metadata.
    pub context_length: Option<usize>,
    /// Overrides the chat template read from the GGUF metadata (`tokenizer.chat_template`).
    pub chat_template: Option<String>,
    /// Batching limits, KV cache budget and queue capacity of the model's scheduler.
    pub scheduler: SchedulerConfig,
    /// Where hf-hub caches downloads.
    pub cache_dir: PathBuf,
    /// Never touch the network: only the path and the hf-hub cache are looked at.
    pub offline: bool,
    /// Where the model runs.
    pub device: DeviceChoice,
    /// The attention implementation; `None` for the device's default.
    pub attention: Option<crate::engine::run::forward::AttentionBackend>,
    /// Whether the model must see images (`capabilities = ["vision"]`): loading a text
    /// model then fails.
    pub vision: bool,
}

/// Where a model runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The first CUDA GPU in a `--features cuda` build when one is there, the CPU otherwise.
    #[default]
    Auto,
    /// The CPU, even where a GPU is there.
    Cpu,
    /// The first CUDA GPU; loading fails without one.
    Cuda,
}

impl LocalModelConfig {
    /// A configuration for a local file, with defaults for everything else.
    pub fn from_path(id: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self {
            id: id.into(),
            source: ModelSource {
                path: Some(path.into()),
                ..ModelSource::default()
            },
            context_length: None,
            chat_template: None,
            scheduler: SchedulerConfig {
                // Small enough for tests and tools; the server sizes it from its configuration.
                kv_cache_bytes: 256 << 20,
                ..SchedulerConfig::default()
            },
            cache_dir: std::env::temp_dir().join("enclave-hf-cache"),
            offline: true,
            device: DeviceChoice::Auto,
            attention: None,
            vision: false,
        }
    }
}
