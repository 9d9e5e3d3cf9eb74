//! Enclave's kernels (CPU, and one CUDA kernel), in a crate of their own so that they are
//! compiled optimised even in debug builds (tests run real models through them).
//!
//! [`PagedAttention`]: causal attention of a whole batch over a paged KV cache; and
//! [`GpuPagedAttention`], its CUDA counterpart for decode steps (the `cuda` feature).
//!
//! [`KvWrite`]: a batch's new keys or values written into a paged KV cache in place.
//!
//! [`encoder`]: the kernels of an embedding model's encoder (linear, layer norm, GELU,
//! bidirectional attention over packed sequences).
//!
//! [`int8_linear`]: an encoder's linear layer in 8-bit integers (grouped scales) on AVX-512
//! VNNI, the embedding models' default where the CPU has it.
//!
//! [`QuantMatrix`]: the quantized matrix product that decides the engine's speed: activations
//! (one row for a decode step, dozens for a batched one, hundreds for a prefill chunk) times
//! GGUF weights (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K; F32, F16, BF16 in f32).
//!
//! Weights are repacked once at load into tiles of 8 output rows ([`QuantMatrix`]); each
//! product quantizes every activation row once to 8 bits (blocks of 32, f32 scale) and runs
//! integer dot products with AVX-512 VNNI or AVX2 on x86-64, NEON with the dot-product extension
//! on aarch64 (detected at run time), or portable Rust that gives the same bits. Each output row is computed by the same arithmetic whatever the batch around it, so
//! greedy decoding gives the same tokens alone or in a batch.
//!
//! Their parallel loops run on one pool of worker threads of their own, which never waits for
//! a worker that did not start (see `pool`).

mod activations;
mod attention;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod candle;
mod disjoint;
pub mod encoder;
mod f16;
mod fast_exp;
pub mod int8_linear;
mod isa;
mod kquants;
mod kv_write;
mod matrix;
#[cfg(target_arch = "aarch64")]
mod neon;
mod ops;
mod packed;
mod pool;
#[cfg(target_arch = "x86_64")]
mod prefetch;
mod reduce;
mod scalar;

#[cfg(test)]
mod tests;

pub use attention::{GpuPagedAttention, PagedAttention};
pub use isa::Isa;
pub use kv_write::KvWrite;
pub use matrix::{QuantMatrix, WeightFormat};
pub use ops::{ResidualAdd, RmsNorm, Rope, SiluMul};
