//! Writer -> reader round trips on generated CT series: voxels and geometry survive every
//! file order, storage and syntax the writer offers.

use flow_imaging::dicom_series::{read_series, FileNumbering, ReadOptions};
use flow_imaging::{
    write_ct_series, CtSeriesSpec, FileOrder, Geometry, PixelStorage, Volume, WriteSyntax,
};

fn phantom(slice_axis_superior: bool) -> Volume<i16> {
    let dims = [12, 10, 7];
    let g = Geometry {
        spacing: [0.7, 0.6, 1.25],
        origin: [
            95.5,
            120.25,
            if slice_axis_superior { -310.0 } else { -302.5 },
        ],
        direction: [
            [-1.0, 0.0, 0.0],
            [0.0, -1.0, 0.0],
            [0.0, 0.0, if slice_axis_superior { 1.0 } else { -1.0 }],
        ],
    };
    let data = (0..dims[0] * dims[1] * dims[2])
        .map(|n| ((n * 37) % 3000) as i16 - 1024)
        .collect();
    Volume::from_vec(dims, data, g).unwrap()
}

#[test]
fn every_file_order_reads_back_identically() {
    for order in [FileOrder::SuperiorFirst, FileOrder::InferiorFirst] {
        for storage in [PixelStorage::Signed, PixelStorage::Unsigned] {
            for syntax in [
                WriteSyntax::ExplicitVrLittleEndian,
                WriteSyntax::ImplicitVrLittleEndian,
            ] {
                let dir = tempfile::tempdir().unwrap();
                let v = phantom(true);
                let mut spec =
                    CtSeriesSpec::new("1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2");
                spec.order = order;
                spec.storage = storage;
                spec.syntax = syntax;
                if storage == PixelStorage::Unsigned {
                    spec.rescale_intercept = -1024.0;
                }
                let files = write_ct_series(&v, dir.path(), &spec).unwrap();
                assert_eq!(files.len(), 7);
                let (back, report) = read_series(dir.path(), ReadOptions::default()).unwrap();
                assert_eq!(back.dims(), v.dims());
                assert_eq!(back.data(), v.data(), "{order:?} {storage:?} {syntax:?}");
                assert!(
                    back.geometry.max_affine_difference(&v.geometry) < 1e-5,
                    "{:?}",
                    back.geometry
                );
                let expected = match order {
                    FileOrder::SuperiorFirst => FileNumbering::SuperiorFirst,
                    FileOrder::InferiorFirst => FileNumbering::InferiorFirst,
                };
                assert_eq!(report.file_numbering, expected);
                assert!(report.warnings.is_empty(), "{:?}", report.warnings);
                assert_eq!(report.spacing.slice_spacing, 1.25);
                let json = serde_json::to_string(&report).unwrap();
                let back_report: flow_imaging::SeriesReport = serde_json::from_str(&json).unwrap();
                assert_eq!(back_report, report);
                assert!(!json.contains("PatientName") && json.contains("\"file_numbering\""));
            }
        }
    }
}

#[test]
fn stack_written_top_down_comes_back_in_ascending_order_at_same_world_positions() {
    let dir = tempfile::tempdir().unwrap();
    let v = phantom(false);
    let spec = CtSeriesSpec::new("1.2.3", "1.2.3.4");
    write_ct_series(&v, dir.path(), &spec).unwrap();
    let (back, _) = read_series(dir.path(), ReadOptions::default()).unwrap();
    let [nx, ny, nz] = v.dims();
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                assert_eq!(back.get(i, j, nz - 1 - k), v.get(i, j, k));
            }
        }
    }
    let p_orig = v.geometry.index_to_world([3.0, 4.0, 0.0]);
    let p_back = back.geometry.index_to_world([3.0, 4.0, (nz - 1) as f64]);
    for a in 0..3 {
        assert!((p_orig[a] - p_back[a]).abs() < 1e-5);
    }
}

#[test]
fn progress_reaches_total_and_other_series_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let v = phantom(true);
    write_ct_series(&v, dir.path(), &CtSeriesSpec::new("1.2.3", "1.2.3.4")).unwrap();
    // A second, smaller series in the same folder (numbered after the first).
    let small = flow_imaging::ops::crop(
        &v,
        &flow_imaging::ops::BoundingBox {
            min: [0, 0, 0],
            max: [11, 9, 2],
        },
    );
    let mut spec = CtSeriesSpec::new("1.2.3", "1.2.3.5");
    spec.first_number = 100;
    write_ct_series(&small, dir.path(), &spec).unwrap();
    let max_seen = std::sync::atomic::AtomicUsize::new(0);
    let progress = |done: usize, total: usize| {
        assert_eq!(total, 7);
        max_seen.fetch_max(done, std::sync::atomic::Ordering::Relaxed);
    };
    let (back, report) = read_series(
        dir.path(),
        ReadOptions {
            series_uid: None,
            progress: Some(&progress),
        },
    )
    .unwrap();
    assert_eq!(back.dims()[2], 7);
    assert_eq!(max_seen.into_inner(), 7);
    assert_eq!(report.other_series.len(), 1);
    assert_eq!(report.other_series[0].series_uid, "1.2.3.5");
    assert_eq!(report.other_series[0].files, 3);
    let (picked, _) = read_series(
        dir.path(),
        ReadOptions {
            series_uid: Some("1.2.3.5"),
            progress: None,
        },
    )
    .unwrap();
    assert_eq!(picked.dims()[2], 3);
    let e = read_series(
        dir.path(),
        ReadOptions {
            series_uid: Some("9.9"),
            progress: None,
        },
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("series 9.9 not found (present: 1.2.3.4, 1.2.3.5)"),
        "{e}"
    );
}
