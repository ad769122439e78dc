//! Bar and line charts as text-free PNGs: axes, gridlines at "nice" steps, coloured bars and
//! lines. The HTML states each axis's label, range and grid step and shows the legend, using the
//! same [`PALETTE`] colours, so no font is needed anywhere.

use crate::input::{BarChart, CurveChart};
use crate::raster::{Canvas, Rgb};

/// Chart size in pixels.
pub(crate) const CHART_W: usize = 640;
pub(crate) const CHART_H: usize = 360;
// Plot area inside the chart: room on the left and bottom for tick marks.
const LEFT: i64 = 40;
const RIGHT: i64 = CHART_W as i64 - 16;
const TOP: i64 = 16;
const BOTTOM: i64 = CHART_H as i64 - 28;

const WHITE: Rgb = [255, 255, 255];
const BLACK: Rgb = [0, 0, 0];
const GRID: Rgb = [225, 225, 225];
const MISSING: Rgb = [150, 150, 150];

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

/// One axis: its range and the gridline step, both reported in the HTML.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Axis {
    pub min: f64,
    pub max: f64,
    pub step: f64,
}

impl Axis {
    /// An axis covering `lo..=hi` with a round step giving about five gridlines.
    /// Degenerate or non-finite ranges fall back to something drawable.
    pub fn fit(lo: f64, hi: f64) -> Axis {
        let (lo, hi) = match (lo.is_finite() && hi.is_finite(), lo < hi) {
            (false, _) => (0.0, 1.0),
            (true, true) => (lo, hi),
            (true, false) if lo == 0.0 => (0.0, 1.0),
            (true, false) => (lo - lo.abs() * 0.1, lo + lo.abs() * 0.1),
        };
        let step = nice_step(hi - lo);
        let axis = Axis {
            min: (lo / step).floor() * step,
            max: (hi / step).ceil() * step,
            step,
        };
        if axis.is_sane() {
            axis
        } else {
            Axis {
                min: lo,
                max: hi,
                step: hi - lo,
            }
        }
    }

    /// An axis from `lo` to exactly `top` (a caller-fixed maximum such as 1.0 for Dice).
    fn fixed_top(lo: f64, top: f64) -> Axis {
        let step = nice_step(top - lo);
        let axis = Axis {
            min: (lo / step).floor() * step,
            max: top,
            step,
        };
        if axis.is_sane() {
            axis
        } else {
            Axis::fit(lo, top)
        }
    }

    fn is_sane(&self) -> bool {
        let span = self.max - self.min;
        span.is_finite() && span > 0.0 && self.step.is_finite() && self.step > 0.0
    }

    /// Gridline values from `min` to `max` (at most 50).
    pub fn ticks(&self) -> Vec<f64> {
        let n = ((self.max - self.min) / self.step + 1e-9)
            .floor()
            .clamp(0.0, 50.0) as usize;
        (0..=n).map(|i| self.min + i as f64 * self.step).collect()
    }

    /// Maps `v` linearly onto pixels `a` (at `min`) .. `b` (at `max`), clamped to that span so
    /// the line drawing stays inside the canvas.
    fn to_px(self, v: f64, a: i64, b: i64) -> i64 {
        let t = ((v - self.min) / (self.max - self.min)).clamp(0.0, 1.0);
        let t = if t.is_nan() { 0.0 } else { t };
        (a as f64 + t * (b - a) as f64).round() as i64
    }
}

/// 1, 2 or 5 times a power of ten, about a fifth of `span`.
fn nice_step(span: f64) -> f64 {
    let raw = span / 5.0;
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// A rendered chart and the axes the HTML must describe (`x` is `None` for bar charts, whose
/// x axis is the bar order).
pub(crate) struct Rendered {
    pub canvas: Canvas,
    pub x: Option<Axis>,
    pub y: Axis,
}

/// White background, gridlines and ticks for `y` (and `x` if given), black axes.
fn frame(x: Option<Axis>, y: Axis) -> Canvas {
    let mut c = Canvas::new(CHART_W, CHART_H, WHITE);
    for v in y.ticks() {
        let py = y.to_px(v, BOTTOM, TOP);
        c.fill_rect(LEFT, py, RIGHT + 1, py + 1, GRID);
        c.fill_rect(LEFT - 6, py, LEFT, py + 1, BLACK);
    }
    if let Some(x) = x {
        for v in x.ticks() {
            let px = x.to_px(v, LEFT, RIGHT);
            c.fill_rect(px, TOP, px + 1, BOTTOM + 1, GRID);
            c.fill_rect(px, BOTTOM + 1, px + 1, BOTTOM + 7, BLACK);
        }
    }
    c.fill_rect(LEFT - 1, TOP, LEFT, BOTTOM + 1, BLACK);
    c.fill_rect(LEFT - 1, BOTTOM, RIGHT + 1, BOTTOM + 1, BLACK);
    c
}

/// Bars left to right in [`colour`] order; the y axis includes 0, missing values show as a grey
/// dash on the baseline, bars above a fixed `y_max` are cut at the top.
pub(crate) fn render_bars(chart: &BarChart) -> Rendered {
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
    let mut c = frame(None, y);
    let n = chart.bars.len().max(1) as i64;
    let slot = (RIGHT - LEFT) as f64 / n as f64;
    let base = y.to_px(0.0, BOTTOM, TOP);
    for (i, (_, value)) in chart.bars.iter().enumerate() {
        let centre = LEFT as f64 + slot * (i as f64 + 0.5);
        let half = (slot * 0.35).max(0.5);
        let (x0, x1) = (
            (centre - half).round() as i64,
            (centre + half).round() as i64,
        );
        let x1 = x1.max(x0 + 1);
        match value.filter(|v| v.is_finite()) {
            Some(v) => {
                let top = y.to_px(v, BOTTOM, TOP);
                c.fill_rect(x0, top.min(base), x1, top.max(base) + 1, colour(i));
            }
            None => c.fill_rect(x0, base - 2, x1, base + 1, MISSING),
        }
    }
    Rendered {
        canvas: c,
        x: None,
        y,
    }
}

/// One line per series in [`colour`] order; non-finite points are skipped and break the line,
/// points get a small square marker when a series has few of them (so one point is visible).
pub(crate) fn render_curves(chart: &CurveChart) -> Rendered {
    let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
    let all = || {
        chart
            .series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(finite)
    };
    let range = |f: fn(&(f64, f64)) -> f64| {
        all()
            .map(f)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            })
    };
    let (x_lo, x_hi) = range(|p| p.0);
    let (y_lo, y_hi) = range(|p| p.1);
    let (x, y) = (Axis::fit(x_lo, x_hi), Axis::fit(y_lo, y_hi));
    let mut c = frame(Some(x), y);
    for (i, s) in chart.series.iter().enumerate() {
        let col = colour(i);
        let markers = s.points.len() <= 60;
        let mut prev: Option<(i64, i64)> = None;
        for p in &s.points {
            if !finite(&p) {
                prev = None;
                continue;
            }
            let q = (x.to_px(p.0, LEFT, RIGHT), y.to_px(p.1, BOTTOM, TOP));
            if let Some(from) = prev {
                c.line(from, q, col, 2);
            }
            if markers {
                c.fill_rect(q.0 - 2, q.1 - 2, q.0 + 3, q.1 + 3, col);
            }
            prev = Some(q);
        }
    }
    Rendered {
        canvas: c,
        x: Some(x),
        y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Series;

    fn count(c: &Canvas, col: Rgb) -> usize {
        let mut n = 0;
        for y in 0..c.height as i64 {
            for x in 0..c.width as i64 {
                n += (c.get(x, y) == Some(col)) as usize;
            }
        }
        n
    }

    #[test]
    fn axis_steps_are_round_and_cover_the_data() {
        let a = Axis::fit(0.03, 0.91);
        assert_eq!((a.min, a.max, a.step), (0.0, 1.0, 0.2));
        assert_eq!(a.ticks().len(), 6);
        let a = Axis::fit(3.0, 3.0);
        assert!(a.min < 3.0 && a.max > 3.0, "{a:?}");
        let a = Axis::fit(f64::INFINITY, f64::NEG_INFINITY);
        assert_eq!((a.min, a.max), (0.0, 1.0));
        let a = Axis::fit(-1e308, 1e308);
        assert!(a.ticks().len() <= 51);
    }

    #[test]
    fn bars_use_their_colours_and_a_fixed_top() {
        let chart = BarChart {
            bars: vec![
                ("r0".into(), Some(0.5)),
                ("r1".into(), None),
                ("r2".into(), Some(0.25)),
            ],
            y_max: Some(1.0),
            ..Default::default()
        };
        let r = render_bars(&chart);
        assert_eq!((r.canvas.width, r.canvas.height), (CHART_W, CHART_H));
        assert_eq!(
            r.y,
            Axis {
                min: 0.0,
                max: 1.0,
                step: 0.2
            }
        );
        let (a, c) = (count(&r.canvas, colour(0)), count(&r.canvas, colour(2)));
        assert!(
            a > 0 && c > 0 && a > c,
            "half-height bar is taller: {a} vs {c}"
        );
        assert_eq!(
            count(&r.canvas, colour(1)),
            0,
            "missing bar is not drawn in colour"
        );
        assert!(count(&r.canvas, MISSING) > 0);
    }

    #[test]
    fn curves_skip_nan_and_survive_empty_series() {
        let chart = CurveChart {
            series: vec![
                Series {
                    name: "train".into(),
                    points: vec![(0.0, 1.0), (f64::NAN, 2.0), (2.0, 0.5)],
                },
                Series {
                    name: "empty".into(),
                    points: vec![],
                },
                Series {
                    name: "one".into(),
                    points: vec![(1.0, 0.75)],
                },
            ],
            ..Default::default()
        };
        let r = render_curves(&chart);
        assert_eq!(r.x.unwrap().ticks().first(), Some(&0.0));
        assert!(count(&r.canvas, colour(0)) > 0);
        assert!(
            count(&r.canvas, colour(2)) >= 25,
            "a single point gets a marker"
        );
        let empty = render_curves(&CurveChart::default());
        assert_eq!(
            empty.y,
            Axis {
                min: 0.0,
                max: 1.0,
                step: 0.2
            }
        );
    }
}
