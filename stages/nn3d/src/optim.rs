//! Optimisers with PyTorch semantics (SGD with Nesterov momentum, Adam/AdamW with optional
//! amsgrad), gradient-norm clipping, and state that round-trips through safetensors + JSON so
//! a resumed run continues bit-identically.

use std::collections::HashMap;

use candle_core::{backprop::GradStore, Result, Tensor, Var};
use serde::{Deserialize, Serialize};

/// Which update rule, with its hyper-parameters (the learning rate comes from the schedule).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum OptimizerConfig {
    /// PyTorch `SGD(momentum, nesterov, weight_decay)`, dampening 0.
    Sgd {
        momentum: f64,
        nesterov: bool,
        weight_decay: f64,
    },
    /// PyTorch `Adam` (`decoupled = false`, L2 added to the gradient) or `AdamW`
    /// (`decoupled = true`), optionally with amsgrad.
    Adam {
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
        decoupled: bool,
        amsgrad: bool,
    },
}

impl OptimizerConfig {
    /// The method's stage-1/2 optimiser: SGD, Nesterov momentum 0.99, weight decay 3e-5.
    pub fn nnunet_sgd() -> Self {
        OptimizerConfig::Sgd {
            momentum: 0.99,
            nesterov: true,
            weight_decay: 3e-5,
        }
    }

    /// The method's stage-3 optimiser: Adam with amsgrad, weight decay 3e-5.
    pub fn adam_amsgrad() -> Self {
        OptimizerConfig::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 3e-5,
            decoupled: false,
            amsgrad: true,
        }
    }

    fn buffers(&self) -> &'static [&'static str] {
        match self {
            OptimizerConfig::Sgd { .. } => &["momentum"],
            OptimizerConfig::Adam { amsgrad: false, .. } => &["exp_avg", "exp_avg_sq"],
            OptimizerConfig::Adam { amsgrad: true, .. } => {
                &["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]
            }
        }
    }
}

/// An optimiser over named variables (names as in the `VarMap`, sorted for determinism).
pub struct Optimizer {
    cfg: OptimizerConfig,
    params: Vec<(String, Var)>,
    /// Per parameter name, one tensor per entry of `cfg.buffers()`; absent before its first step.
    state: HashMap<String, Vec<Tensor>>,
    steps: u64,
}

impl Optimizer {
    pub fn new(cfg: OptimizerConfig, mut params: Vec<(String, Var)>) -> Self {
        params.sort_by(|a, b| a.0.cmp(&b.0));
        Self {
            cfg,
            params,
            state: HashMap::new(),
            steps: 0,
        }
    }

    /// All variables of a `VarMap`, by name.
    pub fn from_varmap(cfg: OptimizerConfig, varmap: &candle_nn::VarMap) -> Self {
        let data = varmap.data().lock().expect("VarMap mutex poisoned");
        let params = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        Self::new(cfg, params)
    }

    pub fn config(&self) -> &OptimizerConfig {
        &self.cfg
    }

    pub fn steps(&self) -> u64 {
        self.steps
    }

    pub fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    /// One update with learning rate `lr`; parameters without a gradient are left alone.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.steps += 1;
        let t = self.steps as i32;
        for (name, var) in &self.params {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let p = var.as_tensor().detach();
            let g = g.detach();
            match self.cfg {
                OptimizerConfig::Sgd {
                    momentum,
                    nesterov,
                    weight_decay,
                } => {
                    let mut d = if weight_decay != 0.0 {
                        (&g + (&p * weight_decay)?)?
                    } else {
                        g
                    };
                    if momentum != 0.0 {
                        let buf = match self.state.get(name) {
                            Some(s) => ((&s[0] * momentum)? + &d)?,
                            None => d.clone(),
                        };
                        d = if nesterov {
                            (&d + (&buf * momentum)?)?
                        } else {
                            buf.clone()
                        };
                        self.state.insert(name.clone(), vec![buf]);
                    }
                    var.set(&(&p - (d * lr)?)?)?;
                }
                OptimizerConfig::Adam {
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                    decoupled,
                    amsgrad,
                } => {
                    let mut p = p;
                    let g = if weight_decay != 0.0 && !decoupled {
                        (&g + (&p * weight_decay)?)?
                    } else {
                        g
                    };
                    if weight_decay != 0.0 && decoupled {
                        p = (&p * (1.0 - lr * weight_decay))?;
                    }
                    let (m, v, vmax) = match self.state.get(name) {
                        Some(s) => (s[0].clone(), s[1].clone(), s.get(2).cloned()),
                        None => (
                            g.zeros_like()?,
                            g.zeros_like()?,
                            if amsgrad { Some(g.zeros_like()?) } else { None },
                        ),
                    };
                    let m = ((m * beta1)? + (&g * (1.0 - beta1))?)?;
                    let v = ((v * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
                    let bc1 = 1.0 - beta1.powi(t);
                    let bc2 = 1.0 - beta2.powi(t);
                    let (denom_src, vmax) = match vmax {
                        Some(vm) => {
                            let vm = vm.maximum(&v)?;
                            (vm.clone(), Some(vm))
                        }
                        None => (v.clone(), None),
                    };
                    let denom = ((denom_src.sqrt()? / bc2.sqrt())? + eps)?;
                    let update = ((&m / denom)? * (lr / bc1))?;
                    var.set(&(&p - update)?)?;
                    let mut s = vec![m, v];
                    s.extend(vmax);
                    self.state.insert(name.clone(), s);
                }
            }
        }
        Ok(())
    }

    /// State tensors keyed `"<param>/<buffer>"`, for safetensors.
    pub fn state_tensors(&self) -> HashMap<String, Tensor> {
        let names = self.cfg.buffers();
        let mut out = HashMap::new();
        for (param, bufs) in &self.state {
            for (b, t) in names.iter().zip(bufs) {
                out.insert(format!("{param}/{b}"), t.clone());
            }
        }
        out
    }

    /// Restores state from [`Optimizer::state_tensors`] output and the step count.
    pub fn load_state(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        steps: u64,
    ) -> std::result::Result<(), String> {
        let names = self.cfg.buffers();
        self.state.clear();
        for (param, var) in &self.params {
            let found: Vec<Option<&Tensor>> = names
                .iter()
                .map(|b| tensors.get(&format!("{param}/{b}")))
                .collect();
            if found.iter().all(|t| t.is_none()) {
                continue;
            }
            let mut bufs = Vec::with_capacity(names.len());
            for (b, t) in names.iter().zip(found) {
                let t = t.ok_or_else(|| format!("optimiser state for {param} lacks buffer {b}"))?;
                if t.dims() != var.dims() {
                    return Err(format!(
                        "optimiser state {param}/{b} has shape {:?}, parameter has {:?}",
                        t.dims(),
                        var.dims()
                    ));
                }
                let t = t
                    .to_device(var.device())
                    .and_then(|t| t.to_dtype(var.dtype()))
                    .map_err(|e| e.to_string())?;
                bufs.push(t);
            }
            self.state.insert(param.clone(), bufs);
        }
        let known: std::collections::HashSet<&str> =
            self.params.iter().map(|(n, _)| n.as_str()).collect();
        if let Some(k) = tensors
            .keys()
            .find(|k| !known.contains(k.rsplit_once('/').map_or(k.as_str(), |(p, _)| p)))
        {
            return Err(format!("optimiser state names unknown parameter {k}"));
        }
        self.steps = steps;
        Ok(())
    }
}

/// Scales all gradients so their global L2 norm is at most `max_norm`; returns the norm
/// before clipping (PyTorch's `clip_grad_norm_`, with its 1e-6 guard).
pub fn clip_grad_norm(
    grads: &mut GradStore,
    params: &[(String, Var)],
    max_norm: f64,
) -> Result<f64> {
    let mut total = 0f64;
    for (_, v) in params {
        if let Some(g) = grads.get(v.as_tensor()) {
            total += g
                .sqr()?
                .sum_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?;
        }
    }
    let norm = total.sqrt();
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for (_, v) in params {
            if let Some(g) = grads.remove(v.as_tensor()) {
                grads.insert(v.as_tensor(), (g * coef)?);
            }
        }
    }
    Ok(norm)
}
