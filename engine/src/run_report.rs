//! The engine's run report (`flow run --html-report FILE`, `flow report [RUN_ID]`): one
//! self-contained HTML page per run, read back from the run's event journal, with a timeline
//! of the nodes (queue wait and run time apart), what each used (CPU time, %CPU, peak memory,
//! bytes read and written, and peak GPU memory when a node held GPUs), totals and the critical
//! path. Nextflow's trace and timeline are the model.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use crate::error::EngineError;
use crate::usage::NodeUsage;

/// One node of a run, as its journal tells it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeTrace {
    pub id: String,
    /// ran, cached, failed, blocked or pending (never finished: the run was stopped).
    pub state: String,
    /// Milliseconds from the run's start.
    pub queued_ms: Option<u64>,
    pub started_ms: Option<u64>,
    pub ended_ms: Option<u64>,
    pub attempts: u32,
    pub usage: Option<NodeUsage>,
    pub error: Option<String>,
    pub deps: Vec<String>,
}

impl NodeTrace {
    /// Seconds between ready and started.
    pub fn wait_seconds(&self) -> Option<f64> {
        Some(self.started_ms?.saturating_sub(self.queued_ms?) as f64 / 1000.0)
    }
    /// Seconds between started and finished (all attempts).
    pub fn run_seconds(&self) -> Option<f64> {
        Some(self.ended_ms?.saturating_sub(self.started_ms?) as f64 / 1000.0)
    }
    /// CPU time over run time, in percent (200 % = two cores busy).
    pub fn cpu_percent(&self) -> Option<f64> {
        let run = self.run_seconds()?;
        let cpu = self.usage?.cpu_seconds;
        (run > 0.0).then(|| 100.0 * cpu / run)
    }
}

/// A whole run, from its journal.
#[derive(Debug, Clone, Default)]
pub struct RunTrace {
    pub run_id: String,
    pub pipeline: String,
    pub started_unix_ms: u64,
    pub seconds: Option<f64>,
    pub ok: Option<bool>,
    /// In the order of their first event (queued, started or found cached).
    pub nodes: Vec<NodeTrace>,
}

impl RunTrace {
    /// Reads `<run dir>/events.jsonl`. A torn last line (a killed run) is ignored.
    pub fn read(journal: &Path) -> Result<RunTrace, EngineError> {
        let text = std::fs::read_to_string(journal).map_err(|e| EngineError::Io {
            what: format!("read {}", journal.display()),
            cause: e,
        })?;
        let mut t = RunTrace::default();
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let ts = v["ts_ms"].as_u64().unwrap_or(0);
            let event = v["event"].as_str().unwrap_or_default();
            if event == "run_started" {
                t.run_id = v["run_id"].as_str().unwrap_or_default().to_string();
                t.pipeline = v["pipeline"].as_str().unwrap_or_default().to_string();
                t.started_unix_ms = ts;
                for (id, deps) in v["deps"].as_object().into_iter().flatten() {
                    let n = node(&mut t.nodes, &mut index, id);
                    n.deps = deps
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|d| d.as_str().map(str::to_string))
                        .collect();
                }
                continue;
            }
            if event == "run_finished" {
                t.seconds = v["seconds"].as_f64();
                t.ok = v["ok"].as_bool();
                continue;
            }
            let Some(id) = v["node"].as_str() else {
                continue;
            };
            let at = ts.saturating_sub(t.started_unix_ms);
            let n = node(&mut t.nodes, &mut index, id);
            match event {
                "node_queued" => n.queued_ms = Some(at),
                "node_started" => {
                    n.started_ms.get_or_insert(at);
                    n.attempts = v["attempt"].as_u64().unwrap_or(1) as u32;
                    n.state = "running".into();
                }
                "node_cached" => {
                    n.state = "cached".into();
                    n.ended_ms = Some(at);
                }
                "node_finished" => {
                    n.state = "ran".into();
                    n.ended_ms = Some(at);
                    n.usage = serde_json::from_value(v["usage"].clone()).ok();
                }
                "node_failed" => {
                    n.state = "failed".into();
                    n.ended_ms = Some(at);
                    n.error = v["error"].as_str().map(str::to_string);
                }
                "node_blocked" => {
                    n.state = "blocked".into();
                    n.error = v["by"].as_str().map(|b| format!("blocked by {b}"));
                }
                _ => {}
            }
        }
        for n in &mut t.nodes {
            if n.state.is_empty() || n.state == "running" {
                n.state = "pending".into();
            }
        }
        // In the order things happened to them (never-reached nodes last).
        t.nodes.sort_by_key(|n| {
            let first = [n.queued_ms, n.started_ms, n.ended_ms]
                .into_iter()
                .flatten()
                .min();
            (first.is_none(), first)
        });
        Ok(t)
    }

    /// The chain of dependent nodes with the longest total run time, first to last.
    pub fn critical_path(&self) -> Vec<String> {
        let by_id: BTreeMap<&str, &NodeTrace> =
            self.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
        let mut best: BTreeMap<&str, (f64, Option<&str>)> = BTreeMap::new();
        fn walk<'a>(
            id: &'a str,
            by_id: &BTreeMap<&'a str, &'a NodeTrace>,
            best: &mut BTreeMap<&'a str, (f64, Option<&'a str>)>,
        ) -> f64 {
            if let Some((d, _)) = best.get(id) {
                return *d;
            }
            let Some(n) = by_id.get(id) else {
                return 0.0;
            };
            let own = n.run_seconds().unwrap_or(0.0);
            let mut top = (0.0, None);
            for d in &n.deps {
                let v = walk(d, by_id, best);
                if v > top.0 || top.1.is_none() {
                    top = (v, Some(d.as_str()));
                }
            }
            best.insert(id, (own + top.0, top.1));
            own + top.0
        }
        let mut end: Option<(&str, f64)> = None;
        for n in &self.nodes {
            let v = walk(&n.id, &by_id, &mut best);
            if end.is_none_or(|(_, e)| v > e) {
                end = Some((&n.id, v));
            }
        }
        let mut path = Vec::new();
        let mut cur = end.filter(|(_, v)| *v > 0.0).map(|(id, _)| id);
        while let Some(id) = cur {
            path.push(id.to_string());
            cur = best.get(id).and_then(|(_, prev)| *prev);
        }
        path.reverse();
        path
    }

    /// The report page.
    pub fn to_html(&self) -> String {
        let critical = self.critical_path();
        let on_path = |id: &str| critical.iter().any(|c| c == id);
        let total_ms = self
            .seconds
            .map(|s| (s * 1000.0) as u64)
            .into_iter()
            .chain(self.nodes.iter().filter_map(|n| n.ended_ms))
            .max()
            .unwrap_or(0)
            .max(1);
        let count = |s: &str| self.nodes.iter().filter(|n| n.state == s).count();
        let cpu: f64 = self
            .nodes
            .iter()
            .filter_map(|n| n.usage.map(|u| u.cpu_seconds))
            .sum();
        let peak = self
            .nodes
            .iter()
            .filter_map(|n| n.usage.map(|u| u.peak_rss_kb))
            .max()
            .unwrap_or(0);
        // The GPU column only when some node has a GPU measurement (most runs have none).
        let gpu_peak = self
            .nodes
            .iter()
            .filter_map(|n| n.usage.and_then(|u| u.gpu_peak_mb))
            .max();
        let mut h = String::new();
        let title = format!("flow run {} — {}", esc(&self.run_id), esc(&self.pipeline));
        let _ = writeln!(
            h,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title><style>{CSS}</style></head><body>\n<h1>{title}</h1>"
        );
        let outcome = match self.ok {
            Some(true) => "finished",
            Some(false) => "failed",
            None => "did not finish (stopped)",
        };
        let _ = writeln!(
            h,
            "<table class=\"summary\"><tr><th>outcome</th><td>{outcome}</td></tr><tr><th>wall time</th><td>{}</td></tr><tr><th>nodes</th><td>{} ran, {} cached, {} failed, {} blocked, {} not finished</td></tr><tr><th>CPU time</th><td>{}</td></tr><tr><th>largest peak memory</th><td>{}</td></tr>{}<tr><th>critical path</th><td>{}</td></tr></table>",
            secs(total_ms as f64 / 1000.0),
            count("ran"),
            count("cached"),
            count("failed"),
            count("blocked"),
            count("pending"),
            secs(cpu),
            mib(peak),
            gpu_peak
                .map(|g| format!(
                "<tr><th>largest peak GPU memory</th><td>{}</td></tr>",
                    gpu_mib(g)
                ))
                .unwrap_or_default(),
            if critical.is_empty() {
                "–".to_string()
            } else {
                critical.iter().map(|c| esc(c)).collect::<Vec<_>>().join(" → ")
            }
        );
        h.push_str(&self.timeline_svg(total_ms, &on_path));
        h.push_str("<table class=\"nodes\"><thead><tr><th>node</th><th>state</th><th>ready at</th><th>queue wait</th><th>run time</th><th>attempts</th><th>CPU time</th><th>%CPU</th><th>peak memory</th><th>read</th><th>written</th>");
        if gpu_peak.is_some() {
            h.push_str("<th>peak GPU memory</th>");
        }
        h.push_str("</tr></thead><tbody>\n");
        for n in &self.nodes {
            let u = n.usage;
            let _ = write!(
                h,
                "<tr class=\"{}{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
                esc(&n.state),
                if on_path(&n.id) { " critical" } else { "" },
                esc(&n.id),
                esc(&n.state),
                opt(n.queued_ms.map(|m| m as f64 / 1000.0), secs),
                opt(n.wait_seconds(), secs),
                opt(n.run_seconds(), secs),
                if n.attempts > 0 { n.attempts.to_string() } else { "–".into() },
                opt(u.map(|u| u.cpu_seconds), secs),
                opt(n.cpu_percent(), |p| format!("{p:.0} %")),
                opt(u.map(|u| u.peak_rss_kb), mib),
                opt(u.map(|u| u.read_bytes), bytes),
                opt(u.map(|u| u.written_bytes), bytes),
            );
            if gpu_peak.is_some() {
                let _ = write!(
                    h,
                    "<td>{}</td>",
                    opt(u.and_then(|u| u.gpu_peak_mb), gpu_mib)
                );
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</tbody></table>\n");
        let errors: Vec<&NodeTrace> = self.nodes.iter().filter(|n| n.error.is_some()).collect();
        if !errors.is_empty() {
            h.push_str("<h2>Errors</h2><dl>");
            for n in errors {
                let _ = write!(
                    h,
                    "<dt>{}</dt><dd>{}</dd>",
                    esc(&n.id),
                    esc(n.error.as_deref().unwrap_or_default())
                );
            }
            h.push_str("</dl>\n");
        }
        h.push_str("<p class=\"note\">Queue wait: from the moment a node's inputs were ready to its start (cpu, gpu and memory slots). CPU time: user + system time of the threads that ran the node (its process, for a command node). Peak memory: a command's own; for a node run inside flow, flow's resident memory while it ran, which nodes running at the same time share. Read and written: bytes through read and write system calls, page cache included. The critical path is the chain of dependent nodes with the longest total run time.");
        if gpu_peak.is_some() {
            h.push_str(" Peak GPU memory: for a node that held GPUs, the largest GPU memory nvidia-smi showed for its processes, sampled about once a second (a command node's program and its descendants; for a node run inside flow, flow's own process, which GPU nodes running at the same time share); – where it could not be measured.");
        }
        h.push_str("</p>\n</body></html>\n");
        h
    }

    /// One row per node that started: a light bar for the queue wait, a solid bar for the
    /// run; cached nodes as a tick at the moment they were found.
    fn timeline_svg(&self, total_ms: u64, on_path: &dyn Fn(&str) -> bool) -> String {
        const LABEL: f64 = 220.0;
        const WIDTH: f64 = 960.0;
        const ROW: f64 = 18.0;
        let rows: Vec<&NodeTrace> = self
            .nodes
            .iter()
            .filter(|n| n.queued_ms.is_some() || n.ended_ms.is_some())
            .collect();
        let height = ROW * rows.len() as f64 + 30.0;
        let x = |ms: u64| LABEL + (WIDTH - LABEL - 10.0) * ms as f64 / total_ms as f64;
        let mut s = format!(
            "<svg class=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"timeline\">\n"
        );
        for k in 0..=4 {
            let ms = total_ms * k / 4;
            let _ = writeln!(
                s,
                "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"0\" y2=\"{1:.1}\" class=\"grid\"/><text x=\"{0:.1}\" y=\"{2:.1}\" class=\"tick\">{3}</text>",
                x(ms),
                height - 18.0,
                height - 4.0,
                secs(ms as f64 / 1000.0)
            );
        }
        for (r, n) in rows.iter().enumerate() {
            let y = r as f64 * ROW + 2.0;
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" class=\"label{}\">{}</text>",
                LABEL - 6.0,
                y + 12.0,
                if on_path(&n.id) { " critical" } else { "" },
                esc(&n.id)
            );
            if let (Some(q), Some(st)) = (n.queued_ms, n.started_ms) {
                let _ = write!(
                    s,
                    "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"12\" class=\"wait\"><title>{}: waited {}</title></rect>",
                    x(q),
                    y + 2.0,
                    (x(st) - x(q)).max(0.5),
                    esc(&n.id),
                    secs(st.saturating_sub(q) as f64 / 1000.0)
                );
            }
            match (n.started_ms, n.ended_ms) {
                (Some(st), end) => {
                    let end = end.unwrap_or(total_ms);
                    let _ = write!(
                        s,
                        "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"12\" class=\"{}\"><title>{}: {} {}</title></rect>",
                        x(st),
                        y + 2.0,
                        (x(end) - x(st)).max(1.0),
                        esc(&n.state),
                        esc(&n.id),
                        esc(&n.state),
                        secs(end.saturating_sub(st) as f64 / 1000.0)
                    );
                }
                (None, Some(at)) => {
                    let _ = write!(
                        s,
                        "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"2\" height=\"12\" class=\"cached\"><title>{}: cached</title></rect>",
                        x(at),
                        y + 2.0,
                        esc(&n.id)
                    );
                }
                _ => {}
            }
            s.push('\n');
        }
        s.push_str("</svg>\n");
        s
    }
}

fn node<'a>(
    nodes: &'a mut Vec<NodeTrace>,
    index: &mut BTreeMap<String, usize>,
    id: &str,
) -> &'a mut NodeTrace {
    let i = *index.entry(id.to_string()).or_insert_with(|| {
        nodes.push(NodeTrace {
            id: id.to_string(),
            ..Default::default()
        });
        nodes.len() - 1
    });
    &mut nodes[i]
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}h1{font-size:1.3em}\
table{border-collapse:collapse;margin:1em 0}td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left;white-space:nowrap}\
table.nodes td:nth-child(n+3){text-align:right;font-variant-numeric:tabular-nums}\
tr.critical td:first-child,text.critical{font-weight:bold}tr.failed td{color:#b00}\
svg.timeline{display:block;margin:1em 0}.grid{stroke:#eee}.tick{font-size:10px;fill:#666;text-anchor:middle}\
.label{font-size:11px;text-anchor:end}.wait{fill:#cfd8e3}.ran{fill:#3b78c2}.cached{fill:#9aa}\
.failed{fill:#c33}.blocked,.pending{fill:#e0a030}.note{color:#555;max-width:60em;font-size:.9em}";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "–".into())
}

/// Seconds at a readable precision (the terminal view's format).
fn secs(s: f64) -> String {
    crate::progress::seconds_text(s)
}

fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

/// GPU memory given in MiB (`nvidia-smi`'s unit).
fn gpu_mib(mb: u64) -> String {
    if mb < 1024 {
        format!("{mb} MiB")
    } else {
        format!("{:.1} GiB", mb as f64 / 1024.0)
    }
}

fn bytes(b: u64) -> String {
    match b {
        b if b < 1024 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        b if b < 1024 * 1024 * 1024 => format!("{:.1} MiB", b as f64 / 1048576.0),
        b => format!("{:.2} GiB", b as f64 / 1073741824.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(lines: &[&str]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), lines.join("\n")).unwrap();
        f
    }

    #[test]
    fn a_journal_becomes_node_timings_usage_and_a_critical_path() {
        let f = journal(&[
            r#"{"event":"run_started","run_id":"r1","pipeline":"p","nodes":4,"deps":{"a":[],"b":["a"],"c":["a"],"d":["b","c"]},"ts_ms":1000}"#,
            r#"{"event":"node_queued","node":"a","ts_ms":1000}"#,
            r#"{"event":"node_started","node":"a","key":"k","attempt":1,"ts_ms":1100}"#,
            r#"{"event":"node_finished","node":"a","key":"k","seconds":1.9,"usage":{"cpu_seconds":3.8,"peak_rss_kb":2048,"read_bytes":10,"written_bytes":20},"ts_ms":3100}"#,
            r#"{"event":"node_cached","node":"b","key":"k","ts_ms":3100}"#,
            r#"{"event":"node_queued","node":"c","ts_ms":3100}"#,
            r#"{"event":"node_started","node":"c","key":"k","attempt":1,"ts_ms":3600}"#,
            r#"{"event":"node_retry","node":"c","attempt":1,"error":"x","ts_ms":3700}"#,
            r#"{"event":"node_started","node":"c","key":"k","attempt":2,"ts_ms":3800}"#,
            r#"{"event":"node_failed","node":"c","key":"k","seconds":1.0,"error":"boom <b>","log_tail":[],"ts_ms":4600}"#,
            r#"{"event":"node_blocked","node":"d","by":"c","ts_ms":4600}"#,
            r#"{"event":"run_finished","ok":false,"seconds":3.7,"interrupted":false,"ts_ms":4700}"#,
            r#"{"event":"node_fin"#,
        ]);
        let t = RunTrace::read(f.path()).unwrap();
        assert_eq!((t.run_id.as_str(), t.ok), ("r1", Some(false)));
        let a = &t.nodes[0];
        assert_eq!(
            t.nodes.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c", "d"]
        );
        assert_eq!((a.id.as_str(), a.state.as_str()), ("a", "ran"));
        assert_eq!(a.wait_seconds(), Some(0.1));
        assert_eq!(a.run_seconds(), Some(2.0));
        assert!((a.cpu_percent().unwrap() - 190.0).abs() < 1e-9);
        let c = t.nodes.iter().find(|n| n.id == "c").unwrap();
        assert_eq!((c.state.as_str(), c.attempts), ("failed", 2));
        assert_eq!(
            c.run_seconds(),
            Some(1.0),
            "from the first start over all attempts"
        );
        assert_eq!(
            t.nodes.iter().find(|n| n.id == "b").unwrap().state,
            "cached"
        );
        assert_eq!(
            t.nodes.iter().find(|n| n.id == "d").unwrap().state,
            "blocked"
        );
        // a (2 s) then c (1 s) outweighs a then the cached b (0 s).
        assert_eq!(t.critical_path(), ["a", "c"]);
        let html = t.to_html();
        assert!(html.contains("boom &lt;b&gt;") && !html.contains("boom <b>"));
        assert!(html.contains("a → c"), "{html}");
        assert!(html.contains("190 %") && html.contains("2.0 MiB"));
        assert!(html.contains("<svg") && html.contains("class=\"wait\""));
    }

    #[test]
    fn the_gpu_column_appears_only_when_a_node_has_gpu_memory() {
        let lines = |gpu: &str| {
            vec![
                r#"{"event":"run_started","run_id":"r2","pipeline":"p","nodes":2,"deps":{"cpu":[],"gpu":[]},"ts_ms":0}"#.to_string(),
                r#"{"event":"node_started","node":"cpu","key":"k","attempt":1,"ts_ms":0}"#.to_string(),
                r#"{"event":"node_finished","node":"cpu","key":"k","seconds":1.0,"usage":{"cpu_seconds":1.0,"peak_rss_kb":1024,"read_bytes":0,"written_bytes":0},"ts_ms":1000}"#.to_string(),
                r#"{"event":"node_started","node":"gpu","key":"k","attempt":1,"ts_ms":0}"#.to_string(),
                format!(r#"{{"event":"node_finished","node":"gpu","key":"k","seconds":1.0,"usage":{{"cpu_seconds":1.0,"peak_rss_kb":1024,"read_bytes":0,"written_bytes":0{gpu}}},"ts_ms":1000}}"#),
                r#"{"event":"run_finished","ok":true,"seconds":1.0,"interrupted":false,"ts_ms":1000}"#.to_string(),
            ]
        };
        let html_of = |gpu: &str| {
            let l = lines(gpu);
            let f = journal(&l.iter().map(String::as_str).collect::<Vec<_>>());
            let t = RunTrace::read(f.path()).unwrap();
            (
                t.nodes
                    .iter()
                    .map(|n| n.usage.unwrap().gpu_peak_mb)
                    .collect::<Vec<_>>(),
                t.to_html(),
            )
        };
        let (gpu, html) = html_of(r#","gpu_peak_mb":20480"#);
        assert_eq!(gpu, [None, Some(20480)]);
        assert!(html.contains("<th>peak GPU memory</th>"), "{html}");
        assert!(html.contains("<td>20.0 GiB</td></tr>"), "{html}");
        assert!(html.contains("largest peak GPU memory</th><td>20.0 GiB"));
        assert!(html.contains("Peak GPU memory: "), "the note explains it");
        // Every row has the extra cell (the CPU node's is a dash).
        let cells = |row: &str| row.matches("<td>").count();
        let rows: Vec<&str> = html
            .lines()
            .filter(|l| l.starts_with("<tr class="))
            .collect();
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|r| cells(r) == 12), "{rows:?}");
        assert!(
            rows.iter().any(|r| r.ends_with("<td>–</td></tr>")),
            "{rows:?}"
        );
        assert_eq!(
            html_of(r#","gpu_peak_mb":300"#)
                .1
                .matches("<td>300 MiB</td>")
                .count(),
            2
        );
        for none in ["", r#","gpu_peak_mb":null"#] {
            let (gpu, html) = html_of(none);
            assert_eq!(gpu, [None, None]);
            assert!(!html.contains("GPU memory"), "{html}");
            let rows: Vec<&str> = html
                .lines()
                .filter(|l| l.starts_with("<tr class="))
                .collect();
            assert!(rows.iter().all(|r| cells(r) == 11), "{rows:?}");
        }
    }
}
