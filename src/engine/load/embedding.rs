//! Loading an embedding model: a BERT-family encoder (`bert`: all-MiniLM, bge, e5...) or
//! nomic-embed (`nomic_bert`) from a Hugging Face directory (`config.json`,
//! `model.safetensors`, `tokenizer.json`), on disk or downloaded through hf-hub.
//!
//! The model's window (the most tokens one text may have) is the override, else
//! `sentence_bert_config.json`'s `max_seq_length`, else 512 for nomic (which could take 8192 at
//! a steep cost), else the model's position table.

use std::path::{Path, PathBuf};

use candle_core::DType;
use candle_nn::VarBuilder;
use candle_transformers::models::{bert, nomic_bert};
use tokenizers::Tokenizer;

use crate::engine::error::EngineError;
use crate::engine::load::config::ModelSource;
use crate::engine::load::progress::{LoadProgress, LoadState};
use crate::engine::load::source::{self, ModelFiles};
use crate::engine::run::embed::bert::{BertConfig, BertEncoder, EmbedPrecision};
use crate::engine::run::embed::{Embedder, EmbedderSettings, Encoder};

/// The window nomic-embed is served with unless the configuration says otherwise.
const NOMIC_DEFAULT_WINDOW: usize = 512;

/// The configuration of one local embedding model.
#[derive(Clone, Debug)]
pub struct EmbeddingModelConfig {
    /// The model's id as clients name it.
    pub id: String,
    /// Where the weights come from (a directory, or a Hugging Face repo with
    /// `model.safetensors`).
    pub source: ModelSource,
    /// The most tokens one text may have; the model's own window when absent.
    pub max_tokens: Option<usize>,
    /// Put before a document's text (nomic: `search_document: `); the family's default when
    /// absent.
    pub document_prefix: Option<String>,
    /// Put before a query (nomic: `search_query: `); the family's default when absent.
    pub query_prefix: Option<String>,
    /// Whether vectors may be shortened (Matryoshka training); the family's default when
    /// absent (nomic yes, others no).
    pub matryoshka: Option<bool>,
    /// The most tokens (padding included) one batch may hold.
    pub batch_tokens: usize,
    /// The arithmetic of the linear layers (BERT family on the CPU).
    pub precision: EmbedPrecision,
    /// Texts waiting before `OVERLOADED`.
    pub queue_capacity: usize,
    /// Where hf-hub caches downloads.
    pub cache_dir: PathBuf,
    /// Never touch the network.
    pub offline: bool,
}

impl EmbeddingModelConfig {
    /// A configuration for a model directory on disk, with defaults for everything else.
    pub fn from_path(id: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self {
            id: id.into(),
            source: ModelSource {
                path: Some(path.into()),
                ..ModelSource::default()
            },
            max_tokens: None,
            document_prefix: None,
            query_prefix: None,
            matryoshka: None,
            batch_tokens: 8192,
            precision: EmbedPrecision::Auto,
            queue_capacity: 65_536,
            cache_dir: std::env::temp_dir().join("enclave-hf-cache"),
            offline: true,
        }
    }
}

impl ModelFiles for EmbeddingModelConfig {
    fn id(&self) -> &str {
        &self.id
    }
    fn source(&self) -> &ModelSource {
        &self.source
    }
    fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }
    fn offline(&self) -> bool {
        self.offline
    }
}

/// Loads the embedding model of `config` and starts its batching thread. Blocking (minutes
/// for a download): call it from `spawn_blocking`. `progress` ends `Ready` or `Failed`.
pub fn load_embedding(config: &EmbeddingModelConfig, progress: &LoadProgress) -> Result<Embedder, EngineError> {
    let result = source::resolve_model_file(config, progress).and_then(|path| {
        progress.set(LoadState::Loading);
        let (encoder, settings) = read_encoder(config, &model_dir(path))?;
        Embedder::start(encoder, settings)
    });
    report(progress, &result);
    result
}

/// Sets `progress` from the outcome of a load.
pub(super) fn report<T>(progress: &LoadProgress, result: &Result<T, EngineError>) {
    match result {
        Ok(_) => progress.set(LoadState::Ready),
        Err(error) => progress.set(LoadState::Failed {
            error: error.to_string(),
        }),
    }
}

/// The directory of a resolved model file (the file's folder, or the directory itself).
pub(super) fn model_dir(path: PathBuf) -> PathBuf {
    if path.is_dir() {
        path
    } else {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    }
}

/// `tokenizer.json` of `dir`, with the file's own truncation and padding removed (our
/// batching pads and our callers check lengths: the file's settings would cut texts
/// silently).
pub(super) fn read_tokenizer(dir: &Path) -> Result<Tokenizer, EngineError> {
    let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
        .map_err(|e| EngineError::Tokenizer(format!("{}: {e}", dir.join("tokenizer.json").display())))?;
    tokenizer
        .with_truncation(None)
        .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
    tokenizer.with_padding(None);
    Ok(tokenizer)
}

/// What `config.json` says about the family.
#[derive(serde::Deserialize)]
pub(super) struct Family {
    pub(super) model_type: Option<String>,
    pub(super) max_position_embeddings: Option<usize>,
    n_positions: Option<usize>,
}

/// Reads the weights, configuration and tokenizer of the model in `dir`.
fn read_encoder(config: &EmbeddingModelConfig, dir: &Path) -> Result<(Encoder, EmbedderSettings), EngineError> {
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .map_err(|e| EngineError::InvalidModel(format!("{}: {e}", dir.join(name).display())))
    };
    let config_text = read("config.json")?;
    let family: Family =
        serde_json::from_str(&config_text).map_err(|e| EngineError::InvalidModel(format!("config.json: {e}")))?;
    let device = crate::engine::load::loader::select_device(crate::engine::DeviceChoice::Auto)?;
    let weights = dir.join("model.safetensors");
    if !weights.is_file() {
        return Err(EngineError::InvalidModel(format!("{} is missing", weights.display())));
    }
    // Safety: the file is memory-mapped read-only and not changed while the model lives;
    // the same contract as every safetensors loader of candle.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &device)? };
    let model_type = family.model_type.as_deref().unwrap_or("bert");
    let (encoder, own_window, nomic, dimension) = match model_type {
        "nomic_bert" => {
            let cfg: nomic_bert::Config = serde_json::from_str(&config_text)
                .map_err(|e| EngineError::InvalidModel(format!("config.json: {e}")))?;
            let model = nomic_bert::NomicBertModel::load(vb, &cfg)?;
            let window = family
                .n_positions
                .unwrap_or(NOMIC_DEFAULT_WINDOW)
                .min(NOMIC_DEFAULT_WINDOW);
            (Encoder::Nomic(Box::new(model)), window, true, cfg.n_embd)
        }
        "bert" => {
            let window = sentence_window(dir).unwrap_or(family.max_position_embeddings.unwrap_or(512));
            let packed: BertConfig = serde_json::from_str(&config_text)
                .map_err(|e| EngineError::InvalidModel(format!("config.json: {e}")))?;
            if packed.supported() && device.is_cpu() {
                let hidden = packed.hidden_size;
                let window = window.min(packed.max_position_embeddings);
                (
                    Encoder::Packed(Box::new(BertEncoder::load(dir, packed, config.precision)?)),
                    window,
                    false,
                    hidden,
                )
            } else {
                let cfg: bert::Config = serde_json::from_str(&config_text)
                    .map_err(|e| EngineError::InvalidModel(format!("config.json: {e}")))?;
                let model = bert::BertModel::load(vb, &cfg)?;
                (Encoder::Bert(Box::new(model)), window, false, cfg.hidden_size)
            }
        }
        other => {
            return Err(EngineError::InvalidModel(format!(
                "embedding models of type {other:?} are not supported (bert, nomic_bert)"
            )))
        }
    };
    let tokenizer = read_tokenizer(dir)?;
    let window = config.max_tokens.unwrap_or(own_window);
    if window < 8 {
        return Err(EngineError::InvalidModel(format!(
            "embedding window of {window} tokens is too small"
        )));
    }
    let default_prefix = |prefix: &str| nomic.then(|| prefix.to_owned());
    let settings = EmbedderSettings {
        id: config.id.clone(),
        tokenizer,
        window,
        dimension,
        document_prefix: config
            .document_prefix
            .clone()
            .or_else(|| default_prefix("search_document: "))
            .unwrap_or_default(),
        query_prefix: config
            .query_prefix
            .clone()
            .or_else(|| default_prefix("search_query: "))
            .unwrap_or_default(),
        matryoshka: config.matryoshka.unwrap_or(nomic),
        batch_tokens: config.batch_tokens.max(window),
        queue_capacity: config.queue_capacity,
        device,
    };
    tracing::info!(model = %config.id, model_type, window, dimension, "embedding model loaded");
    Ok((encoder, settings))
}

/// `max_seq_length` of a sentence-transformers directory.
pub(super) fn sentence_window(dir: &Path) -> Option<usize> {
    let text = std::fs::read_to_string(dir.join("sentence_bert_config.json")).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value["max_seq_length"].as_u64().map(|n| n as usize)
}
