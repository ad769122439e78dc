//! Convert one DICOM folder to NIfTI: `convert DICOM_DIR OUT.nii.gz [SERIES_UID]`.
//! Prints the series report as JSON. Used by the benchmark (bench/run.sh).

use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: convert DICOM_DIR OUT.nii[.gz] [SERIES_UID]");
        std::process::exit(2);
    }
    match flow_imaging::convert_series(
        Path::new(&args[1]),
        Path::new(&args[2]),
        args.get(3).map(String::as_str),
    ) {
        Ok(report) => println!(
            "{}",
            serde_json::to_string(&report).expect("report serialises")
        ),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(match e {
                flow_imaging::ConvertError::Read(_) => 2,
                _ => 1,
            });
        }
    }
}
