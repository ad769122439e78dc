//! conv3d as candle custom ops on the CPU. [`Conv3dCpu`] convolves one input, with the bias
//! added in place when given (a biased layer keeps one activation for backward, not two).
//! [`ConcatConv3dCpu`] convolves the channel concatenation of two inputs without building it:
//! a U-Net decoder's first convolution reads the upsampled and the skip activations directly,
//! so their concatenation is never kept for backward.

use std::borrow::Cow;

use candle_core::backend::BackendStorage;
use candle_core::{
    bail, CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, WithDType,
};

use super::channel_bias::{add_in_place, bias_grad, channel_sums};
use super::conv3d::Conv3dParams;
use super::conv3d_cpu::{backward, forward, storage_slice, with_cpu_slice, Geometry};

/// A convolution's input as channel groups: contiguous `(n, c_j, d, h, w)` buffers whose
/// channels, group after group, are the input channels.
#[derive(Clone, Copy)]
pub(crate) struct ChannelGroups<'a, T> {
    groups: &'a [&'a [T]],
    /// Batch items and voxels per channel plane.
    n: usize,
    vol: usize,
}

impl<'a, T: Copy> ChannelGroups<'a, T> {
    pub fn new(groups: &'a [&'a [T]], n: usize, vol: usize) -> Self {
        Self { groups, n, vol }
    }

    /// Channels of each group.
    pub fn channels(&self) -> impl Iterator<Item = usize> + '_ {
        let per = self.n * self.vol;
        self.groups
            .iter()
            .map(move |g| g.len().checked_div(per).unwrap_or(0))
    }

    /// The channel planes of batch item `item`, in channel order.
    pub fn item(&self, item: usize) -> Vec<&'a [T]> {
        let vol = self.vol;
        self.groups
            .iter()
            .zip(self.channels().collect::<Vec<_>>())
            .flat_map(|(g, c)| g[item * c * vol..(item + 1) * c * vol].chunks(vol.max(1)))
            .collect()
    }

    /// The concatenated input `(n, ci, d, h, w)`, for kernels that read one buffer (borrowed
    /// when there is one group).
    pub fn concat(&self) -> Cow<'a, [T]> {
        if let [one] = self.groups {
            return Cow::Borrowed(one);
        }
        Cow::Owned(
            (0..self.n)
                .flat_map(|i| self.item(i))
                .flatten()
                .copied()
                .collect(),
        )
    }

    /// Splits an input gradient `(n, ci, d, h, w)` into one buffer per group.
    pub fn split(&self, gx: Vec<T>) -> Vec<Vec<T>> {
        if self.groups.len() == 1 {
            return vec![gx];
        }
        let channels: Vec<usize> = self.channels().collect();
        let ci: usize = channels.iter().sum();
        let plane = ci * self.vol;
        let mut out: Vec<Vec<T>> = channels
            .iter()
            .map(|c| Vec::with_capacity(self.n * c * self.vol))
            .collect();
        for item in gx.chunks(plane.max(1)).take(self.n) {
            let mut at = 0;
            for (o, c) in out.iter_mut().zip(&channels) {
                o.extend_from_slice(&item[at..at + c * self.vol]);
                at += c * self.vol;
            }
        }
        out
    }
}

/// The convolution kernels of one dtype: direct AVX-512/AVX2 kernels for f32 where they apply,
/// im2col otherwise.
trait ConvKernels: WithDType {
    fn conv(g: &Geometry, x: ChannelGroups<Self>, w: &[Self]) -> Vec<Self>;
    /// Input gradients (one per group) and the weight gradient.
    fn conv_grads(
        g: &Geometry,
        x: ChannelGroups<Self>,
        w: &[Self],
        gy: &[Self],
    ) -> (Vec<Vec<Self>>, Vec<Self>);
}

fn im2col_grads<T: WithDType>(
    g: &Geometry,
    x: ChannelGroups<T>,
    w: &[T],
    gy: &[T],
) -> (Vec<Vec<T>>, Vec<T>) {
    let (gx, gw) = backward(g, &x.concat(), w, gy);
    (x.split(gx), gw)
}

impl ConvKernels for f32 {
    fn conv(g: &Geometry, x: ChannelGroups<f32>, w: &[f32]) -> Vec<f32> {
        #[cfg(target_arch = "x86_64")]
        if g.direct() {
            return super::conv3d_direct::forward(g, x, w);
        }
        forward(g, &x.concat(), w)
    }

    fn conv_grads(
        g: &Geometry,
        x: ChannelGroups<f32>,
        w: &[f32],
        gy: &[f32],
    ) -> (Vec<Vec<f32>>, Vec<f32>) {
        #[cfg(target_arch = "x86_64")]
        if g.direct() {
            return super::conv3d_direct::backward(g, x, w, gy);
        }
        im2col_grads(g, x, w, gy)
    }
}

impl ConvKernels for f64 {
    fn conv(g: &Geometry, x: ChannelGroups<f64>, w: &[f64]) -> Vec<f64> {
        forward(g, &x.concat(), w)
    }

    fn conv_grads(
        g: &Geometry,
        x: ChannelGroups<f64>,
        w: &[f64],
        gy: &[f64],
    ) -> (Vec<Vec<f64>>, Vec<f64>) {
        im2col_grads(g, x, w, gy)
    }
}

/// Input dims `(n, ci, d, h, w)` of groups with these dims, concatenated along channels.
fn concat_dims(groups: &[&[usize]]) -> Result<[usize; 5]> {
    let Some(&&[n, _, d, h, w]) = groups.first() else {
        bail!("conv3d: 5D inputs expected, got {groups:?}")
    };
    let mut ci = 0;
    for g in groups {
        match *g {
            &[gn, c, gd, gh, gw] if [gn, gd, gh, gw] == [n, d, h, w] => ci += c,
            _ => bail!("conv3d: inputs {groups:?} differ in batch or spatial size"),
        }
    }
    Ok([n, ci, d, h, w])
}

/// Forward of a convolution over `inputs` (channel groups) with weight `w` and, where given,
/// a per-channel bias, from CPU storages of one dtype.
fn conv_forward<T: ConvKernels>(
    params: &Conv3dParams,
    inputs: &[(&CpuStorage, &Layout)],
    (ws, wl): (&CpuStorage, &Layout),
    w_dims: &[usize],
    bias: Option<&[T]>,
) -> Result<(Vec<T>, Shape)> {
    let x_dims = concat_dims(&inputs.iter().map(|(_, l)| l.dims()).collect::<Vec<_>>())?;
    let g = Geometry::new(&x_dims, w_dims, params)?;
    let slices = inputs
        .iter()
        .map(|(s, l)| storage_slice::<T>(s, l))
        .collect::<Result<Vec<_>>>()?;
    let x = ChannelGroups::new(&slices, g.n, g.d * g.h * g.w);
    let w = &storage_slice::<T>(ws, wl)?[..w_dims.iter().product()];
    let mut y = T::conv(&g, x, w);
    let dims = [g.n, g.co, g.od, g.oh, g.ow];
    if let Some(b) = bias {
        add_in_place(&mut y, b, &dims);
    }
    Ok((y, Shape::from(dims.to_vec())))
}

/// Input gradients (one per input) and the weight gradient.
fn conv_backward<T: ConvKernels>(
    params: &Conv3dParams,
    inputs: &[&Tensor],
    w: &Tensor,
    w_dims: &[usize],
    gy: &Tensor,
) -> Result<(Vec<Tensor>, Vec<T>)> {
    let x_dims = concat_dims(&inputs.iter().map(|t| t.dims()).collect::<Vec<_>>())?;
    let g = Geometry::new(&x_dims, w_dims, params)?;
    let gy = gy.contiguous()?;
    let mut guards = Vec::with_capacity(inputs.len());
    for t in inputs {
        guards.push(t.storage_and_layout());
    }
    let slices = guards
        .iter()
        .map(|(s, l)| match &**s {
            candle_core::Storage::Cpu(cs) => storage_slice::<T>(cs, l),
            _ => bail!("conv3d-cpu: tensor is not on the CPU"),
        })
        .collect::<Result<Vec<_>>>()?;
    let x = ChannelGroups::new(&slices, g.n, g.d * g.h * g.w);
    let (gx, gw) = with_cpu_slice::<T, _>(w, |ws| {
        with_cpu_slice::<T, _>(&gy, |gys| {
            Ok(T::conv_grads(&g, x, &ws[..w_dims.iter().product()], gys))
        })
    })?;
    let gx = gx
        .into_iter()
        .zip(inputs)
        .map(|(v, t)| Tensor::from_vec(v, t.dims(), t.device()))
        .collect::<Result<Vec<_>>>()?;
    Ok((gx, gw))
}

/// The CPU conv3d op: `CustomOp2` on (input, weight), `CustomOp3` on (input, weight, bias).
pub(crate) struct Conv3dCpu {
    pub params: Conv3dParams,
}

impl Conv3dCpu {
    fn fwd(
        &self,
        x: (&CpuStorage, &Layout),
        w: (&CpuStorage, &Layout),
        bias: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let w_dims = w.1.dims();
        match (x.0.dtype(), w.0.dtype(), bias.map(|b| b.0.dtype())) {
            (DType::F32, DType::F32, None | Some(DType::F32)) => {
                let b = bias.map(|(s, l)| storage_slice::<f32>(s, l)).transpose()?;
                let (y, shape) = conv_forward::<f32>(&self.params, &[x], w, w_dims, b)?;
                Ok((CpuStorage::F32(y), shape))
            }
            (DType::F64, DType::F64, None | Some(DType::F64)) => {
                let b = bias.map(|(s, l)| storage_slice::<f64>(s, l)).transpose()?;
                let (y, shape) = conv_forward::<f64>(&self.params, &[x], w, w_dims, b)?;
                Ok((CpuStorage::F64(y), shape))
            }
            (a, b, c) => bail!(
                "conv3d-cpu: unsupported dtypes {a:?}, {b:?}, bias {c:?} (all f32 or all f64)"
            ),
        }
    }

    fn grads(&self, x: &Tensor, w: &Tensor, gy: &Tensor) -> Result<(Tensor, Tensor)> {
        let (mut gx, gw) = match x.dtype() {
            DType::F32 => {
                let (gx, gw) = conv_backward::<f32>(&self.params, &[x], w, w.dims(), gy)?;
                (gx, Tensor::from_vec(gw, w.dims(), w.device())?)
            }
            DType::F64 => {
                let (gx, gw) = conv_backward::<f64>(&self.params, &[x], w, w.dims(), gy)?;
                (gx, Tensor::from_vec(gw, w.dims(), w.device())?)
            }
            dt => bail!("conv3d-cpu: unsupported dtype {dt:?}"),
        };
        Ok((gx.swap_remove(0), gw))
    }
}

impl CustomOp2 for Conv3dCpu {
    fn name(&self) -> &'static str {
        "conv3d-cpu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.fwd((s1, l1), (s2, l2), None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        gy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (gx, gw) = self.grads(x, w, gy)?;
        Ok((Some(gx), Some(gw)))
    }
}

impl CustomOp3 for Conv3dCpu {
    fn name(&self) -> &'static str {
        "conv3d-bias-cpu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.fwd((s1, l1), (s2, l2), Some((s3, l3)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        gy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (gx, gw) = self.grads(x, w, gy)?;
        Ok((Some(gx), Some(gw), Some(bias_grad(gy, b)?)))
    }
}

/// The CPU op on (input a, input b, parameters): convolves `cat([a, b], channels)`.
/// `parameters` is the flattened weight `w_dims` followed by the bias when `bias` is set
/// (three operands is candle's limit for a custom op).
pub(crate) struct ConcatConv3dCpu {
    pub params: Conv3dParams,
    pub w_dims: [usize; 5],
    pub bias: bool,
}

impl ConcatConv3dCpu {
    fn fwd_typed<T: ConvKernels>(
        &self,
        inputs: [(&CpuStorage, &Layout); 2],
        p: (&CpuStorage, &Layout),
    ) -> Result<(Vec<T>, Shape)> {
        let wlen: usize = self.w_dims.iter().product();
        let params = storage_slice::<T>(p.0, p.1)?;
        if params.len() != wlen + if self.bias { self.w_dims[0] } else { 0 } {
            bail!(
                "conv3d-concat-cpu: {} parameters for weight {:?}",
                params.len(),
                self.w_dims
            )
        }
        let bias = self.bias.then(|| &params[wlen..]);
        conv_forward::<T>(&self.params, &inputs, p, &self.w_dims, bias)
    }

    fn bwd_typed<T: ConvKernels>(
        &self,
        a: &Tensor,
        b: &Tensor,
        p: &Tensor,
        gy: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (gx, mut gp) = conv_backward::<T>(&self.params, &[a, b], p, &self.w_dims, gy)?;
        if self.bias {
            let gy = gy.contiguous()?;
            let sums = with_cpu_slice::<T, _>(&gy, |s| Ok(channel_sums(s, gy.dims())))?;
            gp.extend(sums.into_iter().map(T::from_f64));
        }
        let mut gx = gx.into_iter();
        let (Some(ga), Some(gb)) = (gx.next(), gx.next()) else {
            bail!("conv3d-concat-cpu: expected two input gradients")
        };
        Ok((ga, gb, Tensor::from_vec(gp, p.dims(), p.device())?))
    }
}

impl CustomOp3 for ConcatConv3dCpu {
    fn name(&self) -> &'static str {
        "conv3d-concat-cpu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let inputs = [(s1, l1), (s2, l2)];
        match (s1.dtype(), s2.dtype(), s3.dtype()) {
            (DType::F32, DType::F32, DType::F32) => {
                let (y, shape) = self.fwd_typed::<f32>(inputs, (s3, l3))?;
                Ok((CpuStorage::F32(y), shape))
            }
            (DType::F64, DType::F64, DType::F64) => {
                let (y, shape) = self.fwd_typed::<f64>(inputs, (s3, l3))?;
                Ok((CpuStorage::F64(y), shape))
            }
            (a, b, c) => bail!("conv3d-concat-cpu: unsupported dtypes {a:?}, {b:?}, {c:?}"),
        }
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        p: &Tensor,
        _res: &Tensor,
        gy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (ga, gb, gp) = match a.dtype() {
            DType::F32 => self.bwd_typed::<f32>(a, b, p, gy)?,
            DType::F64 => self.bwd_typed::<f64>(a, b, p, gy)?,
            dt => bail!("conv3d-concat-cpu: unsupported dtype {dt:?}"),
        };
        Ok((Some(ga), Some(gb), Some(gp)))
    }
}
