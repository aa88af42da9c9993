//! Writing one micro-batch of a table as Parquet files, partition by partition.

use std::collections::BTreeMap;
use std::str::FromStr;

use arrow::array::RecordBatch;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use serde::{Deserialize, Serialize};
use silt_storage::Location;

use crate::partition::{hive_path, split, PartitionBatch};
use crate::{Error, Result};

/// How files are cut and encoded.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// A file is closed once it holds about this many bytes (a micro-batch smaller than this
    /// gives one file per partition).
    pub target_file_bytes: usize,
    /// Rows per row group.
    pub row_group_rows: usize,
    pub compression: Codec,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            target_file_bytes: 128 << 20,
            row_group_rows: 1 << 20,
            compression: Codec::Zstd(1),
        }
    }
}

/// Parquet compression, as job files spell it: `zstd`, `zstd(3)`, `snappy`, `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Zstd(i32),
    Snappy,
    None,
}

impl FromStr for Codec {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "zstd" => Ok(Codec::Zstd(1)),
            "snappy" => Ok(Codec::Snappy),
            "none" | "uncompressed" => Ok(Codec::None),
            _ => s
                .strip_prefix("zstd(")
                .and_then(|r| r.strip_suffix(')'))
                .and_then(|l| l.parse().ok())
                .filter(|l| (1..=22).contains(l))
                .map(Codec::Zstd)
                .ok_or_else(|| {
                    format!("unknown compression `{s}` (zstd, zstd(1..22), snappy, none)")
                }),
        }
    }
}

impl WriterOptions {
    /// The Parquet writer settings: compression, page statistics, a fixed `created_by` so
    /// that a rerun writes the same bytes.
    pub fn properties(&self) -> WriterProperties {
        let compression = match self.compression {
            Codec::Zstd(l) => Compression::ZSTD(ZstdLevel::try_new(l).unwrap_or_default()),
            Codec::Snappy => Compression::SNAPPY,
            Codec::None => Compression::UNCOMPRESSED,
        };
        WriterProperties::builder()
            .set_compression(compression)
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(self.row_group_rows))
            .set_created_by(format!("silt {}", env!("CARGO_PKG_VERSION")))
            .build()
    }
}

/// A data file of a table, as the commit log records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFile {
    /// Path below the table's folder: `dt=2025-11-25/hr=22/part-0000000007-0000.parquet`.
    pub path: String,
    /// The partition values, in partition-column order.
    pub partition: Vec<(String, String)>,
    pub rows: u64,
    pub bytes: u64,
}

impl DataFile {
    /// The micro-batch that wrote the file, from its name.
    pub fn batch(&self) -> Option<u64> {
        batch_of(&self.path)
    }
}

/// The micro-batch number in a data file name (`part-{batch}-{n}.parquet`).
pub fn batch_of(path: &str) -> Option<u64> {
    let name = path.rsplit('/').next()?;
    name.strip_prefix("part-")?.split('-').next()?.parse().ok()
}

/// The file name for the `n`-th file of a partition in a micro-batch. Deterministic: a rerun
/// of the batch overwrites the same names with the same bytes.
pub fn file_name(batch: u64, n: usize) -> String {
    format!("part-{batch:010}-{n:04}.parquet")
}

/// Encodes one partition's rows into files (CPU work: call from a blocking thread).
fn encode(part: &[RecordBatch], opts: &WriterOptions) -> Result<Vec<(Vec<u8>, u64)>> {
    let schema = part[0].schema();
    let props = opts.properties();
    let mut files = Vec::new();
    let mut writer: Option<ArrowWriter<Vec<u8>>> = None;
    let mut rows = 0u64;
    // Feed slices so that the size check between writes cuts files near the target.
    let slice = opts.row_group_rows.clamp(1, 65_536);
    for b in part {
        let mut off = 0;
        while off < b.num_rows() {
            let len = slice.min(b.num_rows() - off);
            let w = match writer.as_mut() {
                Some(w) => w,
                None => writer.insert(
                    ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props.clone()))
                        .map_err(Error::Parquet)?,
                ),
            };
            w.write(&b.slice(off, len)).map_err(Error::Parquet)?;
            rows += len as u64;
            off += len;
            if w.bytes_written() + w.in_progress_size() >= opts.target_file_bytes {
                let bytes = writer
                    .take()
                    .expect("open")
                    .into_inner()
                    .map_err(Error::Parquet)?;
                files.push((bytes, rows));
                rows = 0;
            }
        }
    }
    if let Some(w) = writer {
        files.push((w.into_inner().map_err(Error::Parquet)?, rows));
    }
    Ok(files)
}

/// Writes `batches` (one micro-batch of a table) below `table`, partitioned by
/// `partition_by` (columns of the batches, left out of the files), one or more files per
/// partition, named by [`file_name`]. Files appear whole or not at all (object store puts are
/// atomic). Returns the files in partition order.
pub async fn write_table(
    table: &Location,
    batch_id: u64,
    batches: &[RecordBatch],
    partition_by: &[String],
    opts: &WriterOptions,
) -> Result<Vec<DataFile>> {
    // Hive path -> (partition values, that partition's rows).
    type Parts = BTreeMap<String, (Vec<(String, String)>, Vec<RecordBatch>)>;
    let mut parts: Parts = BTreeMap::new();
    for b in batches.iter().filter(|b| b.num_rows() > 0) {
        for PartitionBatch { values, batch } in split(b, partition_by)? {
            parts
                .entry(hive_path(&values))
                .or_insert_with(|| (values, Vec::new()))
                .1
                .push(batch);
        }
    }
    let mut out = Vec::new();
    for (dir, (values, batches)) in parts {
        let o = opts.clone();
        let encoded = tokio::task::spawn_blocking(move || encode(&batches, &o))
            .await
            .map_err(|e| Error::Internal(format!("encoding task failed: {e}")))??;
        for (n, (bytes, rows)) in encoded.into_iter().enumerate() {
            let rel = if dir.is_empty() {
                file_name(batch_id, n)
            } else {
                format!("{dir}/{}", file_name(batch_id, n))
            };
            let size = bytes.len() as u64;
            table
                .store
                .put(&table.child(&rel), PutPayload::from(bytes))
                .await
                .map_err(|source| Error::Store {
                    path: rel.clone(),
                    source,
                })?;
            out.push(DataFile {
                path: rel,
                partition: values.clone(),
                rows,
                bytes: size,
            });
        }
    }
    Ok(out)
}
