//! The weight layouts the kernels read, and the repacking into them from GGUF blocks.
//!
//! The n output rows of a weight matrix are cut into column tiles of [`TILE_COLS`] outputs
//! (the last one padded with zero weights). For each tile, the blocks of 32 inputs follow one
//! another (tile `t`, block `b` at index `t * blocks + b`), and one block of a tile holds the
//! 32 weights of each of its 8 outputs interleaved four at a time: bytes `4c..4c + 4` of a
//! 32-byte group belong to output `c`, so one 256-bit register holds four consecutive inputs of
//! eight outputs, and a dot product against four broadcast activation bytes yields the eight
//! outputs in the eight 32-bit lanes: no horizontal sums, one scale vector per block. Scales
//! stay the f16 bits of the file. The K-quants' super-blocks of 256 are laid out the same way,
//! eight blocks of 32 to an entry ([`super::kquants`]).

use candle_core::quantized::GgmlDType;

use super::kquants::{pack_q4k, pack_q5k, pack_q6k, TileQ4K, TileQ5K, TileQ6K, QK_K};

/// Output columns in one tile: one 256-bit register of f32 or of 32-bit integer sums.
pub(crate) const TILE_COLS: usize = 8;
/// Inputs in one quantized block.
pub(crate) const QK: usize = 32;

/// One block of 8 outputs of Q4_0 weights (value = d × (code − 8)).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(16))]
pub(crate) struct TileQ4_0 {
    /// Group `h`: byte `4c + j` holds input `8h + j` of output `c` in its low nibble and input
    /// `8h + 4 + j` in its high nibble.
    pub(crate) qs: [[u8; 32]; 4],
    /// The f16 scale of each output.
    pub(crate) d: [u16; TILE_COLS],
}

/// One block of 8 outputs of Q4_1 weights (value = d × code + m).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(16))]
pub(crate) struct TileQ4_1 {
    /// As [`TileQ4_0::qs`].
    pub(crate) qs: [[u8; 32]; 4],
    /// The f16 scale of each output.
    pub(crate) d: [u16; TILE_COLS],
    /// The f16 minimum of each output.
    pub(crate) m: [u16; TILE_COLS],
}

/// One block of 8 outputs of Q5_0 weights (value = d × (code − 16)): the low four bits of
/// each code as in [`TileQ4_0`], the fifth bits of the four groups in one 32-byte vector.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(16))]
pub(crate) struct TileQ5_0 {
    /// As [`TileQ4_0::qs`] (the low four bits of each code).
    pub(crate) qs: [[u8; 32]; 4],
    /// Byte `4c + j`: bit `2h` is the fifth bit of input `8h + j` of output `c` (the low nibble
    /// of byte `4c + j` of `qs[h]`), bit `2h + 1` that of input `8h + 4 + j` (its high nibble).
    /// A kernel moves bit `2h` or `2h + 1` to bit 4 with one shift and one mask per group.
    pub(crate) qh: [u8; 32],
    /// The f16 scale of each output.
    pub(crate) d: [u16; TILE_COLS],
}

/// One block of 8 outputs of Q5_1 weights (value = d × code + m).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(16))]
pub(crate) struct TileQ5_1 {
    /// As [`TileQ5_0::qs`].
    pub(crate) qs: [[u8; 32]; 4],
    /// As [`TileQ5_0::qh`].
    pub(crate) qh: [u8; 32],
    /// The f16 scale of each output.
    pub(crate) d: [u16; TILE_COLS],
    /// The f16 minimum of each output.
    pub(crate) m: [u16; TILE_COLS],
}

/// One block of 8 outputs of Q8_0 weights (value = d × q).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(16))]
pub(crate) struct TileQ8_0 {
    /// Group `g`: byte `4c + j` is input `4g + j` of output `c`, in offset binary (the code
    /// plus 128, 0..=255): VNNI's unsigned-by-signed `vpdpbusd` takes it as it is and the offset
    /// comes out with the activations' block sum, as Q4_0's −8 does; the other kernels flip the
    /// top bit back once per group, shared by all rows.
    pub(crate) qs: [[u8; 32]; 8],
    /// The f16 scale of each output.
    pub(crate) d: [u16; TILE_COLS],
}

/// The two 4-bit tiles, for kernels written once for both.
pub(crate) trait Nibbles: Copy + Send + Sync {
    /// True for Q4_1 (a per-block minimum), false for Q4_0 (the fixed offset −8).
    const HAS_MIN: bool;
    /// The packed codes.
    fn qs(&self) -> &[[u8; 32]; 4];
    /// The f16 scales.
    fn d(&self) -> &[u16; TILE_COLS];
    /// The f16 minimums (zeros for Q4_0, never read there).
    fn m(&self) -> &[u16; TILE_COLS];
}

impl Nibbles for TileQ4_0 {
    const HAS_MIN: bool = false;
    fn qs(&self) -> &[[u8; 32]; 4] {
        &self.qs
    }
    fn d(&self) -> &[u16; TILE_COLS] {
        &self.d
    }
    fn m(&self) -> &[u16; TILE_COLS] {
        &[0; TILE_COLS]
    }
}

impl Nibbles for TileQ4_1 {
    const HAS_MIN: bool = true;
    fn qs(&self) -> &[[u8; 32]; 4] {
        &self.qs
    }
    fn d(&self) -> &[u16; TILE_COLS] {
        &self.d
    }
    fn m(&self) -> &[u16; TILE_COLS] {
        &self.m
    }
}

/// The two 5-bit tiles, for kernels written once for both.
pub(crate) trait FiveBits: Copy + Send + Sync {
    /// True for Q5_1 (a per-block minimum), false for Q5_0 (the fixed offset −16).
    const HAS_MIN: bool;
    /// The low four bits of the codes.
    fn qs(&self) -> &[[u8; 32]; 4];
    /// The fifth bits.
    fn qh(&self) -> &[u8; 32];
    /// The f16 scales.
    fn d(&self) -> &[u16; TILE_COLS];
    /// The f16 minimums (zeros for Q5_0, never read there).
    fn m(&self) -> &[u16; TILE_COLS];
}

impl FiveBits for TileQ5_0 {
    const HAS_MIN: bool = false;
    fn qs(&self) -> &[[u8; 32]; 4] {
        &self.qs
    }
    fn qh(&self) -> &[u8; 32] {
        &self.qh
    }
    fn d(&self) -> &[u16; TILE_COLS] {
        &self.d
    }
    fn m(&self) -> &[u16; TILE_COLS] {
        &[0; TILE_COLS]
    }
}

impl FiveBits for TileQ5_1 {
    const HAS_MIN: bool = true;
    fn qs(&self) -> &[[u8; 32]; 4] {
        &self.qs
    }
    fn qh(&self) -> &[u8; 32] {
        &self.qh
    }
    fn d(&self) -> &[u16; TILE_COLS] {
        &self.d
    }
    fn m(&self) -> &[u16; TILE_COLS] {
        &self.m
    }
}

/// A weight matrix in the kernels' layout.
#[derive(Clone, Debug)]
pub(crate) enum Packed {
    /// 4-bit codes with a scale per block; tiles × blocks entries.
    Q4_0(Vec<TileQ4_0>),
    /// 4-bit codes with a scale and a minimum per block; tiles × blocks entries.
    Q4_1(Vec<TileQ4_1>),
    /// 5-bit codes with a scale per block; tiles × blocks entries.
    Q5_0(Vec<TileQ5_0>),
    /// 5-bit codes with a scale and a minimum per block; tiles × blocks entries.
    Q5_1(Vec<TileQ5_1>),
    /// 8-bit codes with a scale per block; tiles × blocks entries.
    Q8_0(Vec<TileQ8_0>),
    /// 4-bit codes with 6-bit scales and minimums per 32, f16 scales per 256; tiles × super-blocks
    /// entries.
    Q4K(Vec<TileQ4K>),
    /// 5-bit codes, scaled as Q4_K; tiles × super-blocks entries.
    Q5K(Vec<TileQ5K>),
    /// 6-bit codes with 8-bit scales per 16, an f16 scale per 256; tiles × super-blocks entries.
    Q6K(Vec<TileQ6K>),
    /// Plain f32: tile `t`, input `i` at `t * k + i`, one value per output of the tile.
    F32(Vec<[f32; TILE_COLS]>),
}

impl Packed {
    /// Repacks the raw GGUF data of an `n × k` matrix of `dtype` (rows of `k / 32` blocks, of
    /// `k / 256` K-quant super-blocks, or of `k` floats). `None` for a dtype without a layout
    /// here.
    pub(crate) fn from_gguf(dtype: GgmlDType, data: &[u8], n: usize, k: usize) -> Option<Self> {
        let tiles = n.div_ceil(TILE_COLS);
        let packed = match dtype {
            GgmlDType::Q4_0 => Self::Q4_0(pack_blocks(data, (n, k), (QK, 18), |blocks| {
                let mut tile = TileQ4_0::default();
                for (c, block) in blocks.iter().enumerate() {
                    if let Some(block) = block {
                        tile.d[c] = half_bits(block, 0);
                        pack_nibbles(&mut tile.qs, c, &gguf_codes(&block[2..18], 0));
                    }
                }
                tile
            })),
            GgmlDType::Q4_1 => Self::Q4_1(pack_blocks(data, (n, k), (QK, 20), |blocks| {
                let mut tile = TileQ4_1::default();
                for (c, block) in blocks.iter().enumerate() {
                    if let Some(block) = block {
                        tile.d[c] = half_bits(block, 0);
                        tile.m[c] = half_bits(block, 2);
                        pack_nibbles(&mut tile.qs, c, &gguf_codes(&block[4..20], 0));
                    }
                }
                tile
            })),
            // GGUF Q5_0: f16 d, 4 bytes of fifth bits (bit i: input i), 16 nibble bytes.
            GgmlDType::Q5_0 => Self::Q5_0(pack_blocks(data, (n, k), (QK, 22), |blocks| {
                let mut tile = TileQ5_0::default();
                for (c, block) in blocks.iter().enumerate() {
                    if let Some(block) = block {
                        tile.d[c] = half_bits(block, 0);
                        let codes = gguf_codes(&block[6..22], fifth_word(&block[2..6]));
                        pack_nibbles(&mut tile.qs, c, &codes);
                        pack_fifth_bits(&mut tile.qh, c, &codes);
                    }
                }
                tile
            })),
            // GGUF Q5_1: f16 d, f16 m, 4 bytes of fifth bits, 16 nibble bytes.
            GgmlDType::Q5_1 => Self::Q5_1(pack_blocks(data, (n, k), (QK, 24), |blocks| {
                let mut tile = TileQ5_1::default();
                for (c, block) in blocks.iter().enumerate() {
                    if let Some(block) = block {
                        tile.d[c] = half_bits(block, 0);
                        tile.m[c] = half_bits(block, 2);
                        let codes = gguf_codes(&block[8..24], fifth_word(&block[4..8]));
                        pack_nibbles(&mut tile.qs, c, &codes);
                        pack_fifth_bits(&mut tile.qh, c, &codes);
                    }
                }
                tile
            })),
            GgmlDType::Q8_0 => Self::Q8_0(pack_blocks(data, (n, k), (QK, 34), |blocks| {
                let mut tile = TileQ8_0::default();
                for (c, block) in blocks.iter().enumerate() {
                    if let Some(block) = block {
                        tile.d[c] = half_bits(block, 0);
                        for (i, &q) in block[2..34].iter().enumerate() {
                            tile.qs[i / 4][4 * c + i % 4] = q ^ 0x80;
                        }
                    }
                }
                tile
            })),
            GgmlDType::Q4K => Self::Q4K(pack_q4k(data, n, k)),
            GgmlDType::Q5K => Self::Q5K(pack_q5k(data, n, k)),
            GgmlDType::Q6K => Self::Q6K(pack_q6k(data, n, k)),
            GgmlDType::F32 => {
                let values: Vec<f32> = data
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                Self::from_f32(&values, n, k)
            }
            GgmlDType::F16 => {
                let values: Vec<f32> = data
                    .chunks_exact(2)
                    .map(|b| super::f16::f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                    .collect();
                Self::from_f32(&values, n, k)
            }
            GgmlDType::BF16 => {
                let values: Vec<f32> = data
                    .chunks_exact(2)
                    .map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16))
                    .collect();
                Self::from_f32(&values, n, k)
            }
            _ => return None,
        };
        debug_assert_eq!(packed.len(), tiles * packed.entries_per_tile(k));
        Some(packed)
    }

    /// Lays out a row-major `n × k` f32 matrix.
    pub(crate) fn from_f32(values: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(values.len(), n * k, "an {n} x {k} matrix needs {} values", n * k);
        let tiles = n.div_ceil(TILE_COLS);
        let mut out = vec![[0f32; TILE_COLS]; tiles * k];
        for (row, values) in values.chunks_exact(k.max(1)).enumerate().take(n) {
            let (t, c) = (row / TILE_COLS, row % TILE_COLS);
            for (i, &v) in values.iter().enumerate() {
                out[t * k + i][c] = v;
            }
        }
        Self::F32(out)
    }

    /// Entries of one column tile for `k` inputs.
    pub(crate) fn entries_per_tile(&self, k: usize) -> usize {
        match self {
            Self::F32(_) => k,
            Self::Q4K(_) | Self::Q5K(_) | Self::Q6K(_) => k / QK_K,
            _ => k / QK,
        }
    }

    /// Entries in the layout.
    fn len(&self) -> usize {
        match self {
            Self::Q4_0(v) => v.len(),
            Self::Q4_1(v) => v.len(),
            Self::Q5_0(v) => v.len(),
            Self::Q5_1(v) => v.len(),
            Self::Q8_0(v) => v.len(),
            Self::Q4K(v) => v.len(),
            Self::Q5K(v) => v.len(),
            Self::Q6K(v) => v.len(),
            Self::F32(v) => v.len(),
        }
    }

    /// Bytes held.
    pub(crate) fn size_in_bytes(&self) -> usize {
        match self {
            Self::Q4_0(v) => std::mem::size_of_val(v.as_slice()),
            Self::Q4_1(v) => std::mem::size_of_val(v.as_slice()),
            Self::Q5_0(v) => std::mem::size_of_val(v.as_slice()),
            Self::Q5_1(v) => std::mem::size_of_val(v.as_slice()),
            Self::Q8_0(v) => std::mem::size_of_val(v.as_slice()),
            Self::Q4K(v) => std::mem::size_of_val(v.as_slice()),
            Self::Q5K(v) => std::mem::size_of_val(v.as_slice()),
            Self::Q6K(v) => std::mem::size_of_val(v.as_slice()),
            Self::F32(v) => std::mem::size_of_val(v.as_slice()),
        }
    }
}

/// Builds one tile entry per (tile, block) from the raw blocks of its (up to 8) rows; rows past
/// `n` are `None`. A block holds `block_inputs` inputs in `block_bytes` bytes.
pub(crate) fn pack_blocks<T>(
    data: &[u8],
    (n, k): (usize, usize),
    (block_inputs, block_bytes): (usize, usize),
    tile: impl Fn(&[Option<&[u8]>; 8]) -> T,
) -> Vec<T> {
    let blocks = k / block_inputs;
    assert_eq!(
        data.len(),
        n * blocks * block_bytes,
        "{n} x {k} weights need {} bytes",
        n * blocks * block_bytes
    );
    let tiles = n.div_ceil(TILE_COLS);
    let mut out = Vec::with_capacity(tiles * blocks);
    for t in 0..tiles {
        for b in 0..blocks {
            let rows: [Option<&[u8]>; TILE_COLS] = std::array::from_fn(|c| {
                let row = t * TILE_COLS + c;
                (row < n).then(|| {
                    let at = (row * blocks + b) * block_bytes;
                    &data[at..at + block_bytes]
                })
            });
            out.push(tile(&rows));
        }
    }
    out
}

/// The little-endian u16 at `at`.
pub(crate) fn half_bits(block: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([block[at], block[at + 1]])
}

/// The 32 codes of a GGUF Q4/Q5 block's 16 nibble bytes (byte `j`: input `j` low, input
/// `j + 16` high), plus 16 for each set bit of `fifth` (bit `i`: input `i`).
fn gguf_codes(nibbles: &[u8], fifth: u32) -> [u8; QK] {
    std::array::from_fn(|i| {
        let low = if i < 16 {
            nibbles[i] & 0x0F
        } else {
            nibbles[i - 16] >> 4
        };
        low | ((((fifth >> i) & 1) as u8) << 4)
    })
}

/// The four fifth-bit bytes of a GGUF Q5 block as one little-endian word.
fn fifth_word(bits: &[u8]) -> u32 {
    u32::from_le_bytes([bits[0], bits[1], bits[2], bits[3]])
}

/// Spreads the low four bits of 32 codes (in input order) into output `c` of a 4-bit tile
/// block: group `h`, byte `4c + j` holds input `8h + j` low and input `8h + 4 + j` high.
pub(crate) fn pack_nibbles(qs: &mut [[u8; 32]; 4], c: usize, codes: &[u8]) {
    for (h, group) in qs.iter_mut().enumerate() {
        for j in 0..4 {
            group[4 * c + j] = (codes[8 * h + j] & 0x0F) | ((codes[8 * h + 4 + j] & 0x0F) << 4);
        }
    }
}

/// Spreads bit 4 of 32 codes into output `c` of a 5-bit tile's fifth bits, in the order of
/// [`pack_nibbles`] (see [`TileQ5_0::qh`]).
pub(crate) fn pack_fifth_bits(qh: &mut [u8; 32], c: usize, codes: &[u8]) {
    let bit = |i: usize| (codes[i] >> 4) & 1;
    for j in 0..4 {
        for h in 0..4 {
            qh[4 * c + j] |= bit(8 * h + j) << (2 * h);
            qh[4 * c + j] |= bit(8 * h + 4 + j) << (2 * h + 1);
        }
    }
}
