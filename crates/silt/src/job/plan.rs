//! `silt run JOB --check`: the job as a run would make it (its reader schema, the raw table,
//! each transform's output and how the job runs it) with every check a run makes before it
//! reads anything, and nothing read from the stream or written to the lake.

use arrow::datatypes::SchemaRef;
use serde::Serialize;
use silt_transform::Mode;

use super::backfill::{earlier_sql, hour_text, new_tables, EarlierSql, NewTables};
use super::run::{Job, RowsTransforms, Shapes};

/// A job as a run would make it.
#[derive(Debug, Serialize)]
pub struct JobPlan {
    pub job: String,
    pub subject: String,
    /// The subject's latest version, whose schema the records are read as.
    pub reader_version: u32,
    pub reader_fingerprint: String,
    pub table: String,
    pub partition_by: Vec<String>,
    /// The `events` table the transforms read: the raw table's columns, partition columns
    /// included.
    pub columns: Vec<PlannedColumn>,
    pub transforms: Vec<PlannedTransform>,
}

#[derive(Debug, Serialize)]
pub struct PlannedColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
}

#[derive(Debug, Serialize)]
pub struct PlannedTransform {
    pub name: String,
    /// `rows` or `partitions`.
    pub mode: &'static str,
    /// The raw partition columns its output has: what its table is partitioned by.
    pub partition_by: Vec<String>,
    /// How the stream job runs it.
    pub runs: Runs,
    pub columns: Vec<PlannedColumn>,
    /// New to the job (the lake has no table of it yet while the raw table has rows): the
    /// first and last raw hours (`2025-11-25T22`) its table is filled from before the run
    /// reads the stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fills_first: Option<(String, String)>,
    /// Its table's partitions that hold rows of an earlier version of its SQL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub earlier_sql: Option<EarlierSql>,
}

/// How the stream job runs a transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runs {
    /// Its files are the raw files' column chunks, copied: no SQL run.
    Copied,
    /// Its SQL on each micro-batch.
    Rows,
    /// Its grouping of each micro-batch merged with the partitions' previous rows.
    Merged,
    /// Its SQL over every row of the partitions a micro-batch touched.
    Recomputed,
}

impl Runs {
    /// In words.
    pub fn text(self) -> &'static str {
        match self {
            Runs::Copied => "copied from the raw files (no SQL run)",
            Runs::Rows => "its SQL on each micro-batch",
            Runs::Merged => "each micro-batch grouped and merged into its partitions",
            Runs::Recomputed => "recomputed over each partition a micro-batch touches",
        }
    }
}

fn columns(schema: &SchemaRef) -> Vec<PlannedColumn> {
    schema
        .fields()
        .iter()
        .map(|f| PlannedColumn {
            name: f.name().clone(),
            data_type: f.data_type().to_string(),
            nullable: f.is_nullable(),
        })
        .collect()
}

/// Plans `job` as [`run`](super::run) does before its first micro-batch: the reader schema
/// from the registry, every transform planned and checked (mode, partition columns), the
/// reference tables loaded. Errors are those a run would stop with.
pub async fn plan(job: &Job) -> anyhow::Result<JobPlan> {
    let shapes = Shapes::of(job).await?;
    let rows = RowsTransforms::prepare(job, &shapes.events).await?;
    let latest = job.log.latest().await?;
    if let Some(latest) = &latest {
        super::run::check_source(job, latest)?;
    }
    super::run::check_tables(job, &shapes, latest.as_ref().map(|c| &c.tables)).await?;
    let new = latest.as_ref().and_then(|l| new_tables(job, l));
    let earlier = latest
        .as_ref()
        .map(|l| earlier_sql(job, l))
        .unwrap_or_default();
    let fills_first = |name: &str| match &new {
        Some(NewTables {
            names,
            span: Some((from, to)),
        }) if names.iter().any(|n| n == name) => Some((hour_text(*from), hour_text(*to))),
        _ => None,
    };
    let copied = rows.copied_from_raw(&shapes.events, &job.partition_by, &shapes.out_partitions);
    let transforms = job
        .transforms
        .iter()
        .enumerate()
        .map(|(i, t)| PlannedTransform {
            name: t.name.clone(),
            mode: match t.mode {
                Mode::Rows => "rows",
                Mode::Partitions => "partitions",
            },
            partition_by: shapes.out_partitions[i].clone(),
            runs: match t.mode {
                Mode::Rows if copied[i].is_some() => Runs::Copied,
                Mode::Rows => Runs::Rows,
                Mode::Partitions if rows.merges(i) => Runs::Merged,
                Mode::Partitions => Runs::Recomputed,
            },
            columns: columns(&shapes.outputs[i]),
            fills_first: fills_first(&t.name),
            earlier_sql: earlier.iter().find(|e| e.transform == t.name).cloned(),
        })
        .collect();
    Ok(JobPlan {
        job: job.name.clone(),
        subject: job.subject.clone(),
        reader_version: shapes.reader.version,
        reader_fingerprint: shapes.reader.fingerprint.to_string(),
        table: job.table.clone(),
        partition_by: job.partition_by.clone(),
        columns: columns(&shapes.events),
        transforms,
    })
}
