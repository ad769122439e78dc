//! Shared helpers for the integration tests: a seeded generator, tensor construction and a
//! central finite-difference gradient check.
#![allow(dead_code)]

use candle_core::{Device, Result, Tensor, Var};

/// SplitMix64: small, seeded, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.uniform()).collect()
    }
}

pub fn tensor(rng: &mut Rng, dims: &[usize]) -> Tensor {
    let n = dims.iter().product();
    Tensor::from_vec(rng.vec(n), dims, &Device::Cpu).unwrap()
}

pub fn to_vec(t: &Tensor) -> Vec<f64> {
    t.to_dtype(candle_core::DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

pub fn assert_close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: length mismatch");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let scale = 1.0f64.max(x.abs()).max(y.abs());
        assert!(
            (x - y).abs() <= tol * scale,
            "{what}: element {i}: {x} vs {y}"
        );
    }
}

/// Checks the autograd gradient of `loss(x)` (a scalar) against central finite differences at
/// the elements of `x` (all, or a fixed sample of 64 for large tensors; f64).
pub fn check_grad(x: &Tensor, loss: impl Fn(&Tensor) -> Result<Tensor>, tol: f64, what: &str) {
    let var = Var::from_tensor(x).unwrap();
    let l = loss(var.as_tensor()).unwrap();
    let grads = l.backward().unwrap();
    let analytic = to_vec(grads.get(var.as_tensor()).expect("no gradient"));
    let base = to_vec(x);
    let eps = 1e-5;
    // Every element of small tensors; a fixed pseudo-random sample of 64 from larger ones.
    let picks: Vec<usize> = if base.len() <= 96 {
        (0..base.len()).collect()
    } else {
        let mut rng = Rng::new(base.len() as u64);
        (0..64)
            .map(|_| (rng.next_u64() % base.len() as u64) as usize)
            .collect()
    };
    let analytic: Vec<f64> = picks.iter().map(|&i| analytic[i]).collect();
    let mut numeric = Vec::with_capacity(picks.len());
    for &i in &picks {
        let mut p = base.clone();
        p[i] += eps;
        let lp = loss(&Tensor::from_vec(p.clone(), x.dims(), &Device::Cpu).unwrap())
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        p[i] -= 2.0 * eps;
        let lm = loss(&Tensor::from_vec(p, x.dims(), &Device::Cpu).unwrap())
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        numeric.push((lp - lm) / (2.0 * eps));
    }
    assert_close(&analytic, &numeric, tol, what);
}

/// `sum(y * r)` for a fixed random `r`, a scalar loss whose gradient exercises every output.
pub fn weighted_sum(y: &Tensor, seed: u64) -> Result<Tensor> {
    let mut rng = Rng::new(seed);
    let r = tensor(&mut rng, y.dims()).to_dtype(y.dtype())?;
    (y * r)?.sum_all()
}
