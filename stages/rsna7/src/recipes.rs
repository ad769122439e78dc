//! The numbers of each profile. `full` is the method's (docs/rsna7.md); `demo` shrinks nets,
//! grids and schedules so the whole pipeline runs on two CPU cores in minutes; `tiny` only
//! exercises the code paths (tests).

use flow_nn3d::{ClassifierConfig, OptimizerConfig, UNetConfig};

/// Adam (weight decay 3e-5) for the short schedules of the small profiles.
fn adam() -> OptimizerConfig {
    OptimizerConfig::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 3e-5, decoupled: false, amsgrad: false }
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
        Err(Rsna7Error::Invalid(format!("unknown profile `{profile}`: use one of {}", PROFILES.join(", "))))
    }
}

/// Stage 1 (9 classes: background, C1..C7, T1).
pub fn stage1(profile: &str, seed: u64) -> Result<SegRecipe> {
    check(profile)?;
    Ok(match profile {
        "full" => SegRecipe {
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
            seed,
        },
        "demo" => SegRecipe {
            net: UNetConfig { deep_supervision: false, ..UNetConfig::tiny(1, STAGE1_CLASSES, 8, 4) },
            spacing_xyz: [3.5; 3],
            patch_zyx: [32, 32, 32],
            batch: 2,
            // Level identification only takes off after ~400 iterations (docs/benchmarks.md).
            epochs: 40,
            iterations: 15,
            lr: 1e-2,
            optimizer: adam(),
            p_foreground: 0.5,
            full_augmentation: false,
            synthetic_fracture_p: 0.0,
            foreground_dice: true,
            tta_axes: vec![],
            step_fraction: 1.0,
            seed,
        },
        _ => SegRecipe {
            net: UNetConfig { deep_supervision: false, ..UNetConfig::tiny(1, STAGE1_CLASSES, 4, 3) },
            spacing_xyz: [6.0; 3],
            patch_zyx: [16, 16, 16],
            batch: 2,
            epochs: 3,
            iterations: 10,
            lr: 3e-3,
            optimizer: adam(),
            p_foreground: 0.5,
            full_augmentation: false,
            synthetic_fracture_p: 0.0,
            foreground_dice: true,
            tta_axes: vec![],
            step_fraction: 1.0,
            seed,
        },
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
        return Err(Rsna7Error::Invalid(format!("round {round}: the method has rounds 1, 2 and 3")));
    }
    let fracture_p = if round == 1 { 0.5 } else { 0.0 };
    Ok(match profile {
        "full" => SegRecipe {
            net: UNetConfig { deep_supervision: round > 1, ..UNetConfig::stage2() },
            spacing_xyz: [0.4, 0.4, 0.8],
            patch_zyx: [96, 192, 192],
            batch: 2,
            epochs: 1000,
            iterations: 250,
            lr: 0.01,
            optimizer: OptimizerConfig::nnunet_sgd(),
            p_foreground: 0.5,
            full_augmentation: true,
            synthetic_fracture_p: fracture_p,
            foreground_dice: false,
            tta_axes: vec![2],
            step_fraction: 0.5,
            seed,
        },
        "demo" => SegRecipe {
            net: UNetConfig { deep_supervision: false, ..UNetConfig::tiny(1, 2, 6, 3) },
            spacing_xyz: [2.0, 2.0, 2.0],
            patch_zyx: [32, 32, 32],
            batch: 2,
            // Round 1 seeds every later round's labels, so it trains longest.
            epochs: [20, 8, 4][round as usize - 1],
            iterations: 10,
            lr: 3e-3,
            optimizer: adam(),
            p_foreground: 0.6,
            full_augmentation: false,
            synthetic_fracture_p: fracture_p,
            foreground_dice: true,
            tta_axes: vec![],
            step_fraction: 1.0,
            seed,
        },
        _ => SegRecipe {
            net: UNetConfig { deep_supervision: false, ..UNetConfig::tiny(1, 2, 4, 2) },
            spacing_xyz: [4.0; 3],
            patch_zyx: [8, 8, 8],
            batch: 2,
            epochs: 2,
            iterations: 5,
            lr: 3e-3,
            optimizer: adam(),
            p_foreground: 0.5,
            full_augmentation: false,
            synthetic_fracture_p: fracture_p,
            foreground_dice: true,
            tta_axes: vec![],
            step_fraction: 1.0,
            seed,
        },
    })
}

/// The stage-3 `patient_overall` classifier.
pub fn overall(profile: &str, seed: u64) -> Result<OverallRecipe> {
    check(profile)?;
    Ok(match profile {
        "full" => OverallRecipe { size: 96, net: ClassifierConfig::default(), batch: 4, epochs: 80, iterations: 250, lr: 3e-4, seed },
        "demo" => OverallRecipe { size: 24, net: ClassifierConfig { stage_channels: vec![8, 16, 32], ..ClassifierConfig::default() }, batch: 8, epochs: 4, iterations: 15, lr: 3e-3, seed },
        _ => OverallRecipe { size: 8, net: ClassifierConfig { stage_channels: vec![4, 8], ..ClassifierConfig::default() }, batch: 2, epochs: 2, iterations: 5, lr: 1e-3, seed },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_has_valid_nets_and_patches_the_nets_can_take() {
        for profile in PROFILES {
            let mut segs = vec![stage1(profile, 1).unwrap()];
            for round in 1..=3 {
                segs.push(fracture(profile, round, 1).unwrap());
            }
            for r in &segs {
                r.net.validate().unwrap_or_else(|e| panic!("{profile}: {e}"));
                let div = r.net.size_divisor();
                for a in 0..3 {
                    assert_eq!(r.patch_zyx[a] % div[a], 0, "{profile}: patch {:?} vs divisor {div:?}", r.patch_zyx);
                }
                assert!(r.epochs > 0 && r.iterations > 0 && r.batch > 0 && r.lr > 0.0);
            }
            assert_eq!(segs[0].net.num_classes, 9);
            assert!(segs[1..].iter().all(|r| r.net.num_classes == 2));
            assert!(segs[1].synthetic_fracture_p > 0.0 && segs[2].synthetic_fracture_p == 0.0);
            assert!(roi_spacing(profile).unwrap().iter().all(|s| *s > 0.0));
            assert!(overall(profile, 1).unwrap().size >= 8);
        }
        assert_eq!(stage1("full", 1).unwrap().net, UNetConfig::stage1());
        assert!(stage1("huge", 1).is_err() && fracture("demo", 4, 1).is_err());
    }
}
