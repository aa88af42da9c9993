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

/// `k=v/k=v` with values escaped as Hive and Spark escape them (`%2F` for `/`; the same for
/// `=`, `%`, `:`, `#`, quotes and control characters...; nothing else, non-ASCII included), as
/// files are stored and as DuckDB, Spark and pyarrow decode them.
pub fn hive_path(values: &[(String, String)]) -> String {
    values
        .iter()
        .map(|(k, v)| format!("{k}={}", escape(v)))
        .collect::<Vec<_>>()
        .join("/")
}

/// The folder name of an empty (or null) partition value, as Hive names it.
pub(crate) const DEFAULT_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

fn escape(v: &str) -> String {
    if v.is_empty() {
        return DEFAULT_PARTITION.into();
    }
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(
            c,
            '/' | '=' | '%' | '\\' | '#' | '?' | ':' | '"' | '\'' | '*' | '[' | ']' | '^' | '{'
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
/// partition, as rows ordered by event time do: runs are found a column at a time, only a new
/// run looks its partition up, and a partition of one run is a slice of the batch (no copy).
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

    // Runs of equal partition values (compared a column at a time, not row by row), each
    // given to the partition of its first row: rows in event-time order make a run an hour.
    let runs = arrow::compute::partition(&cols)
        .map_err(Error::Arrow)?
        .ranges();
    let mut keys: Vec<usize> = Vec::new(); // a representative row per partition
    let mut groups: Vec<Vec<std::ops::Range<usize>>> = Vec::new();
    for run in runs {
        match keys.iter().position(|&k| same(k, run.start)) {
            Some(p) => groups[p].push(run),
            None => {
                keys.push(run.start);
                groups.push(vec![run]);
            }
        }
    }
    let projected = batch.project(&keep).map_err(Error::Arrow)?;
    let mut out = Vec::with_capacity(keys.len());
    for (k, runs) in keys.into_iter().zip(groups) {
        let values = partition_by
            .iter()
            .zip(&strs)
            .map(|(p, c)| (p.clone(), value(c, k).to_string()))
            .collect();
        // One run is a slice of the batch (no copy); several are gathered.
        let b = match runs.as_slice() {
            [run] => projected.slice(run.start, run.len()),
            _ => {
                let idx: UInt32Array = runs
                    .iter()
                    .flat_map(|r| r.start as u32..r.end as u32)
                    .collect();
                arrow::compute::take_record_batch(&projected, &idx).map_err(Error::Arrow)?
            }
        };
        out.push(PartitionBatch {
            values,
            batch: RecordBatch::try_new(out_schema.clone(), b.columns().to_vec())
                .map_err(Error::Arrow)?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int32Array, Int64Array};

    fn batch(n: &[i64], hr: Vec<Option<&str>>) -> RecordBatch {
        RecordBatch::try_from_iter([
            ("n", Arc::new(Int64Array::from(n.to_vec())) as ArrayRef),
            ("hr", Arc::new(StringArray::from(hr)) as ArrayRef),
        ])
        .unwrap()
    }

    fn ns(b: &RecordBatch) -> Vec<i64> {
        b.column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .values()
            .to_vec()
    }

    #[test]
    fn runs_of_a_partition_are_gathered_in_order_of_first_appearance() {
        let b = batch(
            &[1, 2, 3, 4, 5, 6],
            vec![
                Some("22"),
                Some("22"),
                Some("23"),
                Some("22"),
                Some("23"),
                Some("23"),
            ],
        );
        let parts = split(&b, &["hr".to_string()]).unwrap();
        let got: Vec<(String, Vec<i64>)> = parts
            .iter()
            .map(|p| (p.values[0].1.clone(), ns(&p.batch)))
            .collect();
        assert_eq!(
            got,
            [("22".into(), vec![1, 2, 4]), ("23".into(), vec![3, 5, 6])]
        );
        // The partition column is left out of the rows.
        assert_eq!(parts[0].batch.num_columns(), 1);
    }

    #[test]
    fn a_partition_of_one_run_is_a_slice_of_the_batch() {
        let b = batch(
            &[1, 2, 3, 4],
            vec![Some("22"), Some("22"), Some("23"), Some("23")],
        );
        let parts = split(&b, &["hr".to_string()]).unwrap();
        assert_eq!(ns(&parts[1].batch), [3, 4]);
        // The batch's own values, two in: no copy.
        let at = |c: &ArrayRef| c.to_data().buffers()[0].as_ptr() as usize;
        assert_eq!(at(parts[1].batch.column(0)), at(b.column(0)) + 2 * 8);
    }

    #[test]
    fn nulls_empty_batches_and_other_types_of_partition_column() {
        let b = batch(&[1, 2, 3], vec![None, Some(""), None]);
        let parts = split(&b, &["hr".to_string()]).unwrap();
        assert_eq!(
            parts.len(),
            1,
            "a missing value and an empty one are one partition"
        );
        assert_eq!(ns(&parts[0].batch), [1, 2, 3]);

        let empty = batch(&[], vec![]);
        assert!(split(&empty, &["hr".to_string()]).unwrap().is_empty());

        let b = RecordBatch::try_from_iter([
            ("n", Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef),
            ("hr", Arc::new(Int32Array::from(vec![7, 7, 8])) as ArrayRef),
        ])
        .unwrap();
        let parts = split(&b, &["hr".to_string()]).unwrap();
        assert_eq!(parts[0].values, [("hr".to_string(), "7".to_string())]);
        assert_eq!(ns(&parts[1].batch), [3]);
        assert!(parts[1].batch.column(0).len() == 1);
    }
}
