//! Adding a per-channel bias to `(N, C, ...)` activations. On the CPU a custom op whose
//! backward sums each channel plane directly: candle's broadcast-add backward reduces over the
//! batch and spatial axes with a strided reduction that cost a tenth of a U-Net step.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

use super::conv3d_cpu::{storage_slice, with_cpu_slice};

/// `y + bias` with `bias (C)` broadcast over the batch and spatial axes of `y (N, C, ...)`.
pub fn add_channel_bias(y: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let c = y.dims().get(1).copied().unwrap_or(0);
    if y.rank() < 2 || bias.dims() != [c] {
        bail!(
            "channel bias: activations {:?} need (N, C, ...) and a bias of shape ({c}), got {:?}",
            y.dims(),
            bias.dims()
        )
    }
    if super::fused_cpu(y)
        && matches!(y.dtype(), DType::F32 | DType::F64)
        && bias.dtype() == y.dtype()
    {
        y.contiguous()?
            .apply_op2(&bias.contiguous()?, ChannelBiasCpu)
    } else {
        let mut shape = vec![1; y.rank()];
        shape[1] = c;
        y.broadcast_add(&bias.reshape(shape)?)
    }
}

struct ChannelBiasCpu;

fn plane_len(shape: &[usize]) -> usize {
    shape[2..].iter().product()
}

/// Adds `b[c]` to every value of channel `c` of `y`, a contiguous `(N, C, ...)` buffer.
pub(crate) fn add_in_place<T: WithDType>(y: &mut [T], b: &[T], shape: &[usize]) {
    let (c, len) = (shape[1], plane_len(shape));
    if len > 0 {
        y.par_chunks_mut(len).enumerate().for_each(|(p, plane)| {
            let bv = b[p % c];
            plane.iter_mut().for_each(|v| *v += bv);
        });
    }
}

/// Per-channel sums of the gradient (accumulated in f64).
pub(crate) fn channel_sums<T: WithDType>(g: &[T], shape: &[usize]) -> Vec<f64> {
    let (c, len) = (shape[1], plane_len(shape));
    let mut gb = vec![0.0f64; c];
    if len > 0 {
        let sums: Vec<f64> = g
            .par_chunks(len)
            .map(|p| p.iter().map(|v| v.to_f64()).sum())
            .collect();
        for (i, s) in sums.iter().enumerate() {
            gb[i % c] += s;
        }
    }
    gb
}

/// The gradient of a channel bias `b` from the output gradient `g (N, C, ...)` on the CPU: the
/// sum of each channel plane, as a tensor of `b`'s dtype and device.
pub(crate) fn bias_grad(g: &Tensor, b: &Tensor) -> Result<Tensor> {
    let g = g.contiguous()?;
    let gb = match g.dtype() {
        DType::F32 => with_cpu_slice::<f32, _>(&g, |s| Ok(channel_sums(s, g.dims())))?,
        DType::F64 => with_cpu_slice::<f64, _>(&g, |s| Ok(channel_sums(s, g.dims())))?,
        dt => bail!("channel bias: unsupported dtype {dt:?}"),
    };
    Tensor::from_vec(gb, b.dims(), b.device())?.to_dtype(b.dtype())
}

impl CustomOp2 for ChannelBiasCpu {
    fn name(&self) -> &'static str {
        "channel-bias-cpu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = l1.dims();
        let out = match s1.dtype() {
            DType::F32 => {
                let mut y = storage_slice::<f32>(s1, l1)?.to_vec();
                add_in_place(&mut y, storage_slice(s2, l2)?, dims);
                CpuStorage::F32(y)
            }
            DType::F64 => {
                let mut y = storage_slice::<f64>(s1, l1)?.to_vec();
                add_in_place(&mut y, storage_slice(s2, l2)?, dims);
                CpuStorage::F64(y)
            }
            dt => bail!("channel-bias-cpu: unsupported dtype {dt:?}"),
        };
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        _y: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let gb = bias_grad(g, b)?;
        Ok((Some(g.clone()), Some(gb)))
    }
}
