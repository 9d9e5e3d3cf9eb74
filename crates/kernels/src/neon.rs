//! aarch64 NEON micro-kernels with the dot-product extension (ARMv8.2 `sdot`: four signed
//! byte products added into each 32-bit lane), for the quantized formats and f32 weights.
//!
//! A tile's 32-byte group is two 128-bit vectors here: bytes 0..16 hold outputs 0..4 and
//! bytes 16..32 outputs 4..8, four inputs to a 32-bit lane as on x86. The weight codes are
//! below 128 (Q4, Q5, Q6 codes are unsigned but small; Q8_0 codes are signed), so `sdot`
//! takes them as signed bytes against the signed activations with no sign trick. The integer
//! sums are the exact integers of the other implementations and the float steps the same fused
//! multiply-adds in the same order, so the results are bit-identical to the scalar kernels.
//!
//! `sdot` is written in inline assembly: its intrinsic (`vdotq_s32`) is not stable in Rust
//! yet. CPUs without the extension (Cortex-A72, Graviton 1) run the scalar kernels.

use std::arch::aarch64::*;
use std::arch::asm;

use super::activations::Q8Block;
use super::f16::f16_to_f32;
use super::kquants::{ScaledNibbles, TileQ6K, SUB_BLOCKS};
use super::packed::{FiveBits, Nibbles, TileQ8_0, TILE_COLS};

/// Proof that this CPU runs NEON with the dot-product extension: only [`Neon::detect`] makes
/// one, so the methods below may call the `#[target_feature]` functions.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Neon(());

impl Neon {
    /// `Some` when the CPU has NEON and the dot-product extension.
    pub(crate) fn detect() -> Option<Self> {
        super::isa::neon_dotprod_available().then_some(Self(()))
    }

    /// As [`super::scalar::q4`].
    pub(crate) fn q4<T: Nibbles, const R: usize>(self, tiles: &[T], rows: [&[Q8Block]; R]) -> [[f32; TILE_COLS]; R] {
        // SAFETY: `self` exists only on a CPU with the features `q4` is compiled for.
        unsafe { q4(tiles, rows) }
    }

    /// As [`super::scalar::q5`].
    pub(crate) fn q5<T: FiveBits, const R: usize>(self, tiles: &[T], rows: [&[Q8Block]; R]) -> [[f32; TILE_COLS]; R] {
        // SAFETY: `self` exists only on a CPU with the features `q5` is compiled for.
        unsafe { q5(tiles, rows) }
    }

    /// As [`super::scalar::q45k`].
    pub(crate) fn q45k<T: ScaledNibbles, const R: usize>(
        self,
        tiles: &[T],
        rows: [&[Q8Block]; R],
    ) -> [[f32; TILE_COLS]; R] {
        // SAFETY: `self` exists only on a CPU with the features `q45k` is compiled for.
        unsafe { q45k(tiles, rows) }
    }

    /// As [`super::scalar::q6k`].
    pub(crate) fn q6k<const R: usize>(self, tiles: &[TileQ6K], rows: [&[Q8Block]; R]) -> [[f32; TILE_COLS]; R] {
        // SAFETY: `self` exists only on a CPU with the features `q6k` is compiled for.
        unsafe { q6k(tiles, rows) }
    }

    /// As [`super::scalar::q8`].
    pub(crate) fn q8<const R: usize>(self, tiles: &[TileQ8_0], rows: [&[Q8Block]; R]) -> [[f32; TILE_COLS]; R] {
        // SAFETY: `self` exists only on a CPU with the features `q8` is compiled for.
        unsafe { q8(tiles, rows) }
    }

    /// As [`super::scalar::f32s`].
    pub(crate) fn f32s<const R: usize>(self, tiles: &[[f32; TILE_COLS]], rows: [&[f32]; R]) -> [[f32; TILE_COLS]; R] {
        // SAFETY: `self` exists only on a CPU with the features `f32s` is compiled for.
        unsafe { f32s(tiles, rows) }
    }
}

/// Eight 32-bit integer lanes, outputs 0..4 then 4..8.
type I32x8 = [int32x4_t; 2];
/// Eight f32 lanes, outputs 0..4 then 4..8.
type F32x8 = [float32x4_t; 2];
/// Thirty-two bytes, the two halves of a tile group.
type U8x32 = [uint8x16_t; 2];

/// `acc += a · b`, four signed byte products into each 32-bit lane.
#[target_feature(enable = "neon,dotprod")]
#[inline]
fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: `sdot` reads and writes these three vector registers only, and this function is
    // compiled for (and only called on) CPUs with the dot-product extension.
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// Loads 32 bytes.
#[target_feature(enable = "neon,dotprod")]
#[inline]
fn load_u8x32(bytes: &[u8; 32]) -> U8x32 {
    // SAFETY: the reference covers 32 readable bytes; `vld1q` takes any alignment.
    unsafe { [vld1q_u8(bytes.as_ptr()), vld1q_u8(bytes.as_ptr().add(16))] }
}

/// Loads eight floats.
#[target_feature(enable = "neon,dotprod")]
#[inline]
fn load_f32x8(values: &[f32; 8]) -> F32x8 {
    // SAFETY: the reference covers 8 readable floats; `vld1q` takes any alignment.
    unsafe { [vld1q_f32(values.as_ptr()), vld1q_f32(values.as_ptr().add(4))] }
}

/// Eight f16 bits as f32 (the scalar conversion: the same values).
#[target_feature(enable = "neon,dotprod")]
#[inline]
fn load_f16x8(bits: &[u16; 8]) -> F32x8 {
    load_f32x8(&bits.map(f16_to_f32))
}

/// Eight integers as f32.
#[target_feature(enable = "neon,dotprod")]
#[inline]
fn to_f32(v: I32x8) -> F32x8 {
    [vcvtq_f32_s32(v[0]), vcvtq_f32_s32(v[1])]
}

/// `acc + a × b`, fused.
#[target_feature(enable = "neon,dotprod")]
#[inline]
fn fma(acc: F32x8, a: F32x8, b: float32x4_t) -> F32x8 {
    [vfmaq_f32(acc[0], a[0], b), vfmaq_f32(acc[1], a[1], b)]
}

/// `acc − a × b`, fused.
#[target_feature(enable = "neon,dotprod")]
#[inline]
fn fms(acc: F32x8, a: F32x8, b: float32x4_t) -> F32x8 {
    [vfmsq_f32(acc[0], a[0], b), vfmsq_f32(acc[1], a[1], b)]
}

/// `acc + sum × (d × dx)`: a block's integer sums into the float accumulator.
#[target_feature(enable = "neon,dotprod")]
#[inline]
fn add_block(acc: F32x8, sum: I32x8, d: F32x8, dx: f32) -> F32x8 {
    let dx = vdupq_n_f32(dx);
    let sum = to_f32(sum);
    [
        vfmaq_f32(acc[0], sum[0], vmulq_f32(d[0], dx)),
        vfmaq_f32(acc[1], sum[1], vmulq_f32(d[1], dx)),
    ]
}

/// `v − c` in each lane.
#[target_feature(enable = "neon,dotprod")]
#[inline]
fn sub_all(v: I32x8, c: i32) -> I32x8 {
    let c = vdupq_n_s32(c);
    [vsubq_s32(v[0], c), vsubq_s32(v[1], c)]
}

/// The eight lanes as an array.
#[target_feature(enable = "neon,dotprod")]
#[inline]
fn to_array(v: F32x8) -> [f32; 8] {
    let mut out = [0f32; 8];
    // SAFETY: `out` has room for 8 floats; `vst1q` takes any alignment.
    unsafe {
        vst1q_f32(out.as_mut_ptr(), v[0]);
        vst1q_f32(out.as_mut_ptr().add(4), v[1]);
    }
    out
}

/// `acc += lo · x(2h) + hi · x(2h + 1)` in both halves: group `h` of a block against a row.
#[target_feature(enable = "neon,dotprod")]
#[inline]
fn dot_group(acc: I32x8, lo: U8x32, hi: U8x32, x: &Q8Block, h: usize) -> I32x8 {
    let x0 = vreinterpretq_s8_s32(vdupq_n_s32(x.group(2 * h)));
    let x1 = vreinterpretq_s8_s32(vdupq_n_s32(x.group(2 * h + 1)));
    let half = |i: usize| {
        let acc = sdot(acc[i], vreinterpretq_s8_u8(lo[i]), x0);
        sdot(acc, vreinterpretq_s8_u8(hi[i]), x1)
    };
    [half(0), half(1)]
}

/// The low and high nibbles of a group's 32 bytes.
#[target_feature(enable = "neon,dotprod")]
#[inline]
fn nibbles(codes: U8x32) -> (U8x32, U8x32) {
    let low = vdupq_n_u8(0x0F);
    (
        [vandq_u8(codes[0], low), vandq_u8(codes[1], low)],
        [vshrq_n_u8::<4>(codes[0]), vshrq_n_u8::<4>(codes[1])],
    )
}

/// `codes | ((bits >> shift) & mask)` in each byte, `shift` negative for a left shift.
#[target_feature(enable = "neon,dotprod")]
#[inline]
fn with_bits(codes: U8x32, bits: U8x32, shift: i8, mask: u8) -> U8x32 {
    let (shift, mask) = (vdupq_n_s8(-shift), vdupq_n_u8(mask));
    let one = |i: usize| vorrq_u8(codes[i], vandq_u8(vshlq_u8(bits[i], shift), mask));
    [one(0), one(1)]
}

/// The rows' activation blocks at index `b`.
#[inline(always)]
fn blocks_at<const R: usize>(rows: [&[Q8Block]; R], b: usize) -> [&Q8Block; R] {
    std::array::from_fn(|r| &rows[r][b])
}

/// Each row's accumulator as an array.
#[target_feature(enable = "neon,dotprod")]
#[inline]
fn outputs<const R: usize>(acc: [F32x8; R]) -> [[f32; TILE_COLS]; R] {
    std::array::from_fn(|r| to_array(acc[r]))
}

/// A zero accumulator for each row.
#[target_feature(enable = "neon,dotprod")]
#[inline]
fn zeros<const R: usize>() -> [I32x8; R] {
    [[vdupq_n_s32(0); 2]; R]
}

/// See [`super::scalar::q4`].
// The row loops index several arrays in step; LLVM unrolls them for a constant `R`.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "neon,dotprod")]
fn q4<T: Nibbles, const R: usize>(tiles: &[T], rows: [&[Q8Block]; R]) -> [[f32; TILE_COLS]; R] {
    let mut acc = [[vdupq_n_f32(0.0); 2]; R];
    for (b, tile) in tiles.iter().enumerate() {
        let xs = blocks_at(rows, b);
        let mut sums = zeros::<R>();
        for (h, group) in tile.qs().iter().enumerate() {
            let (lo, hi) = nibbles(load_u8x32(group));
            for r in 0..R {
                sums[r] = dot_group(sums[r], lo, hi, xs[r], h);
            }
        }
        let d = load_f16x8(tile.d());
        let m = load_f16x8(tile.m());
        for r in 0..R {
            let sum = if T::HAS_MIN {
                sums[r]
            } else {
                sub_all(sums[r], 8 * xs[r].qsum)
            };
            acc[r] = add_block(acc[r], sum, d, xs[r].d);
            if T::HAS_MIN {
                acc[r] = fma(acc[r], m, vdupq_n_f32(xs[r].s));
            }
        }
    }
    outputs(acc)
}

/// See [`super::scalar::q5`].
// The row loops index several arrays in step; LLVM unrolls them for a constant `R`.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "neon,dotprod")]
fn q5<T: FiveBits, const R: usize>(tiles: &[T], rows: [&[Q8Block]; R]) -> [[f32; TILE_COLS]; R] {
    let mut acc = [[vdupq_n_f32(0.0); 2]; R];
    for (b, tile) in tiles.iter().enumerate() {
        let xs = blocks_at(rows, b);
        let mut sums = zeros::<R>();
        let qh = load_u8x32(tile.qh());
        for (h, group) in tile.qs().iter().enumerate() {
            let (lo, hi) = nibbles(load_u8x32(group));
            // Bit 2h (2h + 1) of each fifth-bit byte to bit 4.
            let lo = with_bits(lo, qh, 2 * h as i8 - 4, 0x10);
            let hi = with_bits(hi, qh, 2 * h as i8 + 1 - 4, 0x10);
            for r in 0..R {
                sums[r] = dot_group(sums[r], lo, hi, xs[r], h);
            }
        }
        let d = load_f16x8(tile.d());
        let m = load_f16x8(tile.m());
        for r in 0..R {
            let sum = if T::HAS_MIN {
                sums[r]
            } else {
                sub_all(sums[r], 16 * xs[r].qsum)
            };
            acc[r] = add_block(acc[r], sum, d, xs[r].d);
            if T::HAS_MIN {
                acc[r] = fma(acc[r], m, vdupq_n_f32(xs[r].s));
            }
        }
    }
    outputs(acc)
}

/// Eight bytes (one per output) as two vectors of four 32-bit lanes.
#[target_feature(enable = "neon,dotprod")]
#[inline]
fn lanes_of(values: [i32; 8]) -> I32x8 {
    // SAFETY: the array holds 8 readable integers; `vld1q` takes any alignment.
    unsafe { [vld1q_s32(values.as_ptr()), vld1q_s32(values.as_ptr().add(4))] }
}

/// See [`super::scalar::q45k`].
// The row loops index several arrays in step; LLVM unrolls them for a constant `R`.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "neon,dotprod")]
fn q45k<T: ScaledNibbles, const R: usize>(tiles: &[T], rows: [&[Q8Block]; R]) -> [[f32; TILE_COLS]; R] {
    let mut acc = [[vdupq_n_f32(0.0); 2]; R];
    for (b, tile) in tiles.iter().enumerate() {
        let d = load_f16x8(tile.d());
        let dmin = load_f16x8(tile.dmin());
        for j in 0..SUB_BLOCKS {
            let xs = blocks_at(rows, SUB_BLOCKS * b + j);
            let mut sums = zeros::<R>();
            let qh = load_u8x32(tile.qh(j));
            for (h, group) in tile.qs(j).iter().enumerate() {
                let (mut lo, mut hi) = nibbles(load_u8x32(group));
                if T::FIVE_BITS {
                    lo = with_bits(lo, qh, 2 * h as i8 - 4, 0x10);
                    hi = with_bits(hi, qh, 2 * h as i8 + 1 - 4, 0x10);
                }
                for r in 0..R {
                    sums[r] = dot_group(sums[r], lo, hi, xs[r], h);
                }
            }
            let scales = lanes_of(tile.scales()[j].map(i32::from));
            let mins = tile.mins()[j].map(f32::from);
            let mins = load_f32x8(&mins);
            let mins = [vmulq_f32(dmin[0], mins[0]), vmulq_f32(dmin[1], mins[1])];
            for r in 0..R {
                let sum = [vmulq_s32(sums[r][0], scales[0]), vmulq_s32(sums[r][1], scales[1])];
                acc[r] = add_block(acc[r], sum, d, xs[r].d);
                acc[r] = fms(acc[r], mins, vdupq_n_f32(xs[r].s));
            }
        }
    }
    outputs(acc)
}

/// See [`super::scalar::q6k`].
// The row loops index several arrays in step; LLVM unrolls them for a constant `R`.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "neon,dotprod")]
fn q6k<const R: usize>(tiles: &[TileQ6K], rows: [&[Q8Block]; R]) -> [[f32; TILE_COLS]; R] {
    let mut acc = [[vdupq_n_f32(0.0); 2]; R];
    for (b, tile) in tiles.iter().enumerate() {
        let d = load_f16x8(&tile.d);
        for j in 0..SUB_BLOCKS {
            let xs = blocks_at(rows, SUB_BLOCKS * b + j);
            let mut sums = zeros::<R>();
            for half in 0..2 {
                let qh = load_u8x32(&tile.qh[j][half]);
                let mut halves = zeros::<R>();
                for h in 2 * half..2 * half + 2 {
                    let (lo, hi) = nibbles(load_u8x32(&tile.qs[j][h]));
                    // Bits 4(h % 2) and 4(h % 2) + 2 of each upper-bit byte to bits 4 and 5.
                    let shift = 4 * (h % 2) as i8;
                    let lo = with_bits(lo, qh, shift - 4, 0x30);
                    let hi = with_bits(hi, qh, shift + 2 - 4, 0x30);
                    for r in 0..R {
                        halves[r] = dot_group(halves[r], lo, hi, xs[r], h);
                    }
                }
                let scales = lanes_of(tile.scales[2 * j + half].map(i32::from));
                for r in 0..R {
                    let centred = sub_all(halves[r], 32 * i32::from(xs[r].half_sums[half]));
                    for i in 0..2 {
                        sums[r][i] = vaddq_s32(sums[r][i], vmulq_s32(centred[i], scales[i]));
                    }
                }
            }
            for r in 0..R {
                acc[r] = add_block(acc[r], sums[r], d, xs[r].d);
            }
        }
    }
    outputs(acc)
}

/// See [`super::scalar::q8`].
// The row loops index several arrays in step; LLVM unrolls them for a constant `R`.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "neon,dotprod")]
fn q8<const R: usize>(tiles: &[TileQ8_0], rows: [&[Q8Block]; R]) -> [[f32; TILE_COLS]; R] {
    let mut acc = [[vdupq_n_f32(0.0); 2]; R];
    for (b, tile) in tiles.iter().enumerate() {
        let xs = blocks_at(rows, b);
        let mut sums = zeros::<R>();
        for (g, group) in tile.qs.iter().enumerate() {
            // SAFETY: the group holds 32 readable bytes; `vld1q` takes any alignment.
            let w = unsafe { [vld1q_u8(group.as_ptr()), vld1q_u8(group.as_ptr().add(16))] };
            // Offset binary back to the signed codes.
            let w = w.map(|w| vreinterpretq_s8_u8(veorq_u8(w, vdupq_n_u8(0x80))));
            for r in 0..R {
                let x = vreinterpretq_s8_s32(vdupq_n_s32(xs[r].group(g)));
                sums[r] = [sdot(sums[r][0], w[0], x), sdot(sums[r][1], w[1], x)];
            }
        }
        let d = load_f16x8(&tile.d);
        for r in 0..R {
            acc[r] = add_block(acc[r], sums[r], d, xs[r].d);
        }
    }
    outputs(acc)
}

/// See [`super::scalar::f32s`].
// The row loops index several arrays in step; LLVM unrolls them for a constant `R`.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "neon,dotprod")]
fn f32s<const R: usize>(tiles: &[[f32; TILE_COLS]], rows: [&[f32]; R]) -> [[f32; TILE_COLS]; R] {
    let mut acc = [[vdupq_n_f32(0.0); 2]; R];
    for (i, w) in tiles.iter().enumerate() {
        let w = load_f32x8(w);
        for r in 0..R {
            acc[r] = fma(acc[r], w, vdupq_n_f32(rows[r][i]));
        }
    }
    outputs(acc)
}
