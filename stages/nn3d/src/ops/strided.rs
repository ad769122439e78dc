//! Strided slicing along one axis built from candle view ops, so it has autograd on any device.

use candle_core::{bail, Result, Tensor};

/// Elements `start, start+step, ..., start+(len-1)*step` of `x` along `dim`.
pub fn strided_narrow(
    x: &Tensor,
    dim: usize,
    start: usize,
    len: usize,
    step: usize,
) -> Result<Tensor> {
    let size = x.dim(dim)?;
    if len == 0 || step == 0 || start + (len - 1) * step >= size {
        bail!("strided_narrow: start {start}, len {len}, step {step} out of range for size {size}")
    }
    if step == 1 {
        return x.narrow(dim, start, len);
    }
    if len == 1 {
        return x.narrow(dim, start, 1);
    }
    let take = (len * step).min(size - start);
    let mut t = x.narrow(dim, start, take)?;
    if take < len * step {
        t = t.pad_with_zeros(dim, 0, len * step - take)?;
    }
    let mut shape = t.dims().to_vec();
    shape[dim] = len;
    shape.insert(dim + 1, step);
    t.reshape(shape)?.narrow(dim + 1, 0, 1)?.squeeze(dim + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn picks_every_step_th_element() -> Result<()> {
        let x = Tensor::arange(0f32, 10., &Device::Cpu)?.reshape((1, 10))?;
        let y = strided_narrow(&x, 1, 1, 3, 3)?;
        assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, vec![1., 4., 7.]);
        let y = strided_narrow(&x, 1, 1, 3, 4)?;
        assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, vec![1., 5., 9.]);
        assert!(strided_narrow(&x, 1, 2, 3, 4).is_err());
        Ok(())
    }
}
