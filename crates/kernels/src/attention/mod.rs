//! Batch-wide causal attention over a paged KV cache, as one candle op on the CPU.
//!
//! Each (token, head) pair is computed with operations in a fixed order that depends only on
//! the token's position, so a sequence's result does not depend on the batch nor on how its
//! prompt was cut into chunks. K and V are read in place from the cache (no gather, no repeated
//! keys), once per tile of tokens of a sequence and for all query heads sharing a key/value
//! head. The cache holds f32 or f16 ([`KvValue`]): f16 halves the bytes a decode step reads,
//! and at many streams the attention waits on memory (each stored value is widened exactly to
//! f32 before any arithmetic, so both dtypes run the same operations).

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod gpu;
#[cfg(target_arch = "x86_64")]
mod lanes;

pub use gpu::GpuPagedAttention;

use std::sync::Arc;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Shape};

use crate::disjoint::Disjoint;

/// The batch-wide CPU attention: `q [tokens, heads * d]` against the layer's whole cache
/// `k, v [slots, kv_heads, d]`, returning `[tokens, heads * d]`.
#[derive(Debug)]
pub struct PagedAttention {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Dimensions per head.
    pub head_dim: usize,
    /// `1 / sqrt(head_dim)`.
    pub scale: f32,
    /// Per new token: its sequence (index into `slots`) and its position.
    pub tokens: Vec<(u32, u32)>,
    /// Per sequence: the slots of positions `0..end`.
    pub slots: Vec<Arc<Vec<u32>>>,
}

/// A stored key or value: f32, or f16 (read as the exact f32 it stands for).
pub(crate) trait KvValue: Copy + Send + Sync + candle_core::WithDType {
    /// The value as f32 (exact).
    fn to_f32(self) -> f32;
}

impl KvValue for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
}

impl KvValue for half::f16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        half::f16::to_f32(self)
    }
}

/// The data of a contiguous storage of `T`.
fn contiguous<'a, T: candle_core::WithDType>(
    storage: &'a CpuStorage,
    layout: &Layout,
    what: &str,
) -> candle_core::Result<&'a [T]> {
    let data = storage.as_slice::<T>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("paged attention: {what} is not contiguous"),
    }
}

/// Tokens of one sequence handled together by one work item: each key and value row is read
/// once for all of them (and for every query head sharing the key/value head).
const TOKEN_TILE: usize = 8;

/// One work item: up to [`TOKEN_TILE`] consecutive tokens of one sequence, in position order,
/// against one key/value head (all the query heads of its group).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Item {
    /// The sequence (index into `slots`).
    pub(crate) seq: u32,
    /// Index of the first token in the batch.
    pub(crate) first: usize,
    /// Tokens in the item.
    pub(crate) count: usize,
    /// The key/value head.
    pub(crate) kv_head: usize,
}

/// Where one item's data lies: its tokens, the cache slots of the keys they see, and the
/// starts of its query, output, key and value rows. Shared by the scalar and AVX2 arithmetic.
pub(crate) struct Geometry<'a> {
    /// Values per head.
    pub(crate) d: usize,
    /// Query heads per key/value head.
    pub(crate) group: usize,
    /// The item's tokens: (sequence, position).
    pub(crate) tokens: &'a [(u32, u32)],
    /// The slots of positions `0..=` the item's last position.
    pub(crate) slots: &'a [u32],
    /// Keys the item's last token sees (`slots.len()`).
    pub(crate) ctx: usize,
    /// Query heads of the item: tokens × group.
    pub(crate) queries: usize,
    /// Floats per cache slot (all key/value heads).
    row: usize,
    /// Offset of the item's key/value head in a slot.
    offset: usize,
    /// Query heads in a token's row.
    heads: usize,
    /// The item's first token and key/value head.
    first: usize,
    kv_head: usize,
}

impl<'a> Geometry<'a> {
    /// The geometry of `item` in `op`.
    pub(crate) fn new(op: &'a PagedAttention, item: &Item) -> Self {
        let (heads, d) = (op.heads, op.head_dim);
        let group = heads / op.kv_heads;
        let tokens = &op.tokens[item.first..item.first + item.count];
        let max_pos = tokens.iter().map(|&(_, p)| p as usize).max().unwrap_or(0);
        let slots = &op.slots[item.seq as usize][..=max_pos];
        Self {
            d,
            group,
            tokens,
            slots,
            ctx: slots.len(),
            queries: item.count * group,
            row: op.kv_heads * d,
            offset: item.kv_head * d,
            heads,
            first: item.first,
            kv_head: item.kv_head,
        }
    }

    /// Start of the query (and output) row of the item's token `t`, head `j` of its group.
    pub(crate) fn query_start(&self, t: usize, j: usize) -> usize {
        ((self.first + t) * self.heads + self.kv_head * self.group + j) * self.d
    }

    /// Start of the key (and value) row of the item's key `key_index`.
    pub(crate) fn key_start(&self, key_index: usize) -> usize {
        self.slots[key_index] as usize * self.row + self.offset
    }
}

/// Everything one work item reads, the cache in `E`.
pub(crate) struct Inputs<'a, E> {
    /// The op (shapes, tokens, slots).
    pub(crate) op: &'a PagedAttention,
    /// Queries `[tokens, heads * d]`.
    pub(crate) q: &'a [f32],
    /// Keys `[slots, kv_heads, d]`.
    pub(crate) k: &'a [E],
    /// Values, as the keys.
    pub(crate) v: &'a [E],
    /// The output `[tokens, heads * d]`.
    pub(crate) out: Disjoint<'a, f32>,
}

impl CustomOp3 for PagedAttention {
    fn name(&self) -> &'static str {
        "enclave-paged-attention"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        q_layout: &Layout,
        k: &CpuStorage,
        k_layout: &Layout,
        v: &CpuStorage,
        v_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let q = contiguous::<f32>(q, q_layout, "q")?;
        match (k, v) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => self.run(
                q,
                contiguous::<f32>(k, k_layout, "k")?,
                contiguous::<f32>(v, v_layout, "v")?,
            ),
            (CpuStorage::F16(_), CpuStorage::F16(_)) => self.run(
                q,
                contiguous::<half::f16>(k, k_layout, "k")?,
                contiguous::<half::f16>(v, v_layout, "v")?,
            ),
            _ => candle_core::bail!(
                "paged attention: keys and values must both be f32 or both f16, got {:?} and {:?}",
                k.dtype(),
                v.dtype()
            ),
        }
    }
}

/// Asks the L2 cache for every key and value row `item` reads. Called for the next item while
/// one is computed: a sequence's rows lie in 16-token blocks anywhere in the cache, one
/// key/value head's part of each slot, which the hardware prefetchers follow badly; with the
/// rows requested an item ahead, a 32-sequence decode step's attention at 150 keys (SmolLM2's
/// heads, f16 cache, 30 layers, blocks scattered over a 1.5 GB cache) took 16.9-17.1 ms where
/// it took 22.6-23.7 ms (and 6 ms with every row already in cache).
#[cfg(target_arch = "x86_64")]
fn prefetch_item<E>(inputs: &Inputs<'_, E>, item: &Item) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
    let geometry = Geometry::new(inputs.op, item);
    let bytes = geometry.d * std::mem::size_of::<E>();
    for key in 0..geometry.ctx {
        let start = geometry.key_start(key);
        for values in [inputs.k, inputs.v] {
            if let Some(row) = values.get(start..start + geometry.d) {
                let base = row.as_ptr().cast::<i8>();
                for line in (0..bytes).step_by(64) {
                    // SAFETY: SSE is part of x86-64; `line < bytes`, so the address lies in `row`
                    // (and a prefetch never faults).
                    unsafe { _mm_prefetch::<_MM_HINT_T1>(base.add(line)) };
                }
            }
        }
    }
}

/// Nothing off x86-64 (the hardware prefetchers alone).
#[cfg(not(target_arch = "x86_64"))]
fn prefetch_item<E>(_inputs: &Inputs<'_, E>, _item: &Item) {}

impl PagedAttention {
    /// The attention of every token with the cache in `E`, after checking the shapes and slots.
    fn run<E: KvValue + LanesKv>(&self, q: &[f32], k: &[E], v: &[E]) -> candle_core::Result<(CpuStorage, Shape)> {
        let (heads, kv_heads, d) = (self.heads, self.kv_heads, self.head_dim);
        let n_tokens = self.tokens.len();
        if kv_heads == 0
            || heads % kv_heads != 0
            || q.len() != n_tokens * heads * d
            || k.len() != v.len()
            || !k.len().is_multiple_of(kv_heads * d)
        {
            candle_core::bail!("paged attention: inconsistent shapes")
        }
        let slots_total = k.len() / (kv_heads * d);
        for slots in &self.slots {
            if slots.iter().any(|&s| s as usize >= slots_total) {
                candle_core::bail!("paged attention: slot outside the cache")
            }
        }
        for (i, &(seq, pos)) in self.tokens.iter().enumerate() {
            let Some(slots) = self.slots.get(seq as usize) else {
                candle_core::bail!("paged attention: token {i} names no sequence")
            };
            if pos as usize >= slots.len() {
                candle_core::bail!("paged attention: token {i} is past its sequence's slots")
            }
        }
        let items = self.items();
        let mut out = vec![0f32; n_tokens * heads * d];
        let inputs = Inputs {
            op: self,
            q,
            k,
            v,
            out: Disjoint::new(&mut out),
        };
        let simd = Simd::for_head_dim(d);
        let work = |range: std::ops::Range<usize>| {
            let mut scratch = Vec::new();
            let items = &items[range];
            for (i, item) in items.iter().enumerate() {
                if let Some(next) = items.get(i + 1) {
                    prefetch_item(&inputs, next);
                }
                simd.attend_item(&inputs, item, &mut scratch);
            }
        };
        // One thread for small work: waking the pool costs more than it saves.
        let flops: usize = self.tokens.iter().map(|&(_, p)| p as usize + 1).sum::<usize>() * heads * d * 4;
        if flops < 1 << 18 {
            work(0..items.len());
        } else {
            crate::pool::execute_chunked(items.len(), work);
        }
        let shape = Shape::from((n_tokens, heads * d));
        Ok((CpuStorage::F32(out), shape))
    }

    /// The work items: runs of consecutive tokens of one sequence, cut into tiles, times the
    /// key/value heads.
    fn items(&self) -> Vec<Item> {
        let mut items = Vec::new();
        let mut i = 0;
        while i < self.tokens.len() {
            let seq = self.tokens[i].0;
            let mut j = i + 1;
            while j < self.tokens.len() && self.tokens[j].0 == seq && j - i < TOKEN_TILE {
                j += 1;
            }
            items.extend((0..self.kv_heads).map(|kv_head| Item {
                seq,
                first: i,
                count: j - i,
                kv_head,
            }));
            i = j;
        }
        items
    }
}

/// What the SIMD kernels need of a cache dtype (their eight- and sixteen-lane loads); nothing
/// elsewhere.
#[cfg(target_arch = "x86_64")]
pub(crate) use lanes::Lanes as LanesKv;

/// Which implementation of [`attend_item`] runs: all give the same bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Simd {
    /// [`attend_item`].
    Scalar,
    /// [`avx2::attend_item`].
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// [`avx512::attend_item`].
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Simd {
    /// The fastest this CPU runs for heads of `head_dim`.
    fn for_head_dim(head_dim: usize) -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if use_avx2(head_dim) {
                let avx512 = is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl");
                return if avx512 && head_dim.is_multiple_of(16) {
                    Self::Avx512
                } else {
                    Self::Avx2
                };
            }
        }
        let _ = head_dim;
        Self::Scalar
    }

    /// Attention of `item`'s tokens with this implementation.
    fn attend_item<E: KvValue + LanesKv>(self, inputs: &Inputs<'_, E>, item: &Item, scratch: &mut Vec<f32>) {
        match self {
            Self::Scalar => attend_item(inputs, item, scratch),
            // SAFETY: `for_head_dim` chose it: the CPU has AVX2, FMA and F16C and the head size
            // fits.
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => unsafe { avx2::attend_item(inputs, item, scratch) },
            // SAFETY: as above, and the CPU has AVX-512 F and VL and the head size is a multiple
            // of 16.
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => unsafe { avx512::attend_item(inputs, item, scratch) },
        }
    }
}

/// Nothing off x86-64.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) trait LanesKv {}
#[cfg(not(target_arch = "x86_64"))]
impl<T> LanesKv for T {}

/// Whether [`avx2::attend_item`] runs heads of `head_dim` on this CPU.
#[cfg(target_arch = "x86_64")]
fn use_avx2(head_dim: usize) -> bool {
    crate::isa::avx2_available() && head_dim.is_multiple_of(8) && head_dim <= 8 * avx2::MAX_VECTORS
}

/// Attention of the tokens of `item` for the query heads of its key/value head. Each query
/// computes exactly what [`attend_one`] computes for it (same operations, same order), so the
/// result of a token does not depend on the tokens it shares an item with.
/// [`avx2::attend_item`] does the same operations eight lanes at a time.
fn attend_item<E: KvValue>(inputs: &Inputs<'_, E>, item: &Item, scratch: &mut Vec<f32>) {
    let op = inputs.op;
    let at = Geometry::new(op, item);
    let (d, group, tokens, ctx) = (at.d, at.group, at.tokens, at.ctx);
    // Scores of every query over every key of the item, then the sum of each query's weights.
    scratch.clear();
    scratch.resize(at.queries * ctx + at.queries, 0.0);
    let (scores, sums) = scratch.split_at_mut(at.queries * ctx);
    // Query `t * group + j`: token `t`, head `kv_head * group + j`.
    let query = |t: usize, j: usize| &inputs.q[at.query_start(t, j)..at.query_start(t, j) + d];
    for key_index in 0..ctx {
        let start = at.key_start(key_index);
        let key = &inputs.k[start..start + d];
        for (t, &(_, pos)) in tokens.iter().enumerate() {
            if key_index > pos as usize {
                continue;
            }
            for j in 0..group {
                scores[(t * group + j) * ctx + key_index] = dot(query(t, j), key) * op.scale;
            }
        }
    }
    for (t, &(_, pos)) in tokens.iter().enumerate() {
        for j in 0..group {
            let qi = t * group + j;
            let row = &mut scores[qi * ctx..qi * ctx + pos as usize + 1];
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
            for score in row.iter_mut() {
                *score = exp(*score - max);
            }
            sums[qi] = sum(row);
        }
    }
    // SAFETY: the item owns the output rows of its tokens' heads in its group; no other item
    // writes them (items differ in token or in key/value head).
    let out_row = |t: usize, j: usize| unsafe { inputs.out.part(at.query_start(t, j), d) };
    for key_index in 0..ctx {
        let start = at.key_start(key_index);
        let value = &inputs.v[start..start + d];
        for (t, &(_, pos)) in tokens.iter().enumerate() {
            if key_index > pos as usize {
                continue;
            }
            for j in 0..group {
                let weight = scores[(t * group + j) * ctx + key_index];
                for (o, &x) in out_row(t, j).iter_mut().zip(value) {
                    *o = weight.mul_add(x.to_f32(), *o);
                }
            }
        }
    }
    for t in 0..item.count {
        for j in 0..group {
            let inv = 1.0 / sums[t * group + j];
            for o in out_row(t, j).iter_mut() {
                *o *= inv;
            }
        }
    }
}

/// One query head over `slots` (the positions it sees, in order): softmax of the scaled dot
/// products with the keys, applied to the values. Keys and values of slot `s` start at
/// `s * row + offset`. The summation order is fixed by `slots.len()` and `query.len()`. The
/// definition of the arithmetic that [`attend_item`] performs for many queries at once.
#[cfg(test)]
#[allow(clippy::too_many_arguments)]
fn attend_one<E: KvValue>(
    query: &[f32],
    k: &[E],
    v: &[E],
    slots: &[u32],
    row: usize,
    offset: usize,
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let d = query.len();
    scores.clear();
    let mut max = f32::NEG_INFINITY;
    for &slot in slots {
        let start = slot as usize * row + offset;
        let score = dot(query, &k[start..start + d]) * scale;
        max = max.max(score);
        scores.push(score);
    }
    for score in scores.iter_mut() {
        *score = exp(*score - max);
    }
    let total = sum(scores);
    out.fill(0.0);
    for (&slot, &weight) in slots.iter().zip(scores.iter()) {
        let start = slot as usize * row + offset;
        for (o, &x) in out.iter_mut().zip(&v[start..start + d]) {
            *o = weight.mul_add(x.to_f32(), *o);
        }
    }
    let inv = 1.0 / total;
    for o in out.iter_mut() {
        *o *= inv;
    }
}

/// `ln(2)` split in two for an exact range reduction (Cephes' constants).
pub(crate) const LN2_HI: f32 = 0.693_359_4;
/// See [`LN2_HI`].
pub(crate) const LN2_LO: f32 = -2.121_944_4e-4;
/// The polynomial of `(e^r - 1 - r) / r^2` on `|r| <= ln(2) / 2`, highest degree first.
pub(crate) const EXP_POLY: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];
/// Below this, `e^x` is taken as `e^-87` (about 1.6e-38): far below any softmax weight that
/// matters, and the smallest value whose power of two is still a normal number.
pub(crate) const EXP_MIN: f32 = -87.0;

/// `e^x` in a fixed sequence of fused multiply-adds (within 2 ulp of the true value), the same
/// operations as [`avx2`]'s eight-lane version, so both give the same bits. For `x <= 88`.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let x = x.max(EXP_MIN);
    let n = x.mul_add(std::f32::consts::LOG2_E, 0.5).floor();
    let r = n.mul_add(-LN2_HI, x);
    let r = n.mul_add(-LN2_LO, r);
    let mut p = EXP_POLY[0];
    for &c in &EXP_POLY[1..] {
        p = p.mul_add(r, c);
    }
    let y = p.mul_add(r * r, r) + 1.0;
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// A sum in eight lanes (lane `i` adds values `i`, `i + 8`, ... in order), the lanes summed in
/// [`dot`]'s tree, then the values past the last full eight added in order: eight independent
/// chains of additions where one chain in order waits for each addition in turn.
#[inline(always)]
pub(crate) fn sum(values: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = values.len() / 8;
    for chunk in values.chunks_exact(8) {
        for i in 0..8 {
            lanes[i] += chunk[i];
        }
    }
    let mut tail = 0f32;
    for &x in &values[chunks * 8..] {
        tail += x;
    }
    ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7])) + tail
}

/// A dot product in eight lanes of fused multiply-adds, lanes summed in a fixed tree.
#[inline(always)]
pub(crate) fn dot<E: KvValue>(a: &[f32], b: &[E]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = a.len() / 8;
    for (ca, cb) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for i in 0..8 {
            lanes[i] = ca[i].mul_add(cb[i].to_f32(), lanes[i]);
        }
    }
    let mut tail = 0f32;
    for i in chunks * 8..a.len() {
        tail = a[i].mul_add(b[i].to_f32(), tail);
    }
    ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7])) + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dot_product_is_exact_on_small_integers() {
        let a: Vec<f32> = (0..19).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..19).map(|i| (i % 3) as f32).collect();
        let expected: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert_eq!(dot(&a, &b), expected);
    }

    #[test]
    fn one_position_returns_its_value() {
        // Two slots of 1 kv head x 2 dims; the query sees slot 1 only.
        let k = [9.0, 9.0, 1.0, 2.0];
        let v = [7.0, 7.0, 3.0, 4.0];
        let mut out = [0.0; 2];
        attend_one(&[0.5, 0.5], &k, &v, &[1], 2, 0, 1.0, &mut Vec::new(), &mut out);
        assert_eq!(out, [3.0, 4.0]);
    }

    /// Pseudo-random values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    #[test]
    fn tiles_give_each_query_the_bits_of_attend_one() {
        // Groups of 3 (SmolLM2), 7 (Qwen2.5-0.5B) and 8 query heads per key/value head: the
        // AVX-512 kernel takes them in threes and fours.
        for (heads, kv_heads) in [(6, 2), (7, 1), (16, 2)] {
            for d in [16, 64, 80, 128] {
                tiles_match_attend_one::<f32>(heads, kv_heads, d);
                tiles_match_attend_one::<half::f16>(heads, kv_heads, d);
            }
        }
    }

    fn tiles_match_attend_one<E: KvValue + LanesKv>(heads: usize, kv_heads: usize, d: usize) {
        let slots_total = 256;
        let stored = |seed| -> Vec<E> {
            values(slots_total * kv_heads * d, seed)
                .into_iter()
                .map(|x| E::from_f64(f64::from(x)))
                .collect()
        };
        let (k, v) = (stored(1), stored(2));
        // Sequence 0: a prefill chunk of 13 tokens at positions 7..20 over scattered slots;
        // sequence 1: one decode token at position 29; sequence 2: one at position 210 (keys in
        // several blocks of the SIMD kernels).
        let slots0: Vec<u32> = (0..20).map(|i| ((i * 7 + 3) % 256) as u32).collect();
        let slots1: Vec<u32> = (0..30).map(|i| ((i * 11 + 5) % 256) as u32).collect();
        let slots2: Vec<u32> = (0..211).map(|i| ((i * 13 + 1) % 256) as u32).collect();
        let mut tokens: Vec<(u32, u32)> = (7..20).map(|p| (0, p)).collect();
        tokens.push((1, 29));
        tokens.push((2, 210));
        let q = values(tokens.len() * heads * d, 3);
        let op = PagedAttention {
            heads,
            kv_heads,
            head_dim: d,
            scale: 0.25,
            tokens: tokens.clone(),
            slots: vec![Arc::new(slots0), Arc::new(slots1), Arc::new(slots2)],
        };
        let group = heads / kv_heads;
        let mut expected = vec![0f32; q.len()];
        let mut scratch = Vec::new();
        for (i, &(seq, pos)) in tokens.iter().enumerate() {
            for h in 0..heads {
                let at = (i * heads + h) * d;
                attend_one(
                    &q[at..at + d],
                    &k,
                    &v,
                    &op.slots[seq as usize][..=pos as usize],
                    kv_heads * d,
                    (h / group) * d,
                    op.scale,
                    &mut scratch,
                    &mut expected[at..at + d],
                );
            }
        }
        let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let run = |simd: Simd| {
            let mut out = vec![0f32; q.len()];
            let inputs = Inputs {
                op: &op,
                q: &q,
                k: &k,
                v: &v,
                out: Disjoint::new(&mut out),
            };
            let mut scratch = Vec::new();
            for item in op.items() {
                simd.attend_item(&inputs, &item, &mut scratch);
            }
            out
        };
        let what = format!("{} dims, {heads}/{kv_heads} heads, {}", d, std::any::type_name::<E>());
        assert_eq!(bits(&run(Simd::Scalar)), bits(&expected), "scalar, {what}");
        let fastest = Simd::for_head_dim(d);
        #[cfg(target_arch = "x86_64")]
        if fastest != Simd::Scalar {
            assert_eq!(bits(&run(Simd::Avx2)), bits(&expected), "AVX2, {what}");
        }
        assert_eq!(bits(&run(fastest)), bits(&expected), "{fastest:?}, {what}");
        // 13 tokens of sequence 0 make tiles of 8 and 5; sequences 1 and 2 one of 1 each; times
        // the key/value heads.
        let counts: Vec<usize> = op.items().iter().map(|i| i.count).collect();
        let tiles = [8, 5, 1, 1].map(|count| vec![count; kv_heads]).concat();
        assert_eq!(counts, tiles);
    }

    #[test]
    fn an_f16_cache_gives_the_f32_result_of_its_values_and_mixed_dtypes_are_refused() {
        use candle_core::{DType, Device, Tensor};
        let (heads, kv_heads, d, slots) = (4, 2, 16, 12);
        let device = Device::Cpu;
        let tensor = |n: usize, seed| Tensor::from_vec(values(n, seed), n, &device).unwrap();
        let q = tensor(2 * heads * d, 7).reshape((2, heads * d)).unwrap();
        let k = tensor(slots * kv_heads * d, 8).reshape((slots, kv_heads, d)).unwrap();
        let v = tensor(slots * kv_heads * d, 9).reshape((slots, kv_heads, d)).unwrap();
        let op = PagedAttention {
            heads,
            kv_heads,
            head_dim: d,
            scale: 0.25,
            tokens: vec![(0, 4), (1, 9)],
            slots: vec![Arc::new(vec![3, 1, 4, 0, 5]), Arc::new((0..10).rev().collect())],
        };
        let half = |t: &Tensor| t.to_dtype(DType::F16).unwrap();
        let (k16, v16) = (half(&k), half(&v));
        let widened = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
        // The same values stored in f16, or widened back to f32 first: the same bits.
        let from_f16 = q.apply_op3_no_bwd(&k16, &v16, &op).unwrap();
        let from_f32 = q.apply_op3_no_bwd(&widened(&k16), &widened(&v16), &op).unwrap();
        let bits = |t: &Tensor| {
            t.flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .map(|x| x.to_bits())
                .collect::<Vec<_>>()
        };
        assert_eq!(bits(&from_f16), bits(&from_f32));
        // And close to the attention of the f32 values (f16 keeps 11 significant bits).
        let exact = q.apply_op3_no_bwd(&k, &v, &op).unwrap();
        let diff = (exact - &from_f16).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 2e-3);
        let err = q.apply_op3_no_bwd(&k16, &v, &op).unwrap_err().to_string();
        assert!(err.contains("must both be f32 or both f16"), "{err}");
    }

    #[test]
    fn exp_is_accurate_and_the_same_in_eight_lanes() {
        let xs: Vec<f32> = (0..20_000).map(|i| -90.0 + i as f32 * 0.0046).collect();
        for &x in &xs {
            let ours = exp(x);
            if x >= EXP_MIN {
                let exact = f64::from(x).exp();
                let error = ((f64::from(ours) - exact) / exact).abs();
                assert!(error < 3e-7, "exp({x}) = {ours}, exact {exact}");
            } else {
                assert_eq!(ours, exp(EXP_MIN));
            }
        }
        #[cfg(target_arch = "x86_64")]
        if crate::isa::avx2_available() {
            use std::arch::x86_64::*;
            for chunk in xs.chunks_exact(8) {
                let mut lanes = [0f32; 8];
                // SAFETY: the CPU has AVX2 and FMA (checked above); 8 values in, 8 out.
                unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), avx2::exp8(_mm256_loadu_ps(chunk.as_ptr()))) };
                for (&x, &lane) in chunk.iter().zip(&lanes) {
                    assert_eq!(lane.to_bits(), exp(x).to_bits(), "exp({x})");
                }
            }
        }
    }
}
