//! 3D tensor operations with autograd: convolution, transposed convolution, normalisation,
//! activation, pooling and resizing, and the Dice + cross-entropy loss as one CPU op.
//! Layout is always `(N, C, D, H, W)`.

pub mod activation;
pub mod channel_bias;
pub mod conv3d;
mod conv3d_cpu;
#[cfg(target_arch = "x86_64")]
mod conv3d_direct;
mod conv3d_op;
pub mod conv_transpose;
mod dice_ce;
pub mod instance_norm;
pub mod norm_act;
#[cfg(target_arch = "x86_64")]
mod norm_act_f32;
pub mod pool;
pub mod resize;
#[cfg(target_arch = "x86_64")]
mod simd;
pub mod strided;

pub use activation::{leaky_relu, leaky_relu_generic};
pub use channel_bias::add_channel_bias;
pub use conv3d::{conv3d, conv3d_concat, conv3d_generic, Conv3dParams};
pub use conv_transpose::conv_transpose3d_nonoverlapping;
pub(crate) use dice_ce::dice_ce_cpu;
pub use instance_norm::{instance_norm, instance_norm_generic};
pub use norm_act::instance_norm_leaky_relu;
pub use pool::{avg_pool3d, global_avg_pool3d, max_pool3d, Pool3dParams};
pub use resize::{resize_nearest3d, resize_trilinear3d};

use std::cell::Cell;

use candle_core::Tensor;

thread_local! {
    static GENERIC_ONLY: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the CPU's fused kernels turned off on this thread: every op takes the generic
/// candle path that a GPU takes. For checking that both paths compute the same function
/// (tests/device_parity.rs) without a GPU.
pub fn with_generic_ops<R>(f: impl FnOnce() -> R) -> R {
    let before = GENERIC_ONLY.with(|g| g.replace(true));
    let out = f();
    GENERIC_ONLY.with(|g| g.set(before));
    out
}

/// Whether `t` may take a fused CPU kernel: it lives on the CPU and [`with_generic_ops`] is not
/// in force on this thread.
pub(crate) fn fused_cpu(t: &Tensor) -> bool {
    t.device().is_cpu() && !GENERIC_ONLY.with(Cell::get)
}
