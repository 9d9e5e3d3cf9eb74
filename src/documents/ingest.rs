//! The ingestion worker: one background task that owns the queue's head. It takes the oldest
//! job (the queue lives in redb, so a restart resumes it), and takes the document through
//! `extracting` (isolated extraction; the sections' text stored for the viewer and for whole-
//! document answers), `embedding` (chunks embedded in batches below chat's priority, progress
//! after each batch) to `indexed`, or `failed` with a reason people can read. A job that starts
//! over (a restart, a retry) first removes what an earlier attempt indexed, so chunks are never
//! doubled; a delete cancels the job and the worker removes anything it added meanwhile.
//!
//! Documents indexed with another embedding model than the configured one are queued again
//! at start and re-embedded from their stored text (no re-upload); until then search keeps
//! using their old vectors.

use std::time::Duration;

use enclave_protocol::{DocumentProgress, DocumentStatus};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::chunk::{passages, ChunkSize, Passage};
use super::extract::isolate::extract_file;
use super::extract::{ExtractError, Extracted};
use super::{DocumentError, DocumentService};
use crate::engine::{EmbedPurpose, Embedder, Priority};
use crate::providers::registry::RegistryError;
use crate::store::{ChunkRow, DocumentRecord, SectionRecord};

/// Chunks embedded (and indexed) per step; progress is saved after each.
const EMBED_BATCH: usize = 16;
/// How long the worker waits for an embedding model that is still loading.
const MODEL_WAIT: Duration = Duration::from_secs(1);

/// How a job ended.
enum Outcome {
    /// Indexed.
    Done,
    /// Failed; the document says why.
    Failed(String),
    /// Deleted (or the server is stopping) while it ran.
    Cancelled,
    /// The embedding model is not ready yet: try again later.
    Waiting,
}

/// The worker's loop, until shutdown.
pub(super) async fn run(service: DocumentService) {
    let inner = &service.inner;
    requeue_other_models(&service);
    // Whether chunks were added since the indexes were last brought up to date.
    let mut dirty = false;
    loop {
        if inner.shutdown.is_cancelled() {
            return;
        }
        let next = match inner.store.queued_documents() {
            Ok(jobs) => jobs.into_iter().next(),
            Err(error) => {
                tracing::error!(%error, "cannot read the ingestion queue");
                None
            }
        };
        let Some((job, document_id)) = next else {
            if std::mem::take(&mut dirty) {
                optimize_indexes(&service).await;
            }
            tokio::select! {
                _ = inner.wake.notified() => continue,
                _ = inner.shutdown.cancelled() => return,
            }
        };
        let token = inner.shutdown.child_token();
        *service.lock_current() = Some((document_id, token.clone()));
        let outcome = ingest(&service, document_id, &token).await;
        *service.lock_current() = None;
        match outcome {
            Outcome::Waiting => {
                tokio::select! {
                    _ = tokio::time::sleep(MODEL_WAIT) => {}
                    _ = inner.shutdown.cancelled() => return,
                }
                continue;
            }
            Outcome::Cancelled if inner.shutdown.is_cancelled() => return,
            Outcome::Cancelled => {
                // Deleted while it ran: whatever was indexed meanwhile goes too.
                if let Err(error) = inner.chunks.delete_document(document_id).await {
                    tracing::warn!(document = %document_id, %error, "could not remove a deleted document's chunks");
                }
            }
            Outcome::Done => dirty = true,
            Outcome::Failed(reason) => {
                tracing::warn!(document = %document_id, reason, "ingestion failed");
                let _ = inner.store.update_document(document_id, |d| {
                    d.status = DocumentStatus::Failed;
                    d.error = Some(reason);
                });
            }
        }
        if let Err(error) = inner.store.finish_job(job) {
            tracing::error!(%error, "cannot remove a finished ingestion job");
        }
    }
}

/// Queues the documents indexed with another embedding model than the configured one.
fn requeue_other_models(service: &DocumentService) {
    let inner = &service.inner;
    let Some(target) = inner.registry.default_embed_model() else {
        return;
    };
    let Ok(documents) = inner.store.every_document() else {
        return;
    };
    let queued: Vec<Uuid> = inner
        .store
        .queued_documents()
        .map(|jobs| jobs.into_iter().map(|(_, d)| d).collect())
        .unwrap_or_default();
    let mut count = 0;
    for document in documents {
        let stale = document.status == DocumentStatus::Indexed
            && document.embedding_model.as_deref().is_some_and(|m| m != target);
        if stale && !queued.contains(&document.id) && inner.store.enqueue_document(document.id).is_ok() {
            count += 1;
        }
    }
    if count > 0 {
        tracing::info!(
            documents = count,
            model = target,
            "re-embedding documents with the configured model"
        );
    }
}

/// The embedding model documents are indexed with, once it is loaded.
fn embedder(service: &DocumentService) -> Result<Option<Embedder>, String> {
    let registry = &service.inner.registry;
    let Some(id) = registry.default_embed_model() else {
        return Err("no embedding model is configured (models.toml: a model with role \"embed\")".into());
    };
    match registry.embedder(id) {
        Ok(embedder) => Ok(Some(embedder)),
        Err(RegistryError::Unavailable { reason, .. }) if reason.contains("loading") => Ok(None),
        Err(error) => Err(format!("the embedding model {id} cannot be used: {error}")),
    }
}

/// Takes one document to its end.
async fn ingest(service: &DocumentService, id: Uuid, cancel: &CancellationToken) -> Outcome {
    let inner = &service.inner;
    let Ok(record) = inner.store.document_by_id(id) else {
        return Outcome::Cancelled;
    };
    let embedder = match embedder(service) {
        Ok(Some(embedder)) => embedder,
        Ok(None) => return Outcome::Waiting,
        Err(reason) => return Outcome::Failed(reason),
    };
    let model = embedder.info().id.clone();
    // A re-embedding: the text is stored already.
    let reembed = record.status == DocumentStatus::Indexed && record.embedding_model.as_deref() != Some(model.as_str());
    let (sections, extracted) = if reembed {
        match inner.store.sections(id) {
            Ok(sections) => {
                let extracted = from_stored(&sections);
                (sections, extracted)
            }
            Err(error) => return Outcome::Failed(format!("the stored text could not be read: {error}")),
        }
    } else {
        match extract_stage(service, &record, cancel).await {
            Ok(both) => both,
            Err(outcome) => return outcome,
        }
    };
    match embed_stage(service, &record, &sections, extracted, &embedder, reembed, cancel).await {
        Ok(()) => {}
        Err(outcome) => return outcome,
    }
    // A re-embedded document's old vectors go once its new ones are in place.
    if reembed {
        if let Some((old, dimension)) = old_model(service, &record).await {
            let _ = inner.chunks.delete_document_in(&old, dimension, id).await;
        }
    }
    tracing::info!(document = %id, model, "document indexed");
    Outcome::Done
}

/// The model (and its vector length) a document was indexed with before: from the model if
/// it is loaded, else from its table (a model removed from the catalogue).
async fn old_model(service: &DocumentService, record: &DocumentRecord) -> Option<(String, usize)> {
    let old = record.embedding_model.clone()?;
    let dimension = match service.inner.registry.embedder(&old) {
        Ok(embedder) => embedder.info().dimension,
        Err(_) => service.inner.chunks.dimension_of(&old).await.ok()??,
    };
    Some((old, dimension))
}

/// Extracts the document's text (isolated) and stores its sections.
async fn extract_stage(
    service: &DocumentService,
    record: &DocumentRecord,
    cancel: &CancellationToken,
) -> Result<(Vec<SectionRecord>, Extracted), Outcome> {
    let inner = &service.inner;
    let id = record.id;
    update(service, id, |d| {
        d.status = DocumentStatus::Extracting;
        d.error = None;
        d.attempts += 1;
        d.progress = DocumentProgress::default();
    })?;
    let path = service.file_path(id);
    let extracted: Result<Extracted, ExtractError> = tokio::select! {
        result = extract_file(&path, record.kind, &inner.settings.isolation) => result,
        _ = cancel.cancelled() => return Err(Outcome::Cancelled),
    };
    let extracted = extracted.map_err(|e| Outcome::Failed(e.to_string()))?;
    let sections: Vec<SectionRecord> = extracted
        .sections
        .iter()
        .map(|s| SectionRecord {
            page: s.page,
            member: s.member.clone(),
            text: s.markdown(),
            has_text: s.has_text,
            ocr: s.ocr,
        })
        .collect();
    inner
        .store
        .put_sections(id, &sections)
        .map_err(|e| Outcome::Failed(format!("the text could not be stored: {e}")))?;
    let pages = extracted
        .sections
        .iter()
        .all(|s| s.member.is_none() && s.page.is_some())
        .then_some(extracted.sections.len() as u32)
        .filter(|&n| n > 0);
    let without_text: Vec<u32> = extracted
        .sections
        .iter()
        .filter(|s| !s.has_text)
        .filter_map(|s| s.page)
        .collect();
    let count = sections.len() as u32;
    update(service, id, |d| {
        d.pages = pages;
        d.pages_without_text = without_text;
        d.sections = count;
        d.progress.pages_done = count;
        d.progress.pages_total = count;
        d.progress.fraction = 0.1;
    })?;
    Ok((sections, extracted))
}

/// Chunks, embeds and indexes the document's sections.
async fn embed_stage(
    service: &DocumentService,
    record: &DocumentRecord,
    sections: &[SectionRecord],
    extracted: Extracted,
    embedder: &Embedder,
    reembed: bool,
    cancel: &CancellationToken,
) -> Result<(), Outcome> {
    let inner = &service.inner;
    let id = record.id;
    let info = embedder.info().clone();
    let capacity = inner
        .settings
        .chunk_tokens
        .unwrap_or(usize::MAX)
        .min(embedder.document_capacity());
    let size = ChunkSize::new(capacity, inner.settings.chunk_overlap);
    let tokenizer = embedder.tokenizer().clone();
    let planned: Vec<Passage> = tokio::task::spawn_blocking(move || passages(&extracted, &tokenizer, size))
        .await
        .map_err(|_| Outcome::Failed("chunking failed".into()))?;
    if planned.is_empty() {
        return Err(Outcome::Failed("no text found".into()));
    }
    let total = planned.len() as u32;
    let text_tokens: usize = sections
        .iter()
        .map(|s| {
            embedder
                .tokenizer()
                .encode_fast(s.text.as_str(), false)
                .map_or(0, |e| e.len())
        })
        .sum();
    update(service, id, |d| {
        d.status = DocumentStatus::Embedding;
        d.progress.chunks_done = 0;
        d.progress.chunks_total = total;
        d.progress.fraction = 0.1;
        d.text_tokens = text_tokens as u32;
    })?;
    // An earlier attempt may have indexed part of it: start clean.
    inner
        .chunks
        .delete_document_in(&info.id, info.dimension, id)
        .await
        .map_err(|e| Outcome::Failed(e.to_string()))?;
    let mut done = 0u32;
    for batch in planned.chunks(EMBED_BATCH) {
        if cancel.is_cancelled() {
            return Err(Outcome::Cancelled);
        }
        let texts: Vec<String> = batch.iter().map(|p| p.text.clone()).collect();
        let vectors = tokio::select! {
            result = embedder.embed(&texts, EmbedPurpose::Document, Priority::Background, None) => {
                result.map_err(|e| Outcome::Failed(format!("embedding failed: {e}")))?
            }
            _ = cancel.cancelled() => return Err(Outcome::Cancelled),
        };
        let rows: Vec<ChunkRow> = batch
            .iter()
            .zip(vectors)
            .enumerate()
            .map(|(i, (passage, vector))| ChunkRow {
                chunk_id: crate::store::new_id(),
                document_id: id,
                owner: record.owner_id,
                kind: record.kind.as_str().to_owned(),
                uploaded_at: record.created_at,
                page: passage.page,
                page_end: passage.page,
                member: passage.member.clone(),
                section: passage.section,
                heading_path: passage.heading_path.clone(),
                chunk_index: done + i as u32,
                text: passage.text.clone(),
                vector,
            })
            .collect();
        inner
            .chunks
            .add(&info.id, info.dimension, &rows)
            .await
            .map_err(|e| Outcome::Failed(e.to_string()))?;
        done += batch.len() as u32;
        update(service, id, |d| {
            d.progress.chunks_done = done;
            d.progress.fraction = 0.1 + 0.9 * done as f32 / total as f32;
        })?;
    }
    let model = info.id.clone();
    update(service, id, |d| {
        d.status = DocumentStatus::Indexed;
        d.chunks = total;
        d.progress.fraction = 1.0;
        if !reembed || d.embedding_model.is_none() {
            d.error = None;
        }
        d.embedding_model = Some(model);
    })?;
    Ok(())
}

/// A document's structure again from its stored sections (re-embedding without re-reading
/// the original).
fn from_stored(sections: &[SectionRecord]) -> Extracted {
    Extracted {
        sections: sections
            .iter()
            .map(|s| super::extract::Section {
                page: s.page,
                member: s.member.clone(),
                blocks: super::extract::markdown_blocks(&s.text),
                has_text: s.has_text,
                ocr: s.ocr,
            })
            .collect(),
    }
}

/// Changes a document's record; a document deleted meanwhile cancels the job.
fn update(service: &DocumentService, id: Uuid, edit: impl FnOnce(&mut DocumentRecord)) -> Result<(), Outcome> {
    match service.inner.store.update_document(id, edit) {
        Ok(_) => Ok(()),
        Err(crate::store::StoreError::NotFound) => Err(Outcome::Cancelled),
        Err(error) => Err(Outcome::Failed(format!("the record could not be saved: {error}"))),
    }
}

/// Folds new chunks into the indexes once the queue is empty.
async fn optimize_indexes(service: &DocumentService) {
    let registry = &service.inner.registry;
    let Some(id) = registry.default_embed_model() else {
        return;
    };
    let Ok(embedder) = registry.embedder(id) else { return };
    if let Err(error) = service.inner.chunks.optimize(id, embedder.info().dimension).await {
        tracing::warn!(%error, "could not optimize the document index");
    }
}

impl From<DocumentError> for Outcome {
    fn from(e: DocumentError) -> Self {
        Outcome::Failed(e.to_string())
    }
}
