//! The vision transformer of Qwen3-VL: patches in, one embedding per image token out (plus
//! the DeepStack features), for every image of a step in one call.
//!
//! Per image: a linear patch embedding (the model's 3-D convolution over one patch is one
//! matrix product), plus learned positions bilinearly interpolated from a square grid to the
//! image's grid; then pre-norm blocks whose attention is full within each image (never
//! across images) with a 2-D rotary embedding (half the rotated dimensions follow the row,
//! half the column); after some blocks a DeepStack merger, after the last the main merger,
//! each folding the patches of one merged patch into one token embedding.
//!
//! Everything but attention runs on all images' patches at once (one matrix product per
//! weight per step); attention runs per image. Arithmetic in f32 whatever the file holds.
//! The mergers use the exact (erf) GELU as the Hugging Face model does; candle-transformers'
//! `qwen3_vl` uses the tanh approximation there, which [`VisionEncoder::set_tanh_mergers`]
//! reproduces so that tests can compare with it.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::ops::softmax_last_dim;
use candle_nn::{layer_norm, linear, LayerNorm, LayerNormConfig, Linear, Module, VarBuilder};

use super::config::VisionConfig;
use super::preprocess::PreparedImage;
use crate::engine::error::EngineError;

/// Rotary base of the vision attention.
const ROPE_THETA: f32 = 10_000.0;

/// What one image becomes: the embeddings that replace its tokens' and the DeepStack
/// features added after the first language-model layers.
#[derive(Clone, Debug)]
pub struct ImageFeatures {
    /// `[tokens, hidden]`, f32.
    pub embeds: Tensor,
    /// One `[tokens, hidden]` per DeepStack layer, in layer order.
    pub deepstack: Vec<Tensor>,
}

/// One transformer block.
struct Block {
    /// Norm before attention.
    norm1: LayerNorm,
    /// Norm before the MLP.
    norm2: LayerNorm,
    /// Fused query, key and value projection.
    qkv: Linear,
    /// Attention output projection.
    proj: Linear,
    /// MLP up.
    fc1: Linear,
    /// MLP down.
    fc2: Linear,
}

/// Folds the patches of each merged patch into one token embedding.
struct Merger {
    /// Layer norm: per patch before folding (main merger) or over the folded row (DeepStack).
    norm: LayerNorm,
    /// Whether the norm runs after folding.
    norm_after_fold: bool,
    /// First projection.
    fc1: Linear,
    /// Second projection, to the language model's width.
    fc2: Linear,
}

/// The vision encoder's weights.
pub struct VisionEncoder {
    /// Hyper-parameters.
    config: VisionConfig,
    /// Patch embedding `[hidden, patch values]`, transposed for the product.
    patch_weight_t: Tensor,
    /// Patch embedding bias `[hidden]`.
    patch_bias: Tensor,
    /// Learned positions `[side², hidden]`.
    pos_embed: Tensor,
    /// The blocks.
    blocks: Vec<Block>,
    /// The merger after the last block.
    merger: Merger,
    /// `(block index, merger)` of each DeepStack tap, in layer order.
    deepstack: Vec<(usize, Merger)>,
    /// Whether the blocks' MLP uses the exact GELU.
    mlp_gelu_exact: bool,
    /// Whether the mergers use the exact GELU (the model's) or the tanh approximation.
    merger_gelu_exact: bool,
    /// Where the weights live.
    device: Device,
}

impl std::fmt::Debug for VisionEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VisionEncoder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl VisionEncoder {
    /// Reads the encoder of `config` from the safetensors `files` (tensors under `prefix`,
    /// `model.visual` in Qwen3-VL checkpoints) onto `device`, in f32.
    pub fn load(config: VisionConfig, files: &[PathBuf], prefix: &str, device: &Device) -> Result<Self, EngineError> {
        // SAFETY: the files are mapped read-only; the engine never writes them (as for the
        // language model's weights).
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(files, DType::F32, device) }?;
        Self::new(config, vb.pp(prefix), device)
    }

    /// Builds the encoder from `vb` (rooted at the encoder's tensors).
    pub fn new(config: VisionConfig, vb: VarBuilder, device: &Device) -> Result<Self, EngineError> {
        let c = &config;
        let (hidden, merged) = (c.hidden_size, c.hidden_size * c.merge_unit());
        let norm = |dim: usize, vb: VarBuilder| {
            layer_norm(
                dim,
                LayerNormConfig {
                    eps: 1e-6,
                    ..Default::default()
                },
                vb,
            )
        };
        let patch = vb.pp("patch_embed").pp("proj");
        let patch_weight = patch.get(
            (hidden, c.in_channels, c.temporal_patch_size, c.patch_size, c.patch_size),
            "weight",
        )?;
        let patch_weight_t = patch_weight.reshape((hidden, c.patch_values()))?.t()?.contiguous()?;
        let patch_bias = patch.get(hidden, "bias")?;
        let pos_embed = vb.pp("pos_embed").get((c.num_position_embeddings, hidden), "weight")?;
        let mut blocks = Vec::with_capacity(c.depth);
        for i in 0..c.depth {
            let b = vb.pp(format!("blocks.{i}"));
            blocks.push(Block {
                norm1: norm(hidden, b.pp("norm1"))?,
                norm2: norm(hidden, b.pp("norm2"))?,
                qkv: linear(hidden, 3 * hidden, b.pp("attn").pp("qkv"))?,
                proj: linear(hidden, hidden, b.pp("attn").pp("proj"))?,
                fc1: linear(hidden, c.intermediate_size, b.pp("mlp").pp("linear_fc1"))?,
                fc2: linear(c.intermediate_size, hidden, b.pp("mlp").pp("linear_fc2"))?,
            });
        }
        let merger = |vb: VarBuilder, norm_after_fold: bool| -> candle_core::Result<Merger> {
            Ok(Merger {
                norm: norm(if norm_after_fold { merged } else { hidden }, vb.pp("norm"))?,
                norm_after_fold,
                fc1: linear(merged, merged, vb.pp("linear_fc1"))?,
                fc2: linear(merged, c.out_hidden_size, vb.pp("linear_fc2"))?,
            })
        };
        let main = merger(vb.pp("merger"), false)?;
        let mut deepstack = Vec::new();
        for (i, &block) in c.deepstack_visual_indexes.iter().enumerate() {
            if block >= c.depth {
                return Err(EngineError::InvalidModel(format!(
                    "vision_config: DeepStack index {block} is past the {} blocks",
                    c.depth
                )));
            }
            deepstack.push((block, merger(vb.pp(format!("deepstack_merger_list.{i}")), true)?));
        }
        let mlp_gelu_exact = config.gelu_exact()?;
        Ok(Self {
            config,
            patch_weight_t,
            patch_bias,
            pos_embed,
            blocks,
            merger: main,
            deepstack,
            mlp_gelu_exact,
            merger_gelu_exact: true,
            device: device.clone(),
        })
    }

    /// Hyper-parameters.
    pub fn config(&self) -> &VisionConfig {
        &self.config
    }

    /// Makes the mergers use the tanh GELU, as candle-transformers' `qwen3_vl` does (the
    /// model itself uses the exact one): for comparisons with it only.
    pub fn set_tanh_mergers(&mut self) {
        self.merger_gelu_exact = false;
    }

    /// Encodes `images` in one call; the features come back in the same order.
    pub fn encode(&self, images: &[&PreparedImage]) -> Result<Vec<ImageFeatures>, EngineError> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let c = &self.config;
        let values = c.patch_values();
        for image in images {
            let unit = c.spatial_merge_size;
            if image.patches.len() != image.num_patches() * values
                || image.patch_rows % unit != 0
                || image.patch_cols % unit != 0
            {
                return Err(EngineError::InvalidRequest(
                    "the image was prepared for another encoder".into(),
                ));
            }
        }
        let total: usize = images.iter().map(|i| i.num_patches()).sum();
        let mut pixels = Vec::with_capacity(total * values);
        for image in images {
            pixels.extend_from_slice(&image.patches);
        }
        let pixels = Tensor::from_vec(pixels, (total, values), &self.device)?;
        let mut x = pixels.matmul(&self.patch_weight_t)?.broadcast_add(&self.patch_bias)?;
        x = (x + self.positions(images)?)?;
        let (cos, sin) = self.rotary(images)?;
        let windows: Vec<(usize, usize)> = images
            .iter()
            .scan(0, |start, image| {
                let window = (*start, image.num_patches());
                *start += image.num_patches();
                Some(window)
            })
            .collect();
        let mut taps = Vec::with_capacity(self.deepstack.len());
        for (index, block) in self.blocks.iter().enumerate() {
            x = self.block(block, &x, &windows, &cos, &sin)?;
            for (tap, merger) in &self.deepstack {
                if *tap == index {
                    taps.push(self.merge(merger, &x)?);
                }
            }
        }
        let embeds = self.merge(&self.merger, &x)?;
        let mut features = Vec::with_capacity(images.len());
        let mut start = 0;
        for image in images {
            let tokens = image.tokens();
            features.push(ImageFeatures {
                embeds: embeds.narrow(0, start, tokens)?,
                deepstack: taps
                    .iter()
                    .map(|t| t.narrow(0, start, tokens))
                    .collect::<candle_core::Result<_>>()?,
            });
            start += tokens;
        }
        Ok(features)
    }

    /// The learned positions of every patch, bilinearly interpolated from the square grid to
    /// each image's grid, in patch-row order: `[patches, hidden]`.
    fn positions(&self, images: &[&PreparedImage]) -> candle_core::Result<Tensor> {
        let side = (self.config.num_position_embeddings as f64).sqrt().round() as usize;
        let m = self.config.spatial_merge_size;
        let points = |steps: usize| -> Vec<f32> {
            if steps == 1 {
                return vec![0.0];
            }
            let step = (side - 1) as f32 / (steps - 1) as f32;
            (0..steps).map(|i| i as f32 * step).collect()
        };
        let mut index: [Vec<u32>; 4] = Default::default();
        let mut weight: [Vec<f32>; 4] = Default::default();
        for image in images {
            let (rows, cols) = (points(image.patch_rows), points(image.patch_cols));
            for (r, c) in patch_order(image.patch_rows, image.patch_cols, m) {
                let (y, x) = (rows[r], cols[c]);
                let (y0, x0) = (y.floor() as usize, x.floor() as usize);
                let (y1, x1) = ((y.ceil() as usize).min(side - 1), (x.ceil() as usize).min(side - 1));
                let (dy, dx) = (y - y0 as f32, x - x0 as f32);
                let corners = [
                    (y0 * side + x0, (1.0 - dy) * (1.0 - dx)),
                    (y0 * side + x1, (1.0 - dy) * dx),
                    (y1 * side + x0, dy * (1.0 - dx)),
                    (y1 * side + x1, dy * dx),
                ];
                for (k, (i, w)) in corners.into_iter().enumerate() {
                    index[k].push(i as u32);
                    weight[k].push(w);
                }
            }
        }
        let n = index[0].len();
        let mut sum: Option<Tensor> = None;
        for (idx, w) in index.into_iter().zip(weight) {
            let rows = self
                .pos_embed
                .index_select(&Tensor::from_vec(idx, n, &self.device)?, 0)?;
            let term = rows.broadcast_mul(&Tensor::from_vec(w, (n, 1), &self.device)?)?;
            sum = Some(match sum {
                None => term,
                Some(s) => (s + term)?,
            });
        }
        Ok(sum.expect("four corners"))
    }

    /// The 2-D rotary cosines and sines of every patch, `[patches, head_dim]` each.
    fn rotary(&self, images: &[&PreparedImage]) -> candle_core::Result<(Tensor, Tensor)> {
        let quarter = self.config.head_dim() / 4;
        let half_dim = self.config.head_dim() / 2;
        let inv_freq: Vec<f32> = (0..half_dim)
            .step_by(2)
            .map(|i| 1.0 / ROPE_THETA.powf(i as f32 / half_dim as f32))
            .collect();
        let mut angles = Vec::new();
        for image in images {
            for (r, c) in patch_order(image.patch_rows, image.patch_cols, self.config.spatial_merge_size) {
                let row: Vec<f32> = inv_freq.iter().take(quarter).map(|f| r as f32 * f).collect();
                let col: Vec<f32> = inv_freq.iter().take(quarter).map(|f| c as f32 * f).collect();
                for _ in 0..2 {
                    angles.extend_from_slice(&row);
                    angles.extend_from_slice(&col);
                }
            }
        }
        let n = angles.len() / (4 * quarter);
        let angles = Tensor::from_vec(angles, (n, 4 * quarter), &self.device)?;
        Ok((angles.cos()?, angles.sin()?))
    }

    /// One pre-norm block: attention within each image's window, then the MLP.
    fn block(
        &self,
        block: &Block,
        x: &Tensor,
        windows: &[(usize, usize)],
        cos: &Tensor,
        sin: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let (n, hidden) = x.dims2()?;
        let (heads, d) = (self.config.num_heads, self.config.head_dim());
        let qkv = block.qkv.forward(&block.norm1.forward(x)?)?.reshape((n, 3, heads, d))?;
        let rotate = |t: Tensor| -> candle_core::Result<Tensor> {
            let (cos, sin) = (cos.unsqueeze(1)?, sin.unsqueeze(1)?);
            let first = t.narrow(D::Minus1, 0, d / 2)?;
            let second = t.narrow(D::Minus1, d / 2, d - d / 2)?;
            let rotated = Tensor::cat(&[&second.neg()?, &first], D::Minus1)?;
            t.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?
        };
        let q = rotate(qkv.narrow(1, 0, 1)?.squeeze(1)?)?;
        let k = rotate(qkv.narrow(1, 1, 1)?.squeeze(1)?)?;
        let v = qkv.narrow(1, 2, 1)?.squeeze(1)?;
        let mut outputs = Vec::with_capacity(windows.len());
        for &(start, len) in windows {
            let per_head = |t: &Tensor| t.narrow(0, start, len)?.transpose(0, 1)?.contiguous();
            let (q, k, v) = (per_head(&q)?, per_head(&k)?, per_head(&v)?);
            let scores = (q.matmul(&k.t()?)? / (d as f64).sqrt())?;
            let out = softmax_last_dim(&scores)?.matmul(&v)?;
            outputs.push(out.transpose(0, 1)?.reshape((len, hidden))?);
        }
        let attn = block.proj.forward(&Tensor::cat(&outputs, 0)?)?;
        let x = (x + attn)?;
        let h = block.fc1.forward(&block.norm2.forward(&x)?)?;
        let h = if self.mlp_gelu_exact { h.gelu_erf()? } else { h.gelu()? };
        x + block.fc2.forward(&h)?
    }

    /// Folds each merged patch's patches into one token embedding.
    fn merge(&self, merger: &Merger, x: &Tensor) -> candle_core::Result<Tensor> {
        let (n, hidden) = x.dims2()?;
        let unit = self.config.merge_unit();
        let folded = if merger.norm_after_fold {
            merger.norm.forward(&x.reshape((n / unit, unit * hidden))?)?
        } else {
            merger.norm.forward(x)?.reshape((n / unit, unit * hidden))?
        };
        let h = merger.fc1.forward(&folded)?;
        let h = if self.merger_gelu_exact {
            h.gelu_erf()?
        } else {
            h.gelu()?
        };
        merger.fc2.forward(&h)
    }
}

/// `(row, column)` of each patch of a `rows × cols` grid in encoder order: merged patch by
/// merged patch (row-major), and row-major within one.
fn patch_order(rows: usize, cols: usize, merge: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..rows / merge).flat_map(move |br| {
        (0..cols / merge).flat_map(move |bc| {
            (0..merge).flat_map(move |ir| (0..merge).map(move |ic| (br * merge + ir, bc * merge + ic)))
        })
    })
}
