//! Which implementation of the kernels runs on this CPU, chosen at run time.

/// An implementation of the kernels. Both give bit-identical results (the scalar code does the
/// same fused multiply-adds, through `f32::mul_add`), so the choice changes speed only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Portable Rust for any CPU.
    Scalar,
    /// x86-64 AVX2 with FMA and F16C.
    Avx2,
}

impl Isa {
    /// The fastest implementation this CPU runs.
    pub fn detect() -> Self {
        if Self::Avx2.is_available() {
            Self::Avx2
        } else {
            Self::Scalar
        }
    }

    /// Whether this CPU can run `self`.
    pub fn is_available(self) -> bool {
        match self {
            Self::Scalar => true,
            Self::Avx2 => avx2_available(),
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
