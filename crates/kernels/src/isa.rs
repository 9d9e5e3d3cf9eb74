//! Which implementation of the kernels runs on this CPU, chosen at run time.

/// An implementation of the kernels. All give bit-identical results (the same exact integer
/// sums, then the same fused multiply-adds; the scalar code through `f32::mul_add`), so the
/// choice changes speed only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Portable Rust for any CPU.
    Scalar,
    /// x86-64 AVX2 with FMA and F16C.
    Avx2,
    /// x86-64 AVX-512 F, BW, VL and VNNI besides AVX2: `vpdpbusd` for the integer dot
    /// products of the quantized kernels (256-bit vectors).
    Avx512Vnni,
    /// aarch64 NEON with the dot-product extension (ARMv8.2 `sdot`).
    Neon,
}

impl Isa {
    /// The fastest implementation this CPU runs.
    pub fn detect() -> Self {
        if Self::Avx512Vnni.is_available() {
            Self::Avx512Vnni
        } else if Self::Avx2.is_available() {
            Self::Avx2
        } else if Self::Neon.is_available() {
            Self::Neon
        } else {
            Self::Scalar
        }
    }

    /// Whether this CPU can run `self`.
    pub fn is_available(self) -> bool {
        match self {
            Self::Scalar => true,
            Self::Avx2 => avx2_available(),
            Self::Avx512Vnni => avx512_vnni_available(),
            Self::Neon => neon_dotprod_available(),
        }
    }
}

/// AVX2, FMA and F16C, all three detected at run time.
#[cfg(target_arch = "x86_64")]
pub(crate) fn avx2_available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
}

/// Never on other architectures.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn avx2_available() -> bool {
    false
}

/// AVX2 (with FMA and F16C) and AVX-512 F, BW, VL and VNNI, all detected at run time.
#[cfg(target_arch = "x86_64")]
pub(crate) fn avx512_vnni_available() -> bool {
    avx2_available()
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
}

/// Never on other architectures.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn avx512_vnni_available() -> bool {
    false
}

/// NEON and the dot-product extension, detected at run time.
#[cfg(target_arch = "aarch64")]
pub(crate) fn neon_dotprod_available() -> bool {
    std::arch::is_aarch64_feature_detected!("neon") && std::arch::is_aarch64_feature_detected!("dotprod")
}

/// Never on other architectures.
#[cfg(not(target_arch = "aarch64"))]
pub(crate) fn neon_dotprod_available() -> bool {
    false
}
