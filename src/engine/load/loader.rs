//! Reads a model (a GGUF file or a Hugging Face safetensors directory) into everything the
//! engine needs: weights, tokenizer, template, end-of-sequence tokens, limits.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use candle_core::quantized::gguf_file::Content;
use candle_core::Device;

use crate::engine::error::EngineError;
use crate::engine::load::config::{DeviceChoice, LocalModelConfig};
use crate::engine::load::gguf::Metadata;
use crate::engine::load::hf;
use crate::engine::load::template::{ChatTemplate, CHATML_TEMPLATE};
use crate::engine::load::tensor_types::gguf_read_error;
use crate::engine::load::tokenizer::TextTokenizer;
use crate::engine::model::Architecture;
use crate::engine::run::forward::{LlamaBatchModel, MatmulBackend};
use crate::engine::run::vision::{ImageProcessing, VisionEncoder, VisionTokens};
use crate::engine::ModelInfo;

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
    /// The vision half of a vision-language model.
    pub(crate) vision: Option<LoadedVision>,
}

/// The vision half of a vision-language model, read.
pub(crate) struct LoadedVision {
    /// The encoder's weights.
    pub(crate) encoder: VisionEncoder,
    /// The tokens that frame an image.
    pub(crate) tokens: VisionTokens,
    /// How images are prepared.
    pub(crate) processing: ImageProcessing,
}

/// Reads the model at `file` as `config` asks: a GGUF file, or a Hugging Face directory
/// (`config.json` + safetensors) named by the directory or a file in it.
pub(crate) fn read_model(config: &LocalModelConfig, file: &Path) -> Result<LoadedModel, EngineError> {
    let started = Instant::now();
    let device = select_device(config.device)?;
    let parts = if hf::is_hf_model(file) {
        read_hf(file, &device)?
    } else {
        read_gguf(file, &device)?
    };
    let Parts {
        architecture,
        mut model,
        tokenizer,
        template,
        mut eos_ids,
        declared_context,
        vision,
    } = parts;
    if config.vision && vision.is_none() {
        return Err(EngineError::InvalidModel(format!(
            "models.toml gives {} the vision capability, but {} is a text model (a Qwen3-VL checkpoint can see)",
            config.id,
            file.display()
        )));
    }
    let template_source = match (&config.chat_template, template) {
        (Some(source), _) => source.clone(),
        (None, Some(source)) => source,
        (None, None) => {
            tracing::info!(model = %config.id, "the model has no chat template, using ChatML");
            CHATML_TEMPLATE.to_owned()
        }
    };
    let text_of = |token: Option<&crate::engine::load::tokenizer::SpecialToken>| {
        token.map(|t| t.text.clone()).unwrap_or_default()
    };
    let template = ChatTemplate::new(&template_source, &text_of(tokenizer.bos()), &text_of(tokenizer.eos()))?;

    eos_ids.extend(tokenizer.eos().map(|t| t.id));
    eos_ids.extend(END_OF_TURN_TOKENS.iter().filter_map(|t| tokenizer.token_id(t)));
    eos_ids.sort_unstable();
    eos_ids.dedup();
    if eos_ids.is_empty() {
        tracing::warn!(model = %config.id, "the model declares no end-of-sequence token");
    }
    if let Some(attention) = config.attention {
        model.set_attention_backend(attention)?;
    }
    let context_length = context_length(config, declared_context, model.config().max_positions)?;
    let (own_kernels, matrices) = model.own_kernel_matrices();
    let candle_kernel_formats = model.candle_kernel_formats();
    tracing::info!(
        model = %config.id,
        file = %file.display(),
        architecture = architecture.name(),
        device = ?device,
        context_length,
        vocab = tokenizer.vocab_size(),
        own_kernel_matrices = format_args!("{own_kernels}/{matrices}"),
        candle_kernel_formats = %candle_kernel_formats,
        attention = ?model.attention_backend(),
        matrix_mib = model.matrix_bytes() / (1 << 20),
        vision = vision.is_some(),
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
        vision,
    })
}

/// What a model file provides, before the parts are put together.
struct Parts {
    /// The family.
    architecture: Architecture,
    /// The weights.
    model: LlamaBatchModel,
    /// The tokenizer.
    tokenizer: TextTokenizer,
    /// The model's own chat template.
    template: Option<String>,
    /// End-of-sequence ids besides the tokenizer's EOS.
    eos_ids: Vec<u32>,
    /// The context length the file declares.
    declared_context: Option<usize>,
    /// The vision half of a vision-language model.
    vision: Option<LoadedVision>,
}

/// The weights' loading error, with the file named.
fn weights_error(file: &Path) -> impl Fn(EngineError) -> EngineError + '_ {
    move |e| match e {
        EngineError::Candle(e) => {
            EngineError::InvalidModel(format!("cannot load the weights of {}: {e}", file.display()))
        }
        other => other,
    }
}

/// A GGUF file: weights, and tokenizer and template from its metadata.
fn read_gguf(file: &Path, device: &Device) -> Result<Parts, EngineError> {
    let mut reader = BufReader::new(File::open(file)?);
    let content = Content::read(&mut reader).map_err(|e| gguf_read_error(file, &e))?;
    let md = Metadata(&content.metadata);
    let architecture = Architecture::from_gguf(
        md.str("general.architecture")
            .ok_or_else(|| EngineError::InvalidModel("no general.architecture".into()))?,
    )?;
    let tokenizer = TextTokenizer::load(&md, file)?;
    let model = LlamaBatchModel::from_gguf(&content, &mut reader, device, MatmulBackend::Fastest)
        .map_err(weights_error(file))?;
    Ok(Parts {
        architecture,
        model,
        tokenizer,
        template: md.str("tokenizer.chat_template").map(str::to_owned),
        eos_ids: md.token_id("tokenizer.ggml.eot_token_id").into_iter().collect(),
        declared_context: md
            .u64(&format!("{}.context_length", architecture.name()))
            .map(|v| v as usize),
        vision: None,
    })
}

/// A Hugging Face directory: `config.json`, safetensors, `tokenizer.json` and its settings.
fn read_hf(file: &Path, device: &Device) -> Result<Parts, EngineError> {
    let dir = hf::hf_dir(file);
    let (config, tied) = hf::read_config(&dir)?;
    let settings = hf::TokenizerSettings::read(&dir)?;
    let tokenizer = TextTokenizer::from_hf(&dir, &settings)?;
    let architecture = config.architecture;
    let declared_context = Some(config.max_positions);
    let mut weights = hf::SafetensorsWeights::open(&dir, tied)?;
    let text_hidden = config.dim;
    let model = LlamaBatchModel::from_source(config, &mut weights, device, MatmulBackend::Fastest)
        .map_err(weights_error(file))?;
    let vision = match hf::read_vision(&dir, text_hidden)? {
        None => None,
        Some(parts) => {
            let encoder =
                VisionEncoder::load(parts.config, &parts.files, "model.visual", device).map_err(weights_error(file))?;
            for (name, id) in [
                ("image", parts.tokens.image),
                ("vision start", parts.tokens.start),
                ("vision end", parts.tokens.end),
            ] {
                if tokenizer.token_text(id).is_none() {
                    return Err(EngineError::InvalidModel(format!(
                        "the {name} token id {id} is not in the tokenizer"
                    )));
                }
            }
            Some(LoadedVision {
                encoder,
                tokens: parts.tokens,
                processing: parts.processing,
            })
        }
    };
    Ok(Parts {
        architecture,
        model,
        tokenizer,
        template: settings.chat_template.clone(),
        eos_ids: settings.eos_ids.clone(),
        declared_context,
        vision,
    })
}

/// The device a model runs on, as `choice` asks: for [`DeviceChoice::Auto`] the first CUDA
/// GPU in a `--features cuda` build when one is there, the CPU otherwise.
pub(crate) fn select_device(choice: DeviceChoice) -> Result<Device, EngineError> {
    if choice == DeviceChoice::Cpu {
        return Ok(Device::Cpu);
    }
    #[cfg(feature = "cuda")]
    {
        match Device::new_cuda(0) {
            Ok(device) => return Ok(device),
            Err(error) => {
                // candle's error carries a backtrace when RUST_BACKTRACE is set: the first
                // line says what is wrong.
                let error = error.to_string();
                let error = error.lines().next().unwrap_or_default();
                if choice == DeviceChoice::Cuda {
                    return Err(EngineError::InvalidRequest(format!("no usable CUDA device: {error}")));
                }
                tracing::warn!(error, "no usable CUDA device, running on the CPU");
            }
        }
    }
    #[cfg(not(feature = "cuda"))]
    if choice == DeviceChoice::Cuda {
        return Err(EngineError::InvalidRequest(
            "this enclave was built without CUDA (build it with --features cuda)".into(),
        ));
    }
    Ok(Device::Cpu)
}

/// The context length to serve: the override or what the file declares, capped at the
/// positions the model's rotary tables cover.
fn context_length(
    config: &LocalModelConfig,
    declared: Option<usize>,
    max_positions: usize,
) -> Result<usize, EngineError> {
    let wanted = config.context_length.or(declared).unwrap_or(max_positions);
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
