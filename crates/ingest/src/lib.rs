//! # silt-ingest: from a stream to Arrow
//!
//! The first rooms of the pipeline (Source -> decode): the [`Source`] seam with its
//! implementations ([`FileStream`], [`InMemoryStream`]; Kinesis lives beside them), and the
//! [`EventDecoder`] that turns framed Avro records into Arrow record batches with the lake's
//! metadata columns, rejecting bad records with their reason.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use silt_ingest::{InMemoryStream, ReadLimit, Sink, Source, StartAt};
//!
//! let stream = InMemoryStream::new("clicks", 2);
//! stream.put(0, &[b"one".as_slice(), b"two".as_slice()]).await?;
//! let chunk = stream.read("shard-000000", &StartAt::Earliest, ReadLimit::default()).await?;
//! assert_eq!(chunk.payload(1), b"two");
//! # Ok::<(), silt_ingest::Error>(()) }).unwrap();
//! ```

pub mod conformance;
mod decode;
mod file_stream;
mod flat;
mod lake_shape;
mod memory;
mod source;

use std::path::Path;

pub use decode::{
    metadata_fields, micros_text, rejected_batch, rejected_schema, EventDecoder, Good, Rejected,
    Undecodable, ARRIVAL_TIME, DEFAULT_MAX_FUTURE, EVENT_TIME, FINGERPRINT, REJECT_CODES, SEQUENCE,
    SHARD, STREAM,
};
pub use file_stream::{shard_file_name, write_frame, FileStream, FRAME_HEADER, MAX_PAYLOAD};
pub use memory::InMemoryStream;
pub use source::{
    group_by_shard, shard_for_key, Chunk, Mapping, Position, PutStats, ReadLimit, RecordRef,
    ShardInfo, Sink, Source, StartAt, MAX_CHUNK_BYTES,
};

/// Errors of sources and decoding. Bad records are not errors: they are [`Rejected`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("stream `{stream}` has no shard `{shard}`")]
    UnknownShard { stream: String, shard: String },
    #[error("shard {shard}: cannot start at position {position}: {reason}")]
    BadPosition {
        shard: String,
        position: Position,
        reason: String,
    },
    #[error("shard {shard} is corrupt at position {position}: {reason}")]
    Corrupt {
        shard: String,
        position: Position,
        reason: String,
    },
    #[error("record of {len} bytes is larger than the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("the source is throttling: {0}")]
    Throttled(String),
    #[error("source: {0}")]
    Service(String),
    /// The stream itself is not there (a Kinesis stream not created, or deleted): no retry
    /// helps until someone creates it.
    #[error("there is no stream `{stream}`: {reason}")]
    NoStream { stream: String, reason: String },
    #[error(transparent)]
    Registry(#[from] silt_registry::Error),
    /// The stream holds records of a version of the subject newer than the reader schema the
    /// decoder was made with (registered while the run went on). Reading them with the old
    /// reader would drop their new fields, so the run stops before any of them is decoded and
    /// starts again with the new version.
    #[error("subject `{subject}` has version {writer_version}, newer than the reader schema (version {reader_version}) this run started with")]
    ReaderOutdated {
        subject: String,
        reader_version: u32,
        writer_version: u32,
    },
    /// Records that passed the check but that arrow-avro refuses (named one by one): the job
    /// starts the micro-batch again with a decoder that rejects them in its check
    /// ([`EventDecoder::with_undecodable`]).
    #[error("arrow-avro refuses {} checked record(s) of writer {fingerprint}: {}", records.len(), records.first().map_or("", |r| r.reason.as_str()))]
    Undecodable {
        fingerprint: String,
        records: Vec<Undecodable>,
    },
    #[error("decoding records of writer {fingerprint}: {source}")]
    Decode {
        fingerprint: String,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error(transparent)]
    Arrow(arrow::error::ArrowError),
    #[error("{0}")]
    Config(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
