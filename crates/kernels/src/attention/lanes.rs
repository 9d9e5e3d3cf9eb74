//! How the SIMD attention kernels load the cache's keys and values, f32 or f16, as f32 lanes
//! (f16 widened with F16C's `vcvtph2ps`, exact as [`super::KvValue::to_f32`]).

use std::arch::x86_64::*;

use super::KvValue;

/// A cache dtype's eight- and sixteen-lane loads.
pub(crate) trait Lanes: KvValue {
    /// Eight values from `ptr` as f32.
    ///
    /// # Safety
    /// The CPU must have AVX2 and F16C; `ptr` must point to 8 readable values.
    unsafe fn load8(ptr: *const Self) -> __m256;

    /// Sixteen values from `ptr` as f32.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F; `ptr` must point to 16 readable values.
    unsafe fn load16(ptr: *const Self) -> __m512;
}

impl Lanes for f32 {
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn load8(ptr: *const Self) -> __m256 {
        // SAFETY: the caller gives 8 readable values; `loadu` takes any alignment.
        unsafe { _mm256_loadu_ps(ptr) }
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
    #[inline]
    unsafe fn load16(ptr: *const Self) -> __m512 {
        // SAFETY: the caller gives 16 readable values; `loadu` takes any alignment.
        unsafe { _mm512_loadu_ps(ptr) }
    }
}

impl Lanes for half::f16 {
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn load8(ptr: *const Self) -> __m256 {
        // SAFETY: the caller gives 8 readable values (16 bytes, `f16` is a `u16`); `loadu`
        // takes any alignment.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(ptr.cast())) }
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
    #[inline]
    unsafe fn load16(ptr: *const Self) -> __m512 {
        // SAFETY: the caller gives 16 readable values (32 bytes); `loadu` takes any alignment.
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(ptr.cast())) }
    }
}
