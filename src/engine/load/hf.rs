//! Hugging Face model directories: `config.json`, safetensors weights (`model.safetensors`, or
//! shards listed in `model.safetensors.index.json`), `tokenizer.json`, `tokenizer_config.json`
//! (chat template, BOS / EOS) and `generation_config.json` (more EOS ids).
//!
//! Weights keep their file dtype (f32, f16, bf16); on the CPU our kernels widen them to f32.
//! Tensor names are mapped to the GGUF names the batched forward asks for, and the rotary
//! layout is NEOX's (Hugging Face checkpoints are not permuted the way GGUF Llama files are).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device};
use serde::Deserialize;
use serde_json::Value;

use crate::engine::error::EngineError;
use crate::engine::model::Architecture;
use crate::engine::run::forward::{BatchModelConfig, WeightSource};
use crate::engine::run::vision::{ImageProcessing, MropeSection, VisionConfig, VisionTokens};

/// Whether `path` names a Hugging Face model: a directory with a `config.json`, or a
/// `.safetensors` / `.json` file inside one.
pub(crate) fn is_hf_model(path: &Path) -> bool {
    hf_dir(path).join("config.json").is_file()
}

/// The directory of a Hugging Face model named by `path`.
pub(crate) fn hf_dir(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.to_owned()
    } else {
        path.parent().map_or_else(|| PathBuf::from("."), Path::to_owned)
    }
}

/// The parts of `config.json` the engine reads.
#[derive(Debug, Deserialize)]
struct HfConfig {
    /// `llama`, `mistral`, `qwen2`, `qwen3`.
    model_type: String,
    /// Hidden size.
    hidden_size: usize,
    /// Transformer blocks.
    num_hidden_layers: usize,
    /// Query heads.
    num_attention_heads: usize,
    /// Key/value heads (all query heads when absent).
    num_key_value_heads: Option<usize>,
    /// Dimensions per head (hidden size / heads when absent).
    head_dim: Option<usize>,
    /// Epsilon of the RMS norms.
    rms_norm_eps: f64,
    /// Rotary base.
    rope_theta: Option<f64>,
    /// Positions the model was trained for.
    max_position_embeddings: Option<usize>,
    /// Whether the output head is the embedding matrix.
    #[serde(default)]
    tie_word_embeddings: bool,
    /// Rotary scaling (`llama3` is supported).
    rope_scaling: Option<Value>,
}

/// Reads `config.json` of `dir` into the batched forward's configuration (the vocabulary
/// size comes from the weights later). Also says whether the embeddings are tied. A
/// vision-language model (`qwen3_vl`) is read by its `text_config`.
pub(crate) fn read_config(dir: &Path) -> Result<(BatchModelConfig, bool), EngineError> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| EngineError::InvalidModel(format!("cannot read {}: {e}", path.display())))?;
    let not_config = |e: serde_json::Error| {
        EngineError::InvalidModel(format!("{} is not a model configuration: {e}", path.display()))
    };
    let value: Value = serde_json::from_str(&text).map_err(not_config)?;
    if value["model_type"] == "qwen3_vl" {
        return read_qwen3_vl_text(&value).map_err(|e| match e {
            EngineError::InvalidModel(m) => EngineError::InvalidModel(format!("{}: {m}", path.display())),
            other => other,
        });
    }
    let hf: HfConfig = serde_json::from_value(value).map_err(not_config)?;
    let architecture = match hf.model_type.as_str() {
        "llama" | "mistral" => Architecture::Llama,
        "qwen2" => Architecture::Qwen2,
        "qwen3" => Architecture::Qwen3,
        other => {
            return Err(EngineError::InvalidModel(format!(
                "unsupported model_type {other:?} (supported: llama, mistral, qwen2, qwen3, qwen3_vl)"
            )))
        }
    };
    let tied = hf.tie_word_embeddings;
    Ok((text_config(hf, architecture)?, tied))
}

/// The language model of a Qwen3-VL `config.json`: its `text_config` (rotary settings there
/// or under `rope_parameters`; `tie_word_embeddings` there or at the top).
fn read_qwen3_vl_text(value: &Value) -> Result<(BatchModelConfig, bool), EngineError> {
    let mut text = value["text_config"].clone();
    let Some(fields) = text.as_object_mut() else {
        return Err(EngineError::InvalidModel("qwen3_vl without a text_config".into()));
    };
    fields.insert("model_type".into(), "qwen3_vl".into());
    let rope = fields
        .get("rope_scaling")
        .filter(|v| !v.is_null())
        .or_else(|| fields.get("rope_parameters"))
        .cloned()
        .unwrap_or(Value::Null);
    if !fields.contains_key("rope_theta") {
        if let Some(theta) = rope.get("rope_theta") {
            fields.insert("rope_theta".into(), theta.clone());
        }
    }
    if !fields.contains_key("tie_word_embeddings") {
        let tied = value["tie_word_embeddings"].as_bool().unwrap_or(false);
        fields.insert("tie_word_embeddings".into(), tied.into());
    }
    let section: Option<Vec<usize>> = rope
        .get("mrope_section")
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    let Some(section) = section.and_then(|s| <[usize; 3]>::try_from(s).ok()) else {
        return Err(EngineError::InvalidModel(
            "text_config has no mrope_section of three numbers".into(),
        ));
    };
    if rope.get("mrope_interleaved").and_then(Value::as_bool) == Some(false) {
        return Err(EngineError::InvalidModel(
            "chunked multimodal rotary sections (mrope_interleaved false, Qwen2.5-VL) are not supported".into(),
        ));
    }
    fields.insert("rope_scaling".into(), Value::Null);
    let hf: HfConfig =
        serde_json::from_value(text).map_err(|e| EngineError::InvalidModel(format!("text_config: {e}")))?;
    let tied = hf.tie_word_embeddings;
    let mut config = text_config(hf, Architecture::Qwen3Vl)?;
    if section.iter().sum::<usize>() != config.head_dim / 2 {
        return Err(EngineError::InvalidModel(format!(
            "mrope_section {section:?} does not share the {} rotary frequencies",
            config.head_dim / 2
        )));
    }
    config.mrope = Some(MropeSection(section));
    Ok((config, tied))
}

/// The batched forward's configuration of a parsed language-model configuration.
fn text_config(hf: HfConfig, architecture: Architecture) -> Result<BatchModelConfig, EngineError> {
    let heads = hf.num_attention_heads;
    let kv_heads = hf.num_key_value_heads.unwrap_or(heads);
    if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        return Err(EngineError::InvalidModel(format!(
            "{heads} query heads cannot share {kv_heads} key/value heads"
        )));
    }
    let head_dim = hf.head_dim.unwrap_or(hf.hidden_size / heads);
    let mut config = BatchModelConfig {
        architecture,
        dim: hf.hidden_size,
        num_layers: hf.num_hidden_layers,
        num_heads: heads,
        num_kv_heads: kv_heads,
        head_dim,
        vocab_size: 0,
        rms_norm_eps: hf.rms_norm_eps as f32,
        rope_freq_base: hf.rope_theta.unwrap_or(10_000.0) as f32,
        rope_neox: true,
        max_positions: hf.max_position_embeddings.unwrap_or(4096),
        rope_freq_factors: None,
        mrope: None,
    };
    config.rope_freq_factors = rope_scaling_factors(hf.rope_scaling.as_ref(), &config)?;
    Ok(config)
}

/// The vision half of a vision-language model directory: the encoder's configuration, its
/// special tokens and its image processing; `None` for a text model.
pub(crate) fn read_vision(dir: &Path, text_hidden: usize) -> Result<Option<VisionParts>, EngineError> {
    let path = dir.join("config.json");
    let value: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)
        .map_err(|e| EngineError::InvalidModel(format!("{}: {e}", path.display())))?;
    if value["model_type"] != "qwen3_vl" {
        return Ok(None);
    }
    let config: VisionConfig = serde_json::from_value(value["vision_config"].clone())
        .map_err(|e| EngineError::InvalidModel(format!("{}: vision_config: {e}", path.display())))?;
    config.validate(text_hidden)?;
    let id = |key: &str, default: u32| value[key].as_u64().map_or(default, |v| v as u32);
    let tokens = VisionTokens {
        image: id("image_token_id", 151_655),
        start: id("vision_start_token_id", 151_652),
        end: id("vision_end_token_id", 151_653),
    };
    let processor = dir.join("preprocessor_config.json");
    let processor: Option<Value> = if processor.is_file() {
        Some(
            serde_json::from_str(&std::fs::read_to_string(&processor)?)
                .map_err(|e| EngineError::InvalidModel(format!("{}: {e}", processor.display())))?,
        )
    } else {
        None
    };
    let processing = ImageProcessing::from_json(&config, processor.as_ref())?;
    Ok(Some(VisionParts {
        config,
        tokens,
        processing,
        files: weight_files(dir)?,
    }))
}

/// What a vision-language model's directory says about its vision half.
pub(crate) struct VisionParts {
    /// The encoder's shape.
    pub(crate) config: VisionConfig,
    /// The tokens that frame an image.
    pub(crate) tokens: VisionTokens,
    /// How images are prepared.
    pub(crate) processing: ImageProcessing,
    /// The safetensors files holding the encoder (under `model.visual`).
    pub(crate) files: Vec<PathBuf>,
}

/// The frequency divisors of a `rope_scaling` entry: none for absent / default, Llama 3's
/// smooth long-context scaling for `llama3`; other kinds are refused.
fn rope_scaling_factors(scaling: Option<&Value>, config: &BatchModelConfig) -> Result<Option<Vec<f32>>, EngineError> {
    let Some(scaling) = scaling.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let kind = scaling
        .get("rope_type")
        .or_else(|| scaling.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    match kind {
        "default" => Ok(None),
        "llama3" => {
            let number = |key: &str| {
                scaling
                    .get(key)
                    .and_then(Value::as_f64)
                    .ok_or_else(|| EngineError::InvalidModel(format!("rope_scaling: no {key}")))
            };
            let factor = number("factor")?;
            let low = number("low_freq_factor")?;
            let high = number("high_freq_factor")?;
            let original = number("original_max_position_embeddings")?;
            let plain = BatchModelConfig {
                rope_freq_factors: None,
                ..config.clone()
            };
            let factors = plain
                .rope_inv_freq()
                .into_iter()
                .map(|freq| {
                    let freq = f64::from(freq);
                    let wavelen = 2.0 * std::f64::consts::PI / freq;
                    let scaled = if wavelen < original / high {
                        freq
                    } else if wavelen > original / low {
                        freq / factor
                    } else {
                        let smooth = (original / wavelen - low) / (high - low);
                        (1.0 - smooth) * freq / factor + smooth * freq
                    };
                    (freq / scaled) as f32
                })
                .collect();
            Ok(Some(factors))
        }
        other => Err(EngineError::InvalidModel(format!(
            "rope_scaling of type {other:?} is not supported (default and llama3 are)"
        ))),
    }
}

/// The safetensors files of `dir`: the shards of `model.safetensors.index.json`, else every
/// `*.safetensors` file.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, EngineError> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index)?;
        let value: Value =
            serde_json::from_str(&text).map_err(|e| EngineError::InvalidModel(format!("{}: {e}", index.display())))?;
        let shards: BTreeSet<&str> = value["weight_map"]
            .as_object()
            .ok_or_else(|| EngineError::InvalidModel(format!("{} has no weight_map", index.display())))?
            .values()
            .filter_map(Value::as_str)
            .collect();
        return Ok(shards.into_iter().map(|s| dir.join(s)).collect());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(EngineError::NotFound(format!(
            "no .safetensors file in {}",
            dir.display()
        )));
    }
    Ok(files)
}

/// The safetensors weights of a model directory, read by GGUF name.
pub(crate) struct SafetensorsWeights {
    /// The memory-mapped files.
    tensors: MmapedSafetensors,
    /// Whether the output head is the embedding matrix (then `output.weight` is absent).
    tied: bool,
    /// The prefix of the language model's tensors: `model.`, or `model.language_model.` in
    /// a vision-language checkpoint.
    prefix: &'static str,
}

impl SafetensorsWeights {
    /// Maps the weights of `dir`.
    pub(crate) fn open(dir: &Path, tied: bool) -> Result<Self, EngineError> {
        let files = weight_files(dir)?;
        // SAFETY: the files are mapped read-only; the engine never writes them, and a model
        // file changed under a running server is outside what it promises to handle.
        let tensors = unsafe { MmapedSafetensors::multi(&files) }
            .map_err(|e| EngineError::InvalidModel(format!("cannot map the weights in {}: {e}", dir.display())))?;
        let prefix = if tensors.get("model.language_model.embed_tokens.weight").is_ok() {
            "model.language_model."
        } else {
            "model."
        };
        Ok(Self { tensors, tied, prefix })
    }
}

/// The Hugging Face name of the tensor GGUF calls `name`, the language model's tensors under
/// `prefix` (`model.`).
fn hf_name(name: &str, prefix: &str) -> Option<String> {
    match name {
        "token_embd.weight" => return Some(format!("{prefix}embed_tokens.weight")),
        "output.weight" => return Some("lm_head.weight".into()),
        "output_norm.weight" => return Some(format!("{prefix}norm.weight")),
        _ => {}
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let part = match part {
        "attn_norm.weight" => "input_layernorm.weight",
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_q.bias" => "self_attn.q_proj.bias",
        "attn_k.bias" => "self_attn.k_proj.bias",
        "attn_v.bias" => "self_attn.v_proj.bias",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "attn_q_norm.weight" => "self_attn.q_norm.weight",
        "attn_k_norm.weight" => "self_attn.k_norm.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        _ => return None,
    };
    Some(format!("{prefix}layers.{layer}.{part}"))
}

impl WeightSource for SafetensorsWeights {
    fn has(&self, name: &str) -> bool {
        if name == "output.weight" && self.tied {
            return false;
        }
        hf_name(name, self.prefix).is_some_and(|hf| self.tensors.get(&hf).is_ok())
    }

    fn get(&mut self, name: &str, device: &Device) -> Result<QTensor, EngineError> {
        let hf = hf_name(name, self.prefix).ok_or_else(|| EngineError::InvalidModel(format!("no tensor {name}")))?;
        let tensor = self.tensors.load(&hf, device)?;
        // Matrices keep their precision (f16 / bf16 stay half size in memory until a kernel
        // widens them); vectors are read in f32.
        let dtype = match (tensor.rank(), tensor.dtype()) {
            (2, DType::F16) => GgmlDType::F16,
            (2, DType::BF16) => GgmlDType::BF16,
            _ => GgmlDType::F32,
        };
        Ok(QTensor::quantize(&tensor, dtype)?)
    }
}

/// What `tokenizer_config.json` and `generation_config.json` say about special tokens and the
/// chat template.
#[derive(Debug, Default)]
pub(crate) struct TokenizerSettings {
    /// The BOS token's text.
    pub(crate) bos: Option<String>,
    /// The EOS token's text.
    pub(crate) eos: Option<String>,
    /// Whether prompts start with BOS.
    pub(crate) add_bos: bool,
    /// The chat template (the `default` one when there are several).
    pub(crate) chat_template: Option<String>,
    /// EOS ids from `generation_config.json`.
    pub(crate) eos_ids: Vec<u32>,
}

impl TokenizerSettings {
    /// Reads the settings of `dir` (missing files mean defaults).
    pub(crate) fn read(dir: &Path) -> Result<Self, EngineError> {
        let json = |name: &str| -> Result<Option<Value>, EngineError> {
            let path = dir.join(name);
            if !path.is_file() {
                return Ok(None);
            }
            let text = std::fs::read_to_string(&path)?;
            serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| EngineError::InvalidModel(format!("{}: {e}", path.display())))
        };
        let mut settings = Self::default();
        if let Some(config) = json("tokenizer_config.json")? {
            let token = |key: &str| match &config[key] {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_owned),
                _ => None,
            };
            settings.bos = token("bos_token");
            settings.eos = token("eos_token");
            settings.add_bos = config["add_bos_token"].as_bool().unwrap_or(false);
            settings.chat_template = match &config["chat_template"] {
                Value::String(s) => Some(s.clone()),
                Value::Array(templates) => templates
                    .iter()
                    .find(|t| t["name"] == "default")
                    .or_else(|| templates.first())
                    .and_then(|t| t["template"].as_str())
                    .map(str::to_owned),
                _ => None,
            };
        }
        if let Some(generation) = json("generation_config.json")? {
            settings.eos_ids = match &generation["eos_token_id"] {
                Value::Number(n) => n.as_u64().map(|id| vec![id as u32]).unwrap_or_default(),
                Value::Array(ids) => ids.iter().filter_map(Value::as_u64).map(|id| id as u32).collect(),
                _ => Vec::new(),
            };
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gguf_names_map_to_hugging_face_names() {
        assert_eq!(
            hf_name("token_embd.weight", "model.").unwrap(),
            "model.embed_tokens.weight"
        );
        assert_eq!(
            hf_name("blk.3.attn_q.bias", "model.").unwrap(),
            "model.layers.3.self_attn.q_proj.bias"
        );
        assert_eq!(
            hf_name("blk.12.ffn_down.weight", "model.").unwrap(),
            "model.layers.12.mlp.down_proj.weight"
        );
        assert_eq!(hf_name("rope_freqs.weight", "model."), None);
        assert_eq!(hf_name("blk.0.unknown.weight", "model."), None);
    }

    #[test]
    fn llama3_rope_scaling_divides_only_the_low_frequencies() {
        let dir = tempfile::tempdir().unwrap();
        let config = serde_json::json!({
            "model_type": "llama", "hidden_size": 256, "num_hidden_layers": 1,
            "num_attention_heads": 2, "num_key_value_heads": 1, "rms_norm_eps": 1e-5,
            "rope_theta": 500000.0, "max_position_embeddings": 131072,
            "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                             "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
        });
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        let (config, tied) = read_config(dir.path()).unwrap();
        assert!(!tied);
        let factors = config.rope_freq_factors.clone().unwrap();
        assert_eq!(factors.len(), 64);
        assert_eq!(factors[0], 1.0, "high frequencies are kept");
        assert!(
            (factors[63] - 8.0).abs() < 1e-4,
            "low frequencies are divided by the factor"
        );
        assert!(factors.windows(2).all(|w| w[0] <= w[1] + 1e-6));

        let bad = serde_json::json!({
            "model_type": "llama", "hidden_size": 256, "num_hidden_layers": 1,
            "num_attention_heads": 2, "rms_norm_eps": 1e-5, "rope_scaling": {"type": "yarn", "factor": 4.0}
        });
        std::fs::write(dir.path().join("config.json"), bad.to_string()).unwrap();
        let error = read_config(dir.path()).unwrap_err();
        assert!(error.to_string().contains("yarn"), "{error}");
    }
}
