//! The numbers of each profile. `full` is the method's (docs/rsna7.md); `demo` shrinks nets,
//! grids and schedules so the whole pipeline runs on two CPU cores in minutes; `tiny` only
//! exercises the code paths (tests).

use flow_nn3d::{ClassifierConfig, OptimizerConfig, UNetConfig};

/// Adam (weight decay 3e-5) for the short schedules of the small profiles.
fn adam() -> OptimizerConfig {
    OptimizerConfig::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 3e-5,
        decoupled: false,
        amsgrad: false,
    }
}

use crate::error::{Result, Rsna7Error};
use crate::overall::OverallRecipe;
use crate::segnet::SegRecipe;
use crate::stage1::STAGE1_CLASSES;

pub const PROFILES: [&str; 3] = ["tiny", "demo", "full"];

fn check(profile: &str) -> Result<()> {
    if PROFILES.contains(&profile) {
        Ok(())
    } else {
        Err(Rsna7Error::Invalid(format!(
            "unknown profile `{profile}`: use one of {}",
            PROFILES.join(", ")
        )))
    }
}

/// The small profiles' segmentation recipe: mirroring only, Dice + CE, the given Adam
/// schedule; callers set what differs.
fn small(
    net: UNetConfig,
    spacing: f64,
    patch_zyx: [usize; 3],
    epochs: usize,
    iterations: usize,
    lr: f64,
    seed: u64,
) -> SegRecipe {
    SegRecipe {
        net,
        spacing_xyz: [spacing; 3],
        patch_zyx,
        batch: 2,
        epochs,
        iterations,
        lr,
        optimizer: adam(),
        p_foreground: 0.5,
        full_augmentation: false,
        synthetic_fracture_p: 0.0,
        foreground_dice: false,
        tta_axes: vec![],
        step_fraction: 0.5,
        position_channel: false,
        seed,
    }
}

/// The method's 3d_fullres recipe for stage 1 (9 classes at 1.5 mm).
fn method_stage1(seed: u64) -> SegRecipe {
    SegRecipe {
        net: UNetConfig::stage1(),
        spacing_xyz: [1.5; 3],
        patch_zyx: [160, 128, 128],
        batch: 2,
        epochs: 1000,
        iterations: 250,
        lr: 0.01,
        optimizer: OptimizerConfig::nnunet_sgd(),
        p_foreground: 0.5,
        full_augmentation: true,
        synthetic_fracture_p: 0.0,
        foreground_dice: false,
        tta_axes: vec![2],
        step_fraction: 0.5,
        position_channel: false,
        seed,
    }
}

/// Stage 1, low resolution (9 classes: background, C1..C7, T1): one window holds the whole
/// air-cropped neck, so the net can count vertebrae from C1 down.
pub fn stage1_lowres(profile: &str, seed: u64) -> Result<SegRecipe> {
    check(profile)?;
    // CT + the height channel (see `SegRecipe::position_channel`).
    let net = |base, levels| UNetConfig {
        deep_supervision: false,
        ..UNetConfig::tiny(2, STAGE1_CLASSES, base, levels)
    };
    // The small profiles add the foreground Dice term: "where is bone" learns from the first
    // step while the levels take hundreds of iterations.
    let small_lowres = |r: SegRecipe| SegRecipe {
        p_foreground: 0.0,
        position_channel: true,
        foreground_dice: true,
        ..r
    };
    Ok(match profile {
        // nnU-Net's 3d_lowres: the fullres net on a coarser grid, whole neck in view.
        "full" => SegRecipe {
            net: UNetConfig {
                in_channels: 2,
                ..UNetConfig::stage1()
            },
            spacing_xyz: [3.0; 3],
            patch_zyx: [96, 96, 96],
            p_foreground: 0.0,
            position_channel: true,
            ..method_stage1(seed)
        },
        // 7 mm in-plane, 4 mm along the neck where the levels follow each other; batch 1
        // buys twice the updates of batch 2 for the same time. 500 iterations separated every
        // level with one seed and merged C1 and C3 into C2 with another; 800 hold for both
        // (docs/benchmarks.md).
        "demo" => small_lowres(SegRecipe {
            spacing_xyz: [7.0, 7.0, 4.0],
            batch: 1,
            ..small(net(8, 4), 7.0, [48, 24, 24], 240, 10, 1e-2, seed)
        }),
        _ => small_lowres(small(net(4, 3), 8.0, [16, 16, 16], 3, 5, 3e-3, seed)),
    })
}

/// Stage 1, full resolution inside the low-resolution spine box. The small profiles segment
/// the spine as one class (the levels come from the low-resolution model); `full` keeps the
/// method's 3d_fullres 9-class net.
pub fn stage1_fullres(profile: &str, seed: u64) -> Result<SegRecipe> {
    check(profile)?;
    let net = |base, levels| UNetConfig {
        deep_supervision: false,
        ..UNetConfig::tiny(1, 2, base, levels)
    };
    Ok(match profile {
        "full" => method_stage1(seed),
        "demo" => SegRecipe {
            p_foreground: 0.66,
            ..small(net(8, 4), 2.0, [32, 32, 32], 120, 10, 1e-2, seed)
        },
        _ => small(net(4, 3), 5.0, [16, 16, 16], 2, 5, 3e-3, seed),
    })
}

/// Spacing `[x, y, z]` of the stage-2 ROI.
pub fn roi_spacing(profile: &str) -> Result<[f64; 3]> {
    check(profile)?;
    Ok(match profile {
        "full" => [0.4, 0.4, 0.8],
        "demo" => [2.0, 2.0, 2.0],
        _ => [4.0, 4.0, 4.0],
    })
}

/// A fracture-segmentation round (2 classes). Round 1 trains with the synthetic-fracture
/// augmentation and without deep supervision; rounds 2 and 3 with deep supervision.
pub fn fracture(profile: &str, round: u8, seed: u64) -> Result<SegRecipe> {
    check(profile)?;
    if !(1..=3).contains(&round) {
        return Err(Rsna7Error::Invalid(format!(
            "round {round}: the method has rounds 1, 2 and 3"
        )));
    }
    let fracture_p = if round == 1 { 0.5 } else { 0.0 };
    let net = |base, levels| UNetConfig {
        deep_supervision: false,
        ..UNetConfig::tiny(1, 2, base, levels)
    };
    Ok(match profile {
        // The method's stage-2 sizes: the stage-1 schedule on the 0.8 x 0.4 x 0.4 mm ROI.
        "full" => SegRecipe {
            net: UNetConfig {
                deep_supervision: round > 1,
                ..UNetConfig::stage2()
            },
            spacing_xyz: [0.4, 0.4, 0.8],
            patch_zyx: [96, 192, 192],
            synthetic_fracture_p: fracture_p,
            ..method_stage1(seed)
        },
        // Fracture-free negatives are in every round now, so later rounds train nearly as long
        // as round 1, and forced-foreground patches are drawn more often (a negative case has
        // no foreground to centre on). Tiles do not overlap: the ROI is predicted for every
        // study in every round.
        "demo" => SegRecipe {
            p_foreground: 0.9,
            step_fraction: 1.0,
            synthetic_fracture_p: fracture_p,
            ..small(
                net(6, 3),
                2.0,
                [32, 32, 32],
                [16, 12, 10][round as usize - 1],
                10,
                3e-3,
                seed,
            )
        },
        _ => SegRecipe {
            step_fraction: 1.0,
            synthetic_fracture_p: fracture_p,
            ..small(net(4, 2), 4.0, [8, 8, 8], 2, 5, 3e-3, seed)
        },
    })
}

/// The stage-3 `patient_overall` classifier.
pub fn overall(profile: &str, seed: u64) -> Result<OverallRecipe> {
    check(profile)?;
    Ok(match profile {
        "full" => OverallRecipe {
            size: 96,
            net: ClassifierConfig::default(),
            batch: 4,
            epochs: 80,
            iterations: 250,
            lr: 3e-4,
            seed,
        },
        "demo" => OverallRecipe {
            size: 24,
            net: ClassifierConfig {
                stage_channels: vec![8, 16, 32],
                ..ClassifierConfig::default()
            },
            batch: 8,
            epochs: 4,
            iterations: 15,
            lr: 3e-3,
            seed,
        },
        _ => OverallRecipe {
            size: 8,
            net: ClassifierConfig {
                stage_channels: vec![4, 8],
                ..ClassifierConfig::default()
            },
            batch: 2,
            epochs: 2,
            iterations: 5,
            lr: 1e-3,
            seed,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_has_valid_nets_and_patches_the_nets_can_take() {
        for profile in PROFILES {
            let mut segs = vec![
                stage1_lowres(profile, 1).unwrap(),
                stage1_fullres(profile, 1).unwrap(),
            ];
            for round in 1..=3 {
                segs.push(fracture(profile, round, 1).unwrap());
            }
            for r in &segs {
                r.net
                    .validate()
                    .unwrap_or_else(|e| panic!("{profile}: {e}"));
                let div = r.net.size_divisor();
                for a in 0..3 {
                    assert_eq!(
                        r.patch_zyx[a] % div[a],
                        0,
                        "{profile}: patch {:?} vs divisor {div:?}",
                        r.patch_zyx
                    );
                }
                assert!(r.epochs > 0 && r.iterations > 0 && r.batch > 0 && r.lr > 0.0);
            }
            assert_eq!(segs[0].net.num_classes, 9);
            assert!([2, 9].contains(&segs[1].net.num_classes));
            assert!(segs[2..].iter().all(|r| r.net.num_classes == 2));
            assert!(segs[2].synthetic_fracture_p > 0.0 && segs[3].synthetic_fracture_p == 0.0);
            assert!(roi_spacing(profile).unwrap().iter().all(|s| *s > 0.0));
            assert!(overall(profile, 1).unwrap().size >= 8);
        }
        assert_eq!(stage1_fullres("full", 1).unwrap().net, UNetConfig::stage1());
        assert!(stage1_lowres("huge", 1).is_err() && fracture("demo", 4, 1).is_err());
    }
}
