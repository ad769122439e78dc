//! Headless Chromium as a test oracle, shared by the report crate's test and the run-report
//! test of the `flow` binary (`#[path]`-included there): it loads a page with a small script
//! in `<head>` that records error events (failed images, uncaught exceptions) and
//! `console.error` calls and, on `load`, writes every image's source and decoded size into a
//! `<pre id="flow-browser-check">`; Chromium's `--dump-dom` returns that DOM, and its stderr
//! (`--enable-logging=stderr`) carries the console lines.
//!
//! Without a `chromium` (or `chromium-browser`, `google-chrome`) on PATH a test prints
//! "skipped: no chromium" and passes, unless `FLOW_REQUIRE_BROWSER=1` (set by `.ci/run`, which
//! installs Debian's `chromium`): then it fails.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use std::{env, fs, thread};

const MARKER: &str = r#"<pre id="flow-browser-check">"#;

/// Injected first in `<head>`, so it sees every error event of the page.
const CHECK_SCRIPT: &str = r#"<script>
window.__flowErrors = [];
window.addEventListener('error', function (e) {
  var what = e.message || (e.target && (e.target.src || e.target.href)) || 'unknown';
  window.__flowErrors.push('ERROR ' + what);
}, true);
var __flowConsoleError = console.error;
console.error = function () {
  window.__flowErrors.push('CONSOLE ' + Array.prototype.join.call(arguments, ' '));
  __flowConsoleError.apply(console, arguments);
};
window.addEventListener('load', function () {
  var lines = [];
  for (var i = 0; i < document.images.length; i++) {
    var img = document.images[i];
    var ok = img.complete && img.naturalWidth > 0 && img.naturalHeight > 0;
    lines.push((ok ? 'IMAGE ' : 'BROKEN ') + img.getAttribute('src') + ' ' +
               img.naturalWidth + 'x' + img.naturalHeight);
  }
  var pre = document.createElement('pre');
  pre.id = 'flow-browser-check';
  pre.textContent = lines.concat(window.__flowErrors).join('\n');
  document.body.appendChild(pre);
});
</script>"#;

/// The first Chromium on PATH.
pub fn chromium() -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

/// Chromium, or `None` after printing why the test is skipped; panics when a browser is
/// required (`FLOW_REQUIRE_BROWSER=1`) and none is installed.
pub fn browser_or_skip() -> Option<PathBuf> {
    let found = chromium();
    if found.is_none() {
        if env::var("FLOW_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!("FLOW_REQUIRE_BROWSER=1 but no chromium on PATH (apt-get install chromium)");
        }
        println!("skipped: no chromium");
    }
    found
}

/// What the browser saw: the images (source, decoded or not) and every problem found.
#[derive(Debug, Default)]
pub struct Seen {
    pub images: Vec<String>,
    pub problems: Vec<String>,
}

/// The figure links of `html` (`src="..."`), in page order.
pub fn sources(html: &str) -> Vec<String> {
    html.split(" src=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next().map(str::to_string))
        .collect()
}

/// Checks the page `html_path`: every linked file exists, then Chromium loads a copy of the
/// page with [`CHECK_SCRIPT`] and reports broken images and errors.
pub fn check_page(browser: &Path, html_path: &Path) -> Seen {
    let dir = html_path.parent().expect("the page is in a folder");
    let html = fs::read_to_string(html_path).expect("the page");
    let mut seen = Seen::default();
    for src in sources(&html) {
        if !dir.join(&src).is_file() {
            seen.problems.push(format!("MISSING FILE {src}"));
        }
    }
    let page = dir.join("flow-browser-check.html");
    let checked = html.replacen("<head>", &format!("<head>{CHECK_SCRIPT}"), 1);
    assert_ne!(checked, html, "the page has a <head>");
    fs::write(&page, checked).unwrap();
    let profile = tempfile::tempdir().unwrap();
    let (dom, stderr) = run_browser(browser, &page, profile.path());
    for line in stderr.lines().filter(|l| l.contains(":CONSOLE")) {
        seen.problems.push(format!("CONSOLE LOG {line}"));
    }
    let Some(start) = dom.find(MARKER) else {
        seen.problems.push(format!(
            "no check marker in the DOM (page did not load?): {stderr}"
        ));
        return seen;
    };
    let body = &dom[start + MARKER.len()..];
    let body = &body[..body.find("</pre>").unwrap_or(body.len())];
    for line in body.lines().map(|l| l.replace("&amp;", "&")) {
        if line.starts_with("IMAGE ") {
            seen.images.push(line);
        } else if !line.trim().is_empty() {
            seen.problems.push(line);
        }
    }
    seen
}

/// Runs headless Chromium on `page` with `--dump-dom`: (stdout, stderr). Killed after 60 s.
pub fn run_browser(browser: &Path, page: &Path, profile: &Path) -> (String, String) {
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let out_dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (out_dir.path().join("dom"), out_dir.path().join("err"));
    let mut child = Command::new(browser)
        .args([
            "--headless=new",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 60 s on {url}");
        }
        thread::sleep(Duration::from_millis(100));
    };
    let stderr = fs::read_to_string(&err_path).unwrap_or_default();
    assert!(status.success(), "chromium failed ({status}): {stderr}");
    (fs::read_to_string(&out_path).unwrap(), stderr)
}
