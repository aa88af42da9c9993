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
        let text = s3_error_body(&text).into_owned();
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

/// An S3 error answer's XML body (`<?xml ...><Error><Code>NoSuchBucket</Code><Message>...`,
/// which object_store puts in its message whole, request and host ids included) as its code,
/// message and the bucket or key it names: `NoSuchBucket: The specified bucket does not exist
/// (bucket nolake)`.
fn s3_error_body(text: &str) -> std::borrow::Cow<'_, str> {
    let Some(start) = text.find("<?xml") else {
        return text.into();
    };
    let body = &text[start..];
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let from = body.find(&open)? + open.len();
        let len = body[from..].find(&format!("</{name}>"))?;
        Some(&body[from..from + len])
    };
    let Some(code) = tag("Code") else {
        return text.into();
    };
    let mut short = format!("{}{code}", &text[..start]);
    if let Some(m) = tag("Message") {
        short.push_str(": ");
        short.push_str(m);
    }
    if let Some(b) = tag("BucketName") {
        short.push_str(&format!(" (bucket `{b}`)"));
    } else if let Some(k) = tag("Key") {
        short.push_str(&format!(" (key `{k}`)"));
    }
    let end = body
        .find("</Error>")
        .map_or(text.len(), |e| start + e + "</Error>".len());
    short.push_str(&text[end..]);
    short.into()
}
