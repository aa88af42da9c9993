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
    let runs = match fixed_width_runs(&strs, batch.num_rows()) {
        Some(runs) => runs,
        None => arrow::compute::partition(&cols)
            .map_err(Error::Arrow)?
            .ranges(),
    };
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

/// The runs of rows whose values are equal in every column of `cols`, when each column's
/// values are all as long as one another and none is null (a date, an hour): a column's
/// buffer is compared with itself shifted by one value, 64 bytes at a time, where comparing
/// row by row costs tens of instructions a row. `None` for any other columns.
fn fixed_width_runs(cols: &[&StringArray], rows: usize) -> Option<Vec<std::ops::Range<usize>>> {
    if rows == 0 {
        return Some(Vec::new());
    }
    let mut starts: Vec<usize> = Vec::new();
    for col in cols {
        if col.null_count() > 0 || col.len() != rows {
            return None;
        }
        let offsets = col.value_offsets();
        let width = offsets.get(1).map_or(0, |end| (end - offsets[0]) as usize);
        if width == 0 || offsets.windows(2).any(|o| (o[1] - o[0]) as usize != width) {
            return None;
        }
        let values = &col.value_data()[offsets[0] as usize..offsets[rows] as usize];
        // `now[k]` is a byte of value `k / width`, `next[k]` the same byte of the value after.
        let (now, next) = (&values[..values.len() - width], &values[width..]);
        let mut at = 0;
        while let Some(k) = first_difference(&now[at..], &next[at..]) {
            let row = (at + k) / width + 1;
            starts.push(row);
            at = row * width;
        }
    }
    starts.sort_unstable();
    starts.dedup();
    let mut runs = Vec::with_capacity(starts.len() + 1);
    let mut from = 0;
    for start in starts.into_iter().chain([rows]) {
        runs.push(from..start);
        from = start;
    }
    Some(runs)
}

/// Where `a` and `b` (of one length) first differ.
fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    const BLOCK: usize = 64;
    let mut i = 0;
    while i + BLOCK <= a.len() && a[i..i + BLOCK] == b[i..i + BLOCK] {
        i += BLOCK;
    }
    a[i..]
        .iter()
        .zip(&b[i..])
        .position(|(x, y)| x != y)
        .map(|p| i + p)
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

    /// Runs found by comparing fixed-width values as one buffer are the runs arrow's
    /// `partition` finds row by row: long runs, short ones, a value changing at every row, a
    /// value coming back, two columns changing apart; and other columns are not taken.
    #[test]
    fn fixed_width_runs_are_arrows_runs() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut random = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for case in 0..40 {
            let rows = [0, 1, 2, 63, 64, 65, 1000, 5000][case % 8];
            let run = [1, 2, 7, 64, 500, 3000][case % 6];
            let dt: Vec<String> = (0..rows)
                .map(|r| format!("2025-11-{:02}", 1 + (r / (run * 3)) % 28))
                .collect();
            let hr: Vec<String> = (0..rows)
                .map(|r| match random() % 100 {
                    0 => "07".to_string(),
                    _ => format!("{:02}", (r / run) % 24),
                })
                .collect();
            let (dt, hr) = (StringArray::from(dt), StringArray::from(hr));
            let arrow_runs = arrow::compute::partition(&[
                Arc::new(dt.clone()) as ArrayRef,
                Arc::new(hr.clone()) as ArrayRef,
            ])
            .unwrap()
            .ranges();
            assert_eq!(
                fixed_width_runs(&[&dt, &hr], rows),
                Some(arrow_runs),
                "case {case}: {rows} rows, runs of {run}"
            );
        }
        let varying = StringArray::from(vec!["a", "bb", "bb"]);
        assert_eq!(fixed_width_runs(&[&varying], 3), None);
        let nulls = StringArray::from(vec![Some("aa"), None, Some("aa")]);
        assert_eq!(fixed_width_runs(&[&nulls], 3), None);
    }
}
