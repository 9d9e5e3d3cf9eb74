//! A tiny random-weight cross-encoder (BERT or XLM-RoBERTa sequence classification, one
//! relevance logit) written as a Hugging Face directory, for tests of reranking: no registry
//! ships a real cross-encoder in a form candle loads (`../shared/MODELS.md`). The tokenizer is
//! a real one given by the caller (all-MiniLM-L6-v2's WordPiece), so the vocabulary is its.
//!
//! The classifier's weights are large next to the encoder's, so that the logits of different
//! pairs spread over several units and their order is not decided by rounding. The same
//! writer makes random cross-encoders of real shapes ([`CrossShape::MINILM_L6`]) for benches:
//! speed does not depend on the weights.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::engine::error::EngineError;

/// The dimensions of a generated cross-encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrossShape {
    /// Hidden size.
    pub hidden: usize,
    /// Encoder layers.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Feed-forward width.
    pub intermediate: usize,
    /// Tokens one pair may have (the position table of the BERT one).
    pub window: usize,
}

impl CrossShape {
    /// A few kilobytes of encoder (the vocabulary's embeddings aside): for tests.
    pub const TINY: CrossShape = CrossShape {
        hidden: 32,
        layers: 2,
        heads: 4,
        intermediate: 64,
        window: 128,
    };
    /// cross-encoder/ms-marco-MiniLM-L-6-v2's shape: for benches.
    pub const MINILM_L6: CrossShape = CrossShape {
        hidden: 384,
        layers: 6,
        heads: 12,
        intermediate: 1536,
        window: 512,
    };
}

/// Which cross-encoder layout to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TinyCrossFamily {
    /// `BertForSequenceClassification` (ms-marco-MiniLM's layout).
    Bert,
    /// `XLMRobertaForSequenceClassification` (bge-reranker's layout).
    XlmRoberta,
}

/// Writes `config.json`, `model.safetensors` and `tokenizer.json` (a copy of `tokenizer`) of
/// a tiny cross-encoder into `dir`; the same `seed` writes the same weights.
pub fn write_tiny_cross_encoder(
    dir: &Path,
    tokenizer: &Path,
    family: TinyCrossFamily,
    shape: CrossShape,
    seed: u64,
) -> Result<(), EngineError> {
    std::fs::create_dir_all(dir)?;
    std::fs::copy(tokenizer, dir.join("tokenizer.json"))?;
    let vocab: usize = {
        let text = std::fs::read_to_string(tokenizer)?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| EngineError::InvalidModel(format!("tokenizer.json: {e}")))?;
        value["model"]["vocab"].as_object().map_or(0, |v| v.len())
    };
    if vocab == 0 {
        return Err(EngineError::InvalidModel("the tokenizer has no vocabulary".into()));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut put =
        |name: String, shape: &[usize], scale: f32, offset: f32, rng: &mut StdRng| -> Result<(), EngineError> {
            let count: usize = shape.iter().product();
            let values: Vec<f32> = (0..count)
                .map(|_| offset + scale * (rng.random::<f32>() * 2.0 - 1.0))
                .collect();
            tensors.insert(name, Tensor::from_vec(values, shape, &Device::Cpu)?);
            Ok(())
        };
    // Both pad with the WordPiece [PAD], id 0; XLM-RoBERTa's positions start after it.
    let (encoder, positions, types, architecture, model_type) = match family {
        TinyCrossFamily::Bert => ("bert", shape.window, 2, "BertForSequenceClassification", "bert"),
        TinyCrossFamily::XlmRoberta => (
            "roberta",
            shape.window + 2,
            1,
            "XLMRobertaForSequenceClassification",
            "xlm-roberta",
        ),
    };
    let h = shape.hidden;
    let at = |name: &str| format!("{encoder}.{name}");
    put(at("embeddings.word_embeddings.weight"), &[vocab, h], 0.5, 0.0, &mut rng)?;
    put(
        at("embeddings.position_embeddings.weight"),
        &[positions, h],
        0.5,
        0.0,
        &mut rng,
    )?;
    put(
        at("embeddings.token_type_embeddings.weight"),
        &[types, h],
        0.5,
        0.0,
        &mut rng,
    )?;
    put(at("embeddings.LayerNorm.weight"), &[h], 0.1, 1.0, &mut rng)?;
    put(at("embeddings.LayerNorm.bias"), &[h], 0.1, 0.0, &mut rng)?;
    for l in 0..shape.layers {
        let layer = |name: &str| at(&format!("encoder.layer.{l}.{name}"));
        for (name, out, inp) in [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", shape.intermediate, h),
            ("output.dense", h, shape.intermediate),
        ] {
            put(layer(&format!("{name}.weight")), &[out, inp], 0.3, 0.0, &mut rng)?;
            put(layer(&format!("{name}.bias")), &[out], 0.1, 0.0, &mut rng)?;
        }
        for norm in ["attention.output.LayerNorm", "output.LayerNorm"] {
            put(layer(&format!("{norm}.weight")), &[h], 0.1, 1.0, &mut rng)?;
            put(layer(&format!("{norm}.bias")), &[h], 0.1, 0.0, &mut rng)?;
        }
    }
    match family {
        TinyCrossFamily::Bert => {
            put(at("pooler.dense.weight"), &[h, h], 0.5, 0.0, &mut rng)?;
            put(at("pooler.dense.bias"), &[h], 0.1, 0.0, &mut rng)?;
            put("classifier.weight".into(), &[1, h], 1.0, 0.0, &mut rng)?;
            put("classifier.bias".into(), &[1], 0.1, 0.0, &mut rng)?;
        }
        TinyCrossFamily::XlmRoberta => {
            put("classifier.dense.weight".into(), &[h, h], 0.5, 0.0, &mut rng)?;
            put("classifier.dense.bias".into(), &[h], 0.1, 0.0, &mut rng)?;
            put("classifier.out_proj.weight".into(), &[1, h], 1.0, 0.0, &mut rng)?;
            put("classifier.out_proj.bias".into(), &[1], 0.1, 0.0, &mut rng)?;
        }
    }
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))?;
    let config = serde_json::json!({
        "architectures": [architecture],
        "model_type": model_type,
        "hidden_size": h,
        "num_hidden_layers": shape.layers,
        "num_attention_heads": shape.heads,
        "intermediate_size": shape.intermediate,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "max_position_embeddings": positions,
        "type_vocab_size": types,
        "vocab_size": vocab,
        "layer_norm_eps": 1e-12,
        "initializer_range": 0.02,
        "classifier_dropout": null,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "id2label": {"0": "LABEL_0"},
    });
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec_pretty(&config).map_err(|e| EngineError::InvalidModel(e.to_string()))?,
    )?;
    Ok(())
}
