//! The backfill: the same SQL over the lake's raw table, through the stream job's code path.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use silt::gen::GenOptions;

fn setup(dir: &Path) -> std::path::PathBuf {
    // Five event hours: 22:00 on the 25th to 02:xx on the 26th.
    let opts = GenOptions {
        events: 3000,
        step_ms: 5000,
        ..Default::default()
    };
    generated_job(dir, &opts, "[batch]\nmax_records = 400\n")
}

/// Every data file of a table with its bytes.
fn file_bytes(table: &Path) -> BTreeMap<String, Vec<u8>> {
    parquet_files(table)
        .into_iter()
        .map(|p| {
            (
                p.strip_prefix(table)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// The hourly transform's SQL changed to count sale views only.
fn sale_views_hourly_sql() -> String {
    let sql = silt::cmd::demo::PAGE_VIEWS_HOURLY_SQL.replace(
        "count(*)                                   AS views",
        "count(\"saleId\") AS views",
    );
    assert_ne!(sql, silt::cmd::demo::PAGE_VIEWS_HOURLY_SQL);
    sql
}

fn backfill(job: &Path, from: &str, to: &str) -> serde_json::Value {
    let out = run_ok(&mut backfill_command(job, from, to));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_backfill_gives_the_stream_runs_tables() {
    let dir = tempfile::tempdir().unwrap();
    let job = setup(dir.path());
    run_ok(silt().arg("run").arg(&job));
    let lake = dir.path().join("lake");
    let streamed = lake_rows(&lake);
    assert_eq!(streamed["clickstream"].len(), 3000);
    assert!(!streamed["sales"].is_empty() && !streamed["hourly"].is_empty());

    let s = backfill(&job, "2025-11-25", "2025-11-26");
    assert_eq!(s["raw_partitions"], 5, "{s}");
    let backfilled = lake_rows(&lake);
    for t in ["hourly", "sales", "clickstream"] {
        assert!(
            backfilled[t] == streamed[t],
            "{t}: the backfill differs from the stream run"
        );
    }
    // Twice gives the same lake.
    backfill(&job, "2025-11-25", "2025-11-26");
    assert_eq!(lake_rows(&lake), streamed);
}

#[test]
fn a_range_without_raw_partitions_says_where_they_are_and_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let job = setup(dir.path());
    let run = run_json(&job);
    let last = run["last_batch"].as_u64().unwrap();
    let lake = dir.path().join("lake");
    let before = lake_rows(&lake);

    // A year off: the kind of range a typo makes.
    let s = backfill(&job, "2024-11-25", "2024-11-26");
    assert_eq!(s["batch"], serde_json::Value::Null, "{s}");
    assert_eq!(s["raw_partitions"], 0, "{s}");
    assert_eq!(
        s["raw_span"],
        serde_json::json!(["2025-11-25T22", "2025-11-26T02"]),
        "{s}"
    );
    let out = run_ok(
        silt()
            .args(["backfill", "--from", "2024-11-25", "--to", "2024-11-26"])
            .arg(&job),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("no raw partition falls between 2024-11-25T00 and 2024-11-26T23 (the raw table's partitions span 2025-11-25T22 to 2025-11-26T02); nothing to do, no commit made"),
        "{text}"
    );
    assert_eq!(lake_rows(&lake), before);
    // No commit was made: the next backfill is the batch after the run's last.
    let s = backfill(&job, "2025-11-26", "2025-11-26");
    assert_eq!(s["batch"], last + 1, "{s}");
}

/// A job without transforms has nothing a backfill can rerun: it committed an empty
/// micro-batch, and said it backfilled. Refused, saying why, and nothing is committed.
#[test]
fn a_job_without_transforms_has_nothing_to_backfill() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    // The same job file, its transforms taken out.
    let bare = write_job(dir.path(), "clicks", &dir.path().join("stream"), "");
    run_json(&bare);
    let commits = || all_files(&dir.path().join("lake/_silt/checkpoints/clicks/commits"));
    let before = commits();
    assert!(!before.is_empty());
    let out = silt()
        .args(["backfill", "--from", "2025-11-25", "--to", "2025-11-26"])
        .arg(&bare)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("job `clicks` has no transforms: a backfill reruns a job's transforms"),
        "{err}"
    );
    assert_eq!(commits(), before, "no micro-batch was committed");
}

#[test]
fn after_the_sql_changes_a_backfill_rewrites_exactly_the_requested_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let job = setup(dir.path());
    run_ok(silt().arg("run").arg(&job));
    let lake = dir.path().join("lake");
    let before_hourly = file_bytes(&lake.join("hourly"));
    let before_sales = file_bytes(&lake.join("sales"));
    let before_raw = file_bytes(&lake.join("clickstream"));

    // The transforms change: views now count only sale views; sales keep only product > 250.
    std::fs::write(dir.path().join("sql/hourly.sql"), sale_views_hourly_sql()).unwrap();
    std::fs::write(
        dir.path().join("sql/sales.sql"),
        "SELECT uuid, \"productId\", \"saleId\", dt, hr FROM events WHERE \"saleId\" IS NOT NULL AND \"productId\" > 250",
    )
    .unwrap();
    let s = backfill(&job, "2025-11-25T23", "2025-11-26T00");
    assert_eq!(s["raw_partitions"], 2, "{s}");

    let changed = ["dt=2025-11-25/hr=23/", "dt=2025-11-26/hr=00/"];
    let in_changed = |p: &str| changed.iter().any(|c| p.starts_with(c));
    for (name, before) in [("hourly", &before_hourly), ("sales", &before_sales)] {
        let after = file_bytes(&lake.join(name));
        // Partitions outside the range: the same files, byte for byte.
        let keep_before: BTreeMap<_, _> = before.iter().filter(|(p, _)| !in_changed(p)).collect();
        let keep_after: BTreeMap<_, _> = after.iter().filter(|(p, _)| !in_changed(p)).collect();
        assert_eq!(
            keep_before, keep_after,
            "{name}: partitions outside the range changed"
        );
        // Inside the range: new files with the new answer.
        let old: Vec<_> = before.keys().filter(|p| in_changed(p)).collect();
        let new: Vec<_> = after.keys().filter(|p| in_changed(p)).collect();
        assert_eq!(new.len(), 2, "{name}: {new:?}");
        assert!(
            old.iter().all(|o| !after.contains_key(*o)),
            "{name}: old files of rewritten partitions remain"
        );
    }
    // The new SQL's answer, through silt's query path.
    let out = run_ok(
        silt()
            .args(["query", "--format", "csv", "--lake"])
            .arg(format!("file://{}", lake.display()))
            .arg("SELECT min(\"productId\") AS m FROM sales WHERE hr IN ('23', '00')"),
    );
    let m: i64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(m > 250);
    // The raw table is never touched.
    assert_eq!(file_bytes(&lake.join("clickstream")), before_raw);
}

#[test]
fn a_where_on_partition_columns_reads_only_the_matching_files() {
    let dir = tempfile::tempdir().unwrap();
    let job = setup(dir.path());
    run_ok(silt().arg("run").arg(&job));
    let lake = format!("file://{}", dir.path().join("lake").display());
    let out = run_ok(silt().args(["query", "--format", "csv", "--lake", &lake]).arg(
        "EXPLAIN SELECT sum(\"productId\") FROM clickstream WHERE dt = '2025-11-26' AND hr = '01'",
    ));
    let plan = String::from_utf8_lossy(&out.stdout);
    let all = parquet_files(&dir.path().join("lake/clickstream"));
    let mentioned: Vec<_> = all
        .iter()
        .filter(|p| {
            plan.contains(p.file_name().unwrap().to_str().unwrap()) && plan.contains("hr=01")
        })
        .collect();
    assert!(!mentioned.is_empty(), "{plan}");
    assert!(
        !plan.contains("hr=22") && !plan.contains("hr=23") && !plan.contains("hr=00"),
        "{plan}"
    );
}

/// Runs the job, changes the hourly SQL with `change`, appends events whose first hour
/// (2025-11-26 02:xx) the first run wrote too, runs again, and returns the hourly rows of the
/// hours the second run touched, with the same rows after a backfill (a recomputation with
/// the new SQL).
fn hours_after_a_sql_change(change: impl Fn(&str) -> String) -> (Vec<String>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let job = setup(dir.path());
    run_ok(silt().arg("run").arg(&job));
    let sql = change(silt::cmd::demo::PAGE_VIEWS_HOURLY_SQL);
    assert_ne!(sql, silt::cmd::demo::PAGE_VIEWS_HOURLY_SQL);
    std::fs::write(dir.path().join("sql/hourly.sql"), sql).unwrap();
    let stream = silt_ingest::FileStream::open(dir.path().join("stream")).unwrap();
    let first = GenOptions::default().start_ms;
    silt::gen::generate(
        &stream,
        &GenOptions {
            events: 1000,
            step_ms: 5000,
            start_ms: first + 3000 * 5000,
            ..Default::default()
        },
    )
    .unwrap();
    run_ok(silt().arg("run").arg(&job));
    let lake = dir.path().join("lake");
    // The hours the second run touched: 02 (rows of both runs) and 03.
    let touched = |rows: &BTreeMap<String, Vec<String>>| -> Vec<String> {
        rows["hourly"]
            .iter()
            .filter(|r| {
                r.starts_with("dt=2025-11-26 hr=02") || r.starts_with("dt=2025-11-26 hr=03")
            })
            .cloned()
            .collect()
    };
    let streamed = touched(&lake_rows(&lake));
    assert!(streamed.iter().any(|r| r.contains("hr=02")), "{streamed:?}");
    backfill(&job, "2025-11-26", "2025-11-26");
    (streamed, touched(&lake_rows(&lake)))
}

#[test]
fn a_partitions_transform_whose_sql_changed_is_recomputed_not_merged_with_its_old_rows() {
    // Another column.
    let (streamed, recomputed) = hours_after_a_sql_change(|sql| {
        sql.replace(
            "count(*)                                   AS views,",
            "count(*) AS views, sum(\"productId\") AS product_sum,",
        )
    });
    assert!(
        streamed.iter().all(|r| r.contains("product_sum=")),
        "{streamed:?}"
    );
    assert_eq!(streamed, recomputed);
    // The same columns, other rows counted.
    let (streamed, recomputed) = hours_after_a_sql_change(|sql| {
        sql.replace("FROM events", "FROM events WHERE \"productId\" % 2 = 0")
    });
    assert_eq!(streamed, recomputed);
}

/// A backfill and a stream run of the job racing to commit the same micro-batch number, both
/// writing the transforms' files of the same hour: the backfill's files carry a tag, so the
/// run cannot write over them before the backfill's commit lists them; the run that loses
/// starts again after it, and the lake ends as a backfill of it would make it.
#[test]
fn a_stream_run_that_loses_its_micro_batch_to_a_backfill_starts_again_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let job = setup(dir.path());
    let next_batch = run_json(&job)["last_batch"].as_u64().unwrap() + 1;
    // New events in the last hour (02:xx), for the run that races the backfill.
    new_events_at_0215(dir.path());
    // The run, having lost its micro-batch to the backfill, starts again after it and takes
    // the new events; a backfill of everything then changes nothing.
    let raced = race_a_run(
        silt()
            .args(["backfill", "--from", "2025-11-25", "--to", "2025-11-26"])
            .arg(&job),
        &job,
        &dir.path().join("lake/hourly"),
        &format!("part-{next_batch:010}-"),
        next_batch,
    );
    assert_eq!(raced["rows_written"]["clickstream"], 200, "{raced}");
    assert_eq!(run_json(&job)["records_read"], 0);
    as_a_backfill_of_everything_makes_it(dir.path(), &job);
}

/// A backfill of `from..=to` paused before its commit while a stream run of the job (with
/// 200 new events at 02:15 on the 26th) commits the micro-batch the backfill was to be.
/// Returns the run's summary, the backfill's, its stderr and the micro-batch both aimed at.
fn backfill_beaten_by_a_run(
    dir: &Path,
    job: &Path,
    from: &str,
    to: &str,
) -> (serde_json::Value, serde_json::Value, String, u64) {
    let next = run_json(job)["last_batch"].as_u64().unwrap() + 1;
    new_events_at_0215(dir);
    // Once the backfill's files are written, the run commits while it waits to commit.
    let marker = format!("part-{next:010}-0000-backfill");
    let (run, summary, stderr) = lose_a_race(
        &mut backfill_command(job, from, to),
        job,
        &dir.join("lake/hourly"),
        &marker,
    );
    assert_eq!(run["last_batch"], next, "{run}");
    assert_eq!(run["rows_written"]["clickstream"], 200, "{run}");
    assert_eq!(summary["batch"], next + 1, "{summary}");
    (run, summary, stderr, next)
}

/// Scheduled runs beside a backfill: the first commits the micro-batch the backfill was to
/// be (its events outside the backfill's range), the second, starting after that commit,
/// cleans up a killed writer's leftovers of committed micro-batches, which the backfill's
/// files now look like. They are not: the backfill holds its lease, so the run leaves them,
/// and the backfill commits them after the runs without building anything again. A second
/// backfill meanwhile is refused.
#[test]
fn a_backfill_beside_scheduled_runs_keeps_its_files_through_their_clean_ups() {
    let dir = tempfile::tempdir().unwrap();
    let job = setup(dir.path());
    let next = run_json(&job)["last_batch"].as_u64().unwrap() + 1;
    new_events_at_0215(dir.path());
    let marker = format!("part-{next:010}-0000-backfill");
    let (second, summary, stderr) = lose_a_race_to(
        &mut backfill_command(&job, "2025-11-25", "2025-11-25"),
        &dir.path().join("lake/hourly"),
        &marker,
        || {
            let other = silt()
                .args(["backfill", "--from", "2025-11-26", "--to", "2025-11-26"])
                .arg(&job)
                .output()
                .unwrap();
            assert_eq!(other.status.code(), Some(1));
            let e = String::from_utf8_lossy(&other.stderr);
            assert!(
                e.contains("another `backfill` of this job is at work"),
                "{e}"
            );
            assert_eq!(run_json(&job)["last_batch"], next);
            run_json(&job)
        },
    );
    assert_eq!(second["records_read"], 0, "{second}");
    assert_eq!(summary["batch"], next + 1, "{summary}");
    assert_eq!(summary["partitions_kept"], 4, "{summary}");
    assert!(stderr.contains("keeping the other 4"), "{stderr}");
    as_a_backfill_of_everything_makes_it(dir.path(), &job);
}

/// The lake after a backfill that a run beat: the run's events are all there, and a backfill
/// of everything changes nothing (nothing of the backfill's is stale).
fn as_a_backfill_of_everything_makes_it(dir: &Path, job: &Path) {
    as_a_backfill_of_everything_makes_it_with(dir, job, 3200);
}

/// [`as_a_backfill_of_everything_makes_it`], the raw table holding `events` rows.
fn as_a_backfill_of_everything_makes_it_with(dir: &Path, job: &Path, events: usize) {
    let lake = dir.join("lake");
    let after = lake_rows(&lake);
    assert_eq!(after["clickstream"].len(), events);
    backfill(job, "2025-11-25", "2025-11-26");
    assert!(
        lake_rows(&lake) == after,
        "the lake differs from a backfill of the same raw table"
    );
}

/// The other way round: a backfill at work while a stream run of the job commits the
/// micro-batch the backfill was to be, the run's events falling in one hour of the
/// backfill's range. The backfill builds that hour again after the run's commit (but for
/// the `partitions` transform's, which the run recomputed with the same SQL), keeps what it
/// built for the other hours, and commits the micro-batch after it: nothing of the run's is
/// lost, nothing of the backfill's is stale.
#[test]
fn a_backfill_beaten_to_its_micro_batch_by_a_run_builds_again_the_hours_the_run_changed() {
    let dir = tempfile::tempdir().unwrap();
    let job = setup(dir.path());
    let (_, summary, stderr, _) =
        backfill_beaten_by_a_run(dir.path(), &job, "2025-11-25", "2025-11-26");
    // Five hours of both transforms; the run changed 02:00 on the 26th: `sales` (rows) is
    // built again there, and `hourly` (partitions) is as the run recomputed it, with the
    // same SQL.
    assert_eq!(summary["partitions"]["hourly"], 4, "{summary}");
    assert_eq!(summary["partitions"]["sales"], 5, "{summary}");
    assert_eq!(summary["partitions_kept"], 8, "{summary}");
    assert_eq!(summary["partitions_from_runs"], 1, "{summary}");
    assert!(
        stderr.contains("building again after it 1 partition(s) whose raw data it changed and 0 whose files were cleaned up; 1 as the runs recomputed them with the same SQL; keeping the other 8"),
        "{stderr}"
    );
    // The hours built again or left to the run count the run's events.
    as_a_backfill_of_everything_makes_it(dir.path(), &job);
}

/// A backfill slower than the stream's micro-batches: the run that beats it leaves its
/// range alone, so everything it built is kept (moved to the next micro-batch's names, out
/// of reach of the run's clean-up) and committed after the run's commit without building
/// anything again.
#[test]
fn a_backfill_beaten_by_a_run_outside_its_range_commits_what_it_built_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let job = setup(dir.path());
    let (_, summary, stderr, next) =
        backfill_beaten_by_a_run(dir.path(), &job, "2025-11-25", "2025-11-25");
    // 22:00 and 23:00 on the 25th, both transforms: all kept.
    assert_eq!(summary["raw_partitions"], 2, "{summary}");
    assert_eq!(summary["partitions_kept"], 4, "{summary}");
    assert!(stderr.contains("keeping the other 4"), "{stderr}");
    // The backfill's files bear the micro-batch they were committed in.
    let hourly = all_files(&dir.path().join("lake/hourly"));
    let moved = format!("part-{:010}-0000-backfill", next + 1);
    assert_eq!(
        hourly
            .iter()
            .filter(|f| f.to_string_lossy().contains(&moved))
            .count(),
        2,
        "{hourly:?}"
    );
    // The run's progress is in the backfill's commit: a run after it reads nothing again.
    let again = run_json(&job);
    assert_eq!(again["records_read"], 0, "{again}");
    as_a_backfill_of_everything_makes_it(dir.path(), &job);
}

/// The dedup index goes through a backfill as it was: the backfill's commit names the
/// snapshot and deltas of the commit before it (it writes no copy of the index), and the last
/// 100 records of a shard, sent again after the backfill, are not written again.
#[test]
fn the_dedup_index_goes_through_a_backfill_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let job = setup(dir.path());
    run_ok(silt().arg("run").arg(&job));
    let s = backfill(&job, "2025-11-25", "2025-11-26");
    assert!(s["batch"].is_u64(), "{s}");
    let blobs: Vec<String> = all_files(&dir.path().join("lake/_silt"))
        .iter()
        .filter(|f| f.to_string_lossy().contains("/dedup/"))
        .map(|f| f.to_string_lossy().into_owned())
        .collect();
    assert!(!blobs.is_empty());
    assert!(!blobs.iter().any(|f| f.contains("backfill")), "{blobs:?}");

    let shard = std::fs::read(dir.path().join("stream/shard-000000.log")).unwrap();
    let mut payloads = Vec::new();
    let mut at = 0;
    while at + silt_ingest::FRAME_HEADER <= shard.len() {
        let len = u32::from_be_bytes(shard[at..at + 4].try_into().unwrap()) as usize;
        let start = at + silt_ingest::FRAME_HEADER;
        payloads.push(&shard[start..start + len]);
        at = start + len;
    }
    let last: Vec<&[u8]> = payloads[payloads.len() - 100..].to_vec();
    silt_ingest::FileStream::open(dir.path().join("stream"))
        .unwrap()
        .append(0, &last)
        .unwrap();
    // Each is a repeat (or, older than the window, late; or one of the generator's bad
    // records): none is written again.
    let again = run_json(&job);
    assert_eq!(again["records_read"], 100, "{again}");
    assert!(again["duplicates"].as_u64().unwrap() > 50, "{again}");
    let n = |k: &str| again[k].as_u64().unwrap();
    assert_eq!(n("duplicates") + n("late") + n("rejected"), 100, "{again}");
    assert_eq!(again["rows_written"]["clickstream"], 0, "{again}");
}

/// A transform partitioned more coarsely than the raw table (one partition a day) reads every
/// raw hour of its day: a backfill of 00:00 and 01:00 on the 26th, beaten by a run whose
/// events fall at 02:15 that day (outside the range, inside the day), does not commit the
/// day it computed without them (here it takes the run's, recomputed with the same SQL).
#[test]
fn a_beaten_backfill_does_not_keep_a_daily_partition_that_the_run_changed_outside_its_range() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("sql")).unwrap();
    let daily = dir.path().join("sql/daily.sql");
    std::fs::write(
        &daily,
        "SELECT dt, count(*) AS events FROM events GROUP BY dt",
    )
    .unwrap();
    let opts = GenOptions {
        events: 3000,
        step_ms: 5000,
        ..Default::default()
    };
    let job = generated_job(
        dir.path(),
        &opts,
        &format!(
            "[batch]\nmax_records = 400\n\n[[transform]]\nname = \"daily\"\nsql = \"{}\"\nmode = \"partitions\"\n",
            daily.display()
        ),
    );
    let next = run_json(&job)["last_batch"].as_u64().unwrap() + 1;
    new_events_at_0215(dir.path());
    let marker = format!("part-{next:010}-0000-backfill");
    let (_, summary, stderr) = lose_a_race(
        &mut backfill_command(&job, "2025-11-26T00", "2025-11-26T01"),
        &job,
        &dir.path().join("lake/daily"),
        &marker,
    );
    // The two hours of `hourly` and `sales` are kept; the day is the run's.
    assert_eq!(summary["partitions_kept"], 4, "{summary}");
    assert_eq!(summary["partitions_from_runs"], 1, "{summary}");
    assert!(summary["partitions"].get("daily").is_none(), "{summary}");
    assert!(
        stderr.contains("1 as the runs recomputed them with the same SQL; keeping the other 4"),
        "{stderr}"
    );
    as_a_backfill_of_everything_makes_it(dir.path(), &job);
}

/// A backfill run because the SQL changed, beaten by a stream run still on the old SQL: the
/// hour the run recomputed is of the old SQL, so the backfill builds it again (with the new)
/// rather than take it; the lake ends as a backfill of everything with the new SQL makes it.
#[test]
fn a_beaten_backfill_builds_again_what_the_run_recomputed_with_other_sql() {
    let dir = tempfile::tempdir().unwrap();
    let job = setup(dir.path());
    // The backfill's job: the same, but `hourly` counts sale views only.
    let new_sql = dir.path().join("sql/hourly-new.sql");
    std::fs::write(&new_sql, sale_views_hourly_sql()).unwrap();
    let text = std::fs::read_to_string(&job).unwrap();
    let old_sql = dir.path().join("sql/hourly.sql").display().to_string();
    assert!(text.contains(&old_sql));
    let new_job = dir.path().join("new-sql.toml");
    std::fs::write(
        &new_job,
        text.replace(&old_sql, &new_sql.display().to_string()),
    )
    .unwrap();

    let next = run_json(&job)["last_batch"].as_u64().unwrap() + 1;
    new_events_at_0215(dir.path());
    let marker = format!("part-{next:010}-0000-backfill");
    let (_, summary, stderr) = lose_a_race(
        &mut backfill_command(&new_job, "2025-11-25", "2025-11-26"),
        &job,
        &dir.path().join("lake/hourly"),
        &marker,
    );
    assert_eq!(summary["partitions"]["hourly"], 5, "{summary}");
    assert_eq!(summary["partitions_from_runs"], 0, "{summary}");
    assert_eq!(summary["partitions_kept"], 8, "{summary}");
    assert!(
        stderr.contains("building again after it 2 partition(s) whose raw data it changed"),
        "{stderr}"
    );
    as_a_backfill_of_everything_makes_it(dir.path(), &new_job);
}

#[test]
fn a_transform_passing_raw_columns_through_copies_their_pages_and_a_backfill_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let opts = GenOptions {
        events: 3000,
        step_ms: 5000,
        ..Default::default()
    };
    let extra = format!(
        "[batch]\nmax_records = 400\n{}",
        pass_through_transforms(dir.path())
    );
    let job = generated_job(dir.path(), &opts, &extra);
    let run = run_json(&job);
    assert_eq!(
        run["copied"],
        serde_json::json!(["everything", "renamed", "some"]),
        "{run}"
    );

    // `SELECT *`: the raw table's files, byte for byte, under the same names.
    let lake = dir.path().join("lake");
    let raw = file_bytes(&lake.join("clickstream"));
    assert!(raw.len() > 5, "{} raw files", raw.len());
    assert!(file_bytes(&lake.join("everything")) == raw);
    // On a local disk, hard links (the closed hours' compactions are written apart).
    let linked = parquet_files(&lake.join("everything"))
        .iter()
        .filter(|p| {
            let rel = p.strip_prefix(lake.join("everything")).unwrap();
            same_file(p, &lake.join("clickstream").join(rel))
        })
        .count();
    assert!(
        linked > 0,
        "no file of `everything` is a link to the raw file"
    );
    let streamed = lake_rows(&lake);
    assert_eq!(streamed["everything"].len(), 3000);
    assert_eq!(streamed["some"], streamed["filtered"]);
    assert_eq!(streamed["renamed"].len(), 3000);
    assert_eq!(streamed["dated"].len(), 3000);

    // A backfill runs their SQL over the raw table: the same rows. `SELECT *`'s files are
    // the raw files again, linked under the backfill's names: no SQL run, nothing encoded.
    backfill(&job, "2025-11-25", "2025-11-26");
    let backfilled = lake_rows(&lake);
    for t in ["everything", "some", "filtered", "renamed", "dated"] {
        assert!(backfilled[t] == streamed[t], "{t}: the backfill differs");
    }
    let raw_files = parquet_files(&lake.join("clickstream"));
    let everything = parquet_files(&lake.join("everything"));
    assert_eq!(everything.len(), raw_files.len());
    for f in &everything {
        assert!(
            f.to_string_lossy().ends_with("-backfill.parquet"),
            "{f:?}: not the backfill's"
        );
        assert!(
            raw_files.iter().any(|r| same_file(f, r)),
            "{f:?} is not a raw file, linked"
        );
    }
}

/// Two transforms for a job that has run: `by_product` (`partitions`) and `with_channel`
/// (`rows`), as job file text, their SQL written into `dir/sql`.
fn added_transforms(dir: &Path) -> String {
    transforms(
        dir,
        &[
            (
                "by_product",
                "SELECT dt, hr, \"productId\", count(*) AS views FROM events GROUP BY dt, hr, \"productId\"",
                "partitions",
            ),
            (
                "with_channel",
                "SELECT uuid, channel, dt, hr FROM events WHERE channel IS NOT NULL",
                "rows",
            ),
        ],
    )
}

/// The lake of the job with `added_transforms` from the start, in a new folder, with the
/// new events at 02:15 or without.
fn reference_lake(new_events: bool) -> BTreeMap<String, Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    let job = setup(dir.path());
    let all = std::fs::read_to_string(&job).unwrap() + &added_transforms(dir.path());
    std::fs::write(&job, all).unwrap();
    if new_events {
        new_events_at_0215(dir.path());
    }
    run_ok(silt().arg("run").arg(&job));
    let lake = lake_rows(&dir.path().join("lake"));
    assert!(!lake["by_product"].is_empty() && !lake["with_channel"].is_empty());
    lake
}

/// A job that has run, with `added_transforms` added to its file since; the job file as it
/// was is `jobs/before.toml`. Returns the job file and its last micro-batch.
fn job_with_added_transforms(dir: &Path) -> (std::path::PathBuf, u64) {
    let job = setup(dir);
    std::fs::copy(&job, dir.join("jobs/before.toml")).unwrap();
    let last = run_json(&job)["last_batch"].as_u64().unwrap();
    let text = std::fs::read_to_string(&job).unwrap() + &added_transforms(dir);
    std::fs::write(&job, text).unwrap();
    (job, last)
}

/// A transform added to a job that has run gets a table holding every hour of the raw table
/// (a backfill of it alone, committed before the run reads on): the lake a job that had it
/// from the start gives, the job's other tables untouched. `--check` says so beforehand.
#[test]
fn transforms_added_to_a_job_get_every_raw_hour_before_the_run_reads_on() {
    let want = reference_lake(false);
    let dir = tempfile::tempdir().unwrap();
    let (job, last) = job_with_added_transforms(dir.path());
    let lake = dir.path().join("lake");
    let others = (
        file_bytes(&lake.join("hourly")),
        file_bytes(&lake.join("sales")),
    );

    let out = run_ok(silt().args(["run", "--check", "--json"]).arg(&job));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let fills: BTreeMap<String, serde_json::Value> = plan["transforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["fills_first"].clone(),
            )
        })
        .collect();
    let span = serde_json::json!(["2025-11-25T22", "2025-11-26T02"]);
    assert_eq!(fills["by_product"], span, "{plan}");
    assert_eq!(fills["with_channel"], span, "{plan}");
    assert_eq!(fills["hourly"], serde_json::Value::Null, "{plan}");

    let out = run_ok(silt().arg("run").arg(&job));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("new table(s) filled: by_product (") &&
        text.contains(&format!("from the raw table's 5 partition(s), 2025-11-25T22 to 2025-11-26T02, as micro-batch #{}", last + 1)),
        "{text}"
    );
    assert_eq!(lake_rows(&lake), want);
    assert!(file_bytes(&lake.join("hourly")) == others.0);
    assert!(file_bytes(&lake.join("sales")) == others.1);
    // Once filled, a run fills nothing again.
    let again = run_json(&job);
    assert_eq!(again["filled"], serde_json::Value::Null, "{again}");
    assert_eq!(again["last_batch"], serde_json::Value::Null, "{again}");
    assert_eq!(lake_rows(&lake), want);
}

/// `backfill --transform` reruns the named transforms alone. Here it fills the tables of
/// transforms whose fill a crash stopped before its commit, after a run of the job file as
/// it was committed that micro-batch's number: the fill's files are gone from the folders
/// (a directory reader sees each row once).
#[test]
fn a_backfill_of_some_transforms_leaves_the_others_and_clears_a_killed_fills_files() {
    let want = reference_lake(true);
    let dir = tempfile::tempdir().unwrap();
    let (job, last) = job_with_added_transforms(dir.path());
    let lake = dir.path().join("lake");
    let out = silt()
        .arg("run")
        .arg(&job)
        .env("SILT_CRASH_AT", "before_commit:1")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("crash point"));
    assert!(!parquet_files(&lake.join("by_product")).is_empty());
    new_events_at_0215(dir.path());
    assert_eq!(
        run_json(&dir.path().join("jobs/before.toml"))["last_batch"],
        last + 1
    );
    let others = (
        file_bytes(&lake.join("hourly")),
        file_bytes(&lake.join("sales")),
    );

    let out = silt()
        .args([
            "backfill",
            "--transform",
            "by_prodcut",
            "--from",
            "2025-11-25",
            "--to",
            "2025-11-26",
        ])
        .arg(&job)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("has no transform `by_prodcut`; its transforms: hourly, sales, by_product, with_channel"),
        "{err}"
    );

    let s = run_ok(backfill_command(&job, "2025-11-25", "2025-11-26").args([
        "--transform",
        "by_product",
        "--transform",
        "with_channel",
    ]));
    let s: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
    assert_eq!(s["batch"], last + 2, "{s}");
    assert_eq!(
        s["transforms"],
        serde_json::json!(["by_product", "with_channel"]),
        "{s}"
    );
    assert_eq!(lake_rows(&lake), want);
    assert!(file_bytes(&lake.join("hourly")) == others.0);
    assert!(file_bytes(&lake.join("sales")) == others.1);
    // The tables exist now: a run has nothing to fill.
    assert_eq!(run_json(&job)["filled"], serde_json::Value::Null);
}

/// The partitions of each transform's table that hold rows of an earlier version of its SQL,
/// as `silt run --check --json` reports them: transform to (partitions, [from, to]).
fn earlier_sql(job: &Path) -> BTreeMap<String, (u64, serde_json::Value)> {
    let out = run_ok(silt().args(["run", "--check", "--json"]).arg(job));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    plan["transforms"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| !t["earlier_sql"].is_null())
        .map(|t| {
            let e = &t["earlier_sql"];
            (
                t["name"].as_str().unwrap().to_string(),
                (e["partitions"].as_u64().unwrap(), e["span"].clone()),
            )
        })
        .collect()
}

/// After a transform's SQL changes, the partitions its table holds of the earlier SQL are
/// named (by `--check`, and by each run on stderr, with the backfill that rewrites them),
/// for `rows` and `partitions` transforms alike; the runs' recomputed hours and a backfill of
/// the transform take them off the list.
#[test]
fn partitions_of_an_earlier_sql_are_named_until_a_backfill_rewrites_them() {
    let dir = tempfile::tempdir().unwrap();
    let job = setup(dir.path());
    run_ok(silt().arg("run").arg(&job));
    assert!(earlier_sql(&job).is_empty());

    std::fs::write(dir.path().join("sql/hourly.sql"), sale_views_hourly_sql()).unwrap();
    std::fs::write(
        dir.path().join("sql/sales.sql"),
        "SELECT uuid, \"productId\", \"saleId\", dt, hr FROM events WHERE \"saleId\" IS NOT NULL AND \"productId\" > 250",
    )
    .unwrap();
    let all = serde_json::json!(["2025-11-25T22", "2025-11-26T02"]);
    let listed = earlier_sql(&job);
    assert_eq!(listed["hourly"], (5, all.clone()), "{listed:?}");
    assert_eq!(listed["sales"], (5, all.clone()), "{listed:?}");

    // New events at 02:15: the run recomputes `hourly`'s 02 hour with the new SQL, and adds
    // `sales` rows of the new SQL beside the 02 hour's old ones.
    new_events_at_0215(dir.path());
    let out = run_ok(silt().arg("run").arg(&job));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("transform `hourly`: 5 partition(s), 2025-11-25T22 to 2025-11-26T02, hold rows of an earlier version of its SQL; `silt backfill <job file> --transform hourly --from 2025-11-25T22 --to 2025-11-26T02` rewrites them with this one"),
        "{err}"
    );
    let listed = earlier_sql(&job);
    assert_eq!(
        listed["hourly"],
        (4, serde_json::json!(["2025-11-25T22", "2025-11-26T01"])),
        "{listed:?}"
    );
    assert_eq!(listed["sales"], (5, all), "{listed:?}");

    backfill(&job, "2025-11-25", "2025-11-26");
    assert!(earlier_sql(&job).is_empty());
}

/// A backfill at work while a run of the job compacts the hours it is reading (the run's
/// commit replaces the hours' small raw files with one and deletes them): the backfill failed
/// with "Object at location ... not found". It is beaten by that commit as by any other:
/// it builds again after it, and its tables are what a backfill of the compacted lake makes.
#[test]
fn a_backfill_whose_raw_files_a_compaction_deletes_builds_again_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let job = small_files_then_compaction(dir.path(), GenOptions::default().bad_per_kind);
    let raw = dir.path().join("lake/clickstream");
    let small = parquet_files(&raw.join("dt=2025-11-25/hr=22")).len();
    assert!(small >= 10, "{small} files");

    // The backfill reads the commit, then waits while the run compacts the closed hours.
    let (waiting, signal) = paused_at(
        &mut backfill_command(&job, "2025-11-25", "2025-11-26"),
        "before_build",
    );
    let s = run_json(&job);
    assert!(
        s["files_compacted"].as_u64().unwrap() >= small as u64,
        "{s}"
    );
    assert_eq!(parquet_files(&raw.join("dt=2025-11-25/hr=22")).len(), 1);
    let (_, stderr) = resume(waiting, signal);
    assert!(stderr.contains("building again after it"), "{stderr}");
    as_a_backfill_of_everything_makes_it_with(dir.path(), &job, 3000);
}
