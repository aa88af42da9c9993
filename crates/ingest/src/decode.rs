//! Decoding envelope records into Arrow record batches.
//!
//! Two passes, with deduplication in between (done by the caller):
//!
//! 1. [`EventDecoder::check`] splits each record's framing, finds its writer schema (through
//!    the registry, once per fingerprint), checks the body exactly against it
//!    ([`BodyCheck`]), and pulls out the `uuid` and event time. Bad records come out as
//!    [`Rejected`] with their reason; they never stop the run.
//! 2. [`EventDecoder::decode`] decodes the kept bodies into columns, one decoder per writer
//!    fingerprint (records grouped by writer, so interleaved versions do not cut batches into
//!    single rows), resolving each writer schema to the reader schema (the subject's latest
//!    version, so older records get its defaults), and appends the lake's metadata columns.
//!    Writers of flat records (numbers, dates, times, timestamps, decimals, booleans,
//!    strings, bytes, fixed, enums, each possibly in a union with null) that resolve without promotions or
//!    non-null defaults are decoded by [`FlatDecoder`], which relies on the check having
//!    passed each body; all others by arrow-avro.
//!
//! The `uuid` column is written as its 36-character string: DuckDB, pyarrow and Spark all read
//! a Parquet string as a string and compare it with a literal, whereas Parquet's UUID logical
//! type is read as raw bytes by Spark and older pyarrow.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    Array, ArrayRef, DictionaryArray, Int32Array, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondArray, TimestampMillisecondArray,
};
use arrow::buffer::{Buffer, OffsetBuffer};
use arrow::datatypes::Int32Type;
use arrow::datatypes::{DataType, Field, Schema as ArrowSchema, SchemaRef, TimeUnit};
use arrow_avro::reader::{Decoder as AvroDecoder, ReaderBuilder};
use arrow_avro::schema::{
    AvroSchema, Fingerprint as AvroFingerprint, FingerprintAlgorithm, SchemaStore,
};
use bytes::Bytes;
use silt_registry::SchemaRegistry;
use silt_wire::{timeuuid, BodyCheck, Fingerprint, Framing, Schema, WriterRef};

use crate::flat::FlatDecoder;
use crate::lake_shape;
use crate::source::{Chunk, Position};
use crate::{Error, Result};

/// Names of the metadata columns every raw row carries (SPEC 8).
pub use silt_wire::{ARRIVAL_TIME, EVENT_TIME, FINGERPRINT, SEQUENCE, SHARD, STREAM};

/// How far after its arrival an event's time may be by default ([`EventDecoder::with_max_future`]).
pub const DEFAULT_MAX_FUTURE: Duration = Duration::from_secs(5 * 60);

/// An instant as RFC 3339 (UTC, to the millisecond), from microseconds since the Unix epoch,
/// for reasons given to people.
pub fn micros_text(us: i64) -> String {
    match u64::try_from(us) {
        Ok(us) => {
            humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_micros(us))
                .to_string()
        }
        Err(_) => format!("{us} µs since 1970"),
    }
}

/// A span of microseconds in words, to the second (`3h 12m 5s`).
fn duration_text(us: i64) -> String {
    humantime::format_duration(Duration::from_secs(us.max(0) as u64 / 1_000_000)).to_string()
}

/// Feeds checked bodies of one writer to arrow-avro, each after the single-object prefix it
/// reads (`C3 01` and the writer's SHA-256, as its store is keyed; the bodies themselves are
/// fed from the mapped input as they are, no copy), and takes a batch each time one fills.
///
/// `renew`, when given, replaces the decoder after each batch it gives: arrow-avro 59's
/// decoder of a union of several types keeps counting its branches' offsets across batches,
/// so that its second batch fails ("Offsets must be non-negative and within the length of
/// the Array", apache/arrow-rs#10876, fixed upstream after 59.3); a new decoder starts at 0.
fn feed<'a>(
    decoder: &mut AvroDecoder,
    fingerprint: &Fingerprint,
    bodies: impl ExactSizeIterator<Item = &'a [u8]>,
    renew: Option<&dyn Fn() -> Result<AvroDecoder>>,
) -> Result<Vec<RecordBatch>> {
    let mut prefix = [0u8; 2 + 32];
    prefix[..2].copy_from_slice(&[0xC3, 0x01]);
    prefix[2..].copy_from_slice(fingerprint.as_bytes());
    let decode_err = |e: arrow_avro::errors::AvroError| Error::Decode {
        fingerprint: fingerprint.to_hex(),
        source: e.into(),
    };
    let n = bodies.len();
    let mut decoded = Vec::new();
    for (i, body) in bodies.enumerate() {
        let fed = decoder.decode(&prefix).map_err(decode_err)?;
        let read = decoder.decode(body).map_err(decode_err)?;
        if fed != prefix.len() || read != body.len() {
            return Err(Error::Internal(format!(
                "arrow-avro read {read} of a checked body's {} bytes",
                body.len()
            )));
        }
        if decoder.batch_is_full() || i + 1 == n {
            if let Some(b) = decoder.flush().map_err(decode_err)? {
                decoded.push(b);
                if let Some(renew) = renew {
                    *decoder = renew()?;
                }
            }
        }
    }
    Ok(decoded)
}

/// Decoded rows: how many, and the reader's columns (the `uuid` one to be replaced).
type Decoded = (usize, Vec<ArrayRef>);

/// Decodes checked bodies of one writer with its flat-record decoder, in batches of its
/// capacity.
fn decode_flat<'a>(
    flat: &mut FlatDecoder,
    bodies: impl Iterator<Item = &'a [u8]>,
) -> std::result::Result<Vec<Decoded>, String> {
    let mut decoded = Vec::new();
    let mut take = |flat: &mut FlatDecoder| -> std::result::Result<(), String> {
        let rows = flat.rows();
        decoded.push((rows, flat.take().map_err(|e| e.to_string())?));
        Ok(())
    };
    for body in bodies {
        flat.append(body).map_err(str::to_string)?;
        if flat.is_full() {
            take(flat)?;
        }
    }
    if flat.rows() > 0 {
        take(flat)?;
    }
    Ok(decoded)
}

/// A record that passed the check: where it is, who wrote it, and its id and time.
#[derive(Debug, Clone, Copy)]
pub struct Good {
    /// Index of its chunk in the slice given to `check`/`decode`.
    pub chunk: u32,
    /// Index of the record in its chunk.
    pub record: u32,
    /// Index of its writer (internal to the decoder).
    pub writer: u32,
    pub uuid: [u8; 16],
    /// Event time from the uuid, in microseconds since the Unix epoch.
    pub event_us: i64,
}

/// Every code a [`Rejected`] record may carry: the check's (`silt_wire::Error::code`), the
/// decoder's (`undecodable`, `future_event_time`) and the job's (`late`). What `silt redrive
/// --reason` takes.
pub const REJECT_CODES: &[&str] = &[
    "too_short",
    "bad_header",
    "unknown_fingerprint",
    "unreadable_writer",
    "bad_body",
    "trailing_bytes",
    "bad_uuid",
    "future_event_time",
    "undecodable",
    "late",
];

/// A record that did not pass, with what is needed to find and replay it.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub shard: String,
    pub position: Position,
    pub arrival_ms: i64,
    /// Short stable code (`too_short`, `bad_header`, `unknown_fingerprint`,
    /// `unreadable_writer`, `bad_body`, `trailing_bytes`, `bad_uuid`, `future_event_time`;
    /// the job adds `late`).
    pub code: &'static str,
    /// The reason in words.
    pub reason: String,
    pub raw: Bytes,
}

impl Rejected {
    /// Record `record` of `chunk` (read from `shard`), rejected for `code`: its raw bytes,
    /// position and arrival kept.
    pub fn of(
        chunk: &Chunk,
        record: usize,
        shard: &str,
        code: &'static str,
        reason: String,
    ) -> Self {
        let rec = &chunk.records[record];
        Self {
            shard: shard.to_string(),
            position: chunk.position_of(rec),
            arrival_ms: rec.arrival_ms,
            code,
            reason,
            raw: chunk.data.slice(rec.range()),
        }
    }
}

/// What a writer reference stands for, for this decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// A writer of the reader's subject: `writers[i]`.
    Known(u32),
    /// The registry did not know it at that time: asked again once `unknown_ttl` has passed,
    /// since a producer may register its schema after its first records went out.
    Unknown(Instant),
    /// A schema of another subject: a stream carrying many types ("one river"), whose other
    /// records are other jobs' events, not bad data.
    Other,
    /// A schema of the reader's subject that cannot be read with the reader schema (a version
    /// registered under the rule NONE, say): `unreadable[i]` says why.
    Unreadable(u32),
}

/// What the check made of one record.
enum Checked {
    Good(u32, [u8; 16], i64),
    Bad(silt_wire::Error),
    OtherSubject,
}

struct Writer {
    fingerprint: Fingerprint,
    schema: Arc<Schema>,
    check: BodyCheck,
    decoder: AvroDecoder,
    /// The decoder of flat records, when this writer's are (else arrow-avro decodes them).
    flat: Option<FlatDecoder>,
}

/// A record that passed the check but that arrow-avro refuses to decode (bytes that are not
/// UTF-8 read as a string through a promotion, say): found by
/// [`EventDecoder::decode_batches`], which then fails with [`Error::Undecodable`]; a decoder
/// told of it ([`EventDecoder::with_undecodable`]) rejects it in its check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable {
    pub shard: String,
    pub position: Position,
    /// arrow-avro's words.
    pub reason: String,
}

/// Decodes a stream's records into batches of the reader schema plus metadata columns.
pub struct EventDecoder {
    registry: Arc<dyn SchemaRegistry>,
    framing: Framing,
    stream: String,
    reader: Arc<Schema>,
    writers: Vec<Writer>,
    by_ref: HashMap<WriterRef, Slot>,
    /// The last writer looked up: records of one writer come in runs.
    last: Option<(WriterRef, Slot)>,
    /// Why each unreadable writer cannot be read (indexed by [`Slot::Unreadable`]).
    unreadable: Vec<String>,
    /// Records of other subjects passed over since [`Self::take_other_subjects`].
    other_subjects: u64,
    /// How long a writer the registry did not know stays unknown before it is asked again.
    unknown_ttl: Duration,
    /// How far an event's time may be after its arrival, in microseconds.
    max_future_us: i64,
    /// Records arrow-avro refused (shard, then position, to the reason): rejected by the check.
    undecodable: HashMap<String, HashMap<Position, String>>,
    /// The reader schema's Arrow shape, without arrow-avro's field metadata.
    event_schema: SchemaRef,
    output_schema: SchemaRef,
    uuid_index: usize,
    batch_size: usize,
    /// Whether flat records go through [`FlatDecoder`] ([`Self::with_flat_decoder`]).
    fast_path: bool,
    /// Whether the reader has a union of several types (arrow-avro's decoders of it are made
    /// anew after each batch: [`feed`]).
    unions: bool,
}

impl std::fmt::Debug for EventDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventDecoder")
            .field("stream", &self.stream)
            .field("reader", &self.reader.full_name())
            .field("writers", &self.writers.len())
            .finish()
    }
}

/// A field of the reader as the lake stores it: without arrow-avro's metadata, every union of
/// several types a struct of its branches, the fields of a record that may be null nullable
/// ([`crate::lake_shape`]).
fn strip_field(f: &Field) -> Field {
    lake_shape::lake_field(f)
}

/// arrow-avro's decoder from `writer` to `reader` (the outer error: the schema store refused
/// it; the inner: arrow-avro cannot resolve them).
fn avro_decoder(
    batch_size: usize,
    reader: &Schema,
    writer: &Schema,
) -> Result<std::result::Result<AvroDecoder, arrow::error::ArrowError>> {
    Ok(ReaderBuilder::new()
        .with_batch_size(batch_size)
        .with_reader_schema(AvroSchema::new(reader.json().to_string()))
        .with_writer_schema_store(avro_store(&writer.fingerprint(), writer)?)
        .build_decoder())
}

fn avro_store(fp: &Fingerprint, schema: &Schema) -> Result<SchemaStore> {
    let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::SHA256);
    store
        .set(
            AvroFingerprint::SHA256(fp.0),
            AvroSchema::new(schema.json().to_string()),
        )
        .map_err(|source| Error::Decode {
            fingerprint: fp.to_hex(),
            source,
        })?;
    Ok(store)
}

impl EventDecoder {
    /// A decoder for a stream whose records are read with `reader` (the subject's latest
    /// schema). The reader must be a record with a top-level `uuid` field (16-byte fixed or
    /// string).
    pub fn new(
        registry: Arc<dyn SchemaRegistry>,
        reader: Arc<Schema>,
        framing: Framing,
        stream: impl Into<String>,
    ) -> Result<Self> {
        // Registered before the registry refused such schemas, or read from elsewhere.
        if let Some((path, reason)) = reader.not_an_event() {
            return Err(Error::Config(format!(
                "schema {} cannot be the reader of a job: at {path}: {reason}",
                reader.full_name().unwrap_or("?")
            )));
        }
        let probe = ReaderBuilder::new()
            .with_reader_schema(AvroSchema::new(reader.json().to_string()))
            .with_writer_schema_store(avro_store(&reader.fingerprint(), &reader)?)
            .build_decoder()
            .map_err(|source| Error::Decode {
                fingerprint: reader.fingerprint().to_hex(),
                source,
            })?;
        let uuid_index = probe
            .schema()
            .index_of("uuid")
            .map_err(|e| Error::Config(e.to_string()))?;
        let event_fields: Vec<Field> = probe
            .schema()
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                if i == uuid_index {
                    Field::new("uuid", DataType::Utf8, false)
                } else {
                    strip_field(f)
                }
            })
            .collect();
        let event_schema = Arc::new(ArrowSchema::new(event_fields.clone()));
        let mut all = event_fields;
        all.extend(metadata_fields());
        Ok(Self {
            registry,
            framing,
            stream: stream.into(),
            reader,
            writers: Vec::new(),
            by_ref: HashMap::new(),
            last: None,
            unreadable: Vec::new(),
            other_subjects: 0,
            unknown_ttl: Duration::from_secs(30),
            max_future_us: DEFAULT_MAX_FUTURE.as_micros() as i64,
            undecodable: HashMap::new(),
            event_schema,
            output_schema: Arc::new(ArrowSchema::new(all)),
            uuid_index,
            // Larger batches measured slower (the builders preallocate for the whole size).
            batch_size: 8192,
            fast_path: true,
            unions: probe
                .schema()
                .fields()
                .iter()
                .any(|f| lake_shape::has_union(f.data_type())),
        })
    }

    /// The schema of decoded batches: the reader's fields, then the metadata columns.
    pub fn schema(&self) -> SchemaRef {
        self.output_schema.clone()
    }

    /// The reader schema.
    pub fn reader(&self) -> &Arc<Schema> {
        &self.reader
    }

    /// How long a writer the registry does not know is remembered as unknown before the
    /// registry is asked again (30 s; a `--follow` run must find a schema registered after
    /// its producer's first records, which were rejected meanwhile).
    pub fn with_unknown_ttl(mut self, ttl: Duration) -> Self {
        self.unknown_ttl = ttl;
        self
    }

    /// How far after its arrival on the stream an event's time (its TimeUuid's) may be before
    /// the record is rejected as `future_event_time`: a producer whose clock is wrong. Such
    /// an event would move the dedup watermark ahead of every other producer, and their
    /// events would all be judged late. Default [`DEFAULT_MAX_FUTURE`].
    pub fn with_max_future(mut self, max: Duration) -> Self {
        self.max_future_us = i64::try_from(max.as_micros()).unwrap_or(i64::MAX);
        self
    }

    /// Whether the records of flat writer schemas (numbers, dates, times, timestamps,
    /// decimals, booleans, strings, bytes, fixed, enums, each possibly in a union with null)
    /// are decoded by silt's own columnar decoder (the default; about twice as fast) or, like
    /// all others, by arrow-avro. The two give the same batches; this is for comparing them.
    pub fn with_flat_decoder(mut self, on: bool) -> Self {
        self.fast_path = on;
        if !on {
            for w in &mut self.writers {
                w.flat = None;
            }
        }
        self
    }

    /// Whether the records of writer `fingerprint` are decoded by the flat-record decoder
    /// (`Some(false)`: by arrow-avro; `None`: no such writer seen yet, or it is unreadable).
    pub fn uses_flat_decoder(&self, fingerprint: &Fingerprint) -> Option<bool> {
        self.writers
            .iter()
            .find(|w| w.fingerprint == *fingerprint)
            .map(|w| w.flat.is_some())
    }

    /// Records to reject in the check as `undecodable`: those a decode of the same records
    /// refused before (the job starts the micro-batch again with them).
    pub fn with_undecodable(mut self, records: &[Undecodable]) -> Self {
        for r in records {
            self.undecodable
                .entry(r.shard.clone())
                .or_default()
                .insert(r.position.clone(), r.reason.clone());
        }
        self
    }

    /// How many records of other subjects the checks passed over since the last call (a
    /// stream that carries many types: each job takes its own subject's records).
    pub fn take_other_subjects(&mut self) -> u64 {
        std::mem::take(&mut self.other_subjects)
    }

    async fn writer(&mut self, writer: WriterRef) -> Result<Slot> {
        match self.by_ref.get(&writer) {
            Some(Slot::Unknown(at)) if at.elapsed() >= self.unknown_ttl => {}
            Some(w) => return Ok(*w),
            None => {}
        }
        let found = match writer {
            WriterRef::Sha256(fp) => self.registry.by_fingerprint(&fp).await,
            WriterRef::Rabin(fp) => self.registry.by_rabin(fp).await,
            WriterRef::ConfluentId(id) => self.registry.by_id(id).await,
        };
        let slot = match found {
            Ok((subject, _)) if Some(subject.as_str()) != self.reader.full_name() => Slot::Other,
            Ok((subject, schema)) => {
                if schema.fingerprint() != self.reader.fingerprint() {
                    self.check_not_newer(&subject, &schema).await?;
                }
                self.add_writer(&schema)?
            }
            Err(silt_registry::Error::NotFound { .. }) => Slot::Unknown(Instant::now()),
            Err(e) => return Err(e.into()),
        };
        self.by_ref.insert(writer, slot);
        Ok(slot)
    }

    /// Fails with [`Error::ReaderOutdated`] when `writer` is a later version of the subject
    /// than the reader (asked of the registry's version list, which is not cached).
    async fn check_not_newer(&self, subject: &str, writer: &Schema) -> Result<()> {
        let versions = self.registry.versions(subject).await?;
        let version_of = |fp: Fingerprint| {
            versions
                .iter()
                .find(|r| r.fingerprint == fp)
                .map(|r| r.version)
        };
        match (
            version_of(self.reader.fingerprint()),
            version_of(writer.fingerprint()),
        ) {
            (Some(reader_version), Some(writer_version)) if writer_version > reader_version => {
                Err(Error::ReaderOutdated {
                    subject: subject.to_string(),
                    reader_version,
                    writer_version,
                })
            }
            _ => Ok(()),
        }
    }

    /// A decoder from a writer of the reader's subject to the reader schema, or why there is
    /// none.
    /// arrow-avro's decoder from `schema` to the reader schema (the outer error: the schema
    /// store refused it; the inner: arrow-avro cannot resolve them).
    fn avro_decoder(
        &self,
        schema: &Schema,
    ) -> Result<std::result::Result<AvroDecoder, arrow::error::ArrowError>> {
        avro_decoder(self.batch_size, &self.reader, schema)
    }

    /// A fresh decoder for writer `w` after each batch, when the reader has a union of several
    /// types (see [`feed`]); else none.
    fn renewal(&self, w: usize) -> Option<impl Fn() -> Result<AvroDecoder>> {
        let (batch_size, reader) = (self.batch_size, self.reader.clone());
        let writer = self.writers[w].schema.clone();
        self.unions.then_some(move || {
            avro_decoder(batch_size, &reader, &writer)?.map_err(|source| Error::Decode {
                fingerprint: writer.fingerprint().to_hex(),
                source,
            })
        })
    }

    fn add_writer(&mut self, schema: &Arc<Schema>) -> Result<Slot> {
        let fp = schema.fingerprint();
        // Resolution is judged once per writer, by the rules the registry checks with: a
        // writer that cannot be resolved has every record rejected with the fields that stop
        // it, rather than the columnar decoder failing (and so the run, again and again) at
        // the first record that uses one of them, such as an enum symbol the reader lacks.
        let issues = silt_wire::resolution::incompatibilities(&self.reader, schema);
        let built = if issues.is_empty() {
            self.avro_decoder(schema)?.map_err(|e| e.to_string())
        } else {
            Err(issues
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join("; "))
        };
        let decoder = match built {
            Ok(d) => d,
            Err(reason) => {
                tracing::warn!(writer = %fp, %reason, "a writer schema of the subject cannot be read with its latest schema");
                self.unreadable.push(reason);
                return Ok(Slot::Unreadable(self.unreadable.len() as u32 - 1));
            }
        };
        let index = self.writers.len() as u32;
        let flat = self
            .fast_path
            .then(|| {
                FlatDecoder::new(
                    schema,
                    &self.reader,
                    &self.event_schema,
                    self.uuid_index,
                    self.batch_size,
                )
            })
            .flatten();
        self.writers.push(Writer {
            fingerprint: fp,
            schema: schema.clone(),
            check: BodyCheck::new(schema),
            decoder,
            flat,
        });
        Ok(Slot::Known(index))
    }

    /// Checks every record of `chunks` (chunk `i` read from `shards[i]`): good ones are
    /// appended to `good`, bad ones to `rejected`.
    pub async fn check(
        &mut self,
        chunks: &[Chunk],
        shards: &[&str],
        good: &mut Vec<Good>,
        rejected: &mut Vec<Rejected>,
    ) -> Result<()> {
        for (ci, chunk) in chunks.iter().enumerate() {
            self.check_records(
                chunks,
                ci,
                shards[ci],
                0..chunk.records.len(),
                good,
                rejected,
            )
            .await?;
        }
        Ok(())
    }

    /// Checks the records `records` of `chunks[chunk]` (read from `shard`): good ones are
    /// appended to `good`, bad ones to `rejected`. Checking a micro-batch a slice at a time,
    /// each slice decoded right after, keeps the bodies in cache between the two.
    pub async fn check_records(
        &mut self,
        chunks: &[Chunk],
        chunk: usize,
        shard: &str,
        records: std::ops::Range<usize>,
        good: &mut Vec<Good>,
        rejected: &mut Vec<Rejected>,
    ) -> Result<()> {
        let c = &chunks[chunk];
        for ri in records {
            let rec = &c.records[ri];
            let payload = &c.data[rec.range()];
            let reject =
                |code: &'static str, reason: String| Rejected::of(c, ri, shard, code, reason);
            let arrival_us = rec.arrival_ms.saturating_mul(1000);
            if !self.undecodable.is_empty() {
                if let Some(reason) = self
                    .undecodable
                    .get(shard)
                    .and_then(|m| m.get(&c.position_of(rec)))
                {
                    rejected.push(reject(
                        "undecodable",
                        format!("the body checks against its writer schema, but arrow-avro cannot decode it: {reason}"),
                    ));
                    continue;
                }
            }
            match self.check_one(payload).await? {
                Checked::Good(_, uuid, event_us)
                    if event_us > arrival_us.saturating_add(self.max_future_us) =>
                {
                    rejected.push(reject(
                        "future_event_time",
                        format!(
                            "event time {} (from uuid {}) is {} after the record's arrival {}, more than the {} allowed: the producer's clock is wrong",
                            micros_text(event_us),
                            timeuuid::to_string(&uuid),
                            duration_text(event_us - arrival_us),
                            micros_text(arrival_us),
                            duration_text(self.max_future_us),
                        ),
                    ))
                }
                Checked::Good(writer, uuid, event_us) => good.push(Good {
                    chunk: chunk as u32,
                    record: ri as u32,
                    writer,
                    uuid,
                    event_us,
                }),
                Checked::OtherSubject => self.other_subjects += 1,
                Checked::Bad(e) => rejected.push(reject(e.code(), e.to_string())),
            }
        }
        Ok(())
    }

    /// An error fails the run (registry unreachable); [`Checked::Bad`] rejects the record.
    #[inline]
    async fn check_one(&mut self, payload: &[u8]) -> Result<Checked> {
        let framed = match self.framing.split(payload) {
            Ok(f) => f,
            Err(e) => return Ok(Checked::Bad(e)),
        };
        let known = match self.last {
            // Runs of one writer skip the map; an unknown one is looked up each time (its
            // entry expires).
            Some((r, w)) if r == framed.writer && !matches!(w, Slot::Unknown(_)) => w,
            _ => {
                let w = self.writer(framed.writer).await?;
                self.last = Some((framed.writer, w));
                w
            }
        };
        let w = match known {
            Slot::Known(w) => w,
            Slot::Other => return Ok(Checked::OtherSubject),
            Slot::Unknown(_) => {
                return Ok(Checked::Bad(silt_wire::Error::UnknownWriter {
                    writer: framed.writer,
                }))
            }
            Slot::Unreadable(i) => {
                return Ok(Checked::Bad(silt_wire::Error::UnreadableWriter {
                    writer: framed.writer,
                    reason: self.unreadable[i as usize].clone(),
                }))
            }
        };
        let checked = match self.writers[w as usize].check.check(framed.body) {
            Ok(c) => c,
            Err(e) => return Ok(Checked::Bad(e)),
        };
        let Some(uuid) = checked.uuid else {
            return Ok(Checked::Bad(silt_wire::Error::BadUuid {
                reason: "the writer schema has no top-level `uuid` field".into(),
            }));
        };
        let Some(event_us) = timeuuid::unix_micros(&uuid) else {
            return Ok(Checked::Bad(silt_wire::Error::BadUuid {
                reason: format!(
                    "{} is a version-{} UUID, not a version-1 TimeUuid, so it has no event time",
                    timeuuid::to_string(&uuid),
                    timeuuid::version(&uuid)
                ),
            }));
        };
        Ok(Checked::Good(w, uuid, event_us))
    }

    /// The records of `group` that arrow-avro refuses, each fed alone (after a refusal the
    /// decoder is made anew: it may hold part of a row). The writer's decoder is replaced too.
    fn refused<'a>(
        &mut self,
        w: usize,
        group: &[&Good],
        chunks: &[Chunk],
        shards: &[&str],
        body_of: &impl Fn(&Good) -> &'a [u8],
    ) -> Result<Vec<Undecodable>> {
        let schema = self.writers[w].schema.clone();
        let fingerprint = self.writers[w].fingerprint;
        let fresh = |this: &Self| -> Result<AvroDecoder> {
            this.avro_decoder(&schema)?.map_err(|source| Error::Decode {
                fingerprint: fingerprint.to_hex(),
                source,
            })
        };
        let mut decoder = fresh(self)?;
        let mut refused = Vec::new();
        let renew = self.renewal(w);
        for g in group {
            let renew = renew
                .as_ref()
                .map(|r| r as &dyn Fn() -> Result<AvroDecoder>);
            match feed(
                &mut decoder,
                &fingerprint,
                std::iter::once(body_of(g)),
                renew,
            ) {
                Ok(_) => {}
                Err(Error::Decode { source, .. }) => {
                    refused.push(Undecodable {
                        shard: shards[g.chunk as usize].to_string(),
                        position: chunks[g.chunk as usize].position(g.record as usize),
                        reason: source.to_string(),
                    });
                    decoder = fresh(self)?;
                }
                Err(e) => return Err(e),
            }
        }
        self.writers[w].decoder = fresh(self)?;
        Ok(refused)
    }

    /// Decodes the `kept` records (from `check`, possibly filtered) into one batch of
    /// [`Self::schema`], grouped by writer in order of first appearance.
    pub fn decode(
        &mut self,
        chunks: &[Chunk],
        shards: &[&str],
        kept: &[Good],
    ) -> Result<Option<RecordBatch>> {
        let mut batches = self.decode_batches(chunks, shards, kept)?;
        if batches.len() <= 1 {
            return Ok(batches.pop());
        }
        let batch =
            arrow::compute::concat_batches(&self.output_schema, &batches).map_err(Error::Arrow)?;
        Ok(Some(batch))
    }

    /// Decodes the `kept` records into batches of [`Self::schema`] of at most 8,192 rows, as
    /// arrow-avro makes them (no copy into one batch), grouped by writer in order of first
    /// appearance.
    pub fn decode_batches(
        &mut self,
        chunks: &[Chunk],
        shards: &[&str],
        kept: &[Good],
    ) -> Result<Vec<RecordBatch>> {
        if kept.is_empty() {
            return Ok(Vec::new());
        }
        let mut groups: Vec<Vec<&Good>> = vec![Vec::new(); self.writers.len()];
        let mut order: Vec<u32> = Vec::new();
        for g in kept {
            let v = &mut groups[g.writer as usize];
            if v.is_empty() {
                order.push(g.writer);
            }
            v.push(g);
        }
        let mut batches = Vec::with_capacity(order.len());
        let prefix_len = self.framing.prefix_len();
        let body_of = |g: &Good| {
            let chunk = &chunks[g.chunk as usize];
            let rec = &chunk.records[g.record as usize];
            &chunk.data[rec.start as usize + prefix_len..rec.end as usize]
        };
        for w in order {
            let group = &groups[w as usize];
            let renew = self.renewal(w as usize);
            let writer = &mut self.writers[w as usize];
            let flat = match writer.flat.as_mut() {
                Some(flat) => match decode_flat(flat, group.iter().map(|g| body_of(g))) {
                    Ok(columns) => Some(columns),
                    Err(reason) => {
                        // Cannot happen for checked records; arrow-avro decodes them instead.
                        tracing::warn!(writer = %writer.fingerprint, %reason, "the flat-record decoder failed; arrow-avro decodes this writer's records from now on");
                        writer.flat = None;
                        None
                    }
                },
                None => None,
            };
            let decoded = match flat {
                Some(columns) => columns,
                None => match feed(
                    &mut writer.decoder,
                    &writer.fingerprint,
                    group.iter().map(|g| body_of(g)),
                    renew
                        .as_ref()
                        .map(|r| r as &dyn Fn() -> Result<AvroDecoder>),
                ) {
                    Ok(d) => d
                        .into_iter()
                        .map(|b| (b.num_rows(), b.columns().to_vec()))
                        .collect(),
                    Err(e @ Error::Decode { .. }) => {
                        // Which records does arrow-avro refuse? One at a time, to name them.
                        let refused = self.refused(w as usize, group, chunks, shards, &body_of)?;
                        return Err(if refused.is_empty() {
                            e
                        } else {
                            Error::Undecodable {
                                fingerprint: self.writers[w as usize].fingerprint.to_hex(),
                                records: refused,
                            }
                        });
                    }
                    Err(e) => return Err(e),
                },
            };
            let writer = &self.writers[w as usize];
            let rows: usize = decoded.iter().map(|(n, _)| n).sum();
            if rows != group.len() {
                return Err(Error::Internal(format!(
                    "decoded {rows} rows from {} checked records",
                    group.len()
                )));
            }
            let fp_hex = writer.fingerprint.to_hex();
            let mut offset = 0;
            for (n, columns) in decoded {
                batches.push(self.finish(
                    columns,
                    &group[offset..offset + n],
                    chunks,
                    shards,
                    &fp_hex,
                )?);
                offset += n;
            }
        }
        Ok(batches)
    }

    /// Casts a decoded batch to the event schema, replaces `uuid` with its string form, and
    /// appends the metadata columns.
    fn finish(
        &self,
        decoded: Vec<ArrayRef>,
        rows: &[&Good],
        chunks: &[Chunk],
        shards: &[&str],
        fp_hex: &str,
    ) -> Result<RecordBatch> {
        let n = rows.len();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.output_schema.fields().len());
        for (i, field) in self.event_schema.fields().iter().enumerate() {
            if i == self.uuid_index {
                // Every id is 36 ASCII characters: written straight into the values buffer.
                let mut values = Vec::with_capacity(n * 36);
                let mut buf = [0u8; 36];
                for g in rows {
                    timeuuid::write_ascii(&g.uuid, &mut buf);
                    values.extend_from_slice(&buf);
                }
                let offsets = OffsetBuffer::from_lengths(std::iter::repeat_n(36, n));
                columns.push(Arc::new(
                    StringArray::try_new(offsets, Buffer::from_vec(values), None)
                        .map_err(Error::Arrow)?,
                ));
                continue;
            }
            let col = &decoded[i];
            if col.data_type() == field.data_type() {
                columns.push(col.clone());
            } else {
                let col = lake_shape::to_lake(col, field.is_nullable()).map_err(Error::Arrow)?;
                columns.push(match col.data_type() == field.data_type() {
                    true => col,
                    false => arrow::compute::cast(&col, field.data_type()).map_err(Error::Arrow)?,
                });
            }
        }
        columns.push(Arc::new(
            TimestampMicrosecondArray::from_iter_values(rows.iter().map(|g| g.event_us))
                .with_timezone("UTC"),
        ));
        columns.push(Arc::new(
            TimestampMillisecondArray::from_iter_values(
                rows.iter()
                    .map(|g| chunks[g.chunk as usize].records[g.record as usize].arrival_ms),
            )
            .with_timezone("UTC"),
        ));
        // Stream, shard and fingerprint take few values: dictionary columns, one key a row,
        // rather than the same text copied into every row.
        let dictionary = |keys: Int32Array, values: StringArray| {
            Arc::new(
                DictionaryArray::<Int32Type>::try_new(keys, Arc::new(values))
                    .expect("keys index the values"),
            ) as ArrayRef
        };
        let constant =
            |v: &str| dictionary(Int32Array::from(vec![0; n]), StringArray::from(vec![v]));
        columns.push(constant(&self.stream));
        let mut seq_col = StringBuilder::with_capacity(n, n * 10);
        let mut itoa_buf = itoa::Buffer::new();
        for g in rows {
            let c = &chunks[g.chunk as usize];
            let rec = &c.records[g.record as usize];
            match c.sequence_of(rec) {
                None => seq_col.append_value(itoa_buf.format(rec.pos)),
                Some(p) => {
                    // Written into the builder's value in place, not made a String first.
                    write!(seq_col, "{p}").expect("a builder takes any text");
                    seq_col.append_value("");
                }
            }
        }
        columns.push(dictionary(
            rows.iter().map(|g| g.chunk as i32).collect(),
            StringArray::from(shards.to_vec()),
        ));
        columns.push(Arc::new(seq_col.finish()));
        columns.push(constant(fp_hex));
        RecordBatch::try_new(self.output_schema.clone(), columns).map_err(Error::Arrow)
    }
}

/// The metadata columns of SPEC 8, in order.
pub fn metadata_fields() -> Vec<Field> {
    vec![
        Field::new(
            EVENT_TIME,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new(
            ARRIVAL_TIME,
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new(STREAM, text_dictionary(), false),
        Field::new(SHARD, text_dictionary(), false),
        Field::new(SEQUENCE, DataType::Utf8, false),
        Field::new(FINGERPRINT, text_dictionary(), false),
    ]
}

/// Dictionary-encoded text: how the low-cardinality metadata columns are typed (readers see
/// strings; Parquet stores them dictionary-encoded either way).
fn text_dictionary() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// The rejected-records table's schema.
pub fn rejected_schema() -> SchemaRef {
    Arc::new(ArrowSchema::new(vec![
        Field::new(STREAM, DataType::Utf8, false),
        Field::new(SHARD, DataType::Utf8, false),
        Field::new(SEQUENCE, DataType::Utf8, false),
        Field::new(
            ARRIVAL_TIME,
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("reason_code", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("raw", DataType::Binary, false),
    ]))
}

/// Rejected records as a batch of [`rejected_schema`].
pub fn rejected_batch(stream: &str, rejected: &[Rejected]) -> Result<RecordBatch> {
    use arrow::array::BinaryBuilder;
    let mut s = StringBuilder::new();
    let mut shard = StringBuilder::new();
    let mut seq = StringBuilder::new();
    let mut code = StringBuilder::new();
    let mut reason = StringBuilder::new();
    let mut raw = BinaryBuilder::new();
    for r in rejected {
        s.append_value(stream);
        shard.append_value(&r.shard);
        seq.append_value(r.position.to_string());
        code.append_value(r.code);
        reason.append_value(&r.reason);
        raw.append_value(&r.raw);
    }
    let arrival =
        TimestampMillisecondArray::from_iter_values(rejected.iter().map(|r| r.arrival_ms))
            .with_timezone("UTC");
    RecordBatch::try_new(
        rejected_schema(),
        vec![
            Arc::new(s.finish()),
            Arc::new(shard.finish()),
            Arc::new(seq.finish()),
            Arc::new(arrival),
            Arc::new(code.finish()),
            Arc::new(reason.finish()),
            Arc::new(raw.finish()),
        ],
    )
    .map_err(Error::Arrow)
}
