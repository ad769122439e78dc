//! Axis ranges at round steps and the number formats used on axes, in figures and in tables.
//!
//! Figures show at most 3 significant digits ("0.2", "0.875", "1.5e-5"), tables 4; no
//! 17-digit floats anywhere.

/// One axis: its range and the gridline step (tick values are `min + k * step`).
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
    pub fn fixed_top(lo: f64, top: f64) -> Axis {
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

/// `v` with `digits` significant digits, scientific outside 1e-3..1e6; NaN and infinities by
/// name.
fn fmt_sig(v: f64, digits: i32) -> String {
    let a = v.abs();
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        (if v > 0.0 { "∞" } else { "−∞" }).into()
    } else if a == 0.0 {
        "0".into()
    } else if (1e-3..1e6).contains(&a) {
        let decimals = (digits - 1 - a.log10().floor() as i32).max(0) as usize;
        format!("{v:.decimals$}")
    } else {
        let decimals = (digits - 1).max(0) as usize;
        format!("{v:.decimals$e}")
    }
}

/// A table number: 4 significant digits, scientific outside 1e-3..1e6, "–" when missing.
pub(crate) fn fmt_number(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| fmt_sig(v, 4))
}

/// A number in a figure (tick value, bar value): 3 significant digits without trailing zeros
/// ("0.2", not "0.200"); values within 1e-12 of 0 (rounding residue of tick steps) are "0".
pub(crate) fn fmt_short(v: f64) -> String {
    let s = fmt_sig(if v.abs() < 1e-12 { 0.0 } else { v }, 3);
    match s.split_once('e') {
        Some((m, e)) if m.contains('.') => {
            format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.'))
        }
        None if s.contains('.') => s.trim_end_matches('0').trim_end_matches('.').to_string(),
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn tables_show_four_and_figures_three_significant_digits() {
        let f = |v| fmt_number(Some(v));
        assert_eq!(f(0.812345), "0.8123");
        assert_eq!(f(12.3456), "12.35");
        assert_eq!(f(1234.56), "1235");
        assert_eq!(f(0.0123456), "0.01235");
        assert_eq!(f(1.5e-5), "1.500e-5");
        assert_eq!(f(0.0), "0");
        assert_eq!(f(f64::NAN), "NaN");
        assert_eq!(fmt_number(None), "–");
        assert_eq!(fmt_short(0.6000000000000001), "0.6");
        assert_eq!(fmt_short(0.30000000000000004), "0.3");
        assert_eq!(fmt_short(20.0), "20");
        assert_eq!(fmt_short(0.87456), "0.875");
        assert_eq!(fmt_short(-1.23456), "-1.23");
        assert_eq!(fmt_short(1.5e-5), "1.5e-5");
        assert_eq!(fmt_short(2.0e7), "2e7");
        assert_eq!(fmt_short(5.551115123125783e-17), "0");
        assert_eq!(fmt_short(f64::INFINITY), "∞");
    }
}
