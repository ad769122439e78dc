use super::*;

#[test]
fn scratch_buffers_are_reused_and_bounded() {
    let a = scratch::take(1000);
    let ptr = a.as_ptr();
    scratch::give(a);
    let b = scratch::take(600);
    assert_eq!(
        (b.as_ptr(), b.len()),
        (ptr, 600),
        "the fitting buffer is reused"
    );
    scratch::give(b);
    for _ in 0..10 {
        scratch::give(vec![0.0; 10]);
    }
    let (n, floats) = scratch::held();
    assert!(n <= scratch::KEEP);
    assert!(floats >= 1000, "the largest buffers stay");
    scratch::give(Vec::with_capacity(scratch::MAX_FLOATS));
    assert!(scratch::held().1 <= scratch::MAX_FLOATS);
    scratch::clear();
    assert_eq!(scratch::held(), (0, 0));
}

/// Naive conv3d in f64: the output, the input gradient and the weight gradient of
/// `sum(y * gy)`.
fn naive(g: &Geometry, x: &[f32], w: &[f32], gy: &[f32]) -> [Vec<f64>; 3] {
    let (ovol, ivol, nt) = (g.od * g.oh * g.ow, g.d * g.h * g.w, g.kd * g.kh * g.kw);
    let mut y = vec![0.0f64; g.n * g.co * ovol];
    let mut gx = vec![0.0f64; g.n * g.ci * ivol];
    let mut gw = vec![0.0f64; g.co * g.ci * nt];
    for n in 0..g.n {
        for o in 0..g.co {
            for (q, [z, yy, xx]) in (0..g.od)
                .flat_map(|z| (0..g.oh).flat_map(move |yy| (0..g.ow).map(move |xx| [z, yy, xx])))
                .enumerate()
            {
                let at = (n * g.co + o) * ovol + q;
                for i in 0..g.ci {
                    for (t, [a, b, e]) in taps(g).enumerate() {
                        let zi = (z * g.sd + a) as isize - g.pd as isize;
                        let yi = (yy * g.sh + b) as isize - g.ph as isize;
                        let xi = (xx * g.sw + e) as isize - g.pw as isize;
                        if zi < 0 || yi < 0 || xi < 0 {
                            continue;
                        }
                        let (zi, yi, xi) = (zi as usize, yi as usize, xi as usize);
                        if zi >= g.d || yi >= g.h || xi >= g.w {
                            continue;
                        }
                        let xa = (n * g.ci + i) * ivol + (zi * g.h + yi) * g.w + xi;
                        let wa = (o * g.ci + i) * nt + t;
                        y[at] += f64::from(w[wa]) * f64::from(x[xa]);
                        gx[xa] += f64::from(w[wa]) * f64::from(gy[at]);
                        gw[wa] += f64::from(gy[at]) * f64::from(x[xa]);
                    }
                }
            }
        }
    }
    [y, gx, gw]
}

fn geometry(n: usize, ci: usize, co: usize, dims: [usize; 3], k: usize, s: [usize; 3]) -> Geometry {
    let p = k / 2;
    let out = |i: usize| (dims[i] + 2 * p - k) / s[i] + 1;
    Geometry {
        n,
        ci,
        d: dims[0],
        h: dims[1],
        w: dims[2],
        co,
        kd: k,
        kh: k,
        kw: k,
        sd: s[0],
        sh: s[1],
        sw: s[2],
        pd: p,
        ph: p,
        pw: p,
        od: out(0),
        oh: out(1),
        ow: out(2),
    }
}

/// Forward and both gradients on every instruction set this CPU runs, against the naive
/// loops, over channel counts that take every block size and odd grids (dropped
/// positions, partial vectors), stride 1 and 2, two input groups.
#[test]
fn kernels_match_naive_conv_on_every_instruction_set() {
    let mut state = 0x2545_f491_u64;
    let mut rand = |len: usize| -> Vec<f32> {
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    };
    let cases = [
        geometry(2, 3, 5, [5, 6, 7], 3, [1, 1, 1]),
        geometry(1, 4, 12, [4, 5, 9], 3, [2, 2, 2]),
        geometry(1, 2, 8, [7, 3, 5], 3, [1, 2, 1]),
        geometry(1, 5, 26, [3, 4, 4], 1, [1, 1, 1]),
        geometry(2, 1, 3, [9, 9, 9], 3, [2, 1, 2]),
        // Blocks of 16 channels (AVX2's channel-vector tile), forward and input gradient.
        geometry(1, 20, 35, [4, 5, 6], 3, [1, 1, 1]),
        geometry(2, 33, 17, [5, 4, 7], 3, [2, 1, 2]),
    ];
    for kernels in Kernels::every_supported() {
        for g in &cases {
            let (ivol, ovol) = (g.d * g.h * g.w, g.od * g.oh * g.ow);
            let x = rand(g.n * g.ci * ivol);
            let w = rand(g.co * g.ci * g.kd * g.kh * g.kw);
            let gy = rand(g.n * g.co * ovol);
            let [y_ref, gx_ref, gw_ref] = naive(g, &x, &w, &gy);
            // The input as two channel groups (the first channel, then the rest).
            let first: Vec<f32> = (0..g.n)
                .flat_map(|n| x[n * g.ci * ivol..][..ivol].to_vec())
                .collect();
            let rest: Vec<f32> = (0..g.n)
                .flat_map(|n| x[(n * g.ci + 1) * ivol..(n + 1) * g.ci * ivol].to_vec())
                .collect();
            let parts: Vec<&[f32]> = if g.ci > 1 {
                vec![&first, &rest]
            } else {
                vec![&x]
            };
            let groups = ChannelGroups::new(&parts, g.n, ivol);
            let y = forward_on(kernels, g, groups, &w);
            let (gx_groups, gw) = backward_on(kernels, g, groups, &w, &gy);
            let gx: Vec<f32> = if g.ci > 1 {
                (0..g.n)
                    .flat_map(|n| {
                        let mut item = gx_groups[0][n * ivol..][..ivol].to_vec();
                        item.extend_from_slice(
                            &gx_groups[1][n * (g.ci - 1) * ivol..][..(g.ci - 1) * ivol],
                        );
                        item
                    })
                    .collect()
            } else {
                gx_groups[0].clone()
            };
            for (what, got, want) in [
                ("y", &y, &y_ref),
                ("gx", &gx, &gx_ref),
                ("gw", &gw, &gw_ref),
            ] {
                assert_eq!(got.len(), want.len(), "{what} {kernels:?} {g:?}");
                for (k, (&a, &b)) in got.iter().zip(want.iter()).enumerate() {
                    assert!(
                        (f64::from(a) - b).abs() <= 1e-4 * (1.0 + b.abs()),
                        "{what}[{k}] {a} vs {b} on {kernels:?}, {g:?}"
                    );
                }
            }
        }
    }
}

/// Both AVX2 tilings sum every output in the same order (inputs, then taps, one FMA
/// each), so switching tiles changes no bit of a trained model.
#[test]
fn channel_tiles_give_the_position_tiles_bits() {
    if !Isa::supported().contains(&Isa::Avx2) {
        return;
    }
    let channels = Kernels::new(Isa::Avx2);
    let positions = Kernels {
        channel_tiles: false,
        ..channels
    };
    let mut state = 7u64;
    let mut rand = |len: usize| -> Vec<f32> {
        (0..len)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    };
    for g in [
        geometry(2, 24, 40, [6, 7, 9], 3, [1, 1, 1]),
        geometry(1, 40, 32, [8, 6, 7], 3, [2, 2, 2]),
    ] {
        let (ivol, ovol) = (g.d * g.h * g.w, g.od * g.oh * g.ow);
        let x = rand(g.n * g.ci * ivol);
        let w = rand(g.co * g.ci * g.kd * g.kh * g.kw);
        let gy = rand(g.n * g.co * ovol);
        let parts: Vec<&[f32]> = vec![&x];
        let groups = ChannelGroups::new(&parts, g.n, ivol);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        let run = |k: Kernels| {
            let y = forward_on(k, &g, groups, &w);
            let (gx, gw) = backward_on(k, &g, groups, &w, &gy);
            (bits(&y), bits(&gx[0]), bits(&gw))
        };
        assert!(run(channels) == run(positions), "{g:?}");
    }
}

#[test]
fn blocks_cover_every_channel_once() {
    let positions = Kernels::new(Isa::Avx512);
    let channels = Kernels::new(Isa::Avx2);
    for (kernels, depth) in [(positions, 500), (channels, 27), (channels, 500)] {
        let channel_tiles = kernels.channel_tiles && depth >= CHANNEL_MIN_DEPTH;
        for n in 1..70 {
            let bs = blocks(n, kernels, depth);
            let mut next = 0;
            for b in &bs {
                assert_eq!(b.start, next);
                assert!(b.valid >= 1 && b.valid <= b.size);
                if b.size == CHANNEL_BLOCK {
                    assert!(
                        channel_tiles && b.valid == b.size,
                        "{kernels:?} {depth} {n}"
                    );
                } else {
                    assert!([1, 2, 3, 4, 6, 8, 12].contains(&b.size));
                }
                next += b.valid;
            }
            assert_eq!(next, n);
            let whole = bs.iter().filter(|b| b.size == CHANNEL_BLOCK).count();
            assert_eq!(whole, if channel_tiles { n / CHANNEL_BLOCK } else { 0 });
        }
    }
}
