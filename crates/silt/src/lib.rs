//! # silt: the command line and the job runner
//!
//! `main` parses arguments and calls into this library; tests call the library directly.
//! The job runner ([`job::run`]) wires the crates together in the one direction data walks:
//! Source -> decode -> dedup -> transform -> lake writer -> commit.

pub mod cmd;
pub mod faults;
pub mod gen;
pub mod job;

/// An error and its causes on one line, each cause once: a cause whose text its error
/// already shows (as DataFusion's and many `thiserror` errors do) is not repeated.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    let mut above = String::new();
    for cause in e.chain() {
        // One line: DataFusion's hints come on lines of their own.
        let text = cause
            .to_string()
            .lines()
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ");
        let text = silt_storage::short_s3_error(&text).into_owned();
        if !above.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        above = text;
    }
    line
}
