//! Bar, line and reliability (calibration) charts as SVG, drawn with plotters' SVG backend.
//!
//! Every piece of text (tick values, axis titles, legends, bar values, bin counts, notes) is an
//! SVG `<text>` element laid out by the browser, so no font is needed at build or run time.
//! Numbers show at most 3 significant digits. Data that cannot be drawn (non-finite values,
//! empty series, missing bars) is written as a visible note inside the figure, never a panic.

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::axis::{fmt_short, Axis};
use crate::input::{BarChart, CurveChart, ReliabilityChart};
use crate::raster::Rgb;
use crate::ReportError;

/// Size of bar and line charts, in CSS pixels.
pub(crate) const CHART_W: u32 = 640;
pub(crate) const CHART_H: u32 = 400;
/// Size of reliability plots: nearly square, so the diagonal is close to 45 degrees.
pub(crate) const RELIABILITY_W: u32 = 560;
pub(crate) const RELIABILITY_H: u32 = 500;

/// Series with at most this many points get a marker per point.
const MARKERS_UP_TO: usize = 25;
const FONT: &str = "sans-serif";
/// plotters writes `font-size` as this divided by 1.24: about 12 px labels, 14 px axis titles.
const LABEL_SIZE: f64 = 15.0;
const TITLE_SIZE: f64 = 17.0;
const GRID: RGBColor = RGBColor(225, 225, 225);
const MISSING: RGBColor = RGBColor(150, 150, 150);
const NOTE: RGBColor = RGBColor(170, 30, 30);

/// Distinct series/bar colours (Tableau 10), reused cyclically.
pub(crate) const PALETTE: [Rgb; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

/// The colour of series or bar `i`.
pub(crate) fn colour(i: usize) -> Rgb {
    PALETTE[i % PALETTE.len()]
}

fn rgb(c: Rgb) -> RGBColor {
    RGBColor(c[0], c[1], c[2])
}

/// A drawn chart: the SVG document and its size.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Svg {
    pub text: String,
    pub width: u32,
    pub height: u32,
}

/// plotters' drawing errors (writing into a `String` does not fail in practice) as
/// [`ReportError::Draw`] naming the figure.
fn draw_err<E: std::fmt::Display>(caption: &str) -> impl Fn(E) -> ReportError + '_ {
    move |e| ReportError::Draw {
        figure: caption.to_string(),
        reason: e.to_string(),
    }
}

/// A finite-point run of a series: non-finite points split a line into runs.
fn finite_runs(points: &[(f64, f64)]) -> Vec<Vec<(f64, f64)>> {
    let mut runs = vec![Vec::new()];
    for &p in points {
        if p.0.is_finite() && p.1.is_finite() {
            runs.last_mut().expect("never empty").push(p);
        } else if !runs.last().expect("never empty").is_empty() {
            runs.push(Vec::new());
        }
    }
    runs.retain(|r| !r.is_empty());
    runs
}

/// The legend text of a line series: its name, plus what was not drawn.
pub(crate) fn series_label(name: &str, points: &[(f64, f64)]) -> String {
    let finite = points
        .iter()
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .count();
    let skipped = points.len() - finite;
    match (finite, skipped) {
        (0, 0) => format!("{name} (no points)"),
        (0, _) => format!("{name} (no finite points)"),
        (_, 0) => name.to_string(),
        (_, k) => format!("{name} ({k} non-finite skipped)"),
    }
}

/// A note in the middle of the plotting area, e.g. "no finite values".
fn centre_note<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    text: &str,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let (w, h) = area.dim_in_pixel();
    let style = (FONT, TITLE_SIZE)
        .into_font()
        .color(&NOTE)
        .pos(Pos::new(HPos::Center, VPos::Center));
    area.draw_text(text, &style, (w as i32 / 2, h as i32 / 2))
}

/// Bars left to right in [`colour`] order with their value (3 significant digits) on top; the
/// y axis includes 0, `y_max` fixes its top (taller bars are cut and marked "↑"), a missing or
/// non-finite value is a grey dash on the baseline labelled "missing".
pub(crate) fn bars(chart: &BarChart) -> Result<Svg, ReportError> {
    let values: Vec<f64> = chart
        .bars
        .iter()
        .filter_map(|b| b.1)
        .filter(|v| v.is_finite())
        .collect();
    let lo = values.iter().copied().fold(0.0, f64::min);
    let hi = values.iter().copied().fold(0.0, f64::max);
    let y = match chart.y_max {
        Some(top) if top.is_finite() && top > lo => Axis::fixed_top(lo, top),
        _ => Axis::fit(lo, hi),
    };
    let n = chart.bars.len().max(1) as f64;
    let y_fmt = |v: &f64| fmt_short(*v);
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (CHART_W, CHART_H)).into_drawing_area();
        let e = draw_err(&chart.caption);
        root.fill(&WHITE).map_err(&e)?;
        let mut c = ChartBuilder::on(&root)
            .margin(14)
            .margin_top(24)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..n, y.min..y.max)
            .map_err(&e)?;
        // Bars sit at x = i + 0.5 and are named below the axis; plotters' own x labels would
        // be numbers.
        c.configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_labels(y.ticks().len())
            .y_label_formatter(&y_fmt)
            .y_desc(chart.y_label.as_str())
            .label_style((FONT, LABEL_SIZE))
            .axis_desc_style((FONT, TITLE_SIZE))
            .bold_line_style(GRID)
            .max_light_lines(0)
            .draw()
            .map_err(&e)?;
        let style =
            |h: HPos, v: VPos| TextStyle::from((FONT, LABEL_SIZE).into_font()).pos(Pos::new(h, v));
        let base = 0f64.clamp(y.min, y.max);
        for (i, (name, value)) in chart.bars.iter().enumerate() {
            let (left, right, centre) = (i as f64 + 0.15, i as f64 + 0.85, i as f64 + 0.5);
            let below = EmptyElement::at((centre, y.min))
                + Text::new(name.clone(), (0, 8), style(HPos::Center, VPos::Top));
            c.draw_series(std::iter::once(below)).map_err(&e)?;
            match value.filter(|v| v.is_finite()) {
                Some(v) => {
                    let top = v.clamp(y.min, y.max);
                    let bar = Rectangle::new([(left, base), (right, top)], rgb(colour(i)).filled());
                    c.draw_series(std::iter::once(bar)).map_err(&e)?;
                    let cut = if v > y.max { " ↑" } else { "" };
                    let label = EmptyElement::at((centre, top.max(base)))
                        + Text::new(
                            format!("{}{cut}", fmt_short(v)),
                            (0, -4),
                            style(HPos::Center, VPos::Bottom),
                        );
                    c.draw_series(std::iter::once(label)).map_err(&e)?;
                }
                None => {
                    let dash =
                        Rectangle::new([(left, base), (right, base)], MISSING.stroke_width(4));
                    let label = EmptyElement::at((centre, base))
                        + Text::new(
                            "missing",
                            (0, -6),
                            style(HPos::Center, VPos::Bottom).color(&MISSING),
                        );
                    c.draw_series(std::iter::once(dash)).map_err(&e)?;
                    c.draw_series(std::iter::once(label)).map_err(&e)?;
                }
            }
        }
        if chart.bars.is_empty() {
            centre_note(&c.plotting_area().strip_coord_spec(), "no bars").map_err(&e)?;
        }
        root.present().map_err(&e)?;
    }
    Ok(Svg {
        text,
        width: CHART_W,
        height: CHART_H,
    })
}

/// Lines with a legend entry per series (in [`colour`] order) and axes fitted to the finite
/// points; non-finite points are skipped and break the line, points get markers when a series
/// has at most [`MARKERS_UP_TO`] of them (so a single point is visible).
pub(crate) fn curves(chart: &CurveChart) -> Result<Svg, ReportError> {
    let finite = || {
        chart
            .series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|p| p.0.is_finite() && p.1.is_finite())
    };
    let range = |f: fn(&(f64, f64)) -> f64| {
        finite()
            .map(f)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            })
    };
    let (x_lo, x_hi) = range(|p| p.0);
    let (y_lo, y_hi) = range(|p| p.1);
    let (x, y) = (Axis::fit(x_lo, x_hi), Axis::fit(y_lo, y_hi));
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (CHART_W, CHART_H)).into_drawing_area();
        let e = draw_err(&chart.caption);
        root.fill(&WHITE).map_err(&e)?;
        let mut c = ChartBuilder::on(&root)
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(x.min..x.max, y.min..y.max)
            .map_err(&e)?;
        mesh(&mut c, &x, &y, &chart.x_label, &chart.y_label).map_err(&e)?;
        for (i, s) in chart.series.iter().enumerate() {
            let colour = rgb(colour(i));
            let marker = if s.points.len() <= MARKERS_UP_TO {
                3
            } else {
                0
            };
            let runs = finite_runs(&s.points);
            // The first (possibly empty) run carries the legend entry, so every series has one.
            let first = runs.first().cloned().unwrap_or_default();
            c.draw_series(LineSeries::new(first, colour.stroke_width(2)).point_size(marker))
                .map_err(&e)?
                .label(series_label(&s.name, &s.points))
                .legend(move |(px, py)| {
                    PathElement::new(vec![(px, py), (px + 20, py)], colour.stroke_width(3))
                });
            for run in runs.into_iter().skip(1) {
                c.draw_series(LineSeries::new(run, colour.stroke_width(2)).point_size(marker))
                    .map_err(&e)?;
            }
        }
        if finite().next().is_none() {
            centre_note(
                &c.plotting_area().strip_coord_spec(),
                "no finite points to plot",
            )
            .map_err(&e)?;
        }
        if !chart.series.is_empty() {
            legend(&mut c, SeriesLabelPosition::UpperRight).map_err(&e)?;
        }
        root.present().map_err(&e)?;
    }
    Ok(Svg {
        text,
        width: CHART_W,
        height: CHART_H,
    })
}

/// Observed frequency against mean predicted probability per non-empty bin, one line per
/// series with each bin's count next to its marker, the dashed diagonal of perfect
/// calibration, both axes from 0 to 1.
pub(crate) fn reliability(chart: &ReliabilityChart) -> Result<Svg, ReportError> {
    let unit = Axis::fit(0.0, 1.0);
    let mut text = String::new();
    {
        let root =
            SVGBackend::with_string(&mut text, (RELIABILITY_W, RELIABILITY_H)).into_drawing_area();
        let e = draw_err(&chart.caption);
        root.fill(&WHITE).map_err(&e)?;
        let mut c = ChartBuilder::on(&root)
            .margin(14)
            .margin_top(26)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)
            .map_err(&e)?;
        mesh(
            &mut c,
            &unit,
            &unit,
            "mean predicted probability (per bin)",
            "observed fracture frequency",
        )
        .map_err(&e)?;
        c.draw_series(DashedLineSeries::new(
            vec![(0.0, 0.0), (1.0, 1.0)],
            6,
            4,
            BLACK.mix(0.6).stroke_width(1),
        ))
        .map_err(&e)?
        .label("perfect calibration")
        .legend(|(px, py)| PathElement::new(vec![(px, py), (px + 20, py)], BLACK.mix(0.6)));
        // Counts of even series sit above-left of their point, odd ones below-right, so two
        // series' labels at similar points do not cover each other.
        let count_style = |colour: RGBColor, i: usize| {
            let (h, v) = if i.is_multiple_of(2) {
                (HPos::Right, VPos::Bottom)
            } else {
                (HPos::Left, VPos::Top)
            };
            (FONT, LABEL_SIZE - 2.0)
                .into_font()
                .color(&colour)
                .pos(Pos::new(h, v))
        };
        let mut drawn = 0;
        for (i, s) in chart.series.iter().enumerate() {
            let colour = rgb(colour(i));
            let points: Vec<((f64, f64), usize)> = s
                .bins
                .iter()
                .filter(|b| b.count > 0)
                .filter_map(|b| Some(((b.mean_predicted?, b.observed?), b.count)))
                .filter(|((p, o), _)| p.is_finite() && o.is_finite())
                .collect();
            drawn += points.len();
            let total: usize = s.bins.iter().map(|b| b.count).sum();
            let label = if points.is_empty() {
                format!("{} (no predictions)", s.name)
            } else {
                format!("{} ({total} predictions)", s.name)
            };
            c.draw_series(
                LineSeries::new(points.iter().map(|p| p.0), colour.stroke_width(2)).point_size(4),
            )
            .map_err(&e)?
            .label(label)
            .legend(move |(px, py)| {
                PathElement::new(vec![(px, py), (px + 20, py)], colour.stroke_width(3))
            });
            c.draw_series(points.iter().map(|&(at, n)| {
                let offset = if i.is_multiple_of(2) {
                    (-5, -4)
                } else {
                    (5, 4)
                };
                EmptyElement::at(at) + Text::new(format!("n={n}"), offset, count_style(colour, i))
            }))
            .map_err(&e)?;
        }
        if drawn == 0 {
            centre_note(
                &c.plotting_area().strip_coord_spec(),
                "no predictions to plot",
            )
            .map_err(&e)?;
        }
        legend(&mut c, SeriesLabelPosition::UpperLeft).map_err(&e)?;
        root.present().map_err(&e)?;
    }
    Ok(Svg {
        text,
        width: RELIABILITY_W,
        height: RELIABILITY_H,
    })
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;
type DrawResult<'b> =
    Result<(), DrawingAreaErrorKind<<SVGBackend<'b> as DrawingBackend>::ErrorType>>;

/// Gridlines at the axes' steps, tick values at 3 significant digits and both axis titles.
fn mesh<'b>(
    c: &mut Chart<'_, 'b>,
    x: &Axis,
    y: &Axis,
    x_desc: &str,
    y_desc: &str,
) -> DrawResult<'b> {
    let fmt = |v: &f64| fmt_short(*v);
    c.configure_mesh()
        .x_labels(x.ticks().len())
        .y_labels(y.ticks().len())
        .x_label_formatter(&fmt)
        .y_label_formatter(&fmt)
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style((FONT, LABEL_SIZE))
        .axis_desc_style((FONT, TITLE_SIZE))
        .bold_line_style(GRID)
        .light_line_style(WHITE)
        .draw()
}

/// The legend box: white, semi-opaque over the data, grey border.
fn legend<'b>(c: &mut Chart<'b, 'b>, position: SeriesLabelPosition) -> DrawResult<'b> {
    c.configure_series_labels()
        .position(position)
        .label_font((FONT, LABEL_SIZE))
        .background_style(WHITE.mix(0.85))
        .border_style(MISSING)
        .draw()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::input::{ReliabilityBin, ReliabilitySeries, Series};

    /// The text of every `<text>` element, in document order (plotters puts it on its own line).
    pub(crate) fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                let body = &t[t.find('>')? + 1..];
                Some(body[..body.find("</text>")?].trim().to_string())
            })
            .collect()
    }

    /// Colour `i` as plotters writes it, e.g. `#1F77B4`.
    fn upper_hex(i: usize) -> String {
        crate::raster::hex(colour(i)).to_uppercase()
    }

    fn has(svg: &Svg, text: &str) -> bool {
        texts(&svg.text).iter().any(|t| t == text)
    }

    fn series(name: &str, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            points,
        }
    }

    #[test]
    fn bars_have_tick_values_names_values_and_a_visible_missing_bar() {
        let chart = BarChart {
            caption: "c".into(),
            y_label: "Dice".into(),
            bars: vec![
                ("round 1".into(), Some(0.8123456)),
                ("round 2".into(), None),
                ("round 3".into(), Some(1.25)),
            ],
            y_max: Some(1.0),
        };
        let svg = bars(&chart).unwrap();
        assert_eq!((svg.width, svg.height), (CHART_W, CHART_H));
        assert!(svg.text.starts_with("<svg") && svg.text.trim_end().ends_with("</svg>"));
        let t = texts(&svg.text);
        for tick in ["0", "0.2", "0.4", "0.6", "0.8", "1"] {
            assert!(t.contains(&tick.to_string()), "tick {tick} in {t:?}");
        }
        for text in [
            "Dice", "round 1", "round 2", "round 3", "0.812", "missing", "1.25 ↑",
        ] {
            assert!(t.contains(&text.to_string()), "{text} in {t:?}");
        }
        assert!(
            !t.iter().any(|s| s.len() > 12 && s.contains("0.81")),
            "no long floats: {t:?}"
        );
        let fill = |i: usize| format!("fill=\"{}\"", upper_hex(i));
        assert!(svg.text.contains(&fill(0)) && svg.text.contains(&fill(2)));
        assert!(
            !svg.text.contains(&fill(1)),
            "the missing bar is not drawn in colour"
        );
        let empty = bars(&BarChart::default()).unwrap();
        assert!(has(&empty, "no bars"));
    }

    #[test]
    fn curves_have_axis_titles_and_a_legend_entry_per_series() {
        let chart = CurveChart {
            caption: "loss".into(),
            x_label: "epoch".into(),
            y_label: "loss (CE − soft Dice)".into(),
            series: vec![
                series(
                    "train",
                    vec![(1.0, 0.5), (f64::NAN, 2.0), (2.0, -0.25), (3.0, -0.5)],
                ),
                series("empty", vec![]),
                series("nan", vec![(1.0, f64::INFINITY)]),
                series("one", vec![(2.0, 0.1)]),
            ],
        };
        let svg = curves(&chart).unwrap();
        let t = texts(&svg.text);
        for text in [
            "epoch",
            "loss (CE − soft Dice)",
            "train (1 non-finite skipped)",
            "empty (no points)",
            "nan (no finite points)",
            "one",
            "-0.6",
            "0.6",
            "1",
            "3",
        ] {
            assert!(t.contains(&text.to_string()), "{text} in {t:?}");
        }
        // Two runs of "train" (split at the NaN), one line for the single point.
        let stroke = |i: usize| format!("stroke=\"{}\"", upper_hex(i));
        assert!(svg.text.matches("<polyline").count() >= 2, "{}", svg.text);
        assert!(
            svg.text.contains(&stroke(3)),
            "the single point has a marker"
        );
        assert!(!has(&svg, "no finite points to plot"));
        let nothing = curves(&CurveChart {
            series: vec![series("v", vec![(0.0, f64::NAN)])],
            ..Default::default()
        })
        .unwrap();
        assert!(has(&nothing, "no finite points to plot") && has(&nothing, "v (no finite points)"));
        assert!(has(
            &curves(&CurveChart::default()).unwrap(),
            "no finite points to plot"
        ));
    }

    #[test]
    fn reliability_has_the_diagonal_counts_and_both_axes_from_0_to_1() {
        let bin = |lo: f64, count, p, o| ReliabilityBin {
            lo,
            hi: lo + 0.5,
            count,
            mean_predicted: (count > 0).then_some(p),
            observed: (count > 0).then_some(o),
        };
        let chart = ReliabilityChart {
            caption: "calibration".into(),
            series: vec![
                ReliabilitySeries {
                    name: "patient_overall".into(),
                    bins: vec![bin(0.0, 12, 0.1234, 0.25), bin(0.5, 0, 0.0, 0.0)],
                },
                ReliabilitySeries {
                    name: "C1–C7 pooled".into(),
                    bins: vec![bin(0.0, 0, 0.0, 0.0), bin(0.5, 0, 0.0, 0.0)],
                },
            ],
        };
        let svg = reliability(&chart).unwrap();
        assert_eq!((svg.width, svg.height), (RELIABILITY_W, RELIABILITY_H));
        let t = texts(&svg.text);
        for text in [
            "perfect calibration",
            "patient_overall (12 predictions)",
            "C1–C7 pooled (no predictions)",
            "n=12",
            "mean predicted probability (per bin)",
            "observed fracture frequency",
            "0",
            "0.4",
            "1",
        ] {
            assert!(t.contains(&text.to_string()), "{text} in {t:?}");
        }
        assert!(!t.contains(&"n=0".to_string()), "empty bins are not drawn");
        assert!(!has(&svg, "no predictions to plot"));
        let empty = reliability(&ReliabilityChart::default()).unwrap();
        assert!(has(&empty, "no predictions to plot") && has(&empty, "perfect calibration"));
    }

    #[test]
    fn finite_runs_split_at_non_finite_points() {
        let runs = finite_runs(&[
            (0.0, 1.0),
            (1.0, f64::NAN),
            (2.0, 2.0),
            (3.0, 3.0),
            (f64::NAN, 0.0),
        ]);
        assert_eq!(runs, vec![vec![(0.0, 1.0)], vec![(2.0, 2.0), (3.0, 3.0)]]);
        assert!(finite_runs(&[]).is_empty());
    }
}
