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
use super::forward::{LlamaBatchModel, MatmulBackend};
use super::gguf::Metadata;
use super::model::Architecture;
use super::template::{ChatTemplate, CHATML_TEMPLATE};
use super::tokenizer::TextTokenizer;
use super::ModelInfo;

/// Tokens that end a turn in common chat vocabularies, besides the declared EOS.
const END_OF_TURN_TOKENS: &[&str] = &["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>"];

/// A model read from disk, not yet running.
pub(crate) struct LoadedModel {
    /// What the model is.
    pub(crate) info: ModelInfo,
    /// The weights and the batched forward.
    pub(crate) model: LlamaBatchModel,
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

    let device = select_device()?;
    let model =
        LlamaBatchModel::from_gguf(&content, &mut reader, &device, MatmulBackend::Fastest).map_err(|e| match e {
            EngineError::Candle(e) => {
                EngineError::InvalidModel(format!("cannot load the weights of {}: {e}", file.display()))
            }
            other => other,
        })?;
    let context_length = context_length(config, &md, architecture, model.config().max_positions)?;
    let (own_kernels, matrices) = model.own_kernel_matrices();
    tracing::info!(
        model = %config.id,
        file = %file.display(),
        architecture = architecture.name(),
        device = ?device,
        context_length,
        vocab = tokenizer.vocab_size(),
        own_kernel_matrices = format_args!("{own_kernels}/{matrices}"),
        load_ms = started.elapsed().as_millis() as u64,
        "model loaded"
    );
    Ok(LoadedModel {
        info: ModelInfo {
            id: config.id.clone(),
            architecture: architecture.name().to_owned(),
            context_length,
            vocab_size: model.config().vocab_size,
            file: file.to_owned(),
        },
        model,
        tokenizer: Arc::new(tokenizer),
        template,
        eos_ids,
    })
}

/// The device the model runs on: the first CUDA GPU in a `--features cuda` build when one
/// is there, the CPU otherwise.
fn select_device() -> Result<Device, EngineError> {
    #[cfg(feature = "cuda")]
    {
        match Device::new_cuda(0) {
            Ok(device) => return Ok(device),
            Err(error) => tracing::warn!(%error, "no usable CUDA device, running on the CPU"),
        }
    }
    Ok(Device::Cpu)
}

/// The context length to serve: the override or `<arch>.context_length`, capped at the
/// positions the model's rotary tables cover.
fn context_length(
    config: &LocalModelConfig,
    md: &Metadata<'_>,
    architecture: Architecture,
    max_positions: usize,
) -> Result<usize, EngineError> {
    let key = format!("{}.context_length", architecture.name());
    let wanted = config
        .context_length
        .or_else(|| md.u64(&key).map(|v| v as usize))
        .unwrap_or(max_positions);
    if wanted == 0 {
        return Err(EngineError::InvalidModel("the context length is 0".into()));
    }
    if wanted > max_positions {
        tracing::warn!(
            model = %config.id,
            wanted,
            max_positions,
            "context length capped to the positions the model supports"
        );
        return Ok(max_positions);
    }
    Ok(wanted)
}
