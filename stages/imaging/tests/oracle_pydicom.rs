//! Pixel equality with pydicom (+pylibjpeg) on real files, and compressed generated series
//! (RLE, JPEG 2000 made by pydicom) against their uncompressed originals.

mod common;

use flow_imaging::dicom_series::{read_series, read_slice, ReadOptions};
use flow_imaging::{write_ct_series, CtSeriesSpec, Geometry, Volume};
use std::path::PathBuf;

fn testdata(python: &std::path::Path, name: &str) -> PathBuf {
    let out = std::process::Command::new(python)
        .arg(common::script("testdata.py"))
        .arg(name)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

#[test]
fn hu_match_pydicom_on_real_ct_files() {
    let Some(py) = common::python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    // CT_small: explicit VR LE, signed; bad_sequence: JPEG Lossless (.70), 12-bit unsigned,
    // malformed sequence; 693_J2KR: JPEG 2000 lossless, signed.
    for (name, syntax) in [
        ("CT_small.dcm", "1.2.840.10008.1.2.1"),
        ("bad_sequence.dcm", "1.2.840.10008.1.2.4.70"),
        ("693_J2KR.dcm", "1.2.840.10008.1.2.4.90"),
    ] {
        let path = testdata(&py, name);
        let raw = tmp.path().join(format!("{name}.raw"));
        let meta: serde_json::Value =
            serde_json::from_str(&common::run_python(&py, "pixels.py", &[&path, &raw])).unwrap();
        assert_eq!(meta["transfer_syntax"], syntax, "{name}");
        let expected = common::read_i32_raw(&raw);
        let ours = read_slice(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(ours.header.transfer_syntax, syntax);
        assert_eq!(
            (ours.header.rows as u64, ours.header.columns as u64),
            (
                meta["rows"].as_u64().unwrap(),
                meta["columns"].as_u64().unwrap()
            )
        );
        let ours: Vec<i32> = ours.hu.iter().map(|&v| v as i32).collect();
        assert_eq!(ours.len(), expected.len(), "{name}");
        let mismatches = ours.iter().zip(&expected).filter(|(a, b)| a != b).count();
        assert_eq!(
            mismatches, 0,
            "{name}: {mismatches} voxels differ from pydicom"
        );
    }
}

#[test]
fn rle_and_jpeg2000_series_decode_to_the_uncompressed_values() {
    let Some(py) = common::python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let g = Geometry {
        spacing: [0.6, 0.6, 1.0],
        origin: [80.0, 90.0, -150.0],
        direction: [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]],
    };
    let dims = [40, 32, 6];
    let data = (0..dims[0] * dims[1] * dims[2])
        .map(|n| ((n * 7919) % 4000) as i16 - 1500)
        .collect();
    let v = Volume::from_vec(dims, data, g).unwrap();
    let plain = tmp.path().join("plain");
    write_ct_series(
        &v,
        &plain,
        &CtSeriesSpec::new(
            "1.2.826.0.1.3680043.8.498.10",
            "1.2.826.0.1.3680043.8.498.11",
        ),
    )
    .unwrap();
    for (syntax, uid) in [
        ("rle", "1.2.840.10008.1.2.5"),
        ("j2k", "1.2.840.10008.1.2.4.90"),
    ] {
        let dir = tmp.path().join(syntax);
        common::run_python(
            &py,
            "compress.py",
            &[&plain, &dir, std::path::Path::new(syntax)],
        );
        let (back, report) = read_series(&dir, ReadOptions::default()).unwrap();
        assert_eq!(report.transfer_syntaxes, vec![uid.to_string()]);
        assert_eq!(back.data(), v.data(), "{syntax}");
        assert!(back.geometry.max_affine_difference(&v.geometry) < 1e-5);
    }
}
