//! 3D ops against naive reference implementations (values) and finite differences (gradients).

mod common;

use candle_core::{DType, Result, Tensor};
use common::{assert_close, check_grad, tensor, to_vec, weighted_sum, Rng};
use flow_nn3d::ops::{
    add_channel_bias, avg_pool3d, conv3d, conv3d_concat, conv3d_generic,
    conv_transpose3d_nonoverlapping, instance_norm, instance_norm_generic,
    instance_norm_leaky_relu, leaky_relu, leaky_relu_generic, max_pool3d, resize_nearest3d,
    resize_trilinear3d, Conv3dParams, Pool3dParams,
};

/// Plain nested-loop conv3d, f64.
fn naive_conv3d(
    x: &[f64],
    xd: [usize; 5],
    w: &[f64],
    wd: [usize; 5],
    b: Option<&[f64]>,
    p: &Conv3dParams,
) -> (Vec<f64>, [usize; 5]) {
    let [n, ci, d, h, ww] = xd;
    let [co, _, kd, kh, kw] = wd;
    let od = (d + 2 * p.padding[0] - kd) / p.stride[0] + 1;
    let oh = (h + 2 * p.padding[1] - kh) / p.stride[1] + 1;
    let ow = (ww + 2 * p.padding[2] - kw) / p.stride[2] + 1;
    let mut out = vec![0.0; n * co * od * oh * ow];
    for bn in 0..n {
        for o in 0..co {
            for z in 0..od {
                for y in 0..oh {
                    for xx in 0..ow {
                        let mut s = b.map_or(0.0, |b| b[o]);
                        for c in 0..ci {
                            for a in 0..kd {
                                for bb in 0..kh {
                                    for e in 0..kw {
                                        let iz =
                                            (z * p.stride[0] + a) as isize - p.padding[0] as isize;
                                        let iy =
                                            (y * p.stride[1] + bb) as isize - p.padding[1] as isize;
                                        let ix =
                                            (xx * p.stride[2] + e) as isize - p.padding[2] as isize;
                                        if iz < 0
                                            || iy < 0
                                            || ix < 0
                                            || iz as usize >= d
                                            || iy as usize >= h
                                            || ix as usize >= ww
                                        {
                                            continue;
                                        }
                                        let xi = (((bn * ci + c) * d + iz as usize) * h
                                            + iy as usize)
                                            * ww
                                            + ix as usize;
                                        let wi = (((o * ci + c) * kd + a) * kh + bb) * kw + e;
                                        s += x[xi] * w[wi];
                                    }
                                }
                            }
                        }
                        out[(((bn * co + o) * od + z) * oh + y) * ow + xx] = s;
                    }
                }
            }
        }
    }
    (out, [n, co, od, oh, ow])
}

struct ConvCase {
    x: [usize; 5],
    co: usize,
    k: [usize; 3],
    p: Conv3dParams,
}

fn conv_cases() -> Vec<ConvCase> {
    vec![
        ConvCase {
            x: [1, 1, 4, 4, 4],
            co: 1,
            k: [3, 3, 3],
            p: Conv3dParams::same([3; 3], [1; 3]),
        },
        ConvCase {
            x: [2, 3, 5, 6, 7],
            co: 4,
            k: [3, 3, 3],
            p: Conv3dParams::same([3; 3], [1; 3]),
        },
        ConvCase {
            x: [2, 2, 7, 5, 6],
            co: 3,
            k: [3, 3, 3],
            p: Conv3dParams::same([3; 3], [2; 3]),
        },
        ConvCase {
            x: [1, 3, 5, 9, 8],
            co: 2,
            k: [1, 3, 3],
            p: Conv3dParams::same([1, 3, 3], [1, 2, 2]),
        },
        ConvCase {
            x: [2, 2, 6, 5, 7],
            co: 3,
            k: [2, 3, 1],
            p: Conv3dParams::new([2, 1, 3], [0, 2, 1]),
        },
        ConvCase {
            x: [1, 2, 3, 4, 5],
            co: 2,
            k: [1, 1, 1],
            p: Conv3dParams::default(),
        },
    ]
}

#[test]
fn conv3d_matches_naive_reference() -> Result<()> {
    let mut rng = Rng::new(1);
    for (i, c) in conv_cases().iter().enumerate() {
        let wd = [c.co, c.x[1], c.k[0], c.k[1], c.k[2]];
        let x = tensor(&mut rng, &c.x);
        let w = tensor(&mut rng, &wd);
        let b = tensor(&mut rng, &[c.co]);
        let (expect, dims) =
            naive_conv3d(&to_vec(&x), c.x, &to_vec(&w), wd, Some(&to_vec(&b)), &c.p);
        let fast = conv3d(&x, &w, Some(&b), &c.p)?;
        assert_eq!(fast.dims(), &dims);
        assert_close(
            &to_vec(&fast),
            &expect,
            1e-12,
            &format!("case {i} fast f64"),
        );
        let fast32 = conv3d(
            &x.to_dtype(DType::F32)?,
            &w.to_dtype(DType::F32)?,
            Some(&b.to_dtype(DType::F32)?),
            &c.p,
        )?;
        assert_close(
            &to_vec(&fast32),
            &expect,
            1e-4,
            &format!("case {i} fast f32"),
        );
        let generic = conv3d_generic(&x, &w, &c.p)?;
        let nb = naive_conv3d(&to_vec(&x), c.x, &to_vec(&w), wd, None, &c.p).0;
        assert_close(&to_vec(&generic), &nb, 1e-12, &format!("case {i} generic"));
    }
    Ok(())
}

#[test]
fn conv3d_gradients_match_finite_differences() {
    let mut rng = Rng::new(2);
    for (i, c) in conv_cases().iter().enumerate() {
        let wd = [c.co, c.x[1], c.k[0], c.k[1], c.k[2]];
        let x = tensor(&mut rng, &c.x);
        let w = tensor(&mut rng, &wd);
        let p = c.p;
        check_grad(
            &x,
            |x| weighted_sum(&conv3d(x, &w, None, &p)?, 7),
            1e-6,
            &format!("case {i} dx"),
        );
        check_grad(
            &w,
            |w| weighted_sum(&conv3d(&x, w, None, &p)?, 7),
            1e-6,
            &format!("case {i} dw"),
        );
        check_grad(
            &x,
            |x| weighted_sum(&conv3d_generic(x, &w, &p)?, 7),
            1e-6,
            &format!("case {i} generic dx"),
        );
        check_grad(
            &w,
            |w| weighted_sum(&conv3d_generic(&x, w, &p)?, 7),
            1e-6,
            &format!("case {i} generic dw"),
        );
    }
}

/// Larger shapes than `conv_cases`: several position chunks and output blocks, channel counts
/// that leave partial blocks, anisotropic kernels and strides, a 1x1x1 head.
fn larger_conv_cases() -> Vec<ConvCase> {
    let same = |k: [usize; 3], s: [usize; 3]| Conv3dParams::same(k, s);
    let case = |x: [usize; 5], co: usize, k: [usize; 3], p: Conv3dParams| ConvCase { x, co, k, p };
    vec![
        case([2, 3, 20, 19, 18], 9, [3; 3], same([3; 3], [1; 3])),
        case([1, 13, 10, 12, 14], 12, [3; 3], same([3; 3], [2; 3])),
        case([2, 5, 11, 13, 9], 7, [3; 3], same([3; 3], [1; 3])),
        case([1, 16, 6, 6, 6], 26, [3; 3], same([3; 3], [1; 3])),
        case([1, 2, 9, 16, 16], 4, [1, 3, 3], same([1, 3, 3], [1, 2, 2])),
        case(
            [1, 4, 9, 8, 7],
            5,
            [3; 3],
            Conv3dParams::new([1; 3], [0; 3]),
        ),
        case([2, 6, 7, 9, 8], 2, [1, 1, 1], Conv3dParams::default()),
        case(
            [1, 3, 12, 11, 10],
            3,
            [3, 3, 3],
            Conv3dParams::new([2, 1, 2], [1, 1, 0]),
        ),
    ]
}

/// The f32 path (the direct AVX-512 kernels where the CPU has them) against the naive f64
/// convolution (values) and the f64 path's gradients, which the finite-difference test checks.
#[test]
fn conv3d_f32_matches_f64_values_and_gradients() -> Result<()> {
    let mut rng = Rng::new(11);
    for (i, c) in conv_cases().iter().chain(&larger_conv_cases()).enumerate() {
        let wd = [c.co, c.x[1], c.k[0], c.k[1], c.k[2]];
        let x = tensor(&mut rng, &c.x);
        let w = tensor(&mut rng, &wd);
        let expect = naive_conv3d(&to_vec(&x), c.x, &to_vec(&w), wd, None, &c.p).0;
        let grads = |x: &Tensor, w: &Tensor| -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
            let (xv, wv) = (
                candle_core::Var::from_tensor(x)?,
                candle_core::Var::from_tensor(w)?,
            );
            let y = conv3d(xv.as_tensor(), wv.as_tensor(), None, &c.p)?;
            let g = weighted_sum(&y, 5)?.backward()?;
            let get = |v: &candle_core::Var| to_vec(g.get(v.as_tensor()).expect("gradient"));
            Ok((to_vec(&y), get(&xv), get(&wv)))
        };
        let (_, gx64, gw64) = grads(&x, &w)?;
        let (y32, gx32, gw32) = grads(&x.to_dtype(DType::F32)?, &w.to_dtype(DType::F32)?)?;
        assert_close(&y32, &expect, 1e-4, &format!("case {i} f32 values"));
        assert_close(&gx32, &gx64, 1e-4, &format!("case {i} f32 dx"));
        assert_close(&gw32, &gw64, 1e-4, &format!("case {i} f32 dw"));
    }
    Ok(())
}

/// The f32 convolution and its gradients are the same bits with one thread and with four.
#[test]
fn conv3d_f32_does_not_depend_on_the_thread_count() -> Result<()> {
    let mut rng = Rng::new(12);
    let x = tensor(&mut rng, &[2, 5, 24, 20, 22]).to_dtype(DType::F32)?;
    let w = tensor(&mut rng, &[10, 5, 3, 3, 3]).to_dtype(DType::F32)?;
    let p = Conv3dParams::same([3; 3], [1; 3]);
    let run = |threads: usize| -> Vec<Vec<f64>> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let (xv, wv) = (
                candle_core::Var::from_tensor(&x).unwrap(),
                candle_core::Var::from_tensor(&w).unwrap(),
            );
            let y = conv3d(xv.as_tensor(), wv.as_tensor(), None, &p).unwrap();
            let g = weighted_sum(&y, 3).unwrap().backward().unwrap();
            vec![
                to_vec(&y),
                to_vec(g.get(xv.as_tensor()).unwrap()),
                to_vec(g.get(wv.as_tensor()).unwrap()),
            ]
        })
    };
    assert!(run(1) == run(4), "results differ between 1 and 4 threads");
    Ok(())
}

#[test]
fn conv3d_bias_gradient_is_the_output_gradient_sum() {
    let mut rng = Rng::new(3);
    let x = tensor(&mut rng, &[2, 2, 3, 4, 3]);
    let w = tensor(&mut rng, &[3, 2, 3, 3, 3]);
    let b = tensor(&mut rng, &[3]);
    let p = Conv3dParams::same([3; 3], [1; 3]);
    check_grad(
        &b,
        |b| weighted_sum(&conv3d(&x, &w, Some(b), &p)?, 9),
        1e-6,
        "bias",
    );
}

#[test]
fn channel_bias_matches_broadcast_add() -> Result<()> {
    let mut rng = Rng::new(5);
    for dims in [vec![2, 3, 4, 5, 2], vec![1, 4, 1, 1, 1], vec![3, 2, 7]] {
        for dtype in [DType::F64, DType::F32] {
            let y = candle_core::Var::from_tensor(&tensor(&mut rng, &dims).to_dtype(dtype)?)?;
            let b = candle_core::Var::from_tensor(&tensor(&mut rng, &dims[1..2]).to_dtype(dtype)?)?;
            let mut shape = vec![1; dims.len()];
            shape[1] = dims[1];
            let fast = add_channel_bias(y.as_tensor(), b.as_tensor())?;
            let reference = y
                .as_tensor()
                .broadcast_add(&b.as_tensor().reshape(shape)?)?;
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
            assert_close(
                &to_vec(&fast),
                &to_vec(&reference),
                tol,
                "channel bias value",
            );
            let (gf, gr) = (
                weighted_sum(&fast, 3)?.backward()?,
                weighted_sum(&reference, 3)?.backward()?,
            );
            for (v, what) in [(&y, "dy"), (&b, "dbias")] {
                let grad = |g: &candle_core::backprop::GradStore| {
                    to_vec(g.get(v.as_tensor()).expect("gradient"))
                };
                assert_close(
                    &grad(&gf),
                    &grad(&gr),
                    tol,
                    &format!("channel bias {what} {dims:?} {dtype:?}"),
                );
            }
        }
    }
    assert!(add_channel_bias(&tensor(&mut rng, &[1, 3, 2]), &tensor(&mut rng, &[2])).is_err());
    Ok(())
}

#[test]
fn conv3d_rejects_mismatched_shapes() {
    let mut rng = Rng::new(4);
    let x = tensor(&mut rng, &[1, 2, 3, 3, 3]);
    let w = tensor(&mut rng, &[2, 3, 3, 3, 3]);
    assert!(conv3d(&x, &w, None, &Conv3dParams::default()).is_err());
    let w = tensor(&mut rng, &[2, 2, 5, 1, 1]);
    assert!(conv3d(&x, &w, None, &Conv3dParams::default()).is_err());
}

#[test]
fn transposed_conv_matches_naive_and_finite_differences() -> Result<()> {
    let mut rng = Rng::new(5);
    for (xd, k) in [
        ([2usize, 3, 2, 3, 2], [2usize, 2, 2]),
        ([1, 2, 3, 2, 2], [1, 2, 2]),
    ] {
        let co = 2;
        let x = tensor(&mut rng, &xd);
        let w = tensor(&mut rng, &[xd[1], co, k[0], k[1], k[2]]);
        let b = tensor(&mut rng, &[co]);
        let y = conv_transpose3d_nonoverlapping(&x, &w, Some(&b))?;
        let [n, ci, d, h, wd] = xd;
        let (xv, wv, bv) = (to_vec(&x), to_vec(&w), to_vec(&b));
        let (od, oh, ow) = (d * k[0], h * k[1], wd * k[2]);
        let mut expect = vec![0.0; n * co * od * oh * ow];
        for bn in 0..n {
            for o in 0..co {
                for z in 0..od {
                    for yy in 0..oh {
                        for xx in 0..ow {
                            let mut s = bv[o];
                            for c in 0..ci {
                                let xi = (((bn * ci + c) * d + z / k[0]) * h + yy / k[1]) * wd
                                    + xx / k[2];
                                let wi = (((c * co + o) * k[0] + z % k[0]) * k[1] + yy % k[1])
                                    * k[2]
                                    + xx % k[2];
                                s += xv[xi] * wv[wi];
                            }
                            expect[(((bn * co + o) * od + z) * oh + yy) * ow + xx] = s;
                        }
                    }
                }
            }
        }
        assert_eq!(y.dims(), &[n, co, od, oh, ow]);
        assert_close(&to_vec(&y), &expect, 1e-12, "transposed conv");
        check_grad(
            &x,
            |x| weighted_sum(&conv_transpose3d_nonoverlapping(x, &w, Some(&b))?, 3),
            1e-6,
            "tconv dx",
        );
        check_grad(
            &w,
            |w| weighted_sum(&conv_transpose3d_nonoverlapping(&x, w, Some(&b))?, 3),
            1e-6,
            "tconv dw",
        );
        check_grad(
            &b,
            |b| weighted_sum(&conv_transpose3d_nonoverlapping(&x, &w, Some(b))?, 3),
            1e-6,
            "tconv dbias",
        );
    }
    Ok(())
}

#[test]
fn instance_norm_matches_naive_and_finite_differences() -> Result<()> {
    let mut rng = Rng::new(6);
    let dims = [2, 3, 3, 2, 3];
    let x = tensor(&mut rng, &dims);
    let g = tensor(&mut rng, &[3]);
    let b = tensor(&mut rng, &[3]);
    let y = instance_norm(&x, Some(&g), Some(&b), 1e-5)?;
    let (xv, gv, bv) = (to_vec(&x), to_vec(&g), to_vec(&b));
    let l = 18;
    let mut expect = vec![0.0; xv.len()];
    for nc in 0..6 {
        let s = &xv[nc * l..(nc + 1) * l];
        let m = s.iter().sum::<f64>() / l as f64;
        let v = s.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / l as f64;
        for i in 0..l {
            expect[nc * l + i] = (s[i] - m) / (v + 1e-5).sqrt() * gv[nc % 3] + bv[nc % 3];
        }
    }
    assert_close(&to_vec(&y), &expect, 1e-12, "instance norm");
    check_grad(
        &x,
        |x| weighted_sum(&instance_norm(x, Some(&g), Some(&b), 1e-5)?, 4),
        1e-5,
        "in dx",
    );
    check_grad(
        &g,
        |g| weighted_sum(&instance_norm(&x, Some(g), Some(&b), 1e-5)?, 4),
        1e-6,
        "in dgamma",
    );
    Ok(())
}

/// Values and gradients (x, weight, bias) of `loss` under autograd, as f64 vectors.
fn value_and_grads(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    f: impl Fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor>,
) -> Result<Vec<Vec<f64>>> {
    let (xv, wv, bv) = (
        candle_core::Var::from_tensor(x)?,
        candle_core::Var::from_tensor(w)?,
        candle_core::Var::from_tensor(b)?,
    );
    let y = f(xv.as_tensor(), wv.as_tensor(), bv.as_tensor())?;
    let grads = weighted_sum(&y, 9)?.backward()?;
    let g = |v: &candle_core::Var| to_vec(grads.get(v.as_tensor()).expect("gradient"));
    Ok(vec![to_vec(&y), g(&xv), g(&wv), g(&bv)])
}

#[test]
fn fused_instance_norm_leaky_relu_matches_generic_ops() -> Result<()> {
    let mut rng = Rng::new(16);
    // Planes of 1, 18 and 4096 voxels (the last spans several rayon tasks per channel set).
    for dims in [[2, 3, 1, 1, 1], [2, 3, 3, 2, 3], [3, 5, 16, 16, 16]] {
        let x = (tensor(&mut rng, &dims) * 3.0)?;
        let w = tensor(&mut rng, &dims[1..2]);
        let b = (tensor(&mut rng, &dims[1..2]) * 0.5)?;
        for slope in [1.0, 0.01, 0.0] {
            for dtype in [DType::F64, DType::F32] {
                let (x, w, b) = (x.to_dtype(dtype)?, w.to_dtype(dtype)?, b.to_dtype(dtype)?);
                let fused = value_and_grads(&x, &w, &b, |x, w, b| {
                    instance_norm_leaky_relu(x, w, b, 1e-5, slope)
                })?;
                let generic = value_and_grads(&x, &w, &b, |x, w, b| {
                    leaky_relu_generic(&instance_norm_generic(x, Some(w), Some(b), 1e-5)?, slope)
                })?;
                let tol = if dtype == DType::F64 { 1e-9 } else { 2e-3 };
                for (i, what) in ["value", "dx", "dweight", "dbias"].iter().enumerate() {
                    assert_close(
                        &fused[i],
                        &generic[i],
                        tol,
                        &format!("{what} {dims:?} slope {slope} {dtype:?}"),
                    );
                }
            }
        }
    }
    // Finite differences for every argument (f64, LeakyReLU slope).
    let dims = [2, 3, 3, 2, 3];
    let x = tensor(&mut rng, &dims);
    let (w, b) = (tensor(&mut rng, &[3]), tensor(&mut rng, &[3]));
    let f = |x: &Tensor, w: &Tensor, b: &Tensor| {
        weighted_sum(&instance_norm_leaky_relu(x, w, b, 1e-5, 0.01)?, 4)
    };
    check_grad(&x, |x| f(x, &w, &b), 1e-5, "fused dx");
    check_grad(&w, |w| f(&x, w, &b), 1e-6, "fused dweight");
    check_grad(&b, |b| f(&x, &w, b), 1e-6, "fused dbias");
    Ok(())
}

#[test]
fn concatenated_input_conv_matches_conv_of_the_concatenation() -> Result<()> {
    let mut rng = Rng::new(17);
    // Stride 1 and 2, with and without bias; f32 takes the direct kernels where the CPU has
    // AVX-512, f64 im2col.
    for (stride, with_bias) in [([1, 1, 1], true), ([1, 2, 2], false), ([2, 1, 2], true)] {
        let a = tensor(&mut rng, &[2, 3, 5, 6, 7]);
        let b = tensor(&mut rng, &[2, 2, 5, 6, 7]);
        let w = tensor(&mut rng, &[4, 5, 3, 3, 3]);
        let bias = tensor(&mut rng, &[4]);
        let p = Conv3dParams::same([3; 3], stride);
        for dtype in [DType::F64, DType::F32] {
            let t = |x: &Tensor| x.to_dtype(dtype);
            let (a, b, w, bias) = (t(&a)?, t(&b)?, t(&w)?, t(&bias)?);
            let run = |concat: bool| -> Result<Vec<Vec<f64>>> {
                let vars = [&a, &b, &w, &bias].map(|x| candle_core::Var::from_tensor(x).unwrap());
                let [av, bv, wv, biasv] = vars.each_ref().map(|v| v.as_tensor());
                let bias = with_bias.then_some(biasv);
                let y = if concat {
                    conv3d_concat(av, bv, wv, bias, &p)?
                } else {
                    conv3d(&Tensor::cat(&[av, bv], 1)?, wv, bias, &p)?
                };
                let grads = weighted_sum(&y, 9)?.backward()?;
                let mut out = vec![to_vec(&y)];
                for v in &vars[..if with_bias { 4 } else { 3 }] {
                    out.push(to_vec(grads.get(v.as_tensor()).expect("gradient")));
                }
                Ok(out)
            };
            let (fused, reference) = (run(true)?, run(false)?);
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-4 };
            for (i, what) in ["value", "da", "db", "dweight", "dbias"]
                .iter()
                .enumerate()
                .take(fused.len())
            {
                assert_close(
                    &fused[i],
                    &reference[i],
                    tol,
                    &format!("{what} stride {stride:?} {dtype:?}"),
                );
            }
        }
    }
    let a = tensor(&mut rng, &[1, 2, 3, 3, 3]);
    assert!(conv3d_concat(
        &a,
        &tensor(&mut rng, &[1, 2, 3, 3, 4]),
        &tensor(&mut rng, &[2, 4, 1, 1, 1]),
        None,
        &Conv3dParams::default()
    )
    .is_err());
    assert!(conv3d_concat(
        &a,
        &a,
        &tensor(&mut rng, &[2, 3, 1, 1, 1]),
        None,
        &Conv3dParams::default()
    )
    .is_err());
    Ok(())
}

#[test]
fn leaky_relu_values_and_gradient() -> Result<()> {
    let mut rng = Rng::new(7);
    let x = tensor(&mut rng, &[2, 2, 3, 3, 3]);
    let y = leaky_relu(&x, 0.01)?;
    let expect: Vec<f64> = to_vec(&x)
        .iter()
        .map(|&v| if v >= 0.0 { v } else { 0.01 * v })
        .collect();
    assert_close(&to_vec(&y), &expect, 1e-15, "leaky relu");
    check_grad(
        &x,
        |x| weighted_sum(&leaky_relu(x, 0.01)?, 5),
        1e-6,
        "leaky relu grad",
    );
    assert_close(
        &to_vec(&leaky_relu_generic(&x, 0.01)?),
        &expect,
        1e-15,
        "generic leaky relu",
    );
    check_grad(
        &x,
        |x| weighted_sum(&leaky_relu_generic(x, 0.01)?, 5),
        1e-6,
        "generic leaky relu grad",
    );
    Ok(())
}

fn naive_pool(x: &[f64], xd: [usize; 5], p: &Pool3dParams, max: bool) -> Vec<f64> {
    let [n, c, d, h, w] = xd;
    let od = (d + 2 * p.padding[0] - p.kernel[0]) / p.stride[0] + 1;
    let oh = (h + 2 * p.padding[1] - p.kernel[1]) / p.stride[1] + 1;
    let ow = (w + 2 * p.padding[2] - p.kernel[2]) / p.stride[2] + 1;
    let mut out = Vec::new();
    for nc in 0..n * c {
        for z in 0..od {
            for y in 0..oh {
                for xx in 0..ow {
                    let mut acc = if max { f64::NEG_INFINITY } else { 0.0 };
                    for a in 0..p.kernel[0] {
                        for b in 0..p.kernel[1] {
                            for e in 0..p.kernel[2] {
                                let iz = (z * p.stride[0] + a) as isize - p.padding[0] as isize;
                                let iy = (y * p.stride[1] + b) as isize - p.padding[1] as isize;
                                let ix = (xx * p.stride[2] + e) as isize - p.padding[2] as isize;
                                let inside = iz >= 0
                                    && iy >= 0
                                    && ix >= 0
                                    && (iz as usize) < d
                                    && (iy as usize) < h
                                    && (ix as usize) < w;
                                let v = if inside {
                                    x[((nc * d + iz as usize) * h + iy as usize) * w + ix as usize]
                                } else if max {
                                    f64::NEG_INFINITY
                                } else {
                                    0.0
                                };
                                acc = if max { acc.max(v) } else { acc + v };
                            }
                        }
                    }
                    out.push(if max {
                        acc
                    } else {
                        acc / (p.kernel.iter().product::<usize>() as f64)
                    });
                }
            }
        }
    }
    out
}

#[test]
fn pooling_matches_naive_and_finite_differences() -> Result<()> {
    let mut rng = Rng::new(8);
    let cases = [
        (
            [2usize, 2, 4, 4, 4],
            Pool3dParams::non_overlapping([2, 2, 2]),
        ),
        (
            [1, 3, 5, 7, 6],
            Pool3dParams {
                kernel: [3, 3, 3],
                stride: [2, 2, 2],
                padding: [1, 1, 1],
            },
        ),
        (
            [2, 1, 3, 5, 4],
            Pool3dParams {
                kernel: [1, 3, 2],
                stride: [1, 2, 1],
                padding: [0, 1, 0],
            },
        ),
    ];
    for (i, (xd, p)) in cases.iter().enumerate() {
        let x = tensor(&mut rng, xd);
        assert_close(
            &to_vec(&max_pool3d(&x, p)?),
            &naive_pool(&to_vec(&x), *xd, p, true),
            1e-15,
            &format!("max {i}"),
        );
        assert_close(
            &to_vec(&avg_pool3d(&x, p)?),
            &naive_pool(&to_vec(&x), *xd, p, false),
            1e-12,
            &format!("avg {i}"),
        );
        check_grad(
            &x,
            |x| weighted_sum(&max_pool3d(x, p)?, 2),
            1e-6,
            &format!("max grad {i}"),
        );
        check_grad(
            &x,
            |x| weighted_sum(&avg_pool3d(x, p)?, 2),
            1e-6,
            &format!("avg grad {i}"),
        );
    }
    Ok(())
}

/// Independent trilinear reference: per output voxel, the 8-corner formula.
fn naive_trilinear(x: &[f64], xd: [usize; 5], size: [usize; 3]) -> Vec<f64> {
    let [n, c, d, h, w] = xd;
    let src = |o: usize, inl: usize, outl: usize| -> (usize, usize, f64) {
        let s = ((o as f64 + 0.5) * inl as f64 / outl as f64 - 0.5).max(0.0);
        let i0 = (s as usize).min(inl - 1);
        (i0, (i0 + 1).min(inl - 1), s - i0 as f64)
    };
    let mut out = Vec::new();
    for nc in 0..n * c {
        for z in 0..size[0] {
            let (z0, z1, tz) = src(z, d, size[0]);
            for y in 0..size[1] {
                let (y0, y1, ty) = src(y, h, size[1]);
                for xx in 0..size[2] {
                    let (x0, x1, tx) = src(xx, w, size[2]);
                    let at = |a: usize, b: usize, e: usize| x[((nc * d + a) * h + b) * w + e];
                    let v = (1. - tz) * (1. - ty) * (1. - tx) * at(z0, y0, x0)
                        + (1. - tz) * (1. - ty) * tx * at(z0, y0, x1)
                        + (1. - tz) * ty * (1. - tx) * at(z0, y1, x0)
                        + (1. - tz) * ty * tx * at(z0, y1, x1)
                        + tz * (1. - ty) * (1. - tx) * at(z1, y0, x0)
                        + tz * (1. - ty) * tx * at(z1, y0, x1)
                        + tz * ty * (1. - tx) * at(z1, y1, x0)
                        + tz * ty * tx * at(z1, y1, x1);
                    out.push(v);
                }
            }
        }
    }
    out
}

#[test]
fn resize_matches_naive_and_finite_differences() -> Result<()> {
    let mut rng = Rng::new(9);
    let xd = [2usize, 2, 3, 4, 5];
    let x = tensor(&mut rng, &xd);
    for size in [[5usize, 3, 7], [3, 8, 2], [1, 4, 10]] {
        let y = resize_trilinear3d(&x, size)?;
        assert_close(
            &to_vec(&y),
            &naive_trilinear(&to_vec(&x), xd, size),
            1e-12,
            &format!("trilinear {size:?}"),
        );
        check_grad(
            &x,
            |x| weighted_sum(&resize_trilinear3d(x, size)?, 6),
            1e-6,
            "trilinear grad",
        );
        let yn = to_vec(&resize_nearest3d(&x, size)?);
        let xv = to_vec(&x);
        let mut expect = Vec::new();
        for nc in 0..4 {
            for z in 0..size[0] {
                for yy in 0..size[1] {
                    for xx in 0..size[2] {
                        let (iz, iy, ix) = (z * 3 / size[0], yy * 4 / size[1], xx * 5 / size[2]);
                        expect.push(xv[((nc * 3 + iz) * 4 + iy) * 5 + ix]);
                    }
                }
            }
        }
        assert_close(&yn, &expect, 0.0, &format!("nearest {size:?}"));
    }
    let same = resize_trilinear3d(&x, [3, 4, 5])?;
    assert_close(&to_vec(&same), &to_vec(&x), 0.0, "identity resize");
    let t: Tensor = x.clone();
    assert!(resize_nearest3d(&t, [0, 1, 1]).is_err());
    Ok(())
}
