//! Seeded, reproducible parameter initialisation (candle's CPU RNG cannot be seeded). Variables
//! are visited in name order; the rule follows the name and shape: conv weights (rank 5)
//! He-normal with fan = dims[1] * kernel volume (the layers' own rule), linear weights uniform
//! +-1/sqrt(fan_in), `norm*.weight` ones, biases zeros.

use candle_core::{Result, Tensor};
use candle_nn::VarMap;

/// SplitMix64 with Box-Muller normals.
struct SeededRng(u64);

impl SeededRng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
    /// Uniform in (0, 1).
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.unit(), self.unit());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// Re-initialises every variable of `varmap` deterministically from `seed`.
pub fn init_seeded(varmap: &VarMap, seed: u64) -> Result<()> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("VarMap mutex poisoned".into()))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = SeededRng(seed);
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let n = var.elem_count();
        let leaf = name.rsplit('.').next().unwrap_or(name);
        let parent_is_norm = name
            .rsplit('.')
            .nth(1)
            .is_some_and(|p| p.starts_with("norm"));
        let values: Vec<f64> = if leaf == "bias" {
            vec![0.0; n]
        } else if parent_is_norm {
            vec![1.0; n]
        } else if dims.len() == 5 {
            let fan = (dims[1] * dims[2] * dims[3] * dims[4]) as f64;
            let std = (2.0 / ((1.0 + 1e-4) * fan)).sqrt();
            (0..n).map(|_| rng.normal() * std).collect()
        } else if dims.len() == 2 {
            let bound = 1.0 / (dims[1] as f64).sqrt();
            (0..n).map(|_| (rng.unit() * 2.0 - 1.0) * bound).collect()
        } else {
            return Err(candle_core::Error::Msg(format!(
                "init_seeded: no rule for {name} with shape {dims:?}"
            )));
        };
        let t = Tensor::from_vec(values, dims, var.device())?.to_dtype(var.dtype())?;
        var.set(&t)?;
    }
    Ok(())
}
