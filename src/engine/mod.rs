//! The local inference engine: loads GGUF chat models and generates tokens with candle; knows
//! nothing of users or HTTP.
//!
//! [`load`] resolves the model file (a path, or Hugging Face through hf-hub), reads the
//! weights, builds the tokenizer and chat template from the GGUF metadata, and starts one
//! runner thread that owns the model. [`LocalEngine`] is the cheap, cloneable handle on it:
//! render a chat, encode it, [`LocalEngine::submit`] it, and read [`GenerateEvent`]s from the
//! returned channel; dropping the receiver cancels the generation within one decode step.
//!
//! This first engine serves one sequence at a time from a bounded queue; a later one batches.

mod config;
mod detokenize;
mod error;
pub mod forward;
mod gguf;
pub mod kernels;
pub mod kv;
mod loader;
mod model;
mod progress;
mod request;
mod runner;
mod sampling;
mod source;
mod stats;
mod stop;
mod template;
pub mod tiny;
mod tokenizer;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;

pub use config::{LocalModelConfig, ModelSource};
pub use error::EngineError;
pub use progress::{LoadProgress, LoadState};
pub use request::{GenerateEvent, GenerateRequest, StopReason};
pub use sampling::{SamplingParams, DEFAULT_SEED};
pub use stats::EngineStats;
pub use template::{TemplateMessage, CHATML_TEMPLATE};

use loader::LoadedModel;
use runner::{Job, Runner};
use stats::StatsCounters;
use template::ChatTemplate;
use tokenizer::TextTokenizer;

/// What a loaded model is.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ModelInfo {
    /// The model's id as clients name it.
    pub id: String,
    /// `general.architecture` of the GGUF file (`llama`, `qwen2`, `qwen3`).
    pub architecture: String,
    /// The most tokens (prompt and completion) one sequence may hold.
    pub context_length: usize,
    /// The GGUF file the weights came from.
    pub file: PathBuf,
}

/// Loads the model of `config` and starts its runner thread. Blocking (minutes for a
/// download): call it from `spawn_blocking`. `progress` follows along and ends `Ready` or
/// `Failed`.
pub fn load(config: &LocalModelConfig, progress: &LoadProgress) -> Result<LocalEngine, EngineError> {
    let result = source::resolve_model_file(config, progress).and_then(|file| {
        progress.set(LoadState::Loading);
        let loaded = loader::read_model(config, &file)?;
        LocalEngine::start(loaded, config.queue_capacity)
    });
    match &result {
        Ok(_) => progress.set(LoadState::Ready),
        Err(error) => progress.set(LoadState::Failed {
            error: error.to_string(),
        }),
    }
    result
}

/// A handle on a loaded model and its runner thread; cheap to clone. The runner stops when
/// the last handle is dropped.
#[derive(Clone)]
pub struct LocalEngine {
    /// Shared by every clone.
    inner: Arc<Inner>,
}

/// The state behind a [`LocalEngine`].
struct Inner {
    /// What the model is.
    info: ModelInfo,
    /// Shared with the runner, which detokenizes.
    tokenizer: Arc<TextTokenizer>,
    /// The compiled chat template.
    template: ChatTemplate,
    /// The bounded queue in front of the runner.
    queue: SyncSender<Job>,
    /// What the runner did.
    stats: Arc<StatsCounters>,
}

impl std::fmt::Debug for LocalEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEngine")
            .field("info", &self.inner.info)
            .finish_non_exhaustive()
    }
}

impl LocalEngine {
    /// Starts the runner thread for `loaded`.
    fn start(loaded: LoadedModel, queue_capacity: usize) -> Result<Self, EngineError> {
        let LoadedModel {
            info,
            model,
            device,
            tokenizer,
            template,
            eos_ids,
        } = loaded;
        let stats = Arc::new(StatsCounters::default());
        let runner = Runner {
            model_id: info.id.clone(),
            model,
            device,
            tokenizer: tokenizer.clone(),
            eos_ids,
            context_length: info.context_length,
            stats: stats.clone(),
        };
        let queue = runner.spawn(queue_capacity)?;
        Ok(Self {
            inner: Arc::new(Inner {
                info,
                tokenizer,
                template,
                queue,
                stats,
            }),
        })
    }

    /// What the model is.
    pub fn info(&self) -> &ModelInfo {
        &self.inner.info
    }

    /// What the runner has done since the model was loaded.
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

    /// Queues a generation and returns its event stream. Fails at once with
    /// [`EngineError::Overloaded`] when the queue is full and with
    /// [`EngineError::PromptTooLong`] when the prompt leaves no room in the context window.
    /// Dropping the receiver cancels the generation.
    pub fn submit(&self, request: GenerateRequest) -> Result<tokio::sync::mpsc::Receiver<GenerateEvent>, EngineError> {
        let tokens = request.prompt_tokens.len();
        let limit = self.inner.info.context_length;
        if tokens == 0 {
            return Err(EngineError::InvalidRequest("the prompt is empty".into()));
        }
        if tokens >= limit {
            return Err(EngineError::PromptTooLong { tokens, limit });
        }
        // Room for every event the generation can produce, so the runner never waits.
        let capacity = request.sampling.max_tokens.min(limit) + 4;
        let (events, receiver) = tokio::sync::mpsc::channel(capacity);
        let job = Job {
            request,
            events,
            queued_at: Instant::now(),
        };
        match self.inner.queue.try_send(job) {
            Ok(()) => Ok(receiver),
            Err(TrySendError::Full(_)) => {
                tracing::warn!(model = %self.inner.info.id, "request queue full, refusing");
                Err(EngineError::Overloaded)
            }
            Err(TrySendError::Disconnected(_)) => Err(EngineError::Stopped),
        }
    }
}
