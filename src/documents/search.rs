//! Hybrid search over a user's documents: the query's vector nearest chunks (cosine) and its
//! best BM25 chunks, fused by weighted reciprocal rank (k = 60, as LanceDB and most hybrid
//! engines do; the BM25 list weighing [`TEXT_WEIGHT`] times the vector list),
//! always filtered by owner and optionally by documents, kinds and upload dates. Documents
//! embedded with different models (during a model change) are searched in each model's table
//! and fused the same way. Documents whose model is not loaded (removed from the catalogue, or
//! failing to load) are still found by their words in hybrid search; vector search refuses.
//!
//! Relevance is reported in 0..1 whatever the ranking's raw scores: the fused score over the
//! best a chunk could get (first in both lists). A chunk whose vector similarity is below
//! [`MIN_SIMILARITY`] and that has no BM25 match is not relevant, and is dropped.
//!
//! When the catalogue has a rerank model (a cross-encoder), hybrid search reranks the fused
//! top [`RERANK_DEPTH`] (or the hits asked for, if more) by the cross-encoder's relevance,
//! which is then the relevance reported: a cross-encoder reads query and passage together,
//! where the fusion only knows two ranks. A request may ask for it in other modes
//! (`rerank: true`) or skip it (`rerank: false`). Reranking by default that fails (the model
//! loading, its queue full, a query longer than its window) keeps the fused order, logged
//! and visible in the answer (`reranked_by` absent); asked for explicitly, it is an error.

use std::collections::HashMap;

use enclave_protocol::{DocumentKind, DocumentStatus, SearchMode};
use uuid::Uuid;

use super::{DocumentError, DocumentService};
use crate::engine::{EmbedPurpose, Priority};
use crate::store::{ChunkFilter, ChunkHit, ChunkRow, DocumentRecord};

/// The RRF constant.
const RRF_K: f32 = 60.0;
/// How much a BM25 rank weighs against the same vector rank. Measured on the 60 labelled
/// questions over the DocBook manual (`cargo bench --bench documents`, docs/BENCHMARKS.md):
/// equal weights leave hybrid recall@5 at BM25's (0.967: a passage BM25 ranks first and the
/// vectors 17th loses to passages both rank middling); BM25 weighing 1.3 to 2.5 times the
/// vectors gives 0.983, above both lists, and a better recall@1; 3 and more lose what only the
/// vectors find. 2 sits in the middle of that range.
pub const TEXT_WEIGHT: f32 = 2.0;
/// Below this cosine similarity a chunk without a word match is not relevant.
pub const MIN_SIMILARITY: f32 = 0.2;
/// Candidates taken from each list per hit asked for.
const CANDIDATES_PER_HIT: usize = 4;
/// Fused hits the cross-encoder reads (at least): deep enough to lift an answer the fusion
/// ranked low, shallow enough to cost a fraction of a second on a CPU.
pub const RERANK_DEPTH: usize = 20;

/// What to search.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    /// The words.
    pub text: String,
    /// Only these documents (each must be the caller's).
    pub document_ids: Option<Vec<Uuid>>,
    /// Only these kinds.
    pub kinds: Option<Vec<DocumentKind>>,
    /// Uploaded at or after (ms).
    pub uploaded_after: Option<i64>,
    /// Uploaded before (ms).
    pub uploaded_before: Option<i64>,
    /// Hits wanted.
    pub limit: usize,
    /// Ranking.
    pub mode: SearchMode,
    /// Rerank with the catalogue's cross-encoder: `None` for the default (hybrid search
    /// reranks when there is one), `Some(false)` never, `Some(true)` always (an error
    /// without one).
    pub rerank: Option<bool>,
}

/// What a search found.
#[derive(Debug, Clone, Default)]
pub struct SearchResults {
    /// Most relevant first.
    pub hits: Vec<Found>,
    /// The cross-encoder that ordered them, when one did.
    pub reranked_by: Option<String>,
}

/// A chunk found.
#[derive(Debug, Clone)]
pub struct Found {
    /// The chunk.
    pub chunk: ChunkRow,
    /// Its document's display name.
    pub source: String,
    /// 0..1, most relevant highest.
    pub relevance: f32,
}

impl DocumentService {
    /// The documents of `owner` a query may see: the named ones (each must exist and be the
    /// caller's), or all of them; only those indexed.
    pub(super) fn scope(&self, owner: Uuid, ids: Option<&[Uuid]>) -> Result<Vec<DocumentRecord>, DocumentError> {
        let documents = match ids {
            Some(ids) => ids
                .iter()
                .map(|id| self.get(owner, *id))
                .collect::<Result<Vec<_>, _>>()?,
            None => self.inner.store.all_documents(owner)?,
        };
        Ok(documents
            .into_iter()
            .filter(|d| d.status == DocumentStatus::Indexed || d.embedding_model.is_some())
            .collect())
    }

    /// The chunks of `owner`'s documents that best answer `query`, most relevant first.
    pub async fn search(&self, owner: Uuid, query: SearchQuery) -> Result<SearchResults, DocumentError> {
        if query.text.trim().is_empty() {
            return Err(DocumentError::Invalid("query must not be empty".into()));
        }
        let reranker = self.reranker_for(&query)?;
        let documents = self.scope(owner, query.document_ids.as_deref())?;
        let documents: Vec<DocumentRecord> = documents
            .into_iter()
            .filter(|d| query.kinds.as_ref().is_none_or(|k| k.contains(&d.kind)))
            .collect();
        if documents.is_empty() {
            return Ok(SearchResults::default());
        }
        // Documents by the model their vectors come from.
        let mut by_model: HashMap<String, Vec<Uuid>> = HashMap::new();
        for document in &documents {
            if let Some(model) = &document.embedding_model {
                by_model.entry(model.clone()).or_default().push(document.id);
            }
        }
        let several = by_model.len() > 1;
        let candidates = query.limit.max(1) * CANDIDATES_PER_HIT;
        let mut vector_lists = Vec::new();
        let mut text_lists = Vec::new();
        for (model, ids) in &by_model {
            // A model no longer loaded (removed from the catalogue, or failing to load) leaves
            // its documents' words searchable: hybrid search goes on with BM25 alone for them
            // (until they are re-embedded); vector search cannot.
            let (embedder, dimension) = match self.inner.registry.embedder(model) {
                Ok(embedder) => {
                    let dimension = embedder.info().dimension;
                    (Some(embedder), dimension)
                }
                Err(error) if query.mode == SearchMode::Vector => {
                    return Err(DocumentError::EmbeddingUnavailable(error.to_string()))
                }
                Err(error) => match self.inner.chunks.dimension_of(model).await? {
                    Some(dimension) => {
                        tracing::warn!(model, %error, "embedding model unavailable: its documents are searched by words only");
                        (None, dimension)
                    }
                    None => continue,
                },
            };
            let filter = ChunkFilter {
                owner,
                // Named documents, or a model's own share while models are mixed.
                document_ids: (query.document_ids.is_some() || several || query.kinds.is_some()).then(|| ids.clone()),
                kinds: None,
                uploaded_after: query.uploaded_after,
                uploaded_before: query.uploaded_before,
            };
            // The query's embedding and vector search run while BM25 searches.
            let by_vector = async {
                let Some(embedder) = embedder.as_ref().filter(|_| query.mode != SearchMode::Text) else {
                    return Ok(None);
                };
                let vector = embedder
                    .embed(
                        std::slice::from_ref(&query.text),
                        EmbedPurpose::Query,
                        Priority::Interactive,
                        None,
                    )
                    .await
                    .map_err(|e| DocumentError::EmbeddingUnavailable(e.to_string()))?
                    .pop()
                    .unwrap_or_default();
                Ok::<_, DocumentError>(Some(
                    self.inner
                        .chunks
                        .vector_search(model, &vector, &filter, candidates)
                        .await?,
                ))
            };
            let by_text = async {
                if query.mode == SearchMode::Vector {
                    return Ok(None);
                }
                Ok::<_, DocumentError>(Some(
                    self.inner
                        .chunks
                        .text_search(model, dimension, &query.text, &filter, candidates)
                        .await?,
                ))
            };
            let (by_vector, by_text) = tokio::join!(by_vector, by_text);
            vector_lists.extend(by_vector?);
            text_lists.extend(by_text?);
        }
        let names: HashMap<Uuid, String> = documents.iter().map(|d| (d.id, d.filename.clone())).collect();
        let mut ranked = match query.mode {
            SearchMode::Hybrid => fuse(&merge(vector_lists), &merge(text_lists)),
            SearchMode::Vector => by_score(merge(vector_lists), |h| h.score.clamp(0.0, 1.0), true),
            SearchMode::Text => {
                let merged = merge(text_lists);
                let best = merged.first().map_or(1.0, |h| h.score.max(f32::EPSILON));
                by_score(merged, |h| (h.score / best).clamp(0.0, 1.0), false)
            }
        };
        let mut reranked_by = None;
        if let Some((id, explicit)) = reranker {
            match self.rerank(&id, &query.text, &mut ranked, query.limit.max(1)).await {
                Ok(()) => reranked_by = Some(id),
                Err(error) if explicit => return Err(error),
                Err(error) => {
                    metrics::counter!("enclave_rerank_skipped_total").increment(1);
                    tracing::warn!(model = %id, %error, "reranking skipped: the fused order stands");
                }
            }
        }
        Ok(SearchResults {
            hits: ranked
                .into_iter()
                .take(query.limit.max(1))
                .map(|(row, relevance)| Found {
                    source: names.get(&row.document_id).cloned().unwrap_or_default(),
                    chunk: row,
                    relevance,
                })
                .collect(),
            reranked_by,
        })
    }

    /// The cross-encoder this query is reranked with, and whether the request asked for it.
    fn reranker_for(&self, query: &SearchQuery) -> Result<Option<(String, bool)>, DocumentError> {
        let configured = self.inner.registry.default_rerank_model();
        Ok(match (query.rerank, configured) {
            (Some(false), _) => None,
            (Some(true), Some(id)) => Some((id.to_owned(), true)),
            (Some(true), None) => {
                return Err(DocumentError::Invalid(
                    "rerank: no rerank model is configured (a model with role = \"rerank\" in models.toml)".into(),
                ))
            }
            (None, Some(id)) if query.mode == SearchMode::Hybrid => Some((id.to_owned(), false)),
            (None, _) => None,
        })
    }

    /// Reorders the first [`RERANK_DEPTH`] (or `wanted`, if more) of `ranked` by the
    /// cross-encoder `id`'s relevance, which becomes their relevance. What lies deeper keeps its
    /// order after them (it is cut by the limit anyway).
    async fn rerank(
        &self,
        id: &str,
        query: &str,
        ranked: &mut Vec<(ChunkRow, f32)>,
        wanted: usize,
    ) -> Result<(), DocumentError> {
        let reranker = self
            .inner
            .registry
            .reranker(id)
            .map_err(|e| DocumentError::RerankUnavailable(e.to_string()))?;
        let depth = RERANK_DEPTH.max(wanted).min(ranked.len());
        let passages: Vec<String> = ranked[..depth].iter().map(|(row, _)| row.text.clone()).collect();
        let started = std::time::Instant::now();
        let scores = reranker
            .score(query, &passages, Priority::Interactive)
            .await
            .map_err(|e| DocumentError::RerankUnavailable(format!("reranking failed: {e}")))?;
        metrics::histogram!("enclave_rerank_seconds").record(started.elapsed().as_secs_f64());
        let mut head: Vec<(ChunkRow, f32)> = ranked
            .drain(..depth)
            .zip(scores)
            .map(|((row, _), score)| (row, score))
            .collect();
        // Ties keep the fused order (the sort is stable).
        head.sort_by(|a, b| b.1.total_cmp(&a.1));
        ranked.splice(0..0, head);
        Ok(())
    }
}

/// Several ranked lists (one per model) as one, best score first.
fn merge(lists: Vec<Vec<ChunkHit>>) -> Vec<ChunkHit> {
    let mut all: Vec<ChunkHit> = lists.into_iter().flatten().collect();
    all.sort_by(|a, b| b.score.total_cmp(&a.score));
    all
}

/// Hits ranked by their own score turned into relevance; vector hits below the similarity
/// floor dropped.
fn by_score(hits: Vec<ChunkHit>, relevance: impl Fn(&ChunkHit) -> f32, vector: bool) -> Vec<(ChunkRow, f32)> {
    hits.into_iter()
        .filter(|h| !vector || h.score >= MIN_SIMILARITY)
        .map(|h| {
            let r = relevance(&h);
            (h.row, r)
        })
        .collect()
}

/// Weighted reciprocal rank fusion of the vector and BM25 rankings, relevance in 0..1.
pub fn fuse(vector: &[ChunkHit], text: &[ChunkHit]) -> Vec<(ChunkRow, f32)> {
    let best = (1.0 + TEXT_WEIGHT) / (RRF_K + 1.0);
    let mut scores: HashMap<Uuid, (f32, Option<f32>, bool, ChunkRow)> = HashMap::new();
    for (rank, hit) in vector.iter().enumerate() {
        let entry = scores
            .entry(hit.row.chunk_id)
            .or_insert_with(|| (0.0, None, false, hit.row.clone()));
        entry.0 += 1.0 / (RRF_K + rank as f32 + 1.0);
        entry.1 = Some(hit.score);
    }
    for (rank, hit) in text.iter().enumerate() {
        let entry = scores
            .entry(hit.row.chunk_id)
            .or_insert_with(|| (0.0, None, false, hit.row.clone()));
        entry.0 += TEXT_WEIGHT / (RRF_K + rank as f32 + 1.0);
        entry.2 = true;
    }
    let mut fused: Vec<(ChunkRow, f32)> = scores
        .into_values()
        .filter(|(_, similarity, word_match, _)| *word_match || similarity.is_some_and(|s| s >= MIN_SIMILARITY))
        .map(|(score, _, _, row)| (row, (score / best).clamp(0.0, 1.0)))
        .collect();
    fused.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.chunk_index.cmp(&b.0.chunk_index)));
    fused
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(id: u128, score: f32) -> ChunkHit {
        ChunkHit {
            row: ChunkRow {
                chunk_id: Uuid::from_u128(id),
                document_id: Uuid::nil(),
                owner: Uuid::nil(),
                kind: "text".into(),
                uploaded_at: 0,
                page: None,
                page_end: None,
                member: None,
                section: 1,
                heading_path: Vec::new(),
                chunk_index: id as u32,
                text: String::new(),
                vector: Vec::new(),
            },
            score,
        }
    }

    #[test]
    fn a_chunk_high_in_both_lists_wins_a_word_match_weighs_more_and_relevance_stays_in_range() {
        let vector = [hit(1, 0.9), hit(2, 0.8), hit(3, 0.1)];
        let text = [hit(2, 12.0), hit(4, 3.0)];
        let fused = fuse(&vector, &text);
        let order: Vec<u128> = fused.iter().map(|(r, _)| r.chunk_id.as_u128()).collect();
        // 2 is in both; BM25's second (4) outweighs the vectors' first (1); 3 is below the
        // similarity floor without a word match.
        assert_eq!(order, [2, 4, 1]);
        assert!(fused.iter().all(|(_, r)| (0.0..=1.0).contains(r)));
        assert!(fused[0].1 > fused[1].1);
        // First in both lists is the best possible: relevance 1.
        let top = fuse(&[hit(7, 0.9)], &[hit(7, 5.0)]);
        assert!((top[0].1 - 1.0).abs() < 1e-6);
    }
}
