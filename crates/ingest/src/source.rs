//! The stream `Source` seam.

use std::fmt::Debug;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::Result;

/// Where a record sits in its shard. Positions of one shard are totally ordered in the order
/// the shard delivers records.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    /// Byte offset of the record's frame (file stream) or index (in-memory stream).
    Offset(u64),
    /// A Kinesis sequence number, and the sub-sequence of a record inside a KPL aggregate
    /// (0 for a plain record).
    Sequence { number: String, sub: u32 },
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::Offset(o) => write!(f, "{o}"),
            Position::Sequence { number, sub: 0 } => f.write_str(number),
            Position::Sequence { number, sub } => write!(f, "{number}:{sub}"),
        }
    }
}

/// Where to start reading a shard.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    /// The oldest record still held.
    Earliest,
    /// Only records that arrive after the first read.
    Latest,
    /// The first record that arrived at or after this time (ms since the Unix epoch).
    ArrivedAt(i64),
    /// Just after the record at this position (a checkpoint).
    After(Position),
    /// At this position, inclusive (where a `Latest` read found the shard's end).
    At(Position),
}

/// A shard and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub id: String,
    /// The shards this one was split or merged from; they are read to their end first.
    pub parents: Vec<String>,
}

/// One record of a [`Chunk`]: its payload is `chunk.data[start..end]` ([`Self::range`]), its
/// position [`Chunk::position`]. 24 bytes: a micro-batch holds one for each record it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef {
    /// Where the payload starts and ends in [`Chunk::data`] (a chunk holds at most
    /// [`MAX_CHUNK_BYTES`]).
    pub start: u32,
    pub end: u32,
    /// When the stream took the record (ms since the Unix epoch).
    pub arrival_ms: i64,
    /// The record's [`Position::Offset`] (file stream: its frame's byte offset; in-memory
    /// stream: its index), or, in a chunk of [`Chunk::sequences`], its index there.
    pub pos: u64,
}

/// The most bytes one [`Chunk`] may hold (the records' ranges are 32-bit).
pub const MAX_CHUNK_BYTES: usize = u32::MAX as usize;

impl RecordRef {
    /// A record at `range` of its chunk's data.
    pub fn new(range: Range<usize>, arrival_ms: i64, pos: u64) -> Self {
        assert!(range.end <= MAX_CHUNK_BYTES, "a chunk holds at most 4 GiB");
        Self {
            start: range.start as u32,
            end: range.end as u32,
            arrival_ms,
            pos,
        }
    }

    /// The payload's bytes in [`Chunk::data`].
    #[inline]
    pub fn range(&self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// A run of consecutive records of one shard, sharing one buffer (no allocation per record).
#[derive(Debug, Clone, Default)]
pub struct Chunk {
    pub data: Bytes,
    pub records: Vec<RecordRef>,
    /// Where to continue: `After(last record)`, or the start point again when nothing was read.
    pub next: Option<StartAt>,
    /// Nothing more is available in the shard right now.
    pub caught_up: bool,
    /// The shard is closed (split or merged) and every record of it has been read.
    pub ended: bool,
    /// Retries the source made for this read (throttling, 5xx).
    pub retries: u64,
    /// The file mapping `data` is read from in place, when it is (the file stream).
    pub mapping: Option<Mapping>,
    /// The records' positions when they are not offsets (Kinesis sequence numbers), each
    /// record's at its [`RecordRef::pos`]; empty when every position is an offset.
    pub sequences: Vec<Position>,
}

impl Chunk {
    /// The payload of record `i`.
    #[inline]
    pub fn payload(&self, i: usize) -> &[u8] {
        &self.data[self.records[i].range()]
    }

    /// Where record `i` sits in its shard.
    pub fn position(&self, i: usize) -> Position {
        self.position_of(&self.records[i])
    }

    /// Where `record` (one of this chunk's) sits in its shard.
    pub fn position_of(&self, record: &RecordRef) -> Position {
        self.sequence_of(record)
            .cloned()
            .unwrap_or(Position::Offset(record.pos))
    }

    /// `record`'s position when it is not an offset (a Kinesis sequence number), borrowed.
    #[inline]
    pub fn sequence_of(&self, record: &RecordRef) -> Option<&Position> {
        // Empty unless every record's `pos` indexes it.
        self.sequences.get(record.pos as usize)
    }

    /// The position of the last record, if any: where the next read goes on from.
    pub fn last_position(&self) -> Option<Position> {
        self.records.last().map(|r| self.position_of(r))
    }

    /// Says that `data[range]` is done with: when the chunk is mapped from a file, the whole
    /// pages of `range` (and the one it starts in) leave the process's resident memory. They
    /// stay in the page cache; reading them again maps them back, with the same bytes. A
    /// micro-batch thus holds mapped only the records it has not yet processed.
    pub fn release(&self, range: Range<usize>) {
        if let Some(m) = &self.mapping {
            m.release(range);
        }
    }
}

/// A read-only mapping of a part of an append-only file (the file stream's shard files).
#[derive(Clone)]
pub struct Mapping(Arc<memmap2::Mmap>);

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping")
            .field("len", &self.0.len())
            .finish()
    }
}

/// The mapped bytes as the owner of a [`Bytes`].
struct Mapped(Arc<memmap2::Mmap>);

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Mapping {
    /// The mapping, and its bytes (which keep it alive).
    pub(crate) fn new(m: memmap2::Mmap) -> (Mapping, Bytes) {
        let m = Arc::new(m);
        (Mapping(m.clone()), Bytes::from_owner(Mapped(m)))
    }

    /// Drops the pages from the one `range` starts in to the last one it covers whole.
    #[allow(unsafe_code)]
    pub(crate) fn release(&self, range: Range<usize>) {
        // SAFETY: sysconf only reads a constant of the system.
        let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            p if p > 0 => p as usize,
            _ => return,
        };
        let base = self.0.as_ptr() as usize;
        let len = self.0.len();
        let start = ((base + range.start.min(len)) / page * page).max(base.div_ceil(page) * page);
        let stop = (base + range.end.min(len)) / page * page;
        if stop <= start {
            return;
        }
        // SAFETY: the mapping is read-only and shared, of a file whose bytes below the length
        // seen when mapping never change (shard files are append-only, SPEC 6). MADV_DONTNEED
        // only unmaps the pages: a later read maps the same bytes back from the page cache, so
        // no reader (another slice of the chunk, a rejected record's bytes) sees a change.
        let _ = unsafe {
            self.0.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                start - base,
                stop - start,
            )
        };
    }
}

/// Limits on one read.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimit {
    pub max_records: usize,
    pub max_bytes: usize,
}

impl Default for ReadLimit {
    fn default() -> Self {
        Self {
            max_records: 100_000,
            max_bytes: 32 << 20,
        }
    }
}

/// A stream of records in shards.
///
/// # Contract
/// * Records of a shard come in shard order, each once per read, each with its position and
///   arrival time; positions only grow within a shard.
/// * `read(shard, After(p))` continues exactly after the record at `p`: reading a range twice
///   yields the same records (at-least-once sources are replayable). A read returns at most
///   `limit` records and may return fewer, even none, without being at the end.
/// * `caught_up` means no record of the shard is available now; more may arrive later.
///   `ended` means the shard is closed and fully read: it will never have more, and its
///   children (see [`ShardInfo::parents`]) may be read.
/// * An unknown shard is an error. Transient failures (throttling, 5xx) are retried inside
///   the source with backoff and counted in [`Chunk::retries`]; what is returned as an error
///   has exhausted its retries.
#[async_trait]
pub trait Source: Send + Sync + Debug {
    /// The stream's name, as the lake's `_stream` column shows it.
    fn name(&self) -> &str;

    /// The shards, sorted by id, with their parents.
    async fn shards(&self) -> Result<Vec<ShardInfo>>;

    /// Reads the next records of a shard.
    async fn read(&self, shard: &str, from: &StartAt, limit: ReadLimit) -> Result<Chunk>;
}

#[async_trait]
impl<T: Source + ?Sized> Source for std::sync::Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    async fn shards(&self) -> Result<Vec<ShardInfo>> {
        (**self).shards().await
    }
    async fn read(&self, shard: &str, from: &StartAt, limit: ReadLimit) -> Result<Chunk> {
        (**self).read(shard, from, limit).await
    }
}

/// Putting records on a stream, as tests, the gateway and `silt produce` need.
#[async_trait]
pub trait Sink: Send + Sync + Debug {
    /// Appends records to a shard chosen by the sink (`shard` is a hint: the in-memory and
    /// file streams honour it, Kinesis uses it as an explicit hash key index). Returns when
    /// every record is durably taken.
    async fn put(&self, shard_hint: usize, records: &[&[u8]]) -> Result<()>;

    /// Puts `(partition key, record)` pairs: records with one key land on one shard, in
    /// order (Kinesis hashes the key; the file and in-memory streams use [`shard_for_key`]).
    /// Returns when every record is durably taken; an error means some may not have been.
    async fn put_keyed(&self, records: &[(&str, &[u8])]) -> Result<PutStats>;
}

/// What a put did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PutStats {
    pub records: u64,
    pub calls: u64,
    /// Records put again after they failed (throttled, internal errors), and whole calls
    /// retried after a throttling or 5xx answer.
    pub retries: u64,
}

/// The shard (of `shards`) a partition key goes to on the file and in-memory streams: FNV-1a,
/// stable across runs and versions.
pub fn shard_for_key(key: &str, shards: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % shards.max(1) as u64) as usize
}

/// Splits keyed records into one group per shard, keeping their order.
pub fn group_by_shard<'a>(records: &[(&str, &'a [u8])], shards: usize) -> Vec<Vec<&'a [u8]>> {
    let mut groups = vec![Vec::new(); shards.max(1)];
    for (key, data) in records {
        groups[shard_for_key(key, shards)].push(*data);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_24_bytes_and_its_chunk_gives_its_position() {
        // A micro-batch holds one per record read: 56 bytes each before they were packed.
        assert_eq!(std::mem::size_of::<RecordRef>(), 24);
        let data = Bytes::from_static(b"abcdef");
        let offsets = Chunk {
            data: data.clone(),
            records: vec![RecordRef::new(0..2, 1, 100), RecordRef::new(2..6, 2, 112)],
            ..Default::default()
        };
        assert_eq!(offsets.payload(1), b"cdef");
        assert_eq!(offsets.position(0), Position::Offset(100));
        assert_eq!(offsets.last_position(), Some(Position::Offset(112)));
        let seq = |number: &str, sub| Position::Sequence {
            number: number.into(),
            sub,
        };
        let kinesis = Chunk {
            data,
            records: vec![RecordRef::new(0..2, 1, 0), RecordRef::new(2..6, 2, 1)],
            sequences: vec![seq("4955", 0), seq("4956", 3)],
            ..Default::default()
        };
        assert_eq!(kinesis.position(0), seq("4955", 0));
        assert_eq!(kinesis.last_position(), Some(seq("4956", 3)));
        assert_eq!(Chunk::default().last_position(), None);
    }
}
