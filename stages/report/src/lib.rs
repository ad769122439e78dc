//! Renders the run report a radiologist-engineer reads at the end of a pipeline run:
//! `report.html` plus figures in `figures/`: SVG charts and PNG CT slices.
//!
//! This crate only draws: every number, curve and image comes in a [`ReportInput`] computed
//! elsewhere. Charts are SVG with axes, tick values, axis titles and legends as `<text>` drawn
//! by the browser, so no font is needed at build or run time; slices are text-free PNGs with
//! their colour legend in the HTML.

mod axis;
mod html;
mod input;
mod raster;
mod slices;
mod svg_chart;

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use input::{
    BarChart, Cell, CurveChart, ReliabilityBin, ReliabilityChart, ReliabilitySeries, ReportInput,
    Series, SliceFigure, Table,
};

/// What [`write_report`] wrote: the page and every figure, in page order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportFiles {
    pub html: PathBuf,
    pub figures: Vec<PathBuf>,
}

/// Everything that can go wrong; each variant names the file or the figure caption.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: cannot {action}: {cause}")]
    Io {
        path: PathBuf,
        action: &'static str,
        cause: std::io::Error,
    },
    #[error("{path}: cannot encode PNG: {cause}")]
    Png {
        path: PathBuf,
        cause: png::EncodingError,
    },
    #[error("figure `{figure}`: {reason}")]
    BadInput { figure: String, reason: String },
    #[error("figure `{figure}`: cannot draw the chart: {reason}")]
    Draw { figure: String, reason: String },
}

/// A file-name-safe slug of `caption`: lowercase ASCII letters and digits joined by `-`,
/// at most 40 characters, "figure" when nothing is left.
fn slug(caption: &str) -> String {
    let mut s = String::new();
    for ch in caption.chars().flat_map(char::to_lowercase) {
        if ch.is_ascii_alphanumeric() {
            s.push(ch);
        } else if !s.is_empty() && !s.ends_with('-') {
            s.push('-');
        }
        if s.len() >= 40 {
            break;
        }
    }
    let s = s.trim_end_matches('-');
    if s.is_empty() {
        "figure".into()
    } else {
        s.into()
    }
}

/// Writes `dir/report.html` and the figures `dir/figures/<nn>-<slug>.svg|png` (bar charts,
/// curves and reliability plots as SVG, then slices as PNG, numbered from 01). All input is
/// validated and every chart drawn before anything is written; each file is written to a
/// temporary name and renamed into place. Figures left in `dir/figures` by an earlier run are
/// not removed.
pub fn write_report(input: &ReportInput, dir: &Path) -> Result<ReportFiles, ReportError> {
    input.slices.iter().try_for_each(slices::validate)?;
    let mut charts = Vec::new();
    for chart in &input.bar_charts {
        charts.push((chart.caption.as_str(), svg_chart::bars(chart)?));
    }
    for chart in &input.curves {
        charts.push((chart.caption.as_str(), svg_chart::curves(chart)?));
    }
    for chart in &input.reliability {
        charts.push((chart.caption.as_str(), svg_chart::reliability(chart)?));
    }
    let fig_dir = dir.join("figures");
    fs::create_dir_all(&fig_dir).map_err(|source| ReportError::Io {
        path: fig_dir.clone(),
        action: "create directory",
        cause: source,
    })?;
    let mut written: Vec<PathBuf> = Vec::new();
    // The next figure's path and its link from the page, numbered in page order.
    let next = |written: &Vec<PathBuf>, caption: &str, ext: &str| {
        let name = format!("{:02}-{}.{ext}", written.len() + 1, slug(caption));
        (fig_dir.join(&name), format!("figures/{name}"))
    };
    let mut files = Vec::new();
    for (caption, svg) in &charts {
        let (path, rel) = next(&written, caption, "svg");
        raster::write_atomic(&path, svg.text.as_bytes())?;
        written.push(path);
        files.push(html::ChartFile {
            rel,
            width: svg.width,
            height: svg.height,
        });
    }
    let mut files = files.into_iter();
    let mut figs = html::Figures {
        bars: files.by_ref().take(input.bar_charts.len()).collect(),
        curves: files.by_ref().take(input.curves.len()).collect(),
        reliability: files.collect(),
        slices: Vec::new(),
    };
    for fig in &input.slices {
        let canvas = slices::render_slice(fig)?;
        let (path, rel) = next(&written, &fig.caption, "png");
        canvas.save_png(&path)?;
        written.push(path);
        figs.slices.push(rel);
    }
    let html_path = dir.join("report.html");
    raster::write_atomic(&html_path, html::page(input, &figs).as_bytes())?;
    Ok(ReportFiles {
        html: html_path,
        figures: written,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raster::tests::decode;
    use crate::svg_chart::tests::texts;

    fn full_input() -> ReportInput {
        ReportInput {
            title: "rsna7 on the demo cohort".into(),
            summary: vec![
                ("profile".into(), "demo".into()),
                ("studies".into(), "12".into()),
            ],
            notes: vec!["Fracture Dice < 0.5 & rising".into()],
            tables: vec![Table {
                caption: "Dice per vertebra".into(),
                header: vec!["label".into(), "dice".into()],
                rows: vec![vec![Cell::Text("C1".into()), Cell::Number(None)]],
            }],
            bar_charts: vec![BarChart {
                caption: "Fracture Dice per round".into(),
                y_label: "Dice".into(),
                bars: vec![
                    ("round 1".into(), Some(0.3)),
                    ("round 2".into(), Some(0.45)),
                ],
                y_max: Some(1.0),
            }],
            curves: vec![CurveChart {
                caption: "Loss <train/val>".into(),
                x_label: "epoch".into(),
                y_label: "loss".into(),
                series: vec![Series {
                    name: "train".into(),
                    points: vec![(0.0, 1.0), (1.0, 0.6)],
                }],
            }],
            reliability: vec![ReliabilityChart {
                caption: "Calibration (test)".into(),
                series: vec![ReliabilitySeries {
                    name: "patient_overall".into(),
                    bins: vec![
                        ReliabilityBin {
                            lo: 0.0,
                            hi: 0.5,
                            count: 3,
                            mean_predicted: Some(0.2),
                            observed: Some(1.0 / 3.0),
                        },
                        ReliabilityBin {
                            lo: 0.5,
                            hi: 1.0,
                            count: 0,
                            mean_predicted: None,
                            observed: None,
                        },
                    ],
                }],
            }],
            slices: vec![slices::tests::sample()],
        }
    }

    #[test]
    fn writes_decodable_figures_all_linked_from_the_page() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_report(&full_input(), dir.path()).unwrap();
        assert_eq!(files.html, dir.path().join("report.html"));
        let names: Vec<_> = files
            .figures
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "01-fracture-dice-per-round.svg",
                "02-loss-train-val.svg",
                "03-calibration-test.svg",
                "04-c2-fracture.png"
            ]
        );
        let html = fs::read_to_string(&files.html).unwrap();
        let on_disk: Vec<_> = fs::read_dir(dir.path().join("figures"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(on_disk.len(), 4, "no temporary files left: {on_disk:?}");
        for path in &on_disk {
            let rel = format!("figures/{}", path.file_name().unwrap().to_str().unwrap());
            assert!(html.contains(&format!("src=\"{rel}\"")), "page links {rel}");
        }
        let bars = fs::read_to_string(&files.figures[0]).unwrap();
        assert!(bars.starts_with("<svg") && bars.trim_end().ends_with("</svg>"));
        assert!(bars.contains(r#"width="640" height="400""#), "{bars}");
        assert!(html
            .contains(r#"src="figures/01-fracture-dice-per-round.svg" width="640" height="400""#));
        let t = texts(&bars);
        for text in ["Dice", "round 2", "0.45", "0.8"] {
            assert!(t.contains(&text.to_string()), "bar chart has {text}: {t:?}");
        }
        let t = texts(&fs::read_to_string(&files.figures[1]).unwrap());
        assert!(t.contains(&"epoch".to_string()) && t.contains(&"train".to_string()));
        let t = texts(&fs::read_to_string(&files.figures[2]).unwrap());
        assert!(t.contains(&"perfect calibration".to_string()) && t.contains(&"n=3".to_string()));
        assert!(html.contains(
            r#"<td class="num">3</td><td class="num">0.2000</td><td class="num">0.3333</td>"#
        ));
        let slice = decode(&fs::read(&files.figures[3]).unwrap());
        assert_eq!((slice.width, slice.height), (8, 8));
        assert_ne!(
            slice.get(0, 0),
            Some([100, 100, 100]),
            "vertebra overlay visible"
        );
        assert!(
            html.contains("Loss &lt;train/val&gt;") && html.contains("Dice &lt; 0.5 &amp; rising")
        );
        assert!(
            html.contains(&raster::hex(svg_chart::colour(1))),
            "swatch of bar 2 in the value table"
        );
        assert!(
            html.contains(">C1</li>") && html.contains(">T1</li>"),
            "vertebra legend"
        );
        for id in ["tables", "charts", "slices"] {
            assert!(
                html.contains(&format!("<h2 id=\"{id}\">")),
                "#{id} links a section"
            );
        }
    }

    #[test]
    fn bad_slice_is_reported_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut input = full_input();
        input.slices[0].ct.pop();
        let err = write_report(&input, dir.path()).unwrap_err();
        assert!(matches!(err, ReportError::BadInput { .. }));
        assert!(
            err.to_string()
                .contains("`C2 fracture`: ct has 63 values, expected 64"),
            "{err}"
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn empty_input_still_gives_a_page() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_report(&ReportInput::default(), dir.path()).unwrap();
        assert!(files.figures.is_empty());
        assert!(fs::read_to_string(files.html)
            .unwrap()
            .contains("<h1>Run report</h1>"));
    }

    #[test]
    fn input_round_trips_through_json_with_plain_cells() {
        let input = full_input();
        let back: ReportInput =
            serde_json::from_str(&serde_json::to_string(&input).unwrap()).unwrap();
        assert_eq!(back, input);
        let t: Table = serde_json::from_str(r#"{"rows": [["C1", 0.5, null]]}"#).unwrap();
        assert_eq!(
            t.rows[0],
            [
                Cell::Text("C1".into()),
                Cell::Number(Some(0.5)),
                Cell::Number(None)
            ]
        );
        let nan = Series {
            name: "v".into(),
            points: vec![(0.0, f64::NAN)],
        };
        let back: Series = serde_json::from_str(&serde_json::to_string(&nan).unwrap()).unwrap();
        assert!(back.points[0].1.is_nan());
        let s: SliceFigure = serde_json::from_str(r#"{"caption": "x"}"#).unwrap();
        assert_eq!(s.scale, 1);
    }

    #[test]
    fn slugs_are_file_name_safe() {
        assert_eq!(slug("Loss <train/val>"), "loss-train-val");
        assert_eq!(slug("   "), "figure");
        assert_eq!(slug("Ünïcode ✓ 42"), "n-code-42");
        assert!(slug(&"a b ".repeat(50)).len() <= 40);
    }
}
