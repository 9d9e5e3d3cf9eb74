//! One forward of an encoder over a batch: an embedding model's texts pooled to one unit
//! vector each, or a cross-encoder's query-passage pairs to one relevance logit each; on
//! Enclave's packed BERT forward, or candle-transformers' models over a padded batch.

use candle_core::{Device, Tensor};
use candle_transformers::models::{bert, nomic_bert};

use crate::engine::error::EngineError;

/// The encoders the batching thread runs: embedding models pool by the mean and normalise to
/// unit length; cross-encoders give one logit per pair.
pub enum Encoder {
    /// BERT family (all-MiniLM, bge, e5, and BERT cross-encoders) on Enclave's packed forward.
    Packed(Box<super::bert::BertEncoder>),
    /// Cross-encoders on candle-transformers.
    Cross(Box<super::cross::CandleCrossEncoder>),
    /// BERT variants the packed forward does not cover, on candle-transformers.
    Bert(Box<bert::BertModel>),
    /// nomic-embed, on candle-transformers.
    Nomic(Box<nomic_bert::NomicBertModel>),
}

impl Encoder {
    /// The batch's outputs, one per sequence: a unit vector for embedding models, `[logit]`
    /// for cross-encoders (whose sequences come with their token `types`).
    pub fn run(&self, texts: &[Vec<u32>], types: &[Vec<u32>], device: &Device) -> Result<Vec<Vec<f32>>, EngineError> {
        let logits = match self {
            Encoder::Packed(encoder) if encoder.is_cross_encoder() => encoder.score(texts, types)?,
            Encoder::Cross(encoder) => encoder.score(texts, types, device)?,
            _ => return self.embed(texts, device),
        };
        Ok(logits.into_iter().map(|l| vec![l]).collect())
    }

    /// Embeds `texts` (token ids with their special tokens), padded to the longest: one unit
    /// vector per text, in order.
    pub fn embed(&self, texts: &[Vec<u32>], device: &Device) -> Result<Vec<Vec<f32>>, EngineError> {
        if let Encoder::Packed(encoder) = self {
            return encoder.embed(texts);
        }
        let longest = texts.iter().map(Vec::len).max().unwrap_or(0);
        if texts.is_empty() || longest == 0 {
            return Ok(vec![Vec::new(); texts.len()]);
        }
        let mut ids = Vec::with_capacity(texts.len() * longest);
        let mut mask = Vec::with_capacity(texts.len() * longest);
        for text in texts {
            ids.extend_from_slice(text);
            ids.extend(std::iter::repeat_n(0u32, longest - text.len()));
            mask.extend(std::iter::repeat_n(1u32, text.len()));
            mask.extend(std::iter::repeat_n(0u32, longest - text.len()));
        }
        let shape = (texts.len(), longest);
        let ids = Tensor::from_vec(ids, shape, device)?;
        let mask = Tensor::from_vec(mask, shape, device)?;
        let hidden = match self {
            Encoder::Bert(model) => model.forward(&ids, &ids.zeros_like()?, Some(&mask))?,
            Encoder::Nomic(model) => model.forward(&ids, None, Some(&mask))?,
            Encoder::Packed(_) => unreachable!("answered above"),
            Encoder::Cross(_) => {
                return Err(EngineError::InvalidRequest(
                    "a cross-encoder scores pairs; it does not embed texts".into(),
                ))
            }
        };
        let pooled = nomic_bert::mean_pooling(&hidden, &mask)?;
        let normalized = nomic_bert::l2_normalize(&pooled)?;
        Ok(normalized.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?)
    }
}
