//! The micro-batch loop: Source -> check -> dedup -> decode -> transform -> lake writer ->
//! commit. See `silt_lake_writer`'s `log` module for the commit protocol this follows.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use arrow::array::{
    Array, ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, FieldRef, Schema as ArrowSchema, SchemaRef};
use serde::{Deserialize, Serialize};
use silt_dedup::{DedupIndex, Verdict};
use silt_ingest::{
    Chunk, EventDecoder, Position, ReadLimit, Rejected, Source, StartAt, ARRIVAL_TIME, EVENT_TIME,
};
use silt_lake_writer::{
    data_file_schema, read_data_file, register_table, remove_files, schema_key, short_hash, vacuum,
    write_table_timed, Commit, CommitLog, DataFile, Intent, LakeSnapshot, Lease, TableEntry,
    TableState, TableWriter, WriteTimings, WriterOptions,
};
use silt_registry::SchemaRegistry;
use silt_storage::Location;
use silt_transform::{Mode, Transform};
use silt_wire::Framing;
use tokio_util::sync::CancellationToken;

use super::config::{parse_duration, parse_size, JobFile};
use crate::faults;

/// A job file resolved into its parts.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub source: Arc<dyn Source>,
    pub registry: Arc<dyn SchemaRegistry>,
    pub subject: String,
    pub framing: Framing,
    /// Where shards without a checkpoint start.
    pub start: StartAt,
    pub lake: Location,
    pub table: String,
    pub rejected_table: String,
    pub partition_by: Vec<String>,
    pub transforms: Vec<Transform>,
    pub references: Vec<silt_transform::Reference>,
    pub log: CommitLog,
    pub window_us: i64,
    /// How far after its arrival an event's time may be.
    pub max_future: Duration,
    pub keep_late: bool,
    pub writer: WriterOptions,
    /// See [`super::config::LakeConfig::compact_min_files`].
    pub compact_min_files: usize,
    pub max_records: usize,
    pub max_bytes: usize,
    pub interval: Duration,
}

impl Job {
    /// The job's tables: the raw table, the rejected table, each transform's.
    pub fn tables(&self) -> impl Iterator<Item = &String> {
        [&self.table, &self.rejected_table]
            .into_iter()
            .chain(self.transforms.iter().map(|t| &t.name))
    }

    /// Reads a job file and opens what it names.
    pub async fn load(path: &Path) -> anyhow::Result<Job> {
        let (file, dir) = JobFile::load(path)?;
        Self::from_file(file, &dir).await
    }

    /// Resolves a job file whose relative paths are relative to `dir`.
    pub async fn from_file(file: JobFile, dir: &Path) -> anyhow::Result<Job> {
        let source: Arc<dyn Source> = match file.source.kind.as_str() {
            "file" => {
                let p = dir.join(file.source.path.as_deref().expect("validated"));
                if !p.is_dir() {
                    bail!(
                        "[source] path {} is not a folder (a file stream)",
                        p.display()
                    );
                }
                Arc::new(silt_ingest::FileStream::open(p)?)
            }
            "kinesis" => {
                let opts = silt_kinesis::KinesisOptions {
                    endpoint: file.source.endpoint.clone(),
                    region: file.source.region.clone(),
                };
                let client = silt_kinesis::client(&opts).await;
                let stream = file.source.stream.clone().expect("validated");
                Arc::new(silt_kinesis::KinesisSource::new(client, stream))
            }
            other => bail!("[source] type \"{other}\" is not one of file, kinesis"),
        };
        let s3 = silt_storage::S3Options {
            endpoint: file.storage.endpoint.clone(),
            region: file.storage.region.clone(),
            access_key_id: file.storage.access_key_id.clone(),
            secret_access_key: file.storage.secret_access_key.clone(),
        };
        let registry: Arc<dyn SchemaRegistry> = if file.schema.registry.starts_with("http") {
            Arc::new(silt_registry::HttpRegistry::new(&file.schema.registry))
        } else {
            Arc::new(
                silt_storage::open_with(&file.schema.registry, dir, &s3)
                    .map(silt_registry::StoreRegistry::new)
                    .with_context(|| format!("[schema] registry {}", file.schema.registry))?,
            )
        };
        let registry: Arc<dyn SchemaRegistry> =
            Arc::new(silt_registry::CachedRegistry::new(registry));
        let framing = match file.source.framing.as_str() {
            "envelope" => Framing::Envelope,
            "single-object" => Framing::SingleObject,
            "confluent" => Framing::Confluent,
            other => bail!(
                "[source] framing \"{other}\" is not one of envelope, single-object, confluent"
            ),
        };
        let start = match file.source.start.as_str() {
            "earliest" => StartAt::Earliest,
            "latest" => StartAt::Latest,
            t => StartAt::ArrivedAt(
                chrono::DateTime::parse_from_rfc3339(t)
                    .with_context(|| {
                        format!(
                            "[source] start = \"{t}\" is not earliest, latest or an RFC 3339 time"
                        )
                    })?
                    .timestamp_millis(),
            ),
        };
        let lake = silt_storage::open_with(&file.lake.location, dir, &s3)
            .with_context(|| format!("[lake] location {}", file.lake.location))?;
        let checkpoint = match &file.checkpoint.location {
            Some(url) => silt_storage::open_with(url, dir, &s3)
                .with_context(|| format!("[checkpoint] location {url}"))?,
            None => lake.join(&format!("_silt/checkpoints/{}", file.name)),
        };
        let mut transforms = Vec::new();
        for t in &file.transforms {
            let p = dir.join(&t.sql);
            let sql = std::fs::read_to_string(&p).with_context(|| {
                format!("[[transform]] {}: cannot read {}", t.name, p.display())
            })?;
            let mode = if t.mode == "partitions" {
                Mode::Partitions
            } else {
                Mode::Rows
            };
            transforms.push(Transform::new(&t.name, sql, mode));
        }
        let mut references = Vec::new();
        for r in &file.references {
            let path = dir.join(&r.path);
            // Said here, where the job names it: DataFusion's "No files found... cannot infer
            // schema" came under the reader schema's context.
            std::fs::metadata(&path).with_context(|| {
                format!("[[reference]] {}: cannot read {}", r.name, path.display())
            })?;
            references.push(silt_transform::Reference {
                name: r.name.clone(),
                path,
            });
        }
        let writer = WriterOptions {
            target_file_bytes: parse_size(&file.lake.target_file_size)?,
            row_group_rows: file.lake.row_group_rows.max(1),
            compression: file
                .lake
                .compression
                .parse()
                .map_err(|e: String| anyhow!(e))?,
            file_tag: "",
        };
        Ok(Job {
            rejected_table: file.lake.rejected_table(),
            name: file.name,
            source,
            registry,
            subject: file.schema.subject,
            framing,
            start,
            lake,
            table: file.lake.table,
            partition_by: file.lake.partition_by,
            transforms,
            references,
            log: CommitLog::new(checkpoint),
            window_us: parse_duration(&file.dedup.window)?.as_micros() as i64,
            max_future: parse_duration(&file.dedup.max_future)?,
            keep_late: file.dedup.late == "keep",
            writer,
            compact_min_files: file.lake.compact_min_files,
            max_records: file.batch.max_records.max(1),
            max_bytes: parse_size(&file.batch.max_bytes)?.max(1),
            interval: parse_duration(&file.batch.interval)?,
        })
    }
}

/// What a run calls as each micro-batch commits.
pub type OnCommit = Arc<dyn Fn(&BatchReport) + Send + Sync>;

/// What a following run calls when it finds nothing new on the stream (it is caught up).
pub type OnCaughtUp = Arc<dyn Fn() + Send + Sync>;

/// How a run behaves.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Keep going in micro-batches until `shutdown`.
    pub follow: bool,
    /// Cancelled from outside (Ctrl-C): the batch in hand is finished and committed.
    pub shutdown: CancellationToken,
    /// Draw a progress line on stderr.
    pub progress: bool,
    /// Called with what each micro-batch did once it is committed (a log line, metrics).
    pub on_commit: Option<OnCommit>,
    /// Called when a following run finds nothing new (its lag is then nothing).
    pub on_caught_up: Option<OnCaughtUp>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("follow", &self.follow)
            .field("progress", &self.progress)
            .field("on_commit", &self.on_commit.is_some())
            .field("on_caught_up", &self.on_caught_up.is_some())
            .finish_non_exhaustive()
    }
}

/// What one committed micro-batch did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BatchReport {
    pub job: String,
    pub batch: u64,
    /// From the start of the batch to its commit.
    pub seconds: f64,
    pub records_read: u64,
    pub duplicates: u64,
    pub late: u64,
    /// Records rejected, by reason code (`bad_body`, `unknown_fingerprint`, ...; late events
    /// kept in the rejected table are counted under `late`, not here).
    pub rejected: BTreeMap<&'static str, u64>,
    /// Rows written, by table.
    pub rows_written: BTreeMap<String, u64>,
    pub files_written: u64,
    pub bytes_written: u64,
    /// Small files (of closed hours, or of partitions without hours) merged into larger ones.
    pub files_compacted: u64,
    /// Throttled or failed source calls retried during the batch.
    pub source_retries: u64,
    /// When the commit was written (ms since the epoch).
    pub committed_at_ms: i64,
    /// The commit time minus the arrival time of the newest record read, in ms.
    pub lag_ms: Option<i64>,
}

impl BatchReport {
    /// One log line: time, job, batch and its counts.
    pub fn log_line(&self) -> String {
        let at = UNIX_EPOCH + Duration::from_millis(self.committed_at_ms.max(0) as u64);
        format!(
            "{} job {}: batch #{} committed in {:.2}s: {} records read, {} duplicates, {} late, {} rejected; {} rows in {} files ({} bytes){}; lag {}",
            humantime::format_rfc3339_millis(at),
            self.job,
            self.batch,
            self.seconds,
            self.records_read,
            self.duplicates,
            self.late,
            self.rejected.values().sum::<u64>(),
            self.rows_written.values().sum::<u64>(),
            self.files_written,
            self.bytes_written,
            if self.files_compacted > 0 {
                format!(", {} small files compacted", self.files_compacted)
            } else {
                String::new()
            },
            self.lag_ms
                .map_or("n/a".to_string(), |ms| format!("{:.1}s", ms as f64 / 1000.0)),
        )
    }
}

impl RunOptions {
    /// A run that draws progress when stderr is a terminal, as the commands do.
    pub fn on_terminal() -> Self {
        Self {
            progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            ..Self::default()
        }
    }
}

/// Seconds spent per stage.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stages {
    pub read: f64,
    pub check: f64,
    pub dedup: f64,
    pub decode: f64,
    pub transform: f64,
    /// Encoding rows into Parquet: splitting by partition, encoding, compressing.
    pub encode: f64,
    /// Storing the encoded files (the object store's puts).
    pub write: f64,
    pub commit: f64,
}

/// Seconds one table took in a run: the SQL that made its rows (a transform's), their Parquet
/// encoding and the store's puts of its files. Compaction, timed under the `encode` stage, is
/// not counted to a table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct TableSeconds {
    pub sql: f64,
    pub encode: f64,
    pub write: f64,
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    pub job: String,
    pub batches: u64,
    pub last_batch: Option<u64>,
    pub records_read: u64,
    pub duplicates: u64,
    pub late: u64,
    pub rejected: u64,
    /// Records of other subjects passed over (a stream that carries many types).
    pub other_subjects: u64,
    /// Times the run started again because a newer version of the subject appeared.
    pub reader_changes: u64,
    pub rows_written: BTreeMap<String, u64>,
    pub bytes_written: u64,
    pub files_written: u64,
    /// Small files (of closed hours, or of partitions without hours) merged into larger ones.
    pub files_compacted: u64,
    pub source_retries: u64,
    /// Now minus the arrival time of the newest record read, in ms.
    pub lag_ms: Option<i64>,
    pub elapsed_s: f64,
    pub stages: Stages,
    /// The `transform`, `encode` and `write` stages, table by table: which table (a
    /// transform's SQL, or its encoding) the time went to.
    pub tables: BTreeMap<String, TableSeconds>,
    /// The `rows` transforms that pass the raw table's columns through unchanged, whose
    /// files were the raw files' column chunks, copied (no SQL run, nothing encoded again).
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub copied: BTreeSet<String>,
    /// The tables of transforms new to the job, filled from the raw table before the run
    /// read the stream (a backfill of those transforms, committed on its own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filled: Option<super::BackfillSummary>,
}

impl RunSummary {
    /// Adds a table writer's time (its encoding and its puts) to the stages and to `table`.
    pub fn add_write(&mut self, table: &str, t: WriteTimings) {
        self.add_encode(table, t.encode.as_secs_f64());
        let store = t.store.as_secs_f64();
        self.stages.write += store;
        self.table(table).write += store;
    }

    /// Adds time spent making `table`'s rows into Parquet (or its batches ready for that).
    pub fn add_encode(&mut self, table: &str, secs: f64) {
        self.stages.encode += secs;
        self.table(table).encode += secs;
    }

    /// Adds time spent in the SQL of the transform that writes `table`.
    pub fn add_sql(&mut self, table: &str, secs: f64) {
        self.stages.transform += secs;
        self.table(table).sql += secs;
    }

    fn table(&mut self, table: &str) -> &mut TableSeconds {
        self.tables.entry(table.to_string()).or_default()
    }

    /// Counts a committed micro-batch.
    fn add(&mut self, b: &BatchReport) {
        self.batches += 1;
        self.last_batch = Some(b.batch);
        self.records_read += b.records_read;
        self.duplicates += b.duplicates;
        self.late += b.late;
        self.rejected += b.rejected.values().sum::<u64>();
        for (table, rows) in &b.rows_written {
            *self.rows_written.entry(table.clone()).or_default() += rows;
        }
        self.files_written += b.files_written;
        self.bytes_written += b.bytes_written;
        self.files_compacted += b.files_compacted;
    }

    /// The one-screen summary every run ends with.
    pub fn render(&self) -> String {
        let mut s = format!(
            "job {}: {} micro-batch(es) committed{} in {:.2}s\n",
            self.job,
            self.batches,
            self.last_batch
                .map(|b| format!(" (last #{b})"))
                .unwrap_or_default(),
            self.elapsed_s
        );
        s += &format!(
            "  records read {:>10}   duplicates dropped {:>8}   late {:>6}   rejected {:>6}\n",
            self.records_read, self.duplicates, self.late, self.rejected
        );
        if let Some(line) = self.filled.as_ref().and_then(|f| f.filled_line()) {
            s += &format!("  {line}\n");
        }
        if self.other_subjects > 0 {
            s += &format!(
                "  other subjects {:>8}   (records of other types in the stream, left to their jobs)\n",
                self.other_subjects
            );
        }
        if self.reader_changes > 0 {
            s += &format!(
                "  reader schema {:>9}   newer version(s) of the subject appeared; the run took them up\n",
                self.reader_changes
            );
        }
        let width = self.rows_written.keys().map(|t| t.len()).max().unwrap_or(0);
        let any_sql = self.tables.values().any(|t| t.sql > 0.0) || !self.copied.is_empty();
        for (t, n) in &self.rows_written {
            s += &format!("  rows written {n:>10}   to {t:<width$}");
            if let Some(ts) = self.tables.get(t) {
                let sql = if self.copied.contains(t) {
                    "copied".to_string()
                } else if ts.sql > 0.0 {
                    format!("SQL {:>6.2}s", ts.sql)
                } else {
                    String::new()
                };
                if any_sql {
                    s += &format!("   {sql:<11}");
                }
                s += &format!("   encoding {:>6.2}s   puts {:>5.2}s", ts.encode, ts.write);
            }
            s += "\n";
        }
        s += &format!(
            "  files written {:>9}   bytes written {:>12}   source retries {}\n",
            self.files_written, self.bytes_written, self.source_retries
        );
        if self.files_compacted > 0 {
            s += &format!(
                "  files compacted {:>7}   (small files merged into larger ones)\n",
                self.files_compacted
            );
        }
        s += &format!(
            "  lag {}",
            match self.lag_ms {
                Some(ms) => format!(
                    "{:.1}s (now minus the newest record's arrival)",
                    ms as f64 / 1000.0
                ),
                None => "n/a (nothing read)".into(),
            }
        );
        s
    }
}

/// Groups a micro-batch compacts at most (each is read and written again within it).
const COMPACTIONS_PER_BATCH: usize = 2;

/// How long a run leaves an hour it could not compact before it tries again.
const COMPACTION_RETRY: Duration = Duration::from_secs(600);

/// A table's partition: (table, partition values).
type TablePartition = (String, Vec<(String, String)>);

/// Hours a run could not compact, and when it last tried.
type SkippedHours = HashMap<TablePartition, Instant>;

/// An hour partition compaction would take up: (hour since the epoch, table, partition values).
type Candidate = (i64, String, Vec<(String, String)>);

/// The most bytes of files one compaction group holds: the target file size.
fn compaction_target(job: &Job) -> u64 {
    (job.writer.target_file_bytes as u64).max(1)
}

/// Whether a file is small (under half the target size): compaction merges those, and
/// leaves larger ones as they are.
fn is_small(job: &Job, f: &DataFile) -> bool {
    f.bytes < compaction_target(job) / 2
}

/// The hour partitions [`compact_closed_hours`] would merge a group of, oldest first, then by
/// table and partition (the same choice on a replay): (hour, table, partition values).
fn compaction_candidates(
    job: &Job,
    state: &State,
    tables: &BTreeMap<String, TableState>,
    written: &[(String, Vec<DataFile>)],
) -> Vec<Candidate> {
    let mut candidates = Vec::new();
    if job.compact_min_files < 2 {
        return candidates;
    }
    let Some(watermark) = state.dedup.watermark_us() else {
        return candidates;
    };
    // Hours (since the epoch) before this one are closed.
    let closed_before = (watermark - job.window_us).div_euclid(3_600_000_000);
    let merged_tables: HashSet<&str> = job
        .transforms
        .iter()
        .filter(|t| t.mode == Mode::Partitions)
        .map(|t| t.name.as_str())
        .collect();
    let written_now: HashSet<(&str, &Vec<(String, String)>)> = written
        .iter()
        .flat_map(|(t, fs)| fs.iter().map(move |f| (t.as_str(), &f.partition)))
        .collect();
    for (name, ts) in tables.iter() {
        if merged_tables.contains(name.as_str()) {
            continue;
        }
        /// A partition's files, whether a compaction began there, and whether two
        /// neighbouring small files may share a schema (a group to merge).
        #[derive(Default)]
        struct Count<'a> {
            files: usize,
            small: usize,
            begun: bool,
            last_small: Option<&'a DataFile>,
            pair: bool,
        }
        let mut counts: BTreeMap<&Vec<(String, String)>, Count> = BTreeMap::new();
        for f in &ts.files {
            let c = counts.entry(&f.partition).or_default();
            c.files += 1;
            c.begun |= f.compacted;
            if is_small(job, f) {
                c.small += 1;
                c.pair |= c.last_small.is_some_and(|l| may_share_schema(l, f));
                c.last_small = Some(f);
            }
        }
        for (partition, c) in counts {
            if !c.pair || written_now.contains(&(name.as_str(), partition)) {
                continue;
            }
            match super::backfill::partition_hours(partition) {
                // Once begun, an hour's small files are merged down to one of each schema
                // (the groups before left some over, or merged into files still small).
                Some((_, last_hour)) => {
                    if (c.files >= job.compact_min_files || c.begun) && last_hour < closed_before {
                        candidates.push((last_hour, name.clone(), partition.clone()));
                    }
                }
                // A partition without hours (a table partitioned by other columns, or not
                // at all) never closes: its small files are merged whenever there are
                // `compact_min_files` of them (the merged file among them while it is
                // small), after the closed hours.
                None => {
                    if c.small >= job.compact_min_files {
                        candidates.push((i64::MAX, name.clone(), partition.clone()));
                    }
                }
            }
        }
    }
    candidates.sort();
    candidates
}

/// Whether two files may have the same columns, as the commit tells: unknown for files
/// written before silt recorded their schema (their footers tell, when merged).
fn may_share_schema(a: &DataFile, b: &DataFile) -> bool {
    match (&a.schema, &b.schema) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// Whether compaction has work that a micro-batch of no records would do (a following run
/// on a quiet stream makes such micro-batches until it has none).
fn compaction_pending(job: &Job, state: &State, skipped: &SkippedHours) -> bool {
    compaction_candidates(job, state, &state.tables, &[])
        .into_iter()
        .any(|(_, name, partition)| !left_for_now(skipped, &(name, partition)))
}

/// Whether a run that could not compact an hour lately leaves it alone for now.
fn left_for_now(skipped: &SkippedHours, key: &TablePartition) -> bool {
    skipped
        .get(key)
        .is_some_and(|at| at.elapsed() < COMPACTION_RETRY)
}

/// Merges the small files of closed hour partitions: those of tables whose rows are appended
/// (the raw table, `rows` transforms, the rejected table) that hold at least
/// [`Job::compact_min_files`] files (or a file a compaction wrote) and two neighbouring small
/// ones of one schema (small: under half the target file size; larger ones are left as they
/// are; the commit names each file's schema, or for older files the footers do), whose hour
/// ended a dedup window before the watermark (no on-time event can land there any more) and
/// that this micro-batch did not write.
///
/// A micro-batch merges at most [`COMPACTIONS_PER_BATCH`] groups, oldest hour first, one per
/// partition, each of consecutive small files of one schema (a version that added a field
/// within the hour starts a new group) holding at most the target file size together, into
/// one file. So the time a compaction adds to a micro-batch is bounded by the target size
/// whatever the hour's volume: a large hour is merged over several micro-batches. The merged
/// file is written as this micro-batch's and replaces its group in `tables`, so the commit
/// switches readers over at once and a replay makes the same choice and the same bytes.
/// A table of `copy_tables` whose group is files the raw table's merge of the same hour just
/// merged away, whole, takes the raw table's merged file by a copy (a hard link, a
/// server-side copy) instead of a merge of its own, not counted among those groups.
/// Returns the tables changed, with the number of files merged away.
async fn compact_closed_hours(
    job: &Job,
    state: &State,
    batch_id: u64,
    written: &[(String, Vec<DataFile>)],
    copy_tables: &HashSet<String>,
    tables: &mut BTreeMap<String, TableState>,
    skipped: &mut SkippedHours,
) -> anyhow::Result<Vec<(String, usize)>> {
    let mut candidates = compaction_candidates(job, state, tables, written);
    // The raw table's hours before the same hours of other tables: a table whose files are
    // the raw files themselves (`SELECT *`, copied) then takes the raw table's merged file.
    candidates.sort_by_key(|(hour, name, _)| (*hour, *name != job.table));
    let target = compaction_target(job);
    let mut changed: Vec<(String, usize)> = Vec::new();
    // The raw table's merges in this micro-batch: the files merged away, and the new ones.
    let mut raw_merges: Vec<(Vec<DataFile>, Vec<DataFile>)> = Vec::new();
    let mut merges = 0;
    for (_, name, partition) in candidates {
        let key = (name, partition);
        if left_for_now(skipped, &key) {
            continue;
        }
        let (name, partition) = key;
        let ts = &tables[&name];
        let location = job.lake.join(&name);
        let files: Vec<&DataFile> = ts
            .files
            .iter()
            .filter(|f| f.partition == partition && is_small(job, f))
            .collect();
        let merged_raw = raw_merges
            .iter()
            .filter(|_| copy_tables.contains(&name))
            .find(|(old, _)| {
                // The same file entries but for the SQL mark, which only the copy's have.
                old.iter().all(|o| {
                    files.iter().any(|f| {
                        DataFile {
                            sql: None,
                            ..(*f).clone()
                        } == *o
                    })
                })
            });
        if let Some((old, new)) = merged_raw {
            // These files are the raw files just merged, whole (a copied table's files of the
            // same names, sizes and columns): the merged file is theirs too, copied (a hard
            // link on a local disk, a server-side copy on S3) rather than merged again.
            let copied = async {
                for f in new {
                    silt_lake_writer::copy_file(&job.lake.join(&job.table), &location, f).await?;
                }
                Ok::<_, silt_lake_writer::Error>(())
            };
            match copied.await {
                Ok(()) => {
                    let old: HashSet<&str> = old.iter().map(|f| f.path.as_str()).collect();
                    let n = old.len();
                    let sql = common_sql(
                        files
                            .iter()
                            .copied()
                            .filter(|f| old.contains(f.path.as_str())),
                    );
                    let ts = tables.get_mut(&name).expect("listed");
                    ts.files.retain(|f| !old.contains(f.path.as_str()));
                    ts.files.extend(new.iter().map(|f| DataFile {
                        sql: sql.clone(),
                        ..f.clone()
                    }));
                    changed.push((name, n));
                    continue;
                }
                Err(e) => tracing::warn!(
                    table = %name,
                    "copying the raw table's merged file failed, merging its own: {e}"
                ),
            }
        }
        if merges == COMPACTIONS_PER_BATCH {
            continue;
        }
        // An optimisation: an hour that cannot be merged now stays as it is, the stream goes on.
        // (The merged file is stored once its group is read whole, so a failed merge has
        // seldom stored anything; what it has is not committed, and goes at a writer's start.)
        let merged =
            match merge_group(job, &location, batch_id, &ts.partition_by, &files, target).await {
                Ok(merged) => merged,
                Err(e) => {
                    tracing::warn!(
                        table = %name,
                        partition = %silt_lake_writer::hive_path(&partition),
                        "compaction skipped (tried again in {}s): {e}",
                        COMPACTION_RETRY.as_secs()
                    );
                    None
                }
            };
        match merged {
            Some((old, new)) => {
                let old: HashSet<String> = old.into_iter().collect();
                let ts = tables.get_mut(&name).expect("listed");
                if name == job.table {
                    let merged_away = ts.files.iter().filter(|f| old.contains(&f.path));
                    raw_merges.push((merged_away.cloned().collect(), new.clone()));
                }
                ts.files.retain(|f| !old.contains(&f.path));
                ts.files.extend(new);
                changed.push((name, old.len()));
                merges += 1;
            }
            // No two neighbours of one schema, or a file that cannot be read: left for a while
            // rather than looked at again by every micro-batch.
            None => {
                skipped.insert((name, partition), Instant::now());
            }
        }
    }
    Ok(changed)
}

/// Merges the first group of `files` (one partition's small files, in the order they were
/// written) that is at least two neighbours of one schema, as many as fit in `target` bytes
/// together, into one file of `batch_id`. Returns the paths merged away and the new file;
/// `None` when no two neighbours share a schema (versions alternating within the hour).
async fn merge_group(
    job: &Job,
    location: &Location,
    batch_id: u64,
    partition_by: &[String],
    files: &[&DataFile],
    target: u64,
) -> anyhow::Result<Option<(Vec<String>, Vec<DataFile>)>> {
    // From the commit (or, for files that do not say, their footers), before anything is
    // written; a group starts again where the schema changes (a version registered within
    // the hour added a field).
    let mut group: Vec<&DataFile> = Vec::new();
    let mut group_schema = None;
    let mut bytes = 0;
    for &f in files {
        let full = group.len() >= 2 && bytes + f.bytes > target;
        if full {
            break;
        }
        let schema = match &f.schema {
            Some(key) => key.clone(),
            None => schema_key(&*data_file_schema(location, f).await?),
        };
        if group_schema.as_ref() != Some(&schema) {
            if group.len() >= 2 {
                break;
            }
            group.clear();
            bytes = 0;
            group_schema = Some(schema);
        }
        group.push(f);
        bytes += f.bytes;
    }
    if group.len() < 2 {
        return Ok(None);
    }
    // One file read at a time, in the order the micro-batches wrote them.
    let mut writer = TableWriter::new(location, batch_id, partition_by, &job.writer);
    for f in &group {
        writer
            .write_batches(&read_data_file(location, f, CHECK_SLICE, &[]).await?)
            .await?;
    }
    let mut new = writer.finish_timed().await?.0;
    let sql = common_sql(group.iter().copied());
    for f in &mut new {
        f.compacted = true;
        f.sql = sql.clone();
    }
    Ok(Some((group.iter().map(|f| f.path.clone()).collect(), new)))
}

/// What made a compaction's merged file, from what made its parts: their SQL when they
/// agree, `mixed` when two SQLs did (no transform's SQL has that mark: its rows are an
/// earlier SQL's), none when one part does not say.
fn common_sql<'a>(files: impl IntoIterator<Item = &'a DataFile>) -> Option<String> {
    let mut files = files.into_iter();
    let first = files.next()?.sql.clone()?;
    let mut agree = true;
    for f in files {
        agree &= f.sql.as_ref()? == &first;
    }
    Some(if agree { first } else { "mixed".into() })
}

/// Refuses a job whose latest commit holds positions in another stream ([`SourceState::of`]).
pub(crate) fn check_source(job: &Job, latest: &Commit) -> anyhow::Result<()> {
    SourceState::of(job, latest).map(drop)
}

/// Where the source stands, as commits record it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct SourceState {
    /// The stream the positions are in (commits of older silts do not name it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stream: Option<String>,
    positions: BTreeMap<String, StartAt>,
    ended: BTreeSet<String>,
}

impl SourceState {
    /// The positions `commit` records, refused when they are in another stream than the one
    /// `job` reads: a file stream's offsets or a Kinesis shard's sequence numbers mean nothing
    /// in another stream (they would skip its records, or read from the middle of a frame).
    fn of(job: &Job, commit: &Commit) -> anyhow::Result<SourceState> {
        let source: SourceState =
            serde_json::from_value(commit.source.clone()).context("checkpoint source positions")?;
        let now = job.source.name();
        if let Some(was) = source.stream.as_deref().filter(|was| *was != now) {
            bail!(
                "the job's commit log ({}) holds positions in the stream `{was}`, and the job now \
                 reads the stream `{now}`: positions in one stream mean nothing in another (a job \
                 file copied for a second stream with its `name` left as it was?); give this job \
                 another `name` (a commit log of its own, starting at [source] start), or point \
                 [source] back at `{was}`",
                job.log.location().url
            );
        }
        Ok(source)
    }
}

/// What one shard contributes to a micro-batch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct ShardPlan {
    shard: String,
    from: StartAt,
    count: usize,
    last: Option<Position>,
    next: StartAt,
    ended: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct Plan {
    shards: Vec<ShardPlan>,
}

#[derive(Debug, Clone, Serialize)]
struct BatchStats {
    /// Throttled or failed source calls retried during the batch.
    retries: u64,
    records: usize,
    duplicates: u64,
    late: u64,
    rejected: usize,
}

struct State {
    batch: Option<u64>,
    source: SourceState,
    dedup: DedupIndex,
    /// Where the dedup index of the latest commit is saved.
    dedup_saved: DedupSaved,
    tables: BTreeMap<String, TableState>,
}

/// A dedup snapshot and the deltas to replay over it, as a commit names them.
#[derive(Debug, Clone, Default)]
pub(crate) struct DedupSaved {
    pub snapshot: Option<String>,
    pub deltas: Vec<String>,
    /// Ids of the deltas together.
    pub delta_ids: usize,
}

/// Deltas a commit may name after its snapshot before the next commit saves a whole one
/// (each is one more read when a run starts).
const MAX_DEDUP_DELTAS: usize = 32;

impl DedupSaved {
    /// Restores the dedup index a commit saved: its snapshot, then its deltas in order.
    pub(crate) async fn load(job: &Job, commit: &Commit) -> anyhow::Result<(DedupIndex, Self)> {
        let Some(n) = &commit.dedup else {
            return Ok((DedupIndex::new(job.window_us), Self::default()));
        };
        let mut index = DedupIndex::from_bytes(&job.log.get_dedup(n).await?)
            .with_context(|| format!("dedup snapshot {n}"))?;
        let mut delta_ids = 0;
        for d in &commit.dedup_deltas {
            let bytes = job.log.get_dedup(d).await?;
            index
                .apply_delta(&bytes)
                .with_context(|| format!("dedup delta {d} over snapshot {n}"))?;
            delta_ids += DedupIndex::count(&bytes)?;
        }
        index.set_window_us(job.window_us);
        Ok((
            index,
            Self {
                snapshot: Some(n.clone()),
                deltas: commit.dedup_deltas.clone(),
                delta_ids,
            },
        ))
    }

    /// Saves the index after batch `batch`: the ids it added, as a delta, while the deltas
    /// together hold no more ids than a whole snapshot would (so a start reads at most twice
    /// a snapshot's ids); else the whole index. Deterministic given the commit the batch
    /// followed, so a rerun of the batch saves the same bytes under the same name.
    pub(crate) async fn save(
        &self,
        job: &Job,
        batch: u64,
        index: &mut DedupIndex,
    ) -> anyhow::Result<Self> {
        let delta = index.unsaved_len();
        let saved = match &self.snapshot {
            Some(snapshot)
                if self.deltas.len() < MAX_DEDUP_DELTAS
                    && self.delta_ids + delta <= index.len() =>
            {
                let name = job
                    .log
                    .put_dedup(batch, job.writer.file_tag, index.delta_bytes())
                    .await?;
                Self {
                    snapshot: Some(snapshot.clone()),
                    deltas: self.deltas.iter().cloned().chain([name]).collect(),
                    delta_ids: self.delta_ids + delta,
                }
            }
            _ => Self {
                snapshot: Some(
                    job.log
                        .put_dedup(batch, job.writer.file_tag, index.to_bytes())
                        .await?,
                ),
                deltas: vec![],
                delta_ids: 0,
            },
        };
        index.mark_saved();
        Ok(saved)
    }
}

impl State {
    /// The state of `job`'s latest commit: `read`, when the caller has just read it, else read
    /// now.
    async fn restore(job: &Job, read: Option<Commit>) -> anyhow::Result<State> {
        let latest = match read {
            Some(commit) => Some(commit),
            None => job.log.latest().await.context("reading the checkpoint")?,
        };
        let Some(commit) = latest else {
            return Ok(State {
                batch: None,
                source: SourceState::default(),
                dedup: DedupIndex::new(job.window_us),
                dedup_saved: DedupSaved::default(),
                tables: BTreeMap::new(),
            });
        };
        let source = SourceState::of(job, &commit)?;
        let (dedup, dedup_saved) = DedupSaved::load(job, &commit).await?;
        Ok(State {
            batch: Some(commit.batch),
            source,
            dedup,
            dedup_saved,
            tables: commit.tables,
        })
    }

    fn next_batch(&self) -> u64 {
        self.batch.map_or(0, |b| b + 1)
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64
}

/// Reads the next micro-batch from where the source stands.
async fn read_fresh(
    job: &Job,
    state: &State,
    summary: &mut RunSummary,
) -> anyhow::Result<(Plan, Vec<Chunk>, Vec<String>)> {
    let shards = job.source.shards().await?;
    let listed: HashSet<&str> = shards.iter().map(|s| s.id.as_str()).collect();
    let readable: Vec<&str> = shards
        .iter()
        .filter(|s| !state.source.ended.contains(&s.id))
        .filter(|s| {
            s.parents
                .iter()
                .all(|p| state.source.ended.contains(p) || !listed.contains(p.as_str()))
        })
        .map(|s| s.id.as_str())
        .collect();
    let share = readable.len().max(1);
    let limit = ReadLimit {
        max_records: (job.max_records / share).max(1),
        max_bytes: (job.max_bytes / share).max(1),
    };
    let mut plan = Plan::default();
    let mut chunks = Vec::new();
    let mut names = Vec::new();
    for shard in readable {
        let from = state
            .source
            .positions
            .get(shard)
            .cloned()
            .unwrap_or_else(|| job.start.clone());
        let mut at = from.clone();
        let (mut count, mut bytes) = (0usize, 0usize);
        let mut last = None;
        let mut ended;
        // A source may answer "nothing here, but not caught up" (a Kinesis gap, or a stand-in
        // whose MillisBehindLatest says nothing): a few such answers in a row end this shard's
        // part of the batch, so a bounded run always ends.
        let mut empty_in_a_row = 0;
        loop {
            let left = ReadLimit {
                max_records: limit.max_records - count,
                max_bytes: limit.max_bytes.saturating_sub(bytes).max(1),
            };
            let chunk = job.source.read(shard, &at, left).await?;
            faults::point("mid_read");
            summary.source_retries += chunk.retries;
            if let Some(n) = &chunk.next {
                at = n.clone();
            }
            ended = chunk.ended;
            let caught_up = chunk.caught_up;
            let got = chunk.records.len();
            if got > 0 {
                count += chunk.records.len();
                bytes += chunk.data.len();
                last = chunk.last_position();
                chunks.push(chunk);
                names.push(shard.to_string());
            }
            empty_in_a_row = if got == 0 { empty_in_a_row + 1 } else { 0 };
            if caught_up
                || ended
                || count >= limit.max_records
                || bytes >= limit.max_bytes
                || empty_in_a_row >= 3
            {
                break;
            }
        }
        if count > 0 || at != from || ended {
            plan.shards.push(ShardPlan {
                shard: shard.to_string(),
                from,
                count,
                last,
                next: at,
                ended,
            });
        }
    }
    Ok((plan, chunks, names))
}

/// Reads exactly what a plan names (a rerun of a batch that a killed run planned).
async fn read_plan(
    job: &Job,
    plan: &Plan,
    summary: &mut RunSummary,
) -> anyhow::Result<(Vec<Chunk>, Vec<String>)> {
    let mut chunks = Vec::new();
    let mut names = Vec::new();
    for sp in plan.shards.iter().filter(|s| s.count > 0) {
        let mut at = sp.from.clone();
        let mut got = 0;
        while got < sp.count {
            let limit = ReadLimit {
                max_records: sp.count - got,
                max_bytes: job.max_bytes,
            };
            let mut chunk = job.source.read(&sp.shard, &at, limit).await?;
            summary.source_retries += chunk.retries;
            if chunk.records.is_empty() {
                bail!(
                    "shard {}: the source no longer holds the records of the planned micro-batch ({} of {} read); they may have expired",
                    sp.shard,
                    got,
                    sp.count
                );
            }
            chunk.records.truncate(sp.count - got);
            got += chunk.records.len();
            at = StartAt::After(chunk.last_position().expect("not empty"));
            chunks.push(chunk);
            names.push(sp.shard.clone());
        }
        if let (StartAt::After(p), Some(last)) = (&at, &sp.last) {
            if p != last {
                bail!(
                    "shard {}: replaying the planned micro-batch ended at {p}, not at {last}",
                    sp.shard
                );
            }
        }
    }
    Ok((chunks, names))
}

/// Appends `dt`/`hr` (UTC date and hour of a timestamp column) when they are partition
/// columns and not columns of the batch already; and makes the empty texts of a partition
/// column that may be null null (the lake keeps both in one folder, Hive's default
/// partition, which reads as null), a float's `-0.0` `0.0`: transforms must see on the stream
/// what they see when they read the lake (a recomputation, a backfill).
pub(crate) fn add_time_partitions(
    batch: RecordBatch,
    partition_by: &[String],
    time_col: &str,
) -> anyhow::Result<RecordBatch> {
    let batch = as_the_lake_keeps_them(batch, partition_by)?;
    let schema = batch.schema();
    let need: Vec<&str> = partition_by
        .iter()
        .map(|s| s.as_str())
        .filter(|p| matches!(*p, "dt" | "hr") && schema.index_of(p).is_err())
        .collect();
    if need.is_empty() {
        return Ok(batch);
    }
    let t = batch.column(schema.index_of(time_col)?);
    let micros: Vec<i64> = match t.data_type() {
        DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, _) => t
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .expect("µs")
            .values()
            .to_vec(),
        DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, _) => t
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .expect("ms")
            .values()
            .iter()
            .map(|v| v * 1000)
            .collect(),
        other => bail!("{time_col} is {other}, not a timestamp"),
    };
    let (dt, hr) = hour_texts(&micros)?;
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut cols = batch.columns().to_vec();
    for p in need {
        fields.push(Field::new(p, DataType::Utf8, false));
        cols.push(if p == "dt" { dt.clone() } else { hr.clone() });
    }
    Ok(RecordBatch::try_new(
        Arc::new(ArrowSchema::new(fields)),
        cols,
    )?)
}

/// The date (`%Y-%m-%d`) and the hour (`%H`) of each time in UTC, as text columns.
///
/// A row's text is copied from its hour's, made once a run of rows in the same hour
/// (a stream comes in time order, so the runs are long), straight into the columns' buffers:
/// a builder's append for each of two values was most of this function's cost.
fn hour_texts(micros: &[i64]) -> anyhow::Result<(ArrayRef, ArrayRef)> {
    use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
    let n = micros.len();
    // A date is ten bytes in years 0 to 9999, and longer beyond them.
    let mut dt_values: Vec<u8> = Vec::with_capacity(n * 10);
    let mut dt_offsets: Vec<i32> = Vec::with_capacity(n + 1);
    let mut hr_values: Vec<u8> = Vec::with_capacity(n * 2);
    dt_offsets.push(0);
    let mut at = 0;
    while at < n {
        let hour = micros[at].div_euclid(HOUR_US);
        let (from, to) = (hour * HOUR_US, (hour * HOUR_US).saturating_add(HOUR_US));
        let run = micros[at..]
            .iter()
            .position(|&us| us < from || us >= to)
            .unwrap_or(n - at);
        let t = chrono::DateTime::from_timestamp(hour * 3600, 0).unwrap_or_default();
        let date = t.format("%Y-%m-%d").to_string();
        let h = t.format("%H").to_string();
        repeat_into(&mut dt_values, date.as_bytes(), run);
        repeat_into(&mut hr_values, h.as_bytes(), run);
        let base = *dt_offsets.last().expect("one offset at least");
        let width = i32::try_from(date.len()).expect("a short date");
        dt_offsets.extend((1..=run).map(|i| base + i as i32 * width));
        at += run;
    }
    anyhow::ensure!(
        i32::try_from(dt_values.len()).is_ok(),
        "dates past 2 GiB in one batch"
    );
    anyhow::ensure!(hr_values.len() == 2 * n, "an hour is two digits");
    let hr_offsets: ScalarBuffer<i32> = (0..=i32::try_from(n)?).map(|i| i * 2).collect();
    let dt = StringArray::try_new(
        OffsetBuffer::new(ScalarBuffer::from(dt_offsets)),
        Buffer::from_vec(dt_values),
        None,
    )?;
    let hr = StringArray::try_new(
        OffsetBuffer::new(hr_offsets),
        Buffer::from_vec(hr_values),
        None,
    )?;
    Ok((Arc::new(dt), Arc::new(hr)))
}

const HOUR_US: i64 = 3_600_000_000;

/// Appends `times` copies of `bytes` to `out`, copying what is there already (a few copies
/// of growing size, not one a row).
fn repeat_into(out: &mut Vec<u8>, bytes: &[u8], times: usize) {
    let start = out.len();
    let total = bytes.len() * times;
    if total == 0 {
        return;
    }
    out.reserve(total);
    out.extend_from_slice(bytes);
    while out.len() - start < total {
        let have = out.len() - start;
        out.extend_from_within(start..start + have.min(total - have));
    }
}

/// The partition columns of a job's rejected table: the date and hour of each record's
/// arrival.
pub(crate) fn rejected_partitions() -> Vec<String> {
    vec!["dt".to_string(), "hr".to_string()]
}

/// The columns `names` of `schema`, as the job writes them into partition folders (text that
/// is never null for a name `schema` lacks).
pub(crate) fn partition_fields(schema: &ArrowSchema, names: &[String]) -> Vec<FieldRef> {
    names
        .iter()
        .map(|n| match schema.field_with_name(n) {
            Ok(f) => Arc::new(f.clone()),
            Err(_) => Arc::new(Field::new(n, DataType::Utf8, false)),
        })
        .collect()
}

/// [`add_time_partitions`]' partition values as the lake keeps them: null for the empty
/// texts of a nullable text partition column, and `0.0` for a float's `-0.0` (one folder
/// for both, as one group of a `GROUP BY`: a transform's output must land where a backfill
/// of its partition looks).
fn as_the_lake_keeps_them(
    batch: RecordBatch,
    partition_by: &[String],
) -> anyhow::Result<RecordBatch> {
    let schema = batch.schema();
    let mut columns: Option<Vec<ArrayRef>> = None;
    for p in partition_by {
        let Ok(i) = schema.index_of(p) else { continue };
        let (field, column) = (schema.field(i), batch.column(i));
        let kept = match field.data_type() {
            DataType::Utf8 if field.is_nullable() => {
                let text = column.as_any().downcast_ref::<StringArray>().expect("utf8");
                let empty = arrow::compute::kernels::cmp::eq(text, &StringArray::new_scalar(""))?;
                if empty.true_count() == 0 {
                    continue;
                }
                arrow::compute::nullif(column, &empty)?
            }
            // IEEE: -0.0 + 0.0 is 0.0; every other value (NaN too) stays as it is.
            DataType::Float64 => arrow::compute::kernels::numeric::add(
                column,
                &arrow::array::Float64Array::new_scalar(0.0),
            )?,
            DataType::Float32 => arrow::compute::kernels::numeric::add(
                column,
                &arrow::array::Float32Array::new_scalar(0.0),
            )?,
            _ => continue,
        };
        columns.get_or_insert_with(|| batch.columns().to_vec())[i] = kept;
    }
    Ok(match columns {
        Some(columns) => RecordBatch::try_new(schema, columns)?,
        None => batch,
    })
}

/// The raw table's shape with time partition columns: the `events` table transforms read.
/// Refused, before a record is read, when a partition column is not among its columns or
/// holds no plain value (a record, a list, a map: no folder name says one).
fn events_schema(decoded: &SchemaRef, partition_by: &[String]) -> anyhow::Result<SchemaRef> {
    // `dt` and `hr` are the event time's: an event field of that name would take their place
    // (its values naming the folders), while backfills, re-drives and late events look for an
    // event in its event-time hour.
    if let Some(p) = partition_by
        .iter()
        .find(|p| matches!(p.as_str(), "dt" | "hr") && decoded.index_of(p).is_ok())
    {
        let what = if p == "dt" { "date" } else { "hour" };
        bail!(
            "[lake] partition_by: `{p}` is the event time's UTC {what}, but the events have a \
             field `{p}` of their own, which would take its place: partition by other columns \
             (e.g. `partition_by = []`), or rename the field in a new version of the schema"
        );
    }
    let schema = add_time_partitions(
        RecordBatch::new_empty(decoded.clone()),
        partition_by,
        EVENT_TIME,
    )?
    .schema();
    for p in partition_by {
        let Ok(field) = schema.field_with_name(p) else {
            bail!(
                "[lake] partition_by: no column `{p}` (the columns: {})",
                schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        if field.data_type().is_nested() {
            bail!(
                "[lake] partition_by: `{p}` is {}, not a plain value: a partition column names \
                 its rows' folder, so it holds text, a number, a date or a boolean",
                field.data_type()
            );
        }
    }
    Ok(schema)
}

const SNAPSHOT_URL: &str = "silt://lake/";

/// Records checked, deduplicated, decoded, written and transformed at a time within a
/// micro-batch: small enough for the bodies to stay in cache from the check to the decode,
/// and the rows from the raw table's write to the transforms.
pub(crate) const CHECK_SLICE: usize = 8_192;

/// The job's transforms planned once for the run: the `rows` transforms, run over each slice
/// of decoded rows while they are still in cache, into their tables' writers; and the
/// `partitions` transforms that can be merged with their previous output
/// ([`silt_transform::incremental`]), fed each slice as it passes.
pub(crate) struct RowsTransforms {
    /// `Some` for transform `i` in `rows` mode.
    prepared: Vec<Option<silt_transform::PreparedRows>>,
    /// `Some` for transform `i` in `partitions` mode when it merges.
    incremental: Vec<Option<silt_transform::PreparedIncremental>>,
    /// Transform `i`'s name: the table it writes.
    names: Vec<String>,
}

impl RowsTransforms {
    pub(crate) async fn prepare(job: &Job, events: &SchemaRef) -> anyhow::Result<RowsTransforms> {
        let session = silt_transform::RowsSession::new(&job.references).await?;
        let (mut prepared, mut incremental) = (Vec::new(), Vec::new());
        for t in &job.transforms {
            prepared.push(match t.mode {
                Mode::Rows => Some(session.prepare(t, events.clone()).await?),
                Mode::Partitions => None,
            });
            incremental.push(match t.mode {
                Mode::Rows => None,
                Mode::Partitions => session.prepare_incremental(t, events.clone()).await?,
            });
        }
        Ok(RowsTransforms {
            prepared,
            incremental,
            names: job.transforms.iter().map(|t| t.name.clone()).collect(),
        })
    }

    /// Whether `partitions` transform `i` is merged with its previous output rather than
    /// recomputed.
    pub(crate) fn merges(&self, i: usize) -> bool {
        self.incremental.get(i).is_some_and(Option::is_some)
    }

    /// Per transform, what the raw table's writer copies into its files when it can write
    /// them ([`TableWriter::copy_columns`]): a `rows` transform that passes columns of
    /// `events` through, every row, partitioned as the raw table, its partition columns the
    /// raw ones under their own names (`SELECT * FROM events`, `SELECT uuid AS id, dt, hr
    /// FROM events`). Its files are then the raw files' column chunks, copied: the same
    /// bytes its SQL's output would encode to, for a copy instead of a second encoding.
    pub(crate) fn copied_from_raw(
        &self,
        events: &SchemaRef,
        partition_by: &[String],
        out_parts: &[Vec<String>],
    ) -> Vec<Option<RawCopy>> {
        self.prepared
            .iter()
            .zip(out_parts)
            .map(|(p, parts)| {
                let p = p.as_ref()?;
                let columns = p.passed_through()?;
                let out = p.schema();
                if parts.as_slice() != partition_by || columns.len() != out.fields().len() {
                    return None;
                }
                let mut sources = Vec::new();
                for (&c, f) in columns.iter().zip(out.fields()) {
                    let source = events.fields().get(c)?;
                    let partition = partition_by.contains(source.name());
                    // A partition column keeps its name (the files' folders are the raw
                    // ones); any other column may take another.
                    if partition != parts.contains(f.name())
                        || (partition && source.name() != f.name())
                        || source.as_ref().clone().with_name(f.name()) != **f
                    {
                        return None;
                    }
                    if !partition {
                        sources.push(source.name().clone());
                    }
                }
                let schema = silt_lake_writer::file_schema(&out, parts);
                (!sources.is_empty()).then_some(RawCopy { schema, sources })
            })
            .collect()
    }

    /// Starts a micro-batch's run of each merging `partitions` transform.
    fn start(&self) -> anyhow::Result<Vec<Option<silt_transform::Running>>> {
        self.incremental
            .iter()
            .map(|p| p.as_ref().map(|p| p.start()).transpose())
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    }

    /// Runs every `rows` transform over `input`, into `writers[i]` for transform `i`, and
    /// hands `input` to the merging `partitions` transforms' runs.
    pub(crate) async fn run(
        &self,
        input: &[RecordBatch],
        writers: &mut [Option<TableWriter>],
        running: &mut [Option<silt_transform::Running>],
        summary: &mut RunSummary,
    ) -> anyhow::Result<()> {
        for (r, name) in running.iter_mut().zip(&self.names) {
            let Some(r) = r else { continue };
            let t = Instant::now();
            r.push(input)?;
            summary.add_sql(name, t.elapsed().as_secs_f64());
        }
        for ((p, w), name) in self.prepared.iter().zip(writers).zip(&self.names) {
            let (Some(p), Some(w)) = (p, w) else { continue };
            let t = Instant::now();
            let out = p.run(input.to_vec()).await?;
            summary.add_sql(name, t.elapsed().as_secs_f64());
            // The writer times its encoding and puts; they are counted when it finishes.
            w.write_batches(&out).await?;
        }
        Ok(())
    }
}

/// Has `raw`, the raw table's writer of a micro-batch, write the files of the transforms
/// that pass raw columns through (`copied`, from [`RowsTransforms::copied_from_raw`]).
pub(crate) fn copy_from_raw(
    job: &Job,
    copied: &[Option<RawCopy>],
    raw: &mut TableWriter,
) -> anyhow::Result<()> {
    for (t, copy) in job.transforms.iter().zip(copied) {
        if let Some(c) = copy {
            raw.copy_columns(&job.lake.join(&t.name), c.schema.clone(), c.sources.clone())?;
        }
    }
    Ok(())
}

/// What the raw writer copies into a transform's files: their columns, and the raw column
/// each is a copy of.
#[derive(Debug, Clone)]
pub(crate) struct RawCopy {
    schema: SchemaRef,
    sources: Vec<String>,
}

impl RawCopy {
    /// The copy's files' columns.
    pub(crate) fn schema(&self) -> &SchemaRef {
        &self.schema
    }
}

/// A writer for each `rows` transform whose files the raw writer does not copy, for
/// micro-batch `batch`.
pub(crate) fn rows_writers(
    job: &Job,
    out_parts: &[Vec<String>],
    copied: &[Option<RawCopy>],
    batch: u64,
) -> Vec<Option<TableWriter>> {
    job.transforms
        .iter()
        .zip(out_parts)
        .zip(copied)
        .map(|((t, parts), copied)| {
            (t.mode == Mode::Rows && copied.is_none())
                .then(|| TableWriter::new(&job.lake.join(&t.name), batch, parts, &job.writer))
        })
        .collect()
}

/// The raw writer's copies ([`TableWriter::finish_with_copies`]) by transform: `Some` for
/// each transform `copied` names.
pub(crate) fn copies_by_transform(
    copied: &[Option<RawCopy>],
    copies: Vec<(Vec<DataFile>, WriteTimings)>,
) -> Vec<Option<(Vec<DataFile>, WriteTimings)>> {
    let mut copies = copies.into_iter();
    copied
        .iter()
        .map(|c| {
            c.as_ref()
                .map(|_| copies.next().expect("one a copied transform"))
        })
        .collect()
}

/// A transform's partition columns (those of the job's partition columns it selects) and its
/// output's schema. Refuses one that puts a computed column under a partition column's name,
/// or (`partitions` mode) that lets rows of one output partition draw on rows of another.
async fn output_partitions(
    t: &Transform,
    references: &[silt_transform::Reference],
    events: &SchemaRef,
    partition_by: &[String],
) -> anyhow::Result<(Vec<String>, SchemaRef)> {
    let ctx = silt_transform::transform_session(references).await?;
    ctx.register_table(
        "events",
        Arc::new(datafusion::datasource::MemTable::try_new(
            events.clone(),
            vec![vec![]],
        )?),
    )?;
    let df = silt_transform::plan(&ctx, t).await?;
    silt_transform::check_partition_columns(t, df.logical_plan(), partition_by)?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let parts: Vec<String> = partition_by
        .iter()
        .filter(|p| schema.fields().iter().any(|f| f.name() == *p))
        .cloned()
        .collect();
    silt_transform::check_partitions_local(t, df.logical_plan(), &parts)?;
    Ok((parts, schema))
}

/// A merging `partitions` transform's output for a micro-batch: its grouping of the batch's
/// rows (`run`) merged with its committed rows of the partitions they fall in, and those
/// partitions. `None` when some of those rows were written by another SQL (the transform's
/// SQL changed since, or an older silt did not record it): the partitions are then
/// recomputed, and merged again from the next micro-batch on.
#[allow(clippy::too_many_arguments)]
async fn merge_partitions(
    prepared: &silt_transform::PreparedIncremental,
    run: silt_transform::Running,
    t: &Transform,
    table: &Location,
    committed: Option<&TableState>,
    out_partitions: &[String],
    touched: &BTreeSet<Vec<(String, String)>>,
) -> anyhow::Result<Option<(Vec<RecordBatch>, BTreeSet<Vec<(String, String)>>)>> {
    let partial = run.finish().await?;
    let affected = affected_partitions(touched, out_partitions);
    let sql = short_hash(t.sql.as_bytes());
    let files: Vec<&DataFile> = committed
        .into_iter()
        .flat_map(|ts| &ts.files)
        .filter(|f| affected.contains(&f.partition))
        .collect();
    if files.iter().any(|f| f.sql.as_deref() != Some(sql.as_str())) {
        return Ok(None);
    }
    let mut previous = Vec::new();
    let partitions = partition_fields(prepared.output(), out_partitions);
    for f in files {
        previous.extend(read_data_file(table, f, CHECK_SLICE, &partitions).await?);
    }
    if !previous.iter().all(|b| prepared.accepts(&b.schema())) {
        return Ok(None);
    }
    Ok(Some((prepared.merge(previous, partial).await?, affected)))
}

/// Adds a table's new `files` to `tables`, the table partitioned by `partition_by` (made if
/// it is new); with `affected`, the files of those partitions go first (a `partitions`
/// transform's recomputed hours). Returns how many files were replaced. Shared by the stream
/// job, the backfill and the re-drive.
pub(crate) fn put_files(
    tables: &mut BTreeMap<String, TableState>,
    table: &str,
    partition_by: &[String],
    files: Vec<DataFile>,
    affected: Option<&BTreeSet<Vec<(String, String)>>>,
) -> usize {
    let ts = tables.entry(table.to_string()).or_default();
    ts.partition_by = partition_by.to_vec();
    let before = ts.files.len();
    if let Some(affected) = affected {
        ts.files.retain(|f| !affected.contains(&f.partition));
    }
    let replaced = before - ts.files.len();
    ts.files.extend(files);
    replaced
}

/// After a commit: deletes the files of the `replaced` tables that the commit before it
/// (`before`) listed and it (`after`) no longer does, and prunes the log.
///
/// Only those: files no commit lists are a killed writer's leftovers only when no writer is
/// working on them, which is known at a writer's start ([`remove_leftovers`]), not here: a
/// backfill beside the runs may be writing files of a micro-batch this commit has just
/// taken, which it moves to the next one when it finds itself beaten.
pub(crate) async fn clean_after_commit(
    job: &Job,
    before: &BTreeMap<String, TableState>,
    after: &BTreeMap<String, TableState>,
    replaced: impl IntoIterator<Item = &String>,
) -> anyhow::Result<()> {
    for name in replaced {
        let Some(old) = before.get(name) else {
            continue;
        };
        let live: HashSet<&str> = after
            .get(name)
            .map(|t| t.files.iter().map(|f| f.path.as_str()).collect())
            .unwrap_or_default();
        let gone = old.files.iter().filter(|f| !live.contains(f.path.as_str()));
        remove_files(&job.lake.join(name), gone).await?;
    }
    job.log.prune(20).await?;
    Ok(())
}

/// Deletes the data files of `tables` (and of the job's tables they lack) of batches up to
/// `batch` (the latest commit's) that no commit lists: a killed writer's leftovers. Files of
/// later batches are a live writer's, and stay; so do those tagged by a command whose lease
/// is held (another than `job`'s own tag: a command that holds its tag's lease is the only
/// one of it). With `staging`, a sole writer's temporary files too.
pub(crate) async fn remove_leftovers(
    job: &Job,
    tables: &BTreeMap<String, TableState>,
    batch: u64,
    staging: bool,
) -> anyhow::Result<()> {
    let spare = job.log.held_tags(job.writer.file_tag).await?;
    for (table, ts) in tables {
        vacuum(&job.lake.join(table), &ts.files, batch, &spare, staging).await?;
    }
    // A table of the job that no commit holds yet (a transform new to it) has no live file:
    // what a killed writer wrote there before its first commit goes too.
    for table in job.tables().filter(|t| !tables.contains_key(*t)) {
        vacuum(
            &job.lake.join(table),
            &[] as &[DataFile],
            batch,
            &spare,
            staging,
        )
        .await?;
    }
    Ok(())
}

/// For a command that commits beside the job's runs (the backfill, the re-drive): its hold
/// on the writers' lock, shared (a run starting meanwhile keeps its hands off its temporary
/// files), the lease of its `tag` (no second one starts; no run's clean-up takes its files
/// while it works), and the latest commit, which it builds on; a killed writer's leftovers
/// (its own tag's among them) are deleted first, as a run does when it starts. Its files
/// are tagged `tag` ([`WriterOptions::file_tag`]): a run racing it to the same micro-batch
/// number never writes over them.
pub(crate) async fn beside_the_runs(
    job: &Job,
    tag: &'static str,
) -> anyhow::Result<(Job, silt_lake_writer::WriterLock, Lease, Commit)> {
    let mut writers = job.log.writer_lock()?;
    writers.share()?;
    let lease = job
        .log
        .take_lease(tag)
        .await
        .with_context(|| format!("{tag} of job {}", job.name))?;
    let Some(latest) = job.log.latest().await? else {
        lease.release().await;
        bail!(
            "job `{}` has not committed anything yet: run it first",
            job.name
        );
    };
    let job = Job {
        writer: WriterOptions {
            file_tag: tag,
            ..job.writer.clone()
        },
        ..job.clone()
    };
    // What a killed writer left of a micro-batch that another has committed since (this
    // command's own files from before a crash, say) goes before it writes anything: a
    // directory reader must not see them beside what it writes now.
    remove_leftovers(&job, &latest.tables, latest.batch, false).await?;
    Ok((job, writers, lease, latest))
}

/// The micro-batch that a command beside the runs (a backfill, a re-drive), at work over
/// `old`, lost to, from the error `e` its work ended in: another writer committed that
/// micro-batch first, or a newer commit (a run's compaction, a recomputed hour) replaced files
/// the command was reading and deleted them. `None`: `e` is an error of its own.
pub(crate) async fn lost_to(
    job: &Job,
    e: &anyhow::Error,
    old: &Commit,
) -> anyhow::Result<Option<u64>> {
    if let Some(silt_lake_writer::Error::Conflict { batch, .. }) = e.downcast_ref() {
        return Ok(Some(*batch));
    }
    if !crate::file_gone(e) {
        return Ok(None);
    }
    Ok(match job.log.latest().await? {
        Some(newer) if newer.batch > old.batch => Some(old.batch + 1),
        _ => None,
    })
}

/// The latest commit, which another writer has just made (a command beside the runs lost
/// its micro-batch to it).
pub(crate) async fn commit_that_won(job: &Job) -> anyhow::Result<Commit> {
    job.log
        .latest()
        .await?
        .context("another writer committed, yet the log has no latest commit")
}

/// A spinner with the time run and a message, cleared when dropped (an attempt that ends
/// early, a newer schema or a refused record, leaves none behind).
pub(crate) fn spinner() -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new_spinner().with_finish(indicatif::ProgressFinish::AndClear);
    pb.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .expect("valid template"),
    );
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// Writes a `partitions` transform's output for the partitions it replaces, each file marked
/// with the SQL that computed it ([`mark_sql`]). Shared by the stream job and the backfill.
pub(crate) async fn write_partitions(
    job: &Job,
    t: &Transform,
    batch: u64,
    out: &[RecordBatch],
    partition_by: &[String],
) -> anyhow::Result<(Vec<DataFile>, WriteTimings)> {
    let (mut files, timings) = write_table_timed(
        &job.lake.join(&t.name),
        batch,
        out,
        partition_by,
        &job.writer,
    )
    .await?;
    mark_sql(t, &mut files);
    Ok((files, timings))
}

/// Marks a transform's new files with the SQL that made them (a short hash): a `partitions`
/// transform merges new groups only into rows of the same SQL, and the rows an earlier SQL
/// wrote are told apart ([`super::backfill::earlier_sql`]). Shared by every writer of a
/// transform's files.
pub(crate) fn mark_sql(t: &Transform, files: &mut [DataFile]) {
    let sql = short_hash(t.sql.as_bytes());
    for f in files {
        f.sql = Some(sql.clone());
    }
}

/// A raw partition's values in a transform's partition columns.
pub(crate) fn project_partition(
    values: &[(String, String)],
    out_partitions: &[String],
) -> Vec<(String, String)> {
    values
        .iter()
        .filter(|(k, _)| out_partitions.contains(k))
        .cloned()
        .collect()
}

/// The output partitions of a transform (partitioned by `out_partitions`) that rows of the
/// `touched` raw partitions fall in.
fn affected_partitions(
    touched: &BTreeSet<Vec<(String, String)>>,
    out_partitions: &[String],
) -> BTreeSet<Vec<(String, String)>> {
    touched
        .iter()
        .map(|p| project_partition(p, out_partitions))
        .collect()
}

/// Recomputes a `partitions` transform over whole raw partitions: those whose values in the
/// transform's partition columns were touched. Shared by the stream job and the backfill.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn recompute_partitions(
    references: &[silt_transform::Reference],
    lake: &Location,
    raw_table: &str,
    raw: &TableState,
    raw_file_schema: SchemaRef,
    raw_partitions: &[FieldRef],
    defaults: &silt_transform::ColumnDefaults,
    t: &Transform,
    out_partitions: &[String],
    touched: &BTreeSet<Vec<(String, String)>>,
) -> anyhow::Result<(Vec<RecordBatch>, BTreeSet<Vec<(String, String)>>)> {
    let affected = affected_partitions(touched, out_partitions);
    let files: Vec<DataFile> = raw
        .files
        .iter()
        .filter(|f| affected.contains(&project_partition(&f.partition, out_partitions)))
        .cloned()
        .collect();
    // Files of an older schema may lack fields within a column (a field added to a record):
    // those read as null. Files of the current schema are read as written.
    let current = schema_key(&raw_file_schema);
    let read_schema = if files.iter().all(|f| f.schema.as_deref() == Some(&current)) {
        raw_file_schema
    } else {
        silt_transform::nested_nullable(&raw_file_schema)
    };
    let snapshot = LakeSnapshot {
        lake: lake.clone(),
        tables: [(
            raw_table.to_string(),
            (
                TableState {
                    partition_by: raw.partition_by.clone(),
                    files,
                },
                now_ms(),
            ),
        )]
        .into_iter()
        .collect(),
        defaults: BTreeMap::new(),
        rejected: Default::default(),
        partition_types: BTreeMap::new(),
    };
    let ctx = silt_transform::transform_session(references).await?;
    let url = url::Url::parse(SNAPSHOT_URL).expect("valid");
    let table_path = lake.child(raw_table);
    silt_transform::register_parquet_table(
        &ctx,
        "events",
        &url,
        snapshot.store(),
        table_path.as_ref(),
        raw_partitions,
        read_schema,
        defaults,
    )
    .await?;
    let out = silt_transform::run(&ctx, t).await?;
    Ok((out, affected))
}

/// Source calls retried (throttling, 5xx) in the job's commits of the last `window`: what
/// the autoscaling hook weighs.
pub async fn throttles_since(job: &Job, window: Duration) -> anyhow::Result<u64> {
    let Some(latest) = job.log.latest().await? else {
        return Ok(0);
    };
    let since = now_ms() - window.as_millis() as i64;
    let mut total = 0;
    let mut b = latest.batch as i64;
    while b >= 0 {
        let Some(c) = job.log.commit(b as u64).await? else {
            break;
        };
        if c.committed_at_ms < since {
            break;
        }
        total += c.stats["retries"].as_u64().unwrap_or(0);
        b -= 1;
    }
    Ok(total)
}

/// The watermark's ceiling after a micro-batch: the lowest, over the shards that have more to
/// read than the batch took, of the newest event time the batch read from them (`None`: every
/// shard read is caught up, or gave no event). Chunks of one shard come together, its last
/// chunk saying whether it caught up.
fn behind_shards_hold(
    chunks: &[Chunk],
    names: &[String],
    newest_us: &[Option<i64>],
) -> Option<i64> {
    let mut shards: HashMap<&str, (Option<i64>, bool)> = HashMap::new();
    for ((chunk, name), newest) in chunks.iter().zip(names).zip(newest_us) {
        let e = shards.entry(name.as_str()).or_insert((None, false));
        e.0 = match (e.0, *newest) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        e.1 = chunk.caught_up || chunk.ended;
    }
    shards
        .values()
        .filter(|(_, caught_up)| !caught_up)
        .filter_map(|(newest, _)| *newest)
        .min()
}

/// Why a late event went to the rejected table.
fn late_reason(event_us: i64, horizon_us: Option<i64>) -> String {
    let when = silt_ingest::micros_text;
    format!(
        "event time {} is before the dedup window (which began at {} when the micro-batch started), so it may repeat an event already written; [dedup] late = \"keep\" writes such events to the table",
        when(event_us),
        horizon_us.map_or_else(|| "?".into(), when)
    )
}

/// The shapes of a job's tables, from the subject's latest schema.
pub(crate) struct Shapes {
    pub decoder: EventDecoder,
    /// The `events` table transforms read: raw columns and partition columns.
    pub events: SchemaRef,
    /// What the raw table's files hold (without partition columns).
    pub raw_files: SchemaRef,
    /// Each transform's partition columns.
    pub out_partitions: Vec<Vec<String>>,
    /// Each transform's output columns (partition columns included).
    pub outputs: Vec<SchemaRef>,
    /// The subject's version whose schema is the reader schema.
    pub reader: silt_registry::Registered,
    /// The defaults of the reader schema's fields: what the raw files written before a
    /// field was added read as in that column.
    pub defaults: silt_transform::ColumnDefaults,
}

impl Shapes {
    pub(crate) async fn of(job: &Job) -> anyhow::Result<Shapes> {
        // The version list, not `latest`, which the registry's cache may hold for a while: a
        // run that restarts because a newer version appeared must see it.
        let (version, reader) = async {
            let versions = job.registry.versions(&job.subject).await?;
            let last = versions.last().expect("versions() is never empty").clone();
            let schema = job.registry.schema(&job.subject, &last.fingerprint).await?;
            Ok::<_, silt_registry::Error>((last, schema))
        }
        .await
        .with_context(|| format!("reader schema: subject `{}`", job.subject))?;
        let decoder =
            EventDecoder::new(job.registry.clone(), reader, job.framing, job.source.name())?
                .with_max_future(job.max_future);
        let events = events_schema(&decoder.schema(), &job.partition_by)?;
        let raw_files = silt_lake_writer::file_schema(&events, &job.partition_by);
        let defaults = decoder
            .reader()
            .fields()
            .iter()
            .filter_map(|f| Some((f.name.clone(), f.default.clone()?)))
            .filter(|(_, d)| !d.is_null())
            .collect();
        let (mut out_partitions, mut outputs) = (Vec::new(), Vec::new());
        for t in &job.transforms {
            // A field the SQL names may have gone from the subject's latest version.
            let (parts, schema) = output_partitions(t, &job.references, &events, &job.partition_by)
                .await
                .with_context(|| {
                    format!(
                        "`events` has the fields of version {} of subject `{}` (its latest)",
                        version.version, job.subject
                    )
                })?;
            case_clash(&schema).with_context(|| format!("transform `{}`", t.name))?;
            out_partitions.push(parts);
            outputs.push(schema);
        }
        Ok(Shapes {
            decoder,
            events,
            raw_files,
            out_partitions,
            outputs,
            reader: version,
            defaults,
        })
    }
}

/// Refuses a table of two columns whose names differ only in case (`p`, `P`): DataFusion
/// tells them apart, Spark and Hive read names without case and refuse the table ("the
/// column `p` already exists"). (The registry refuses such event fields; a transform's SQL
/// can still make them.)
fn case_clash(schema: &arrow::datatypes::Schema) -> anyhow::Result<()> {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    if let Some((a, b)) = silt_wire::names_differing_in_case(&names) {
        anyhow::bail!(
            "its columns `{a}` and `{b}` differ only in case: Spark and Hive read column names without case and refuse a table that has both; rename one in its SQL"
        );
    }
    Ok(())
}

/// Runs a job: micro-batches until caught up (or, with `follow`, until shutdown).
///
/// When the stream brings records of a version of the subject registered after the run
/// started, the micro-batch in hand stops before decoding them (nothing of it is committed)
/// and the run starts again with that version as its reader schema, as a rerun after a crash
/// does: the batch is redone from its intent, and the tables gain the new columns. The same
/// way, records that pass the check but that arrow-avro refuses are named, and the batch is
/// redone with them rejected (`undecodable`), so that they cannot stop the stream.
pub async fn run(job: &Job, opts: &RunOptions) -> anyhow::Result<RunSummary> {
    let started = Instant::now();
    let mut summary = RunSummary {
        job: job.name.clone(),
        ..Default::default()
    };
    // A following run's wait before it starts again after an outage, and the batches
    // committed when it began (a commit since means the outage ended: the wait starts over).
    let mut outage_wait = OutageWait::new(summary.batches);
    // Transforms new to the job first get their tables filled from the raw table's hours.
    let mut latest = loop {
        let start = async {
            let latest = job.log.latest().await.context("reading the checkpoint")?;
            let filled =
                super::backfill::fill_new_tables(job, latest.as_ref(), opts.progress).await?;
            anyhow::Ok((latest, filled))
        };
        match start.await {
            Ok((mut latest, filled)) => {
                if filled.as_ref().is_some_and(|f| f.batch.is_some()) {
                    latest = None; // the fill committed after it: read again
                }
                summary.filled = filled;
                break latest;
            }
            Err(e) if opts.follow && outage(&e) => {
                if !outage_wait.wait(job, opts, &e, summary.batches).await {
                    summary.elapsed_s = started.elapsed().as_secs_f64();
                    return Ok(summary);
                }
            }
            Err(e) => return Err(e),
        }
    };
    // Records arrow-avro refused, found by earlier attempts: the check rejects them.
    let mut undecodable: Vec<silt_ingest::Undecodable> = Vec::new();
    loop {
        // The commit read above serves the first attempt; a later one reads its own.
        match run_with_latest(job, opts, &mut summary, &undecodable, latest.take()).await {
            Ok(()) => break,
            Err(e) if opts.follow && outage(&e) => {
                if !outage_wait.wait(job, opts, &e, summary.batches).await {
                    break;
                }
            }
            Err(e) => match e.downcast_ref::<silt_ingest::Error>() {
                Some(outdated @ silt_ingest::Error::ReaderOutdated { .. }) => {
                    tracing::info!("{outdated}: starting again with it");
                    summary.reader_changes += 1;
                }
                _ if learn_undecodable(&e, &mut undecodable) => {
                    tracing::warn!("{e}: starting the micro-batch again, rejecting them");
                }
                _ => match taken_by(job, &e).await {
                    Some(command) => tracing::warn!(
                        "{e}: it was a {command} of the job; starting again after it"
                    ),
                    None => return Err(e),
                },
            },
        }
    }
    summary.elapsed_s = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// A following run's first wait after an outage, doubled at each failure up to the most.
const OUTAGE_FIRST_WAIT: Duration = Duration::from_secs(1);
const OUTAGE_MAX_WAIT: Duration = Duration::from_secs(60);

/// How long a following run waits out an outage before it starts again.
struct OutageWait {
    next: Duration,
    /// The run's committed batches when the wait was last set back: a commit since means the
    /// outage ended, and the next one is waited out from the start.
    batches: u64,
}

impl OutageWait {
    fn new(batches: u64) -> Self {
        Self {
            next: OUTAGE_FIRST_WAIT,
            batches,
        }
    }

    /// Warns of `e` and waits; false when the run was stopped (Ctrl-C, SIGTERM) meanwhile.
    async fn wait(
        &mut self,
        job: &Job,
        opts: &RunOptions,
        e: &anyhow::Error,
        batches: u64,
    ) -> bool {
        if batches > self.batches {
            *self = Self::new(batches);
        }
        eprintln!(
            "job {}: warning: {}; starting again in {}s (a micro-batch in hand is redone: \
             nothing of it was committed)",
            job.name,
            crate::one_line(e),
            self.next.as_secs()
        );
        let stopped = tokio::select! {
            _ = tokio::time::sleep(self.next) => false,
            _ = opts.shutdown.cancelled() => true,
        };
        self.next = (self.next * 2).min(OUTAGE_MAX_WAIT);
        !stopped
    }
}

/// Whether `e` is an outage of a service the job works through, which a following run waits
/// out (a run for a scheduler fails, and the next one tries again): the registry unreachable
/// (its storage, its HTTP service), the stream still throttling or failing after the
/// source's own retries; the lake's store failing after object_store's retries (S3 down, a
/// bucket not there yet). A missing stream, another run's commit, a bad record or a wrong job
/// file is no outage.
fn outage(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<silt_registry::Error>(),
            Some(silt_registry::Error::Storage { .. })
        ) || matches!(
            c.downcast_ref::<silt_lake_writer::Error>(),
            Some(silt_lake_writer::Error::Store {
                source: object_store::Error::Generic { .. },
                ..
            })
        ) || matches!(
            c.downcast_ref::<silt_ingest::Error>(),
            Some(
                silt_ingest::Error::Throttled(_)
                    | silt_ingest::Error::Service(_)
                    | silt_ingest::Error::Registry(silt_registry::Error::Storage { .. })
            )
        )
    })
}

/// When `e` says that another writer committed the micro-batch first, and that writer was a
/// command beside the runs (`backfill`, `redrive`) rather than another run of the job: which.
/// The run then starts again from that commit (its own files of the batch go as a killed
/// writer's), as it would had it started after the command; only two runs of one job at once
/// make the loser fail.
async fn taken_by(job: &Job, e: &anyhow::Error) -> Option<&'static str> {
    let Some(silt_lake_writer::Error::Conflict { batch, .. }) = e.downcast_ref() else {
        return None;
    };
    let commit = job.log.commit(*batch).await.ok()??;
    ["backfill", "redrive"]
        .into_iter()
        .find(|c| commit.stats.get(c).is_some())
}

/// Whether `e` names records that arrow-avro refuses and `known` did not hold yet (they are
/// added to it): the work is then done again with them rejected as `undecodable`.
pub(crate) fn learn_undecodable(
    e: &anyhow::Error,
    known: &mut Vec<silt_ingest::Undecodable>,
) -> bool {
    let Some(silt_ingest::Error::Undecodable { records, .. }) = e.downcast_ref() else {
        return false;
    };
    let before = known.len();
    for r in records {
        if !known.contains(r) {
            known.push(r.clone());
        }
    }
    known.len() > before
}

/// Checks a job's tables before it writes them: [`check_owners`], [`check_raw_table`], then
/// [`check_partitioning`] (`tables`: the job's latest commit's).
pub(crate) async fn check_tables(
    job: &Job,
    shapes: &Shapes,
    tables: Option<&BTreeMap<String, TableState>>,
) -> anyhow::Result<()> {
    check_owners(job).await?;
    if let Some(tables) = tables {
        check_raw_table(job, tables)?;
    }
    check_partitioning(job, shapes, tables)
}

/// Refuses a job whose commits hold tables but not its raw table: its `[lake] table` was
/// renamed. The new raw table would start empty (the stream's earlier events are behind the
/// commits' positions), and each hour a `partitions` transform recomputes from it would lose
/// the rows written before the rename.
fn check_raw_table(job: &Job, tables: &BTreeMap<String, TableState>) -> anyhow::Result<()> {
    // (A commit of only rejected records, as older silts made, holds no raw table.)
    if tables.contains_key(&job.table) || tables.keys().all(|t| job.tables().any(|n| n == t)) {
        return Ok(());
    }
    let held: Vec<&str> = tables.keys().map(String::as_str).collect();
    bail!(
        "[lake] table: the job's commits hold no table `{}` (they hold {}): its raw rows were \
         written under another name; a renamed raw table would start empty, and the hours its \
         `partitions` transforms recompute from it would lose the rows written before; put \
         `table` back, or give the job another `name` (a commit log of its own, reading the \
         stream from [source] start)",
        job.table,
        held.join(", ")
    )
}

/// Refuses a job one of whose tables another job writes: the lake's catalog names another
/// commit log for it, whose latest commit holds the table. Each job writes its files under
/// names of its own batch numbers and deletes, after a crash, the files of its batches that
/// its commits do not list: two jobs in one table would write over and delete each other's
/// files (a job file copied for a second stream with the `table` left as it was).
async fn check_owners(job: &Job) -> anyhow::Result<()> {
    let log = job.log.location();
    for table in job.tables() {
        let key = if *table == job.table {
            "[lake] table".to_string()
        } else if *table == job.rejected_table {
            "[lake] rejected_table".to_string()
        } else {
            format!("the transform's name `{table}`")
        };
        let ours = TableEntry::new(&job.lake, table, &job.name, log);
        if let Some(entry) = silt_lake_writer::other_writer(&job.lake, &ours).await? {
            let theirs = entry.commit_log(&job.lake)?;
            bail!(
                "table `{table}` is written by job `{}` (commit log {}), and this job, `{}`, \
                 keeps its commits in {}: two jobs writing one table would write over and \
                 delete each other's files; give this job's table another name ({key}), or, \
                 for a job that was renamed, name its commit log: [checkpoint] location = \"{}\"",
                entry.job,
                theirs.url,
                job.name,
                log.url,
                theirs.url,
            );
        }
    }
    Ok(())
}

/// Refuses a job whose tables' partition columns differ from those its lake's tables have
/// (`tables`, the latest commit's): the raw table's `partition_by`, or a transform's SQL
/// selecting other partition columns than it did. A table's files and every reader of it go
/// by its partition columns: files written by both would make one table of two layouts
/// (rows missing to readers of either, DuckDB's Hive partitioning refusing it).
fn check_partitioning(
    job: &Job,
    shapes: &Shapes,
    tables: Option<&BTreeMap<String, TableState>>,
) -> anyhow::Result<()> {
    let Some(tables) = tables else {
        return Ok(());
    };
    let was = |table: &str| tables.get(table).map(|t| &t.partition_by);
    if let Some(was) = was(&job.table).filter(|was| **was != job.partition_by) {
        bail!(
            "[lake] partition_by: the raw table `{}` is partitioned by {was:?} in the lake, and \
             the job says {:?}: a table's partition columns cannot change (its files and its \
             readers go by them); go back to {was:?}, or start a new job for the new layout \
             (another `name`, `table` and transform names: it reads the stream from [source] \
             start)",
            job.table,
            job.partition_by
        );
    }
    for (t, now) in job.transforms.iter().zip(&shapes.out_partitions) {
        if let Some(was) = was(&t.name).filter(|was| *was != now) {
            bail!(
                "transform `{}`: its table is partitioned by {was:?} in the lake, and its SQL \
                 now selects the partition columns {now:?}: a table's partition columns cannot \
                 change (its files and its readers go by them); give the transform another \
                 name (its new table is filled from the raw table), or select {was:?} again",
                t.name
            );
        }
    }
    Ok(())
}

/// Enters the job's tables (raw, rejected, each transform's) in the lake's catalog, which
/// readers find them by.
pub(crate) async fn register_tables(job: &Job, shapes: &Shapes) -> anyhow::Result<()> {
    for table in job.tables() {
        let mut entry = TableEntry::new(&job.lake, table, &job.name, job.log.location());
        if table == &job.table {
            entry = entry
                .with_defaults(shapes.defaults.clone())
                .with_partitions(&partition_fields(&shapes.events, &job.partition_by));
        }
        if let Some(i) = job.transforms.iter().position(|t| &t.name == table) {
            let fields = partition_fields(&shapes.outputs[i], &shapes.out_partitions[i]);
            entry = entry.with_partitions(&fields);
        }
        if table == &job.rejected_table {
            entry = entry.of_rejected();
        }
        register_table(&job.lake, &entry).await?;
    }
    Ok(())
}

/// One run with the subject's latest version as the reader schema; adds to `summary`.
async fn run_with_latest(
    job: &Job,
    opts: &RunOptions,
    summary: &mut RunSummary,
    undecodable: &[silt_ingest::Undecodable],
    latest: Option<Commit>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let run_id = format!("{:016x}", rand::random::<u64>());
    let shapes = Shapes::of(job).await?;
    check_tables(job, &shapes, latest.as_ref().map(|c| &c.tables)).await?;
    register_tables(job, &shapes).await?;
    let mut decoder = shapes.decoder.with_undecodable(undecodable);
    let (events_schema, raw_file_schema, out_parts, defaults) = (
        shapes.events,
        shapes.raw_files,
        shapes.out_partitions,
        shapes.defaults,
    );

    let mut state = State::restore(job, latest).await?;
    let mut compaction_skipped = SkippedHours::new();
    // Held for the whole run: while it lives, no other run or backfill of this job takes our
    // temporary files for a killed writer's.
    let mut writers = job.log.writer_lock()?;
    let sole = writers.is_sole();
    if sole {
        job.log.remove_staging_files();
    }
    if let Some(n) = state.batch {
        // Leftovers of a killed run: files of committed batches that no commit lists (and,
        // when no other writer is alive, temporary files).
        remove_leftovers(job, &state.tables, n, sole).await?;
    }
    writers.share()?;

    let progress = opts.progress.then(spinner);

    let rows = RowsTransforms::prepare(job, &events_schema).await?;
    let copied = rows.copied_from_raw(&events_schema, &job.partition_by, &out_parts);
    // Tables whose files the raw writer copies: their files that are the raw files whole take
    // the raw table's merged file when compacted.
    let copy_tables: HashSet<String> = job
        .transforms
        .iter()
        .zip(&copied)
        .filter(|(_, c)| c.is_some())
        .map(|(t, _)| t.name.clone())
        .collect();
    let mut newest_arrival: Option<i64> = None;
    loop {
        if opts.shutdown.is_cancelled() {
            break;
        }
        let batch_id = state.next_batch();
        let retries_before = summary.source_retries;
        let t0 = Instant::now();
        let (plan, chunks, names) = match job.log.intent(batch_id).await? {
            Some(intent) => {
                let plan: Plan =
                    serde_json::from_value(intent.plan).context("reading a planned micro-batch")?;
                let (c, n) = read_plan(job, &plan, summary).await?;
                (plan, c, n)
            }
            None => {
                let (plan, chunks, names) = read_fresh(job, &state, summary).await?;
                if plan.shards.is_empty() {
                    // Caught up: the compaction of closed hours left to do goes on in
                    // micro-batches of no records, rather than waiting for the next event
                    // (or the next scheduled run).
                    let pending = compaction_pending(job, &state, &compaction_skipped);
                    if !opts.follow && !pending {
                        break;
                    }
                    if let Some(caught_up) = opts.on_caught_up.as_ref().filter(|_| opts.follow) {
                        caught_up();
                    }
                    if !pending {
                        tokio::select! {
                            _ = opts.shutdown.cancelled() => break,
                            _ = tokio::time::sleep(job.interval) => continue,
                        }
                    }
                }
                let ours = Intent {
                    batch: batch_id,
                    run_id: run_id.clone(),
                    plan: serde_json::to_value(&plan).expect("serialises"),
                };
                let standing = job.log.propose(ours).await?;
                if standing.run_id == run_id {
                    (plan, chunks, names)
                } else {
                    let plan: Plan = serde_json::from_value(standing.plan)
                        .context("reading a planned micro-batch")?;
                    let (c, n) = read_plan(job, &plan, summary).await?;
                    (plan, c, n)
                }
            }
        };
        summary.stages.read += t0.elapsed().as_secs_f64();
        faults::point("after_intent");

        let records: usize = chunks.iter().map(|c| c.records.len()).sum();
        let batch_newest = chunks
            .iter()
            .filter_map(|c| c.records.iter().map(|r| r.arrival_ms).max())
            .max();
        if let Some(a) = batch_newest {
            newest_arrival = Some(newest_arrival.map_or(a, |n| n.max(a)));
        }

        // Check, dedup, decode and write a slice of records at a time, the bodies still in
        // cache from the check when they are decoded, and the rows still in cache from the
        // raw table's write when the rows transforms read them. The micro-batch is never
        // held decoded at once, only as the open files' compressed pages.
        let shard_refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        let mut rejected = Vec::new();
        let mut good = Vec::with_capacity(CHECK_SLICE);
        let mut verdicts = Vec::with_capacity(CHECK_SLICE);
        let (mut duplicates, mut late) = (0u64, 0u64);
        let mut raw_writer = TableWriter::new(
            &job.lake.join(&job.table),
            batch_id,
            &job.partition_by,
            &job.writer,
        );
        // The transforms whose files the raw writer copies have no writer of their own.
        copy_from_raw(job, &copied, &mut raw_writer)?;
        let mut row_writers = rows_writers(job, &out_parts, &copied, batch_id);
        let mut running = rows.start()?;
        let slices = chunks.iter().enumerate().flat_map(|(ci, c)| {
            (0..c.records.len())
                .step_by(CHECK_SLICE)
                .map(move |at| (ci, at..(at + CHECK_SLICE).min(c.records.len())))
        });
        // Lateness is judged against the watermark as the micro-batch began.
        let horizon_us = state
            .dedup
            .watermark_us()
            .map(|w| w.saturating_sub(job.window_us));
        let mut late_dropped = 0usize;
        // The newest event time read from each chunk's shard: a shard with more to read holds
        // the watermark at its own (see `DedupIndex::hold_watermark`).
        let mut newest_us: Vec<Option<i64>> = vec![None; chunks.len()];
        for (ci, range) in slices {
            let t = Instant::now();
            good.clear();
            decoder
                .check_records(
                    &chunks,
                    ci,
                    shard_refs[ci],
                    range.clone(),
                    &mut good,
                    &mut rejected,
                )
                .await?;
            summary.stages.check += t.elapsed().as_secs_f64();
            let t = Instant::now();
            if let Some(newest) = good.iter().map(|g| g.event_us).max() {
                let n = &mut newest_us[ci];
                *n = Some(n.map_or(newest, |m| m.max(newest)));
            }
            verdicts.clear();
            let ids = good.iter().map(|g| (&g.uuid, g.event_us));
            state.dedup.observe_all(ids, &mut verdicts);
            let mut verdict = verdicts.iter();
            good.retain(|g| match verdict.next().expect("a verdict a record") {
                Verdict::New => true,
                Verdict::Duplicate => {
                    duplicates += 1;
                    false
                }
                Verdict::Late => {
                    late += 1;
                    if !job.keep_late {
                        // Not lost: kept with the bad records (raw bytes, position), where
                        // it can be looked at.
                        late_dropped += 1;
                        rejected.push(Rejected::of(
                            &chunks[g.chunk as usize],
                            g.record as usize,
                            shard_refs[g.chunk as usize],
                            "late",
                            late_reason(g.event_us, horizon_us),
                        ));
                    }
                    job.keep_late
                }
            });
            summary.stages.dedup += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let events = decoder
                .decode_batches(&chunks, &shard_refs, &good)?
                .into_iter()
                .map(|b| add_time_partitions(b, &job.partition_by, EVENT_TIME))
                .collect::<anyhow::Result<Vec<_>>>()?;
            summary.stages.decode += t.elapsed().as_secs_f64();
            // The slice's records are done with: their mapped pages leave the resident set.
            let chunk = &chunks[ci];
            chunk.release(
                range
                    .start
                    .checked_sub(1)
                    .map_or(0, |prev| chunk.records[prev].end as usize)
                    ..chunk.records[range.end - 1].end as usize,
            );
            raw_writer.write_batches(&events).await?;
            rows.run(&events, &mut row_writers, &mut running, summary)
                .await?;
        }
        let t = Instant::now();
        if let Some(hold) = behind_shards_hold(&chunks, &names, &newest_us) {
            state.dedup.hold_watermark(hold);
        }
        state.dedup.end_batch();
        summary.stages.dedup += t.elapsed().as_secs_f64();
        faults::point("after_decode");
        drop(chunks);

        // Close the raw table, write the rejected records, then the transforms.
        let mut tables = state.tables.clone();
        let mut written: Vec<(String, Vec<DataFile>)> = Vec::new();
        let mut replaced: Vec<String> = Vec::new();
        let (raw_files, timings, copies) = raw_writer.finish_with_copies().await?;
        summary.add_write(&job.table, timings);
        let mut copies = copies_by_transform(&copied, copies);
        for (tr, copy) in job.transforms.iter().zip(&copies) {
            if let Some((_, timings)) = copy {
                summary.add_write(&tr.name, *timings);
                summary.copied.insert(tr.name.clone());
            }
        }
        faults::point("after_table");
        let raw_state = tables
            .entry(job.table.clone())
            .or_insert_with(|| TableState {
                partition_by: job.partition_by.clone(),
                files: vec![],
            });
        raw_state.files.extend(raw_files.iter().cloned());
        written.push((job.table.clone(), raw_files.clone()));
        if !rejected.is_empty() {
            let t = Instant::now();
            let rb = silt_ingest::rejected_batch(job.source.name(), &rejected)?;
            let time_parts = rejected_partitions();
            let rb = add_time_partitions(rb, &time_parts, ARRIVAL_TIME)?;
            summary.add_encode(&job.rejected_table, t.elapsed().as_secs_f64());
            let (files, timings) = write_table_timed(
                &job.lake.join(&job.rejected_table),
                batch_id,
                &[rb],
                &time_parts,
                &job.writer,
            )
            .await?;
            summary.add_write(&job.rejected_table, timings);
            tables
                .entry(job.rejected_table.clone())
                .or_insert_with(|| TableState {
                    partition_by: time_parts.clone(),
                    files: vec![],
                })
                .files
                .extend(files.iter().cloned());
            written.push((job.rejected_table.clone(), files));
            faults::point("after_table");
        }
        let touched: BTreeSet<Vec<(String, String)>> =
            raw_files.iter().map(|f| f.partition.clone()).collect();
        for (i, ((tr, parts), row_writer)) in job
            .transforms
            .iter()
            .zip(&out_parts)
            .zip(row_writers)
            .enumerate()
        {
            let t = Instant::now();
            let merged = match (running[i].take(), &rows.incremental[i]) {
                (Some(run), Some(prepared)) if !touched.is_empty() => {
                    let table = job.lake.join(&tr.name);
                    let committed = state.tables.get(&tr.name);
                    merge_partitions(prepared, run, tr, &table, committed, parts, &touched).await?
                }
                _ => None,
            };
            let (files, affected) = match (tr.mode, row_writer) {
                (Mode::Rows, w) => {
                    let mut files = match (w, copies[i].take()) {
                        (Some(w), _) => {
                            let (files, timings) = w.finish_timed().await?;
                            summary.add_write(&tr.name, timings);
                            files
                        }
                        (None, Some((files, _))) => files,
                        (None, None) => vec![],
                    };
                    mark_sql(tr, &mut files);
                    (files, None)
                }
                (Mode::Partitions, _) if touched.is_empty() => (vec![], None),
                (Mode::Partitions, _) if merged.is_some() => {
                    let (out, affected) = merged.expect("checked");
                    summary.add_sql(&tr.name, t.elapsed().as_secs_f64());
                    let (files, timings) = write_partitions(job, tr, batch_id, &out, parts).await?;
                    summary.add_write(&tr.name, timings);
                    (files, Some(affected))
                }
                (Mode::Partitions, _) => {
                    let raw = tables.get(&job.table).expect("inserted above");
                    let (out, affected) = recompute_partitions(
                        &job.references,
                        &job.lake,
                        &job.table,
                        raw,
                        raw_file_schema.clone(),
                        &partition_fields(&events_schema, &raw.partition_by),
                        &defaults,
                        tr,
                        parts,
                        &touched,
                    )
                    .await?;
                    summary.add_sql(&tr.name, t.elapsed().as_secs_f64());
                    let (files, timings) = write_partitions(job, tr, batch_id, &out, parts).await?;
                    summary.add_write(&tr.name, timings);
                    (files, Some(affected))
                }
            };
            if put_files(
                &mut tables,
                &tr.name,
                parts,
                files.clone(),
                affected.as_ref(),
            ) > 0
            {
                replaced.push(tr.name.clone());
            }
            written.push((tr.name.clone(), files));
            faults::point("after_table");
        }

        // Closed hours gathered many small files (one per micro-batch): merge a few of them
        // in this micro-batch's commit.
        let t = Instant::now();
        let compacted = compact_closed_hours(
            job,
            &state,
            batch_id,
            &written,
            &copy_tables,
            &mut tables,
            &mut compaction_skipped,
        )
        .await?;
        if !compacted.is_empty() {
            summary.stages.encode += t.elapsed().as_secs_f64();
        }
        let files_compacted: usize = compacted.iter().map(|(_, n)| n).sum();
        for (table, _) in compacted {
            if !replaced.contains(&table) {
                replaced.push(table);
            }
        }

        // Dedup snapshot, then the commit point.
        let t = Instant::now();
        // A micro-batch of no records (compaction only) left the index as it was: its commit
        // names the same snapshot and deltas.
        let dedup_saved = match (&state.dedup_saved.snapshot, records) {
            (Some(_), 0) => state.dedup_saved.clone(),
            _ => {
                state
                    .dedup_saved
                    .save(job, batch_id, &mut state.dedup)
                    .await?
            }
        };
        faults::point("after_dedup");
        let mut source = state.source.clone();
        source.stream = Some(job.source.name().to_string());
        for sp in &plan.shards {
            source.positions.insert(sp.shard.clone(), sp.next.clone());
            if sp.ended {
                source.ended.insert(sp.shard.clone());
            }
        }
        let stats = BatchStats {
            retries: summary.source_retries - retries_before,
            records,
            duplicates,
            late,
            rejected: rejected.len() - late_dropped,
        };
        let commit = Commit {
            job: job.name.clone(),
            batch: batch_id,
            committed_at_ms: now_ms(),
            source: serde_json::to_value(&source).expect("serialises"),
            dedup: dedup_saved.snapshot.clone(),
            dedup_deltas: dedup_saved.deltas.clone(),
            tables: tables.clone(),
            stats: serde_json::to_value(&stats).expect("serialises"),
        };
        faults::point("before_commit");
        job.log.commit_batch(&commit).await?;
        faults::point("after_commit");
        state.batch = Some(batch_id);
        state.source = source;
        state.dedup_saved = dedup_saved;
        let before = std::mem::replace(&mut state.tables, tables);
        clean_after_commit(job, &before, &state.tables, &replaced).await?;
        summary.stages.commit += t.elapsed().as_secs_f64();

        let mut report = BatchReport {
            job: job.name.clone(),
            batch: batch_id,
            seconds: t0.elapsed().as_secs_f64(),
            records_read: records as u64,
            duplicates: stats.duplicates,
            late: stats.late,
            source_retries: stats.retries,
            files_compacted: files_compacted as u64,
            committed_at_ms: commit.committed_at_ms,
            lag_ms: batch_newest.map(|a| commit.committed_at_ms - a),
            ..Default::default()
        };
        // Late events dropped into the rejected table are counted as late.
        for r in rejected.iter().filter(|r| r.code != "late") {
            *report.rejected.entry(r.code).or_default() += 1;
        }
        for (table, files) in &written {
            let rows = report.rows_written.entry(table.clone()).or_default();
            for f in files {
                *rows += f.rows;
                report.files_written += 1;
                report.bytes_written += f.bytes;
            }
        }
        summary.add(&report);
        summary.other_subjects += decoder.take_other_subjects();
        if let Some(on_commit) = &opts.on_commit {
            on_commit(&report);
        }
        if let Some(pb) = &progress {
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            pb.set_message(format!(
                "batch #{batch_id}: {} records read ({:.0}/s), {} duplicates, {} rejected",
                summary.records_read,
                summary.records_read as f64 / secs,
                summary.duplicates,
                summary.rejected
            ));
        }
    }
    if let Some(pb) = progress {
        pb.finish_and_clear();
    }
    if let Some(a) = newest_arrival {
        summary.lag_ms = Some(now_ms() - a);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringArray;

    #[test]
    fn time_partitions_are_utc_date_and_hour() {
        // Runs of an hour, a row back in the hour before, and a date of more than 10 bytes.
        let ts = TimestampMicrosecondArray::from(vec![
            1_764_107_999_000_000,
            1_764_108_000_000_000,
            1_764_108_001_000_000,
            1_764_107_000_000_000,
            316_815_552_000_000_000,
            1_764_108_000_000_000,
        ])
        .with_timezone("UTC");
        let b = RecordBatch::try_from_iter([(EVENT_TIME, Arc::new(ts) as ArrayRef)]).unwrap();
        let b = add_time_partitions(b, &["dt".into(), "hr".into()], EVENT_TIME).unwrap();
        let dt = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        let hr = b.column(2).as_any().downcast_ref::<StringArray>().unwrap();
        let rows: Vec<(&str, &str)> = dt
            .iter()
            .zip(hr.iter())
            .map(|(d, h)| (d.unwrap(), h.unwrap()))
            .collect();
        assert_eq!(
            rows,
            [
                ("2025-11-25", "21"),
                ("2025-11-25", "22"),
                ("2025-11-25", "22"),
                ("2025-11-25", "21"),
                ("+12009-06-26", "16"),
                ("2025-11-25", "22"),
            ]
        );
    }

    #[test]
    fn a_merged_file_is_marked_with_the_sql_of_its_parts() {
        let file = |sql: Option<&str>| DataFile {
            path: "dt=2025-11-25/hr=22/part-0000000001-0000.parquet".into(),
            partition: vec![],
            rows: 1,
            bytes: 1,
            sql: sql.map(String::from),
            compacted: false,
            schema: None,
            as_written: false,
        };
        let (a, b, none) = (file(Some("a")), file(Some("b")), file(None));
        assert_eq!(common_sql([&a, &a]), Some("a".into()));
        // Rows of two SQLs: an earlier SQL's rows are in it.
        assert_eq!(common_sql([&a, &b]), Some("mixed".into()));
        // A part that does not say makes the whole unknown.
        assert_eq!(common_sql([&a, &none]), None);
        assert_eq!(common_sql([&a, &b, &none]), None);
        assert_eq!(common_sql([&none, &a]), None);
    }
}
