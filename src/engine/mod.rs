//! The local inference engine: loads GGUF chat models and generates tokens with candle; knows
//! nothing of users or HTTP.
//!
//! Split by lifetime: [`load`] holds what runs once per model (resolve the file, a path or
//! Hugging Face through hf-hub; read the weights; build the tokenizer and chat template), and
//! [`run`] what runs for as long as it is loaded (the [`run::scheduler`] thread, which owns
//! the KV cache and runs every request in continuous batches through the batched
//! [`run::forward`]). [`load()`] does the first and starts the second. [`LocalEngine`] is the
//! cheap, cloneable handle on a loaded model: render a chat, encode it,
//! [`LocalEngine::submit`] it, and read [`GenerateEvent`]s from the returned channel; dropping
//! the receiver cancels the generation within one step.

mod error;
/// The CPU kernels (quantized matmul, paged attention), a crate of their own.
pub use enclave_kernels as kernels;
pub mod load;
mod model;
#[cfg(test)]
mod reference;
pub mod run;
pub mod selftest;
pub mod synthetic;
pub mod tiny;
pub mod tiny_cross_encoder;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc::UnboundedReceiver;

pub use error::EngineError;
pub use load::config::{DeviceChoice, LocalModelConfig, ModelSource};
pub use load::embedding::{load_embedding, EmbeddingModelConfig};
pub use load::progress::{LoadProgress, LoadState};
pub use load::reranker::load_reranker;
pub use load::template::{TemplateMessage, CHATML_TEMPLATE};
pub use run::embed::bert::EmbedPrecision;
pub use run::embed::{EmbedPurpose, Embedder, EmbedderInfo, Reranker};
pub use run::priority::Priority;
pub use run::request::{read_to_end, GenerateEvent, GenerateRequest, ImageInput, StopReason};
pub use run::sampling::DEFAULT_SEED;
pub use run::scheduler::SchedulerConfig;
pub use run::stats::EngineStats;
pub use run::vision::PreparedImage;

use load::loader::{self, LoadedModel};
use load::source;
use load::template::ChatTemplate;
use load::tokenizer::TextTokenizer;
use run::scheduler::{Scheduler, SchedulerHandle, Submission};
use run::stats::StatsCounters;

/// What a loaded model is.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ModelInfo {
    /// The model's id as clients name it.
    pub id: String,
    /// `general.architecture` of the GGUF file (`llama`, `qwen2`, `qwen3`).
    pub architecture: String,
    /// The most tokens (prompt and completion) one sequence may hold.
    pub context_length: usize,
    /// Tokens in the vocabulary.
    pub vocab_size: usize,
    /// The GGUF file the weights came from.
    pub file: PathBuf,
}

/// Loads the model of `config` and starts its scheduler thread. Blocking (minutes for a
/// download): call it from `spawn_blocking`. `progress` follows along and ends `Ready` or
/// `Failed`.
pub fn load(config: &LocalModelConfig, progress: &LoadProgress) -> Result<LocalEngine, EngineError> {
    let result = source::resolve_model_file(config, progress).and_then(|file| {
        progress.set(LoadState::Loading);
        let loaded = loader::read_model(config, &file)?;
        LocalEngine::start(loaded, config.scheduler.clone())
    });
    match &result {
        Ok(_) => progress.set(LoadState::Ready),
        Err(error) => progress.set(LoadState::Failed {
            error: error.to_string(),
        }),
    }
    result
}

/// A handle on a loaded model and its scheduler thread; cheap to clone. The scheduler stops
/// when the last handle is dropped and its last sequence is done.
#[derive(Clone)]
pub struct LocalEngine {
    /// Shared by every clone.
    inner: Arc<Inner>,
}

/// The state behind a [`LocalEngine`].
struct Inner {
    /// What the model is.
    info: ModelInfo,
    /// Shared with the scheduler, which detokenizes.
    tokenizer: Arc<TextTokenizer>,
    /// The compiled chat template.
    template: ChatTemplate,
    /// The bounded way into the scheduler.
    scheduler: SchedulerHandle,
    /// What the scheduler did.
    stats: Arc<StatsCounters>,
    /// How the model sees (a vision-language model).
    vision: Option<EngineVision>,
}

/// What the engine's handle needs to put images into prompts.
struct EngineVision {
    /// The tokens that frame an image.
    tokens: run::vision::VisionTokens,
    /// How images are prepared.
    processing: run::vision::ImageProcessing,
    /// The text that stands for one image in a rendered prompt:
    /// `<|vision_start|><|image_pad|><|vision_end|>`.
    marker: String,
}

impl std::fmt::Debug for LocalEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEngine")
            .field("info", &self.inner.info)
            .finish_non_exhaustive()
    }
}

impl LocalEngine {
    /// Starts the scheduler thread for `loaded`.
    fn start(loaded: LoadedModel, config: SchedulerConfig) -> Result<Self, EngineError> {
        let LoadedModel {
            info,
            model,
            tokenizer,
            template,
            eos_ids,
            vision,
        } = loaded;
        let stats = Arc::new(StatsCounters::default());
        let (encoder, vision) = match vision {
            None => (None, None),
            Some(v) => {
                let text = |id: u32| tokenizer.token_text(id).unwrap_or_default();
                let marker = format!("{}{}{}", text(v.tokens.start), text(v.tokens.image), text(v.tokens.end));
                let handle = EngineVision {
                    tokens: v.tokens,
                    processing: v.processing,
                    marker,
                };
                (Some((v.encoder, v.tokens.image)), Some(handle))
            }
        };
        let scheduler = Scheduler::new(
            info.id.clone(),
            model,
            tokenizer.clone(),
            eos_ids,
            info.context_length,
            config,
            stats.clone(),
            encoder,
        )?
        .spawn()?;
        Ok(Self {
            inner: Arc::new(Inner {
                info,
                tokenizer,
                template,
                scheduler,
                stats,
                vision,
            }),
        })
    }

    /// Whether the model sees images (a vision-language model).
    pub fn can_see(&self) -> bool {
        self.inner.vision.is_some()
    }

    /// The text that stands for one image in a rendered prompt (the model's image tokens
    /// framed by its vision start and end tokens); `None` for a text model.
    pub fn image_marker(&self) -> Option<&str> {
        self.inner.vision.as_ref().map(|v| v.marker.as_str())
    }

    /// Decodes and prepares an image file for the model (resize to its pixel budget,
    /// normalize, cut into patches). CPU work: call it off the async threads.
    pub fn prepare_image(&self, file: &[u8]) -> Result<PreparedImage, EngineError> {
        let vision = self.vision()?;
        run::vision::prepare_image(file, &vision.processing)
    }

    /// The tokens an image of `width × height` pixels takes in a prompt; `None` for a text
    /// model.
    pub fn image_tokens(&self, width: u32, height: u32) -> Option<usize> {
        let vision = self.inner.vision.as_ref()?;
        let (h, w) = run::vision::preprocess::smart_resize(height as usize, width as usize, &vision.processing);
        Some((h / vision.processing.factor()) * (w / vision.processing.factor()))
    }

    /// Puts `images` into an encoded prompt whose text held one [`Self::image_marker`] per
    /// image, in order: each image token becomes as many as the image takes. Returns the
    /// prompt and where each image's tokens start.
    pub fn place_images(
        &self,
        tokens: &[u32],
        images: Vec<Arc<PreparedImage>>,
    ) -> Result<(Vec<u32>, Vec<ImageInput>), EngineError> {
        let image_token = self.vision()?.tokens.image;
        let found = tokens.iter().filter(|&&t| t == image_token).count();
        if found != images.len() {
            return Err(EngineError::InvalidRequest(format!(
                "the prompt has {found} image places for {} images (is an image token written in the text?)",
                images.len()
            )));
        }
        let mut images = images.into_iter();
        let mut placed = Vec::new();
        let mut out = Vec::with_capacity(tokens.len());
        for &token in tokens {
            if token != image_token {
                out.push(token);
                continue;
            }
            let image = images.next().expect("counted above");
            placed.push(ImageInput {
                start: out.len(),
                image: image.clone(),
            });
            out.extend(std::iter::repeat_n(image_token, image.tokens()));
        }
        Ok((out, placed))
    }

    /// The vision half, or the error for a text model.
    fn vision(&self) -> Result<&EngineVision, EngineError> {
        self.inner
            .vision
            .as_ref()
            .ok_or_else(|| EngineError::InvalidRequest(format!("the model {} reads text only", self.inner.info.id)))
    }

    /// What the model is.
    pub fn info(&self) -> &ModelInfo {
        &self.inner.info
    }

    /// What the scheduler has done since the model was loaded.
    pub fn stats(&self) -> EngineStats {
        self.inner.stats.snapshot()
    }

    /// Renders `messages` with the model's chat template; with `add_generation_prompt` the
    /// text ends where the assistant's answer begins.
    pub fn render_chat(
        &self,
        messages: &[TemplateMessage],
        add_generation_prompt: bool,
    ) -> Result<String, EngineError> {
        self.inner.template.render(messages, add_generation_prompt)
    }

    /// Encodes a rendered prompt: special tokens written in it become their single ids, and
    /// BOS is added only when the model wants it and the text does not already start with it.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, EngineError> {
        self.inner.tokenizer.encode(text)
    }

    /// The number of tokens of `text` (no BOS added).
    pub fn count_tokens(&self, text: &str) -> usize {
        self.inner.tokenizer.count(text)
    }

    /// The most tokens (prompt and answer) one sequence can hold: the context window, or the
    /// whole KV cache when that is smaller.
    pub fn max_sequence_tokens(&self) -> usize {
        self.inner
            .info
            .context_length
            .min(self.inner.scheduler.max_sequence_tokens())
    }

    /// Queues a generation and returns its event stream. Fails at once with
    /// [`EngineError::Overloaded`] when the queue is full, with
    /// [`EngineError::PromptTooLong`] when the prompt leaves no room for an answer, and with
    /// [`EngineError::InvalidRequest`] for an empty prompt, unknown token ids or sampling
    /// values out of range. Dropping the receiver cancels the generation.
    pub fn submit(&self, request: GenerateRequest) -> Result<UnboundedReceiver<GenerateEvent>, EngineError> {
        let tokens = request.prompt_tokens.len();
        let limit = self.max_sequence_tokens();
        if tokens == 0 {
            return Err(EngineError::InvalidRequest("the prompt is empty".into()));
        }
        if tokens >= limit {
            return Err(EngineError::PromptTooLong { tokens, limit });
        }
        let vocab = self.inner.info.vocab_size;
        if let Some(bad) = request.prompt_tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(EngineError::InvalidRequest(format!(
                "token id {bad} is outside the vocabulary of {vocab}"
            )));
        }
        request
            .sampling
            .validate()
            .map_err(|e| EngineError::InvalidRequest(e.to_string()))?;
        if !request.images.is_empty() {
            let image_token = self.vision()?.tokens.image;
            let mut end = 0;
            for input in &request.images {
                let span = input.start..input.start + input.image.tokens();
                if input.start < end
                    || span.end > tokens
                    || request.prompt_tokens[span.clone()].iter().any(|&t| t != image_token)
                {
                    return Err(EngineError::InvalidRequest(
                        "an image's place in the prompt does not hold its image tokens".into(),
                    ));
                }
                end = span.end;
            }
        }
        let (events, receiver) = tokio::sync::mpsc::unbounded_channel();
        let submission = Submission {
            request,
            events,
            queued_at: Instant::now(),
        };
        match self.inner.scheduler.submit(submission) {
            Ok(()) => Ok(receiver),
            Err(EngineError::Overloaded) => {
                tracing::warn!(model = %self.inner.info.id, "request queue full, refusing");
                Err(EngineError::Overloaded)
            }
            Err(other) => Err(other),
        }
    }
}
