//! Training loop: a tiny U-Net overfits synthetic spheres (validation Dice > 0.95), and a run
//! stopped after epoch k and resumed from its checkpoint reproduces the uninterrupted run.

mod common;

use std::ops::ControlFlow;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use common::Rng;
use flow_nn3d::checkpoint::{list_checkpoints, EpochRecord};
use flow_nn3d::train::{IterationProgress, SegmentationObjective};
use flow_nn3d::{
    init_seeded, train, Batch, BatchSource, LrSchedule, OptimizerConfig, ScheduleUnit, TrainConfig,
    TrainProgress, UNet3d, UNetConfig,
};

/// Batches of random spheres in a 12^3 volume: image = sphere + noise, label = sphere.
struct Spheres {
    seed: u64,
    rng: Rng,
    batch: usize,
}

impl Spheres {
    fn new(seed: u64, batch: usize) -> Self {
        Self {
            seed,
            rng: Rng::new(seed),
            batch,
        }
    }
}

impl BatchSource for Spheres {
    fn start_epoch(&mut self, epoch: usize) -> flow_nn3d::Result<()> {
        self.rng = Rng::new(self.seed.wrapping_mul(1000).wrapping_add(epoch as u64));
        Ok(())
    }
    fn next_batch(&mut self) -> flow_nn3d::Result<Batch> {
        let s = 12usize;
        let mut img = Vec::with_capacity(self.batch * s * s * s);
        let mut lab = Vec::with_capacity(self.batch * s * s * s);
        for _ in 0..self.batch {
            let c: Vec<f64> = (0..3).map(|_| 6.0 + 1.5 * self.rng.uniform()).collect();
            let r = 3.5 + 1.0 * self.rng.uniform();
            for z in 0..s {
                for y in 0..s {
                    for x in 0..s {
                        let d2 = (z as f64 - c[0]).powi(2)
                            + (y as f64 - c[1]).powi(2)
                            + (x as f64 - c[2]).powi(2);
                        let inside = d2 <= r * r;
                        lab.push(if inside { 1f32 } else { 0. });
                        img.push(
                            (if inside { 1.0 } else { 0.0 } + 0.2 * self.rng.uniform()) as f32,
                        );
                    }
                }
            }
        }
        let dims = (self.batch, 1, s, s, s);
        Ok(Batch {
            image: Tensor::from_vec(img, dims, &Device::Cpu)?,
            target: Tensor::from_vec(lab, dims, &Device::Cpu)?,
        })
    }
}

#[derive(Default)]
struct Recorder {
    losses: Vec<f64>,
    epochs: Vec<EpochRecord>,
    stop_after: Option<usize>,
}

impl TrainProgress for Recorder {
    fn iteration(&mut self, p: &IterationProgress) {
        self.losses.push(p.loss);
    }
    fn epoch_end(&mut self, r: &EpochRecord, _eta: std::time::Duration) -> ControlFlow<()> {
        self.epochs.push(r.clone());
        if self.stop_after == Some(r.epoch) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

fn tiny_net(seed: u64) -> (VarMap, UNet3d) {
    let vm = VarMap::new();
    let mut cfg = UNetConfig::tiny(1, 2, 8, 2);
    cfg.deep_supervision = true;
    let net = UNet3d::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    init_seeded(&vm, seed).unwrap();
    (vm, net)
}

fn config(epochs: usize, iters: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        iterations_per_epoch: iters,
        val_iterations: 2,
        optimizer: OptimizerConfig::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 3e-5,
            decoupled: false,
            amsgrad: true,
        },
        schedule: LrSchedule::Poly {
            lr: 0.01,
            exponent: 0.9,
        },
        schedule_unit: ScheduleUnit::Iteration,
        grad_clip: Some(12.0),
        keep_checkpoints: 0,
    }
}

#[test]
fn tiny_unet_overfits_spheres() {
    let (vm, net) = tiny_net(1);
    let dir = tempfile::tempdir().unwrap();
    let mut rec = Recorder::default();
    let out = train(
        &SegmentationObjective { net: &net },
        &vm,
        &config(10, 10),
        &mut Spheres::new(3, 2),
        Some(&mut Spheres::new(99, 2)),
        dir.path(),
        &mut rec,
    )
    .unwrap();
    for r in &out.history {
        eprintln!(
            "epoch {} loss {:.4} val dice {:?} {:.2}s",
            r.epoch, r.train_loss, r.val_dice, r.seconds
        );
    }
    let last = out.history.last().unwrap();
    let dice = last.val_dice.unwrap();
    assert!(
        dice > 0.95,
        "validation Dice {dice}; history {:?}",
        out.history
            .iter()
            .map(|r| (r.train_loss, r.val_dice))
            .collect::<Vec<_>>()
    );
    assert!(last.train_loss < out.history[0].train_loss);
    assert_eq!(rec.losses.len(), 100);
    assert_eq!(list_checkpoints(dir.path()).unwrap().len(), 10);
}

/// Trains a fresh `tiny_net(init_seed)` on the sphere streams (7, validation 8) with
/// checkpoints in `dir`; returns its variables and the outcome.
fn train_spheres(
    init_seed: u64,
    cfg: &TrainConfig,
    dir: &std::path::Path,
    rec: &mut Recorder,
) -> (VarMap, flow_nn3d::train::TrainOutcome) {
    let (vm, net) = tiny_net(init_seed);
    let out = train(
        &SegmentationObjective { net: &net },
        &vm,
        cfg,
        &mut Spheres::new(7, 1),
        Some(&mut Spheres::new(8, 1)),
        dir,
        rec,
    )
    .unwrap();
    (vm, out)
}

#[test]
fn resumed_run_reproduces_uninterrupted_run() {
    let cfg = config(4, 3);
    let dir_a = tempfile::tempdir().unwrap();
    let mut rec_a = Recorder::default();
    let (vm_a, full) = train_spheres(5, &cfg, dir_a.path(), &mut rec_a);
    assert!(!full.stopped && full.resumed_from.is_none());

    let dir_b = tempfile::tempdir().unwrap();
    let mut rec_b = Recorder {
        stop_after: Some(1),
        ..Default::default()
    };
    let (_, first) = train_spheres(5, &cfg, dir_b.path(), &mut rec_b);
    assert!(first.stopped);
    assert_eq!(first.history.len(), 2);

    // A fresh process: new, differently initialised weights, then resume from the directory.
    let mut rec_c = Recorder::default();
    let (vm_c, resumed) = train_spheres(12345, &cfg, dir_b.path(), &mut rec_c);
    assert_eq!(resumed.resumed_from, Some(2));
    let mut losses_b = rec_b.losses.clone();
    losses_b.extend(&rec_c.losses);
    assert_eq!(
        losses_b, rec_a.losses,
        "per-iteration losses differ after resume"
    );
    let strip = |h: &[EpochRecord]| {
        h.iter()
            .map(|r| (r.epoch, r.train_loss, r.lr, r.val_dice))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&resumed.history), strip(&full.history));
    for (name, var) in vm_a.data().lock().unwrap().iter() {
        let other = vm_c.data().lock().unwrap()[name].clone();
        let diff = (var.as_tensor() - other.as_tensor())
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(diff, 0.0, "{name} differs after resume");
    }
}

/// A crash can leave the newest checkpoint truncated: resuming falls back to the one before
/// it and still reproduces the uninterrupted run.
#[test]
fn a_truncated_checkpoint_falls_back_to_the_previous_one() {
    let cfg = config(4, 3);
    let dir_a = tempfile::tempdir().unwrap();
    let mut rec_a = Recorder::default();
    train_spheres(5, &cfg, dir_a.path(), &mut rec_a);

    let dir_b = tempfile::tempdir().unwrap();
    let mut rec_b = Recorder {
        stop_after: Some(2),
        ..Default::default()
    };
    train_spheres(5, &cfg, dir_b.path(), &mut rec_b);
    let mut done = list_checkpoints(dir_b.path()).unwrap();
    done.sort_unstable();
    let newest = *done.last().unwrap();
    assert!(done.len() >= 2, "{done:?}");
    let [weights, _, _] = flow_nn3d::checkpoint::checkpoint_paths(dir_b.path(), newest);
    let len = std::fs::metadata(&weights).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&weights)
        .unwrap()
        .set_len(len / 2)
        .unwrap();

    let mut rec_c = Recorder::default();
    let (_, resumed) = train_spheres(12345, &cfg, dir_b.path(), &mut rec_c);
    assert_eq!(
        resumed.resumed_from,
        Some(newest - 1),
        "the previous checkpoint"
    );
    let tail = &rec_a.losses[rec_a.losses.len() - rec_c.losses.len()..];
    assert_eq!(
        rec_c.losses, tail,
        "the replayed epochs match the uninterrupted run"
    );
}
