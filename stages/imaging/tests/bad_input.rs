//! Bad DICOM input gets a typed error naming the file and tag; nothing panics.

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::tags;
use dicom_object::{open_file, FileMetaTableBuilder};
use flow_imaging::dicom_series::{read_series, read_slice, DicomReadError, ReadOptions};
use flow_imaging::ops::{crop, BoundingBox};
use flow_imaging::{write_ct_series, CtSeriesSpec, Geometry, Volume};
use std::path::{Path, PathBuf};

fn volume(dims: [usize; 3]) -> Volume<i16> {
    let g = Geometry {
        spacing: [0.5, 0.5, 1.0],
        origin: [0.0, 0.0, -50.0],
        ..Geometry::identity()
    };
    let data = (0..dims.iter().product::<usize>())
        .map(|n| (n % 1000) as i16 - 500)
        .collect();
    Volume::from_vec(dims, data, g).unwrap()
}

fn series(dir: &Path, dims: [usize; 3]) -> Vec<PathBuf> {
    write_ct_series(&volume(dims), dir, &CtSeriesSpec::new("1.2.3", "1.2.3.4")).unwrap()
}

fn read_err(dir: &Path) -> String {
    read_series(dir, ReadOptions::default())
        .map(|_| ())
        .unwrap_err()
        .to_string()
}

#[test]
fn truncated_pixel_data_names_the_file() {
    let d = tempfile::tempdir().unwrap();
    let files = series(d.path(), [16, 16, 4]);
    let bytes = std::fs::read(&files[2]).unwrap();
    std::fs::write(&files[2], &bytes[..bytes.len() - 100]).unwrap();
    let e = read_err(d.path());
    assert!(
        e.starts_with(&format!("{}: truncated file", files[2].display())),
        "{e}"
    );
}

#[test]
fn truncated_header_names_the_file() {
    let d = tempfile::tempdir().unwrap();
    let files = series(d.path(), [16, 16, 4]);
    let bytes = std::fs::read(&files[0]).unwrap();
    for cut in [60, 140, 400] {
        std::fs::write(&files[0], &bytes[..cut]).unwrap();
        let e = read_err(d.path());
        assert!(
            e.starts_with(&format!("{}: truncated file", files[0].display())),
            "cut {cut}: {e}"
        );
    }
}

#[test]
fn not_dicom_is_an_error_not_a_skip() {
    let d = tempfile::tempdir().unwrap();
    series(d.path(), [8, 8, 3]);
    std::fs::write(d.path().join("notes.txt"), vec![b'x'; 400]).unwrap();
    let e = read_err(d.path());
    assert!(e.contains("notes.txt: not a readable DICOM file"), "{e}");
}

#[test]
fn missing_pixel_data_names_the_tag() {
    let d = tempfile::tempdir().unwrap();
    let files = series(d.path(), [8, 8, 3]);
    let mut obj = open_file(&files[1]).unwrap();
    obj.remove_element(tags::PIXEL_DATA);
    obj.write_to_file(&files[1]).unwrap();
    let e = read_err(d.path());
    assert_eq!(
        e,
        format!("{}: missing PixelData (7FE0,0010)", files[1].display())
    );
}

#[test]
fn unsupported_transfer_syntax_is_named() {
    let d = tempfile::tempdir().unwrap();
    let files = series(d.path(), [8, 8, 3]);
    // Re-label file 1 as JPEG-LS: a new meta group in front of the unchanged data set.
    let bytes = std::fs::read(&files[0]).unwrap();
    let meta = dicom_object::FileMetaTable::from_reader(&bytes[128..]).unwrap();
    let data_start = 132 + 12 + meta.information_group_length as usize;
    let new_meta = FileMetaTableBuilder::new()
        .transfer_syntax("1.2.840.10008.1.2.4.80")
        .media_storage_sop_class_uid(meta.media_storage_sop_class_uid())
        .media_storage_sop_instance_uid(meta.media_storage_sop_instance_uid())
        .build()
        .unwrap();
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    new_meta.write(&mut out).unwrap();
    out.extend_from_slice(&bytes[data_start..]);
    std::fs::write(&files[0], out).unwrap();
    let e = read_err(d.path());
    assert!(
        e.starts_with(&format!(
            "{}: unsupported transfer syntax 1.2.840.10008.1.2.4.80",
            files[0].display()
        )),
        "{e}"
    );
}

#[test]
fn mixed_series_single_slice_and_orientation_are_errors() {
    // Same SeriesInstanceUID, different image size.
    let d = tempfile::tempdir().unwrap();
    series(d.path(), [8, 8, 3]);
    let other = crop(
        &volume([8, 8, 3]),
        &BoundingBox {
            min: [0, 0, 0],
            max: [5, 7, 0],
        },
    );
    let mut spec = CtSeriesSpec::new("1.2.3", "1.2.3.4");
    spec.first_number = 50;
    let odd = write_ct_series(&other, &d.path().join("x"), &spec).unwrap();
    std::fs::rename(&odd[0], d.path().join("50.dcm")).unwrap();
    let e = read_err(d.path());
    assert!(
        e.contains("50.dcm: mixed series: Rows x Columns (0028,0010/0011) is 8x6"),
        "{e}"
    );

    let d = tempfile::tempdir().unwrap();
    series(d.path(), [8, 8, 1]);
    let e = read_err(d.path());
    assert!(e.contains("series 1.2.3.4 has a single slice"), "{e}");

    let d = tempfile::tempdir().unwrap();
    let files = series(d.path(), [8, 8, 3]);
    let mut obj = open_file(&files[2]).unwrap();
    let tilted = ["1", "0", "0", "0", "0.8", "-0.6"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    obj.put(DataElement::new(
        tags::IMAGE_ORIENTATION_PATIENT,
        VR::DS,
        PrimitiveValue::Strs(tilted),
    ));
    obj.write_to_file(&files[2]).unwrap();
    let e = read_err(d.path());
    assert!(
        e.contains("3.dcm: inconsistent orientation: ImageOrientationPatient (0020,0037)"),
        "{e}"
    );
}

#[test]
fn absurd_and_invalid_header_values_are_named() {
    let cases: [(dicom_core::Tag, VR, PrimitiveValue, &str); 4] = [
        (
            tags::ROWS,
            VR::US,
            PrimitiveValue::from(60000u16),
            "absurd dimensions: Rows (0028,0010) is 60000",
        ),
        (
            tags::COLUMNS,
            VR::US,
            PrimitiveValue::from(0u16),
            "absurd dimensions: Columns (0028,0011) is 0",
        ),
        (
            tags::PIXEL_SPACING,
            VR::DS,
            PrimitiveValue::from("0\\0.5"),
            "PixelSpacing (0028,0030) value",
        ),
        (
            tags::IMAGE_POSITION_PATIENT,
            VR::DS,
            PrimitiveValue::from("1\\2"),
            "ImagePositionPatient (0020,0032) value",
        ),
    ];
    for (tag, vr, value, expected) in cases {
        let d = tempfile::tempdir().unwrap();
        let files = series(d.path(), [8, 8, 3]);
        let mut obj = open_file(&files[1]).unwrap();
        obj.put(DataElement::new(tag, vr, value));
        obj.write_to_file(&files[1]).unwrap();
        let e = read_err(d.path());
        assert!(
            e.starts_with(&files[1].display().to_string()) && e.contains(expected),
            "{e}"
        );
    }
}

/// A slice step of kilometres (a corrupt ImagePositionPatient) is refused when the series is
/// read, before anything resamples it to a working grid.
#[test]
fn an_absurd_slice_step_is_an_error_not_a_huge_volume() {
    let d = tempfile::tempdir().unwrap();
    let files = series(d.path(), [8, 8, 2]);
    let mut obj = open_file(&files[1]).unwrap();
    obj.put(DataElement::new(
        tags::IMAGE_POSITION_PATIENT,
        VR::DS,
        PrimitiveValue::from("0\\0\\-9000000"),
    ));
    obj.write_to_file(&files[1]).unwrap();
    let e = read_err(d.path());
    assert!(e.contains("more than MAX_EXTENT_MM"), "{e}");
}

#[test]
fn empty_folder_is_no_files() {
    let d = tempfile::tempdir().unwrap();
    assert!(matches!(
        read_series(d.path(), ReadOptions::default()),
        Err(DicomReadError::NoFiles { .. })
    ));
}

#[test]
fn corrupted_bytes_never_panic() {
    let d = tempfile::tempdir().unwrap();
    let files = series(d.path(), [16, 16, 1]);
    let original = std::fs::read(&files[0]).unwrap();
    let victim = d.path().join("victim.dcm");
    // Deterministic pseudo-random corruptions: flipped bytes across the header, and cuts.
    let mut state = 0x9E3779B97F4A7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..300 {
        let mut bytes = original.clone();
        let header_len = original.len() - 16 * 16 * 2;
        for _ in 0..(1 + round % 4) {
            let pos = (next() as usize) % header_len;
            bytes[pos] = next() as u8;
        }
        if round % 5 == 0 {
            bytes.truncate((next() as usize) % original.len());
        }
        std::fs::write(&victim, &bytes).unwrap();
        let t = std::time::Instant::now();
        let outcome = std::panic::catch_unwind(|| read_slice(&victim).map(|_| ()));
        assert!(
            outcome.is_ok(),
            "round {round}: reading a corrupted file panicked"
        );
        // Corrupted lengths must be rejected before dicom-rs allocates for them.
        assert!(
            t.elapsed().as_millis() < 500,
            "round {round}: took {:?}",
            t.elapsed()
        );
    }
}

/// Only the preamble and magic are read before a file is known to be DICOM: a stream that
/// never ends (here a FIFO whose writer stays open) is rejected at once, not read to its end.
#[test]
fn a_non_dicom_file_is_rejected_after_132_bytes() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("stray.bin");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let writer_path = fifo.clone();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&writer_path)
            .unwrap();
        let _ = f.write_all(&[b'x'; 4096]);
        std::thread::sleep(std::time::Duration::from_secs(3));
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let reader_path = fifo.clone();
    std::thread::spawn(move || {
        let _ = tx.send(
            read_slice(&reader_path)
                .map(|_| ())
                .unwrap_err()
                .to_string(),
        );
    });
    let err = rx
        .recv_timeout(std::time::Duration::from_secs(2))
        .expect("the reader waited for the end of the stream");
    assert!(
        err.contains("no DICM magic") && err.contains("stray.bin"),
        "{err}"
    );
    writer.join().unwrap();
}
