//! Write a synthetic CT series for benchmarks: `write_phantom OUT_DIR SLICES ROWS COLUMNS`.
//!
//! An elliptic body of soft tissue (about 40 HU with noise) with a bony ring, in air, so that
//! lossless compression sees CT-like statistics.

use flow_imaging::{write_ct_series, CtSeriesSpec, Geometry, PixelStorage, Volume};
use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let num = |i: usize| {
        args.get(i)
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or_else(|| {
                eprintln!("usage: write_phantom OUT_DIR SLICES ROWS COLUMNS");
                std::process::exit(2)
            })
    };
    let (nz, ny, nx) = (num(2), num(3), num(4));
    let g = Geometry {
        spacing: [0.45, 0.45, 0.625],
        origin: [115.0, 115.0, -200.0],
        direction: [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]],
    };
    let mut state = 0x2545F4914F6CDD1Du64;
    let mut noise = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 41) as i32 - 20
    };
    let mut data = Vec::with_capacity(nx * ny * nz);
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let x = (i as f64 - nx as f64 / 2.0) / (nx as f64 * 0.4);
                let y = (j as f64 - ny as f64 / 2.0) / (ny as f64 * 0.3);
                let r = (x * x + y * y).sqrt() + 0.02 * ((k as f64) * 0.1).sin();
                let hu = if r > 1.0 {
                    -1000 + noise() / 4
                } else if (0.25..0.35).contains(&r) {
                    900 + 8 * noise()
                } else {
                    40 + noise()
                };
                data.push(hu as i16);
            }
        }
    }
    let volume = Volume::from_vec([nx, ny, nz], data, g).expect("valid phantom");
    let mut spec = CtSeriesSpec::new(
        "1.2.826.0.1.3680043.8.498.900",
        "1.2.826.0.1.3680043.8.498.901",
    );
    spec.storage = PixelStorage::Unsigned;
    spec.rescale_intercept = -1024.0;
    write_ct_series(&volume, Path::new(&args[1]), &spec).expect("write series");
}
