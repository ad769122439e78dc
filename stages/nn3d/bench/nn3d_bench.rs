//! Benchmark of flow-nn3d (run by bench/run.sh next to bench/torch_bench.py, same shapes and
//! thread count). Prints one JSON object per measurement: name, median seconds, runs, GFLOP/s.
//!
//! Usage: cargo run --release -p flow-nn3d --example nn3d_bench -- [--reps N] [--quick]
//! [--device cpu|cuda|cuda:N] (a GPU needs a build with `--features cuda`; each timed call
//! ends with the device synchronised).

use std::time::Instant;

use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use flow_nn3d::ops::{conv3d, Conv3dParams};
use flow_nn3d::train::{Batch, Objective, SegmentationObjective};
use flow_nn3d::{
    init_seeded, predict_sliding_window, Optimizer, OptimizerConfig, SlidingWindowConfig, UNet3d,
    UNetConfig,
};

// The same allocator set-up as the flow binary (src/allocator.rs), so the step is timed as
// flow runs it.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] = b"thp:always,dirty_decay_ms:-1,muzzy_decay_ms:-1\0";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The device every measurement runs on (`--device`); set once in `main`.
static DEVICE: std::sync::OnceLock<Device> = std::sync::OnceLock::new();

fn time<F: FnMut() -> candle_core::Result<()>>(
    reps: usize,
    mut f: F,
) -> candle_core::Result<Vec<f64>> {
    let dev = DEVICE.get().expect("main sets the device");
    f()?; // warm-up
    dev.synchronize()?;
    let mut out = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        dev.synchronize()?;
        out.push(t.elapsed().as_secs_f64());
    }
    Ok(out)
}

fn report(name: &str, times: Vec<f64>, gflop: Option<f64>) {
    let runs = times.len();
    let med = median(times);
    let gflops = gflop.map(|g| g / med);
    println!(
        "{{\"impl\": \"flow\", \"name\": \"{name}\", \"median_s\": {med:.6}, \"runs\": {runs}, \"gflops\": {}}}",
        gflops.map_or("null".to_string(), |g| format!("{g:.2}"))
    );
}

/// The demo U-Net: base 16, 5 levels (64^3 -> 4^3), cap 256, 3 classes, deep supervision.
pub fn demo_unet_config() -> UNetConfig {
    let mut cfg = UNetConfig::tiny(1, 3, 16, 5);
    cfg.max_channels = 256;
    cfg
}

fn main() -> candle_core::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let reps = args
        .iter()
        .position(|a| a == "--reps")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let quick = args.iter().any(|a| a == "--quick");
    // `--only NAME` runs the measurements whose name starts with NAME (for profiling one).
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    // `--memory`: only the peak memory of two U-Net training iterations (run.sh runs it in a
    // process of its own, as it runs PyTorch's).
    let memory = args.iter().any(|a| a == "--memory");
    let wanted = |name: &str| !memory && only.as_deref().is_none_or(|o| name.starts_with(o));
    let spec = args
        .iter()
        .position(|a| a == "--device")
        .and_then(|i| args.get(i + 1))
        .map_or("cpu", String::as_str);
    let dev = flow_nn3d::parse_device(spec).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    if memory && !dev.is_cpu() {
        candle_core::bail!("--memory measures the process's resident memory: CPU only");
    }
    let dev = DEVICE.get_or_init(|| dev).clone();

    if !memory {
        conv_benches(quick, reps, &wanted, &dev)?;
    }
    unet_benches(quick, reps, memory, &wanted, &dev)?;
    if !memory {
        demo_net_benches(reps, &wanted, &dev)?;
    }
    Ok(())
}

/// One net of the rsna7 demo profile (pipelines/profiles/demo.yaml), no deep supervision.
struct DemoNet {
    name: &'static str,
    in_channels: usize,
    classes: usize,
    base: usize,
    levels: usize,
    cap: usize,
    patch_zyx: [usize; 3],
    batch: usize,
}

/// The demo profile's fracture net and stage-1 full- and low-resolution nets.
const DEMO_NETS: [DemoNet; 3] = [
    DemoNet {
        name: "demo_fracture",
        in_channels: 1,
        classes: 2,
        base: 6,
        levels: 3,
        cap: 48,
        patch_zyx: [32, 32, 32],
        batch: 2,
    },
    DemoNet {
        name: "demo_stage1_fullres",
        in_channels: 1,
        classes: 2,
        base: 8,
        levels: 4,
        cap: 64,
        patch_zyx: [32, 32, 32],
        batch: 2,
    },
    DemoNet {
        name: "demo_stage1_lowres",
        in_channels: 2,
        classes: 9,
        base: 8,
        levels: 4,
        cap: 64,
        patch_zyx: [48, 24, 24],
        batch: 1,
    },
];

fn demo_net_benches(
    reps: usize,
    wanted: &dyn Fn(&str) -> bool,
    dev: &Device,
) -> candle_core::Result<()> {
    for net_spec in &DEMO_NETS {
        let DemoNet {
            name,
            in_channels: cin,
            classes,
            base,
            levels,
            cap,
            patch_zyx: [z, y, x],
            batch: b,
        } = *net_spec;
        let name = format!("{name}_train_iter");
        if !wanted(&name) {
            continue;
        }
        let mut cfg = UNetConfig::tiny(cin, classes, base, levels);
        cfg.max_channels = cap;
        cfg.deep_supervision = false;
        let vm = VarMap::new();
        let net = UNet3d::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, dev))?;
        init_seeded(&vm, 0)?;
        let mut opt = Optimizer::from_varmap(OptimizerConfig::nnunet_sgd(), &vm);
        let batch = Batch {
            image: Tensor::randn(0f32, 1., (b, cin, z, y, x), dev)?,
            target: (Tensor::rand(0f32, classes as f32, (b, 1, z, y, x), dev)?.floor())?,
        };
        let obj = SegmentationObjective { net: &net };
        // Short steps: more repetitions for a stable median.
        report(
            &name,
            time(reps * 4, || {
                let grads = obj.loss(&batch)?.backward()?;
                opt.step(&grads, 0.01)
            })?,
            None,
        );
    }
    Ok(())
}

/// `name` of /proc/self/status (VmRSS, VmHWM) in KiB.
fn status_kib(name: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn conv_benches(
    quick: bool,
    reps: usize,
    wanted: &dyn Fn(&str) -> bool,
    dev: &Device,
) -> candle_core::Result<()> {
    // conv3d (1,32,64,64,64) -> 32, 3x3x3, padding 1.
    let s = if quick { 32 } else { 64 };
    let x = Tensor::randn(0f32, 1., (1, 32, s, s, s), dev)?;
    let w = Tensor::randn(0f32, 0.05, (32, 32, 3, 3, 3), dev)?;
    let p = Conv3dParams::same([3; 3], [1; 3]);
    let gflop_fwd = 2.0 * 32.0 * 32.0 * 27.0 * (s * s * s) as f64 / 1e9;
    if wanted("conv3d_fwd_") {
        report(
            &format!("conv3d_fwd_{s}"),
            time(reps, || conv3d(&x, &w, None, &p).map(|_| ()))?,
            Some(gflop_fwd),
        );
    }
    let xv = Var::from_tensor(&x)?;
    let wv = Var::from_tensor(&w)?;
    let g = Tensor::randn(0f32, 1., (1, 32, s, s, s), dev)?;
    if wanted("conv3d_fwd_bwd") {
        report(
            &format!("conv3d_fwd_bwd_{s}"),
            time(reps, || {
                let y = conv3d(xv.as_tensor(), wv.as_tensor(), None, &p)?;
                let grads = (y * &g)?.sum_all()?.backward()?;
                assert!(grads.get(xv.as_tensor()).is_some() && grads.get(wv.as_tensor()).is_some());
                Ok(())
            })?,
            Some(3.0 * gflop_fwd),
        );
    }

    Ok(())
}

fn unet_benches(
    quick: bool,
    reps: usize,
    memory: bool,
    wanted: &dyn Fn(&str) -> bool,
    dev: &Device,
) -> candle_core::Result<()> {
    // One training iteration of the demo U-Net: patch 64^3, batch 2, Dice+CE with deep
    // supervision, backward, SGD Nesterov step.
    let vm = VarMap::new();
    let net = UNet3d::new(
        &demo_unet_config(),
        VarBuilder::from_varmap(&vm, DType::F32, dev),
    )?;
    init_seeded(&vm, 0)?;
    let mut opt = Optimizer::from_varmap(OptimizerConfig::nnunet_sgd(), &vm);
    let ps = if quick { 32 } else { 64 };
    let batch = Batch {
        image: Tensor::randn(0f32, 1., (2, 1, ps, ps, ps), dev)?,
        target: (Tensor::rand(0f32, 3., (2, 1, ps, ps, ps), dev)?.floor())?,
    };
    let obj = SegmentationObjective { net: &net };
    let train_reps = reps.min(3);
    let mut train_step = || -> candle_core::Result<()> {
        let loss = obj.loss(&batch)?;
        let grads = loss.backward()?;
        opt.step(&grads, 0.01)
    };
    if memory {
        // Growth over the resident set before the first iteration; VmHWM reset via clear_refs.
        let before = status_kib("VmRSS").unwrap_or(0);
        std::fs::write("/proc/self/clear_refs", "5")?;
        for _ in 0..2 {
            train_step()?;
        }
        let peak = status_kib("VmHWM").unwrap_or(0).saturating_sub(before);
        println!(
            "{{\"impl\": \"flow\", \"name\": \"unet_train_iter_b2_{ps}_memory\", \"peak_mib\": {:.1}}}",
            peak as f64 / 1024.0
        );
        return Ok(());
    }
    if wanted("unet_train") {
        report(
            &format!("unet_train_iter_b2_{ps}"),
            time(train_reps, &mut train_step)?,
            None,
        );
    }

    // Sliding-window inference of a 128^3 volume, patch 64^3, half-patch step, x-mirroring.
    let vs = if quick { 64 } else { 128 };
    let vol = Tensor::randn(0f32, 1., (1, vs, vs, vs), dev)?;
    let cfg = SlidingWindowConfig::new([ps, ps, ps]);
    if wanted("sliding") {
        report(
            &format!("sliding_window_{vs}"),
            time(1, || {
                predict_sliding_window(&[&net as &dyn Module], &vol, 3, &cfg, &mut |_, _| {})
                    .map(|_| ())
            })?,
            None,
        );
    }
    Ok(())
}
