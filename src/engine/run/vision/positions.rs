//! Multimodal rotary positions (M-RoPE) of Qwen3-VL.
//!
//! Every token has three positions: time, row, column. Text tokens advance all three
//! together, one per token, so a text-only prompt has exactly the ordinary 1-D positions. An
//! image of `rows × cols` tokens starting where the next position is `p` gives its token
//! `(r, c)` the position `(p, p + r, p + c)`; the text after it continues at
//! `p + max(rows, cols)`. A prompt with images therefore ends before its length: the
//! difference (`delta`, never positive) is added to every later position, all three axes
//! alike (Hugging Face's `get_rope_index` and `rope_deltas`).
//!
//! The rotary frequencies are split among the axes in an interleaved pattern
//! ([`MropeSection`]): frequency `j` turns with the row position when `j % 3 == 1` and
//! `j < 3 × rows_section`, with the column when `j % 3 == 2` and `j < 3 × cols_section`, and
//! with time otherwise.

use crate::engine::error::EngineError;

/// Where one image's tokens sit in a prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageGrid {
    /// Its first token's index in the prompt.
    pub start: usize,
    /// Token rows.
    pub rows: usize,
    /// Token columns.
    pub cols: usize,
}

impl ImageGrid {
    /// Its tokens.
    pub fn tokens(&self) -> usize {
        self.rows * self.cols
    }
}

/// The positions of a prompt of `len` tokens holding `images` (in order, not overlapping):
/// `[time, row, column]` per token, and the delta added to the positions of tokens after the
/// prompt.
pub fn mrope_positions(len: usize, images: &[ImageGrid]) -> Result<(Vec<[u32; 3]>, i64), EngineError> {
    let mut positions = Vec::with_capacity(len);
    let mut next = 0usize;
    let mut cursor = 0usize;
    let text = |positions: &mut Vec<[u32; 3]>, next: &mut usize, count: usize| {
        for _ in 0..count {
            let p = *next as u32;
            positions.push([p, p, p]);
            *next += 1;
        }
    };
    for image in images {
        if image.start < cursor || image.start + image.tokens() > len || image.tokens() == 0 {
            return Err(EngineError::InvalidRequest(format!(
                "an image's tokens ({}..{}) overlap another's or leave the prompt of {len} tokens",
                image.start,
                image.start + image.tokens()
            )));
        }
        text(&mut positions, &mut next, image.start - cursor);
        let base = next as u32;
        for r in 0..image.rows {
            for c in 0..image.cols {
                positions.push([base, base + r as u32, base + c as u32]);
            }
        }
        next += image.rows.max(image.cols);
        cursor = image.start + image.tokens();
    }
    text(&mut positions, &mut next, len - cursor);
    Ok((positions, next as i64 - len as i64))
}

/// How the rotary frequencies are shared among time, rows and columns (`mrope_section`,
/// interleaved as Qwen3-VL does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MropeSection(pub [usize; 3]);

impl MropeSection {
    /// The axis (0 time, 1 row, 2 column) of each of `half` frequencies.
    pub fn axes(&self, half: usize) -> Vec<usize> {
        let [_, rows, cols] = self.0;
        (0..half)
            .map(|j| match j % 3 {
                1 if j < 3 * rows => 1,
                2 if j < 3 * cols => 2,
                _ => 0,
            })
            .collect()
    }
}
