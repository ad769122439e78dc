//! A generated multi-slice series, written superior-first and inferior-first: flow's NIfTI
//! against dcm2niix's (same voxels, affine within 1e-3 mm after both are brought to RAS
//! canonical orientation by nibabel), and nibabel reading flow's file (same voxels, sform
//! and qform equal to flow's geometry).

mod common;

use flow_imaging::{
    convert_series, write_ct_series, CtSeriesSpec, FileOrder, Geometry, PixelStorage, Volume,
};
use std::process::Command;

fn phantom(oblique: bool) -> Volume<i16> {
    let dims = [48usize, 40, 18];
    let (s, c) = if oblique {
        (0.2f64.sin(), 0.2f64.cos())
    } else {
        (0.0, 1.0)
    };
    // Row cosine and column cosine in RAS (LPS flips x and y): an axial CT, optionally
    // rotated about the superior axis.
    let g = Geometry {
        spacing: [0.7, 0.65, 1.25],
        origin: [101.3, 87.9, -412.6],
        direction: [[-c, s, 0.0], [-s, -c, 0.0], [0.0, 0.0, 1.0]],
    };
    let mut data = Vec::with_capacity(dims.iter().product());
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                data.push(((i * 31 + j * 17 * (k + 1) + k * 101) % 2800) as i16 - 1024);
            }
        }
    }
    Volume::from_vec(dims, data, g).unwrap()
}

#[test]
fn flow_matches_dcm2niix_and_nibabel_for_both_file_orders() {
    let Some(py) = common::python() else { return };
    let exe = common::dcm2niix(&py);
    for (case, (order, storage, oblique)) in [
        (FileOrder::SuperiorFirst, PixelStorage::Signed, false),
        (FileOrder::InferiorFirst, PixelStorage::Signed, false),
        (FileOrder::SuperiorFirst, PixelStorage::Unsigned, true),
    ]
    .into_iter()
    .enumerate()
    {
        let tmp = tempfile::tempdir().unwrap();
        let v = phantom(oblique);
        let series = tmp.path().join("series");
        let mut spec = CtSeriesSpec::new(
            "1.2.826.0.1.3680043.8.498.20",
            &format!("1.2.826.0.1.3680043.8.498.21.{case}"),
        );
        spec.order = order;
        spec.storage = storage;
        if storage == PixelStorage::Unsigned {
            spec.rescale_intercept = -1024.0;
        }
        write_ct_series(&v, &series, &spec).unwrap();

        let ours_path = tmp.path().join("ours.nii.gz");
        let report = convert_series(&series, &ours_path, None).unwrap();
        assert_eq!(report.slices, 18);

        let ref_dir = tmp.path().join("dcm2niix");
        std::fs::create_dir_all(&ref_dir).unwrap();
        let out = Command::new(&exe)
            .args(["-z", "y", "-b", "n", "-f", "ref", "-o"])
            .arg(&ref_dir)
            .arg(&series)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "dcm2niix failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        let raw = tmp.path().join("ours.raw");
        let r: serde_json::Value = serde_json::from_str(&common::run_python(
            &py,
            "compare_nifti.py",
            &[&ours_path, &ref_dir, &raw],
        ))
        .unwrap();
        let ctx = format!("{order:?} {storage:?} oblique={oblique}: {r}");
        assert_eq!(r["ours_shape"], r["dcm2niix_shape"], "{ctx}");
        assert_eq!(r["max_voxel_difference"].as_f64(), Some(0.0), "{ctx}");
        assert!(r["max_affine_difference"].as_f64().unwrap() < 1e-3, "{ctx}");

        // nibabel reading ours: voxels in file order and both transforms equal our geometry.
        let (vol, _) = flow_imaging::read_series(&series, Default::default()).unwrap();
        let nib_data = common::read_i32_raw(&raw);
        assert!(
            nib_data
                .iter()
                .zip(vol.data())
                .all(|(a, &b)| *a == b as i32)
                && nib_data.len() == vol.len(),
            "{ctx}"
        );
        assert_eq!(r["ours_sform_code"], 1);
        assert_eq!(r["ours_qform_code"], 1);
        let affine = vol.geometry.affine();
        for key in ["ours_sform", "ours_qform"] {
            for (row, expected) in affine.iter().enumerate() {
                for (col, e) in expected.iter().enumerate() {
                    let got = r[key][row][col].as_f64().unwrap();
                    assert!(
                        (got - e).abs() < 1e-3,
                        "{key}[{row}][{col}] = {got}, expected {e}; {ctx}"
                    );
                }
            }
        }
        // And ours agrees with the geometry we wrote, whatever the file order.
        let p0 = v.geometry.index_to_world([5.0, 7.0, 0.0]);
        let q = vol.geometry.world_to_index(p0);
        assert!(
            (q[0] - 5.0).abs() < 1e-4 && (q[1] - 7.0).abs() < 1e-4 && q[2].abs() < 1e-4,
            "{q:?}"
        );
    }
}
