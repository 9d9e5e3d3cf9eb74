//! The chat service: the rules of conversations and of a turn. Stores the user's message,
//! builds the prompt within the model's context, streams the provider's answer to the client
//! and stores it (also when the client stops, disconnects or the server shuts down), names new
//! conversations; lists, creates, edits and deletes conversations; keeps the user's chat
//! preferences.

mod active;
mod conversations;
mod generation;
mod prompt;
mod settings;
mod title;

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use enclave_protocol::{Citation, ErrorCode, ModelStatus};

use crate::audit::AuditLog;
use crate::documents::{DocumentError, DocumentScope, DocumentService};
use crate::images::{ImageError, ImageService};
use crate::providers::registry::{ModelRegistry, RegistryError};
use crate::providers::{FinishReason, Usage};
use crate::store::{ConversationRecord, MessageRecord, MessageRole, SessionClient, Store, StoreError};
pub use active::ActiveGenerations;
pub use conversations::BranchMessage;
pub use prompt::path_to;

/// Longest accepted user message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 100_000;
/// Title of a conversation before its first exchange.
pub const DEFAULT_TITLE: &str = "New chat";

/// What goes to the client while an answer streams (the API turns it into SSE).
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// A source the answer draws on (all of them come before the first token).
    Citation(Citation),
    /// A piece of text.
    Token(String),
    /// The answer is complete and stored.
    Done {
        /// Why it ended.
        finish_reason: FinishReason,
        /// Token counts.
        usage: Usage,
    },
    /// The answer failed; what was generated so far is stored.
    Error {
        /// Stable code (`RATE_LIMITED`, `MODEL_UNAVAILABLE`...).
        code: ErrorCode,
        /// For people.
        message: String,
    },
}

/// Why a turn could not start.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// No such conversation (or not the caller's).
    #[error("conversation not found")]
    ConversationNotFound,
    /// The parent message is not in this conversation.
    #[error("message not found in this conversation")]
    MessageNotFound,
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
    /// An answer is already being generated in this conversation.
    #[error("an answer is already being generated in this conversation; stop it first")]
    Busy,
    /// Nothing to regenerate.
    #[error("there is no answer to regenerate")]
    NothingToRegenerate,
    /// The prompt cannot fit the model's context even without history.
    #[error("the message is too long for this model: {needed} tokens, {budget} available")]
    PromptTooLong {
        /// Tokens needed.
        needed: usize,
        /// Tokens available.
        budget: usize,
    },
    /// Unknown model id.
    #[error("unknown chat model {0:?}; see GET /api/v1/models")]
    UnknownModel(String),
    /// A document named for the answer does not exist (or is not the caller's).
    #[error("document not found")]
    DocumentNotFound,
    /// The documents cannot be searched now (no embedding model ready).
    #[error("{0}")]
    DocumentsUnavailable(String),
    /// An attached image is missing, another user's, or one too many.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The message has images and neither the conversation's model nor a vision model can
    /// see them.
    #[error("the model {0:?} cannot see images, and no model that can is configured: give a chat model capabilities = [\"vision\"] in models.toml (default_vision names the one that answers messages with images)")]
    CannotSee(String),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ChatError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ChatError::ConversationNotFound,
            other => ChatError::Store(other),
        }
    }
}

/// What a message says about answering from documents (each `None`: the conversation's
/// setting).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocumentChoice {
    /// Answer from documents.
    pub use_documents: Option<bool>,
    /// From these documents (implies `use_documents`).
    pub document_ids: Option<Vec<Uuid>>,
}

/// Where a new user message goes in the conversation's tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// After the message the conversation currently ends at.
    AfterLeaf,
    /// Under this message (answering it).
    Under(Uuid),
    /// As a new version of this user message: same parent, a new branch.
    EditOf(Uuid),
}

/// Whether the service can answer (for `/ready`).
pub struct Readiness {
    /// The database answers a read.
    pub store_ok: bool,
    /// The default model can answer.
    pub default_model_ready: bool,
    /// The default model's status.
    pub default_model: Option<ModelStatus>,
    /// The default embedding model's status, when one is configured (documents need it; chat
    /// does not, so it does not decide readiness).
    pub default_embed_model: Option<ModelStatus>,
}

/// A turn that has started: ids for the client and the event stream.
pub struct StartedTurn {
    /// The stored user message (absent for regenerate).
    pub user_message_id: Option<Uuid>,
    /// Id the answer will be stored under.
    pub assistant_message_id: Uuid,
    /// Events until `Done` or `Error`.
    pub events: mpsc::Receiver<StreamEvent>,
}

/// The chat service.
#[derive(Clone)]
pub struct ChatService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// Where finished answers are recorded (model and token counts).
    audit: AuditLog,
    registry: Arc<ModelRegistry>,
    documents: DocumentService,
    images: ImageService,
    active: ActiveGenerations,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    default_system_prompt: Option<String>,
}

/// Everything a generation needs, handed to the background task.
struct Turn {
    owner: Uuid,
    conversation: ConversationRecord,
    parent_id: Uuid,
    assistant_id: Uuid,
    model: String,
    request: crate::providers::ChatRequest,
    prompt_tokens: usize,
    first_exchange: bool,
    first_user_text: Option<String>,
    citations: Vec<Citation>,
    /// Who asked, for the audit entry of the answer.
    client: SessionClient,
}

impl ChatService {
    /// A service over these stores, models, documents and images; `default_system_prompt` is
    /// used for conversations without one (empty for none).
    pub fn new(
        store: Store,
        registry: Arc<ModelRegistry>,
        documents: DocumentService,
        images: ImageService,
        audit: AuditLog,
        default_system_prompt: String,
    ) -> ChatService {
        ChatService {
            inner: Arc::new(Inner {
                store,
                audit,
                registry,
                documents,
                images,
                active: ActiveGenerations::default(),
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
                default_system_prompt: Some(default_system_prompt).filter(|p| !p.trim().is_empty()),
            }),
        }
    }

    /// The models.
    pub fn registry(&self) -> &Arc<ModelRegistry> {
        &self.inner.registry
    }

    /// Whether answers can be served: the database answers and the default model is ready;
    /// with the default model's status.
    pub fn readiness(&self) -> Readiness {
        let registry = &self.inner.registry;
        Readiness {
            store_ok: self.inner.store.ping().is_ok(),
            default_model_ready: registry.default_ready(),
            default_model: registry.status(registry.default_model()).ok(),
            default_embed_model: registry.default_embed_model().and_then(|id| registry.status(id).ok()),
        }
    }

    /// Sends a user message (its text and the images `attachments`) where `placement` says and
    /// starts the answer (from documents when `documents` or the conversation's settings say
    /// so). With images, the answer comes from the conversation's model if it can see, else
    /// from the configured vision model (the conversation keeps its model).
    #[allow(clippy::too_many_arguments)]
    pub async fn send_message(
        &self,
        owner: Uuid,
        conversation_id: Uuid,
        content: String,
        attachments: Vec<Uuid>,
        placement: Placement,
        documents: DocumentChoice,
        client: SessionClient,
    ) -> Result<StartedTurn, ChatError> {
        let content = content.trim().to_string();
        if content.is_empty() && attachments.is_empty() {
            return Err(ChatError::Invalid("content must not be empty".into()));
        }
        if content.chars().count() > MAX_MESSAGE_CHARS {
            return Err(ChatError::Invalid(format!(
                "content must be at most {MAX_MESSAGE_CHARS} characters"
            )));
        }
        let conversation = self.inner.store.get_conversation(owner, conversation_id)?;
        let messages = self.inner.store.list_messages(owner, conversation_id)?;
        let find = |id: Uuid| messages.iter().find(|m| m.id == id).ok_or(ChatError::MessageNotFound);
        let parent = match placement {
            Placement::AfterLeaf => conversation.active_leaf_id,
            Placement::Under(id) => Some(find(id)?.id),
            Placement::EditOf(id) => {
                let edited = find(id)?;
                if edited.role != MessageRole::User {
                    return Err(ChatError::Invalid("only user messages can be edited".into()));
                }
                edited.parent_id
            }
        };
        let attachments = self.inner.images.claim(owner, conversation_id, &attachments).await?;
        let token = self.inner.shutdown.child_token();
        let guard = self.begin(conversation_id, &token)?;
        let mut user = MessageRecord::new(conversation_id, parent, MessageRole::User, content.clone());
        user.attachments = attachments;
        let first_exchange = messages.is_empty();
        let mut path: Vec<&MessageRecord> = match parent {
            Some(p) => path_to(&messages, p),
            None => Vec::new(),
        };
        path.push(&user);
        let turn = self
            .prepare(
                owner,
                conversation,
                &path,
                user.id,
                first_exchange.then(|| content.clone()),
                &documents,
            )
            .await?;
        // Store the user's message before anything can fail on the provider side. Its images
        // were checked above; one deleted or sent elsewhere since is refused here.
        self.inner.store.append_message(owner, &user).map_err(|e| match e {
            StoreError::NotFound if !user.attachments.is_empty() => ChatError::Image(ImageError::NotFound),
            StoreError::NotFound => ChatError::MessageNotFound,
            StoreError::Conflict(_) => ChatError::Image(ImageError::InUse),
            other => ChatError::Store(other),
        })?;
        if first_exchange && !turn.conversation.title_set_by_user {
            let provisional = title::provisional(&content);
            self.inner
                .store
                .update_conversation(owner, conversation_id, false, |c| c.title = provisional)?;
        }
        let (assistant_message_id, events) = self.spawn(Turn { client, ..turn }, token, guard);
        Ok(StartedTurn {
            user_message_id: Some(user.id),
            assistant_message_id,
            events,
        })
    }

    /// Generates a new answer to the last user message, as a sibling of the current answer.
    pub async fn regenerate(
        &self,
        owner: Uuid,
        conversation_id: Uuid,
        client: SessionClient,
    ) -> Result<StartedTurn, ChatError> {
        let conversation = self.inner.store.get_conversation(owner, conversation_id)?;
        let messages = self.inner.store.list_messages(owner, conversation_id)?;
        let leaf = conversation.active_leaf_id.ok_or(ChatError::NothingToRegenerate)?;
        let path = path_to(&messages, leaf);
        let last_user = path
            .iter()
            .rposition(|m| m.role == MessageRole::User)
            .ok_or(ChatError::NothingToRegenerate)?;
        let token = self.inner.shutdown.child_token();
        let guard = self.begin(conversation_id, &token)?;
        let user_id = path[last_user].id;
        let turn = self
            .prepare(
                owner,
                conversation,
                &path[..=last_user],
                user_id,
                None,
                &DocumentChoice::default(),
            )
            .await?;
        let (assistant_message_id, events) = self.spawn(Turn { client, ..turn }, token, guard);
        Ok(StartedTurn {
            user_message_id: None,
            assistant_message_id,
            events,
        })
    }

    /// Stops the running answer of a conversation and waits (a few seconds at most) until its
    /// partial text is stored, so that the caller can read it at once; false if none was
    /// running.
    pub async fn stop(&self, owner: Uuid, conversation_id: Uuid) -> Result<bool, ChatError> {
        self.inner.store.get_conversation(owner, conversation_id)?;
        let Some(done) = self.inner.active.stop(conversation_id) else {
            return Ok(false);
        };
        if tokio::time::timeout(std::time::Duration::from_secs(10), done.cancelled())
            .await
            .is_err()
        {
            tracing::warn!(conversation = %conversation_id, "a stopped answer took over 10 s to end");
        }
        Ok(true)
    }

    /// Stops every running answer (each is stored and its client gets a final event) and
    /// waits for them to finish.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    fn begin(&self, conversation_id: Uuid, token: &CancellationToken) -> Result<active::ActiveGuard, ChatError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(ChatError::ShuttingDown);
        }
        self.inner
            .active
            .begin(conversation_id, token.clone())
            .ok_or(ChatError::Busy)
    }

    /// Chooses the model, gathers the documents' sources when the turn uses them, and fits the
    /// history and sampling settings into the model's context.
    async fn prepare(
        &self,
        owner: Uuid,
        conversation: ConversationRecord,
        path: &[&MessageRecord],
        parent_id: Uuid,
        first_user_text: Option<String>,
        documents: &DocumentChoice,
    ) -> Result<Turn, ChatError> {
        let registry = &self.inner.registry;
        let chosen = conversation
            .model
            .clone()
            .unwrap_or_else(|| registry.default_model().to_string());
        // The newest message's images decide who answers; older images are shown only to a
        // model that can see.
        let model = match path.last() {
            Some(newest) if !newest.attachments.is_empty() => {
                registry.model_for_images(&chosen).map_err(|e| match e {
                    RegistryError::CannotSee(m) => ChatError::CannotSee(m),
                    _ => ChatError::UnknownModel(chosen.clone()),
                })?
            }
            _ => chosen,
        };
        let sees = registry.can_see(&model);
        let image_records = self.image_records(owner, path)?;
        let context = registry
            .context_length(&model)
            .map_err(|_| ChatError::UnknownModel(model.clone()))?;
        let mut params = conversations::settings_params(&conversation.settings);
        let wanted = params.max_tokens_or_default() as usize;
        // Keep at least a quarter of the context for the answer, at most what was asked.
        let reserve = wanted.min(context / 4).max(1);
        let count = |text: &str| registry.count_tokens(&model, text);
        let base_prompt = conversation
            .system_prompt
            .as_deref()
            .or(self.inner.default_system_prompt.as_deref());
        let (sources, citations) = self
            .sources(
                owner,
                &conversation,
                path,
                documents,
                context.saturating_sub(reserve),
                base_prompt,
                &count,
            )
            .await?;
        let system_prompt = match (base_prompt, sources) {
            (Some(base), Some(sources)) => Some(format!("{base}\n\n{sources}")),
            (None, Some(sources)) => Some(sources),
            (base, None) => base.map(str::to_owned),
        };
        let image_cost = |message: &MessageRecord| -> usize {
            if !sees {
                return 0;
            }
            message
                .attachments
                .iter()
                .filter_map(|id| image_records.get(id))
                .map(|r| registry.count_image_tokens(&model, r.width, r.height))
                .sum()
        };
        let (mut messages, attachments, prompt_tokens) = match prompt::fit(
            system_prompt.as_deref(),
            path,
            context.saturating_sub(reserve),
            count,
            image_cost,
        ) {
            prompt::Fitted::Fits {
                messages,
                attachments,
                tokens,
            } => (messages, attachments, tokens),
            prompt::Fitted::TooLong { needed, budget } => return Err(ChatError::PromptTooLong { needed, budget }),
        };
        for (message, ids) in messages.iter_mut().zip(attachments) {
            if ids.is_empty() {
                continue;
            }
            if sees {
                message.images = self.inner.images.for_prompt(owner, &ids).await?;
            } else {
                // Earlier images, and a model that cannot see them: say so rather than let the
                // model guess.
                let note = match ids.len() {
                    1 => "[an image was attached here; this model cannot see images]".to_owned(),
                    n => format!("[{n} images were attached here; this model cannot see images]"),
                };
                message.content = if message.content.is_empty() {
                    note
                } else {
                    format!("{}\n\n{note}", message.content)
                };
            }
        }
        params.max_tokens = Some(wanted.min(context.saturating_sub(prompt_tokens)).max(1) as u32);
        Ok(Turn {
            owner,
            first_exchange: first_user_text.is_some(),
            first_user_text,
            assistant_id: crate::store::new_id(),
            parent_id,
            request: crate::providers::ChatRequest {
                model: model.clone(),
                messages,
                params,
                user: Some(owner.to_string()),
            },
            model,
            prompt_tokens,
            conversation,
            citations,
            client: SessionClient::default(),
        })
    }

    /// The records of the images the messages of `path` carry (an image deleted since is
    /// left out).
    fn image_records(
        &self,
        owner: Uuid,
        path: &[&MessageRecord],
    ) -> Result<std::collections::HashMap<Uuid, crate::store::ImageRecord>, ChatError> {
        let mut records = std::collections::HashMap::new();
        for id in path.iter().flat_map(|m| m.attachments.iter()) {
            match self.inner.images.record(owner, *id) {
                Ok(record) => {
                    records.insert(*id, record);
                }
                Err(ImageError::NotFound) => {}
                Err(other) => return Err(other.into()),
            }
        }
        Ok(records)
    }

    /// The documents' sources for this turn, if it uses documents: the message's choice, else
    /// the conversation's. They may take what the system prompt and the newest message leave
    /// of `available` tokens (older history is dropped first).
    #[allow(clippy::too_many_arguments)]
    async fn sources(
        &self,
        owner: Uuid,
        conversation: &ConversationRecord,
        path: &[&MessageRecord],
        choice: &DocumentChoice,
        available: usize,
        base_prompt: Option<&str>,
        count: &(dyn Fn(&str) -> usize + Sync),
    ) -> Result<(Option<String>, Vec<Citation>), ChatError> {
        let settings = &conversation.settings;
        let ids = choice.document_ids.clone().or_else(|| settings.document_ids.clone());
        let enabled = choice
            .use_documents
            .or(choice.document_ids.as_ref().map(|_| true))
            .or(settings.use_documents)
            .unwrap_or(false);
        if !enabled {
            return Ok((None, Vec::new()));
        }
        let scope = match ids {
            Some(ids) => DocumentScope::Only(ids),
            None => DocumentScope::All,
        };
        let question = path.last().map(|m| m.content.as_str()).unwrap_or_default();
        let taken = base_prompt.map_or(0, count) + count(question) + 64;
        let budget = available.saturating_sub(taken) * 9 / 10;
        let context = self
            .inner
            .documents
            .context(owner, question, &scope, budget, count)
            .await
            .map_err(|e| match e {
                DocumentError::NotFound => ChatError::DocumentNotFound,
                DocumentError::EmbeddingUnavailable(reason) => ChatError::DocumentsUnavailable(reason),
                other => ChatError::DocumentsUnavailable(other.to_string()),
            })?;
        Ok((Some(context.prompt), context.citations))
    }

    fn spawn(
        &self,
        turn: Turn,
        token: CancellationToken,
        guard: active::ActiveGuard,
    ) -> (Uuid, mpsc::Receiver<StreamEvent>) {
        let (tx, rx) = mpsc::channel(64);
        let id = turn.assistant_id;
        let service = self.clone();
        self.inner.tasks.spawn(async move {
            let _guard = guard;
            generation::run(&service, turn, token, tx).await;
        });
        (id, rx)
    }
}

impl From<RegistryError> for StreamEvent {
    fn from(e: RegistryError) -> Self {
        use crate::providers::ProviderError as P;
        let code = match &e {
            RegistryError::UnknownModel(_) => ErrorCode::ModelNotFound,
            RegistryError::CannotSee(_) => ErrorCode::ModelCannotSee,
            RegistryError::Unavailable { .. } => ErrorCode::ModelUnavailable,
            RegistryError::Provider(P::RateLimited { .. }) => ErrorCode::RateLimited,
            RegistryError::Provider(P::Overloaded) => ErrorCode::Overloaded,
            RegistryError::Provider(P::Unavailable(_)) => ErrorCode::ModelUnavailable,
            RegistryError::Provider(P::Rejected(_)) => ErrorCode::ProviderRejected,
            RegistryError::Provider(P::Unauthorized(_)) => ErrorCode::ProviderUnauthorized,
            RegistryError::Provider(P::Unsupported(_)) => ErrorCode::Unsupported,
            RegistryError::Provider(P::Other(_)) => ErrorCode::ProviderError,
        };
        StreamEvent::Error {
            code,
            message: e.to_string(),
        }
    }
}
