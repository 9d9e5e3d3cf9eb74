//! Software prefetch of the weight stream of a product.
//!
//! A decode step reads every weight matrix once, from memory (a model's weights do not stay in
//! any cache between steps), and a product's column tiles lie one after another, so a kernel
//! reads one long stream. With eight or more activation rows per call the arithmetic on a
//! block takes long enough that the hardware prefetchers, which follow the stream from the
//! misses they see, fall behind: measured on SmolLM2's MLP shapes over 52 MB of Q5_0 weights,
//! 8 rows took 44 µs a matrix from memory and 30 µs from L2. Asking for the bytes
//! [`AHEAD`] past each block as it is read took the product from memory to 37 µs (32 rows:
//! 153 -> 127 µs); on the other formats 8 and 32 rows gained 1.1-1.6x (Q4_K the most). The
//! same lines are also asked of L2 [`FAR`] bytes further on, so that they come from L2 when
//! the L1 prefetch reaches them: Q8_0 (the most bytes per multiply-add) at 8 rows 53 -> 47 µs,
//! Q4_K 58 -> 55 µs, Q5_0 and 32 rows unchanged.

/// How far ahead of the block being read a kernel asks L1 for the weights: about ten 32-input
/// blocks of a tile (1 KiB and 2 KiB measured alike; 4 KiB worse, 512 B half the gain).
pub(crate) const AHEAD: usize = 1536;
/// How much further on than [`AHEAD`] the same call asks L2 for the weights (2 KiB gained
/// half as much on Q8_0).
pub(crate) const FAR: usize = 4096;

/// The fewest activation rows per kernel call for which a kernel prefetches: one row is
/// bound by memory bandwidth alone, which the hardware prefetchers reach by themselves (the
/// prefetches cost one row of Q8_0 and Q4_K 5-20% there). Q6_K, the most arithmetic per byte,
/// prefetches for one row too (+10-35%).
pub(crate) const PREFETCH_ROWS: usize = 2;

/// Asks L1 for the `len` bytes at [`AHEAD`] past `start`, and L2 for those [`FAR`] bytes
/// further: the weights a kernel reads some blocks later. The lines of the stream that a call
/// misses at its ends are asked for by the calls for the blocks beside it.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn weights_ahead<T>(start: *const T, len: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0, _MM_HINT_T1};
    let base = start.cast::<i8>().wrapping_add(AHEAD);
    let mut line = 0;
    while line < len {
        // SAFETY: SSE is part of x86-64, and a prefetch never faults, whatever the address (it
        // may lie past the weights: `wrapping_add` makes the pointer without claiming it is in
        // bounds, and nothing reads through it).
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(line));
            _mm_prefetch::<_MM_HINT_T1>(base.wrapping_add(line + FAR));
        }
        line += 64;
    }
}

/// [`weights_ahead`] for the tile entry `entry` of a call with `R` activation rows: nothing
/// below [`PREFETCH_ROWS`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn entry_ahead<const R: usize, T>(entry: &T) {
    if R >= PREFETCH_ROWS {
        weights_ahead(entry, std::mem::size_of::<T>());
    }
}
