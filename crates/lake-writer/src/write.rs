//! Writing one micro-batch of a table as Parquet files, partition by partition.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use serde::{Deserialize, Serialize};
use silt_storage::Location;

use crate::partition::{hive_path, split, PartitionBatch};
use crate::runs::ParquetFile;
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
    /// Ends the names of the files written (`part-{batch}-{n}-{tag}.parquet`), when not
    /// empty. A command that commits a micro-batch of its own beside the stream job (a
    /// backfill, a re-drive) tags its files, so that the job's run of the same micro-batch number, racing
    /// it to the commit, never writes over them or has them written over its own: the commit
    /// decides which files count, and the loser's are vacuumed as a killed writer's (a beaten
    /// backfill moves those it keeps to the next micro-batch's names, [`with_batch`]).
    pub file_tag: &'static str,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            target_file_bytes: 128 << 20,
            row_group_rows: 1 << 20,
            compression: Codec::Zstd(1),
            file_tag: "",
        }
    }
}

/// Bytes of encoded values a data page holds before it is compressed and a new one started
/// (Parquet's writers default to 1 MiB). zstd picks smaller match tables for inputs of this
/// size, which stay in cache: the bench's encoding is 6-8% faster for the same file size, and
/// the page index prunes in finer steps.
pub const DATA_PAGE_BYTES: usize = 128 << 10;

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
    /// The Parquet writer settings: compression, page statistics, [`DATA_PAGE_BYTES`] pages,
    /// a fixed `created_by` so that a rerun writes the same bytes.
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
            .set_data_page_size_limit(DATA_PAGE_BYTES)
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
    /// For a file of a `partitions` transform: which SQL wrote it (a short hash), so that the
    /// job merges new groups only into rows of the same SQL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// Written by a compaction (the merge of smaller files of its partition): once an hour has
    /// one, the job merges its small files down to one, however few files the hour has left.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compacted: bool,
    /// Which columns the file has: [`schema_key`] of its Arrow schema, so that compaction
    /// knows which files share a schema from the commit alone. Files written before silt
    /// recorded it have none (their footers tell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The file is stored at `path` as written: its partition values escaped as Hive escapes
    /// them (`country=a%2Fb` for `a/b`), which DuckDB, Spark and pyarrow decode once. Files
    /// written before silt stored them so are at `path` encoded once more by the object store
    /// (`a%252Fb`), and have no mark; nor do files whose path both ways name alike (every
    /// `dt=.../hr=...`, most values): the mark is written only where the two differ, so that
    /// older silts still find every file they can.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub as_written: bool,
}

/// 16 hex digits of the SHA-256 of `bytes`: how a file's entry names what wrote it (the SQL of
/// a transform, [`DataFile::sql`]) and its columns ([`schema_key`]).
pub fn short_hash(bytes: &[u8]) -> String {
    use sha2::Digest;
    use std::fmt::Write;
    sha2::Sha256::digest(bytes)[..8]
        .iter()
        .fold(String::with_capacity(16), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// A short name for an Arrow schema ([`short_hash`] of its fields' names, types, nullability
/// and metadata, and its own metadata): files of equal schemas have equal keys. Only compared
/// within one lake, to group files: a silt whose Arrow names a type differently may give
/// another key for the same schema, which at worst keeps two files apart.
pub fn schema_key(schema: &arrow::datatypes::Schema) -> String {
    use std::fmt::Write;
    fn sorted(m: &HashMap<String, String>) -> Vec<(&String, &String)> {
        let mut v: Vec<_> = m.iter().collect();
        v.sort();
        v
    }
    let mut text = String::new();
    for f in schema.fields() {
        let _ = writeln!(
            text,
            "{:?} {} {} {:?}",
            f.name(),
            f.data_type(),
            f.is_nullable(),
            sorted(f.metadata())
        );
    }
    let _ = write!(text, "{:?}", sorted(&schema.metadata));
    short_hash(text.as_bytes())
}

/// The key that the object store gives the text `rel` (each segment percent-encoded by its
/// rules: `%`, `#`, non-ASCII...): where files without [`DataFile::as_written`] are.
fn encoded_key(rel: &str) -> String {
    object_store::path::Path::from(rel).as_ref().to_string()
}

/// Whether a file stored at `rel` as written needs the [`DataFile::as_written`] mark.
pub(crate) fn needs_mark(rel: &str) -> bool {
    encoded_key(rel) != rel
}

impl DataFile {
    /// The file's key below its table's folder, as the store lists it.
    pub fn key(&self) -> std::borrow::Cow<'_, str> {
        if self.as_written {
            self.path.as_str().into()
        } else {
            encoded_key(&self.path).into()
        }
    }

    /// Where `table`'s store holds the file.
    pub fn location(&self, table: &Location) -> object_store::path::Path {
        table.key(&self.key())
    }

    /// This file under another `path` below its table (renamed, copied), stored there as
    /// written.
    pub fn moved_to(&self, path: String) -> DataFile {
        DataFile {
            as_written: needs_mark(&path),
            path,
            ..self.clone()
        }
    }

    /// The micro-batch that wrote the file, from its name.
    pub fn batch(&self) -> Option<u64> {
        batch_of(&self.path)
    }
}

/// Reads a data file of `table` back in batches of `batch_rows`, with its partition values
/// as constant columns after the file's own, as the job had them before the writer split them
/// off into the path: typed as `partitions` has them (text that is never null where it does
/// not name them), an empty value null where the column may be null.
pub async fn read_data_file(
    table: &Location,
    file: &DataFile,
    batch_rows: usize,
    partitions: &[arrow::datatypes::FieldRef],
) -> Result<Vec<RecordBatch>> {
    use arrow::array::{Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    let path = file.location(table);
    let bytes = async { table.store.get(&path).await?.bytes().await }
        .await
        .map_err(|source| Error::Store {
            path: path.to_string(),
            source,
        })?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.with_batch_size(batch_rows).build())
        .map_err(Error::Parquet)?;
    let fields: Vec<Field> = file
        .partition
        .iter()
        .map(|(k, _)| match partitions.iter().find(|p| p.name() == k) {
            Some(p) => p.as_ref().clone(),
            None => Field::new(k, DataType::Utf8, false),
        })
        .collect();
    let mut out = Vec::new();
    for b in reader {
        let b = b.map_err(Error::Arrow)?;
        let mut schema: Vec<Field> = b
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let mut columns = b.columns().to_vec();
        for ((_, v), field) in file.partition.iter().zip(&fields) {
            let text: Arc<dyn Array> = if v.is_empty() && field.is_nullable() {
                Arc::new(StringArray::new_null(b.num_rows()))
            } else {
                Arc::new(StringArray::from(vec![v.as_str(); b.num_rows()]))
            };
            columns.push(if field.data_type() == &DataType::Utf8 {
                text
            } else {
                arrow::compute::cast(&text, field.data_type()).map_err(Error::Arrow)?
            });
            schema.push(field.clone());
        }
        out.push(
            RecordBatch::try_new(Arc::new(Schema::new(schema)), columns).map_err(Error::Arrow)?,
        );
    }
    Ok(out)
}

/// The Arrow schema of a data file of `table` (its own columns, partition columns not
/// included), from its footer alone (one read of the file's end, a second only when the
/// footer is larger).
pub async fn data_file_schema(
    table: &Location,
    file: &DataFile,
) -> Result<arrow::datatypes::SchemaRef> {
    use parquet::errors::ParquetError;
    use parquet::file::metadata::ParquetMetaDataReader;
    let path = file.location(table);
    let len = file.bytes;
    let tail = |n: u64| {
        let path = &path;
        async move {
            table
                .store
                .get_range(path, len.saturating_sub(n)..len)
                .await
                .map_err(|source| Error::Store {
                    path: path.to_string(),
                    source,
                })
        }
    };
    let mut reader = ParquetMetaDataReader::new();
    let mut bytes = tail(64 << 10).await?;
    loop {
        match reader.try_parse_sized(&bytes, len) {
            Ok(()) => break,
            Err(ParquetError::NeedMoreData(needed)) => bytes = tail(needed as u64).await?,
            Err(e) => return Err(Error::Parquet(e)),
        }
    }
    let meta = reader.finish().map_err(Error::Parquet)?;
    let schema = parquet::arrow::parquet_to_arrow_schema(
        meta.file_metadata().schema_descr(),
        meta.file_metadata().key_value_metadata(),
    )
    .map_err(Error::Parquet)?;
    Ok(std::sync::Arc::new(schema))
}

/// The micro-batch number in a data file name (`part-{batch}-{n}.parquet`).
pub fn batch_of(path: &str) -> Option<u64> {
    let name = path.rsplit('/').next()?;
    name.strip_prefix("part-")?.split('-').next()?.parse().ok()
}

/// A data file's path with the name it would have in micro-batch `batch` (its folder, number
/// and tag the same); none when it is not a data file name.
pub fn with_batch(path: &str, batch: u64) -> Option<String> {
    let (dir, name) = match path.rsplit_once('/') {
        Some((dir, name)) => (Some(dir), name),
        None => (None, path),
    };
    let (_, rest) = name.strip_prefix("part-")?.split_once('-')?;
    let name = format!("part-{batch:010}-{rest}");
    Some(match dir {
        Some(dir) => format!("{dir}/{name}"),
        None => name,
    })
}

/// The tag in a data file name (`part-{batch}-{n}-{tag}.parquet`), if it has one.
pub fn tag_of(path: &str) -> Option<&str> {
    let name = path.rsplit('/').next()?.strip_suffix(".parquet")?;
    name.strip_prefix("part-")?.splitn(3, '-').nth(2)
}

/// The file name for the `n`-th file of a partition in a micro-batch, with
/// [`WriterOptions::file_tag`]. Deterministic: a rerun of the batch overwrites the same names
/// with the same bytes.
pub fn file_name(batch: u64, n: usize, tag: &str) -> String {
    if tag.is_empty() {
        format!("part-{batch:010}-{n:04}.parquet")
    } else {
        format!("part-{batch:010}-{n:04}-{tag}.parquet")
    }
}

/// One partition's file in progress.
struct OpenFile {
    /// `k=v/k=v`, empty when the table is unpartitioned.
    dir: String,
    values: Vec<(String, String)>,
    writer: ParquetFile,
    rows: u64,
    /// This file's number within the partition.
    n: usize,
    /// [`schema_key`] of its columns.
    schema: String,
    /// Per table of copied columns: whether its file is this one whole (all its columns, in
    /// order), stored as a copy of this file rather than written.
    whole: Vec<bool>,
}

/// A file closed and encoded, not yet put.
struct Encoded {
    dir: String,
    values: Vec<(String, String)>,
    n: usize,
    bytes: Vec<u8>,
    rows: u64,
    schema: String,
    /// The file's column copies' bytes, one per [`TableWriter::copy_columns`]; none for a
    /// copy of the whole file.
    copies: Vec<Option<Vec<u8>>>,
}

/// A table written file for file with a [`TableWriter`]'s table, of some of its columns.
struct CopyTable {
    table: Location,
    /// The columns of its files.
    schema: SchemaRef,
    /// Per column of `schema`: the name of the column of this table it is a copy of.
    sources: Vec<String>,
    /// [`schema_key`] of `schema`.
    key: String,
    put: Vec<(String, usize, DataFile)>,
    timings: WriteTimings,
}

/// Writes one micro-batch of a table as it comes, batch by batch: rows are split by
/// partition and encoded at once into that partition's open Parquet file, so the job holds
/// compressed pages, not the micro-batch's rows. A file is closed when it reaches
/// [`WriterOptions::target_file_bytes`]; [`put_ready`](Self::put_ready) stores closed files,
/// [`finish`](Self::finish) closes and stores the rest. Files are named by [`file_name`], so a
/// rerun of the micro-batch writes the same names.
pub struct TableWriter {
    table: Location,
    batch_id: u64,
    partition_by: Vec<String>,
    opts: WriterOptions,
    props: WriterProperties,
    open: HashMap<String, OpenFile>,
    /// Files started so far per partition directory.
    counts: HashMap<String, usize>,
    ready: Vec<Encoded>,
    put: Vec<(String, usize, DataFile)>,
    timings: WriteTimings,
    copies: Vec<CopyTable>,
}

/// Where a [`TableWriter`]'s time went: encoding rows into Parquet (splitting them by
/// partition, encoding, compressing, closing files: CPU), and storing the closed files (the
/// object store's puts: I/O).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WriteTimings {
    pub encode: Duration,
    pub store: Duration,
}

impl std::fmt::Debug for TableWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableWriter")
            .field("table", &self.table.url)
            .field("batch_id", &self.batch_id)
            .field("open", &self.open.len())
            .field("put", &self.put.len())
            .finish()
    }
}

impl TableWriter {
    pub fn new(
        table: &Location,
        batch_id: u64,
        partition_by: &[String],
        opts: &WriterOptions,
    ) -> Self {
        Self {
            table: table.clone(),
            batch_id,
            partition_by: partition_by.to_vec(),
            props: opts.properties(),
            opts: opts.clone(),
            open: HashMap::new(),
            counts: HashMap::new(),
            ready: Vec::new(),
            put: Vec::new(),
            timings: WriteTimings::default(),
            copies: Vec::new(),
        }
    }

    /// Writes also table `table`, whose files hold `schema`'s columns: column `i` a copy of
    /// this table's file column `sources[i]` (the same type, nullability and metadata, under
    /// its own name; partition columns left out): for every file of this table, a file of
    /// the same name and rows under `table`, whose column chunks are this file's, copied
    /// rather than encoded again. What a transform that passes some of the columns through
    /// unchanged (`SELECT * FROM events`) writes, for the cost of a copy; a file of every
    /// column under its own name is this file, stored by the store's copy.
    /// [`finish_with_copies`](Self::finish_with_copies) returns its files. Only before the
    /// first row is written.
    pub fn copy_columns(
        &mut self,
        table: &Location,
        schema: SchemaRef,
        sources: Vec<String>,
    ) -> Result<()> {
        if !self.open.is_empty() || !self.put.is_empty() || !self.ready.is_empty() {
            return Err(Error::Internal(
                "a table writer copies columns from its first row on".into(),
            ));
        }
        self.copies.push(CopyTable {
            table: table.clone(),
            key: schema_key(&schema),
            schema,
            sources,
            put: Vec::new(),
            timings: WriteTimings::default(),
        });
        Ok(())
    }

    /// Splits `batch` by partition and encodes its rows (CPU work, no I/O).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.write_before(batch, &[])
    }

    /// [`write`](Self::write) `batch`, which `later` follow: a file opened for its rows
    /// judges the encoding of a column `batch` has too few values of on the first of `later`
    /// that has enough (a micro-batch decodes to a batch per writer schema, and the first may
    /// be of older events that lack a field).
    fn write_before(&mut self, batch: &RecordBatch, later: &[RecordBatch]) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let t = Instant::now();
        let done = self.encode(batch, later);
        self.timings.encode += t.elapsed();
        done
    }

    fn encode(&mut self, batch: &RecordBatch, later: &[RecordBatch]) -> Result<()> {
        for PartitionBatch { values, batch } in split(batch, &self.partition_by)? {
            let dir = hive_path(&values);
            // Feed slices so that the size check between writes cuts files near the target.
            let slice = self.opts.row_group_rows.clamp(1, 65_536);
            let mut off = 0;
            while off < batch.num_rows() {
                let len = slice.min(batch.num_rows() - off);
                let file = match self.open.entry(dir.clone()) {
                    Entry::Occupied(o) => o.into_mut(),
                    Entry::Vacant(v) => {
                        let n = self.counts.entry(dir.clone()).or_default();
                        let mut writer = ParquetFile::try_new(
                            batch.schema(),
                            adaptive_encoding(self.props.clone(), &batch, later),
                        )
                        .map_err(Error::Parquet)?;
                        let mut whole = Vec::with_capacity(self.copies.len());
                        for c in &self.copies {
                            // Every column, each under its own name: this very file.
                            whole.push(
                                c.schema.fields() == batch.schema().fields()
                                    && c.sources.iter().eq(batch
                                        .schema()
                                        .fields()
                                        .iter()
                                        .map(|f| f.name())),
                            );
                            if *whole.last().expect("pushed") {
                                continue;
                            }
                            let sources = c
                                .sources
                                .iter()
                                .map(|name| {
                                    batch.schema().index_of(name).map_err(|_| {
                                        Error::Internal(format!(
                                            "no column `{name}` to copy into {}",
                                            c.table.url
                                        ))
                                    })
                                })
                                .collect::<Result<Vec<_>>>()?;
                            writer
                                .copy_columns(c.schema.clone(), &sources)
                                .map_err(Error::Parquet)?;
                        }
                        *n += 1;
                        v.insert(OpenFile {
                            dir: dir.clone(),
                            values: values.clone(),
                            writer,
                            rows: 0,
                            n: *n - 1,
                            schema: schema_key(&batch.schema()),
                            whole,
                        })
                    }
                };
                file.writer
                    .write(&batch.slice(off, len))
                    .map_err(Error::Parquet)?;
                file.rows += len as u64;
                off += len;
                if file.writer.bytes_written() + file.writer.in_progress_size()
                    >= self.opts.target_file_bytes
                {
                    let file = self.open.remove(&dir).expect("open");
                    self.ready.push(close(file)?);
                }
            }
        }
        Ok(())
    }

    /// Writes `batches` ([`write`](Self::write)) and stores the files they closed.
    pub async fn write_batches(&mut self, batches: &[RecordBatch]) -> Result<()> {
        self.write_all(batches)?;
        self.put_ready().await
    }

    /// [`write`](Self::write)s each of `batches`, a file's encoding judged also on the
    /// batches after its first ([`write_before`](Self::write_before)).
    fn write_all(&mut self, batches: &[RecordBatch]) -> Result<()> {
        for (i, b) in batches.iter().enumerate() {
            self.write_before(b, &batches[i + 1..])?;
        }
        Ok(())
    }

    /// Stores the files closed so far.
    pub async fn put_ready(&mut self) -> Result<()> {
        let t = Instant::now();
        let done = self.put_closed().await;
        self.timings.store += t.elapsed();
        done
    }

    async fn put_closed(&mut self) -> Result<()> {
        for e in std::mem::take(&mut self.ready) {
            let rel = if e.dir.is_empty() {
                file_name(self.batch_id, e.n, self.opts.file_tag)
            } else {
                format!(
                    "{}/{}",
                    e.dir,
                    file_name(self.batch_id, e.n, self.opts.file_tag)
                )
            };
            let file = put_file(&self.table, &rel, e.bytes, &e.values, e.rows, &e.schema).await?;
            for (c, bytes) in self.copies.iter_mut().zip(e.copies) {
                let t = Instant::now();
                let copy = match bytes {
                    Some(bytes) => {
                        put_file(&c.table, &rel, bytes, &e.values, e.rows, &c.key).await?
                    }
                    None => {
                        copy_file(&self.table, &c.table, &file).await?;
                        DataFile {
                            schema: Some(c.key.clone()),
                            ..file.clone()
                        }
                    }
                };
                c.put.push((e.dir.clone(), e.n, copy));
                c.timings.store += t.elapsed();
            }
            self.put.push((e.dir, e.n, file));
        }
        Ok(())
    }

    /// Closes every open file and stores it. Returns every file of the micro-batch, in
    /// partition order.
    pub async fn finish(self) -> Result<Vec<DataFile>> {
        Ok(self.finish_timed().await?.0)
    }

    /// [`finish`](Self::finish), with the time the writer spent encoding and storing over
    /// its whole life.
    pub async fn finish_timed(self) -> Result<(Vec<DataFile>, WriteTimings)> {
        let (files, timings, _) = self.finish_with_copies().await?;
        Ok((files, timings))
    }

    /// [`finish_timed`](Self::finish_timed), with the files and timings of each table of
    /// copied columns ([`copy_columns`](Self::copy_columns)), in the order they were asked.
    pub async fn finish_with_copies(
        mut self,
    ) -> Result<(
        Vec<DataFile>,
        WriteTimings,
        Vec<(Vec<DataFile>, WriteTimings)>,
    )> {
        let t = Instant::now();
        for (_, file) in std::mem::take(&mut self.open) {
            self.ready.push(close(file)?);
        }
        self.timings.encode += t.elapsed();
        self.put_ready().await?;
        let copies = std::mem::take(&mut self.copies)
            .into_iter()
            .map(|c| (in_order(c.put), c.timings))
            .collect();
        Ok((
            in_order(std::mem::take(&mut self.put)),
            self.timings,
            copies,
        ))
    }
}

/// Files put, in partition order.
fn in_order(mut files: Vec<(String, usize, DataFile)>) -> Vec<DataFile> {
    files.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    files.into_iter().map(|(_, _, f)| f).collect()
}

/// Copies `file` of the table at `from` to the same place below `to` (the same key: its entry
/// there is `file` as it is): a hard link on a local disk, a server-side copy on S3. A store
/// that cannot (two file systems) gets the bytes put.
pub async fn copy_file(from: &Location, to: &Location, file: &DataFile) -> Result<()> {
    copy_object(from, &file.location(from), to, &file.location(to)).await
}

/// Copies `file` of the table at `from` to `to_rel` below `to`, as [`copy_file`] does;
/// returns its entry there.
pub async fn copy_file_as(
    from: &Location,
    file: &DataFile,
    to: &Location,
    to_rel: &str,
) -> Result<DataFile> {
    let copy = file.moved_to(to_rel.to_string());
    copy_object(from, &file.location(from), to, &copy.location(to)).await?;
    Ok(copy)
}

async fn copy_object(
    from: &Location,
    source: &object_store::path::Path,
    to: &Location,
    target: &object_store::path::Path,
) -> Result<()> {
    let store_error = |e| Error::Store {
        path: source.to_string(),
        source: e,
    };
    let Err(e) = from.store.copy(source, target).await else {
        return Ok(());
    };
    tracing::debug!("copying {source} by a get and a put: {e}");
    let bytes = async { from.store.get(source).await?.bytes().await }
        .await
        .map_err(store_error)?;
    to.store
        .put(target, PutPayload::from(bytes))
        .await
        .map_err(store_error)?;
    Ok(())
}

/// Puts a data file of `rows` rows at `rel` below `table`.
async fn put_file(
    table: &Location,
    rel: &str,
    bytes: Vec<u8>,
    partition: &[(String, String)],
    rows: u64,
    schema: &str,
) -> Result<DataFile> {
    let size = bytes.len() as u64;
    table
        .store
        .put(&table.key(rel), PutPayload::from(bytes))
        .await
        .map_err(|source| Error::Store {
            path: rel.to_string(),
            source,
        })?;
    Ok(DataFile {
        as_written: needs_mark(rel),
        path: rel.to_string(),
        partition: partition.to_vec(),
        rows,
        bytes: size,
        sql: None,
        compacted: false,
        schema: Some(schema.to_string()),
    })
}

/// Values of a column (its first present ones in a file's first batch) looked at to judge its
/// cardinality.
const DICTIONARY_SAMPLE: usize = 4096;

/// Chooses the encoding of the top-level columns from the first values present in a file's
/// first batch.
///
/// Dictionary encoding is turned off for the columns whose values (nulls left out) are
/// nearly all distinct (over 90%) (ids, URLs, timestamps): Parquet would build a dictionary for them, find it too
/// large and fall back to plain encoding, paying for both. Columns whose values repeat keep
/// their dictionary (and Parquet still falls back on its own if it grows too large).
///
/// Of the nearly distinct byte columns, those whose values share most of their bytes with the
/// value before them (positions, sequence numbers, sequential ids: at least half of the bytes)
/// are written as `DELTA_BYTE_ARRAY` (each value as the length of the prefix it shares with
/// the one before and the rest): less to compress, and half the size or less. Likewise the
/// nearly distinct integer columns (timestamps, counters, dates) whose every value is within
/// 2^31 of the one before are written as `DELTA_BINARY_PACKED` (the steps, bit-packed): event
/// times a few milliseconds apart take a couple of bytes instead of eight, and less to compress.
///
/// The nearly distinct text columns left plain whose values run in no order (ids, URLs) are
/// written without statistics: every page's minimum and maximum would span nearly the whole
/// range, so that no reader could skip a page or file by them, and parquet-rs compares each
/// value with both, which cost as much as a tenth of the file's encoding. Ordered text (a
/// sorted id) keeps them.
///
/// A column with too few values present in the first batch (under 256: a field the older
/// events lack, in a batch of theirs) is judged on the first of `later` (the batches written
/// after it in the same call, of the same table) that has enough of it.
fn adaptive_encoding(
    props: WriterProperties,
    first: &RecordBatch,
    later: &[RecordBatch],
) -> WriterProperties {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::DataType;
    use parquet::basic::Encoding;
    use parquet::schema::types::ColumnPath;
    use std::collections::HashSet;

    /// Distinct values and values looked at, of the first [`DICTIONARY_SAMPLE`] present ones
    /// (nulls are neither: a column half null and half unique URLs is a column of unique URLs,
    /// and a field the older events lack is judged on the newer events after them).
    fn distinct<T: std::hash::Hash + Eq>(values: impl Iterator<Item = T>) -> (usize, usize) {
        let mut present = 0;
        let mut set = HashSet::with_capacity_and_hasher(
            DICTIONARY_SAMPLE,
            foldhash::fast::FixedState::default(),
        );
        set.extend(values.take(DICTIONARY_SAMPLE).inspect(|_| present += 1));
        (set.len(), present)
    }
    /// What the sample of a column says.
    struct Judged {
        /// Distinct values among the present ones looked at.
        distinct: usize,
        /// Values present among those looked at.
        present: usize,
        /// The encoding its values suggest, if not Parquet's own choice.
        encoding: Option<Encoding>,
        /// Whether its values run in no order: then the minimum and maximum of every page
        /// span nearly all the values, and no reader can skip a page or file by them.
        unordered: bool,
    }
    /// Distinct values, `DELTA_BYTE_ARRAY` when the values share at least half of their
    /// bytes with the value before them, and whether they run in no order (under 90% of the
    /// steps from a value to the next go the same way).
    fn judge<'a>(values: impl Iterator<Item = Option<&'a [u8]>> + Clone) -> Judged {
        let (mut shared, mut total) = (0usize, 0usize);
        let (mut up, mut down, mut steps) = (0usize, 0usize, 0usize);
        let mut prev: Option<&[u8]> = None;
        for v in values.clone().flatten().take(DICTIONARY_SAMPLE) {
            if let Some(p) = prev {
                shared += p.iter().zip(v).take_while(|(a, b)| a == b).count();
                steps += 1;
                match p.cmp(v) {
                    std::cmp::Ordering::Less => up += 1,
                    std::cmp::Ordering::Greater => down += 1,
                    std::cmp::Ordering::Equal => (up, down) = (up + 1, down + 1),
                }
            }
            total += v.len();
            prev = Some(v);
        }
        let delta = total > 0 && shared * 2 >= total;
        let (distinct, present) = distinct(values.flatten());
        Judged {
            distinct,
            present,
            encoding: delta.then_some(Encoding::DELTA_BYTE_ARRAY),
            unordered: up.max(down) * 10 < steps * 9,
        }
    }
    /// Distinct values of a fixed-width column (its words, so floats too), and
    /// `DELTA_BINARY_PACKED` when it is an integer column in small steps. Its statistics are
    /// kept whatever its order (they cost little for numbers).
    fn judge_words<T>(col: &dyn Array) -> Judged
    where
        T: arrow::datatypes::ArrowNativeType + std::hash::Hash + Eq + Into<i64>,
    {
        let d = col.to_data();
        let words = &d.buffers()[0].typed_data::<T>()[d.offset()..d.offset() + col.len()];
        let valid = || {
            (0..col.len())
                .filter(|&i| col.is_valid(i))
                .map(|i| words[i])
                .take(DICTIONARY_SAMPLE)
        };
        let (distinct, present) = distinct(valid());
        Judged {
            distinct,
            present,
            encoding: (is_integer(col.data_type()) && close_steps(valid().map(Into::into)))
                .then_some(Encoding::DELTA_BINARY_PACKED),
            unordered: false,
        }
    }
    /// Stored as Parquet INT32/INT64 (`DELTA_BINARY_PACKED` encodes only those), not floats.
    fn is_integer(dt: &DataType) -> bool {
        dt.is_integer()
            || matches!(
                dt,
                DataType::Timestamp(..)
                    | DataType::Date32
                    | DataType::Date64
                    | DataType::Time32(_)
                    | DataType::Time64(_)
                    | DataType::Duration(_)
            )
    }
    /// Whether every value is within 2^31 of the one before (wrapping, as the encoding does).
    fn close_steps(mut values: impl Iterator<Item = i64>) -> bool {
        let Some(mut prev) = values.next() else {
            return false;
        };
        values.all(|v| {
            let step = v.wrapping_sub(prev);
            prev = v;
            i32::try_from(step).is_ok()
        })
    }
    /// What the first values present of `col` say, when silt judges columns of its type.
    fn judge_column(col: &dyn Array) -> Option<Judged> {
        Some(match col.data_type() {
            DataType::Utf8 => judge(col.as_string::<i32>().iter().map(|v| v.map(str::as_bytes))),
            DataType::LargeUtf8 => {
                judge(col.as_string::<i64>().iter().map(|v| v.map(str::as_bytes)))
            }
            DataType::Utf8View => judge(col.as_string_view().iter().map(|v| v.map(str::as_bytes))),
            DataType::Binary => judge(col.as_binary::<i32>().iter()),
            dt if dt.is_primitive() && dt.primitive_width() == Some(8) => judge_words::<i64>(col),
            dt if dt.is_primitive() && dt.primitive_width() == Some(4) => judge_words::<i32>(col),
            _ => return None,
        })
    }
    /// Fewer values present than this are too few to judge a column on.
    const ENOUGH: usize = 256;
    let mut builder: Option<parquet::file::properties::WriterPropertiesBuilder> = None;
    for (field, col) in first.schema().fields().iter().zip(first.columns()) {
        let Some(mut judged) = judge_column(col.as_ref()) else {
            continue;
        };
        // Too few values in the file's first rows (a field the older events lack): judged on
        // the first of the batches after them that has enough.
        if judged.present < ENOUGH {
            let enough = later
                .iter()
                .filter_map(|b| b.column_by_name(field.name()))
                .filter(|c| c.data_type() == col.data_type())
                // Counted from the null buffer: a batch that lacks the field too is passed
                // over without a look at its rows.
                .filter(|c| c.len() - c.null_count() >= ENOUGH)
                .filter_map(|c| judge_column(c.as_ref()))
                .find(|j| j.present >= ENOUGH);
            if let Some(enough) = enough {
                judged = enough;
            }
        }
        if judged.present >= ENOUGH && judged.distinct * 10 > judged.present * 9 {
            let path = || ColumnPath::from(field.name().as_str());
            let mut b = builder
                .unwrap_or_else(|| props.clone().into_builder())
                .set_column_dictionary_enabled(path(), false);
            if let Some(encoding) = judged.encoding {
                b = b.set_column_encoding(path(), encoding);
            } else if judged.unordered {
                // Nearly distinct text in no order (ids, URLs): each value's comparison with
                // the page's minimum and maximum costs as much as any other part of its
                // encoding, for statistics that span the whole range.
                b = b.set_column_statistics_enabled(path(), EnabledStatistics::None);
            }
            builder = Some(b);
        }
    }
    builder.map_or(props, |b| b.build())
}

fn close(file: OpenFile) -> Result<Encoded> {
    let (bytes, copies) = file.writer.into_files().map_err(Error::Parquet)?;
    let mut copies = copies.into_iter();
    let copies = file
        .whole
        .iter()
        .map(|&whole| (!whole).then(|| copies.next().expect("one a table of some columns")))
        .collect();
    Ok(Encoded {
        bytes,
        copies,
        dir: file.dir,
        values: file.values,
        n: file.n,
        rows: file.rows,
        schema: file.schema,
    })
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
    Ok(
        write_table_timed(table, batch_id, batches, partition_by, opts)
            .await?
            .0,
    )
}

/// [`write_table`], with the time spent encoding and storing.
pub async fn write_table_timed(
    table: &Location,
    batch_id: u64,
    batches: &[RecordBatch],
    partition_by: &[String],
    opts: &WriterOptions,
) -> Result<(Vec<DataFile>, WriteTimings)> {
    let mut writer = TableWriter::new(table, batch_id, partition_by, opts);
    let batches = batches.to_vec();
    // Encoding is CPU work: off the async threads.
    let writer = tokio::task::spawn_blocking(move || {
        writer.write_all(&batches)?;
        Ok::<_, Error>(writer)
    })
    .await
    .map_err(|e| Error::Internal(format!("encoding task failed: {e}")))??;
    writer.finish_timed().await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files are stored where their path says, values escaped as Hive escapes them (what
    /// outside readers decode), and marked so where the object store would have encoded the
    /// path again; a file of an older silt's commit (no mark) is found where it was stored.
    #[tokio::test]
    async fn files_are_stored_at_their_hive_paths_and_older_ones_where_they_were() {
        use arrow::array::{Int64Array, StringArray};
        use arrow::datatypes::{DataType, Field, Schema};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let lake = silt_storage::open("file://lake", dir.path()).unwrap();
        let table = lake.join("t");
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["a/b", "Zürich", "web"])),
                Arc::new(Int64Array::from(vec![1, 2, 3])),
            ],
        )
        .unwrap();
        let files = write_table(
            &table,
            4,
            &[batch],
            &["k".into()],
            &WriterOptions::default(),
        )
        .await
        .unwrap();
        let on_disk = |rel: &str| dir.path().join("lake/t").join(rel).is_file();
        let by_value = |v: &str| files.iter().find(|f| f.partition[0].1 == v).unwrap();
        for (value, folder, marked) in [
            ("a/b", "k=a%2Fb", true),
            ("Zürich", "k=Zürich", true),
            ("web", "k=web", false),
        ] {
            let f = by_value(value);
            assert_eq!(f.path, format!("{folder}/part-0000000004-0000.parquet"));
            assert!(on_disk(&f.path), "{} is not on disk", f.path);
            assert_eq!(f.as_written, marked, "{value}");
            assert_eq!(
                serde_json::to_string(f).unwrap().contains("as_written"),
                marked
            );
            assert_eq!(
                read_data_file(&table, f, 10, &[]).await.unwrap()[0].num_rows(),
                1
            );
        }
        // An older silt's entry for the same path: the object store's encoding of it.
        let mut older = serde_json::to_value(by_value("a/b")).unwrap();
        older.as_object_mut().unwrap().remove("as_written");
        let older: DataFile = serde_json::from_value(older).unwrap();
        assert_eq!(older.key(), "k=a%252Fb/part-0000000004-0000.parquet");
        std::fs::create_dir_all(dir.path().join("lake/t/k=a%252Fb")).unwrap();
        std::fs::rename(
            dir.path().join("lake/t").join(&older.path),
            dir.path().join("lake/t").join(older.key().as_ref()),
        )
        .unwrap();
        assert_eq!(
            read_data_file(&table, &older, 10, &[]).await.unwrap()[0].num_rows(),
            1
        );
        // Moved (a backfill's rename, a copy), it is stored as written.
        let moved = older.moved_to("k=a%2Fb/part-0000000005-0000.parquet".into());
        assert!(moved.as_written);
        assert_eq!(moved.key(), moved.path);
    }

    #[tokio::test]
    async fn copied_columns_hold_their_sources_values_under_any_names() {
        use arrow::array::{Array, StringArray};
        use arrow::datatypes::{DataType, Field, Schema};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let lake = silt_storage::open("file://lake", dir.path()).unwrap();
        let field = |n: &str| Field::new(n, DataType::Utf8, false);
        let schema = Arc::new(Schema::new(vec![field("a"), field("b")]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["a0", "a1"])),
                Arc::new(StringArray::from(vec!["b0", "b1"])),
            ],
        )
        .unwrap();
        let mut writer = TableWriter::new(&lake.join("t"), 1, &[], &WriterOptions::default());
        // The same names and types as the file's, the values swapped: not the file itself.
        let swapped = (lake.join("swapped"), vec!["b".to_string(), "a".to_string()]);
        writer
            .copy_columns(&swapped.0, schema.clone(), swapped.1)
            .unwrap();
        writer
            .copy_columns(
                &lake.join("same"),
                schema.clone(),
                vec!["a".into(), "b".into()],
            )
            .unwrap();
        writer.write(&batch).unwrap();
        let (files, _, copies) = writer.finish_with_copies().await.unwrap();
        async fn value(lake: &Location, table: &str, file: &DataFile, column: &str) -> String {
            let b = read_data_file(&lake.join(table), file, 10, &[])
                .await
                .unwrap();
            let c = b[0].column_by_name(column).unwrap();
            c.as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .value(0)
                .to_string()
        }
        assert_eq!(value(&lake, "t", &files[0], "a").await, "a0");
        assert_eq!(value(&lake, "swapped", &copies[0].0[0], "a").await, "b0");
        assert_eq!(value(&lake, "swapped", &copies[0].0[0], "b").await, "a0");
        assert_eq!(value(&lake, "same", &copies[1].0[0], "a").await, "a0");
    }

    #[test]
    fn data_file_names_say_their_batch_and_tag_and_move_to_another_batch() {
        let tagged = format!("dt=2025-11-25/hr=22/{}", file_name(7, 3, "backfill"));
        assert_eq!(
            tagged,
            "dt=2025-11-25/hr=22/part-0000000007-0003-backfill.parquet"
        );
        assert_eq!(batch_of(&tagged), Some(7));
        assert_eq!(tag_of(&tagged), Some("backfill"));
        let moved = with_batch(&tagged, 12).unwrap();
        assert_eq!(
            moved,
            format!("dt=2025-11-25/hr=22/{}", file_name(12, 3, "backfill"))
        );
        let plain = file_name(7, 0, "");
        assert_eq!(tag_of(&plain), None);
        assert_eq!(with_batch(&plain, 8), Some(file_name(8, 0, "")));
        assert_eq!(with_batch("dt=2025-11-25/notes.txt", 8), None);
    }
}
