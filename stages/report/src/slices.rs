//! A CT slice with its overlays: vertebra labels as semi-transparent colours, the predicted
//! fracture as a red tint with a red contour, the ground-truth fracture as a green contour.
//!
//! Contours are traced at output resolution (after the nearest-neighbour upscaling), so they stay
//! one pixel thin and the CT underneath remains readable.

use crate::input::SliceFigure;
use crate::raster::{Canvas, Rgb};
use crate::ReportError;

/// Upper bound on output pixels (4096 x 4096), so a bad `scale` cannot exhaust memory.
const MAX_PIXELS: usize = 1 << 24;

/// Colours of labels 1..=8, C1..C7 then T1, also shown in the HTML legend.
pub(crate) const VERTEBRA_COLOURS: [(&str, Rgb); 8] = [
    ("C1", [230, 25, 75]),
    ("C2", [60, 180, 75]),
    ("C3", [255, 225, 25]),
    ("C4", [0, 130, 200]),
    ("C5", [245, 130, 48]),
    ("C6", [145, 30, 180]),
    ("C7", [70, 240, 240]),
    ("T1", [240, 50, 230]),
];
const VERTEBRA_ALPHA: f32 = 0.4;
/// Predicted fracture: tint and contour.
pub(crate) const FRACTURE: Rgb = [255, 0, 0];
const FRACTURE_ALPHA: f32 = 0.35;
/// Ground-truth fracture contour.
pub(crate) const TRUTH: Rgb = [0, 255, 0];

fn bad(fig: &SliceFigure, reason: String) -> ReportError {
    ReportError::BadInput {
        figure: fig.caption.clone(),
        reason,
    }
}

/// Checks sizes, map lengths and label values; every render of a validated figure succeeds.
pub(crate) fn validate(fig: &SliceFigure) -> Result<(), ReportError> {
    if fig.width == 0 || fig.height == 0 {
        return Err(bad(
            fig,
            format!("empty slice ({}x{})", fig.width, fig.height),
        ));
    }
    if fig.scale == 0 {
        return Err(bad(fig, "scale must be at least 1".into()));
    }
    let out = fig
        .width
        .checked_mul(fig.height)
        .and_then(|n| n.checked_mul(fig.scale))
        .and_then(|n| n.checked_mul(fig.scale));
    if out.is_none_or(|n| n > MAX_PIXELS) {
        return Err(bad(
            fig,
            format!(
                "{}x{} at scale {} exceeds {MAX_PIXELS} pixels",
                fig.width, fig.height, fig.scale
            ),
        ));
    }
    let n = fig.width * fig.height;
    let maps = [
        ("ct", Some(&fig.ct)),
        ("vertebrae", fig.vertebrae.as_ref()),
        ("fracture", fig.fracture.as_ref()),
        ("fracture_truth", fig.fracture_truth.as_ref()),
    ];
    for (name, map) in maps {
        if let Some(map) = map.filter(|m| m.len() != n) {
            return Err(bad(
                fig,
                format!(
                    "{name} has {} values, expected {n} ({}x{})",
                    map.len(),
                    fig.width,
                    fig.height
                ),
            ));
        }
    }
    if let Some(&label) = fig
        .vertebrae
        .iter()
        .flatten()
        .find(|&&l| l as usize > VERTEBRA_COLOURS.len())
    {
        return Err(bad(
            fig,
            format!("vertebra label {label} outside 0..=8 (C1..C7, T1)"),
        ));
    }
    Ok(())
}

/// The slice upscaled by `scale` with all overlays drawn; validates first.
pub(crate) fn render_slice(fig: &SliceFigure) -> Result<Canvas, ReportError> {
    validate(fig)?;
    let s = fig.scale;
    let (w, h) = (fig.width * s, fig.height * s);
    // Source value of `map` under output pixel (x, y); 0 outside the image.
    let at = |map: &[u8], x: i64, y: i64| -> u8 {
        if x < 0 || y < 0 || x as usize >= w || y as usize >= h {
            return 0;
        }
        map[(y as usize / s) * fig.width + x as usize / s]
    };
    // Inside `map` with a 4-neighbour outside (or at the image border).
    let on_contour = |map: &[u8], x: i64, y: i64| {
        at(map, x, y) != 0
            && [(-1, 0), (1, 0), (0, -1), (0, 1)]
                .iter()
                .any(|(dx, dy)| at(map, x + dx, y + dy) == 0)
    };
    let mut c = Canvas::new(w, h, [0; 3]);
    for y in 0..h as i64 {
        for x in 0..w as i64 {
            let g = at(&fig.ct, x, y);
            c.set(x, y, [g, g, g]);
            if let Some(v) = fig.vertebrae.as_deref() {
                let label = at(v, x, y) as usize;
                if label > 0 {
                    c.blend(x, y, VERTEBRA_COLOURS[label - 1].1, VERTEBRA_ALPHA);
                }
            }
            if let Some(f) = fig.fracture.as_deref() {
                if on_contour(f, x, y) {
                    c.set(x, y, FRACTURE);
                } else if at(f, x, y) != 0 {
                    c.blend(x, y, FRACTURE, FRACTURE_ALPHA);
                }
            }
            if fig
                .fracture_truth
                .as_deref()
                .is_some_and(|t| on_contour(t, x, y))
            {
                c.set(x, y, TRUTH);
            }
        }
    }
    Ok(c)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// 8x8 mid-grey slice, vertebra C2 on the left half, fracture and truth in a 4x4 square.
    pub(crate) fn sample() -> SliceFigure {
        let (w, h) = (8, 8);
        let square = |x: usize, y: usize| (2..6).contains(&x) && (2..6).contains(&y);
        let map = |f: &dyn Fn(usize, usize) -> u8| {
            (0..w * h).map(|i| f(i % w, i / w)).collect::<Vec<u8>>()
        };
        SliceFigure {
            caption: "C2 fracture".into(),
            width: w,
            height: h,
            ct: vec![100; w * h],
            vertebrae: Some(map(&|x, _| if x < 4 { 2 } else { 0 })),
            fracture: Some(map(&|x, y| square(x, y) as u8)),
            fracture_truth: Some(map(&|x, y| square(x, y) as u8)),
            scale: 1,
        }
    }

    #[test]
    fn overlays_change_the_pixels_they_cover() {
        let fig = SliceFigure {
            fracture_truth: None,
            ..sample()
        };
        let c = render_slice(&fig).unwrap();
        let plain = Some([100, 100, 100]);
        assert_eq!(c.get(7, 0), plain, "no label, plain CT");
        let vert = c.get(0, 0).unwrap();
        assert_ne!(Some(vert), plain, "C2 tint");
        assert!(vert[1] > vert[0], "C2 is green-ish: {vert:?}");
        assert_eq!(c.get(5, 5), Some(FRACTURE), "fracture contour");
        let fill = c.get(4, 4).unwrap();
        assert!(
            fill[0] > fill[1] && fill[0] > 100,
            "red tint inside: {fill:?}"
        );
    }

    #[test]
    fn truth_contour_is_green_and_scaling_keeps_contours_thin() {
        let fig = SliceFigure {
            scale: 3,
            ..sample()
        };
        let c = render_slice(&fig).unwrap();
        assert_eq!((c.width, c.height), (24, 24));
        assert_eq!(c.get(6, 6), Some(TRUTH));
        assert_ne!(c.get(7, 7), Some(TRUTH), "contour one output pixel thick");
        assert_ne!(c.get(7, 7), Some([100, 100, 100]));
    }

    #[test]
    fn bad_input_names_the_figure() {
        let fig = SliceFigure {
            ct: vec![0; 63],
            ..sample()
        };
        let err = validate(&fig).unwrap_err().to_string();
        assert!(
            err.contains("C2 fracture") && err.contains("ct has 63 values"),
            "{err}"
        );
        let fig = SliceFigure {
            fracture: Some(vec![1; 3]),
            ..sample()
        };
        assert!(validate(&fig)
            .unwrap_err()
            .to_string()
            .contains("fracture has 3"));
        for fig in [
            SliceFigure {
                width: 0,
                ct: vec![],
                vertebrae: None,
                fracture: None,
                fracture_truth: None,
                ..sample()
            },
            SliceFigure {
                scale: 0,
                ..sample()
            },
            SliceFigure {
                scale: usize::MAX,
                ..sample()
            },
            SliceFigure {
                vertebrae: Some(vec![9; 64]),
                ..sample()
            },
        ] {
            assert!(render_slice(&fig).is_err(), "{fig:?}");
        }
    }
}
