//! What a vision-language model's files say about its vision half: the encoder's shape
//! (`vision_config` of `config.json`), its special tokens, and how images are prepared
//! (`preprocessor_config.json`).

use serde::Deserialize;

use crate::engine::error::EngineError;

/// The vision encoder's hyper-parameters, with Hugging Face's `Qwen3VLVisionConfig` defaults.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct VisionConfig {
    /// Transformer blocks.
    #[serde(default = "defaults::depth")]
    pub depth: usize,
    /// Hidden size.
    #[serde(default = "defaults::hidden_size")]
    pub hidden_size: usize,
    /// The MLP's activation: `gelu_pytorch_tanh` (tanh approximation) or `gelu` (exact).
    #[serde(default = "defaults::hidden_act")]
    pub hidden_act: String,
    /// MLP hidden size.
    #[serde(default = "defaults::intermediate_size")]
    pub intermediate_size: usize,
    /// Attention heads.
    #[serde(default = "defaults::num_heads")]
    pub num_heads: usize,
    /// Colour channels.
    #[serde(default = "defaults::in_channels", alias = "in_chans")]
    pub in_channels: usize,
    /// Pixels on a patch's side.
    #[serde(default = "defaults::patch_size")]
    pub patch_size: usize,
    /// Patches on a merged patch's side (one image token per merged patch).
    #[serde(default = "defaults::spatial_merge_size")]
    pub spatial_merge_size: usize,
    /// Frames per patch (a still image repeats its one frame).
    #[serde(default = "defaults::temporal_patch_size")]
    pub temporal_patch_size: usize,
    /// The size of an image token's embedding (the language model's hidden size).
    #[serde(default = "defaults::out_hidden_size")]
    pub out_hidden_size: usize,
    /// Learned positions, a square grid interpolated to each image's grid.
    #[serde(default = "defaults::num_position_embeddings")]
    pub num_position_embeddings: usize,
    /// Blocks whose output feeds a DeepStack merger (the i-th is added after the language
    /// model's i-th layer).
    #[serde(default = "defaults::deepstack_visual_indexes")]
    pub deepstack_visual_indexes: Vec<usize>,
}

/// Hugging Face's defaults for [`VisionConfig`].
mod defaults {
    pub(super) fn depth() -> usize {
        27
    }
    pub(super) fn hidden_size() -> usize {
        1152
    }
    pub(super) fn hidden_act() -> String {
        "gelu_pytorch_tanh".into()
    }
    pub(super) fn intermediate_size() -> usize {
        4304
    }
    pub(super) fn num_heads() -> usize {
        16
    }
    pub(super) fn in_channels() -> usize {
        3
    }
    pub(super) fn patch_size() -> usize {
        16
    }
    pub(super) fn spatial_merge_size() -> usize {
        2
    }
    pub(super) fn temporal_patch_size() -> usize {
        2
    }
    pub(super) fn out_hidden_size() -> usize {
        3584
    }
    pub(super) fn num_position_embeddings() -> usize {
        2304
    }
    pub(super) fn deepstack_visual_indexes() -> Vec<usize> {
        vec![8, 16, 24]
    }
}

impl VisionConfig {
    /// Checks what the encoder relies on; `text_hidden` is the language model's hidden size.
    pub fn validate(&self, text_hidden: usize) -> Result<(), EngineError> {
        let bad = |what: String| Err(EngineError::InvalidModel(format!("vision_config: {what}")));
        if self.depth == 0 || self.hidden_size == 0 || self.num_heads == 0 || self.patch_size == 0 {
            return bad("depth, hidden_size, num_heads and patch_size must be at least 1".into());
        }
        if !self.hidden_size.is_multiple_of(self.num_heads) || !(self.hidden_size / self.num_heads).is_multiple_of(4) {
            return bad(format!(
                "hidden_size {} over {} heads must give a head size divisible by 4",
                self.hidden_size, self.num_heads
            ));
        }
        if self.spatial_merge_size == 0 || self.temporal_patch_size == 0 || self.in_channels == 0 {
            return bad("spatial_merge_size, temporal_patch_size and in_channels must be at least 1".into());
        }
        let side = (self.num_position_embeddings as f64).sqrt().round() as usize;
        if side == 0 || side * side != self.num_position_embeddings {
            return bad(format!(
                "num_position_embeddings {} is not a square",
                self.num_position_embeddings
            ));
        }
        if self.out_hidden_size != text_hidden {
            return bad(format!(
                "out_hidden_size {} differs from the language model's hidden size {text_hidden}",
                self.out_hidden_size
            ));
        }
        self.gelu_exact()?;
        Ok(())
    }

    /// Whether the MLP's GELU is the exact (erf) one rather than the tanh approximation.
    pub fn gelu_exact(&self) -> Result<bool, EngineError> {
        match self.hidden_act.as_str() {
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Ok(false),
            "gelu" => Ok(true),
            other => Err(EngineError::InvalidModel(format!(
                "vision_config: hidden_act {other:?} is not supported (gelu, gelu_pytorch_tanh)"
            ))),
        }
    }

    /// Head size of the vision attention.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    /// The values of one patch row: channels × frames × pixels × pixels.
    pub fn patch_values(&self) -> usize {
        self.in_channels * self.temporal_patch_size * self.patch_size * self.patch_size
    }

    /// Patches per image token.
    pub fn merge_unit(&self) -> usize {
        self.spatial_merge_size * self.spatial_merge_size
    }
}

/// The special tokens that frame an image in a prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VisionTokens {
    /// `<|image_pad|>`: one per image token.
    pub image: u32,
    /// `<|vision_start|>`, before an image's tokens.
    pub start: u32,
    /// `<|vision_end|>`, after them.
    pub end: u32,
}

/// How images are turned into pixels the encoder reads (`preprocessor_config.json`).
#[derive(Clone, Debug, PartialEq)]
pub struct ImageProcessing {
    /// Pixels on a patch's side.
    pub patch_size: usize,
    /// Patches on a merged patch's side.
    pub merge_size: usize,
    /// Frames per patch.
    pub temporal_patch_size: usize,
    /// The fewest pixels an image is scaled to.
    pub min_pixels: usize,
    /// The most pixels an image is scaled to.
    pub max_pixels: usize,
    /// Per-channel mean after scaling to 0..1.
    pub mean: [f32; 3],
    /// Per-channel standard deviation.
    pub std: [f32; 3],
}

impl ImageProcessing {
    /// Qwen3-VL's processing for an encoder of `config`, with `preprocessor_config.json`'s
    /// values where it has them (`size.shortest_edge` / `longest_edge` or `min_pixels` /
    /// `max_pixels`, `image_mean`, `image_std`).
    pub fn from_json(config: &VisionConfig, json: Option<&serde_json::Value>) -> Result<Self, EngineError> {
        let mut processing = Self {
            patch_size: config.patch_size,
            merge_size: config.spatial_merge_size,
            temporal_patch_size: config.temporal_patch_size,
            min_pixels: 65_536,
            max_pixels: 16_777_216,
            mean: [0.5; 3],
            std: [0.5; 3],
        };
        let Some(json) = json else {
            return Ok(processing);
        };
        let number = |v: &serde_json::Value| v.as_u64().map(|n| n as usize);
        if let Some(min) = number(&json["size"]["shortest_edge"]).or_else(|| number(&json["min_pixels"])) {
            processing.min_pixels = min;
        }
        if let Some(max) = number(&json["size"]["longest_edge"]).or_else(|| number(&json["max_pixels"])) {
            processing.max_pixels = max;
        }
        let triple = |v: &serde_json::Value| -> Option<[f32; 3]> {
            let values: Vec<f32> = v
                .as_array()?
                .iter()
                .filter_map(|x| x.as_f64())
                .map(|x| x as f32)
                .collect();
            values.try_into().ok()
        };
        if let Some(mean) = triple(&json["image_mean"]) {
            processing.mean = mean;
        }
        if let Some(std) = triple(&json["image_std"]) {
            processing.std = std;
        }
        if let Some(patch) = number(&json["patch_size"]) {
            if patch != config.patch_size {
                return Err(EngineError::InvalidModel(format!(
                    "preprocessor_config.json: patch_size {patch} differs from the encoder's {}",
                    config.patch_size
                )));
            }
        }
        if processing.min_pixels == 0 || processing.min_pixels > processing.max_pixels || processing.std.contains(&0.0)
        {
            return Err(EngineError::InvalidModel(
                "preprocessor_config.json: min pixels above max pixels, or a zero image_std".into(),
            ));
        }
        Ok(processing)
    }

    /// Pixels on a merged patch's side: image sides are multiples of it.
    pub fn factor(&self) -> usize {
        self.patch_size * self.merge_size
    }
}
