//! `silt backfill`: rerun a job's transforms over the raw table's partitions in a time range,
//! through the same code the stream job uses ([`recompute_partitions`]), replacing the output
//! partitions they feed in one commit of the job's log, so that silt's readers switch from
//! the old to the new at once and a concurrent stream run of the job is fenced as usual.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;
use silt_lake_writer::Commit;

use super::run::{
    again_after, beside_the_runs, clean_after_commit, put_files, recompute_partitions,
    write_partitions, Job, Shapes,
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

/// An hour since the epoch as `2025-11-25T22`.
fn hour_text(hour: i64) -> String {
    chrono::DateTime::from_timestamp(hour * 3600, 0)
        .map_or_else(|| hour.to_string(), |t| t.format("%Y-%m-%dT%H").to_string())
}

/// What a backfill did.
#[derive(Debug, Clone, Default, Serialize)]
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
    /// Output partitions rewritten, per table.
    pub partitions: BTreeMap<String, usize>,
    pub rows: BTreeMap<String, u64>,
    pub files_written: u64,
    pub files_replaced: u64,
    pub elapsed_s: f64,
}

impl BackfillSummary {
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
        s
    }
}

/// Reruns every transform of `job` over the raw partitions whose hours fall in
/// `[from_hour, to_hour]` (hours since the Unix epoch, inclusive).
///
/// When a run of the job commits the micro-batch the backfill was to be while it works, the
/// backfill builds its range again over that commit (see [`again_after`]).
pub async fn backfill(
    job: &Job,
    from_hour: i64,
    to_hour: i64,
    progress: bool,
) -> anyhow::Result<BackfillSummary> {
    let started = Instant::now();
    if from_hour > to_hour {
        bail!("--from is after --to");
    }
    if !job.partition_by.iter().any(|p| p == "dt") {
        bail!(
            "backfill selects raw partitions by `dt` (and `hr`); job `{}` partitions by {:?}",
            job.name,
            job.partition_by
        );
    }
    let (job, _writers, mut latest) = beside_the_runs(job, "backfill").await?;
    let job = &job;
    let mut attempt = 1;
    loop {
        match build_and_commit(job, &latest, from_hour, to_hour, progress, started).await {
            Err(e) => {
                latest = again_after(job, "backfill", "building the range", e, &mut attempt).await?
            }
            done => return done,
        }
    }
}

/// The backfill over `latest`, committed as the micro-batch after it.
async fn build_and_commit(
    job: &Job,
    latest: &Commit,
    from_hour: i64,
    to_hour: i64,
    progress: bool,
    started: Instant,
) -> anyhow::Result<BackfillSummary> {
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
    let hours = raw
        .files
        .iter()
        .filter_map(|f| partition_hours(&f.partition));
    let span = hours
        .clone()
        .map(|(a, _)| a)
        .min()
        .zip(hours.map(|(_, b)| b).max());
    let mut summary = BackfillSummary {
        job: job.name.clone(),
        batch: (!touched.is_empty()).then_some(batch),
        from: hour_text(from_hour),
        to: hour_text(to_hour),
        raw_span: span.map(|(a, b)| (hour_text(a), hour_text(b))),
        raw_partitions: touched.len(),
        ..Default::default()
    };
    if touched.is_empty() {
        summary.elapsed_s = started.elapsed().as_secs_f64();
        return Ok(summary);
    }
    let shapes = Shapes::of(job).await?;
    // One unit of work per output partition, for progress.
    let mut work = Vec::new();
    for (i, parts) in shapes.out_partitions.iter().enumerate() {
        let groups: BTreeSet<Vec<(String, String)>> = touched
            .iter()
            .map(|p| {
                p.iter()
                    .filter(|(k, _)| parts.contains(k))
                    .cloned()
                    .collect()
            })
            .collect();
        for g in groups {
            let members: BTreeSet<_> = touched
                .iter()
                .filter(|p| {
                    p.iter()
                        .filter(|(k, _)| parts.contains(k))
                        .cloned()
                        .collect::<Vec<_>>()
                        == g
                })
                .cloned()
                .collect();
            work.push((i, members));
        }
    }
    let bar = progress.then(|| {
        let pb = indicatif::ProgressBar::new(work.len() as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} partitions  {msg}  {per_sec}  ETA {eta}",
            )
            .expect("valid template"),
        );
        pb.enable_steady_tick(Duration::from_millis(200));
        pb
    });
    let mut tables = latest.tables.clone();
    let mut replaced: BTreeSet<String> = BTreeSet::new();
    let mut rows_total = 0u64;
    for (i, members) in work {
        let t = &job.transforms[i];
        let parts = &shapes.out_partitions[i];
        let (out, affected) = recompute_partitions(
            &job.references,
            &job.lake,
            &job.table,
            raw,
            shapes.raw_files.clone(),
            t,
            parts,
            &members,
        )
        .await?;
        let (files, _) = write_partitions(job, t, batch, &out, parts).await?;
        *summary.partitions.entry(t.name.clone()).or_default() += 1;
        let rows: u64 = files.iter().map(|f| f.rows).sum();
        *summary.rows.entry(t.name.clone()).or_default() += rows;
        rows_total += rows;
        summary.files_written += files.len() as u64;
        summary.files_replaced +=
            put_files(&mut tables, &t.name, parts, files, Some(&affected)) as u64;
        replaced.insert(t.name.clone());
        if let Some(pb) = &bar {
            pb.inc(1);
            pb.set_message(format!("{rows_total} rows"));
        }
    }
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
    // The dedup state does not change; the commit names its own whole copy so that pruning
    // old log entries never removes what the latest commit needs.
    let dedup = match &latest.dedup {
        Some(_) => {
            let (index, _) = super::run::DedupSaved::load(job, latest).await?;
            Some(
                job.log
                    .put_dedup(batch, job.writer.file_tag, index.to_bytes())
                    .await?,
            )
        }
        None => None,
    };
    let commit = Commit {
        job: job.name.clone(),
        batch,
        committed_at_ms: chrono::Utc::now().timestamp_millis(),
        source: latest.source.clone(),
        dedup,
        dedup_deltas: vec![],
        tables: tables.clone(),
        stats: serde_json::json!({"backfill": {"from_hour": from_hour, "to_hour": to_hour}}),
    };
    crate::faults::point("before_commit");
    job.log.commit_batch(&commit).await?;
    clean_after_commit(job, &tables, &replaced, batch).await?;
    summary.elapsed_s = started.elapsed().as_secs_f64();
    Ok(summary)
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
        assert!(parse_hour("yesterday", false).is_err());
        let v = vec![
            ("dt".to_string(), "2025-11-25".to_string()),
            ("hr".to_string(), "22".to_string()),
        ];
        assert_eq!(partition_hours(&v), Some((d + 22, d + 22)));
    }
}
