//! `public.vertebrae`: combined TotalSegmentator v1 maps become labels 1..8; a case without T1
//! is dropped and listed with the reason.

mod common;

use common::Work;
use flow_imaging::{write_nifti, Geometry, Volume};

fn case(w: &Work, name: &str, with_t1: bool) {
    let dir = w.path().join("public").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let dims = [8, 8, 12];
    let ct = Volume::<i16>::filled(dims, 100, Geometry::identity()).unwrap();
    write_nifti(&ct, &dir.join("ct.nii.gz")).unwrap();
    let mut labels = Volume::<u8>::filled(dims, 0, Geometry::identity()).unwrap();
    // a column of vertebrae C1 (41) .. C7 (35), T1 (34) along z, touching so one component
    for z in 0..8 {
        let v = 41 - z as u8;
        if v == 34 && !with_t1 {
            continue;
        }
        for y in 2..6 {
            for x in 2..6 {
                labels.set(x, y, z, v);
            }
        }
    }
    write_nifti(&labels, &dir.join("labels.nii.gz")).unwrap();
}

#[test]
fn maps_labels_and_drops_cases_without_t1() {
    let w = Work::new();
    case(&w, "good", true);
    case(&w, "no_t1", false);
    w.write("p.yaml", "name: pub\nnodes:\n  public:\n    stage: public.vertebrae\n    params: {scheme: totalsegmentator-v1}\n    inputs: {dataset: ./public}\n");
    let (code, _) = w.run("p.yaml", &[]);
    assert_eq!(code, 0);
    let s: serde_json::Value =
        serde_json::from_str(&w.read("results/pub/public/summary.json")).unwrap();
    assert_eq!(s["done"], serde_json::json!(["good"]));
    assert_eq!(s["failed"][0]["study"], "no_t1");
    assert!(
        s["failed"][0]["error"].as_str().unwrap().contains("T1"),
        "{s}"
    );
    let labels =
        flow_imaging::read_nifti(&w.path().join("results/pub/public/cases/good_labels.nii.gz"))
            .unwrap()
            .to_labels()
            .unwrap();
    let mut seen: Vec<u8> = labels.data().to_vec();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, vec![0, 1, 2, 3, 4, 5, 6, 7, 8]);
    // bad scheme is a validation error naming the param
    w.write("q.yaml", "name: q\nnodes:\n  public:\n    stage: public.vertebrae\n    params: {scheme: nope}\n    inputs: {dataset: ./public}\n");
    let out = w.flow(&["plan", "q.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown `nope`"));
}
