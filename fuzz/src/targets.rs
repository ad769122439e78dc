//! The readers under test and their seed files.

use std::path::Path;
use std::sync::OnceLock;

use flow_imaging::dicom_writer::{write_ct_series, CtSeriesSpec, WriteSyntax};
use flow_imaging::{Geometry, Volume};

/// One reader: its seeds and how to run it on an input (true when it accepted the input).
pub struct Target {
    pub name: &'static str,
    /// Text formats also get token insertions.
    pub text: bool,
    pub seeds: Vec<Vec<u8>>,
    pub run: fn(&[u8], &Path) -> bool,
}

/// Every target, with generated seeds plus the files of `extra` (a folder of DICOM, NIfTI,
/// YAML or CSV files, given to the target their extension names).
pub fn all_targets(extra: Option<&Path>) -> Vec<Target> {
    let made = tempfile::tempdir().expect("scratch for seeds");
    let mut targets = vec![
        Target {
            name: "dicom-header",
            text: false,
            seeds: dicom_seeds(made.path()),
            run: dicom_header,
        },
        Target {
            name: "dicom-series",
            text: false,
            seeds: dicom_seeds(made.path()),
            run: dicom_series,
        },
        Target {
            name: "nifti",
            text: false,
            seeds: nifti_seeds(made.path()),
            run: nifti,
        },
        Target {
            name: "yaml",
            text: true,
            seeds: yaml_seeds(),
            run: yaml,
        },
        Target {
            name: "csv",
            text: true,
            seeds: csv_seeds(),
            run: csv,
        },
    ];
    if let Some(dir) = extra {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        for f in files {
            let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("");
            let name = match ext {
                "dcm" => "dicom",
                "nii" | "gz" => "nifti",
                "yaml" | "yml" => "yaml",
                "csv" => "csv",
                _ => continue,
            };
            let Ok(bytes) = std::fs::read(&f) else {
                continue;
            };
            for t in targets.iter_mut().filter(|t| t.name.starts_with(name)) {
                t.seeds.push(bytes.clone());
            }
        }
    }
    targets
}

fn dicom_seeds(dir: &Path) -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for (k, syntax) in [
        WriteSyntax::ExplicitVrLittleEndian,
        WriteSyntax::ImplicitVrLittleEndian,
    ]
    .into_iter()
    .enumerate()
    {
        let data: Vec<i16> = (0..8 * 6 * 3)
            .map(|i| (i * 37 % 2000) as i16 - 1000)
            .collect();
        let geometry = Geometry {
            spacing: [0.7, 0.7, 1.25],
            ..Geometry::identity()
        };
        let volume = Volume::from_vec([8, 6, 3], data, geometry).expect("seed volume");
        let mut spec = CtSeriesSpec::new(&format!("1.2.3.{k}"), &format!("1.2.3.{k}.1"));
        spec.syntax = syntax;
        let out = dir.join(format!("dicom{k}"));
        for p in write_ct_series(&volume, &out, &spec).expect("seed series") {
            seeds.push(std::fs::read(p).expect("seed file"));
        }
    }
    seeds
}

fn nifti_seeds(dir: &Path) -> Vec<Vec<u8>> {
    let data: Vec<i16> = (0..5 * 4 * 3).map(|i| i as i16 * 11 - 100).collect();
    let geometry = Geometry {
        spacing: [0.8, 0.9, 2.0],
        origin: [-10.0, 4.0, 30.0],
        ..Geometry::identity()
    };
    let volume = Volume::from_vec([5, 4, 3], data, geometry).expect("seed volume");
    let labels = Volume::from_vec([5, 4, 3], vec![3u8; 60], geometry).expect("seed labels");
    let mut seeds = Vec::new();
    for name in ["a.nii", "a.nii.gz"] {
        flow_imaging::write_nifti(&volume, &dir.join(name)).expect("seed NIfTI");
        seeds.push(std::fs::read(dir.join(name)).expect("seed file"));
    }
    flow_imaging::write_nifti(&labels, &dir.join("l.nii")).expect("seed NIfTI");
    seeds.push(std::fs::read(dir.join("l.nii")).expect("seed file"));
    seeds
}

fn yaml_seeds() -> Vec<Vec<u8>> {
    [
        include_str!("../../pipelines/rsna7.yaml"),
        include_str!("../../pipelines/examples/diamond.yaml"),
        include_str!("../../pipelines/examples/custom-command.yaml"),
        "name: t\nparams: {n: 3, plan: {}}\ntargets: [b_2]\nnodes:\n  a_${k}:\n    foreach: {k: \"0..${params.n}\"}\n    stage: command\n    params: {cmd: [\"echo\", \"${k}\"], outputs: {o: o.txt}}\n  b_${k}:\n    foreach: {k: \"1..${params.n}\"}\n    stage: command\n    inputs: {x: \"a_${k-1}.o\"}\n    params: {cmd: \"cat ${inputs.x}\", shell: true}\n    retry: {attempts: 2, exit_codes: [75]}\n    resources: {cpu: 1, memory: 1G}\n    publish: copy\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn csv_seeds() -> Vec<Vec<u8>> {
    let uid = "2.25.19534877185241311770351847503158050473";
    let labels = format!(
        "StudyInstanceUID,patient_overall,C1,C2,C3,C4,C5,C6,C7\n{uid},1,0,1,0,0,0,1,0\n2.25.6964,0,0,0,0,0,0,0,0\n"
    );
    let mut submission = String::from("row_id,fractured\n");
    let mut sample = String::from("row_id,StudyInstanceUID,prediction_type\n");
    for t in ["patient_overall", "C1", "C2", "C3", "C4", "C5", "C6", "C7"] {
        submission.push_str(&format!("{uid}_{t},0.25\n"));
        sample.push_str(&format!("{uid}_{t},{uid},{t}\n"));
    }
    let boxes = format!(
        "StudyInstanceUID,x,y,width,height,slice_number\n{uid},60.0,43.0,15.0,11.0,29\n{uid},59.5,43,20,15,30\n"
    );
    [labels, submission, sample, boxes]
        .into_iter()
        .map(String::into_bytes)
        .collect()
}

fn write(work: &Path, name: &str, input: &[u8]) -> std::path::PathBuf {
    let p = work.join(name);
    std::fs::write(&p, input).expect("scratch write");
    p
}

fn dicom_header(input: &[u8], work: &Path) -> bool {
    let p = write(work, "h.dcm", input);
    flow_imaging::dicom_series::read_slice_header(&p).is_ok()
}

/// The mutated file beside an intact neighbour, through the whole series reader (pixel
/// decoding included).
fn dicom_series(input: &[u8], work: &Path) -> bool {
    static NEIGHBOUR: OnceLock<Vec<u8>> = OnceLock::new();
    let neighbour = NEIGHBOUR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("scratch");
        dicom_seeds(dir.path()).remove(1)
    });
    let dir = work.join("series");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    write(&dir, "1.dcm", input);
    write(&dir, "2.dcm", neighbour);
    flow_imaging::read_series(&dir, Default::default()).is_ok()
}

fn nifti(input: &[u8], work: &Path) -> bool {
    let name = if input.starts_with(&[0x1f, 0x8b]) {
        "x.nii.gz"
    } else {
        "x.nii"
    };
    let p = write(work, name, input);
    flow_imaging::read_nifti(&p).is_ok()
}

fn yaml(input: &[u8], work: &Path) -> bool {
    static REGISTRY: OnceLock<flow_engine::Registry> = OnceLock::new();
    let registry = REGISTRY.get_or_init(flow_rsna::registry);
    let p = write(work, "p.yaml", input);
    flow_engine::load_pipeline(&p, &[], registry, work).is_ok()
}

/// Every CSV reader on the same input.
fn csv(input: &[u8], work: &Path) -> bool {
    let p = write(work, "t.csv", input);
    let results = [
        flow_scoring::LabelTable::read(&p).is_ok(),
        flow_scoring::Predictions::read(&p).is_ok(),
        flow_scoring::SampleOrder::read(&p).is_ok(),
        flow_imaging::competition::read_fracture_boxes(&p).is_ok(),
        flow_imaging::competition::read_train_labels(&p).is_ok(),
    ];
    results.iter().any(|ok| *ok)
}
