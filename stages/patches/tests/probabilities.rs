//! Each augmentation fires with its configured probability and draws inside its range.

use flow_patches::{stream_rng, AugmentConfig};

const DRAWS: usize = 40_000;

/// Asserts an observed count is within 4.5 binomial standard deviations of `p`.
fn assert_rate(name: &str, count: usize, p: f64) {
    let n = DRAWS as f64;
    let sd = (p * (1.0 - p) / n).sqrt();
    let rate = count as f64 / n;
    assert!(
        (rate - p).abs() <= 4.5 * sd,
        "{name}: rate {rate:.4}, expected {p} +- {:.4}",
        4.5 * sd
    );
}

#[test]
fn default_recipe_frequencies_and_ranges() {
    let cfg = AugmentConfig::default();
    let mut rng = stream_rng(11, 0);
    let plans: Vec<_> = (0..DRAWS).map(|_| cfg.draw(&mut rng)).collect();
    let count =
        |f: &dyn Fn(&flow_patches::AugmentPlan) -> bool| plans.iter().filter(|p| f(p)).count();

    assert_rate("rotation", count(&|p| p.spatial.angles != [0.0; 3]), 0.2);
    assert_rate("scale", count(&|p| p.spatial.scale != 1.0), 0.2);
    assert_rate("noise", count(&|p| p.noise_std.is_some()), 0.1);
    assert_rate("blur", count(&|p| p.blur_sigmas.is_some()), 0.2);
    assert_rate("brightness", count(&|p| p.brightness.is_some()), 0.15);
    assert_rate("contrast", count(&|p| p.contrast.is_some()), 0.15);
    assert_rate("low resolution", count(&|p| p.low_res_zoom.is_some()), 0.25);
    assert_rate(
        "inverted gamma",
        count(&|p| p.gamma_inverted.is_some()),
        0.1,
    );
    assert_rate("gamma", count(&|p| p.gamma.is_some()), 0.3);
    for a in 0..3 {
        assert_rate("mirror", count(&|p| p.mirror[a]), 0.5);
    }
    // Independence spot check: rotation and scale together ~ 0.04.
    assert_rate(
        "rotation and scale",
        count(&|p| p.spatial.angles != [0.0; 3] && p.spatial.scale != 1.0),
        0.04,
    );

    let deg30 = 30f64.to_radians();
    for p in &plans {
        assert!(p.spatial.angles.iter().all(|a| a.abs() <= deg30 + 1e-12));
        assert!((0.7..=1.4).contains(&p.spatial.scale));
        assert!(p.noise_std.is_none_or(|s| (0.0..=0.1).contains(&s)));
        assert!(p
            .blur_sigmas
            .is_none_or(|s| s.iter().all(|v| (0.5..=1.0).contains(v))));
        assert!(p.brightness.is_none_or(|m| (0.75..=1.25).contains(&m)));
        assert!(p.contrast.is_none_or(|m| (0.75..=1.25).contains(&m)));
        assert!(p.low_res_zoom.is_none_or(|z| (0.5..=1.0).contains(&z)));
        for g in [p.gamma, p.gamma_inverted].into_iter().flatten() {
            assert!((0.7..=1.5).contains(&g));
        }
    }
    // Rotation about every axis when it fires.
    let rotated: Vec<_> = plans
        .iter()
        .filter(|p| p.spatial.angles != [0.0; 3])
        .collect();
    assert!(rotated
        .iter()
        .all(|p| p.spatial.angles.iter().all(|a| *a != 0.0)));
}

#[test]
fn rotation_axes_are_configurable() {
    let cfg = AugmentConfig {
        p_rotation: 1.0,
        rotation_axes: [true, false, false],
        ..AugmentConfig::none()
    };
    let mut rng = stream_rng(12, 0);
    for _ in 0..200 {
        let p = cfg.draw(&mut rng);
        assert!(
            p.spatial.angles[0] != 0.0 && p.spatial.angles[1] == 0.0 && p.spatial.angles[2] == 0.0
        );
    }
}

#[test]
fn custom_probabilities_are_honoured() {
    let cfg = AugmentConfig {
        p_noise: 0.37,
        p_gamma: 0.8,
        p_mirror: [0.1, 0.0, 1.0],
        ..AugmentConfig::none()
    };
    let mut rng = stream_rng(13, 0);
    let plans: Vec<_> = (0..DRAWS).map(|_| cfg.draw(&mut rng)).collect();
    assert_rate(
        "noise",
        plans.iter().filter(|p| p.noise_std.is_some()).count(),
        0.37,
    );
    assert_rate(
        "gamma",
        plans.iter().filter(|p| p.gamma.is_some()).count(),
        0.8,
    );
    assert_rate(
        "mirror z",
        plans.iter().filter(|p| p.mirror[0]).count(),
        0.1,
    );
    assert!(plans
        .iter()
        .all(|p| !p.mirror[1] && p.mirror[2] && p.blur_sigmas.is_none()));
}
