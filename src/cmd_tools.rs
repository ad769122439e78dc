//! User tools outside pipelines: `flow convert`, `flow synth`, `flow score`.

use anyhow::{Context, Result};
use flow_engine::EngineError;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{ConvertArgs, Global, ScoreArgs, SynthArgs};

fn bar(quiet: bool, what: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let b = flow_engine::progress::multi().add(ProgressBar::new(0));
    b.set_style(
        ProgressStyle::with_template("{spinner} {bar:30} {pos}/{len} {msg} eta {eta}")
            .expect("valid template"),
    );
    b.set_message(what.to_string());
    b
}

pub fn convert(a: &ConvertArgs) -> Result<u8> {
    let b = bar(false, "slices");
    let progress = |done: usize, total: usize| {
        b.set_length(total as u64);
        b.set_position(done as u64);
    };
    let options = flow_imaging::ReadOptions {
        series_uid: a.series.as_deref(),
        progress: Some(&progress),
    };
    let report = match flow_imaging::convert_series_with(&a.dicom_dir, &a.out, options) {
        Ok(r) => r,
        // No usable series (or unreadable input) is invalid input: exit 2.
        Err(flow_imaging::ConvertError::Read(e)) => {
            b.finish_and_clear();
            return Err(EngineError::Usage(format!(
                "cannot convert {}: {e}",
                a.dicom_dir.display()
            ))
            .into());
        }
        Err(e) => return Err(e).with_context(|| format!("cannot write {}", a.out.display())),
    };
    b.finish_and_clear();
    if let Some(p) = &a.report {
        flow_imaging::write_report_json(&report, p)?;
    }
    eprintln!("wrote {}", a.out.display());
    Ok(0)
}

pub fn synth(g: &Global, a: &SynthArgs) -> Result<u8> {
    let mut cfg = flow_rsna::cohort_config(&a.profile, a.seed, a.studies, None)
        .map_err(EngineError::Usage)?;
    cfg.phi_canary = a.phi_canary.clone();
    let b = bar(g.quiet, "studies");
    let t0 = std::time::Instant::now();
    let summary = flow_synth::generate_cohort(&cfg, &a.out, &|done, total| {
        b.set_length(total as u64);
        b.set_position(done as u64);
    })
    .with_context(|| format!("cannot generate the cohort in {}", a.out.display()))?;
    b.finish_and_clear();
    eprintln!(
        "wrote {} train + {} test studies ({} positive, {} with boxes, {} segmented) to {} in {:.1}s",
        summary.train_studies,
        summary.test_studies,
        summary.positive_studies,
        summary.boxed_studies,
        summary.segmented_studies,
        a.out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(0)
}

pub fn score(a: &ScoreArgs) -> Result<u8> {
    let report = flow_scoring::score_files(&a.labels, &a.pred)
        .map_err(|e| EngineError::Usage(e.to_string()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", flow_scoring::render_table(&report));
    }
    Ok(0)
}
