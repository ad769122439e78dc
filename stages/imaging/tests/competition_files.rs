//! Competition helpers on files: the segmentation quirk round trip through a .nii, and boxes
//! drawn on a generated series whose file numbers run superior-to-inferior.

use flow_imaging::competition::{
    boxes_to_mask, read_competition_segmentation, slice_positions, write_competition_segmentation,
    FractureBox,
};
use flow_imaging::{
    read_series, write_ct_series, CtSeriesSpec, FileOrder, Geometry, ReadOptions, Volume,
};

fn ct(dims: [usize; 3]) -> Volume<i16> {
    let g = Geometry {
        spacing: [0.8, 0.8, 1.0],
        origin: [60.0, 70.0, -120.0],
        direction: [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]],
    };
    Volume::filled(dims, -1000i16, g).unwrap()
}

#[test]
fn label_map_written_the_competition_way_comes_back_identical() {
    for order in [FileOrder::SuperiorFirst, FileOrder::InferiorFirst] {
        let tmp = tempfile::tempdir().unwrap();
        let mut spec = CtSeriesSpec::new("1.2.3", "1.2.3.4");
        spec.order = order;
        write_ct_series(&ct([20, 16, 12]), &tmp.path().join("dcm"), &spec).unwrap();
        let (vol, _) = read_series(&tmp.path().join("dcm"), ReadOptions::default()).unwrap();
        // Labels built on the CT grid (DICOM column, row, slice in physical order): one
        // connected body whose labels run 1..7 along z and differ along rows and columns.
        let mut labels = vol.like(0u8);
        for k in 2..9 {
            for j in 3..(6 + k % 3) {
                for i in (4 + k % 2)..14 {
                    labels.set(i, j, k, (k - 1) as u8);
                }
            }
        }
        let path = tmp.path().join("1.2.3.nii");
        write_competition_segmentation(&labels, &path).unwrap();
        let back = read_competition_segmentation(&path, &vol.geometry, vol.dims()).unwrap();
        assert_eq!(back, labels, "{order:?}");
    }
}

#[test]
fn boxes_land_on_the_slice_of_their_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dcm");
    // Superior first: file 1 is the top slice, i.e. k = nz-1 in our ascending volume.
    write_ct_series(
        &ct([20, 16, 12]),
        &dir,
        &CtSeriesSpec::new("1.2.3", "1.2.3.4"),
    )
    .unwrap();
    let (vol, _) = read_series(&dir, ReadOptions::default()).unwrap();
    let positions = slice_positions(&dir).unwrap();
    assert_eq!(positions.len(), 12);
    let b = |n: i64, line: u64| FractureBox {
        study_uid: "1.2.3".into(),
        x: 3.4,
        y: 5.6,
        width: 2.0,
        height: 0.9,
        slice_number: n,
        line,
    };
    let out = boxes_to_mask(
        &[b(1, 2), b(12, 3), b(13, 4)],
        &positions,
        &vol.geometry,
        vol.dims(),
    );
    assert_eq!(out.drawn, 2);
    assert_eq!(out.unmatched.len(), 1);
    assert_eq!(out.unmatched[0].line, 4);
    // x0 = round(3.4) = 3, x1 = round(5.4) = 5, y0 = round(5.6) = 6, y1 = round(6.5) = 6.
    for (k, _file) in [(11usize, 1), (0, 12)] {
        for i in 0..20 {
            for j in 0..16 {
                let expected = (3..=5).contains(&i) && j == 6;
                assert_eq!(out.mask.get(i, j, k) == 1, expected, "k {k} i {i} j {j}");
            }
        }
    }
    assert_eq!(out.mask.data().iter().filter(|&&x| x == 1).count(), 6);
}
