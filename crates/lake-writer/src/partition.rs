//! Splitting a batch by its Hive partition columns.

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, UInt32Array};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use std::sync::Arc;

use crate::{Error, Result};

/// One partition's rows, without the partition columns (they live in the path).
#[derive(Debug, Clone)]
pub struct PartitionBatch {
    /// `(column, value)` pairs, in partition-column order.
    pub values: Vec<(String, String)>,
    pub batch: RecordBatch,
}

impl PartitionBatch {
    /// The Hive path of the partition: `dt=2025-11-25/hr=22` (empty when unpartitioned).
    pub fn path(&self) -> String {
        hive_path(&self.values)
    }
}

/// `k=v/k=v` with values escaped as Hive does for `/`, `=`, `%` and control characters.
pub fn hive_path(values: &[(String, String)]) -> String {
    values
        .iter()
        .map(|(k, v)| format!("{k}={}", escape(v)))
        .collect::<Vec<_>>()
        .join("/")
}

fn escape(v: &str) -> String {
    if v.is_empty() {
        return "__HIVE_DEFAULT_PARTITION__".into();
    }
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(
            c,
            '/' | '=' | '%' | '\\' | '#' | '?' | ':' | '"' | '\'' | '*' | '[' | ']' | '^'
        ) || c.is_control()
        {
            for b in c.to_string().bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The schema a partition's files hold: the batch's schema without the partition columns.
pub fn file_schema(schema: &Schema, partition_by: &[String]) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .filter(|f| !partition_by.iter().any(|p| p == f.name()))
            .cloned()
            .collect::<Vec<_>>(),
    ))
}

/// Splits `batch` by the values of `partition_by` (columns of the batch), in order of first
/// appearance. Rows keep their order within a partition. Cheap when rows come in runs of one
/// partition, as rows ordered by event time do: a row is compared with the previous one, and
/// only a change looks the partition up.
pub fn split(batch: &RecordBatch, partition_by: &[String]) -> Result<Vec<PartitionBatch>> {
    let schema = batch.schema();
    let out_schema = file_schema(&schema, partition_by);
    let keep: Vec<usize> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| !partition_by.iter().any(|p| p == f.name()))
        .map(|(i, _)| i)
        .collect();
    if partition_by.is_empty() {
        let batch = batch.project(&keep).map_err(Error::Arrow)?;
        return Ok(vec![PartitionBatch {
            values: vec![],
            batch,
        }]);
    }
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(partition_by.len());
    for p in partition_by {
        let i = schema
            .index_of(p)
            .map_err(|_| Error::MissingPartitionColumn {
                column: p.clone(),
                columns: schema.fields().iter().map(|f| f.name().clone()).collect(),
            })?;
        let c = batch.column(i);
        cols.push(if c.data_type() == &DataType::Utf8 {
            c.clone()
        } else {
            arrow::compute::cast(c, &DataType::Utf8).map_err(Error::Arrow)?
        });
    }
    let strs: Vec<&StringArray> = cols
        .iter()
        .map(|c| c.as_any().downcast_ref::<StringArray>().expect("utf8"))
        .collect();
    fn value(col: &StringArray, row: usize) -> &str {
        if col.is_null(row) {
            ""
        } else {
            col.value(row)
        }
    }
    let same = |a: usize, b: usize| strs.iter().all(|c| value(c, a) == value(c, b));

    let mut keys: Vec<usize> = Vec::new(); // a representative row per partition
    let mut rows: Vec<Vec<u32>> = Vec::new();
    let mut current = usize::MAX;
    for row in 0..batch.num_rows() {
        if current == usize::MAX || !same(keys[current], row) {
            current = match keys.iter().position(|&k| same(k, row)) {
                Some(p) => p,
                None => {
                    keys.push(row);
                    rows.push(Vec::new());
                    keys.len() - 1
                }
            };
        }
        rows[current].push(row as u32);
    }
    let projected = batch.project(&keep).map_err(Error::Arrow)?;
    let mut out = Vec::with_capacity(keys.len());
    for (k, idx) in keys.into_iter().zip(rows) {
        let values = partition_by
            .iter()
            .zip(&strs)
            .map(|(p, c)| (p.clone(), value(c, k).to_string()))
            .collect();
        let b = if idx.len() == batch.num_rows() {
            projected.clone()
        } else {
            arrow::compute::take_record_batch(&projected, &UInt32Array::from(idx))
                .map_err(Error::Arrow)?
        };
        out.push(PartitionBatch {
            values,
            batch: RecordBatch::try_new(out_schema.clone(), b.columns().to_vec())
                .map_err(Error::Arrow)?,
        });
    }
    Ok(out)
}
