//! # silt-lake-writer: Hive-partitioned Parquet, committed whole and exactly once
//!
//! The last room of the pipeline. [`TableWriter`] turns a micro-batch's record batches, as
//! they come, into zstd Parquet files under `TABLE/dt=.../hr=.../` (one open file per
//! partition, so a micro-batch is held as compressed pages, not as rows), through
//! `object_store` (one code path for `file://`, `memory://` and `s3://`); [`write_table`] does
//! it for batches in hand. [`CommitLog`] makes a micro-batch visible whole and
//! exactly once; its module docs write the protocol down. [`LakeSnapshot`] is what silt's
//! readers see: the committed files and nothing else.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use arrow::array::{Int64Array, RecordBatch, StringArray};
//! use silt_lake_writer::{write_table, WriterOptions};
//!
//! let lake = silt_storage::open("memory://doc-lake", std::path::Path::new("."))?;
//! let batch = RecordBatch::try_from_iter([
//!     ("n", Arc::new(Int64Array::from(vec![1, 2, 3])) as _),
//!     ("dt", Arc::new(StringArray::from(vec!["2025-11-25", "2025-11-26", "2025-11-26"])) as _),
//! ]).unwrap();
//! let files = write_table(&lake.join("t"), 0, &[batch], &["dt".to_string()], &WriterOptions::default()).await?;
//! assert_eq!(files[1].path, "dt=2025-11-26/part-0000000000-0000.parquet");
//! assert_eq!(files[1].rows, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
//! ```

mod chunk;
mod hybrid;
mod log;
mod numbers;
mod partition;
mod plain;
mod runs;
mod snapshot;
mod write;

pub use log::{
    remove_files, vacuum, Commit, CommitLog, Intent, Lease, TableState, WriterLock, COMMIT_FORMAT,
    FULL_AFTER_CHANGES, INTENT_FORMAT, LEASE_RENEW_MS, LEASE_TTL_MS,
};
pub use partition::{file_schema, hive_path, split, PartitionBatch};
pub use snapshot::{
    catalog_path, other_writer, partition_fields, reader_path, register_table, table_entry,
    LakeSnapshot, PartitionType, SnapshotStore, TableEntry,
};
pub use write::{
    batch_of, copy_file, copy_file_as, data_file_schema, file_name, read_data_file, schema_key,
    short_hash, tag_of, with_batch, write_table, write_table_timed, Codec, DataFile, TableWriter,
    WriteTimings, WriterOptions, DATA_PAGE_BYTES,
};

/// Errors of writing and committing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A command that takes a lease found it held (see [`CommitLog::take_lease`]).
    #[error("another `{tag}` of this job is at work ({holder}; it renewed its lease {renewed_s_ago}s ago, and a killed one's lapses within a minute): wait for it to end")]
    Busy {
        tag: String,
        holder: String,
        renewed_s_ago: i64,
    },
    /// Another run of the job committed this batch first.
    #[error("another run of job `{job}` committed micro-batch {batch} first: is a second `silt run` of this job running? This run stops without committing")]
    Conflict { job: String, batch: u64 },
    /// Another job writes the table (see [`register_table`]).
    #[error("table `{table}` is written by job `{job}` (commit log {log}): two jobs writing one table would write over and delete each other's files; give this job's table another name")]
    Taken {
        table: String,
        job: String,
        log: String,
    },
    #[error("partition column `{column}` is not among the columns ({})", columns.join(", "))]
    MissingPartitionColumn {
        column: String,
        columns: Vec<String>,
    },
    #[error("{path}: {}", silt_storage::describe(source))]
    Store {
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("corrupt {path}: {reason}")]
    Corrupt { path: String, reason: String },
    /// A commit or intent written by a newer silt, in a format this one does not know.
    #[error("{path} was written by a newer silt ({what} format {format}; this silt reads formats up to {known}): upgrade silt to read this lake")]
    NewerFormat {
        /// `commit` or `intent`.
        what: &'static str,
        path: String,
        format: u32,
        known: u32,
    },
    #[error(transparent)]
    Location(#[from] silt_storage::Error),
    #[error(transparent)]
    Arrow(arrow::error::ArrowError),
    #[error(transparent)]
    Parquet(parquet::errors::ParquetError),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every object below `prefix` in a location's store.
pub(crate) async fn list_all(
    loc: &silt_storage::Location,
    prefix: &object_store::path::Path,
) -> Result<Vec<object_store::ObjectMeta>> {
    use futures::TryStreamExt;
    loc.store
        .list(Some(prefix))
        .try_collect()
        .await
        .map_err(|source| Error::Store {
            path: prefix.to_string(),
            source,
        })
}
