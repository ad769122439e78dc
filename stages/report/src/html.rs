//! The self-contained `report.html`: inline CSS, no script, no external URL; figures linked
//! relatively (`figures/...svg` charts, `figures/...png` slices) so the report directory can be
//! copied or zipped as a whole.
//!
//! The SVG charts carry their own axes, tick values and legends; the page adds captions, the
//! bar values and the reliability bins as tables (with swatches in the charts' colours), and
//! the slices' colour legend (the slice PNGs carry no text).

use std::fmt::Write;

use crate::axis::{fmt_number, fmt_short};
use crate::input::{BarChart, Cell, ReliabilityChart, ReportInput, SliceFigure, Table};
use crate::raster::{hex, Rgb};
use crate::slices::{FRACTURE, TRUTH, VERTEBRA_COLOURS};
use crate::svg_chart::colour;

/// A written chart: its relative path and size in CSS pixels.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChartFile {
    pub rel: String,
    pub width: u32,
    pub height: u32,
}

/// The written figures, in the order of the corresponding input lists.
#[derive(Debug, Default)]
pub(crate) struct Figures {
    pub bars: Vec<ChartFile>,
    pub curves: Vec<ChartFile>,
    pub reliability: Vec<ChartFile>,
    pub slices: Vec<String>,
}

const CSS: &str = "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}\
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.2em .6em}\
td.num{text-align:right;font-variant-numeric:tabular-nums}caption{font-weight:bold;text-align:left}\
figure{margin:1.5em 0}figcaption{font-weight:bold}p.note{white-space:pre-wrap}\
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

fn swatch(c: Rgb) -> String {
    format!(r#"<span class="sw" style="background:{}"></span>"#, hex(c))
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

fn chart_img(out: &mut String, chart: &ChartFile, caption: &str) {
    let _ = write!(
        out,
        r#"<figure><img src="{}" width="{}" height="{}" alt="{}"><figcaption>{}</figcaption>"#,
        esc(&chart.rel),
        chart.width,
        chart.height,
        esc(caption),
        esc(caption)
    );
}

fn bar_chart(out: &mut String, chart: &BarChart, file: &ChartFile) {
    chart_img(out, file, &chart.caption);
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

/// The figure and a table of every bin: its range, then count, mean predicted probability and
/// observed frequency per series (rows follow the first series' bins).
fn reliability_chart(out: &mut String, chart: &ReliabilityChart, file: &ChartFile) {
    chart_img(out, file, &chart.caption);
    out.push_str("<table><thead><tr><th>bin</th>");
    for (i, s) in chart.series.iter().enumerate() {
        let _ = write!(
            out,
            r#"<th colspan="3">{}{}</th>"#,
            swatch(colour(i)),
            esc(&s.name)
        );
    }
    out.push_str("</tr><tr><th></th>");
    for _ in &chart.series {
        out.push_str("<th>n</th><th>mean predicted</th><th>observed</th>");
    }
    out.push_str("</tr></thead><tbody>\n");
    let rows = chart.series.iter().map(|s| s.bins.len()).max().unwrap_or(0);
    for r in 0..rows {
        let edges = chart
            .series
            .iter()
            .find_map(|s| s.bins.get(r))
            .map(|b| format!("{}–{}", fmt_short(b.lo), fmt_short(b.hi)))
            .unwrap_or_default();
        let _ = write!(out, "<tr><td>{edges}</td>");
        for s in &chart.series {
            match s.bins.get(r) {
                Some(b) => {
                    let _ = write!(
                        out,
                        r#"<td class="num">{}</td><td class="num">{}</td><td class="num">{}</td>"#,
                        b.count,
                        fmt_number(b.mean_predicted),
                        fmt_number(b.observed)
                    );
                }
                None => out.push_str("<td></td><td></td><td></td>"),
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table></figure>\n");
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
        out.push_str("<h2 id=\"tables\">Tables</h2>\n");
        input.tables.iter().for_each(|t| table(&mut out, t));
    }
    if !(input.bar_charts.is_empty() && input.curves.is_empty() && input.reliability.is_empty()) {
        out.push_str("<h2 id=\"charts\">Charts</h2>\n");
    }
    for (chart, file) in input.bar_charts.iter().zip(&figures.bars) {
        bar_chart(&mut out, chart, file);
    }
    for (chart, file) in input.curves.iter().zip(&figures.curves) {
        chart_img(&mut out, file, &chart.caption);
        out.push_str("</figure>\n");
    }
    for (chart, file) in input.reliability.iter().zip(&figures.reliability) {
        reliability_chart(&mut out, chart, file);
    }
    if !input.slices.is_empty() {
        out.push_str("<h2 id=\"slices\">CT slices</h2>\n");
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

    #[test]
    fn reliability_table_lists_every_bin_of_every_series() {
        use crate::input::{ReliabilityBin, ReliabilitySeries};
        let bin = |lo: f64, count| ReliabilityBin {
            lo,
            hi: lo + 0.5,
            count,
            mean_predicted: (count > 0).then_some(lo + 0.25),
            observed: (count > 0).then_some(0.5),
        };
        let input = ReportInput {
            reliability: vec![ReliabilityChart {
                caption: "Calibration <test>".into(),
                series: vec![
                    ReliabilitySeries {
                        name: "a&b".into(),
                        bins: vec![bin(0.0, 4), bin(0.5, 0)],
                    },
                    ReliabilitySeries {
                        name: "short".into(),
                        bins: vec![bin(0.0, 2)],
                    },
                ],
            }],
            ..Default::default()
        };
        let figures = Figures {
            reliability: vec![ChartFile {
                rel: "figures/01-calibration-test.svg".into(),
                width: 560,
                height: 500,
            }],
            ..Default::default()
        };
        let html = page(&input, &figures);
        assert!(html.contains(r#"<img src="figures/01-calibration-test.svg" width="560" height="500" alt="Calibration &lt;test&gt;">"#));
        assert!(html.contains("a&amp;b</th>") && html.contains("short</th>"));
        assert!(html.contains(
            r#"<tr><td>0–0.5</td><td class="num">4</td><td class="num">0.2500</td><td class="num">0.5000</td><td class="num">2</td>"#
        ), "{html}");
        assert!(html.contains(
            r#"<tr><td>0.5–1</td><td class="num">0</td><td class="num">–</td><td class="num">–</td><td></td><td></td><td></td></tr>"#
        ), "{html}");
    }
}
