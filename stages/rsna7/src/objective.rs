//! The segmentation loss: nnU-Net's Dice + cross-entropy (over all deep-supervision outputs
//! when the net has them), plus, when asked, a Dice term on the foreground as a whole
//! (1 - p(background)). With many small classes and a few hundred iterations the plain loss
//! first collapses to background; the foreground term keeps "where is bone" learning from the
//! first step while the per-class terms learn which vertebra it is.

use candle_core::{Module, Tensor};
use candle_nn::ops::softmax;
use flow_nn3d::loss::{deep_supervision_loss, dice_ce_loss, foreground_confusion, one_hot};
use flow_nn3d::{Batch, Objective};

use crate::segnet::SegNet;

pub struct SegmentationLoss<'a> {
    pub net: &'a SegNet,
    pub foreground_dice: bool,
}

/// Soft Dice of the union of all foreground classes (batch statistics, smooth 1).
pub fn foreground_dice(logits: &Tensor, labels: &Tensor) -> candle_core::Result<Tensor> {
    let p = softmax(logits, 1)?.narrow(1, 0, 1)?.affine(-1.0, 1.0)?;
    let t = one_hot(labels, logits.dim(1)?, logits.dtype())?
        .narrow(1, 0, 1)?
        .affine(-1.0, 1.0)?;
    let tp = (&p * &t)?.sum_all()?;
    let num = ((tp * 2.0)? + 1.0)?;
    let den = ((p.sum_all()? + t.sum_all()?)? + 1.0)?;
    num.div(&den)
}

impl Objective for SegmentationLoss<'_> {
    fn loss(&self, batch: &Batch) -> candle_core::Result<Tensor> {
        let (main, full_res) = if self.net.config().deep_supervision {
            let outs = self.net.forward_all(&batch.image)?;
            (
                deep_supervision_loss(&outs, &batch.target)?,
                outs[0].clone(),
            )
        } else {
            let logits = self.net.forward(&batch.image)?;
            (dice_ce_loss(&logits, &batch.target)?, logits)
        };
        if self.foreground_dice {
            main - foreground_dice(&full_res, &batch.target)?
        } else {
            Ok(main)
        }
    }
    fn confusion(&self, batch: &Batch) -> candle_core::Result<Vec<[f64; 3]>> {
        foreground_confusion(&self.net.forward(&batch.image)?, &batch.target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn foreground_dice_is_one_for_a_confident_correct_prediction() {
        let dev = Device::Cpu;
        // 3 classes, 4 voxels: labels 0, 1, 2, 2; logits strongly favour the right class.
        let labels = Tensor::from_vec(vec![0u8, 1, 2, 2], (1, 1, 1, 1, 4), &dev).unwrap();
        let mut l = vec![-20f32; 12];
        for (v, &c) in [0usize, 1, 2, 2].iter().enumerate() {
            l[c * 4 + v] = 20.0;
        }
        let logits = Tensor::from_vec(l, (1, 3, 1, 1, 4), &dev).unwrap();
        let d = foreground_dice(&logits, &labels)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!((d - 1.0).abs() < 1e-6, "{d}");
        // Swapping the two foreground classes keeps the foreground Dice at 1.
        let wrong = Tensor::from_vec(vec![0u8, 2, 1, 1], (1, 1, 1, 1, 4), &dev).unwrap();
        let d2 = foreground_dice(&logits, &wrong)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!((d2 - 1.0).abs() < 1e-6);
        // All background predicted: Dice (0 + 1) / (0 + 3 + 1).
        let bg = Tensor::from_vec(
            [vec![20f32; 4], vec![-20f32; 8]].concat(),
            (1, 3, 1, 1, 4),
            &dev,
        )
        .unwrap();
        let d3 = foreground_dice(&bg, &labels)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!((d3 - 0.25).abs() < 1e-4, "{d3}");
    }
}
