//! One forward of an embedding model over a batch of texts, pooled to one unit vector per
//! text: Enclave's packed BERT forward, or candle-transformers' models over a padded batch.

use candle_core::{Device, Tensor};
use candle_transformers::models::{bert, nomic_bert};

use crate::engine::error::EngineError;

/// The encoders the embedder runs; each pools by the mean and normalises to unit length.
pub enum Encoder {
    /// BERT family (all-MiniLM, bge, e5) on Enclave's packed forward.
    Packed(Box<super::bert::BertEncoder>),
    /// BERT variants the packed forward does not cover, on candle-transformers.
    Bert(Box<bert::BertModel>),
    /// nomic-embed, on candle-transformers.
    Nomic(Box<nomic_bert::NomicBertModel>),
}

impl Encoder {
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
        };
        let pooled = nomic_bert::mean_pooling(&hidden, &mask)?;
        let normalized = nomic_bert::l2_normalize(&pooled)?;
        Ok(normalized.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?)
    }
}
