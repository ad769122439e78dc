//! Times one training iteration and one forward pass of candidate U-Net sizes (for choosing
//! the demo profile): `cargo run --release -p flow-rsna7 --example iter_speed`.

use std::time::Instant;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use flow_nn3d::loss::dice_ce_loss;
use flow_nn3d::{Optimizer, OptimizerConfig, UNet3d, UNetConfig};

fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let configs: [(usize, usize, [usize; 3], usize, usize); 6] = [
        (8, 4, [48, 48, 48], 2, 9),
        (8, 4, [32, 32, 32], 2, 9),
        (8, 3, [32, 32, 32], 2, 9),
        (4, 3, [32, 32, 32], 2, 9),
        (8, 3, [32, 48, 48], 2, 2),
        (8, 3, [24, 32, 32], 2, 2),
    ];
    println!("| base | levels | patch | batch | classes | train iter s | forward s |");
    for (base, levels, p, b, classes) in configs {
        let cfg = UNetConfig {
            deep_supervision: false,
            ..UNetConfig::tiny(1, classes, base, levels)
        };
        let vars = VarMap::new();
        let net = UNet3d::new(&cfg, VarBuilder::from_varmap(&vars, DType::F32, &dev))
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let mut opt = Optimizer::from_varmap(OptimizerConfig::nnunet_sgd(), &vars);
        let x = Tensor::randn(0f32, 1.0, (b, 1, p[0], p[1], p[2]), &dev)?;
        let y = Tensor::zeros((b, 1, p[0], p[1], p[2]), DType::U8, &dev)?;
        let mut times = Vec::new();
        for _ in 0..4 {
            let t = Instant::now();
            let loss = dice_ce_loss(&net.forward(&x)?, &y)?;
            let g = loss.backward()?;
            opt.step(&g, 0.01)
                .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let x1 = x.narrow(0, 0, 1)?;
        let t = Instant::now();
        for _ in 0..3 {
            net.forward(&x1)?;
        }
        let fwd = t.elapsed().as_secs_f64() / 3.0;
        println!(
            "| {base} | {levels} | {p:?} | {b} | {classes} | {:.3} | {fwd:.3} |",
            times[1]
        );
    }
    Ok(())
}
