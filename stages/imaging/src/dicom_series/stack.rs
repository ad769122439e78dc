//! Ordering slices along the slice normal and measuring the spacing between them.

use super::error::DicomReadError;
use super::header::SliceHeader;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Relative tolerance for "same spacing" (and 0.01 mm absolute).
const SPACING_TOLERANCE: f64 = 0.01;

/// What the positions say about the stack's spacing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpacingReport {
    /// Median step between consecutive slice positions along the normal (mm): the volume's
    /// slice spacing.
    pub slice_spacing: f64,
    pub min_step: f64,
    pub max_step: f64,
    /// Some step differs from the median by more than 1% (and 0.01 mm).
    pub non_uniform: bool,
    /// Steps larger than 1.5x the median: missing slices.
    pub gaps: Vec<Gap>,
    /// Files dropped because another file sits at the same position (file names).
    pub duplicates: Vec<String>,
    /// Largest in-plane offset between slice positions (mm): non-zero for gantry tilt.
    pub max_in_plane_drift: f64,
}

/// A jump between two consecutive slices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    /// Index (in physical order) of the slice before the gap.
    pub after_slice: usize,
    pub step_mm: f64,
}

/// Slices in physical order with their spacing report.
#[derive(Debug)]
pub struct OrderedStack {
    pub slices: Vec<SliceHeader>,
    /// Unit slice normal (LPS), `row cosine × column cosine`.
    pub normal: [f64; 3],
    pub spacing: SpacingReport,
}

fn file_name(h: &SliceHeader) -> String {
    h.path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Check the series is one consistent stack, order it by position along the normal (never by
/// file number), drop duplicate positions, and measure spacing.
pub fn order_stack(
    dir: &Path,
    mut slices: Vec<SliceHeader>,
) -> Result<OrderedStack, DicomReadError> {
    let first = slices.first().cloned().ok_or(DicomReadError::NoFiles {
        dir: dir.to_path_buf(),
    })?;
    for s in &slices[1..] {
        if s.orientation
            .iter()
            .zip(first.orientation.iter())
            .any(|(a, b)| (a - b).abs() > 1e-4)
        {
            return Err(DicomReadError::InconsistentOrientation {
                path: s.path.clone(),
                found: Box::new(s.orientation),
                expected: Box::new(first.orientation),
                first: first.path.clone(),
            });
        }
        let mixed =
            |tag: &'static str, found: String, expected: String| DicomReadError::MixedSeries {
                path: s.path.clone(),
                tag,
                found,
                expected,
                first: first.path.clone(),
            };
        if (s.rows, s.columns) != (first.rows, first.columns) {
            return Err(mixed(
                "Rows x Columns (0028,0010/0011)",
                format!("{}x{}", s.rows, s.columns),
                format!("{}x{}", first.rows, first.columns),
            ));
        }
        if s.pixel_spacing
            .iter()
            .zip(first.pixel_spacing.iter())
            .any(|(a, b)| (a - b).abs() > 1e-4)
        {
            return Err(mixed(
                "PixelSpacing (0028,0030)",
                format!("{:?}", s.pixel_spacing),
                format!("{:?}", first.pixel_spacing),
            ));
        }
    }
    let o = first.orientation;
    let normal = crate::geometry::cross([o[0], o[1], o[2]], [o[3], o[4], o[5]]);
    let proj = |h: &SliceHeader| crate::geometry::dot(h.position, normal);
    slices.sort_by(|a, b| {
        proj(a)
            .total_cmp(&proj(b))
            .then(a.instance_number.cmp(&b.instance_number))
            .then(a.path.cmp(&b.path))
    });

    let mut kept: Vec<SliceHeader> = Vec::with_capacity(slices.len());
    let mut duplicates = Vec::new();
    for s in slices {
        match kept.last() {
            Some(prev) if (proj(&s) - proj(prev)).abs() < 1e-3 => duplicates.push(file_name(&s)),
            _ => kept.push(s),
        }
    }
    if kept.len() < 2 {
        return Err(DicomReadError::SingleSlice {
            dir: dir.to_path_buf(),
            series_uid: first.series_uid.clone(),
            path: kept[0].path.clone(),
        });
    }
    let steps: Vec<f64> = kept.windows(2).map(|w| proj(&w[1]) - proj(&w[0])).collect();
    let mut sorted = steps.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let tol = (median * SPACING_TOLERANCE).max(0.01);
    let gaps = steps
        .iter()
        .enumerate()
        .filter(|(_, &s)| s > 1.5 * median)
        .map(|(i, &s)| Gap {
            after_slice: i,
            step_mm: s,
        })
        .collect();
    let p0 = kept[0].position;
    let max_in_plane_drift = kept
        .iter()
        .map(|h| {
            let d = [
                h.position[0] - p0[0],
                h.position[1] - p0[1],
                h.position[2] - p0[2],
            ];
            let along = crate::geometry::dot(d, normal);
            let perp = [
                d[0] - along * normal[0],
                d[1] - along * normal[1],
                d[2] - along * normal[2],
            ];
            crate::geometry::norm(perp)
        })
        .fold(0.0, f64::max);
    let spacing = SpacingReport {
        slice_spacing: median,
        min_step: sorted[0],
        max_step: sorted[sorted.len() - 1],
        non_uniform: steps.iter().any(|s| (s - median).abs() > tol),
        gaps,
        duplicates,
        max_in_plane_drift,
    };
    Ok(OrderedStack {
        slices: kept,
        normal,
        spacing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(name: &str, z: f64) -> SliceHeader {
        SliceHeader {
            path: name.into(),
            series_uid: "1.2.3".into(),
            study_uid: None,
            transfer_syntax: "1.2.840.10008.1.2.1".into(),
            rows: 4,
            columns: 4,
            orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            position: [-10.0, -10.0, z],
            pixel_spacing: [0.5, 0.5],
            rescale_slope: 1.0,
            rescale_intercept: 0.0,
            bits_allocated: 16,
            bits_stored: 16,
            pixel_representation: 1,
            photometric: "MONOCHROME2".into(),
            instance_number: None,
            slice_thickness: None,
        }
    }

    #[test]
    fn orders_by_position_not_name_and_reports_gaps_and_duplicates() {
        let s = vec![
            slice("1.dcm", 3.0),
            slice("2.dcm", 2.0),
            slice("3.dcm", 2.0),
            slice("4.dcm", 0.0),
            slice("5.dcm", -1.0),
        ];
        let st = order_stack(Path::new("d"), s).unwrap();
        let names: Vec<_> = st.slices.iter().map(file_name).collect();
        assert_eq!(names, ["5.dcm", "4.dcm", "2.dcm", "1.dcm"]);
        assert_eq!(st.spacing.duplicates, ["3.dcm"]);
        assert_eq!(st.spacing.slice_spacing, 1.0);
        assert!(st.spacing.non_uniform);
        assert_eq!(
            st.spacing.gaps,
            vec![Gap {
                after_slice: 1,
                step_mm: 2.0
            }]
        );
    }

    #[test]
    fn single_slice_and_bad_orientation_are_errors() {
        let e = order_stack(
            Path::new("d"),
            vec![slice("1.dcm", 0.0), slice("2.dcm", 0.0)],
        )
        .unwrap_err();
        assert!(e.to_string().contains("single slice"), "{e}");
        let mut tilted = slice("2.dcm", 1.0);
        tilted.orientation = [1.0, 0.0, 0.0, 0.0, 0.9, 0.43589];
        let e = order_stack(Path::new("d"), vec![slice("1.dcm", 0.0), tilted]).unwrap_err();
        assert!(
            e.to_string().contains("2.dcm: inconsistent orientation"),
            "{e}"
        );
        let mut small = slice("2.dcm", 1.0);
        small.rows = 2;
        let e = order_stack(Path::new("d"), vec![slice("1.dcm", 0.0), small]).unwrap_err();
        assert!(
            e.to_string().contains("mixed series: Rows x Columns"),
            "{e}"
        );
    }
}
