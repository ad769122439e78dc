//! Activations used by the networks. LeakyReLU has a single-pass CPU custom op (candle's
//! max/min formulation costs about ten passes over memory in forward+backward) and a generic
//! formulation for other devices.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

use super::conv3d_cpu::{storage_slice, with_cpu_slice};

/// LeakyReLU: `x` for `x >= 0`, `slope * x` otherwise (slope in [0, 1)).
pub fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    if super::fused_cpu(x) && matches!(x.dtype(), DType::F32 | DType::F64) {
        x.contiguous()?.apply_op1(LeakyReluCpu { slope })
    } else {
        leaky_relu_generic(x, slope)
    }
}

/// LeakyReLU from candle's elementwise ops (autograd on every device).
pub fn leaky_relu_generic(x: &Tensor, slope: f64) -> Result<Tensor> {
    let zeros = x.zeros_like()?;
    x.maximum(&zeros)? + (x.minimum(&zeros)? * slope)?
}

const CHUNK: usize = 1 << 16;

struct LeakyReluCpu {
    slope: f64,
}

impl LeakyReluCpu {
    fn fwd_typed<T: WithDType>(&self, s: &CpuStorage, l: &Layout) -> Result<CpuStorage> {
        let x = storage_slice::<T>(s, l)?;
        let slope = T::from_f64(self.slope);
        let zero = T::from_f64(0.0);
        let mut out = vec![zero; x.len()];
        out.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(o, x)| {
                for (o, &v) in o.iter_mut().zip(x) {
                    *o = if v >= zero { v } else { v * slope };
                }
            });
        Ok(T::to_cpu_storage_owned(out))
    }

    fn bwd_typed<T: WithDType>(&self, x: &Tensor, g: &Tensor) -> Result<Tensor> {
        let slope = T::from_f64(self.slope);
        let zero = T::from_f64(0.0);
        let gx = with_cpu_slice::<T, _>(x, |xs| {
            with_cpu_slice::<T, _>(g, |gs| {
                let mut out = vec![zero; xs.len()];
                out.par_chunks_mut(CHUNK)
                    .zip(xs.par_chunks(CHUNK).zip(gs.par_chunks(CHUNK)))
                    .for_each(|(o, (x, g))| {
                        for ((o, &v), &gv) in o.iter_mut().zip(x).zip(g) {
                            *o = if v >= zero { gv } else { gv * slope };
                        }
                    });
                Ok(out)
            })
        })?;
        Tensor::from_vec(gx, x.dims(), x.device())
    }
}

impl CustomOp1 for LeakyReluCpu {
    fn name(&self) -> &'static str {
        "leaky-relu-cpu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = match s.dtype() {
            DType::F32 => self.fwd_typed::<f32>(s, l)?,
            DType::F64 => self.fwd_typed::<f64>(s, l)?,
            dt => bail!("leaky-relu-cpu: unsupported dtype {dt:?}"),
        };
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let (x, g) = (x.contiguous()?, g.contiguous()?);
        Ok(Some(match x.dtype() {
            DType::F32 => self.bwd_typed::<f32>(&x, &g)?,
            DType::F64 => self.bwd_typed::<f64>(&x, &g)?,
            dt => bail!("leaky-relu-cpu: unsupported dtype {dt:?}"),
        }))
    }
}
