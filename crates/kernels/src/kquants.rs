//! The K-quant layouts (GGUF Q4_K, Q5_K, Q6_K): super-blocks of 256 inputs, read from the file
//! and repacked into tiles of 8 outputs like the 32-input formats of [`super::packed`].
//!
//! A GGUF K-quant block holds 256 weights of one output: Q4_K and Q5_K as eight sub-blocks of
//! 32 with a 6-bit scale and a 6-bit minimum each (value = d × scale × code − dmin × min), Q6_K
//! as sixteen sub-blocks of 16 with a signed 8-bit scale each (value = d × scale × (code − 32)).
//! One tile entry here is one super-block of a tile's 8 outputs: its eight sub-blocks of 32
//! inputs each laid out as one block of [`super::packed::TileQ4_0`] (low nibbles) with the
//! upper bits beside them, and the integer sub-block scales kept as integers, so that a kernel
//! multiplies a sub-block's integer dot product by its scale in integers (`madd` against the
//! scales instead of against ones) and does one float multiply-add per sub-block, as for Q4_1.
//! `d × scale` is never rounded: the f16 super-block scales stay as they are in the file.
//!
//! The kernels read activations in blocks of 32 with their own f32 scale (the same activation
//! rows as every other format, not ggml's Q8_K with one scale per 256), so sub-block `j` of
//! super-block `b` meets activation block `8b + j`.

use super::packed::{half_bits, pack_blocks, pack_fifth_bits, pack_nibbles, QK, TILE_COLS};

/// Inputs in one K-quant super-block.
pub(crate) const QK_K: usize = 256;
/// 32-input sub-blocks in a super-block.
pub(crate) const SUB_BLOCKS: usize = QK_K / QK;

/// One super-block of 8 outputs of Q4_K weights.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(32))]
pub(crate) struct TileQ4K {
    /// Sub-block `j` (inputs `32j..32j + 32`), as [`super::packed::TileQ4_0::qs`].
    pub(crate) qs: [[[u8; 32]; 4]; SUB_BLOCKS],
    /// `scales[j][c]`: the 6-bit scale of sub-block `j` of output `c`.
    pub(crate) scales: [[u8; TILE_COLS]; SUB_BLOCKS],
    /// `mins[j][c]`: the 6-bit minimum of sub-block `j` of output `c`.
    pub(crate) mins: [[u8; TILE_COLS]; SUB_BLOCKS],
    /// The f16 scale of each output's super-block.
    pub(crate) d: [u16; TILE_COLS],
    /// The f16 scale of each output's minimums.
    pub(crate) dmin: [u16; TILE_COLS],
}

/// One super-block of 8 outputs of Q5_K weights: [`TileQ4K`] and the fifth bits.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(32))]
pub(crate) struct TileQ5K {
    /// As [`TileQ4K::qs`] (the low four bits of each code).
    pub(crate) qs: [[[u8; 32]; 4]; SUB_BLOCKS],
    /// Sub-block `j`'s fifth bits, as [`super::packed::TileQ5_0::qh`].
    pub(crate) qh: [[u8; 32]; SUB_BLOCKS],
    /// As [`TileQ4K::scales`].
    pub(crate) scales: [[u8; TILE_COLS]; SUB_BLOCKS],
    /// As [`TileQ4K::mins`].
    pub(crate) mins: [[u8; TILE_COLS]; SUB_BLOCKS],
    /// As [`TileQ4K::d`].
    pub(crate) d: [u16; TILE_COLS],
    /// As [`TileQ4K::dmin`].
    pub(crate) dmin: [u16; TILE_COLS],
}

/// One super-block of 8 outputs of Q6_K weights (codes 0..=63, value = d × scale × (code − 32)).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(32))]
pub(crate) struct TileQ6K {
    /// As [`TileQ4K::qs`] (the low four bits of each code).
    pub(crate) qs: [[[u8; 32]; 4]; SUB_BLOCKS],
    /// Sub-block `j`'s two upper bits: `qh[j][p]` byte `4c + i` holds, for the groups
    /// `h = 2p` (bits 0..4) and `h = 2p + 1` (bits 4..8), the two upper bits of input `8h + i`
    /// of output `c` (the low nibble of byte `4c + i` of `qs[j][h]`) and then those of input
    /// `8h + 4 + i` (its high nibble). One shift and one mask move them to bits 4 and 5.
    pub(crate) qh: [[[u8; 32]; 2]; SUB_BLOCKS],
    /// `scales[2j + half][c]`: the signed scale of inputs `32j + 16 half..32j + 16 half + 16`
    /// of output `c` (half 0: groups 0 and 1 of sub-block `j`, half 1: groups 2 and 3).
    pub(crate) scales: [[i8; TILE_COLS]; 2 * SUB_BLOCKS],
    /// The f16 scale of each output's super-block.
    pub(crate) d: [u16; TILE_COLS],
}

/// The two tiles with a scale and a minimum per 32 inputs, for kernels written once for both.
pub(crate) trait ScaledNibbles: Copy + Send + Sync {
    /// True for Q5_K (a fifth bit per code), false for Q4_K.
    const FIVE_BITS: bool;
    /// The low four bits of sub-block `j`'s codes.
    fn qs(&self, j: usize) -> &[[u8; 32]; 4];
    /// Sub-block `j`'s fifth bits (zeros for Q4_K, never read there).
    fn qh(&self, j: usize) -> &[u8; 32];
    /// The 6-bit scales, by sub-block then output.
    fn scales(&self) -> &[[u8; TILE_COLS]; SUB_BLOCKS];
    /// The 6-bit minimums, by sub-block then output.
    fn mins(&self) -> &[[u8; TILE_COLS]; SUB_BLOCKS];
    /// The f16 super-block scales.
    fn d(&self) -> &[u16; TILE_COLS];
    /// The f16 scales of the minimums.
    fn dmin(&self) -> &[u16; TILE_COLS];
}

impl ScaledNibbles for TileQ4K {
    const FIVE_BITS: bool = false;
    fn qs(&self, j: usize) -> &[[u8; 32]; 4] {
        &self.qs[j]
    }
    fn qh(&self, _: usize) -> &[u8; 32] {
        &[0; 32]
    }
    fn scales(&self) -> &[[u8; TILE_COLS]; SUB_BLOCKS] {
        &self.scales
    }
    fn mins(&self) -> &[[u8; TILE_COLS]; SUB_BLOCKS] {
        &self.mins
    }
    fn d(&self) -> &[u16; TILE_COLS] {
        &self.d
    }
    fn dmin(&self) -> &[u16; TILE_COLS] {
        &self.dmin
    }
}

impl ScaledNibbles for TileQ5K {
    const FIVE_BITS: bool = true;
    fn qs(&self, j: usize) -> &[[u8; 32]; 4] {
        &self.qs[j]
    }
    fn qh(&self, j: usize) -> &[u8; 32] {
        &self.qh[j]
    }
    fn scales(&self) -> &[[u8; TILE_COLS]; SUB_BLOCKS] {
        &self.scales
    }
    fn mins(&self) -> &[[u8; TILE_COLS]; SUB_BLOCKS] {
        &self.mins
    }
    fn d(&self) -> &[u16; TILE_COLS] {
        &self.d
    }
    fn dmin(&self) -> &[u16; TILE_COLS] {
        &self.dmin
    }
}

/// Bytes of one GGUF Q4_K block: f16 d, f16 dmin, 12 bytes of packed scales and minimums, 128
/// nibble bytes.
const Q4K_BYTES: usize = 144;
/// Bytes of one GGUF Q5_K block: as Q4_K with 32 bytes of fifth bits before the nibbles.
const Q5K_BYTES: usize = 176;
/// Bytes of one GGUF Q6_K block: 128 nibble bytes, 64 bytes of upper bits, 16 signed scales,
/// f16 d.
const Q6K_BYTES: usize = 210;

/// Repacks the raw GGUF Q4_K data of an `n × k` matrix (`k` a multiple of 256).
pub(crate) fn pack_q4k(data: &[u8], n: usize, k: usize) -> Vec<TileQ4K> {
    pack_blocks(data, (n, k), (QK_K, Q4K_BYTES), |blocks| {
        let mut tile = TileQ4K::default();
        for (c, block) in blocks.iter().enumerate() {
            if let Some(block) = block {
                tile.d[c] = half_bits(block, 0);
                tile.dmin[c] = half_bits(block, 2);
                let codes = q45k_codes(&block[16..144], None);
                for j in 0..SUB_BLOCKS {
                    (tile.scales[j][c], tile.mins[j][c]) = scale_min_k4(j, &block[4..16]);
                    pack_nibbles(&mut tile.qs[j], c, &codes[QK * j..QK * (j + 1)]);
                }
            }
        }
        tile
    })
}

/// Repacks the raw GGUF Q5_K data of an `n × k` matrix (`k` a multiple of 256).
pub(crate) fn pack_q5k(data: &[u8], n: usize, k: usize) -> Vec<TileQ5K> {
    pack_blocks(data, (n, k), (QK_K, Q5K_BYTES), |blocks| {
        let mut tile = TileQ5K::default();
        for (c, block) in blocks.iter().enumerate() {
            if let Some(block) = block {
                tile.d[c] = half_bits(block, 0);
                tile.dmin[c] = half_bits(block, 2);
                let codes = q45k_codes(&block[48..176], Some(&block[16..48]));
                for j in 0..SUB_BLOCKS {
                    (tile.scales[j][c], tile.mins[j][c]) = scale_min_k4(j, &block[4..16]);
                    pack_nibbles(&mut tile.qs[j], c, &codes[QK * j..QK * (j + 1)]);
                    pack_fifth_bits(&mut tile.qh[j], c, &codes[QK * j..QK * (j + 1)]);
                }
            }
        }
        tile
    })
}

/// Repacks the raw GGUF Q6_K data of an `n × k` matrix (`k` a multiple of 256).
pub(crate) fn pack_q6k(data: &[u8], n: usize, k: usize) -> Vec<TileQ6K> {
    pack_blocks(data, (n, k), (QK_K, Q6K_BYTES), |blocks| {
        let mut tile = TileQ6K::default();
        for (c, block) in blocks.iter().enumerate() {
            if let Some(block) = block {
                tile.d[c] = half_bits(block, 208);
                for (s, &scale) in block[192..208].iter().enumerate() {
                    tile.scales[s][c] = scale as i8;
                }
                let codes = q6k_codes(&block[..128], &block[128..192]);
                for j in 0..SUB_BLOCKS {
                    pack_nibbles(&mut tile.qs[j], c, &codes[QK * j..QK * (j + 1)]);
                    pack_upper_pairs(&mut tile.qh[j], c, &codes[QK * j..QK * (j + 1)]);
                }
            }
        }
        tile
    })
}

/// Scale and minimum of sub-block `j` from a Q4_K / Q5_K block's 12 packed bytes: the first
/// four in the low six bits of bytes 0..4 and 4..8, the last four in the nibbles of bytes
/// 8..12 with their two upper bits in the top bits of bytes 0..8 (ggml's `get_scale_min_k4`).
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The 256 codes of a Q4_K / Q5_K block in input order: each 64 inputs are 32 nibble bytes
/// (low nibbles the first 32 inputs, high nibbles the next 32), and bit `2i` / `2i + 1` of
/// byte `l` of the 32 fifth-bit bytes (Q5_K) is the fifth bit of input `64i + l` / `64i + 32 + l`.
fn q45k_codes(nibbles: &[u8], fifth: Option<&[u8]>) -> [u8; QK_K] {
    std::array::from_fn(|i| {
        let (part, l, high) = (i / 64, i % 32, (i % 64) >= 32);
        let byte = nibbles[32 * part + l];
        let low = if high { byte >> 4 } else { byte & 0x0F };
        let bit = 2 * part + usize::from(high);
        low | fifth.map_or(0, |qh| ((qh[l] >> bit) & 1) << 4)
    })
}

/// The 256 codes (0..=63) of a Q6_K block in input order: each 128 inputs are 64 nibble bytes
/// and 32 bytes of upper bit pairs; input `128p + 32s + l` takes the low (s = 0, 1) or high
/// (s = 2, 3) nibble of byte `64p + l + 32 (s % 2)` and bits `2s..2s + 2` of byte `32p + l`.
fn q6k_codes(low: &[u8], high: &[u8]) -> [u8; QK_K] {
    std::array::from_fn(|i| {
        let (p, s, l) = (i / 128, (i % 128) / 32, i % 32);
        let byte = low[64 * p + l + 32 * (s % 2)];
        let nibble = if s < 2 { byte & 0x0F } else { byte >> 4 };
        nibble | (((high[32 * p + l] >> (2 * s)) & 3) << 4)
    })
}

/// Spreads bits 4 and 5 of 32 codes (in input order) into output `c` of a Q6_K sub-block's
/// upper bits (see [`TileQ6K::qh`]).
fn pack_upper_pairs(qh: &mut [[u8; 32]; 2], c: usize, codes: &[u8]) {
    let pair = |i: usize| (codes[i] >> 4) & 3;
    for h in 0..4 {
        let shift = 4 * (h % 2);
        for i in 0..4 {
            qh[h / 2][4 * c + i] |= (pair(8 * h + i) << shift) | (pair(8 * h + 4 + i) << (shift + 2));
        }
    }
}
