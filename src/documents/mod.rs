//! The documents service: the rules of uploads (size, type from the bytes, one copy of the
//! same bytes per owner, files named by id), the background ingestion that makes them
//! searchable (extract in an isolated process, chunk by the embedding model's tokens, embed
//! below chat's priority, index in LanceDB), hybrid search over them, and the sources a chat
//! answer draws on. Every call takes the owner: another user's document does not exist.

pub mod chunk;
mod context;
pub use enclave_extract::detect;
pub mod extract;
mod ingest;
mod search;
mod upload;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::providers::registry::ModelRegistry;
use crate::store::chunks::ChunkError;
use crate::store::{
    ChunkIndex, DocumentCursor, DocumentFilter, DocumentListing, DocumentRecord, SectionRecord, Store, StoreError,
};
pub use context::{DocumentContext, DocumentScope};
use extract::isolate::Isolation;
pub use search::{fuse, Found, SearchQuery, SearchResults, TEXT_WEIGHT};
pub use upload::{display_name, Accepted};

/// How the service runs.
#[derive(Debug, Clone)]
pub struct DocumentSettings {
    /// Where originals are stored, named by id.
    pub files_dir: PathBuf,
    /// The largest document, per file.
    pub max_upload_bytes: u64,
    /// How extraction is isolated, and its limits.
    pub isolation: Isolation,
    /// Tokens per chunk (the embedding model's window when `None`).
    pub chunk_tokens: Option<usize>,
    /// Tokens shared by neighbouring chunks (an eighth when `None`).
    pub chunk_overlap: Option<usize>,
}

/// Why a documents call failed.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// No such document (or not the caller's).
    #[error("document not found")]
    NotFound,
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
    /// Over the upload limit.
    #[error("the file is larger than the {limit} byte upload limit")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// Not a type Enclave reads.
    #[error("this file type is not supported (PDF, DOCX, ODT, PPTX, XLSX, XLS, ODS, CSV, HTML, Markdown, text, RTF, EML, ZIP, and images: PNG, JPEG, WebP, GIF, TIFF)")]
    UnsupportedType,
    /// An empty file.
    #[error("the file is empty")]
    Empty,
    /// Being ingested right now.
    #[error("the document is being ingested; wait until it is indexed or failed")]
    Busy,
    /// No embedding model can serve.
    #[error("{0}")]
    EmbeddingUnavailable(String),
    /// Reranking was asked for and the rerank model cannot serve.
    #[error("{0}")]
    RerankUnavailable(String),
    /// The records failed.
    #[error(transparent)]
    Store(StoreError),
    /// The vector store failed.
    #[error(transparent)]
    Vectors(#[from] ChunkError),
    /// The disk failed.
    #[error("file storage: {0}")]
    Io(String),
}

impl From<StoreError> for DocumentError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => DocumentError::NotFound,
            other => DocumentError::Store(other),
        }
    }
}

/// The documents service; cheap to clone.
#[derive(Clone)]
pub struct DocumentService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    chunks: ChunkIndex,
    registry: Arc<ModelRegistry>,
    settings: DocumentSettings,
    /// Wakes the ingestion worker (new work, a retry).
    wake: Notify,
    /// The document the worker is on, and how to cancel it (a delete).
    current: Mutex<Option<(Uuid, CancellationToken)>>,
    /// Stops the worker.
    shutdown: CancellationToken,
    /// The worker and the index maintenance tasks.
    tasks: TaskTracker,
}

impl DocumentService {
    /// The service; its ingestion worker starts at once and resumes the queue left by a
    /// previous run.
    pub fn start(
        store: Store,
        chunks: ChunkIndex,
        registry: Arc<ModelRegistry>,
        settings: DocumentSettings,
    ) -> Result<Self, DocumentError> {
        std::fs::create_dir_all(&settings.files_dir)
            .map_err(|e| DocumentError::Io(format!("cannot create {}: {e}", settings.files_dir.display())))?;
        let service = Self {
            inner: Arc::new(Inner {
                store,
                chunks,
                registry,
                settings,
                wake: Notify::new(),
                current: Mutex::new(None),
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
            }),
        };
        let worker = service.clone();
        service.inner.tasks.spawn(async move { ingest::run(worker).await });
        Ok(service)
    }

    /// Stops the worker (the document it was on stays queued for the next start).
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    /// Where the original of document `id` is stored.
    fn file_path(&self, id: Uuid) -> PathBuf {
        self.inner.settings.files_dir.join(id.to_string())
    }

    /// A document of `owner`.
    pub fn get(&self, owner: Uuid, id: Uuid) -> Result<DocumentRecord, DocumentError> {
        Ok(self.inner.store.get_document(owner, id)?)
    }

    /// One page of `owner`'s documents, newest first.
    pub fn list(
        &self,
        owner: Uuid,
        limit: Option<usize>,
        cursor: Option<&str>,
        filter: DocumentFilter,
    ) -> Result<DocumentListing, DocumentError> {
        let limit = limit.unwrap_or(50).clamp(1, 200);
        let cursor = match cursor.filter(|c| !c.is_empty()) {
            Some(text) => {
                Some(DocumentCursor::decode(text).ok_or_else(|| DocumentError::Invalid("cursor is not valid".into()))?)
            }
            None => None,
        };
        Ok(self.inner.store.list_documents(owner, cursor, limit, &filter)?)
    }

    /// The original file of a document of `owner`: its record and its bytes.
    pub async fn original(&self, owner: Uuid, id: Uuid) -> Result<(DocumentRecord, Vec<u8>), DocumentError> {
        let record = self.get(owner, id)?;
        let bytes = tokio::fs::read(self.file_path(id))
            .await
            .map_err(|e| DocumentError::Io(format!("the stored file is missing: {e}")))?;
        Ok((record, bytes))
    }

    /// Section `index` (1-based: a page, a sheet...) of a document of `owner`.
    pub fn section(&self, owner: Uuid, id: Uuid, index: u32) -> Result<SectionRecord, DocumentError> {
        Ok(self.inner.store.get_section(owner, id, index)?)
    }

    /// Deletes a document of `owner` everywhere: the record, its sections and queue entries,
    /// the stored file and its chunks and vectors. Ingestion of it, if running, stops.
    pub async fn delete(&self, owner: Uuid, id: Uuid) -> Result<(), DocumentError> {
        self.inner.store.delete_document(owner, id)?;
        if let Some((current, token)) = &*self.lock_current() {
            if *current == id {
                token.cancel();
            }
        }
        match tokio::fs::remove_file(self.file_path(id)).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(document = %id, error = %e, "could not remove a deleted document's file"),
        }
        self.inner.chunks.delete_document(id).await?;
        tracing::info!(document = %id, "document deleted");
        Ok(())
    }

    /// Queues a document of `owner` again (after a failure, or to index it anew).
    pub fn retry(&self, owner: Uuid, id: Uuid) -> Result<DocumentRecord, DocumentError> {
        let record = self.get(owner, id)?;
        if record.status.in_progress() {
            return Err(DocumentError::Busy);
        }
        let record = self.inner.store.requeue_document(owner, id)?;
        self.inner.wake.notify_one();
        Ok(record)
    }

    fn lock_current(&self) -> std::sync::MutexGuard<'_, Option<(Uuid, CancellationToken)>> {
        // A panic while holding this lock cannot leave it half-written.
        self.inner.current.lock().unwrap_or_else(|p| p.into_inner())
    }
}
