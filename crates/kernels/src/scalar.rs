//! Portable micro-kernels: one column tile (8 outputs) for `R` activation rows.
//!
//! They do, for every output, exactly the operations of the AVX2 kernels in the same order
//! (exact integer block sums, then `acc = fma(sum, d_w × d_x, acc)` block after block, and
//! `acc = fma(m_w, s_x, acc)` for Q4_1), so their results are bit-identical to them. The
//! K-quants multiply a sub-block's integer sum by its integer scale before the float step.

use super::activations::Q8Block;
use super::f16::f16_to_f32;
use super::kquants::{ScaledNibbles, TileQ6K, SUB_BLOCKS};
use super::packed::{FiveBits, Nibbles, TileQ8_0, TILE_COLS};

/// Dot products of `R` quantized rows with one tile of 4-bit weights (`tiles`: its blocks).
pub(crate) fn q4<T: Nibbles, const R: usize>(tiles: &[T], rows: [&[Q8Block]; R]) -> [[f32; TILE_COLS]; R] {
    let mut acc = [[0f32; TILE_COLS]; R];
    for (b, tile) in tiles.iter().enumerate() {
        let d = tile.d().map(f16_to_f32);
        let m = tile.m().map(f16_to_f32);
        for (acc, row) in acc.iter_mut().zip(rows) {
            let x = &row[b];
            for (c, acc) in acc.iter_mut().enumerate() {
                let mut sum = 0i32;
                for (h, group) in tile.qs().iter().enumerate() {
                    for j in 0..4 {
                        let byte = group[4 * c + j];
                        sum += i32::from(byte & 0x0F) * i32::from(x.qs[8 * h + j])
                            + i32::from(byte >> 4) * i32::from(x.qs[8 * h + 4 + j]);
                    }
                }
                if !T::HAS_MIN {
                    sum -= 8 * x.qsum;
                }
                *acc = (sum as f32).mul_add(d[c] * x.d, *acc);
                if T::HAS_MIN {
                    *acc = m[c].mul_add(x.s, *acc);
                }
            }
        }
    }
    acc
}

/// Dot products of `R` quantized rows with one tile of 5-bit weights (`tiles`: its blocks).
pub(crate) fn q5<T: FiveBits, const R: usize>(tiles: &[T], rows: [&[Q8Block]; R]) -> [[f32; TILE_COLS]; R] {
    let mut acc = [[0f32; TILE_COLS]; R];
    for (b, tile) in tiles.iter().enumerate() {
        let d = tile.d().map(f16_to_f32);
        let m = tile.m().map(f16_to_f32);
        for (acc, row) in acc.iter_mut().zip(rows) {
            let x = &row[b];
            for (c, acc) in acc.iter_mut().enumerate() {
                let mut sum = 0i32;
                for (h, group) in tile.qs().iter().enumerate() {
                    for j in 0..4 {
                        let (byte, high) = (group[4 * c + j], tile.qh()[4 * c + j]);
                        let fifth = |at: usize| ((high >> at) & 1) << 4;
                        let lo = (byte & 0x0F) | fifth(2 * h);
                        let hi = (byte >> 4) | fifth(2 * h + 1);
                        sum +=
                            i32::from(lo) * i32::from(x.qs[8 * h + j]) + i32::from(hi) * i32::from(x.qs[8 * h + 4 + j]);
                    }
                }
                if !T::HAS_MIN {
                    sum -= 16 * x.qsum;
                }
                *acc = (sum as f32).mul_add(d[c] * x.d, *acc);
                if T::HAS_MIN {
                    *acc = m[c].mul_add(x.s, *acc);
                }
            }
        }
    }
    acc
}

/// Dot products of `R` quantized rows with one tile of Q4_K or Q5_K weights (`tiles`: its
/// super-blocks): per sub-block, `acc = fma(scale × Σ code × x, d × d_x, acc)` then
/// `acc = fma(−(dmin × min), s_x, acc)`.
pub(crate) fn q45k<T: ScaledNibbles, const R: usize>(tiles: &[T], rows: [&[Q8Block]; R]) -> [[f32; TILE_COLS]; R] {
    let mut acc = [[0f32; TILE_COLS]; R];
    for (b, tile) in tiles.iter().enumerate() {
        let d = tile.d().map(f16_to_f32);
        let dmin = tile.dmin().map(f16_to_f32);
        for j in 0..SUB_BLOCKS {
            let (qs, qh) = (tile.qs(j), tile.qh(j));
            let (scales, mins) = (tile.scales()[j], tile.mins()[j]);
            for (acc, row) in acc.iter_mut().zip(rows) {
                let x = &row[SUB_BLOCKS * b + j];
                for (c, acc) in acc.iter_mut().enumerate() {
                    let mut sum = 0i32;
                    for (h, group) in qs.iter().enumerate() {
                        for i in 0..4 {
                            let (byte, high) = (group[4 * c + i], qh[4 * c + i]);
                            let fifth = |at: usize| if T::FIVE_BITS { ((high >> at) & 1) << 4 } else { 0 };
                            let lo = (byte & 0x0F) | fifth(2 * h);
                            let hi = (byte >> 4) | fifth(2 * h + 1);
                            sum += i32::from(lo) * i32::from(x.qs[8 * h + i])
                                + i32::from(hi) * i32::from(x.qs[8 * h + 4 + i]);
                        }
                    }
                    let sum = sum * i32::from(scales[c]);
                    *acc = (sum as f32).mul_add(d[c] * x.d, *acc);
                    let min = dmin[c] * f32::from(mins[c]);
                    *acc = (-min).mul_add(x.s, *acc);
                }
            }
        }
    }
    acc
}

/// Dot products of `R` quantized rows with one tile of Q6_K weights (`tiles`: its
/// super-blocks): per sub-block, the integer sum of `scale × (code − 32) × x` over its two
/// halves, then `acc = fma(sum, d × d_x, acc)`.
// A half's groups index the codes, their upper bits and the activations in step.
#[allow(clippy::needless_range_loop)]
pub(crate) fn q6k<const R: usize>(tiles: &[TileQ6K], rows: [&[Q8Block]; R]) -> [[f32; TILE_COLS]; R] {
    let mut acc = [[0f32; TILE_COLS]; R];
    for (b, tile) in tiles.iter().enumerate() {
        let d = tile.d.map(f16_to_f32);
        for j in 0..SUB_BLOCKS {
            let (qs, qh) = (&tile.qs[j], &tile.qh[j]);
            let scales = [tile.scales[2 * j], tile.scales[2 * j + 1]];
            for (acc, row) in acc.iter_mut().zip(rows) {
                let x = &row[SUB_BLOCKS * b + j];
                for (c, acc) in acc.iter_mut().enumerate() {
                    let mut sum = 0i32;
                    for half in 0..2 {
                        let mut half_sum = 0i32;
                        for h in 2 * half..2 * half + 2 {
                            for i in 0..4 {
                                let (byte, high) = (qs[h][4 * c + i], qh[half][4 * c + i]);
                                let shift = 4 * (h % 2);
                                let lo = (byte & 0x0F) | (((high >> shift) & 3) << 4);
                                let hi = (byte >> 4) | (((high >> (shift + 2)) & 3) << 4);
                                half_sum += i32::from(lo) * i32::from(x.qs[8 * h + i])
                                    + i32::from(hi) * i32::from(x.qs[8 * h + 4 + i]);
                            }
                        }
                        let offset = 32 * i32::from(x.half_sums[half]);
                        sum += i32::from(scales[half][c]) * (half_sum - offset);
                    }
                    *acc = (sum as f32).mul_add(d[c] * x.d, *acc);
                }
            }
        }
    }
    acc
}

/// Dot products of `R` quantized rows with one tile of Q8_0 weights.
pub(crate) fn q8<const R: usize>(tiles: &[TileQ8_0], rows: [&[Q8Block]; R]) -> [[f32; TILE_COLS]; R] {
    let mut acc = [[0f32; TILE_COLS]; R];
    for (b, tile) in tiles.iter().enumerate() {
        let d = tile.d.map(f16_to_f32);
        for (acc, row) in acc.iter_mut().zip(rows) {
            let x = &row[b];
            for (c, acc) in acc.iter_mut().enumerate() {
                let mut sum = 0i32;
                for (g, group) in tile.qs.iter().enumerate() {
                    for j in 0..4 {
                        sum += (i32::from(group[4 * c + j]) - 128) * i32::from(x.qs[4 * g + j]);
                    }
                }
                *acc = (sum as f32).mul_add(d[c] * x.d, *acc);
            }
        }
    }
    acc
}

/// Dot products of `R` f32 rows with one tile of f32 weights (`tiles`: one entry per input).
pub(crate) fn f32s<const R: usize>(tiles: &[[f32; TILE_COLS]], rows: [&[f32]; R]) -> [[f32; TILE_COLS]; R] {
    let mut acc = [[0f32; TILE_COLS]; R];
    for (i, w) in tiles.iter().enumerate() {
        for (acc, row) in acc.iter_mut().zip(rows) {
            let x = row[i];
            for (acc, &w) in acc.iter_mut().zip(w) {
                *acc = x.mul_add(w, *acc);
            }
        }
    }
    acc
}
