//! Opens a written report in headless Chromium and fails on a missing or broken figure, a
//! script error or any console message: the check a reader's browser would do, run in CI
//! (see `browser_check`).

mod browser_check;
mod fixture;

use std::fs;

use browser_check::{browser_or_skip, check_page};

#[test]
fn report_opens_in_chromium_with_every_figure_decoded_and_no_console_error() {
    let Some(browser) = browser_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let files = flow_report::write_report(&fixture::full_input(), dir.path()).unwrap();
    let seen = check_page(&browser, &dir.path().join("report.html"));
    assert!(seen.problems.is_empty(), "{:#?}", seen.problems);
    assert_eq!(
        seen.images.len(),
        files.figures.len(),
        "one decoded image per figure: {:#?}",
        seen.images
    );
    for line in &seen.images {
        assert!(!line.ends_with(" 0x0"), "{line}");
    }
    assert!(
        seen.images.iter().any(|l| l.contains(".svg 640x400")),
        "{:#?}",
        seen.images
    );
}

/// The check itself catches what it is for: a deleted figure, a truncated SVG and a script
/// error each show up as a problem.
#[test]
fn the_check_reports_missing_and_broken_figures_and_script_errors() {
    let Some(browser) = browser_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let files = flow_report::write_report(&fixture::full_input(), dir.path()).unwrap();
    let name = |i: usize| {
        files.figures[i]
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string()
    };
    fs::remove_file(&files.figures[0]).unwrap();
    let svg = fs::read_to_string(&files.figures[1]).unwrap();
    fs::write(&files.figures[1], &svg[..svg.len() / 2]).unwrap();
    let html = fs::read_to_string(&files.html).unwrap();
    let html = html.replace("</body>", "<script>notDefined();</script></body>");
    fs::write(&files.html, html).unwrap();
    let problems = check_page(&browser, &dir.path().join("report.html"))
        .problems
        .join("\n");
    assert!(
        problems.contains(&format!("MISSING FILE figures/{}", name(0))),
        "{problems}"
    );
    assert!(
        problems.contains(&format!("BROKEN figures/{}", name(1))),
        "{problems}"
    );
    assert!(
        problems.contains("Uncaught ReferenceError: notDefined"),
        "{problems}"
    );
}
