//! The per-plane loops of the fused instance norm + LeakyReLU for f32 on AVX-512 or AVX2.
//!
//! The generic loops (`norm_act`) do every element in f64, which the default x86-64 target
//! compiles to two-lane SSE2: the backward pass alone was a fifth of a demo stage-1 training
//! step. Here each element is computed in f32 in sixteen-lane blocks (the loops are compiled
//! for AVX-512F and for AVX2, one picked at run time: [`Isa`]; both add the same numbers in the
//! same order, so they give the same bits), and the sums are kept per lane in f32 over
//! blocks of [`BLOCK`] elements, then added up in f64, so a plane of a million voxels sums
//! as accurately as the f64 path to within f32 rounding of each element. Results do not depend
//! on the thread count.

use super::simd::Isa;

/// Lanes summed side by side (one AVX-512 vector, two AVX2 vectors).
const LANES: usize = 16;
/// Elements summed in f32 lanes before the partial sums are added to the f64 total.
const BLOCK: usize = 1024;

/// Whether this CPU runs these loops (AVX-512F or AVX2).
pub(crate) fn available() -> bool {
    Isa::detected().is_some()
}

/// Defines `$name` with the loop `$body` compiled once for each instruction set, the one
/// [`Isa::detected`] picks called at run time.
macro_rules! per_isa {
    ($(#[$doc:meta])* unsafe fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty $body:block) => {
        $(#[$doc])*
        #[allow(clippy::too_many_arguments)]
        pub(crate) unsafe fn $name($($arg: $ty),*) -> $ret {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) -> $ret $body
            #[target_feature(enable = "avx512f")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx512($($arg: $ty),*) -> $ret {
                body($($arg),*)
            }
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx2($($arg: $ty),*) -> $ret {
                body($($arg),*)
            }
            match Isa::detected() {
                Some(Isa::Avx512) => avx512($($arg),*),
                Some(Isa::Avx2) => avx2($($arg),*),
                None => unreachable!("callers check available()"),
            }
        }
    };
}

/// `(Σ f(x_i, g_i).0, Σ f(x_i, g_i).1)` with f32 lanes per block and an f64 total.
#[inline(always)]
fn block_sums(x: &[f32], g: &[f32], f: impl Fn(f32, f32) -> (f32, f32)) -> (f64, f64) {
    let (mut ta, mut tb) = (0.0f64, 0.0f64);
    for (xb, gb) in x.chunks(BLOCK).zip(g.chunks(BLOCK)) {
        let (mut a, mut b) = ([0.0f32; LANES], [0.0f32; LANES]);
        let (xc, gc) = (xb.chunks_exact(LANES), gb.chunks_exact(LANES));
        let (xr, gr) = (xc.remainder(), gc.remainder());
        for (xs, gs) in xc.zip(gc) {
            for l in 0..LANES {
                let (u, v) = f(xs[l], gs[l]);
                a[l] += u;
                b[l] += v;
            }
        }
        for (&xv, &gv) in xr.iter().zip(gr) {
            let (u, v) = f(xv, gv);
            a[0] += u;
            b[0] += v;
        }
        ta += a.iter().map(|&v| f64::from(v)).sum::<f64>();
        tb += b.iter().map(|&v| f64::from(v)).sum::<f64>();
    }
    (ta, tb)
}

per_isa! {
    /// Mean and 1/sqrt(var + eps) of one plane (two passes, as the f64 path).
    ///
    /// # Safety
    /// The CPU must run these loops ([`available`]).
    unsafe fn plane_stats(x: &[f32], eps: f64) -> (f64, f64) {
        let n = x.len().max(1) as f64;
        let mean = block_sums(x, x, |v, _| (v, 0.0)).0 / n;
        let m = mean as f32;
        let var = block_sums(x, x, |v, _| ((v - m) * (v - m), 0.0)).0 / n;
        (mean, 1.0 / (var + eps).sqrt())
    }
}

per_isa! {
    /// The backward pass of one plane: writes the input gradient into `gx` and returns the
    /// plane's `(Σ g', Σ g' x̂)` (the bias and weight gradients' shares), with `g'` the gradient
    /// before the activation and `x̂` the normalised input.
    ///
    /// # Safety
    /// The CPU must run these loops ([`available`]); `x`, `g` and `gx` have the same length.
    unsafe fn plane_backward(
        x: &[f32],
        g: &[f32],
        gx: &mut [std::mem::MaybeUninit<f32>],
        mean: f64,
        rstd: f64,
        weight: f64,
        bias: f64,
        slope: f64,
    ) -> (f64, f64) {
        let (m, r, w, b, s) = (
            mean as f32,
            rstd as f32,
            weight as f32,
            bias as f32,
            slope as f32,
        );
        let pre_grad = |v: f32, g: f32| -> (f32, f32) {
            let xh = (v - m) * r;
            let gp = if xh * w + b >= 0.0 { g } else { g * s };
            (gp, xh)
        };
        let (s1, s2) = block_sums(x, g, |v, g| {
            let (gp, xh) = pre_grad(v, g);
            (gp, gp * xh)
        });
        let n = x.len().max(1) as f64;
        let (k, a1, a2) = ((weight * rstd) as f32, (s1 / n) as f32, (s2 / n) as f32);
        for ((o, &v), &g) in gx.iter_mut().zip(x).zip(g) {
            let (gp, xh) = pre_grad(v, g);
            o.write(k * (gp - a1 - xh * a2));
        }
        (s1, s2)
    }
}
