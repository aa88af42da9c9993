//! `silt backfill`: rerun a job's transforms over the raw table's partitions in a time range,
//! through the same code the stream job uses ([`recompute_partitions`]), replacing the output
//! partitions they feed in one commit of the job's log, so that silt's readers switch from
//! the old to the new at once and a concurrent stream run of the job is fenced as usual.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use object_store::ObjectStoreExt;
use serde::Serialize;
use silt_lake_writer::{
    copy_file_as, file_name, remove_files, schema_key, short_hash, with_batch, Commit, DataFile,
    TableState,
};
use silt_storage::Location;
use silt_transform::Mode;

use super::run::{
    beside_the_runs, check_tables, clean_after_commit, commit_that_won, lost_to, mark_sql,
    partition_fields, project_partition, put_files, recompute_partitions, register_tables,
    write_partitions, Job, RowsTransforms, Shapes,
};

/// Hours since the Unix epoch from `2025-11-25` (its first hour, or with `end` its last),
/// `2025-11-25T22`, `2025-11-25 22`, or an RFC 3339 time.
pub fn parse_hour(text: &str, end: bool) -> anyhow::Result<i64> {
    let t = text.trim();
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        let h = d
            .and_hms_opt(0, 0, 0)
            .expect("midnight")
            .and_utc()
            .timestamp()
            / 3600;
        return Ok(if end { h + 23 } else { h });
    }
    let iso = t.replacen(' ', "T", 1);
    // UTC written with a `Z` but without seconds (`2025-11-26T00:00Z`) is still a UTC time.
    let iso = iso.strip_suffix(['Z', 'z']).unwrap_or(&iso);
    for suffix in [":00:00", ":00", ""] {
        if let Ok(dt) =
            chrono::NaiveDateTime::parse_from_str(&format!("{iso}{suffix}"), "%Y-%m-%dT%H:%M:%S")
        {
            return Ok(dt.and_utc().timestamp().div_euclid(3600));
        }
    }
    let dt = chrono::DateTime::parse_from_rfc3339(t).with_context(|| {
        format!("`{t}` is not a date (2025-11-25), an hour (2025-11-25T22) or an RFC 3339 time")
    })?;
    Ok(dt.timestamp().div_euclid(3600))
}

/// The hours a raw partition covers (`dt` alone: the whole day).
pub(super) fn partition_hours(values: &[(String, String)]) -> Option<(i64, i64)> {
    let get = |k: &str| values.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let day = chrono::NaiveDate::parse_from_str(get("dt")?, "%Y-%m-%d").ok()?;
    let first = day.and_hms_opt(0, 0, 0)?.and_utc().timestamp() / 3600;
    match get("hr").map(|h| h.parse::<i64>()) {
        Some(Ok(h)) => Some((first + h, first + h)),
        Some(Err(_)) => None,
        None => Some((first, first + 23)),
    }
}

/// The first and last hours that partitions cover (none when none has a `dt`).
fn hours_spanned<'a>(
    partitions: impl Iterator<Item = &'a Vec<(String, String)>>,
) -> Option<(i64, i64)> {
    partitions
        .filter_map(|p| partition_hours(p))
        .fold(None, |span, (a, b)| match span {
            None => Some((a, b)),
            Some((x, y)) => Some((a.min(x), b.max(y))),
        })
}

/// An hour since the epoch as `2025-11-25T22`.
pub(crate) fn hour_text(hour: i64) -> String {
    chrono::DateTime::from_timestamp(hour * 3600, 0)
        .map_or_else(|| hour.to_string(), |t| t.format("%Y-%m-%dT%H").to_string())
}

/// What a backfill did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BackfillSummary {
    pub job: String,
    /// The micro-batch the backfill was committed as; none when no raw partition is in the
    /// range (nothing to do: no commit is made).
    pub batch: Option<u64>,
    /// Hours asked for, as `2025-11-25T22`.
    pub from: String,
    pub to: String,
    /// The first and last hours of the raw table's partitions (to tell a mistyped range).
    pub raw_span: Option<(String, String)>,
    pub raw_partitions: usize,
    /// The transforms rerun (every one of the job's, unless it was asked for some).
    pub transforms: Vec<String>,
    /// Output partitions rewritten, per table.
    pub partitions: BTreeMap<String, usize>,
    pub rows: BTreeMap<String, u64>,
    pub files_written: u64,
    pub files_replaced: u64,
    /// Output partitions built by an attempt that a run's commit beat, and kept: the run
    /// left their raw partitions alone.
    pub partitions_kept: usize,
    /// Output partitions of `partitions` transforms that a run's commit recomputed with the
    /// same SQL while the backfill worked: left as the run wrote them.
    pub partitions_from_runs: usize,
    pub elapsed_s: f64,
}

impl BackfillSummary {
    /// As the fill of new transforms' tables ([`fill_new_tables`]) that a run or a re-drive
    /// made first: one line, when it committed.
    pub fn filled_line(&self) -> Option<String> {
        let batch = self.batch?;
        let tables: Vec<String> = self
            .transforms
            .iter()
            .map(|t| format!("{t} ({} rows)", self.rows.get(t).copied().unwrap_or(0)))
            .collect();
        Some(format!(
            "new table(s) filled: {} from the raw table's {} partition(s), {} to {}, as micro-batch #{batch}",
            tables.join(", "),
            self.raw_partitions,
            self.from,
            self.to,
        ))
    }

    pub fn render(&self) -> String {
        let Some(batch) = self.batch else {
            return format!(
                "backfill of job {}: no raw partition falls between {} and {} ({}); nothing to do, no commit made",
                self.job,
                self.from,
                self.to,
                match &self.raw_span {
                    Some((a, b)) => format!("the raw table's partitions span {a} to {b}"),
                    None => "the raw table has no partitions".into(),
                }
            );
        };
        let mut s = format!(
            "backfill of job {}: {} raw partition(s) read, committed as micro-batch #{batch} in {:.2}s\n",
            self.job, self.raw_partitions, self.elapsed_s
        );
        for (t, n) in &self.partitions {
            s += &format!(
                "  {t}: {n} partition(s) rewritten, {} rows\n",
                self.rows.get(t).copied().unwrap_or(0)
            );
        }
        s += &format!(
            "  files written {}, files replaced {}",
            self.files_written, self.files_replaced
        );
        if self.partitions_kept > 0 {
            s += &format!(
                "\n  {} partition(s) built before a run's commit and kept (their raw data unchanged)",
                self.partitions_kept
            );
        }
        if self.partitions_from_runs > 0 {
            s += &format!(
                "\n  {} partition(s) left as the runs meanwhile recomputed them with the same SQL",
                self.partitions_from_runs
            );
        }
        s
    }
}

/// The transforms of `job` that `latest` holds no table of (added to the job since), when
/// the raw table has rows: their tables would hold only what the runs from now on write,
/// where a backfill of the same raw data gives every hour. With them, the hours the raw
/// table spans (none when its partitions have no `dt`).
pub(crate) fn new_tables(job: &Job, latest: &Commit) -> Option<NewTables> {
    let raw = latest
        .tables
        .get(&job.table)
        .filter(|r| !r.files.is_empty())?;
    let new: Vec<String> = job
        .transforms
        .iter()
        .filter(|t| !latest.tables.contains_key(&t.name))
        .map(|t| t.name.clone())
        .collect();
    if new.is_empty() {
        return None;
    }
    let span = hours_spanned(raw.files.iter().map(|f| &f.partition));
    Some(NewTables { names: new, span })
}

/// Transforms new to a job ([`new_tables`]).
pub(crate) struct NewTables {
    pub names: Vec<String>,
    /// The first and last hour of the raw table (since the Unix epoch).
    pub span: Option<(i64, i64)>,
}

/// Fills the tables of the transforms added to `job` since its `latest` commit ([`new_tables`])
/// by a backfill of those transforms alone over every hour of the raw table, committed
/// before the run reads the stream, so that a new table holds from its first commit what a
/// backfill would. `None` when there is nothing to fill, or when the raw partitions have no
/// `dt` to choose them by (said on stderr: such a table starts with the runs from now on).
///
/// Before that, each table that holds rows of an earlier version of its transform's SQL is
/// named on stderr with the backfill that rewrites them ([`earlier_sql`]).
pub async fn fill_new_tables(
    job: &Job,
    latest: Option<&Commit>,
    progress: bool,
) -> anyhow::Result<Option<BackfillSummary>> {
    let Some(latest) = latest else {
        return Ok(None);
    };
    for e in earlier_sql(job, latest) {
        tracing::warn!("{}", e.text());
    }
    let Some(NewTables { names: new, span }) = new_tables(job, latest) else {
        return Ok(None);
    };
    let Some((from, to)) = span else {
        tracing::warn!(
            "transform(s) {} are new to job `{}`: their tables start with this run's rows (the raw table's older rows are not filled in: its partitions {:?} have no `dt` to choose them by)",
            new.join(", "),
            job.name,
            job.partition_by
        );
        return Ok(None);
    };
    if progress {
        eprintln!(
            "transform(s) {} new to job `{}`: filling their tables from the raw table's hours {} to {} first",
            new.join(", "),
            job.name,
            hour_text(from),
            hour_text(to)
        );
    }
    backfill(job, from, to, &new, progress)
        .await
        .map(Some)
        .with_context(|| {
            format!(
                "filling the table(s) of the new transform(s) {} from the raw table",
                new.join(", ")
            )
        })
}

/// A transform's output partitions that hold rows an earlier version of its SQL wrote, as
/// their files record it (files that do not say, written before silt recorded the SQL of
/// `rows` transforms, are not counted): the runs recompute only the hours their micro-batches
/// touch, so these stay as they were until a backfill of the transform rewrites them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EarlierSql {
    pub transform: String,
    pub partitions: usize,
    /// Their first and last hours (`2025-11-25T22`), when they have a `dt`.
    pub span: Option<(String, String)>,
}

impl EarlierSql {
    /// In words, with the backfill that brings them to the present SQL.
    pub fn text(&self) -> String {
        let Some((from, to)) = &self.span else {
            return format!(
                "transform `{}`: {} partition(s) hold rows of an earlier version of its SQL",
                self.transform, self.partitions
            );
        };
        format!(
            "transform `{t}`: {n} partition(s), {from} to {to}, hold rows of an earlier version of its SQL; `silt backfill <job file> --transform {t} --from {from} --to {to}` rewrites them with this one",
            t = self.transform,
            n = self.partitions,
        )
    }
}

/// The transforms of `job` whose tables in `latest` hold rows of an earlier SQL.
pub(crate) fn earlier_sql(job: &Job, latest: &Commit) -> Vec<EarlierSql> {
    let mut out = Vec::new();
    for t in &job.transforms {
        let Some(table) = latest.tables.get(&t.name) else {
            continue;
        };
        let sql = short_hash(t.sql.as_bytes());
        let partitions: BTreeSet<&Vec<(String, String)>> = table
            .files
            .iter()
            .filter(|f| f.sql.as_ref().is_some_and(|s| *s != sql))
            .map(|f| &f.partition)
            .collect();
        if partitions.is_empty() {
            continue;
        }
        let span = hours_spanned(partitions.iter().copied());
        out.push(EarlierSql {
            transform: t.name.clone(),
            partitions: partitions.len(),
            span: span.map(|(a, b)| (hour_text(a), hour_text(b))),
        });
    }
    out
}

/// One unit of a backfill's work: a transform (by index) and the raw partitions that feed
/// one of its output partitions.
type Unit = (usize, BTreeSet<Vec<(String, String)>>);

/// A unit built: its files, and the output partitions they replace.
struct Built {
    files: Vec<DataFile>,
    affected: BTreeSet<Vec<(String, String)>>,
}

/// What a backfill carries from an attempt that another commit beat to the next.
#[derive(Default)]
struct Kept {
    /// Units built, their files moved to the next micro-batch's names.
    built: BTreeMap<Unit, Built>,
    /// Units of `partitions` transforms whose output partitions (the values) the commits
    /// that beat the backfill recomputed with the same SQL: left as those wrote them.
    from_runs: BTreeMap<Unit, BTreeSet<Vec<(String, String)>>>,
}

/// Times a backfill beaten to its micro-batch tries again. Each attempt builds only what the
/// commits that beat it changed, so a backfill of many hours beside a busy `--follow` run
/// gets through; the bound is for a stream that changes the backfill's own hours faster
/// than it can build them.
pub const BACKFILL_ATTEMPTS: usize = 10;

/// Units whose files a beaten backfill moves at once.
const MOVES_AT_ONCE: usize = 32;

/// Reruns every transform of `job` over the raw partitions whose hours fall in
/// `[from_hour, to_hour]` (hours since the Unix epoch, inclusive).
///
/// When another writer (a run of the job) commits the micro-batch the backfill was to be
/// while it works, the backfill does not start over: what it built for raw partitions that
/// the newer commits left alone is kept (its files moved to the next micro-batch's names,
/// see [`beaten`]), what they changed is built again, and the backfill commits after them.
///
/// With `only` (transform names), those transforms alone are rerun: the other tables stay
/// as they are.
pub async fn backfill(
    job: &Job,
    from_hour: i64,
    to_hour: i64,
    only: &[String],
    progress: bool,
) -> anyhow::Result<BackfillSummary> {
    let started = Instant::now();
    if from_hour > to_hour {
        bail!("--from is after --to");
    }
    if job.transforms.is_empty() {
        bail!(
            "job `{}` has no transforms: a backfill reruns a job's transforms over its raw \
             table, which holds the stream's rows as they came (nothing to rerun, no commit made)",
            job.name
        );
    }
    let selected;
    let job = if only.is_empty() {
        job
    } else {
        for name in only {
            if !job.transforms.iter().any(|t| &t.name == name) {
                let names: Vec<&str> = job.transforms.iter().map(|t| t.name.as_str()).collect();
                bail!(
                    "job `{}` has no transform `{name}`; its transforms: {}",
                    job.name,
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                );
            }
        }
        selected = Job {
            transforms: job
                .transforms
                .iter()
                .filter(|t| only.contains(&t.name))
                .cloned()
                .collect(),
            ..job.clone()
        };
        &selected
    };
    if !job.partition_by.iter().any(|p| p == "dt") {
        bail!(
            "backfill selects raw partitions by `dt` (and `hr`); job `{}` partitions by {:?}",
            job.name,
            job.partition_by
        );
    }
    let (job, _writers, lease, mut latest) = beside_the_runs(job, "backfill").await?;
    let job = &job;
    let mut kept = Kept::default();
    let mut attempt = 1;
    let done = loop {
        match build_and_commit(
            job, &latest, &mut kept, from_hour, to_hour, progress, started,
        )
        .await
        {
            Err(e) => match beaten(job, e, &latest, &mut kept, &mut attempt).await {
                Ok(newer) => latest = newer,
                Err(e) => break Err(e),
            },
            done => break done,
        }
    };
    lease.release().await;
    done
}

/// The backfill over `latest`, committed as the micro-batch after it: the units `kept` from
/// an attempt that another commit beat are used as they are (or left as the runs wrote
/// them), the others built.
async fn build_and_commit(
    job: &Job,
    latest: &Commit,
    kept: &mut Kept,
    from_hour: i64,
    to_hour: i64,
    progress: bool,
    started: Instant,
) -> anyhow::Result<BackfillSummary> {
    crate::faults::point("before_build");
    let raw = latest
        .tables
        .get(&job.table)
        .with_context(|| format!("the latest commit has no raw table `{}`", job.table))?;
    let touched: BTreeSet<Vec<(String, String)>> = raw
        .files
        .iter()
        .filter(|f| {
            partition_hours(&f.partition).is_some_and(|(a, b)| b >= from_hour && a <= to_hour)
        })
        .map(|f| f.partition.clone())
        .collect();
    let batch = latest.batch + 1;
    let span = hours_spanned(raw.files.iter().map(|f| &f.partition));
    let mut summary = BackfillSummary {
        job: job.name.clone(),
        batch: (!touched.is_empty()).then_some(batch),
        from: hour_text(from_hour),
        to: hour_text(to_hour),
        raw_span: span.map(|(a, b)| (hour_text(a), hour_text(b))),
        raw_partitions: touched.len(),
        transforms: job.transforms.iter().map(|t| t.name.clone()).collect(),
        ..Default::default()
    };
    if touched.is_empty() {
        summary.elapsed_s = started.elapsed().as_secs_f64();
        return Ok(summary);
    }
    let shapes = Shapes::of(job).await?;
    check_tables(job, &shapes, Some(&latest.tables)).await?;
    // A table new to the job (run by hand before a run made it) is entered as a run would.
    register_tables(job, &shapes).await?;
    // One unit of work per output partition.
    let mut units: Vec<Unit> = Vec::new();
    for (i, parts) in shapes.out_partitions.iter().enumerate() {
        let groups: BTreeSet<Vec<(String, String)>> = touched
            .iter()
            .map(|p| project_partition(p, parts))
            .collect();
        for g in groups {
            let members = touched
                .iter()
                .filter(|p| project_partition(p, parts) == g)
                .cloned()
                .collect();
            units.push((i, members));
        }
    }
    // Kept units that are no longer units (a raw partition of their group appeared since).
    let stale: Vec<Unit> = kept
        .built
        .keys()
        .filter(|u| !units.contains(u))
        .cloned()
        .collect();
    for u in stale {
        let b = kept.built.remove(&u).expect("a kept unit");
        let table = job.lake.join(&job.transforms[u.0].name);
        remove_files(&table, &b.files).await?;
    }
    kept.from_runs.retain(|u, _| units.contains(u));
    let to_build: Vec<&Unit> = units
        .iter()
        .filter(|u| !kept.built.contains_key(*u) && !kept.from_runs.contains_key(*u))
        .collect();
    summary.partitions_from_runs = kept.from_runs.len();
    summary.partitions_kept = units.len() - to_build.len() - kept.from_runs.len();
    let bar = progress.then(|| {
        let pb = indicatif::ProgressBar::new(to_build.len() as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} partitions  {msg}  {per_sec}  ETA {eta}",
            )
            .expect("valid template"),
        );
        pb.enable_steady_tick(Duration::from_millis(200));
        pb
    });
    let mut rows_total = 0u64;
    // Transforms whose files are the raw files whole (`SELECT *`): their files are links.
    let rows = RowsTransforms::prepare(job, &shapes.events).await?;
    let whole_copies: Vec<Option<String>> = rows
        .copied_from_raw(&shapes.events, &job.partition_by, &shapes.out_partitions)
        .iter()
        .map(|c| {
            c.as_ref()
                .filter(|c| c.schema() == &shapes.raw_files)
                .map(|c| schema_key(c.schema()))
        })
        .collect();
    for unit @ (i, members) in to_build {
        let t = &job.transforms[*i];
        let parts = &shapes.out_partitions[*i];
        if let Some(files) =
            linked(job, raw, t, batch, members, whole_copies[*i].as_deref()).await?
        {
            rows_total += files.iter().map(|f| f.rows).sum::<u64>();
            let affected = members
                .iter()
                .map(|p| project_partition(p, parts))
                .collect();
            kept.built.insert(unit.clone(), Built { files, affected });
            if let Some(pb) = &bar {
                pb.inc(1);
            }
            continue;
        }
        let (out, affected) = recompute_partitions(
            &job.references,
            &job.lake,
            &job.table,
            raw,
            shapes.raw_files.clone(),
            &partition_fields(&shapes.events, &raw.partition_by),
            &shapes.defaults,
            t,
            parts,
            members,
        )
        .await?;
        let (files, _) = write_partitions(job, t, batch, &out, parts).await?;
        rows_total += files.iter().map(|f| f.rows).sum::<u64>();
        kept.built.insert(unit.clone(), Built { files, affected });
        if let Some(pb) = &bar {
            pb.inc(1);
            pb.set_message(format!("{rows_total} rows"));
        }
    }
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
    let mut tables = latest.tables.clone();
    let mut replaced: BTreeSet<String> = BTreeSet::new();
    for unit @ (i, _) in &units {
        let t = &job.transforms[*i];
        let Some(b) = kept.built.get(unit) else {
            continue; // left as the runs wrote it
        };
        *summary.partitions.entry(t.name.clone()).or_default() += 1;
        *summary.rows.entry(t.name.clone()).or_default() +=
            b.files.iter().map(|f| f.rows).sum::<u64>();
        summary.files_written += b.files.len() as u64;
        summary.files_replaced += put_files(
            &mut tables,
            &t.name,
            &shapes.out_partitions[*i],
            b.files.clone(),
            Some(&b.affected),
        ) as u64;
        replaced.insert(t.name.clone());
    }
    let commit = Commit {
        job: job.name.clone(),
        batch,
        committed_at_ms: chrono::Utc::now().timestamp_millis(),
        source: latest.source.clone(),
        // The dedup index does not change: the commit names the snapshot and deltas that
        // `latest` names, as a run's micro-batch of no records does (pruning keeps what the
        // oldest kept commit names, and names only move forward).
        dedup: latest.dedup.clone(),
        dedup_deltas: latest.dedup_deltas.clone(),
        tables: tables.clone(),
        stats: serde_json::json!({"backfill": {
            "from_hour": from_hour,
            "to_hour": to_hour,
            "transforms": summary.transforms,
        }}),
    };
    crate::faults::point("before_commit");
    job.log.commit_batch(&commit).await?;
    clean_after_commit(job, &latest.tables, &tables, &replaced).await?;
    summary.elapsed_s = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// A unit of a transform whose files are the raw files whole (`raw_key`: the schema key
/// of those files) as links of its raw partitions' files, named as the backfill's files of
/// `batch`: what the stream job's copies hold, without reading, running SQL or encoding.
/// `None` (built by its SQL) when the transform is not such a copy, or a raw file has other
/// columns (written with an earlier schema version).
async fn linked(
    job: &Job,
    raw: &TableState,
    t: &silt_transform::Transform,
    batch: u64,
    members: &BTreeSet<Vec<(String, String)>>,
    raw_key: Option<&str>,
) -> anyhow::Result<Option<Vec<DataFile>>> {
    let Some(key) = raw_key else {
        return Ok(None);
    };
    let sources: Vec<&DataFile> = raw
        .files
        .iter()
        .filter(|f| members.contains(&f.partition))
        .collect();
    if sources.iter().any(|f| f.schema.as_deref() != Some(key)) {
        return Ok(None);
    }
    let (from, to) = (job.lake.join(&job.table), job.lake.join(&t.name));
    let mut files = Vec::with_capacity(sources.len());
    let mut numbers: BTreeMap<&str, usize> = BTreeMap::new();
    for f in sources {
        let dir = f.path.rsplit_once('/').map_or("", |(d, _)| d);
        let n = numbers.entry(dir).or_default();
        let name = file_name(batch, *n, job.writer.file_tag);
        *n += 1;
        let path = if dir.is_empty() {
            name
        } else {
            format!("{dir}/{name}")
        };
        files.push(copy_file_as(&from, f, &to, &path).await?);
    }
    mark_sql(t, &mut files);
    Ok(Some(files))
}

/// For a backfill over `old` whose commit ended in `e`: when another writer (a run of the
/// job) committed first the micro-batch it was to be, the newer commit to build over. The
/// units fed by raw partitions that the newer commits changed (new events of those hours, a
/// re-drive, a compaction) are dropped with their files, and built again, unless they are a
/// `partitions` transform's that those commits recomputed with the same SQL (a stream run
/// recomputes every output partition its micro-batch feeds): those are left as the runs
/// wrote them, so that a range that takes in the hour the stream is writing does not build
/// it again at every attempt. The files of the others move to the next micro-batch's names,
/// so that no writer's clean-up takes them for a killed writer's before the backfill commits
/// them (a unit whose file is gone already is built again). The [`BACKFILL_ATTEMPTS`]-th
/// loss is the backfill's error, its files removed; any other error is the backfill's error
/// as it is (its files, if no commit lists them, go at a writer's start: the error may have
/// come after the commit).
async fn beaten(
    job: &Job,
    e: anyhow::Error,
    old: &Commit,
    kept: &mut Kept,
    attempt: &mut usize,
) -> anyhow::Result<Commit> {
    let Some(batch) = lost_to(job, &e, old).await? else {
        return Err(e);
    };
    if *attempt >= BACKFILL_ATTEMPTS {
        for (u, b) in std::mem::take(&mut kept.built) {
            let table = job.lake.join(&job.transforms[u.0].name);
            remove_files(&table, &b.files).await?;
        }
        bail!(
            "backfill of job {}: another writer committed first in each of {BACKFILL_ATTEMPTS} attempts, the last time micro-batch {batch}, each time changing hours of the range; nothing committed: run it again when the stream is quieter",
            job.name
        );
    }
    let newer = commit_that_won(job).await?;
    let changed = changed_partitions(old.tables.get(&job.table), newer.tables.get(&job.table));
    let next = newer.batch + 1;
    // What the runs recomputed as the backfill would has to still be so.
    let before = kept.from_runs.len();
    kept.from_runs
        .retain(|u, affected| recomputed_alike(job, u.0, affected, &newer));
    let mut stale = before - kept.from_runs.len();
    // A unit's output partitions are computed from every raw partition that feeds them, in
    // its range or not (a day's from all its hours).
    let (to_move, to_drop): (Vec<_>, Vec<_>) = std::mem::take(&mut kept.built)
        .into_iter()
        .partition(|(_, b)| {
            !changed
                .iter()
                .any(|p| b.affected.iter().any(|out| feeds(p, out)))
        });
    for (u, b) in to_drop {
        let table = job.lake.join(&job.transforms[u.0].name);
        remove_files(&table, &b.files).await?;
        if recomputed_alike(job, u.0, &b.affected, &newer) {
            kept.from_runs.insert(u, b.affected);
        } else {
            stale += 1;
        }
    }
    // A unit at a time, many at once: on S3 each move is a copy and a delete.
    let moves = futures::stream::iter(to_move.into_iter().map(|(u, b)| async move {
        let table = job.lake.join(&job.transforms[u.0].name);
        let moved = move_to_batch(&table, &b.files, next).await?;
        anyhow::Ok(moved.map(|files| {
            (
                u,
                Built {
                    files,
                    affected: b.affected,
                },
            )
        }))
    }))
    .buffer_unordered(MOVES_AT_ONCE)
    .collect::<Vec<_>>()
    .await;
    let mut gone = 0;
    for moved in moves {
        match moved? {
            Some((u, b)) => {
                kept.built.insert(u, b);
            }
            None => gone += 1,
        }
    }
    eprintln!(
        "backfill of job {}: micro-batch {batch} was committed by another writer meanwhile (a run of the job?): building again after it {stale} partition(s) whose raw data it changed and {gone} whose files were cleaned up; {} as the runs recomputed them with the same SQL; keeping the other {}",
        job.name,
        kept.from_runs.len(),
        kept.built.len()
    );
    *attempt += 1;
    Ok(newer)
}

/// Whether the output partitions `affected` of transform `i` are, in `newer`, what the
/// backfill would compute for them: a `partitions` transform's, every file of them written
/// with the same SQL (a run recomputes the output partitions its micro-batch feeds whole,
/// over the raw table as its commit has it). A `rows` transform's are appended to, so they
/// cannot tell.
fn recomputed_alike(
    job: &Job,
    i: usize,
    affected: &BTreeSet<Vec<(String, String)>>,
    newer: &Commit,
) -> bool {
    let t = &job.transforms[i];
    if t.mode != Mode::Partitions {
        return false;
    }
    let sql = short_hash(t.sql.as_bytes());
    let Some(table) = newer.tables.get(&t.name) else {
        return false;
    };
    let mut files = table
        .files
        .iter()
        .filter(|f| affected.contains(&f.partition))
        .peekable();
    files.peek().is_some() && files.all(|f| f.sql.as_deref() == Some(sql.as_str()))
}

/// Whether rows of raw partition `raw` fall in output partition `out` (whose columns are
/// some of the raw partition's).
fn feeds(raw: &[(String, String)], out: &[(String, String)]) -> bool {
    out.iter().all(|kv| raw.contains(kv))
}

/// The raw partitions whose files differ between two states of the raw table.
fn changed_partitions(
    old: Option<&TableState>,
    new: Option<&TableState>,
) -> BTreeSet<Vec<(String, String)>> {
    fn by_partition(t: Option<&TableState>) -> BTreeMap<&Vec<(String, String)>, BTreeSet<&str>> {
        let mut m: BTreeMap<_, BTreeSet<_>> = BTreeMap::new();
        for f in t.iter().flat_map(|t| &t.files) {
            m.entry(&f.partition).or_default().insert(f.path.as_str());
        }
        m
    }
    let (a, b) = (by_partition(old), by_partition(new));
    a.keys()
        .chain(b.keys())
        .filter(|p| a.get(*p) != b.get(*p))
        .map(|p| (*p).clone())
        .collect()
}

/// Renames `files` (a unit's, below `table`) to the names they would have in micro-batch
/// `batch`; `None`, with what was there removed, when one of them is gone.
async fn move_to_batch(
    table: &Location,
    files: &[DataFile],
    batch: u64,
) -> anyhow::Result<Option<Vec<DataFile>>> {
    let mut moved = Vec::with_capacity(files.len());
    for (k, f) in files.iter().enumerate() {
        let path = with_batch(&f.path, batch)
            .with_context(|| format!("`{}` is not a data file name", f.path))?;
        let to = f.moved_to(path);
        match table
            .store
            .rename(&f.location(table), &to.location(table))
            .await
        {
            Ok(()) => moved.push(to),
            Err(object_store::Error::NotFound { .. }) => {
                remove_files(table, moved.iter().chain(&files[k + 1..])).await?;
                return Ok(None);
            }
            Err(e) => return Err(e).with_context(|| format!("moving {}", f.path)),
        }
    }
    Ok(Some(moved))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_parse() {
        let d = parse_hour("2025-11-25", false).unwrap();
        assert_eq!(parse_hour("2025-11-25", true).unwrap(), d + 23);
        assert_eq!(parse_hour("2025-11-25T22", false).unwrap(), d + 22);
        assert_eq!(parse_hour("2025-11-25 22", false).unwrap(), d + 22);
        assert_eq!(parse_hour("2025-11-25T22:30:00Z", false).unwrap(), d + 22);
        assert_eq!(parse_hour("2025-11-25T22:30Z", false).unwrap(), d + 22);
        assert_eq!(parse_hour("2025-11-25T22Z", false).unwrap(), d + 22);
        assert_eq!(
            parse_hour("2025-11-25T23:30:00+01:00", false).unwrap(),
            d + 22
        );
        assert!(parse_hour("yesterday", false).is_err());
        let v = vec![
            ("dt".to_string(), "2025-11-25".to_string()),
            ("hr".to_string(), "22".to_string()),
        ];
        assert_eq!(partition_hours(&v), Some((d + 22, d + 22)));
    }
}
