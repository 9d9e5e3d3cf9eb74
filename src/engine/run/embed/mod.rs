//! Embedding models at run time: [`Embedder`] is the cheap, cloneable handle on a loaded
//! encoder whose own thread ([`batcher`]) batches every caller's texts under a token budget,
//! the way text-embeddings-inference's queue does: texts are tokenized by the caller, queued,
//! and taken in order into a batch until the padded batch would exceed the budget. Query
//! embeddings (someone is waiting) go before document embeddings (ingestion), and document
//! batches take the compute only when chat lets them ([`crate::engine::run::priority`]).

mod batcher;
pub(crate) mod bert;
pub(crate) mod cross;
mod encoder;
mod rerank;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;

use candle_core::Device;
use tokenizers::Tokenizer;

use crate::engine::error::EngineError;
use crate::engine::run::priority::Priority;
use batcher::Entry;
pub use encoder::Encoder;
pub use rerank::Reranker;

/// What a text is embedded for (models such as nomic put a different prefix before each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmbedPurpose {
    /// A passage to be found later (document chunks).
    Document,
    /// A search query.
    Query,
    /// As given, no prefix (the OpenAI-compatible endpoint).
    Plain,
}

/// How a loaded embedding model is served.
pub struct EmbedderSettings {
    /// The model's id.
    pub id: String,
    /// Its tokenizer (no truncation, no padding).
    pub tokenizer: Tokenizer,
    /// The most tokens one text may have, special tokens included.
    pub window: usize,
    /// Length of the vectors.
    pub dimension: usize,
    /// Put before documents.
    pub document_prefix: String,
    /// Put before queries.
    pub query_prefix: String,
    /// Whether shorter vectors (a prefix of the full one, renormalized) are meaningful.
    pub matryoshka: bool,
    /// The most tokens (padding included) one batch may hold.
    pub batch_tokens: usize,
    /// Texts waiting before `OVERLOADED`.
    pub queue_capacity: usize,
    /// Where the encoder runs.
    pub device: Device,
}

/// What a loaded embedding model is.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EmbedderInfo {
    /// The model's id.
    pub id: String,
    /// The most tokens one text may have, special tokens included.
    pub window: usize,
    /// Length of the vectors.
    pub dimension: usize,
    /// Whether `dimensions` below the full length are accepted.
    pub matryoshka: bool,
}

/// A handle on a loaded embedding model; cheap to clone. The batching thread ends when the
/// last handle is dropped.
#[derive(Clone)]
pub struct Embedder {
    /// Shared by every clone.
    inner: Arc<Inner>,
}

/// The state behind an [`Embedder`].
struct Inner {
    /// What the model is.
    info: EmbedderInfo,
    /// Its tokenizer.
    tokenizer: Tokenizer,
    /// Put before documents.
    document_prefix: String,
    /// Put before queries.
    query_prefix: String,
    /// The way into the batching thread.
    sender: Sender<Entry>,
    /// Texts queued and not yet taken into a batch.
    waiting: Arc<AtomicUsize>,
    /// The most texts that may wait.
    capacity: usize,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("info", &self.inner.info)
            .finish_non_exhaustive()
    }
}

impl Embedder {
    /// Starts the batching thread of `encoder`.
    pub(crate) fn start(encoder: Encoder, settings: EmbedderSettings) -> Result<Self, EngineError> {
        let waiting = Arc::new(AtomicUsize::new(0));
        let sender = batcher::spawn(encoder, &settings, waiting.clone())?;
        Ok(Self {
            inner: Arc::new(Inner {
                info: EmbedderInfo {
                    id: settings.id,
                    window: settings.window,
                    dimension: settings.dimension,
                    matryoshka: settings.matryoshka,
                },
                tokenizer: settings.tokenizer,
                document_prefix: settings.document_prefix,
                query_prefix: settings.query_prefix,
                sender,
                waiting,
                capacity: settings.queue_capacity,
            }),
        })
    }

    /// What the model is.
    pub fn info(&self) -> &EmbedderInfo {
        &self.inner.info
    }

    /// The model's tokenizer (for chunking by its tokens).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.inner.tokenizer
    }

    /// Tokens of `text` (no prefix, no special tokens).
    pub fn count_tokens(&self, text: &str) -> usize {
        self.inner
            .tokenizer
            .encode_fast(text, false)
            .map_or_else(|_| crate::generation::estimate_tokens(text), |e| e.len())
    }

    /// The most tokens of text one document chunk may have: the window less the special
    /// tokens and the document prefix.
    pub fn document_capacity(&self) -> usize {
        let overhead = self
            .tokens(&self.inner.document_prefix, EmbedPurpose::Plain)
            .map_or(2, |ids| ids.len());
        self.inner.info.window.saturating_sub(overhead).max(1)
    }

    /// Tokens of `text` with its purpose's prefix and the special tokens.
    fn tokens(&self, text: &str, purpose: EmbedPurpose) -> Result<Vec<u32>, EngineError> {
        let prefix = match purpose {
            EmbedPurpose::Document => self.inner.document_prefix.as_str(),
            EmbedPurpose::Query => self.inner.query_prefix.as_str(),
            EmbedPurpose::Plain => "",
        };
        let input = format!("{prefix}{text}");
        let encoding = self
            .inner
            .tokenizer
            .encode(input.as_str(), true)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Embeds `texts`: one unit vector per text, in order, of `dimensions` (the model's full
    /// length when `None`; shorter only for Matryoshka models). Fails at once when a text is
    /// longer than the window, `dimensions` is out of range, or the queue is full.
    pub async fn embed(
        &self,
        texts: &[String],
        purpose: EmbedPurpose,
        priority: Priority,
        dimensions: Option<usize>,
    ) -> Result<Vec<Vec<f32>>, EngineError> {
        let info = &self.inner.info;
        let dimensions = match dimensions {
            None => info.dimension,
            Some(d) if d == 0 || d > info.dimension => {
                return Err(EngineError::InvalidRequest(format!(
                    "dimensions must be between 1 and {} for {}",
                    info.dimension, info.id
                )))
            }
            Some(d) if d < info.dimension && !info.matryoshka => {
                return Err(EngineError::InvalidRequest(format!(
                    "{} does not support shortened vectors (dimensions)",
                    info.id
                )))
            }
            Some(d) => d,
        };
        let mut ids = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            let tokens = self.tokens(text, purpose)?;
            if tokens.len() > info.window {
                return Err(EngineError::InvalidRequest(format!(
                    "input {i} has {} tokens; {} takes at most {}",
                    tokens.len(),
                    info.id,
                    info.window
                )));
            }
            ids.push((tokens, Vec::new()));
        }
        let vectors = self.submit(ids, priority).await?;
        Ok(vectors.into_iter().map(|v| shorten(v, dimensions)).collect())
    }

    /// Queues `sequences` (token ids with their types, checked by the caller) and waits for
    /// the encoder's output of each, in order. Fails at once when the queue is full.
    async fn submit(
        &self,
        sequences: Vec<(Vec<u32>, Vec<u32>)>,
        priority: Priority,
    ) -> Result<Vec<Vec<f32>>, EngineError> {
        let ids = sequences;
        let queued = self.inner.waiting.fetch_add(ids.len(), Ordering::AcqRel);
        if queued + ids.len() > self.inner.capacity {
            self.inner.waiting.fetch_sub(ids.len(), Ordering::AcqRel);
            return Err(EngineError::Overloaded);
        }
        let mut replies = Vec::with_capacity(ids.len());
        for (tokens, types) in ids {
            let (reply, answer) = tokio::sync::oneshot::channel();
            let entry = Entry {
                tokens,
                types,
                priority,
                reply,
            };
            if self.inner.sender.send(entry).is_err() {
                return Err(EngineError::Stopped);
            }
            replies.push(answer);
        }
        let mut outputs = Vec::with_capacity(replies.len());
        for answer in replies {
            outputs.push(answer.await.map_err(|_| EngineError::Stopped)??);
        }
        Ok(outputs)
    }
}

/// The first `dimensions` components of a unit vector, renormalized.
fn shorten(mut vector: Vec<f32>, dimensions: usize) -> Vec<f32> {
    if dimensions >= vector.len() {
        return vector;
    }
    vector.truncate(dimensions);
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|x| *x /= norm);
    }
    vector
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortened_vectors_are_unit_length_prefixes() {
        let v = vec![0.6, 0.0, 0.8];
        assert_eq!(shorten(v.clone(), 3), v);
        let short = shorten(v, 2);
        assert_eq!(short, vec![1.0, 0.0]);
    }
}
