//! Cross-encoders at run time: [`Reranker`] scores passages against a query. Each pair is read
//! as one sequence (the tokenizer's pair template: `[CLS] query [SEP] passage [SEP]` for BERT,
//! `<s> query </s></s> passage </s>` for XLM-RoBERTa), the passage cut to the model's window,
//! and goes through the same batching thread as embeddings (token budget, interactive first,
//! chat's turn respected). The logit becomes a relevance in 0..1 by the sigmoid, as
//! sentence-transformers' `CrossEncoder` reports single-logit models.

use super::{Embedder, EmbedderInfo, EmbedderSettings, Encoder};
use crate::engine::error::EngineError;
use crate::engine::run::priority::Priority;

/// A handle on a loaded cross-encoder; cheap to clone.
#[derive(Clone, Debug)]
pub struct Reranker {
    /// The batching machinery, shared with embedding models. Its tokenizer cuts the second
    /// text of a pair to the window.
    encoder: Embedder,
}

impl Reranker {
    /// Starts the batching thread of `encoder` (a cross-encoder).
    pub(crate) fn start(encoder: Encoder, settings: EmbedderSettings) -> Result<Self, EngineError> {
        Ok(Self {
            encoder: Embedder::start(encoder, settings)?,
        })
    }

    /// What the model is (`dimension` is 1: one score per pair).
    pub fn info(&self) -> &EmbedderInfo {
        self.encoder.info()
    }

    /// The relevance of each passage to `query`, in 0..1, in the passages' order. Fails at
    /// once when the query alone fills the window or the queue is full.
    pub async fn score(&self, query: &str, passages: &[String], priority: Priority) -> Result<Vec<f32>, EngineError> {
        let info = self.encoder.info();
        let mut sequences = Vec::with_capacity(passages.len());
        for passage in passages {
            let encoding = self
                .encoder
                .tokenizer()
                .encode((query, passage.as_str()), true)
                .map_err(|_| {
                    EngineError::InvalidRequest(format!(
                        "the query is too long for the reranker {} ({} tokens at most, passage included)",
                        info.id, info.window
                    ))
                })?;
            if encoding.get_ids().len() > info.window {
                return Err(EngineError::InvalidRequest(format!(
                    "a query and passage of {} tokens exceed the reranker {}'s window of {}",
                    encoding.get_ids().len(),
                    info.id,
                    info.window
                )));
            }
            sequences.push((encoding.get_ids().to_vec(), encoding.get_type_ids().to_vec()));
        }
        let logits = self.encoder.submit(sequences, priority).await?;
        Ok(logits
            .iter()
            .map(|l| sigmoid(l.first().copied().unwrap_or(f32::NEG_INFINITY)))
            .collect())
    }
}

/// The logistic function.
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sigmoid_maps_logits_into_0_1_keeping_their_order() {
        assert_eq!(sigmoid(0.0), 0.5);
        assert!(sigmoid(-30.0) >= 0.0 && sigmoid(30.0) <= 1.0);
        assert!(sigmoid(-1.0) < sigmoid(0.5));
        assert_eq!(sigmoid(f32::NEG_INFINITY), 0.0);
    }
}
