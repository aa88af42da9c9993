//! `silt redrive`: brings rejected records back into the lake once what stopped them is
//! mended: most often a writer schema registered after its events arrived (the records were
//! kept as `unknown_fingerprint`), or late events an operator decides to take in after all.
//!
//! The records are read from the rejected table (their raw bytes, shard, position and
//! arrival, as the stream gave them), checked and decoded again by the job's decoder with the
//! registry as it is now, and deduplicated against the lake itself: a record whose `uuid` the
//! raw table already holds in its event hour, or that repeats another record of the re-drive,
//! is not written again. What passes is written to the raw table as the stream job would have
//! written it (the same columns, its original arrival, shard and sequence), the `rows`
//! transforms run over it and the `partitions` transforms are recomputed over the raw
//! partitions it lands in ([`recompute_partitions`], as the stream job and the backfill do).
//! The records brought in (or found in the lake already) leave the rejected table; those that
//! still do not pass stay there as they were. All of it is one commit of the job's log, so
//! silt's readers see the records move from the rejected table to the lake at once, and a
//! stream run of the job that commits first makes this one lose, not both land (it then
//! re-drives again over that commit, up to [`REDRIVE_ATTEMPTS`] times). The ids
//! brought in join the dedup index, so that a late copy arriving on the stream is dropped.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Instant;

use anyhow::{bail, Context};
use arrow::array::{ArrayRef, AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::TimestampMillisecondType;
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use serde::Serialize;
use silt_dedup::Verdict;
use silt_ingest::{
    Chunk, Position, RecordRef, ARRIVAL_TIME, EVENT_TIME, REJECT_CODES, SEQUENCE, SHARD,
};
use silt_lake_writer::{read_data_file, Commit, DataFile, TableWriter};
use silt_storage::Location;

use super::backfill::{fill_new_tables, partition_hours, BackfillSummary};
use super::run::{
    add_time_partitions, beside_the_runs, check_tables, clean_after_commit, commit_that_won,
    copies_by_transform, copy_from_raw, learn_undecodable, lost_to, mark_sql, partition_fields,
    put_files, recompute_partitions, remove_leftovers, rows_writers, spinner, write_partitions,
    DedupSaved, Job, RowsTransforms, RunSummary, Shapes, CHECK_SLICE,
};

/// Parses `--reason`: codes separated by commas, or `all`.
pub fn parse_reasons(text: &str) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for code in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        if code == "all" {
            return Ok(REJECT_CODES.iter().map(|c| c.to_string()).collect());
        }
        if !REJECT_CODES.contains(&code) {
            bail!(
                "`{code}` is not a reason code a record is rejected for (one of {}, or all)",
                REJECT_CODES.join(", ")
            );
        }
        out.push(code.to_string());
    }
    if out.is_empty() {
        bail!("--reason names no reason code");
    }
    Ok(out)
}

/// What to re-drive.
#[derive(Debug, Clone)]
pub struct RedriveOptions {
    /// Reason codes of the rejected records to look at.
    pub reasons: Vec<String>,
    /// Only records that arrived in these hours (since the Unix epoch, inclusive).
    pub hours: Option<(i64, i64)>,
    /// Say what would happen; write and commit nothing.
    pub dry_run: bool,
    pub progress: bool,
}

/// What a re-drive did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RedriveSummary {
    pub job: String,
    /// The micro-batch the re-drive was committed as; none when nothing changed (or a dry
    /// run).
    pub batch: Option<u64>,
    pub dry_run: bool,
    pub reasons: Vec<String>,
    /// Every record of the rejected table (in the hours asked for), by reason code: what
    /// else there is to re-drive.
    pub in_rejected_table: BTreeMap<String, u64>,
    /// Rejected records with the reasons asked for (in the hours asked for).
    pub looked_at: u64,
    /// Records that pass now and are new to the lake: rows of the raw table.
    pub redriven: u64,
    /// Records that pass now but whose event the lake holds already (or that repeat another
    /// record of the re-drive): taken out of the rejected table, not written again.
    pub duplicates: u64,
    /// Records that still do not pass, by the reason the check gives now: left where they are.
    pub still_rejected: BTreeMap<String, u64>,
    /// Rows written per table (for a `partitions` transform: of the partitions rewritten).
    pub rows: BTreeMap<String, u64>,
    pub files_written: u64,
    pub files_replaced: u64,
    pub elapsed_s: f64,
    /// The tables of transforms new to the job, filled from the raw table first (as a run
    /// does), so that the re-drive's rows are not all they hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filled: Option<BackfillSummary>,
}

impl RedriveSummary {
    pub fn render(&self) -> String {
        let still: u64 = self.still_rejected.values().sum();
        let mut s = String::new();
        if let Some(line) = self.filled.as_ref().and_then(|f| f.filled_line()) {
            s += &format!("{line}\n");
        }
        s += &format!(
            "redrive of job {}: {} rejected record(s) ({}) looked at",
            self.job,
            self.looked_at,
            self.reasons.join(", ")
        );
        s += &match (self.batch, self.dry_run) {
            (_, true) => " (dry run: nothing written)\n".to_string(),
            (Some(b), false) => format!(
                ", committed as micro-batch #{b} in {:.2}s\n",
                self.elapsed_s
            ),
            (None, false) => ", nothing to bring in: no commit made\n".to_string(),
        };
        s += &format!(
            "  into the raw table {}   already in the lake {}   still rejected {}",
            self.redriven, self.duplicates, still
        );
        if still > 0 {
            let by: Vec<String> = self
                .still_rejected
                .iter()
                .map(|(c, n)| format!("{c} {n}"))
                .collect();
            s += &format!(" ({})", by.join(", "));
        }
        if self.looked_at == 0 {
            let by: Vec<String> = self
                .in_rejected_table
                .iter()
                .map(|(c, n)| format!("{c} {n}"))
                .collect();
            s += &match by.is_empty() {
                true => "\n  the rejected table holds no record (in the hours asked for)".into(),
                false => format!(
                    "\n  the rejected table holds (in the hours asked for): {}; --reason names which to look at",
                    by.join(", ")
                ),
            };
        }
        if self.still_rejected.contains_key("unknown_fingerprint") {
            s += "\n  (a record whose writer schema is not registered passes once it is: `silt registry register`)";
        }
        if !self.rows.is_empty() {
            let rows: Vec<String> = self.rows.iter().map(|(t, n)| format!("{t} {n}")).collect();
            s += &format!("\n  rows written: {}", rows.join(", "));
        }
        if self.batch.is_some() {
            s += &format!(
                "\n  files written {}, files replaced {}",
                self.files_written, self.files_replaced
            );
        }
        s
    }
}

/// A rejected record taken up by the re-drive: where it is in the rejected table.
struct Taken {
    /// Index of its file in the rejected table's state, and its row in that file.
    file: usize,
    row: usize,
}

/// The records of one shard taken up, gathered into one chunk.
#[derive(Default)]
struct ShardRecords {
    data: Vec<u8>,
    records: Vec<RecordRef>,
    positions: Vec<Position>,
    taken: Vec<Taken>,
}

/// A record's position as the rejected table gives it (`_sequence`): a byte offset (file
/// stream) or a Kinesis sequence number, with `:sub` inside a KPL aggregate. Either way it
/// is written back as the same text.
fn parse_position(text: &str) -> Position {
    if let Ok(o) = text.parse::<u64>() {
        return Position::Offset(o);
    }
    match text
        .split_once(':')
        .and_then(|(n, s)| Some((n, s.parse().ok()?)))
    {
        Some((number, sub)) => Position::Sequence {
            number: number.to_string(),
            sub,
        },
        None => Position::Sequence {
            number: text.to_string(),
            sub: 0,
        },
    }
}

/// The `columns` of a data file of `table`, and no others.
async fn read_columns(
    table: &Location,
    file: &DataFile,
    columns: &[&str],
) -> anyhow::Result<Vec<RecordBatch>> {
    let path = file.location(table);
    let bytes = async { table.store.get(&path).await?.bytes().await }
        .await
        .with_context(|| format!("reading {path}"))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    let mask = ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
    let batches = builder
        .with_batch_size(CHECK_SLICE)
        .with_projection(mask)
        .build()?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(batches)
}

/// A column of `batch` by name, or an error naming the file that lacks it.
fn column<'a>(batch: &'a RecordBatch, file: &DataFile, name: &str) -> anyhow::Result<&'a ArrayRef> {
    batch
        .column_by_name(name)
        .with_context(|| format!("{}: no column `{name}`", file.path))
}

/// The ids the raw table's `files` hold, from their `uuid` column alone.
async fn uuids_in(table: &Location, files: &[&DataFile]) -> anyhow::Result<HashSet<[u8; 16]>> {
    let mut ids = HashSet::new();
    for f in files {
        for b in read_columns(table, f, &["uuid"]).await? {
            let Some(col) = column(&b, f, "uuid")?.as_string_opt::<i32>() else {
                bail!("{}: the `uuid` column is not text", f.path);
            };
            ids.extend(
                col.iter()
                    .flatten()
                    .filter_map(|u| silt_wire::timeuuid::parse_ascii(u.as_bytes())),
            );
        }
    }
    Ok(ids)
}

/// The records of a re-drive that pass now, decoded, and what became of the others.
struct Selected {
    shapes: Shapes,
    /// Rows for the raw table (with its time partition columns).
    events: Vec<RecordBatch>,
    /// (chunk, record) of each record that leaves the rejected table: written now, or found
    /// in the lake already.
    resolved: Vec<(usize, usize)>,
    /// The dedup index with the ids brought in, and where the latest commit saved it.
    index: silt_dedup::DedupIndex,
    saved: DedupSaved,
    duplicates: u64,
    still_rejected: BTreeMap<String, u64>,
}

/// Checks `chunks` with the registry as it is now (`undecodable`: records arrow-avro refused,
/// rejected again), deduplicates what passes among itself (the copy that arrived first is
/// kept), against the raw table's files of the hours it falls in, and through the dedup
/// index, and decodes the rest.
async fn select(
    job: &Job,
    latest: &Commit,
    chunks: &[Chunk],
    shard_refs: &[&str],
    undecodable: &[silt_ingest::Undecodable],
) -> anyhow::Result<Selected> {
    let mut shapes = Shapes::of(job).await?;
    check_tables(job, &shapes, Some(&latest.tables)).await?;
    shapes.decoder = shapes.decoder.with_undecodable(undecodable);
    let decoder = &mut shapes.decoder;
    let mut good = Vec::new();
    let mut still = Vec::new();
    decoder
        .check(chunks, shard_refs, &mut good, &mut still)
        .await?;
    let mut still_rejected = BTreeMap::new();
    for r in &still {
        *still_rejected.entry(r.code.to_string()).or_default() += 1;
    }
    good.sort_by_key(|g| {
        let r = &chunks[g.chunk as usize].records[g.record as usize];
        (r.arrival_ms, g.chunk, g.record)
    });
    let hours: BTreeSet<i64> = good
        .iter()
        .map(|g| g.event_us.div_euclid(3_600_000_000))
        .collect();
    let raw_files: Vec<&DataFile> = latest
        .tables
        .get(&job.table)
        .into_iter()
        .flat_map(|ts| &ts.files)
        .filter(|f| match partition_hours(&f.partition) {
            Some((a, b)) => hours.range(a..=b).next().is_some(),
            // Not partitioned by time: any file may hold the ids.
            None => true,
        })
        .collect();
    let in_lake = uuids_in(&job.lake.join(&job.table), &raw_files).await?;
    let (mut index, saved) = DedupSaved::load(job, latest).await?;
    let mut seen: HashSet<[u8; 16]> = HashSet::new();
    let mut resolved = Vec::new();
    let mut kept = Vec::new();
    let mut duplicates = 0;
    for g in good {
        resolved.push((g.chunk as usize, g.record as usize));
        if !seen.insert(g.uuid) || in_lake.contains(&g.uuid) {
            duplicates += 1;
            continue;
        }
        match index.observe(&g.uuid, g.event_us) {
            Verdict::Duplicate => duplicates += 1,
            Verdict::New | Verdict::Late => kept.push(g),
        }
    }
    // The records were read long ago, when the shards' backlogs held the watermark where it
    // is: moving it on to their event times now could make the events of a shard still
    // behind late. The ids are remembered all the same.
    index.hold_watermark(index.watermark_us().unwrap_or(i64::MIN));
    index.end_batch();
    let events = decoder
        .decode_batches(chunks, shard_refs, &kept)?
        .into_iter()
        .map(|b| add_time_partitions(b, &job.partition_by, EVENT_TIME))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Selected {
        shapes,
        events,
        resolved,
        index,
        saved,
        duplicates,
        still_rejected,
    })
}

/// Re-drives the rejected records of `job` that `opts` selects.
pub async fn redrive(job: &Job, opts: &RedriveOptions) -> anyhow::Result<RedriveSummary> {
    let started = Instant::now();
    // Transforms new to the job get their tables filled first, as a run's do: else the
    // re-drive's rows would make the table, and no run would fill it.
    let filled = match opts.dry_run {
        true => None,
        false => fill_new_tables(job, job.log.latest().await?.as_ref(), opts.progress).await?,
    };
    let summary = RedriveSummary {
        job: job.name.clone(),
        dry_run: opts.dry_run,
        reasons: opts.reasons.clone(),
        filled,
        ..Default::default()
    };
    let (job, _writers, lease, mut latest) = beside_the_runs(job, "redrive").await?;
    let job = &job;
    let mut attempt = 1;
    let done = loop {
        match redrive_over(job, &latest, opts, started, summary.clone()).await {
            Err(e) => match beaten(job, e, &latest, &mut attempt).await {
                Ok(newer) => latest = newer,
                Err(e) => break Err(e),
            },
            done => break done,
        }
    };
    lease.release().await;
    done
}

/// Times a re-drive does its work, when each time another writer commits first the
/// micro-batch it was to be.
pub const REDRIVE_ATTEMPTS: usize = 3;

/// For a re-drive whose work over the latest commit ended in `e`: when another writer (a run
/// of the job) committed first the micro-batch the work was to be (or replaced and deleted
/// files the work was reading: a compaction), the newer commit to do it
/// again over (the records it brings in are deduplicated against what that commit holds),
/// with the lost attempt's files removed (as a killed writer's: they are unlisted files of a
/// committed micro-batch); any other error, or the [`REDRIVE_ATTEMPTS`]-th such loss, is the
/// re-drive's error.
async fn beaten(
    job: &Job,
    e: anyhow::Error,
    old: &Commit,
    attempt: &mut usize,
) -> anyhow::Result<Commit> {
    let Some(batch) = lost_to(job, &e, old).await? else {
        return Err(e);
    };
    if *attempt >= REDRIVE_ATTEMPTS {
        bail!(
            "redrive of job {}: another writer committed first in each of {REDRIVE_ATTEMPTS} attempts, the last time micro-batch {batch} (a `--follow` run committing faster than the redrive works?); nothing committed: run it again when the stream is quieter",
            job.name
        );
    }
    let newer = commit_that_won(job).await?;
    eprintln!(
        "redrive of job {}: micro-batch {batch} was committed by another writer meanwhile (a run of the job?): re-driving the records again after it",
        job.name
    );
    remove_leftovers(job, &newer.tables, newer.batch, false).await?;
    *attempt += 1;
    Ok(newer)
}

/// The re-drive over `latest`, committed as the micro-batch after it.
async fn redrive_over(
    job: &Job,
    latest: &Commit,
    opts: &RedriveOptions,
    started: Instant,
    mut summary: RedriveSummary,
) -> anyhow::Result<RedriveSummary> {
    crate::faults::point("before_redrive");
    let Some(rejected_state) = latest.tables.get(&job.rejected_table) else {
        summary.elapsed_s = started.elapsed().as_secs_f64();
        return Ok(summary);
    };
    let bar = opts.progress.then(spinner);
    let say = |msg: &str| {
        if let Some(pb) = &bar {
            pb.set_message(msg.to_string());
        }
    };

    // 1. The rejected records with the reasons asked for, one chunk per shard, as the
    //    stream gave them.
    say("reading the rejected table");
    let rejected_table = job.lake.join(&job.rejected_table);
    let mut shards: BTreeMap<String, ShardRecords> = BTreeMap::new();
    let arrived_in_range = |ms: i64| {
        opts.hours.is_none_or(|(from, to)| {
            let h = ms.div_euclid(3_600_000);
            h >= from && h <= to
        })
    };
    let asked = |code: &str| opts.reasons.iter().any(|r| r == code);
    for (fi, f) in rejected_state.files.iter().enumerate() {
        if let (Some((from, to)), Some((a, b))) = (opts.hours, partition_hours(&f.partition)) {
            if b < from || a > to {
                continue;
            }
        }
        // Which records it holds first (two small columns, not the raw bytes): a file with
        // none to take up is read no further.
        let mut any = false;
        for b in read_columns(&rejected_table, f, &["reason_code", ARRIVAL_TIME]).await? {
            let code = column(&b, f, "reason_code")?.as_string::<i32>();
            let arrival = column(&b, f, ARRIVAL_TIME)?.as_primitive::<TimestampMillisecondType>();
            for (code, ms) in code.iter().zip(arrival.values()) {
                let code = code.unwrap_or_default();
                if arrived_in_range(*ms) {
                    *summary
                        .in_rejected_table
                        .entry(code.to_string())
                        .or_default() += 1;
                    any |= asked(code);
                }
            }
        }
        if !any {
            continue;
        }
        let batches = read_data_file(&rejected_table, f, CHECK_SLICE, &[]).await?;
        let mut row = 0;
        for b in &batches {
            let code = column(b, f, "reason_code")?.as_string::<i32>();
            let shard = column(b, f, SHARD)?.as_string::<i32>();
            let seq = column(b, f, SEQUENCE)?.as_string::<i32>();
            let arrival = column(b, f, ARRIVAL_TIME)?.as_primitive::<TimestampMillisecondType>();
            let raw = column(b, f, "raw")?.as_binary::<i32>();
            for i in 0..b.num_rows() {
                let at = row + i;
                let arrival_ms = arrival.value(i);
                if !arrived_in_range(arrival_ms) || !asked(code.value(i)) {
                    continue;
                }
                let s = shards.entry(shard.value(i).to_string()).or_default();
                let start = s.data.len();
                s.data.extend_from_slice(raw.value(i));
                s.records.push(RecordRef::new(
                    start..s.data.len(),
                    arrival_ms,
                    s.positions.len() as u64,
                ));
                s.positions.push(parse_position(seq.value(i)));
                s.taken.push(Taken { file: fi, row: at });
            }
            row += b.num_rows();
        }
    }
    let names: Vec<String> = shards.keys().cloned().collect();
    let mut chunks = Vec::new();
    let mut taken: Vec<Vec<Taken>> = Vec::new();
    for s in shards.into_values() {
        summary.looked_at += s.records.len() as u64;
        chunks.push(Chunk {
            data: s.data.into(),
            records: s.records,
            sequences: s.positions,
            ..Default::default()
        });
        taken.push(s.taken);
    }
    if chunks.is_empty() {
        summary.elapsed_s = started.elapsed().as_secs_f64();
        return Ok(summary);
    }

    // 2-3. Checked, deduplicated and decoded; records arrow-avro refuses stay rejected
    //      (`undecodable`), and the selection is made again without them.
    say(&format!("checking {} record(s)", summary.looked_at));
    let shard_refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let mut undecodable: Vec<silt_ingest::Undecodable> = Vec::new();
    let selected = loop {
        match select(job, latest, &chunks, &shard_refs, &undecodable).await {
            Ok(s) => break s,
            Err(e) if learn_undecodable(&e, &mut undecodable) => continue,
            Err(e) => return Err(e),
        }
    };
    let Selected {
        shapes,
        events,
        resolved,
        mut index,
        saved,
        duplicates,
        still_rejected,
    } = selected;
    summary.duplicates = duplicates;
    summary.still_rejected = still_rejected;
    summary.redriven = events.iter().map(|b| b.num_rows() as u64).sum();
    if opts.dry_run || resolved.is_empty() {
        summary.elapsed_s = started.elapsed().as_secs_f64();
        return Ok(summary);
    }

    // 4. Written as the stream job writes a micro-batch: the raw table, then the transforms.
    say(&format!("writing {} record(s)", summary.redriven));
    let batch = latest.batch + 1;
    let mut tables = latest.tables.clone();
    let mut replaced: BTreeSet<String> = BTreeSet::new();
    let transforms = RowsTransforms::prepare(job, &shapes.events).await?;
    let copied =
        transforms.copied_from_raw(&shapes.events, &job.partition_by, &shapes.out_partitions);
    let mut raw_writer = TableWriter::new(
        &job.lake.join(&job.table),
        batch,
        &job.partition_by,
        &job.writer,
    );
    copy_from_raw(job, &copied, &mut raw_writer)?;
    raw_writer.write_batches(&events).await?;
    let (new_raw, _, copies) = raw_writer.finish_with_copies().await?;
    let mut copies = copies_by_transform(&copied, copies);
    let rows = |files: &[DataFile]| files.iter().map(|f| f.rows).sum::<u64>();
    if !new_raw.is_empty() {
        summary.rows.insert(job.table.clone(), rows(&new_raw));
    }
    summary.files_written += new_raw.len() as u64;
    let touched: BTreeSet<Vec<(String, String)>> =
        new_raw.iter().map(|f| f.partition.clone()).collect();
    put_files(&mut tables, &job.table, &job.partition_by, new_raw, None);
    if !events.is_empty() {
        let mut writers = rows_writers(job, &shapes.out_partitions, &copied, batch);
        transforms
            .run(&events, &mut writers, &mut [], &mut RunSummary::default())
            .await?;
        for (((t, parts), w), copy) in job
            .transforms
            .iter()
            .zip(&shapes.out_partitions)
            .zip(writers)
            .zip(&mut copies)
        {
            let (files, affected) = match (w, copy.take()) {
                (Some(w), _) => {
                    let mut files = w.finish_timed().await?.0;
                    mark_sql(t, &mut files);
                    (files, None)
                }
                (None, Some((mut files, _))) => {
                    mark_sql(t, &mut files);
                    (files, None)
                }
                (None, None) => {
                    let raw = tables.get(&job.table).expect("inserted above");
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
                        &touched,
                    )
                    .await?;
                    (
                        write_partitions(job, t, batch, &out, parts).await?.0,
                        Some(affected),
                    )
                }
            };
            if affected.is_some() {
                replaced.insert(t.name.clone());
            }
            if !files.is_empty() {
                *summary.rows.entry(t.name.clone()).or_default() += rows(&files);
            }
            summary.files_written += files.len() as u64;
            summary.files_replaced +=
                put_files(&mut tables, &t.name, parts, files, affected.as_ref()) as u64;
        }
    }

    // 5. The records brought in (or found in the lake) leave the rejected table: each file
    //    that held one is read again and written without them, one file at a time (what
    //    is held meanwhile is the records taken up, not the files they were in).
    say("rewriting the rejected table");
    let mut gone: BTreeMap<usize, HashSet<usize>> = BTreeMap::new();
    for (chunk, record) in resolved {
        let t = &taken[chunk][record];
        gone.entry(t.file).or_default().insert(t.row);
    }
    let ts = tables
        .get_mut(&job.rejected_table)
        .expect("the rejected table was read");
    let mut old_paths = HashSet::new();
    let mut rewriter = TableWriter::new(&rejected_table, batch, &ts.partition_by, &job.writer);
    for (fi, rows_gone) in &gone {
        let f = &ts.files[*fi];
        old_paths.insert(f.path.clone());
        let mut row = 0;
        let mut rest = Vec::new();
        for b in read_data_file(&rejected_table, f, CHECK_SLICE, &[]).await? {
            let keep: BooleanArray = (row..row + b.num_rows())
                .map(|r| Some(!rows_gone.contains(&r)))
                .collect();
            row += b.num_rows();
            let b = arrow::compute::filter_record_batch(&b, &keep)?;
            if b.num_rows() > 0 {
                rest.push(b);
            }
        }
        rewriter.write_batches(&rest).await?;
    }
    let rewritten = rewriter.finish().await?;
    summary.files_replaced += old_paths.len() as u64;
    summary.files_written += rewritten.len() as u64;
    ts.files.retain(|f| !old_paths.contains(&f.path));
    ts.files.extend(rewritten);
    replaced.insert(job.rejected_table.clone());

    // 6. One commit: the source stays where it was; the dedup index knows the ids brought in.
    say("committing");
    let saved = saved.save(job, batch, &mut index).await?;
    let commit = Commit {
        job: job.name.clone(),
        batch,
        committed_at_ms: chrono::Utc::now().timestamp_millis(),
        source: latest.source.clone(),
        dedup: saved.snapshot,
        dedup_deltas: saved.deltas,
        tables: tables.clone(),
        stats: serde_json::json!({"redrive": {
            "reasons": opts.reasons,
            "looked_at": summary.looked_at,
            "redriven": summary.redriven,
            "duplicates": summary.duplicates,
        }}),
    };
    crate::faults::point("before_commit");
    job.log
        .commit_batch(&commit)
        .await
        .context("committing the re-drive")?;
    clean_after_commit(job, &latest.tables, &tables, &replaced).await?;
    summary.batch = Some(batch);
    summary.elapsed_s = started.elapsed().as_secs_f64();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_read_back_as_the_text_they_were_written_as() {
        for text in [
            "0",
            "1234",
            "49590338271490256608559692538361571095921575989136588898",
            "4959:3",
        ] {
            assert_eq!(parse_position(text).to_string(), text);
        }
        assert_eq!(parse_position("17"), Position::Offset(17));
        assert_eq!(
            parse_position("4959:3"),
            Position::Sequence {
                number: "4959".into(),
                sub: 3
            }
        );
    }

    #[test]
    fn reasons_are_named_codes_or_all() {
        assert_eq!(
            parse_reasons("unknown_fingerprint, late").unwrap(),
            vec!["unknown_fingerprint", "late"]
        );
        assert_eq!(parse_reasons("all").unwrap().len(), REJECT_CODES.len());
        let e = parse_reasons("unknown").unwrap_err().to_string();
        assert!(e.contains("`unknown` is not a reason code"), "{e}");
    }
}
