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

/// Corrupt JPEG 2000 slices (seeded bit flips, zeroed runs and truncations in the last part of
/// the file, where the codestream lies) are errors naming the file, never a panic: a panic in
/// a decoder adapter is caught per slice.
#[test]
fn corrupt_jpeg2000_slices_are_errors_not_panics() {
    let Some(py) = common::python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dims = [48, 40, 2];
    let data = (0..dims[0] * dims[1] * dims[2])
        .map(|n| ((n * 7919) % 3000) as i16 - 1000)
        .collect();
    let v = Volume::from_vec(dims, data, Geometry::identity()).unwrap();
    let plain = tmp.path().join("plain");
    write_ct_series(
        &v,
        &plain,
        &CtSeriesSpec::new(
            "1.2.826.0.1.3680043.8.498.20",
            "1.2.826.0.1.3680043.8.498.21",
        ),
    )
    .unwrap();
    let j2k = tmp.path().join("j2k");
    common::run_python(
        &py,
        "compress.py",
        &[&plain, &j2k, std::path::Path::new("j2k")],
    );
    let first = std::fs::read_dir(&j2k)
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap();
    let good = std::fs::read(&first).unwrap();
    let mut state = 0x2545F4914F6CDD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    // The SIZ marker segment (image and tile sizes) of the codestream: where a flipped bit
    // makes a decoder's buffer arithmetic go wrong.
    let siz = good
        .windows(4)
        .position(|w| w == [0xFF, 0x4F, 0xFF, 0x51])
        .expect("a JPEG 2000 codestream")
        + 4;
    let (mut errors, mut decoded, mut caught) = (0, 0, 0);
    for k in 0..400 {
        let mut bytes = good.clone();
        let tail = bytes.len() / 3;
        let at = bytes.len() - 1 - (next() as usize % tail);
        match k % 4 {
            3 => {
                let i = siz + (next() as usize % 40);
                bytes[i] ^= 1 << (next() % 8);
            }
            0 => {
                for _ in 0..1 + next() % 4 {
                    let i = bytes.len() - 1 - (next() as usize % tail);
                    bytes[i] ^= 1 << (next() % 8);
                }
            }
            1 => {
                let end = (at + 1 + next() as usize % 16).min(bytes.len());
                bytes[at..end].fill(0);
            }
            _ => bytes.truncate(at),
        }
        let path = tmp.path().join(format!("mutant-{k}.dcm"));
        std::fs::write(&path, &bytes).unwrap();
        match read_slice(&path) {
            Ok(_) => decoded += 1,
            Err(e) => {
                errors += 1;
                let text = e.to_string();
                assert!(text.contains(&format!("mutant-{k}.dcm")), "{text}");
                caught += usize::from(text.contains("corrupt compressed data"));
            }
        }
    }
    assert_eq!(errors + decoded, 400);
    assert!(errors > 0, "no mutation was detected at all");
    // dicom-transfer-syntax-registry 0.10's JPEG 2000 adapter panics on some of these (a
    // slice index past the decoded buffer); each must have become an error.
    assert!(
        caught > 0,
        "no mutant reached a decoder panic: the test lost its teeth"
    );
}
