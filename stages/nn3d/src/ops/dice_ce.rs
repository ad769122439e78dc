//! nnU-Net's soft Dice + cross-entropy on the CPU as one op over the logits. The composed
//! loss (softmax, log-softmax, a one-hot target, products and sums) keeps about a dozen
//! logit-sized tensors alive until backward ends; this op keeps none: forward reduces each
//! voxel's softmax into per-class sums, backward recomputes the softmax and writes the
//! logit gradient directly.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

use super::conv3d_cpu::{storage_slice, with_cpu_slice};

/// Voxels per parallel task.
const CHUNK: usize = 8192;
/// A label that is no class in `0..C` (the composed loss's one-hot row is all zeros there).
const NO_CLASS: u32 = u32::MAX;

/// Soft Dice (batch statistics, classes `1..C`, smoothing `smooth`) + mean cross-entropy of
/// `logits (N, C, ...)` against integer-valued `labels (N, 1, ...)`, as a scalar. Same
/// function as [`crate::loss::dice_ce_loss`]'s composed path; f32 or f64 CPU logits.
pub(crate) fn dice_ce_cpu(logits: &Tensor, labels: &Tensor, smooth: f64) -> Result<Tensor> {
    let dims = logits.dims();
    if dims.len() < 3 || labels.dims().len() != dims.len() {
        bail!("Dice+CE: logits {dims:?} need (N, C, ...) and labels of the same rank")
    }
    let c = dims[1];
    if c < 2 {
        bail!("soft Dice needs at least two classes (background excluded), got {c}")
    }
    if labels.dims()[0] != dims[0] || labels.dims()[1] != 1 || labels.dims()[2..] != dims[2..] {
        bail!(
            "Dice+CE: labels {:?} do not match logits {dims:?} (one channel expected)",
            labels.dims()
        )
    }
    if logits.elem_count() == 0 {
        bail!("Dice+CE: logits {dims:?} hold no voxels")
    }
    let classes = labels
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?
        .into_iter()
        .map(|v| {
            if v >= 0.0 && v.fract() == 0.0 && (v as usize) < c {
                v as u32
            } else {
                NO_CLASS
            }
        })
        .collect();
    logits.contiguous()?.apply_op1(DiceCe { classes, smooth })
}

struct DiceCe {
    /// Each voxel's class, `(N, spatial...)` order.
    classes: Vec<u32>,
    smooth: f64,
}

/// Sums over a set of voxels: cross-entropy, and per class tp, predicted and true volume.
#[derive(Clone)]
struct Sums {
    ce: f64,
    tp: Vec<f64>,
    pred: Vec<f64>,
    truth: Vec<f64>,
}

impl Sums {
    fn new(c: usize) -> Self {
        Self {
            ce: 0.0,
            tp: vec![0.0; c],
            pred: vec![0.0; c],
            truth: vec![0.0; c],
        }
    }

    fn add(mut self, o: &Sums) -> Self {
        self.ce += o.ce;
        for (a, b) in [
            (&mut self.tp, &o.tp),
            (&mut self.pred, &o.pred),
            (&mut self.truth, &o.truth),
        ] {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        }
        self
    }
}

/// The softmax of one voxel's logits into `p`; returns log of the normaliser plus the max
/// (so `log p_k = z_k - lse`).
fn softmax_into(z: &[f64], p: &mut [f64]) -> f64 {
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for (pk, &zk) in p.iter_mut().zip(z) {
        *pk = (zk - max).exp();
        sum += *pk;
    }
    p.iter_mut().for_each(|pk| *pk /= sum);
    max + sum.ln()
}

/// Shape of one call: batch, classes, voxels per channel plane.
struct Geometry {
    n: usize,
    c: usize,
    s: usize,
}

impl Geometry {
    fn new(dims: &[usize]) -> Self {
        Self {
            n: dims[0],
            c: dims[1],
            s: dims[2..].iter().product(),
        }
    }

    /// (batch item, first voxel, voxel count) of every task.
    fn tasks(&self) -> Vec<(usize, usize, usize)> {
        (0..self.n)
            .flat_map(|n| (0..self.s.div_ceil(CHUNK)).map(move |i| (n, i * CHUNK)))
            .map(|(n, s0)| (n, s0, CHUNK.min(self.s - s0)))
            .collect()
    }
}

impl DiceCe {
    /// Visits every voxel of a task with its softmax, class and log-normaliser.
    fn for_each_voxel<T: WithDType>(
        &self,
        g: &Geometry,
        x: &[T],
        (n, s0, len): (usize, usize, usize),
        mut f: impl FnMut(usize, &[f64], u32, f64, &[f64]),
    ) {
        let (mut z, mut p) = (vec![0.0; g.c], vec![0.0; g.c]);
        let base = n * g.c * g.s;
        for i in 0..len {
            let s = s0 + i;
            for (k, zk) in z.iter_mut().enumerate() {
                *zk = x[base + k * g.s + s].to_f64();
            }
            let lse = softmax_into(&z, &mut p);
            f(i, &p, self.classes[n * g.s + s], lse, &z);
        }
    }

    fn sums<T: WithDType>(&self, g: &Geometry, x: &[T]) -> Sums {
        let partial: Vec<Sums> = g
            .tasks()
            .into_par_iter()
            .map(|task| {
                let mut acc = Sums::new(g.c);
                self.for_each_voxel(g, x, task, |_, p, y, lse, z| {
                    for (k, pk) in p.iter().enumerate() {
                        acc.pred[k] += pk;
                    }
                    if y != NO_CLASS {
                        let y = y as usize;
                        acc.ce += lse - z[y];
                        acc.tp[y] += p[y];
                        acc.truth[y] += 1.0;
                    }
                });
                acc
            })
            .collect();
        // Reduced in task order: the same result for any thread count.
        partial.iter().fold(Sums::new(g.c), Sums::add)
    }

    /// (numerator, denominator, whether the denominator was clamped) of class `k`'s Dice.
    fn dice_terms(&self, s: &Sums, k: usize) -> (f64, f64, bool) {
        let num = 2.0 * s.tp[k] + self.smooth;
        let den = s.pred[k] + s.truth[k] + self.smooth;
        (num, den.max(1e-8), den < 1e-8)
    }

    fn loss(&self, g: &Geometry, s: &Sums) -> f64 {
        let voxels = (g.n * g.s) as f64;
        let dice: f64 = (1..g.c)
            .map(|k| {
                let (num, den, _) = self.dice_terms(s, k);
                num / den
            })
            .sum();
        s.ce / voxels - dice / (g.c - 1) as f64
    }

    /// d loss / d logits, times `scale` (the upstream gradient).
    fn gradient<T: WithDType>(&self, g: &Geometry, x: &[T], scale: f64) -> Vec<T> {
        let s = self.sums(g, x);
        let fg = (g.c - 1) as f64;
        // d Dice-term / d p_k = a_k * [y == k] + b_k, classes 1..C.
        let (mut a, mut b) = (vec![0.0; g.c], vec![0.0; g.c]);
        for k in 1..g.c {
            let (num, den, clamped) = self.dice_terms(&s, k);
            a[k] = -2.0 / (den * fg);
            b[k] = if clamped { 0.0 } else { num / (den * den * fg) };
        }
        let inv_m = 1.0 / (g.n * g.s) as f64;
        let mut out = vec![T::from_f64(0.0); x.len()];
        // Each task's share of every channel plane, as disjoint mutable slices.
        let tasks = g.tasks();
        let per_item = g.s.div_ceil(CHUNK);
        let mut shares: Vec<Vec<&mut [T]>> = tasks.iter().map(|_| Vec::new()).collect();
        for (p, plane) in out.chunks_mut(g.s).enumerate() {
            for (i, part) in plane.chunks_mut(CHUNK).enumerate() {
                shares[p / g.c * per_item + i].push(part);
            }
        }
        tasks
            .into_par_iter()
            .zip(shares)
            .for_each(|(task, mut planes)| {
                let mut da = vec![0.0; g.c];
                self.for_each_voxel(g, x, task, |i, p, y, _, _| {
                    let mut dot = 0.0;
                    for k in 0..g.c {
                        da[k] = b[k] + if y as usize == k { a[k] } else { 0.0 };
                        dot += p[k] * da[k];
                    }
                    // Cross-entropy's share is p - onehot, nothing for a voxel of no class.
                    let labelled = y != NO_CLASS;
                    for k in 0..g.c {
                        let ce = match (labelled, y as usize == k) {
                            (false, _) => 0.0,
                            (true, true) => p[k] - 1.0,
                            (true, false) => p[k],
                        };
                        let d = ce * inv_m + p[k] * (da[k] - dot);
                        planes[k][i] = T::from_f64(scale * d);
                    }
                });
            });
        out
    }
}

impl CustomOp1 for DiceCe {
    fn name(&self) -> &'static str {
        "dice-ce-cpu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = Geometry::new(l.dims());
        let out = match s.dtype() {
            DType::F32 => {
                let x = storage_slice::<f32>(s, l)?;
                CpuStorage::F32(vec![self.loss(&g, &self.sums(&g, x)) as f32])
            }
            DType::F64 => {
                let x = storage_slice::<f64>(s, l)?;
                CpuStorage::F64(vec![self.loss(&g, &self.sums(&g, x))])
            }
            dt => bail!("dice-ce-cpu: unsupported dtype {dt:?}"),
        };
        Ok((out, Shape::from(())))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let g = Geometry::new(x.dims());
        let scale = grad.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let gx = match x.dtype() {
            DType::F32 => Tensor::from_vec(
                with_cpu_slice::<f32, _>(x, |xs| Ok(self.gradient(&g, xs, scale)))?,
                x.dims(),
                x.device(),
            )?,
            DType::F64 => Tensor::from_vec(
                with_cpu_slice::<f64, _>(x, |xs| Ok(self.gradient(&g, xs, scale)))?,
                x.dims(),
                x.device(),
            )?,
            dt => bail!("dice-ce-cpu: unsupported dtype {dt:?}"),
        };
        Ok(Some(gx))
    }
}
