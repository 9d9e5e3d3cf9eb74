//! From an image file to the encoder's input: Qwen2-VL / Qwen3-VL's image processor.
//!
//! The image is composited onto white (a transparent screenshot reads as on a page), resized
//! with a bicubic filter to sides that are multiples of a merged patch (`smart_resize`: the
//! nearest multiples, then scaled as a whole into the pixel budget), scaled to 0..1 and
//! normalized per channel, then cut into patches. A patch row holds channels × frames ×
//! pixels × pixels (a still image repeats its one frame), and rows go merged patch by
//! merged patch, so the patches of one image token are consecutive.

use image::imageops::FilterType;
use sha2::{Digest, Sha256};

use super::config::ImageProcessing;
use crate::engine::error::EngineError;

/// The most an image's long side may exceed its short side (Hugging Face refuses more; here
/// the short side is stretched to this ratio).
const MAX_ASPECT_RATIO: usize = 200;

/// An image ready for the encoder.
#[derive(Clone, Debug, PartialEq)]
pub struct PreparedImage {
    /// Patch rows, `patch_rows × values` (see the module docs for their order).
    pub patches: Vec<f32>,
    /// Patches down the image.
    pub patch_rows: usize,
    /// Patches across.
    pub patch_cols: usize,
    /// Image tokens down (merged patches).
    pub token_rows: usize,
    /// Image tokens across.
    pub token_cols: usize,
    /// SHA-256 of the image file: the same picture is the same key in the prefix cache.
    pub digest: [u8; 32],
}

impl PreparedImage {
    /// Its tokens in a prompt.
    pub fn tokens(&self) -> usize {
        self.token_rows * self.token_cols
    }

    /// Its patches.
    pub fn num_patches(&self) -> usize {
        self.patch_rows * self.patch_cols
    }
}

/// The sides (height, width) an image of `height × width` pixels is resized to: multiples of
/// `factor`, as close to the original as the pixel budget allows.
pub fn smart_resize(height: usize, width: usize, processing: &ImageProcessing) -> (usize, usize) {
    let factor = processing.factor() as f64;
    // A sliver is first widened to the largest ratio the model handles.
    let (mut h, mut w) = (height.max(1), width.max(1));
    h = h.max(w.div_ceil(MAX_ASPECT_RATIO));
    w = w.max(h.div_ceil(MAX_ASPECT_RATIO));
    let (h, w) = (h as f64, w as f64);
    let round = |x: f64| ((x / factor).round_ties_even() * factor).max(factor);
    let (mut h_bar, mut w_bar) = (round(h), round(w));
    let (min, max) = (processing.min_pixels as f64, processing.max_pixels as f64);
    if h_bar * w_bar > max {
        let beta = (h * w / max).sqrt();
        h_bar = ((h / beta / factor).floor() * factor).max(factor);
        w_bar = ((w / beta / factor).floor() * factor).max(factor);
    } else if h_bar * w_bar < min {
        let beta = (min / (h * w)).sqrt();
        h_bar = (h * beta / factor).ceil() * factor;
        w_bar = (w * beta / factor).ceil() * factor;
    }
    (h_bar as usize, w_bar as usize)
}

/// Decodes `file` (any format the image crate reads; the server hands PNG) and prepares it.
pub fn prepare_image(file: &[u8], processing: &ImageProcessing) -> Result<PreparedImage, EngineError> {
    let decoded = image::load_from_memory(file)
        .map_err(|e| EngineError::InvalidRequest(format!("the image cannot be decoded: {e}")))?
        .to_rgba8();
    let (width, height) = (decoded.width() as usize, decoded.height() as usize);
    let mut rgb = image::RgbImage::new(decoded.width(), decoded.height());
    for (out, px) in rgb.pixels_mut().zip(decoded.pixels()) {
        let alpha = u32::from(px[3]);
        for c in 0..3 {
            // Over white: c·a + 255·(1 − a), rounded.
            out[c] = ((u32::from(px[c]) * alpha + 255 * (255 - alpha) + 127) / 255) as u8;
        }
    }
    let (h_bar, w_bar) = smart_resize(height, width, processing);
    let resized = if (h_bar, w_bar) == (height, width) {
        rgb
    } else {
        image::imageops::resize(&rgb, w_bar as u32, h_bar as u32, FilterType::CatmullRom)
    };
    let (p, m, frames) = (
        processing.patch_size,
        processing.merge_size,
        processing.temporal_patch_size,
    );
    let (patch_rows, patch_cols) = (h_bar / p, w_bar / p);
    let values = 3 * frames * p * p;
    let mut patches = Vec::with_capacity(patch_rows * patch_cols * values);
    let normalized = |y: usize, x: usize, c: usize| -> f32 {
        let v = f32::from(resized.get_pixel(x as u32, y as u32)[c]) / 255.0;
        (v - processing.mean[c]) / processing.std[c]
    };
    for block_row in 0..patch_rows / m {
        for block_col in 0..patch_cols / m {
            for inner_row in 0..m {
                for inner_col in 0..m {
                    let (row, col) = (block_row * m + inner_row, block_col * m + inner_col);
                    for c in 0..3 {
                        for _frame in 0..frames {
                            for py in 0..p {
                                for px in 0..p {
                                    patches.push(normalized(row * p + py, col * p + px, c));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(PreparedImage {
        patches,
        patch_rows,
        patch_cols,
        token_rows: patch_rows / m,
        token_cols: patch_cols / m,
        digest: Sha256::digest(file).into(),
    })
}
