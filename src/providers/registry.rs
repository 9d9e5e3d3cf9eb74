//! Which provider serves which model id: built from models.toml, with local models loading in
//! the background and fallbacks tried in order when a provider is rate-limited or down.

use std::sync::{Arc, RwLock};

use enclave_protocol::{ModelState, ModelStatus};

use super::gemini::GeminiProvider;
use super::local::LocalProvider;
use super::openai::OpenAiProvider;
use super::{ChatProvider, ChatRequest, ChatStream, ProviderError};
use crate::config::{Config, ModelEntry, ModelRole, ProviderKind};
use crate::engine::{
    self, EmbedPurpose, Embedder, EmbeddingModelConfig, LoadProgress, LoadState, LocalModelConfig, ModelSource,
    Priority, Reranker, SchedulerConfig,
};

/// Why a model cannot serve a request.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No such model id.
    #[error("unknown model {0:?}")]
    UnknownModel(String),
    /// The model exists but cannot answer now (loading, failed, no API key).
    #[error("model {id:?} is not available: {reason}")]
    Unavailable {
        /// Model id.
        id: String,
        /// Why, for people.
        reason: String,
    },
    /// The request carries images and the model cannot see (nor is a vision model
    /// configured to take it instead).
    #[error("model {0:?} cannot see images, and no model that can is configured: give a chat model capabilities = [\"vision\"] in models.toml (default_vision names the one that answers messages with images)")]
    CannotSee(String),
    /// Every provider tried failed; this is the last error.
    #[error(transparent)]
    Provider(#[from] ProviderError),
}

/// How a model is served.
enum Backend {
    /// In-process engine, loaded in the background.
    Local(Arc<RwLock<LocalSlot>>),
    /// A remote provider; `missing_key` names the unset variable when there is one.
    Remote {
        provider: Arc<dyn ChatProvider>,
        missing_key: Option<String>,
    },
}

enum LocalSlot {
    Loading(LoadProgress),
    Ready(Loaded),
    Failed(String),
}

/// A local model once loaded.
#[derive(Clone)]
enum Loaded {
    /// A chat model behind its provider.
    Chat(Arc<LocalProvider>),
    /// An embedding model.
    Embed(Embedder),
    /// A cross-encoder.
    Rerank(Reranker),
}

struct Slot {
    entry: ModelEntry,
    backend: Backend,
}

/// The set of models this server can use.
pub struct ModelRegistry {
    slots: Vec<Slot>,
    default_model: String,
    default_embed: Option<String>,
    default_rerank: Option<String>,
    default_vision: Option<String>,
}

/// Remote models without a declared context length are assumed to take this many tokens.
const REMOTE_CONTEXT_DEFAULT: usize = 8192;

impl ModelRegistry {
    /// Builds the registry; local models start loading in the background at once.
    pub fn start(config: &Config) -> Arc<ModelRegistry> {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .read_timeout(config.request_timeout)
            .build()
            .unwrap_or_default();
        let mut slots = Vec::new();
        for entry in &config.catalogue.models {
            let backend = if entry.provider == "local" {
                Backend::Local(start_local(entry, config))
            } else {
                // validate() guarantees the provider table exists.
                let Some(p) = config.catalogue.providers.get(&entry.provider) else {
                    continue;
                };
                let (key, missing_key) = match &p.api_key_env {
                    Some(var) => match std::env::var(var) {
                        Ok(v) if !v.is_empty() => (Some(v), None),
                        _ => (None, Some(var.clone())),
                    },
                    None => (None, None),
                };
                let provider: Arc<dyn ChatProvider> = match p.kind {
                    ProviderKind::Openai => Arc::new(OpenAiProvider::new(
                        p.base_url.clone().unwrap_or_default(),
                        key,
                        http.clone(),
                    )),
                    ProviderKind::Gemini => Arc::new(GeminiProvider::new(
                        p.base_url
                            .clone()
                            .unwrap_or_else(|| super::gemini::DEFAULT_BASE_URL.to_string()),
                        key,
                        http.clone(),
                    )),
                };
                Backend::Remote { provider, missing_key }
            };
            slots.push(Slot {
                entry: entry.clone(),
                backend,
            });
        }
        Arc::new(ModelRegistry {
            slots,
            default_model: config.default_model.clone(),
            default_embed: config.catalogue.default_embed_model().map(str::to_owned),
            default_rerank: config.catalogue.default_rerank_model().map(str::to_owned),
            default_vision: config.catalogue.default_vision_model().map(str::to_owned),
        })
    }

    /// The default chat model's id.
    pub fn default_model(&self) -> &str {
        &self.default_model
    }

    fn slot(&self, id: &str) -> Result<&Slot, RegistryError> {
        self.slots
            .iter()
            .find(|s| s.entry.id == id)
            .ok_or_else(|| RegistryError::UnknownModel(id.to_string()))
    }

    /// The embedding model documents are indexed with, if the catalogue has one.
    pub fn default_embed_model(&self) -> Option<&str> {
        self.default_embed.as_deref()
    }

    /// The loaded local embedding model `id`.
    pub fn embedder(&self, id: &str) -> Result<Embedder, RegistryError> {
        self.loaded_local(
            id,
            ModelRole::Embed,
            "documents are embedded by local models only",
            |loaded| match loaded {
                Loaded::Embed(embedder) => Some(embedder.clone()),
                _ => None,
            },
        )
    }

    /// The cross-encoder search results are reranked with, if the catalogue has one.
    pub fn default_rerank_model(&self) -> Option<&str> {
        self.default_rerank.as_deref()
    }

    /// The loaded cross-encoder `id`.
    pub fn reranker(&self, id: &str) -> Result<Reranker, RegistryError> {
        // validate() keeps rerank models local.
        self.loaded_local(
            id,
            ModelRole::Rerank,
            "rerank models run in-process only",
            |loaded| match loaded {
                Loaded::Rerank(reranker) => Some(reranker.clone()),
                _ => None,
            },
        )
    }

    /// The local model `id` of `role` once loaded, as `pick` takes it; unknown when it has
    /// another role, unavailable (with why) while loading, after a failed load, or when remote.
    fn loaded_local<T>(
        &self,
        id: &str,
        role: ModelRole,
        remote_reason: &str,
        pick: impl FnOnce(&Loaded) -> Option<T>,
    ) -> Result<T, RegistryError> {
        let slot = self.slot(id)?;
        if slot.entry.role != role {
            return Err(RegistryError::UnknownModel(id.to_owned()));
        }
        let unavailable = |reason: String| RegistryError::Unavailable {
            id: id.to_owned(),
            reason,
        };
        match &slot.backend {
            Backend::Local(state) => match &*state.read().unwrap_or_else(|p| p.into_inner()) {
                LocalSlot::Ready(loaded) => pick(loaded).ok_or_else(|| RegistryError::UnknownModel(id.to_owned())),
                LocalSlot::Loading(_) => Err(unavailable("it is still loading".into())),
                LocalSlot::Failed(e) => Err(unavailable(format!("it failed to load: {e}"))),
            },
            Backend::Remote { .. } => Err(unavailable(remote_reason.to_owned())),
        }
    }

    /// Tokens of `text` for the embedding model `id` (estimated when it is remote or not
    /// loaded).
    pub fn count_embedding_tokens(&self, id: &str, text: &str) -> usize {
        match self.embedder(id) {
            Ok(embedder) => embedder.count_tokens(text),
            Err(_) => crate::generation::estimate_tokens(text),
        }
    }

    /// Whether `id` is an embedding model of the catalogue.
    pub fn is_embed_model(&self, id: &str) -> bool {
        self.slot(id).is_ok_and(|s| s.entry.role == ModelRole::Embed)
    }

    /// Embeds `inputs` with `model` (local or remote), for a caller who waits: `dimensions`
    /// shortens the vectors where the model allows it.
    pub async fn embed(
        &self,
        model: &str,
        inputs: Vec<String>,
        dimensions: Option<usize>,
    ) -> Result<Vec<Vec<f32>>, RegistryError> {
        let slot = self.slot(model)?;
        if slot.entry.role != ModelRole::Embed {
            return Err(RegistryError::UnknownModel(model.to_owned()));
        }
        if let Backend::Local(_) = &slot.backend {
            let embedder = self.embedder(model)?;
            return embedder
                .embed(&inputs, EmbedPurpose::Plain, Priority::Interactive, dimensions)
                .await
                .map_err(|e| RegistryError::Provider(super::local::provider_error(e)));
        }
        if dimensions.is_some() {
            return Err(RegistryError::Provider(ProviderError::Unsupported(format!(
                "dimensions for the remote model {model}"
            ))));
        }
        let (provider, name) = self.provider(slot)?;
        Ok(provider.embed(&name, inputs).await?)
    }

    /// Whether `id` is a chat model of the catalogue.
    pub fn is_chat_model(&self, id: &str) -> bool {
        self.slot(id).is_ok_and(|s| s.entry.role == ModelRole::Chat)
    }

    /// Whether `id` is a chat model that reads images.
    pub fn can_see(&self, id: &str) -> bool {
        self.slot(id).is_ok_and(|s| s.entry.can_see())
    }

    /// The model that answers messages with images when the conversation's cannot see.
    pub fn default_vision_model(&self) -> Option<&str> {
        self.default_vision.as_deref()
    }

    /// The model that answers a request for `requested` that carries images: `requested`
    /// itself when it can see, else the configured vision model; `CannotSee` when neither.
    pub fn model_for_images(&self, requested: &str) -> Result<String, RegistryError> {
        self.slot(requested)?;
        if self.can_see(requested) {
            return Ok(requested.to_owned());
        }
        self.default_vision
            .clone()
            .ok_or_else(|| RegistryError::CannotSee(requested.to_owned()))
    }

    /// Every model's status, in catalogue order.
    pub fn statuses(&self) -> Vec<ModelStatus> {
        self.slots.iter().map(|s| self.status_of(s)).collect()
    }

    /// One model's status.
    pub fn status(&self, id: &str) -> Result<ModelStatus, RegistryError> {
        Ok(self.status_of(self.slot(id)?))
    }

    /// Whether the default model can answer now (for `/ready`).
    pub fn default_ready(&self) -> bool {
        self.status(&self.default_model)
            .is_ok_and(|s| s.status == ModelState::Ready)
    }

    fn status_of(&self, slot: &Slot) -> ModelStatus {
        let (status, progress, error) = match &slot.backend {
            Backend::Remote {
                missing_key: Some(var), ..
            } => (
                ModelState::Unavailable,
                None,
                Some(format!("set {var} to use this model")),
            ),
            Backend::Remote { .. } => (ModelState::Ready, None, None),
            Backend::Local(state) => match &*state.read().unwrap_or_else(|p| p.into_inner()) {
                LocalSlot::Ready(_) => (ModelState::Ready, None, None),
                LocalSlot::Failed(e) => (ModelState::Failed, None, Some(e.clone())),
                LocalSlot::Loading(progress) => match progress.snapshot() {
                    LoadState::Pending => (ModelState::Pending, None, None),
                    LoadState::Downloading {
                        downloaded_bytes,
                        total_bytes,
                    } => (
                        ModelState::Downloading,
                        total_bytes
                            .filter(|t| *t > 0)
                            .map(|t| downloaded_bytes as f32 / t as f32),
                        None,
                    ),
                    LoadState::Loading => (ModelState::Loading, None, None),
                    // The slot is switched right after; report it as still loading until then.
                    LoadState::Ready => (ModelState::Loading, Some(1.0), None),
                    LoadState::Failed { error } => (ModelState::Failed, None, Some(error)),
                },
            },
        };
        ModelStatus {
            id: slot.entry.id.clone(),
            name: slot.entry.display_name().to_string(),
            role: slot.entry.role,
            provider: slot.entry.provider.clone(),
            default: slot.entry.id == self.default_model,
            context_length: self.context_length_of(slot),
            quantization: slot.entry.quantization.clone(),
            fallback: slot.entry.fallback.clone(),
            capabilities: slot.entry.capabilities.clone(),
            default_vision: self.default_vision.as_deref() == Some(slot.entry.id.as_str()),
            status,
            progress,
            error,
        }
    }

    fn context_length_of(&self, slot: &Slot) -> usize {
        if let Backend::Local(state) = &slot.backend {
            match &*state.read().unwrap_or_else(|p| p.into_inner()) {
                LocalSlot::Ready(Loaded::Chat(p)) => return p.engine().info().context_length,
                LocalSlot::Ready(Loaded::Embed(e)) => return e.info().window,
                LocalSlot::Ready(Loaded::Rerank(r)) => return r.info().window,
                _ => {}
            }
        }
        slot.entry.context_length.unwrap_or(REMOTE_CONTEXT_DEFAULT)
    }

    /// Context window of a model, in tokens.
    pub fn context_length(&self, id: &str) -> Result<usize, RegistryError> {
        Ok(self.context_length_of(self.slot(id)?))
    }

    fn provider(&self, slot: &Slot) -> Result<(Arc<dyn ChatProvider>, String), RegistryError> {
        let unavailable = |reason: String| RegistryError::Unavailable {
            id: slot.entry.id.clone(),
            reason,
        };
        match &slot.backend {
            Backend::Remote {
                missing_key: Some(var), ..
            } => Err(unavailable(format!("{var} is not set"))),
            Backend::Remote { provider, .. } => Ok((
                provider.clone(),
                slot.entry.remote_name.clone().unwrap_or_else(|| slot.entry.id.clone()),
            )),
            Backend::Local(state) => match &*state.read().unwrap_or_else(|p| p.into_inner()) {
                LocalSlot::Ready(Loaded::Chat(p)) => Ok((p.clone() as Arc<dyn ChatProvider>, slot.entry.id.clone())),
                LocalSlot::Ready(Loaded::Embed(_)) => Err(unavailable("it is an embedding model".into())),
                LocalSlot::Ready(Loaded::Rerank(_)) => Err(unavailable("it is a rerank model".into())),
                LocalSlot::Loading(_) => Err(unavailable("it is still loading".into())),
                LocalSlot::Failed(e) => Err(unavailable(format!("it failed to load: {e}"))),
            },
        }
    }

    /// Counts the tokens of `text` for `model` (estimated for remote models).
    pub fn count_tokens(&self, model: &str, text: &str) -> usize {
        match self.slot(model).and_then(|s| self.provider(s)) {
            Ok((provider, name)) => provider.count_tokens(&name, text),
            Err(_) => crate::generation::estimate_tokens(text),
        }
    }

    /// The tokens an image of `width × height` pixels takes in `model`'s prompt: the local
    /// model's exact count, a remote provider's estimate.
    pub fn count_image_tokens(&self, model: &str, width: u32, height: u32) -> usize {
        match self.slot(model).and_then(|s| self.provider(s)) {
            Ok((provider, name)) => provider.count_image_tokens(&name, width, height),
            Err(_) => super::default_image_tokens(model, width, height),
        }
    }

    /// Starts a chat stream on `model`, falling back to the catalogue's fallbacks (in order)
    /// when it is rate-limited or unavailable. Returns the stream and the id of the model that
    /// accepted the request. A request with images goes only to models that can see: `model`
    /// must (`CannotSee` otherwise: [`Self::model_for_images`] chooses it), and fallbacks that
    /// cannot are passed over.
    pub async fn chat_stream(
        &self,
        model: &str,
        mut request: ChatRequest,
    ) -> Result<(ChatStream, String), RegistryError> {
        let first = self.slot(model)?;
        let needs_sight = request.has_images();
        if needs_sight && !first.entry.can_see() {
            return Err(RegistryError::CannotSee(model.to_owned()));
        }
        let candidates = std::iter::once(first.entry.id.clone()).chain(first.entry.fallback.iter().cloned());
        let mut last_error = None;
        for id in candidates {
            let slot = self.slot(&id)?;
            if needs_sight && !slot.entry.can_see() {
                continue;
            }
            let attempt = match self.provider(slot) {
                Ok((provider, remote_name)) => {
                    request.model = remote_name;
                    provider.chat_stream(request.clone()).await.map_err(RegistryError::from)
                }
                Err(e) => Err(e),
            };
            match attempt {
                Ok(stream) => {
                    if id != model {
                        metrics::counter!("enclave_model_fallbacks_total", "requested" => model.to_string(), "served_by" => id.clone())
                            .increment(1);
                        tracing::info!(requested = model, served_by = %id, "fell back to another model");
                    }
                    return Ok((stream, id));
                }
                Err(e) => {
                    let falls_back = match &e {
                        RegistryError::Provider(p) => p.should_fall_back(),
                        RegistryError::Unavailable { .. } => true,
                        RegistryError::UnknownModel(_) | RegistryError::CannotSee(_) => false,
                    };
                    metrics::counter!("enclave_model_refusals_total", "model" => id.clone()).increment(1);
                    tracing::warn!(model = %id, error = %e, "model could not take the request");
                    if !falls_back {
                        return Err(e);
                    }
                    last_error = Some(e);
                }
            }
        }
        // The loop ran at least once (the requested model itself).
        Err(last_error.unwrap_or_else(|| RegistryError::UnknownModel(model.to_string())))
    }
}

fn start_local(entry: &ModelEntry, config: &Config) -> Arc<RwLock<LocalSlot>> {
    let progress = LoadProgress::new();
    let slot = Arc::new(RwLock::new(LocalSlot::Loading(progress.clone())));
    let source = ModelSource {
        path: entry.path.clone(),
        hf_repo: entry.hf_repo.clone(),
        hf_file: entry.hf_file.clone(),
        hf_revision: entry.hf_revision.clone(),
    };
    let load: Box<dyn FnOnce() -> Result<Loaded, engine::EngineError> + Send> =
        if matches!(entry.role, ModelRole::Embed | ModelRole::Rerank) {
            let embedding = EmbeddingModelConfig {
                id: entry.id.clone(),
                source,
                max_tokens: entry.max_tokens,
                document_prefix: entry.document_prefix.clone(),
                query_prefix: entry.query_prefix.clone(),
                matryoshka: entry.matryoshka,
                batch_tokens: config.embed_batch_tokens,
                precision: config.embed_precision,
                queue_capacity: 65_536,
                cache_dir: config.model_cache_dir(),
                offline: config.offline,
            };
            let progress = progress.clone();
            if entry.role == ModelRole::Rerank {
                Box::new(move || engine::load_reranker(&embedding, &progress).map(Loaded::Rerank))
            } else {
                Box::new(move || engine::load_embedding(&embedding, &progress).map(Loaded::Embed))
            }
        } else {
            let local = LocalModelConfig {
                id: entry.id.clone(),
                source,
                context_length: entry.context_length,
                chat_template: entry.chat_template.clone(),
                scheduler: SchedulerConfig {
                    queue_capacity: config.model_queue_capacity,
                    kv_cache_bytes: config.kv_cache_bytes,
                    kv_dtype: config.kv_cache_dtype,
                    max_batch_tokens: config.max_batch_tokens,
                    max_prefill_while_decoding: config.max_prefill_while_decoding,
                    max_running: config.max_running,
                    ..SchedulerConfig::default()
                },
                cache_dir: config.model_cache_dir(),
                offline: config.offline,
                device: engine::DeviceChoice::Auto,
                attention: None,
                vision: entry.can_see(),
            };
            let progress = progress.clone();
            Box::new(move || engine::load(&local, &progress).map(|e| Loaded::Chat(Arc::new(LocalProvider::new(e)))))
        };
    let target = slot.clone();
    let id = entry.id.clone();
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let next = match load() {
            Ok(loaded) => {
                tracing::info!(model = %id, seconds = started.elapsed().as_secs_f32(), "model loaded");
                LocalSlot::Ready(loaded)
            }
            Err(e) => {
                tracing::error!(model = %id, error = %e, "model failed to load");
                LocalSlot::Failed(e.to_string())
            }
        };
        *target.write().unwrap_or_else(|p| p.into_inner()) = next;
    });
    slot
}
