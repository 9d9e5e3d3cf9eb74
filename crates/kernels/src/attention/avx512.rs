//! [`super::attend_item`] on CPUs with AVX-512 (F and VL): [`super::avx2`]'s operations on every
//! value in the same order, so the same bits, with the query heads that share a key/value head
//! taken together. Each key row is loaded (and widened from f16) once for up to three queries'
//! dot products, whose 8 keys × 3 queries accumulators fit AVX-512's 32 vector registers (AVX2's
//! 16 hold one query's), and each value row once for up to four queries' weighted sums, 16
//! lanes at a time (a weighted sum adds each output element over the keys in order, whatever
//! the vector width). A decode step's attention reads each key and value once per key/value
//! head instead of once per query head.

use std::arch::x86_64::*;

use super::avx2;
use super::lanes::Lanes;
use super::{Geometry, Inputs, Item};

/// Query heads whose dot products share each key row's loads: 8 keys × 3 accumulators, 3
/// query vectors and a key vector take 28 of the 32 registers.
const SCORE_GROUP: usize = 3;
/// Query heads whose weighted sums share each value row's loads (at most 4 × 4 accumulators).
const SUM_GROUP: usize = 4;

/// The dot products of `G` queries with the keys `from..end` (the same key rows for all),
/// scaled by `scale`, into `scores[i][key]`: eight keys at once as [`avx2::attend_item`] does
/// for one query (each sum in [`avx2::dot`]'s order, the lanes summed by [`avx2::trees8`]).
// The loops index several arrays in step; LLVM unrolls them for a constant `G`.
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
#[inline]
fn scores<const G: usize, E: Lanes>(
    queries: [&[f32]; G],
    k: &[E],
    key_start: &impl Fn(usize) -> usize,
    d: usize,
    from: usize,
    end: usize,
    scale: f32,
    scores: &mut [&mut [f32]; G],
) {
    let mut key_index = from;
    while key_index + 8 <= end {
        // Each row checked once here, not at every load of the loop below.
        let rows: [*const E; 8] = std::array::from_fn(|n| {
            let start = key_start(key_index + n);
            k[start..start + d].as_ptr()
        });
        let mut acc = [[_mm256_setzero_ps(); 8]; G];
        for b in 0..d / 8 {
            let qb: [__m256; G] = std::array::from_fn(|i| avx2::load(queries[i], 8 * b));
            for (n, &row) in rows.iter().enumerate() {
                // SAFETY: `row` starts a slice of `d` values and `8 b + 8 <= d`.
                let key = unsafe { E::load8(row.add(8 * b)) };
                for i in 0..G {
                    acc[i][n] = _mm256_fmadd_ps(qb[i], key, acc[i][n]);
                }
            }
        }
        for i in 0..G {
            avx2::store(
                scores[i],
                key_index,
                _mm256_mul_ps(avx2::trees8(acc[i]), _mm256_set1_ps(scale)),
            );
        }
        key_index += 8;
    }
    for key in key_index..end {
        let start = key_start(key);
        for i in 0..G {
            scores[i][key] = avx2::dot(queries[i], &k[start..start + d]) * scale;
        }
    }
}

/// `outs[i][column..][..16 V] += sum over keys of weights[i][key] * v[at(key) + column..][..16 V]`
/// for `G` queries, the sums in key order continuing from what `outs` hold (or from zero when
/// `first`), each value row loaded once for all `G`.
// The loops index several arrays in step; LLVM unrolls them for constant `G` and `V`.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
#[inline]
fn weighted_sums<const V: usize, const G: usize, E: Lanes>(
    v: &[E],
    weights: [&[f32]; G],
    at: &impl Fn(usize) -> usize,
    (column, first): (usize, bool),
    outs: &mut [&mut [f32]; G],
) {
    let mut acc = [[_mm512_setzero_ps(); V]; G];
    if !first {
        for i in 0..G {
            for (c, a) in acc[i].iter_mut().enumerate() {
                let chunk = &outs[i][column + 16 * c..column + 16 * c + 16];
                // SAFETY: `chunk` holds 16 readable values.
                *a = unsafe { _mm512_loadu_ps(chunk.as_ptr()) };
            }
        }
    }
    for key in 0..weights[0].len() {
        let start = at(key) + column;
        let row = &v[start..start + 16 * V];
        // SAFETY: `row` holds 16 V readable values.
        let values: [__m512; V] = std::array::from_fn(|c| unsafe { E::load16(row.as_ptr().add(16 * c)) });
        for i in 0..G {
            let w = _mm512_set1_ps(weights[i][key]);
            for c in 0..V {
                acc[i][c] = _mm512_fmadd_ps(w, values[c], acc[i][c]);
            }
        }
    }
    for i in 0..G {
        for (c, a) in acc[i].iter().enumerate() {
            let chunk = &mut outs[i][column + 16 * c..column + 16 * c + 16];
            // SAFETY: `chunk` holds 16 writable values.
            unsafe { _mm512_storeu_ps(chunk.as_mut_ptr(), *a) };
        }
    }
}

/// [`weighted_sums`] for `G` queries over all `d` columns, `V` vectors of 16 at a time.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
#[inline]
fn weighted_sums_by_columns<const G: usize, E: Lanes>(
    v: &[E],
    weights: [&[f32]; G],
    at: &impl Fn(usize) -> usize,
    first: bool,
    outs: &mut [&mut [f32]; G],
) {
    let d = outs[0].len();
    let mut column = 0;
    while column < d {
        column += 16
            * match (d - column) / 16 {
                4.. => {
                    weighted_sums::<4, G, E>(v, weights, at, (column, first), outs);
                    4
                }
                2..=3 => {
                    weighted_sums::<2, G, E>(v, weights, at, (column, first), outs);
                    2
                }
                _ => {
                    weighted_sums::<1, G, E>(v, weights, at, (column, first), outs);
                    1
                }
            };
    }
}

/// [`super::attend_item`] with the queries of a key/value head together, for head sizes that
/// are a multiple of 16 (at most `8 * avx2::MAX_VECTORS`). Keys in blocks of
/// [`avx2::KEY_BLOCK_BYTES`] as in [`avx2::attend_item`], whose bits it gives.
///
/// # Safety
/// The CPU must have AVX2, FMA, F16C and AVX-512 F and VL; `head_dim % 16 == 0` and
/// `head_dim <= 8 * avx2::MAX_VECTORS`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
pub(super) unsafe fn attend_item<E: Lanes>(inputs: &Inputs<'_, E>, item: &Item, scratch: &mut Vec<f32>) {
    let op = inputs.op;
    let geometry = Geometry::new(op, item);
    let (d, group, tokens, ctx) = (geometry.d, geometry.group, geometry.tokens, geometry.ctx);
    let block = (avx2::KEY_BLOCK_BYTES / (std::mem::size_of::<E>() * d)).max(8);
    scratch.clear();
    scratch.resize(geometry.queries * ctx + geometry.queries, 0.0);
    let (all_scores, sums) = scratch.split_at_mut(geometry.queries * ctx);
    let query = |t: usize, j: usize| &inputs.q[geometry.query_start(t, j)..geometry.query_start(t, j) + d];
    let key_start = |key_index: usize| geometry.key_start(key_index);
    let (k, v) = (inputs.k, inputs.v);
    // Query `t * group + j`'s scores, for `G` consecutive heads from `j`.
    fn rows_of<const G: usize>(all: &mut [f32], ctx: usize, first_query: usize) -> [&mut [f32]; G] {
        let mut rest = &mut all[first_query * ctx..(first_query + G) * ctx];
        std::array::from_fn(|_| {
            let (row, tail) = std::mem::take(&mut rest).split_at_mut(ctx);
            rest = tail;
            row
        })
    }
    for block_start in (0..ctx).step_by(block) {
        for (t, &(_, pos)) in tokens.iter().enumerate() {
            let end = (block_start + block).min(pos as usize + 1);
            if block_start >= end {
                continue;
            }
            let mut j = 0;
            while j < group {
                let first_query = t * group + j;
                // `G` heads from `j`, their rows of scores; returns `G`.
                macro_rules! heads {
                    ($g:expr) => {{
                        let queries = std::array::from_fn(|i| query(t, j + i));
                        let mut rows = rows_of::<{ $g }>(all_scores, ctx, first_query);
                        scores::<{ $g }, E>(
                            queries,
                            k,
                            &key_start,
                            d,
                            block_start,
                            end,
                            op.scale,
                            &mut rows,
                        );
                        $g
                    }};
                }
                j += match group - j {
                    3.. => heads!(SCORE_GROUP),
                    2 => heads!(2),
                    _ => heads!(1),
                };
            }
        }
    }
    avx2::softmax_every_query(&geometry, all_scores, sums);
    let all_scores = &*all_scores;
    for block_start in (0..ctx).step_by(block) {
        for (t, &(_, pos)) in tokens.iter().enumerate() {
            let seen = pos as usize + 1;
            if block_start >= seen {
                continue;
            }
            let end = (block_start + block).min(seen);
            let weights = |j: usize| {
                let qi = t * group + j;
                &all_scores[qi * ctx + block_start..qi * ctx + end]
            };
            // SAFETY: the item owns the output rows of its tokens' heads in its group; no
            // other item writes them (items differ in token or in key/value head), and the
            // heads of one call differ.
            let out = |j: usize| unsafe { inputs.out.part(geometry.query_start(t, j), d) };
            let at = |key_index: usize| key_start(block_start + key_index);
            let first = block_start == 0;
            let mut j = 0;
            while j < group {
                // `G` heads from `j`, their weights and outputs; returns `G`.
                macro_rules! heads {
                    ($g:expr) => {{
                        let mut outs = std::array::from_fn(|i| out(j + i));
                        let weights = std::array::from_fn(|i| weights(j + i));
                        weighted_sums_by_columns::<{ $g }, E>(v, weights, &at, first, &mut outs);
                        $g
                    }};
                }
                j += match group - j {
                    4.. => heads!(SUM_GROUP),
                    3 => heads!(3),
                    2 => heads!(2),
                    _ => heads!(1),
                };
            }
        }
    }
    for (t, _) in tokens.iter().enumerate() {
        for j in 0..group {
            let scale = _mm512_set1_ps(1.0 / sums[t * group + j]);
            // SAFETY: as above.
            let out = unsafe { inputs.out.part(geometry.query_start(t, j), d) };
            for chunk in out.chunks_exact_mut(16) {
                // SAFETY: `chunk` holds 16 values.
                unsafe {
                    _mm512_storeu_ps(
                        chunk.as_mut_ptr(),
                        _mm512_mul_ps(_mm512_loadu_ps(chunk.as_ptr()), scale),
                    )
                };
            }
        }
    }
}
