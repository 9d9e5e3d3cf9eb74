//! Reads a GGUF file into everything the engine needs: weights, tokenizer, template, limits.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use candle_core::quantized::gguf_file::Content;
use candle_core::Device;

use super::config::LocalModelConfig;
use super::error::EngineError;
use super::gguf::Metadata;
use super::model::{Architecture, Model};
use super::template::{ChatTemplate, CHATML_TEMPLATE};
use super::tokenizer::TextTokenizer;
use super::ModelInfo;

/// Tokens that end a turn in common chat vocabularies, besides the declared EOS.
const END_OF_TURN_TOKENS: &[&str] = &["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>"];

/// A model read from disk, not yet running.
pub(crate) struct LoadedModel {
    /// What the model is.
    pub(crate) info: ModelInfo,
    /// The weights.
    pub(crate) model: Model,
    /// Where the weights live.
    pub(crate) device: Device,
    /// The tokenizer.
    pub(crate) tokenizer: Arc<TextTokenizer>,
    /// The chat template.
    pub(crate) template: ChatTemplate,
    /// Token ids that end a sequence.
    pub(crate) eos_ids: Vec<u32>,
}

/// Reads the GGUF model at `file` as `config` asks.
pub(crate) fn read_model(config: &LocalModelConfig, file: &Path) -> Result<LoadedModel, EngineError> {
    let started = Instant::now();
    let mut reader = BufReader::new(File::open(file)?);
    let content = Content::read(&mut reader)
        .map_err(|e| EngineError::InvalidModel(format!("{} is not a readable GGUF file: {e}", file.display())))?;
    let md = Metadata(&content.metadata);
    let architecture = Architecture::from_gguf(
        md.str("general.architecture")
            .ok_or_else(|| EngineError::InvalidModel("no general.architecture".into()))?,
    )?;

    let tokenizer = TextTokenizer::load(&md, file)?;
    let context_length = context_length(config, architecture, &md)?;
    let template_source = match (&config.chat_template, md.str("tokenizer.chat_template")) {
        (Some(source), _) => source.clone(),
        (None, Some(source)) => source.to_owned(),
        (None, None) => {
            tracing::info!(model = %config.id, "the model has no chat template, using ChatML");
            CHATML_TEMPLATE.to_owned()
        }
    };
    let text_of = |token: Option<&super::tokenizer::SpecialToken>| token.map(|t| t.text.clone()).unwrap_or_default();
    let template = ChatTemplate::new(&template_source, &text_of(tokenizer.bos()), &text_of(tokenizer.eos()))?;

    let mut eos_ids: Vec<u32> = tokenizer.eos().map(|t| t.id).into_iter().collect();
    eos_ids.extend(md.token_id("tokenizer.ggml.eot_token_id"));
    eos_ids.extend(END_OF_TURN_TOKENS.iter().filter_map(|t| tokenizer.token_id(t)));
    eos_ids.sort_unstable();
    eos_ids.dedup();
    if eos_ids.is_empty() {
        tracing::warn!(model = %config.id, "the model declares no end-of-sequence token");
    }

    let device = Device::Cpu;
    let model = Model::load(architecture, content, &mut reader, &device).map_err(|e| match e {
        EngineError::Candle(e) => {
            EngineError::InvalidModel(format!("cannot load the weights of {}: {e}", file.display()))
        }
        other => other,
    })?;
    tracing::info!(
        model = %config.id,
        file = %file.display(),
        architecture = architecture.name(),
        context_length,
        vocab = tokenizer.vocab_size(),
        load_ms = started.elapsed().as_millis() as u64,
        "model loaded"
    );
    Ok(LoadedModel {
        info: ModelInfo {
            id: config.id.clone(),
            architecture: architecture.name().to_owned(),
            context_length,
            file: file.to_owned(),
        },
        model,
        device,
        tokenizer: Arc::new(tokenizer),
        template,
        eos_ids,
    })
}

/// The context length to serve: the override or `<arch>.context_length`, capped at what
/// candle's implementation of the architecture can hold.
fn context_length(
    config: &LocalModelConfig,
    architecture: Architecture,
    md: &Metadata<'_>,
) -> Result<usize, EngineError> {
    let key = format!("{}.context_length", architecture.name());
    let wanted = config
        .context_length
        .or_else(|| md.u64(&key).map(|v| v as usize))
        .ok_or_else(|| EngineError::InvalidModel(format!("no {key} in the GGUF metadata")))?;
    if wanted == 0 {
        return Err(EngineError::InvalidModel("the context length is 0".into()));
    }
    match architecture.max_positions(md) {
        Some(max) if wanted > max => {
            tracing::warn!(
                model = %config.id,
                wanted,
                max,
                "context length capped to what the model implementation supports"
            );
            Ok(max)
        }
        _ => Ok(wanted),
    }
}
