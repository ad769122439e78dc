//! Renders a few slices of a synthetic study to PNG (bone window), for the docs.
//!
//! `cargo run -p flow-synth --example render -- [tiny|demo|full] [OUT_DIR] [SEED]`
//! (defaults: demo, stages/synth/figures, 2022). Picks the first study with a fracture.

use flow_synth::cohort::{render_study, RenderedStudy};
use flow_synth::{plan_cohort, CohortConfig, Profile};
use std::path::{Path, PathBuf};

type Rgb = [u8; 3];

fn window(hu: i16, level: f64, width: f64) -> u8 {
    ((hu as f64 - (level - width / 2.0)) / width * 255.0).clamp(0.0, 255.0) as u8
}

fn save(path: &Path, w: usize, h: usize, pixels: &[Rgb]) {
    let file = std::fs::File::create(path).expect("create png");
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w as u32, h as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().expect("png header");
    let data: Vec<u8> = pixels.iter().flatten().copied().collect();
    writer.write_image_data(&data).expect("png data");
    println!("wrote {}", path.display());
}

/// Upscales by an integer factor in x and a (possibly fractional) factor in y.
fn scale(src: &[Rgb], w: usize, h: usize, fx: usize, fy: f64) -> (Vec<Rgb>, usize, usize) {
    let ow = w * fx;
    let oh = ((h as f64) * fy * fx as f64).round() as usize;
    let mut out = Vec::with_capacity(ow * oh);
    for y in 0..oh {
        let sy = ((y as f64 / (fy * fx as f64)) as usize).min(h - 1);
        for x in 0..ow {
            out.push(src[sy * w + x / fx]);
        }
    }
    (out, ow, oh)
}

const LABEL_COLOURS: [Rgb; 10] = [
    [0, 0, 0],
    [230, 25, 75],
    [60, 180, 75],
    [255, 225, 25],
    [0, 130, 200],
    [245, 130, 48],
    [145, 30, 180],
    [70, 240, 240],
    [240, 50, 230],
    [210, 245, 60],
];

fn axial(s: &RenderedStudy, k: usize, overlay: bool) -> Vec<Rgb> {
    let g = &s.model.geometry;
    let plane = g.rows * g.cols;
    (0..plane)
        .map(|i| {
            let v = window(s.phantom.hu[k * plane + i], 500.0, 2000.0);
            let mut px = [v, v, v];
            if overlay && s.phantom.crack_ids[k * plane + i] > 0 {
                px = [255, (v as u16 / 3) as u8, 0];
            }
            px
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let profile =
        Profile::parse(args.first().map(String::as_str).unwrap_or("demo")).expect("profile");
    let out = args
        .get(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("figures"));
    let mut cfg = CohortConfig::for_profile(profile);
    if let Some(seed) = args.get(2) {
        cfg.seed = seed.parse().expect("seed");
    }
    std::fs::create_dir_all(&out).expect("create output folder");
    let plan = plan_cohort(&cfg).expect("plan");
    let study = plan
        .studies
        .iter()
        .find(|s| s.positive())
        .expect("a positive study");
    let s = render_study(&cfg, study).expect("render");
    let g = &s.model.geometry;
    let name = profile.name();
    let axial_fy = 1.0;
    let up = (256 / g.cols).max(1);

    // Axial slices through the dens (C2), mid C5, and through the first crack.
    let c2 = s.model.anatomy.vertebra(flow_synth::vertebra::Level::C2);
    let dens_z = c2
        .frame
        .to_world(glam::DVec3::new(0.0, 0.0, c2.shape.body.z + 6.0))
        .z;
    let c5_z = s
        .model
        .anatomy
        .vertebra(flow_synth::vertebra::Level::C5)
        .frame
        .origin
        .z;
    let crack = &s.model.cracks[0];
    for (tag, z, overlay) in [
        ("dens", dens_z, false),
        ("c5", c5_z, false),
        ("crack", crack.centre.z, false),
        ("crack_mask", crack.centre.z, true),
    ] {
        let k = (((z - g.origin.z) / g.slice_spacing).round().max(0.0) as usize).min(g.slices - 1);
        let img = axial(&s, k, overlay);
        let (img, w, h) = scale(&img, g.cols, g.rows, up, axial_fy);
        save(&out.join(format!("{name}_axial_{tag}.png")), w, h, &img);
    }

    // Close-up (4x) of 48x48 pixels around the first crack, without and with its mask.
    let k = (((crack.centre.z - g.origin.z) / g.slice_spacing)
        .round()
        .max(0.0) as usize)
        .min(g.slices - 1);
    let cc = ((crack.centre.x - g.origin.x) / g.pixel_spacing).round() as i64;
    let cr = ((crack.centre.y - g.origin.y) / g.pixel_spacing).round() as i64;
    for overlay in [false, true] {
        let full = axial(&s, k, overlay);
        let half = 24i64;
        let mut crop = Vec::new();
        for r in cr - half..cr + half {
            for c in cc - half..cc + half {
                let rr = r.clamp(0, g.rows as i64 - 1) as usize;
                let ccl = c.clamp(0, g.cols as i64 - 1) as usize;
                crop.push(full[rr * g.cols + ccl]);
            }
        }
        let (img, w, h) = scale(&crop, 48, 48, 4, 1.0);
        let tag = if overlay { "closeup_mask" } else { "closeup" };
        save(&out.join(format!("{name}_{tag}.png")), w, h, &img);
    }

    // Sagittal reformat through the spine axis (superior at the top) with and without labels.
    let axis = s.model.anatomy.axis_at(c5_z);
    let col = (((axis.x - g.origin.x) / g.pixel_spacing).round().max(0.0) as usize).min(g.cols - 1);
    for overlay in [false, true] {
        let mut img = Vec::with_capacity(g.rows * g.slices);
        for kk in (0..g.slices).rev() {
            for row in 0..g.rows {
                let i = (kk * g.rows + row) * g.cols + col;
                let v = window(s.phantom.hu[i], 500.0, 2000.0);
                let l = s.phantom.labels[i] as usize;
                let px = if overlay && l > 0 {
                    let c = LABEL_COLOURS[l.min(9)];
                    [
                        ((c[0] as u16 + v as u16) / 2) as u8,
                        ((c[1] as u16 + v as u16) / 2) as u8,
                        ((c[2] as u16 + v as u16) / 2) as u8,
                    ]
                } else {
                    [v, v, v]
                };
                img.push(px);
            }
        }
        let (img, w, h) = scale(
            &img,
            g.rows,
            g.slices,
            up,
            g.slice_spacing / g.pixel_spacing,
        );
        let tag = if overlay {
            "sagittal_labels"
        } else {
            "sagittal"
        };
        save(&out.join(format!("{name}_{tag}.png")), w, h, &img);
    }
    println!(
        "study {} ({}x{}x{}, {:.3} mm pixels, {:.3} mm slices), crack in {} ({:?})",
        study.study_uid,
        g.cols,
        g.rows,
        g.slices,
        g.pixel_spacing,
        g.slice_spacing,
        crack.level.name(),
        crack.part
    );
}
