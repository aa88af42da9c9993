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

/// Whether `e` comes from a file the store does not have (any more).
pub(crate) fn file_gone(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<object_store::Error>()
            .is_some_and(|e| matches!(e, object_store::Error::NotFound { .. }))
            || c.downcast_ref::<datafusion::error::DataFusionError>()
                .is_some_and(|e| {
                    matches!(
                        e.find_root(),
                        datafusion::error::DataFusionError::ObjectStore(e)
                            if matches!(**e, object_store::Error::NotFound { .. })
                    )
                })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::error::DataFusionError;

    fn gone() -> object_store::Error {
        object_store::Error::NotFound {
            path: "t/dt=2025-11-25/part-0000000001-0000.parquet".into(),
            source: "No such file or directory".into(),
        }
    }

    /// A file gone is told wherever DataFusion wraps the store's error (a scan's stream
    /// gives it inside Arrow's external error); other errors are not taken for it.
    #[test]
    fn a_file_gone_is_told_through_datafusions_wrapping() {
        let direct = anyhow::Error::new(DataFusionError::ObjectStore(Box::new(gone())));
        assert!(file_gone(&direct));
        let wrapped = anyhow::Error::new(DataFusionError::ArrowError(
            Box::new(arrow::error::ArrowError::ExternalError(Box::new(
                DataFusionError::ObjectStore(Box::new(gone())),
            ))),
            None,
        ));
        assert!(file_gone(&wrapped));
        assert!(file_gone(&anyhow::Error::new(gone()).context("reading")));
        let other = object_store::Error::Generic {
            store: "S3",
            source: "503 Slow Down".into(),
        };
        assert!(!file_gone(&anyhow::Error::new(
            DataFusionError::ObjectStore(Box::new(other))
        )));
        assert!(!file_gone(&anyhow::anyhow!("no table `x`")));
    }
}
