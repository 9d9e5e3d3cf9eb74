//! Sequences with images (a vision-language model): their multimodal positions, the keys
//! their image tokens have in the prefix cache, and encoding their images when a step first
//! reaches them.
//!
//! An image is encoded once, in the first step whose chunk reaches one of its tokens, together
//! with every other image that step reaches (one encoder call per step); its features stay
//! with the sequence, so a preempted sequence recomputes its KV without encoding again.
//! Image tokens are all the same id, so the prefix cache sees each one as a value drawn from
//! its image's SHA-256 and its index in the image, beyond the vocabulary: two prompts share a
//! block only when their images are the same picture.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::actor::Scheduler;
use super::schedule::Scheduled;
use crate::engine::error::EngineError;
use crate::engine::run::forward::VisualRows;
use crate::engine::run::request::ImageInput;
use crate::engine::run::vision::positions::ImageGrid;
use crate::engine::run::vision::{mrope_positions, ImageFeatures, PreparedImage};

/// One image of a sequence.
#[derive(Debug)]
pub(crate) struct SequenceImage {
    /// Its first token's index in the prompt.
    pub(crate) start: usize,
    /// The prepared image.
    pub(crate) image: Arc<PreparedImage>,
    /// Its features, once encoded.
    pub(crate) features: Option<Arc<ImageFeatures>>,
}

impl SequenceImage {
    /// The prompt indices of its tokens.
    fn span(&self) -> std::ops::Range<usize> {
        self.start..self.start + self.image.tokens()
    }
}

/// What a sequence of a vision-language model carries besides its tokens.
#[derive(Debug)]
pub(crate) struct SequenceVision {
    /// Its images, in prompt order.
    pub(crate) images: Vec<SequenceImage>,
    /// The multimodal positions of the prompt's tokens.
    positions: Vec<[u32; 3]>,
    /// Added to the index of every token after the prompt, on all three axes.
    delta: i64,
    /// The prompt's tokens as the prefix cache keys them (image tokens replaced).
    pub(crate) cache_tokens: Vec<u32>,
}

impl SequenceVision {
    /// The vision state of a prompt of `tokens` holding `images` (checked: in order, within
    /// the prompt, each span made of `image_token` only).
    pub(crate) fn new(tokens: &[u32], images: Vec<ImageInput>, image_token: u32) -> Result<Self, EngineError> {
        let grids: Vec<ImageGrid> = images
            .iter()
            .map(|i| ImageGrid {
                start: i.start,
                rows: i.image.token_rows,
                cols: i.image.token_cols,
            })
            .collect();
        let (positions, delta) = mrope_positions(tokens.len(), &grids)?;
        let mut cache_tokens = tokens.to_vec();
        for input in &images {
            let span = input.start..input.start + input.image.tokens();
            if tokens[span.clone()].iter().any(|&t| t != image_token) {
                return Err(EngineError::InvalidRequest(
                    "an image's place in the prompt does not hold its image tokens".into(),
                ));
            }
            for (k, slot) in cache_tokens[span].iter_mut().enumerate() {
                let mut hasher = Sha256::new();
                hasher.update(input.image.digest);
                hasher.update((k as u64).to_le_bytes());
                let digest = hasher.finalize();
                // The top bit set: never a token id of any vocabulary.
                *slot = u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]) | 0x8000_0000;
            }
        }
        Ok(Self {
            images: images
                .into_iter()
                .map(|i| SequenceImage {
                    start: i.start,
                    image: i.image,
                    features: None,
                })
                .collect(),
            positions,
            delta,
            cache_tokens,
        })
    }

    /// The positions of tokens `range` (prompt or generated).
    pub(crate) fn positions(&self, range: std::ops::Range<usize>) -> Vec<[u32; 3]> {
        range
            .map(|i| match self.positions.get(i) {
                Some(p) => *p,
                None => [(i as i64 + self.delta).max(0) as u32; 3],
            })
            .collect()
    }

    /// The image rows among tokens `range`.
    pub(crate) fn visual_rows(&self, range: std::ops::Range<usize>) -> Vec<VisualRows<'_>> {
        self.images
            .iter()
            .filter_map(|image| {
                let span = image.span();
                let (from, to) = (span.start.max(range.start), span.end.min(range.end));
                let features = image.features.as_deref()?;
                (from < to).then(|| VisualRows {
                    row: from - range.start,
                    features,
                    from: from - span.start,
                    len: to - from,
                })
            })
            .collect()
    }
}

impl Scheduler {
    /// Encodes, in one call, every image that `work` reaches and that has no features yet.
    pub(super) fn encode_images(&mut self, work: &[Scheduled]) -> Result<(), EngineError> {
        let mut wanted: Vec<(usize, usize)> = Vec::new();
        for w in work {
            let sequence = &self.running[w.index];
            let Some(vision) = &sequence.vision else { continue };
            let range = sequence.computed..sequence.computed + w.tokens;
            for (i, image) in vision.images.iter().enumerate() {
                let span = image.span();
                if image.features.is_none() && span.start < range.end && range.start < span.end {
                    wanted.push((w.index, i));
                }
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let Some(encoder) = &self.vision else {
            return Err(EngineError::InvalidRequest("this model cannot see images".into()));
        };
        let images: Vec<Arc<PreparedImage>> = wanted
            .iter()
            .map(|&(s, i)| {
                self.running[s].vision.as_ref().expect("checked above").images[i]
                    .image
                    .clone()
            })
            .collect();
        let refs: Vec<&PreparedImage> = images.iter().map(Arc::as_ref).collect();
        let started = std::time::Instant::now();
        let features = encoder.encode(&refs)?;
        self.metrics.images_encoded(refs.len(), started.elapsed());
        for ((s, i), features) in wanted.into_iter().zip(features) {
            if let Some(vision) = self.running[s].vision.as_mut() {
                vision.images[i].features = Some(Arc::new(features));
            }
        }
        Ok(())
    }
}
