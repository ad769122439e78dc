//! Nearest and trilinear 3D resizing with PyTorch's `align_corners=False` conventions,
//! separable along each axis and built from `index_select`, so autograd works everywhere.

use candle_core::{bail, Device, Result, Tensor};

/// Source index of each output position for PyTorch's `mode="nearest"`.
fn nearest_indices(in_len: usize, out_len: usize) -> Vec<u32> {
    let scale = in_len as f64 / out_len as f64;
    (0..out_len)
        .map(|o| ((o as f64 * scale).floor() as usize).min(in_len - 1) as u32)
        .collect()
}

/// Resizes `x (N, C, D, H, W)` to `size` with nearest-neighbour sampling.
pub fn resize_nearest3d(x: &Tensor, size: [usize; 3]) -> Result<Tensor> {
    check(x, size)?;
    let mut t = x.clone();
    for (axis, &out_len) in size.iter().enumerate() {
        let dim = axis + 2;
        let in_len = t.dim(dim)?;
        if in_len == out_len {
            continue;
        }
        let idx = Tensor::new(nearest_indices(in_len, out_len), x.device())?;
        t = t.index_select(&idx, dim)?;
    }
    Ok(t)
}

fn check(x: &Tensor, size: [usize; 3]) -> Result<()> {
    let (_, _, d, h, w) = x.dims5()?;
    if size.contains(&0) || d == 0 || h == 0 || w == 0 {
        bail!("resize3d: cannot resize {:?} to {size:?}", x.dims())
    }
    Ok(())
}

/// Linear interpolation taps (lower index, upper index, upper weight) per output position.
fn linear_taps(in_len: usize, out_len: usize) -> (Vec<u32>, Vec<u32>, Vec<f64>) {
    let scale = in_len as f64 / out_len as f64;
    let mut lo = Vec::with_capacity(out_len);
    let mut hi = Vec::with_capacity(out_len);
    let mut wt = Vec::with_capacity(out_len);
    for o in 0..out_len {
        let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(in_len - 1);
        let i1 = (i0 + 1).min(in_len - 1);
        lo.push(i0 as u32);
        hi.push(i1 as u32);
        wt.push(src - i0 as f64);
    }
    (lo, hi, wt)
}

fn weight_tensor(
    w: &[f64],
    dim: usize,
    rank: usize,
    x: &Tensor,
    device: &Device,
) -> Result<Tensor> {
    let mut shape = vec![1; rank];
    shape[dim] = w.len();
    Tensor::new(w, device)?.to_dtype(x.dtype())?.reshape(shape)
}

/// Resizes `x (N, C, D, H, W)` to `size` with trilinear interpolation.
pub fn resize_trilinear3d(x: &Tensor, size: [usize; 3]) -> Result<Tensor> {
    check(x, size)?;
    let mut t = x.clone();
    for (axis, &out_len) in size.iter().enumerate() {
        let dim = axis + 2;
        let in_len = t.dim(dim)?;
        if in_len == out_len {
            continue;
        }
        let (lo, hi, wt) = linear_taps(in_len, out_len);
        let dev = x.device();
        let a = t.index_select(&Tensor::new(lo, dev)?, dim)?;
        let b = t.index_select(&Tensor::new(hi, dev)?, dim)?;
        let w1 = weight_tensor(&wt, dim, 5, &t, dev)?;
        let w0 = weight_tensor(
            &wt.iter().map(|v| 1.0 - v).collect::<Vec<_>>(),
            dim,
            5,
            &t,
            dev,
        )?;
        t = (a.broadcast_mul(&w0)? + b.broadcast_mul(&w1)?)?;
    }
    Ok(t)
}
