//! Training losses: nnU-Net's soft Dice (batch dice, background excluded) + cross-entropy,
//! deep-supervision weighting with nearest-downsampled targets, and BCE with logits.

use candle_core::{bail, DType, Result, Tensor};
use candle_nn::ops::{log_softmax, softmax};

use crate::ops::resize_nearest3d;

/// One-hot encoding of integer-valued labels `(N, 1, D, H, W)` (any dtype) into
/// `(N, classes, D, H, W)` with the dtype of `like`.
pub fn one_hot(labels: &Tensor, classes: usize, like: DType) -> Result<Tensor> {
    let (n, c, d, h, w) = labels.dims5()?;
    if c != 1 {
        bail!("labels must have one channel, got {c}")
    }
    let lab = labels.to_dtype(DType::F32)?;
    let ids = Tensor::arange(0u32, classes as u32, labels.device())?
        .to_dtype(DType::F32)?
        .reshape((1, classes, 1, 1, 1))?;
    lab.broadcast_as((n, classes, d, h, w))?
        .broadcast_eq(&ids)?
        .to_dtype(like)
}

/// Mean voxel-wise cross-entropy of `logits (N, C, ...)` against a one-hot target.
pub fn cross_entropy(logits: &Tensor, onehot: &Tensor) -> Result<Tensor> {
    let logp = log_softmax(logits, 1)?;
    let per_voxel = (logp * onehot)?.sum_keepdim(1)?;
    per_voxel.mean_all()?.neg()
}

/// Negative mean soft Dice over the foreground classes (1..C), with statistics summed over
/// the batch and all voxels ("batch dice"): `(2 tp + s) / max(2 tp + fp + fn + s, 1e-8)`.
pub fn soft_dice_loss(logits: &Tensor, onehot: &Tensor, smooth: f64) -> Result<Tensor> {
    let c = logits.dim(1)?;
    if c < 2 {
        bail!("soft Dice needs at least two classes (background excluded), got {c}")
    }
    let probs = softmax(logits, 1)?.narrow(1, 1, c - 1)?;
    let gt = onehot.narrow(1, 1, c - 1)?;
    let per_class = |t: &Tensor| -> Result<Tensor> { t.transpose(0, 1)?.flatten_from(1)?.sum(1) };
    let tp = per_class(&(&probs * &gt)?)?;
    let sum_pred = per_class(&probs)?;
    let sum_gt = per_class(&gt)?;
    let num = ((tp * 2.0)? + smooth)?;
    let den = ((sum_pred + sum_gt)? + smooth)?.clamp(1e-8, f64::INFINITY)?;
    (num / den)?.mean_all()?.neg()
}

/// Soft Dice + cross-entropy (weights 1:1), labels `(N, 1, D, H, W)`. On the CPU one fused op
/// (no one-hot or softmax tensors kept for backward); elsewhere composed from candle ops.
pub fn dice_ce_loss(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    if crate::ops::fused_cpu(logits) && matches!(logits.dtype(), DType::F32 | DType::F64) {
        return crate::ops::dice_ce_cpu(logits, labels, 1e-5);
    }
    let onehot = one_hot(labels, logits.dim(1)?, logits.dtype())?;
    soft_dice_loss(logits, &onehot, 1e-5)? + cross_entropy(logits, &onehot)?
}

/// nnU-Net's deep-supervision weights: 1, 1/2, 1/4, ... with the lowest resolution set to 0,
/// normalised to sum 1 (a single output gets weight 1).
pub fn deep_supervision_weights(outputs: usize) -> Vec<f64> {
    let mut w: Vec<f64> = (0..outputs).map(|i| 0.5f64.powi(i as i32)).collect();
    if outputs > 1 {
        w[outputs - 1] = 0.0;
    }
    let s: f64 = w.iter().sum();
    w.iter().map(|v| v / s).collect()
}

/// Weighted Dice+CE over deep-supervision outputs (full resolution first); labels are
/// nearest-downsampled to each output's size.
pub fn deep_supervision_loss(outputs: &[Tensor], labels: &Tensor) -> Result<Tensor> {
    let weights = deep_supervision_weights(outputs.len());
    let mut total: Option<Tensor> = None;
    for (out, &w) in outputs.iter().zip(&weights) {
        if w == 0.0 {
            continue;
        }
        let (_, _, d, h, wd) = out.dims5()?;
        let target = if labels.dims()[2..] == [d, h, wd] {
            labels.clone()
        } else {
            resize_nearest3d(&labels.to_dtype(DType::F32)?, [d, h, wd])?
        };
        let l = (dice_ce_loss(out, &target)? * w)?;
        total = Some(match total {
            None => l,
            Some(t) => (t + l)?,
        });
    }
    total.ok_or_else(|| candle_core::Error::Msg("deep supervision: no outputs".into()))
}

/// Mean binary cross-entropy of logits against targets in [0, 1], computed stably as
/// `max(x, 0) - x y + log(1 + exp(-|x|))`.
pub fn bce_with_logits(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let t = targets.to_dtype(logits.dtype())?;
    let pos = logits.relu()?;
    let softplus = ((logits.abs()?.neg()?.exp()? + 1.0)?).log()?;
    ((pos - (logits * t)?)? + softplus)?.mean_all()
}

/// Per-class (tp, fp, fn) voxel counts of `argmax(logits)` against labels, classes 1..C.
pub fn foreground_confusion(logits: &Tensor, labels: &Tensor) -> Result<Vec<[f64; 3]>> {
    let c = logits.dim(1)?;
    let pred = logits.argmax_keepdim(1)?.to_dtype(DType::F32)?;
    let lab = labels.to_dtype(DType::F32)?;
    let mut out = Vec::with_capacity(c.saturating_sub(1));
    for k in 1..c {
        let p = pred.eq(k as f64)?.to_dtype(DType::F32)?;
        let g = lab.eq(k as f64)?.to_dtype(DType::F32)?;
        let tp = (&p * &g)?.sum_all()?.to_scalar::<f32>()? as f64;
        let ps = p.sum_all()?.to_scalar::<f32>()? as f64;
        let gs = g.sum_all()?.to_scalar::<f32>()? as f64;
        out.push([tp, ps - tp, gs - tp]);
    }
    Ok(out)
}
