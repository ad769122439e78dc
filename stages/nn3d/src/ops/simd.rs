//! The x86-64 vector instruction sets the CPU kernels are written for, picked at run time:
//! AVX-512F (sixteen f32 lanes, 32 registers) where the CPU has it, else AVX2 with FMA (eight
//! lanes, 16 registers: every AMD Zen before Zen 4, most Intel client chips). Without either,
//! the callers fall back to im2col and the generic loops.
//!
//! A kernel is written once, generic over [`Lanes`] and `#[inline(always)]`, and compiled per
//! instruction set by a small `#[target_feature]` wrapper that calls it: the lane operations
//! are inlined into the wrapper, where the intrinsics compile to single instructions.

use std::arch::x86_64::*;
use std::sync::OnceLock;

/// A vector instruction set the kernels run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    Avx512,
    Avx2,
}

impl Isa {
    /// The best instruction set of this CPU, once per process. `FLOW_NN3D_SIMD=avx2` picks AVX2
    /// on an AVX-512 CPU and `none` neither (for comparisons).
    pub(crate) fn detected() -> Option<Isa> {
        static DETECTED: OnceLock<Option<Isa>> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            let all = Isa::supported();
            match std::env::var("FLOW_NN3D_SIMD").as_deref() {
                Ok("none") => None,
                Ok("avx2") => all.into_iter().find(|&i| i == Isa::Avx2),
                _ => all.first().copied(),
            }
        })
    }

    /// Every instruction set this CPU runs, best first (the tests run the kernels on each).
    pub(crate) fn supported() -> Vec<Isa> {
        let mut out = Vec::new();
        if std::arch::is_x86_feature_detected!("avx512f") {
            out.push(Isa::Avx512);
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            out.push(Isa::Avx2);
        }
        out
    }
}

/// f32 vector operations of one instruction set. Callers must run inside a function compiled
/// for that set (see the module doc), so every method is unsafe.
pub(crate) trait Lanes {
    type V: Copy;
    /// f32 lanes per vector.
    const N: usize;
    unsafe fn zero() -> Self::V;
    unsafe fn load(p: *const f32) -> Self::V;
    unsafe fn store(p: *mut f32, v: Self::V);
    unsafe fn splat(v: f32) -> Self::V;
    /// `a * b + c`, one rounding.
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// The sum of the lanes.
    unsafe fn sum(v: Self::V) -> f32;
}

/// AVX-512F: sixteen lanes.
pub(crate) struct Avx512;

impl Lanes for Avx512 {
    type V = __m512;
    const N: usize = 16;
    #[inline(always)]
    unsafe fn zero() -> __m512 {
        _mm512_setzero_ps()
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m512 {
        _mm512_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m512) {
        _mm512_storeu_ps(p, v)
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> __m512 {
        _mm512_set1_ps(v)
    }
    #[inline(always)]
    unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
        _mm512_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn sum(v: __m512) -> f32 {
        _mm512_reduce_add_ps(v)
    }
}

/// AVX2 with FMA: eight lanes.
pub(crate) struct Avx2;

impl Lanes for Avx2 {
    type V = __m256;
    const N: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> __m256 {
        _mm256_setzero_ps()
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m256) {
        _mm256_storeu_ps(p, v)
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> __m256 {
        _mm256_set1_ps(v)
    }
    #[inline(always)]
    unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
        _mm256_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn sum(v: __m256) -> f32 {
        // The same pairing as `_mm512_reduce_add_ps`: halves, then halves again.
        let quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
        _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps(pair, pair, 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each set's lane operations on the CPUs that have it, against scalar arithmetic.
    #[test]
    fn lane_operations_match_scalar_arithmetic() {
        fn check<L: Lanes>() {
            let a: Vec<f32> = (0..L::N).map(|i| i as f32 * 0.5 - 3.0).collect();
            let b: Vec<f32> = (0..L::N).map(|i| 2.0 - i as f32 * 0.25).collect();
            let mut out = vec![0.0f32; L::N];
            // SAFETY: called only for sets this CPU supports (below); buffers hold N lanes.
            let total = unsafe {
                let v = L::fma(L::load(a.as_ptr()), L::load(b.as_ptr()), L::splat(1.0));
                L::store(out.as_mut_ptr(), v);
                L::sum(v) + L::sum(L::zero())
            };
            for i in 0..L::N {
                assert_eq!(out[i], a[i] * b[i] + 1.0);
            }
            assert_eq!(total, out.iter().sum::<f32>());
        }
        for isa in Isa::supported() {
            match isa {
                Isa::Avx512 => check::<Avx512>(),
                Isa::Avx2 => check::<Avx2>(),
            }
        }
    }
}
