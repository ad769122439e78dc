//! The self-contained `report.html`: inline CSS, no script, no external URL; figures linked
//! relatively (`figures/...png`) so the report directory can be copied or zipped as a whole.
//!
//! The PNGs carry no text, so this page holds every title, axis label, axis range, gridline step
//! and legend, with colour swatches taken from the same constants the PNGs were drawn with.

use std::fmt::Write;

use crate::input::{BarChart, Cell, CurveChart, ReportInput, SliceFigure, Table};
use crate::plot::{colour, Axis, CHART_H, CHART_W};
use crate::raster::{hex, Rgb};
use crate::slices::{FRACTURE, TRUTH, VERTEBRA_COLOURS};

/// Relative paths of the written figures (and the axes the charts were drawn with), in the
/// order of the corresponding input lists.
#[derive(Debug, Default)]
pub(crate) struct Figures {
    pub bars: Vec<(String, Axis)>,
    pub curves: Vec<(String, Axis, Axis)>,
    pub slices: Vec<String>,
}

const CSS: &str = "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}\
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.2em .6em}\
td.num{text-align:right;font-variant-numeric:tabular-nums}caption{font-weight:bold;text-align:left}\
figure{margin:1.5em 0}figcaption{font-weight:bold}p.note{white-space:pre-wrap}p.axes{color:#555;margin:.2em 0}\
.sw{display:inline-block;width:1em;height:1em;vertical-align:middle;margin-right:.3em;border:1px solid #888}\
ul.legend{list-style:none;padding:0}ul.legend li{display:inline-block;margin-right:1.2em}\
img.slice{image-rendering:pixelated}";

/// Escapes text for element content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A table number: 4 significant digits, scientific outside 1e-3..1e6, "–" when missing.
pub(crate) fn fmt_number(v: Option<f64>) -> String {
    let Some(v) = v else { return "–".into() };
    let a = v.abs();
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        (if v > 0.0 { "∞" } else { "−∞" }).into()
    } else if a == 0.0 {
        "0".into()
    } else if (1e-3..1e6).contains(&a) {
        let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
        format!("{v:.decimals$}")
    } else {
        format!("{v:.3e}")
    }
}

/// An axis value: like [`fmt_number`] without trailing zeros ("0.2", not "0.2000").
fn fmt_axis(v: f64) -> String {
    let s = fmt_number(Some(if v.abs() < 1e-12 { 0.0 } else { v }));
    if s.contains('.') && !s.contains('e') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn swatch(c: Rgb) -> String {
    format!(r#"<span class="sw" style="background:{}"></span>"#, hex(c))
}

fn axis_line(name: &str, label: &str, a: &Axis) -> String {
    let label = if label.is_empty() {
        String::new()
    } else {
        format!("{} ", esc(label))
    };
    format!(
        "{name}: {label}from {} to {}, gridlines every {}",
        fmt_axis(a.min),
        fmt_axis(a.max),
        fmt_axis(a.step)
    )
}

fn table(out: &mut String, t: &Table) {
    out.push_str("<table>");
    if !t.caption.is_empty() {
        let _ = write!(out, "<caption>{}</caption>", esc(&t.caption));
    }
    if !t.header.is_empty() {
        out.push_str("<thead><tr>");
        for h in &t.header {
            let _ = write!(out, "<th>{}</th>", esc(h));
        }
        out.push_str("</tr></thead>");
    }
    out.push_str("<tbody>\n");
    for row in &t.rows {
        out.push_str("<tr>");
        for cell in row {
            match cell {
                Cell::Text(s) => _ = write!(out, "<td>{}</td>", esc(s)),
                Cell::Number(v) => _ = write!(out, r#"<td class="num">{}</td>"#, fmt_number(*v)),
            }
        }
        for _ in row.len()..t.header.len() {
            out.push_str("<td></td>");
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
}

fn chart_img(out: &mut String, rel: &str, caption: &str) {
    let _ = write!(
        out,
        r#"<figure><img src="{}" width="{CHART_W}" height="{CHART_H}" alt="{}"><figcaption>{}</figcaption>"#,
        esc(rel),
        esc(caption),
        esc(caption)
    );
}

fn bar_chart(out: &mut String, chart: &BarChart, rel: &str, y: &Axis) {
    chart_img(out, rel, &chart.caption);
    let _ = write!(
        out,
        r#"<p class="axes">{}; bars left to right:</p>"#,
        axis_line("y", &chart.y_label, y)
    );
    out.push_str("<table><tbody>");
    for (i, (label, value)) in chart.bars.iter().enumerate() {
        let _ = write!(
            out,
            r#"<tr><td>{}{}</td><td class="num">{}</td></tr>"#,
            swatch(colour(i)),
            esc(label),
            fmt_number(*value)
        );
    }
    out.push_str("</tbody></table></figure>\n");
}

fn curve_chart(out: &mut String, chart: &CurveChart, rel: &str, x: &Axis, y: &Axis) {
    chart_img(out, rel, &chart.caption);
    let _ = write!(
        out,
        r#"<p class="axes">{}</p><p class="axes">{}</p><ul class="legend">"#,
        axis_line("x", &chart.x_label, x),
        axis_line("y", &chart.y_label, y)
    );
    for (i, s) in chart.series.iter().enumerate() {
        let n = s
            .points
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .count();
        let skipped = s.points.len() - n;
        let note = if skipped > 0 {
            format!(", {skipped} non-finite skipped")
        } else {
            String::new()
        };
        let _ = write!(
            out,
            "<li>{}{} ({n} points{note})</li>",
            swatch(colour(i)),
            esc(&s.name)
        );
    }
    out.push_str("</ul></figure>\n");
}

fn slice_legend(out: &mut String) {
    out.push_str(r#"<ul class="legend">"#);
    for (name, c) in VERTEBRA_COLOURS {
        let _ = write!(out, "<li>{}{name}</li>", swatch(c));
    }
    let _ = writeln!(
        out,
        "<li>{}predicted fracture (tint + contour)</li><li>{}true fracture (contour)</li></ul>",
        swatch(FRACTURE),
        swatch(TRUTH)
    );
}

fn slice(out: &mut String, fig: &SliceFigure, rel: &str) {
    let _ = write!(
        out,
        r#"<figure><img class="slice" src="{}" width="{}" height="{}" alt="{}"><figcaption>{}</figcaption></figure>"#,
        esc(rel),
        fig.width * fig.scale,
        fig.height * fig.scale,
        esc(&fig.caption),
        esc(&fig.caption)
    );
    out.push('\n');
}

/// The whole page. `figures` must hold one entry per chart and slice of `input`.
pub(crate) fn page(input: &ReportInput, figures: &Figures) -> String {
    let title = if input.title.is_empty() {
        "Run report"
    } else {
        &input.title
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>{CSS}</style></head><body>\n<h1>{t}</h1>\n",
        t = esc(title)
    );
    if !input.summary.is_empty() {
        out.push_str("<table class=\"summary\"><tbody>\n");
        for (k, v) in &input.summary {
            let _ = writeln!(out, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
        }
        out.push_str("</tbody></table>\n");
    }
    for note in &input.notes {
        let _ = writeln!(out, r#"<p class="note">{}</p>"#, esc(note));
    }
    if !input.tables.is_empty() {
        out.push_str("<h2>Tables</h2>\n");
        input.tables.iter().for_each(|t| table(&mut out, t));
    }
    if !(input.bar_charts.is_empty() && input.curves.is_empty()) {
        out.push_str("<h2>Charts</h2>\n");
    }
    for (chart, (rel, y)) in input.bar_charts.iter().zip(&figures.bars) {
        bar_chart(&mut out, chart, rel, y);
    }
    for (chart, (rel, x, y)) in input.curves.iter().zip(&figures.curves) {
        curve_chart(&mut out, chart, rel, x, y);
    }
    if !input.slices.is_empty() {
        out.push_str("<h2>CT slices</h2>\n");
        slice_legend(&mut out);
    }
    for (fig, rel) in input.slices.iter().zip(&figures.slices) {
        slice(&mut out, fig, rel);
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_have_four_significant_digits() {
        let f = |v| fmt_number(Some(v));
        assert_eq!(f(0.812345), "0.8123");
        assert_eq!(f(12.3456), "12.35");
        assert_eq!(f(1234.56), "1235");
        assert_eq!(f(0.0123456), "0.01235");
        assert_eq!(f(1.5e-5), "1.500e-5");
        assert_eq!(f(0.0), "0");
        assert_eq!(f(f64::NAN), "NaN");
        assert_eq!(fmt_number(None), "–");
        assert_eq!(fmt_axis(0.6000000000000001), "0.6");
        assert_eq!(fmt_axis(20.0), "20");
    }

    #[test]
    fn text_is_escaped_and_tables_padded() {
        let input = ReportInput {
            title: "a<b & c".into(),
            summary: vec![("k\"".into(), "<v>".into())],
            notes: vec!["x < y && <script>".into()],
            tables: vec![Table {
                caption: "Dice <per> vertebra".into(),
                header: vec!["label".into(), "dice".into(), "n".into()],
                rows: vec![vec![Cell::Text("C1".into()), Cell::Number(Some(0.9))]],
            }],
            ..Default::default()
        };
        let html = page(&input, &Figures::default());
        assert!(html.contains("<h1>a&lt;b &amp; c</h1>"));
        assert!(html.contains("x &lt; y &amp;&amp; &lt;script&gt;"));
        assert!(html.contains("Dice &lt;per&gt; vertebra"));
        assert!(html.contains("<th>k&quot;</th><td>&lt;v&gt;</td>"));
        assert!(!html.contains("<script") && !html.contains("http"));
        assert!(html.contains(r#"<td class="num">0.9000</td><td></td></tr>"#));
    }
}
