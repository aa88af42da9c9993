//! Golden tests of the transforms in `sql/`, as DataFusion tests its SQL: `.slt` files in
//! `sql/tests/` run through the `sqllogictest` crate, one session per file. A file creates
//! its input (`CREATE TABLE events ...`), loads a transform with the statement
//! `LOAD TRANSFORM name` (which makes `sql/name.sql` a view called `name`), and queries it.
//!
//! `SILT_SLT_COMPLETE=1 cargo test -p silt-transform --test golden` rewrites the expected
//! results from what the SQL now answers (DataFusion's `--complete`).

use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use sqllogictest::{DBOutput, DefaultColumnType};

/// `sql/` of the checkout under test: cargo names the package's folder when it runs the test
/// (a test binary reused from another checkout of the same commit would name that one's).
fn sql_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../../sql")
}

struct Silt {
    ctx: datafusion::prelude::SessionContext,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error(transparent)]
    Transform(#[from] silt_transform::Error),
    #[error("{0}")]
    Other(String),
}

fn column_type(dt: &DataType) -> DefaultColumnType {
    match dt {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => DefaultColumnType::Integer,
        DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Decimal128(_, _) => {
            DefaultColumnType::FloatingPoint
        }
        _ => DefaultColumnType::Text,
    }
}

fn rows(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, Error> {
    let opts = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in batches {
        let fmts = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Other(e.to_string()))?;
        for r in 0..b.num_rows() {
            out.push(
                fmts.iter()
                    .map(|f| {
                        let v = f.value(r).to_string();
                        if v.is_empty() {
                            "(empty)".to_string()
                        } else {
                            v
                        }
                    })
                    .collect(),
            );
        }
    }
    Ok(out)
}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for Silt {
    type Error = Error;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Error> {
        let trimmed = sql.trim().trim_end_matches(';');
        if let Some(name) = trimmed.strip_prefix("LOAD TRANSFORM ") {
            let name = name.trim();
            let path = sql_dir().join(format!("{name}.sql"));
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Error::Other(format!("{}: {e}", path.display())))?;
            // Plan it as the job would (mode checks included), then expose it as a view.
            let mode = if text.contains("mode: partitions") {
                silt_transform::Mode::Partitions
            } else {
                silt_transform::Mode::Rows
            };
            let t = silt_transform::Transform::new(name, text, mode);
            let df = silt_transform::plan(&self.ctx, &t).await?;
            self.ctx.register_table(name, df.into_view())?;
            return Ok(DBOutput::StatementComplete(0));
        }
        let df = self.ctx.sql(sql).await?;
        let types = df
            .schema()
            .fields()
            .iter()
            .map(|f| column_type(f.data_type()))
            .collect::<Vec<_>>();
        let is_query = matches!(
            df.logical_plan(),
            datafusion::logical_expr::LogicalPlan::Projection(_)
                | datafusion::logical_expr::LogicalPlan::Sort(_)
                | datafusion::logical_expr::LogicalPlan::Limit(_)
                | datafusion::logical_expr::LogicalPlan::Aggregate(_)
                | datafusion::logical_expr::LogicalPlan::Filter(_)
                | datafusion::logical_expr::LogicalPlan::TableScan(_)
                | datafusion::logical_expr::LogicalPlan::Values(_)
                | datafusion::logical_expr::LogicalPlan::Window(_)
                | datafusion::logical_expr::LogicalPlan::Join(_)
                | datafusion::logical_expr::LogicalPlan::SubqueryAlias(_)
                | datafusion::logical_expr::LogicalPlan::Distinct(_)
                | datafusion::logical_expr::LogicalPlan::Union(_)
                | datafusion::logical_expr::LogicalPlan::Explain(_)
        );
        let batches = df.collect().await?;
        if !is_query {
            return Ok(DBOutput::StatementComplete(0));
        }
        Ok(DBOutput::Rows {
            types,
            rows: rows(&batches)?,
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "silt"
    }
}

fn slt_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(sql_dir().join("tests"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .collect();
    v.sort();
    v
}

async fn run_file(path: &Path) -> Result<(), String> {
    let mut runner = sqllogictest::Runner::new(|| async {
        Ok(Silt {
            ctx: silt_transform::transform_session(&[silt_transform::Reference {
                name: "sales".into(),
                path: sql_dir().join("sales.csv"),
            }])
            .await?,
        })
    });
    if std::env::var_os("SILT_SLT_COMPLETE").is_some() {
        runner
            .update_test_file(
                path,
                " ",
                sqllogictest::default_validator,
                sqllogictest::default_normalizer,
                sqllogictest::default_column_validator,
            )
            .await
            .map_err(|e| e.to_string())
    } else {
        runner
            .run_file_async(path)
            .await
            .map_err(|e| e.display(false).to_string())
    }
}

#[tokio::test]
async fn golden_sql() {
    let files = slt_files();
    assert!(files.len() >= 4, "{files:?}");
    let mut failures = Vec::new();
    for f in &files {
        if let Err(e) = run_file(f).await {
            failures.push(format!("{}:\n{e}", f.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The runner is not a rubber stamp: a wrong expectation fails.
#[tokio::test]
async fn a_changed_result_fails() {
    let dir = tempfile_dir();
    let file = dir.join("wrong.slt");
    std::fs::write(
        &file,
        "statement ok\nCREATE TABLE events (\"productId\" BIGINT, \"saleId\" BIGINT, dt VARCHAR, hr VARCHAR, _event_time TIMESTAMP) AS VALUES (1, NULL, '2025-11-25', '22', TIMESTAMP '2025-11-25T22:00:00')\n\nstatement ok\nLOAD TRANSFORM page_views_hourly\n\nquery TTII\nSELECT dt, hr, \"productId\", views FROM page_views_hourly\n----\n2025-11-25 22 1 2\n",
    )
    .unwrap();
    let err = run_file(&file).await.unwrap_err();
    assert!(err.contains("query result mismatch"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

fn tempfile_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("silt-slt-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
