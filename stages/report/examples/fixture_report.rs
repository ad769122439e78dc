//! Writes the fixture report (every kind of figure, see `tests/fixture/mod.rs`) into the
//! directory given as the first argument, e.g. to look at the charts or to screenshot the
//! page for the README:
//! `cargo run -p flow-report --example fixture_report -- /tmp/fixture-report`.

#[path = "../tests/fixture/mod.rs"]
mod fixture;

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: fixture_report <output directory>");
        std::process::exit(2);
    };
    match flow_report::write_report(&fixture::full_input(), dir.as_ref()) {
        Ok(files) => println!("{}", files.html.display()),
        Err(e) => {
            eprintln!("fixture_report: {e}");
            std::process::exit(1);
        }
    }
}
