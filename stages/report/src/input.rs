//! What the report shows: plain data, computed elsewhere, serialisable so a run can save it as JSON
//! and re-render the report later without rerunning anything.

use serde::{Deserialize, Serialize};

/// Everything one report shows, in page order: summary, notes, tables, bar charts, curves,
/// reliability plots, slices.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReportInput {
    /// Page title, e.g. "rsna7 on the demo cohort".
    pub title: String,
    /// Key/value rows shown first (profile, studies, run time, ...).
    pub summary: Vec<(String, String)>,
    /// Free-text paragraphs; plain text, escaped on output, line breaks kept.
    pub notes: Vec<String>,
    /// Numeric tables (Dice per vertebra, metric per label, ...).
    pub tables: Vec<Table>,
    /// Bar charts, e.g. fracture Dice per round.
    pub bar_charts: Vec<BarChart>,
    /// Line charts, e.g. loss curves.
    pub curves: Vec<CurveChart>,
    /// Reliability (calibration) plots, e.g. of the test submission.
    pub reliability: Vec<ReliabilityChart>,
    /// CT slices with segmentation overlays.
    pub slices: Vec<SliceFigure>,
}

/// A captioned table; rows shorter than the header are padded with empty cells.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Table {
    pub caption: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

/// One table cell. In JSON a cell is a string, a number or `null` (a missing number).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Cell {
    Text(String),
    /// `None` renders as "–"; numbers show 4 significant digits.
    Number(Option<f64>),
}

impl Default for Cell {
    fn default() -> Self {
        Cell::Text(String::new())
    }
}

/// Bars left to right; a `None` value is a missing bar (grey dash at the baseline).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BarChart {
    pub caption: String,
    pub y_label: String,
    pub bars: Vec<(String, Option<f64>)>,
    /// Fixed top of the y axis (e.g. 1.0 for Dice); `None` fits the data.
    pub y_max: Option<f64>,
}

/// Line chart of one or more series; non-finite points are skipped and break the line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CurveChart {
    pub caption: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

/// One named line of a [`CurveChart`], points in drawing order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Series {
    pub name: String,
    /// JSON has no NaN: serde_json writes it as `null`, which reads back as NaN (and is skipped).
    #[serde(deserialize_with = "points_allowing_null")]
    pub points: Vec<(f64, f64)>,
}

fn points_allowing_null<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<(f64, f64)>, D::Error> {
    let raw: Vec<(Option<f64>, Option<f64>)> = Deserialize::deserialize(d)?;
    Ok(raw
        .into_iter()
        .map(|(x, y)| (x.unwrap_or(f64::NAN), y.unwrap_or(f64::NAN)))
        .collect())
}

/// A reliability (calibration) plot: per series, the observed positive frequency against the
/// mean predicted probability in each probability bin, with the diagonal of perfect calibration.
/// The bins are computed elsewhere (e.g. `flow_scoring::reliability_bins`); the report draws the
/// non-empty ones and lists every bin with its count under the figure.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReliabilityChart {
    pub caption: String,
    pub series: Vec<ReliabilitySeries>,
}

/// One named set of bins of a [`ReliabilityChart`] (e.g. "patient_overall"), bins in
/// probability order; every series of a chart should use the same bin edges.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReliabilitySeries {
    pub name: String,
    pub bins: Vec<ReliabilityBin>,
}

/// One probability bin `[lo, hi)` (the last bin includes 1): how many predictions fell in it,
/// their mean, and the fraction of them whose target was positive (both `None` when empty).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReliabilityBin {
    pub lo: f64,
    pub hi: f64,
    pub count: usize,
    pub mean_predicted: Option<f64>,
    pub observed: Option<f64>,
}

/// A CT slice (already windowed to 8 bits) with optional label maps of the same size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SliceFigure {
    pub caption: String,
    /// Pixels; all maps are row-major with row 0 at the top.
    pub width: usize,
    pub height: usize,
    /// Grayscale intensities, `width * height` of them.
    pub ct: Vec<u8>,
    /// 0 = none, 1..=7 = C1..C7, 8 = T1: a semi-transparent colour per label.
    pub vertebrae: Option<Vec<u8>>,
    /// Predicted fracture, non-zero = fracture: red tint with a red contour.
    pub fracture: Option<Vec<u8>>,
    /// Ground-truth fracture, non-zero = fracture: green contour.
    pub fracture_truth: Option<Vec<u8>>,
    /// Integer nearest-neighbour upscaling for small images, at least 1.
    pub scale: usize,
}

impl Default for SliceFigure {
    /// An empty figure at scale 1 (so a JSON object without `scale` means no upscaling).
    fn default() -> Self {
        SliceFigure {
            caption: String::new(),
            width: 0,
            height: 0,
            ct: Vec::new(),
            vertebrae: None,
            fracture: None,
            fracture_truth: None,
            scale: 1,
        }
    }
}
