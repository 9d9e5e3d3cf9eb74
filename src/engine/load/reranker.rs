//! Loading a cross-encoder (a `rerank` model): a BERT one (`BertForSequenceClassification`,
//! such as cross-encoder/ms-marco-MiniLM-L-6-v2) on the packed forward, or an XLM-RoBERTa one
//! (`XLMRobertaForSequenceClassification`, such as BAAI/bge-reranker-base) on
//! candle-transformers; from a Hugging Face directory (`config.json`, `model.safetensors`,
//! `tokenizer.json`) on disk or through hf-hub, like embedding models.
//!
//! The number of labels is read from the classifier's weight, not from `config.json` (whose
//! `num_labels` defaults differ between writers). The window is the override, else
//! `sentence_bert_config.json`'s `max_seq_length`, else what the position table allows (for
//! XLM-RoBERTa, two positions fewer: its positions start after the padding id).

use std::path::Path;

use candle_core::safetensors::MmapedSafetensors;
use candle_core::DType;
use candle_nn::VarBuilder;
use candle_transformers::models::{bert, xlm_roberta};
use tokenizers::{TruncationDirection, TruncationParams, TruncationStrategy};

use super::embedding::{model_dir, read_tokenizer, report, sentence_window, EmbeddingModelConfig, Family};
use crate::engine::error::EngineError;
use crate::engine::load::progress::{LoadProgress, LoadState};
use crate::engine::load::source;
use crate::engine::run::embed::bert::{BertConfig, BertEncoder, BertTask};
use crate::engine::run::embed::cross::{BertCrossEncoder, CandleCrossEncoder, XlmRobertaCrossEncoder};
use crate::engine::run::embed::{EmbedderSettings, Encoder, Reranker};

/// What `config.json` must say for a model to be a cross-encoder.
#[derive(serde::Deserialize)]
struct Architectures {
    #[serde(default)]
    architectures: Vec<String>,
}

/// Loads the cross-encoder of `config` and starts its batching thread. Blocking (minutes for
/// a download): call it from `spawn_blocking`. `progress` ends `Ready` or `Failed`.
pub fn load_reranker(config: &EmbeddingModelConfig, progress: &LoadProgress) -> Result<Reranker, EngineError> {
    let result = source::resolve_model_file(config, progress).and_then(|path| {
        progress.set(LoadState::Loading);
        let (encoder, settings) = read_cross_encoder(config, &model_dir(path))?;
        Reranker::start(encoder, settings)
    });
    report(progress, &result);
    result
}

/// Reads the weights, configuration and tokenizer of the cross-encoder in `dir`.
fn read_cross_encoder(config: &EmbeddingModelConfig, dir: &Path) -> Result<(Encoder, EmbedderSettings), EngineError> {
    let invalid = |what: &str, e: &dyn std::fmt::Display| EngineError::InvalidModel(format!("{what}: {e}"));
    let config_text = std::fs::read_to_string(dir.join("config.json"))
        .map_err(|e| invalid(&dir.join("config.json").display().to_string(), &e))?;
    let family: Family = serde_json::from_str(&config_text).map_err(|e| invalid("config.json", &e))?;
    let architectures: Architectures = serde_json::from_str(&config_text).map_err(|e| invalid("config.json", &e))?;
    let weights = dir.join("model.safetensors");
    if !weights.is_file() {
        return Err(EngineError::InvalidModel(format!("{} is missing", weights.display())));
    }
    let model_type = family.model_type.as_deref().unwrap_or("bert");
    let (expected, classifier) = match model_type {
        "bert" => ("BertForSequenceClassification", "classifier.weight"),
        "xlm-roberta" => ("XLMRobertaForSequenceClassification", "classifier.out_proj.weight"),
        other => {
            return Err(EngineError::InvalidModel(format!(
                "rerank models of type {other:?} are not supported (bert, xlm-roberta cross-encoders)"
            )))
        }
    };
    if !architectures.architectures.iter().any(|a| a == expected) {
        return Err(EngineError::InvalidModel(format!(
            "a rerank model must be a cross-encoder ({expected}); config.json says {:?}",
            architectures.architectures
        )));
    }
    // Safety: the file is memory-mapped read-only and not changed while the model lives;
    // the same contract as every safetensors loader of candle.
    let labels = unsafe { MmapedSafetensors::new(&weights)? }
        .get(classifier)
        .map_err(|e| invalid(classifier, &e))?
        .shape()
        .first()
        .copied()
        .unwrap_or(0);
    if !(1..=2).contains(&labels) {
        return Err(EngineError::InvalidModel(format!(
            "a cross-encoder gives one relevance logit (or two labels), not {labels}"
        )));
    }
    let device = crate::engine::load::loader::select_device(crate::engine::DeviceChoice::Auto)?;
    // Safety: as above.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &device)? };
    let positions = family.max_position_embeddings.unwrap_or(512);
    let (encoder, own_window) = if model_type == "bert" {
        let window = sentence_window(dir).unwrap_or(positions).min(positions);
        let packed: BertConfig = serde_json::from_str(&config_text).map_err(|e| invalid("config.json", &e))?;
        if packed.supported() && device.is_cpu() {
            let task = BertTask::Classify { labels };
            let encoder = BertEncoder::load_for(dir, packed, config.precision, task)?;
            (Encoder::Packed(Box::new(encoder)), window)
        } else {
            let cfg: bert::Config = serde_json::from_str(&config_text).map_err(|e| invalid("config.json", &e))?;
            let model = BertCrossEncoder::load(vb, &cfg, labels)?;
            (
                Encoder::Cross(Box::new(CandleCrossEncoder::Bert(Box::new(model)))),
                window,
            )
        }
    } else {
        let cfg: xlm_roberta::Config = serde_json::from_str(&config_text).map_err(|e| invalid("config.json", &e))?;
        let usable = positions.saturating_sub(cfg.pad_token_id as usize + 1);
        let window = sentence_window(dir).unwrap_or(usable).min(usable);
        let model = XlmRobertaCrossEncoder::load(vb, &cfg, labels)?;
        (
            Encoder::Cross(Box::new(CandleCrossEncoder::XlmRoberta(Box::new(model)))),
            window,
        )
    };
    let window = config.max_tokens.unwrap_or(own_window).min(own_window);
    if window < 8 {
        return Err(EngineError::InvalidModel(format!(
            "reranker window of {window} tokens is too small"
        )));
    }
    let mut tokenizer = read_tokenizer(dir)?;
    // A long passage is cut to the window (its beginning kept); the query never is.
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: window,
            strategy: TruncationStrategy::OnlySecond,
            stride: 0,
            direction: TruncationDirection::Right,
        }))
        .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
    let settings = EmbedderSettings {
        id: config.id.clone(),
        tokenizer,
        window,
        dimension: 1,
        document_prefix: String::new(),
        query_prefix: String::new(),
        matryoshka: false,
        batch_tokens: config.batch_tokens.max(window),
        queue_capacity: config.queue_capacity,
        device,
    };
    tracing::info!(model = %config.id, model_type, window, labels, "reranker loaded");
    Ok((encoder, settings))
}
