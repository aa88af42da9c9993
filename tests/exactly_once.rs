//! Exactly-once output: dedup across micro-batches and runs, kills at many points, and two
//! runs of one job at once.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use silt::gen::{self, GenOptions};
use silt_ingest::FileStream;

fn setup(dir: &Path, events: usize, extra: &str) -> std::path::PathBuf {
    generated_job(
        dir,
        &GenOptions {
            events,
            ..Default::default()
        },
        extra,
    )
}

fn uuids(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = table_rows(&dir.join("lake/clickstream"))
        .iter()
        .map(|r| {
            r.split(' ')
                .find(|c| c.starts_with("uuid="))
                .unwrap()
                .to_string()
        })
        .collect();
    v.sort();
    v
}

#[test]
fn duplicates_are_dropped_across_micro_batches_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    // Small micro-batches: repeats land in other batches than their originals.
    let job = setup(dir.path(), 3000, "[batch]\nmax_records = 97\n");
    let s = run_json(&job);
    assert!(s["batches"].as_u64().unwrap() > 20, "{s}");
    let first = uuids(dir.path());
    assert_eq!(first.len(), 3000);
    let dups = s["duplicates"].as_u64().unwrap();
    assert!(dups > 100, "{s}");
    // Between whole dedup snapshots, commits save only the ids their batch added, and pruning
    // the log keeps every snapshot and delta the commits left name.
    let log = dir.path().join("lake/_silt/checkpoints/clicks/");
    let mut commits: Vec<serde_json::Value> = std::fs::read_dir(log.join("commits"))
        .unwrap()
        .map(|e| serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap())
        .collect();
    commits.sort_by_key(|c| c["batch"].as_u64());
    // The last 20 commits, and the full commit whose file lists they store changes to.
    if commits.len() == 21 {
        let base = commits.remove(0);
        assert_eq!(commits[0]["base"], base["batch"], "{base}");
        assert!(base["tables"].is_object());
    }
    assert_eq!(commits.len(), 20, "the log keeps 20 commits");
    assert!(
        commits
            .iter()
            .filter(|c| c.get("changes").is_some())
            .count()
            > 10,
        "commits store the files their batch changed"
    );
    let with_deltas = commits
        .iter()
        .filter(|c| c["dedup_deltas"].as_array().is_some_and(|d| !d.is_empty()))
        .count();
    assert!(with_deltas > 10, "{with_deltas} of 20 commits name deltas");
    let ids = |n: &serde_json::Value| {
        let bytes = std::fs::read(log.join("dedup").join(n.as_str().unwrap()))
            .unwrap_or_else(|e| panic!("dedup/{n} named by a commit: {e}"));
        silt_dedup::DedupIndex::count(&bytes).unwrap()
    };
    // A delta holds at most the 97 ids of its batch, whatever the window holds.
    for c in &commits {
        ids(&c["dedup"]);
        for d in c["dedup_deltas"].as_array().into_iter().flatten() {
            assert!(ids(d) <= 97, "a delta holds one batch's ids");
        }
    }

    // A producer retries events of the first run again: a later run drops them too.
    let stream = FileStream::open(dir.path().join("stream")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let chunk = rt
        .block_on(silt_ingest::Source::read(
            &stream,
            "shard-000001",
            &silt_ingest::StartAt::Earliest,
            silt_ingest::ReadLimit {
                max_records: 4000,
                max_bytes: 1 << 30,
            },
        ))
        .unwrap();
    let tail: Vec<&[u8]> = (chunk.records.len() - 50..chunk.records.len())
        .map(|i| chunk.payload(i))
        .collect();
    stream.append(0, &tail).unwrap();
    let s2 = run_json(&job);
    assert_eq!(s2["records_read"], 50);
    let good_in_tail = 50 - s2["rejected"].as_u64().unwrap();
    assert_eq!(
        s2["duplicates"].as_u64().unwrap() + s2["late"].as_u64().unwrap(),
        good_in_tail,
        "{s2}"
    );
    assert_eq!(
        uuids(dir.path()),
        first,
        "no event twice after the second run"
    );
}

/// Runs the job to the end without interruption in one folder, and with kills at many points
/// in another; the lakes must be equal row for row.
#[test]
fn killed_runs_converge_to_the_uninterrupted_lake() {
    let reference = tempfile::tempdir().unwrap();
    let job_a = setup(reference.path(), 4000, "[batch]\nmax_records = 50\n");
    run_ok(silt().arg("run").arg(&job_a));
    let want = lake_rows(&reference.path().join("lake"));
    assert_eq!(want["clickstream"].len(), 4000);

    let dir = tempfile::tempdir().unwrap();
    let job = setup(dir.path(), 4000, "[batch]\nmax_records = 50\n");
    let points = [
        "mid_read",
        "after_intent",
        "after_decode",
        "after_table",
        "after_dedup",
        "before_commit",
        "after_commit",
    ];
    let mut kills = 0;
    for round in 1..=3u32 {
        for p in points {
            let n = if p == "after_table" { round * 2 } else { round };
            let out = silt()
                .arg("run")
                .arg(&job)
                .env("SILT_CRASH_AT", format!("{p}:{n}"))
                .output()
                .unwrap();
            if !out.status.success() {
                assert!(
                    String::from_utf8_lossy(&out.stderr).contains("crash point"),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                kills += 1;
            }
        }
    }
    // And SIGKILL from outside at moments that fall anywhere: reading, encoding, writing a
    // Parquet file, writing the checkpoint.
    for i in 0..14u64 {
        let mut child = silt()
            .arg("run")
            .arg(&job)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(15 + i * 13));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(kills >= 30, "only {kills} runs were killed");
    run_ok(silt().arg("run").arg(&job));
    let got = lake_rows(&dir.path().join("lake"));
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (table, rows) in &want {
        assert_eq!(got[table].len(), rows.len(), "{table}: row count");
        assert!(
            got[table] == *rows,
            "{table}: rows differ from the uninterrupted run"
        );
    }
    // No half-written file is left for a directory reader.
    let stray: Vec<_> = all_files(&dir.path().join("lake"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains('#'))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn two_runs_at_once_only_one_commits() {
    let dir = tempfile::tempdir().unwrap();
    let job = setup(dir.path(), 2000, "[batch]\nmax_records = 500\n");
    // Both runs pause after planning, so that they overlap on the first micro-batch.
    let spawn = || {
        silt()
            .arg("run")
            .arg(&job)
            .env("SILT_PAUSE_AT", "after_intent:700")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = spawn();
    let b = spawn();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let ok = [a.status.success(), b.status.success()];
    assert_eq!(
        ok.iter().filter(|x| **x).count(),
        1,
        "exactly one run succeeds: {ok:?}"
    );
    let loser = if a.status.success() { &b } else { &a };
    let msg = String::from_utf8_lossy(&loser.stderr);
    assert!(
        msg.contains("another run of job `clicks` committed micro-batch"),
        "{msg}"
    );
    assert_eq!(loser.status.code(), Some(1));
    // The lake is still exact.
    run_ok(silt().arg("run").arg(&job));
    let ids = uuids(dir.path());
    assert_eq!(ids.len(), 2000);
    let mut d = ids.clone();
    d.dedup();
    assert_eq!(d.len(), 2000);
}

#[test]
fn a_run_leaves_the_temporary_files_of_a_live_writer_alone() {
    let dir = tempfile::tempdir().unwrap();
    let job = setup(dir.path(), 2000, "[batch]\nmax_records = 500\n");
    // A first run commits one micro-batch and dies.
    let out = silt()
        .arg("run")
        .arg(&job)
        .env("SILT_CRASH_AT", "after_commit:1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    // A second run plans the next micro-batch and stays in it for a while.
    let checkpoint = dir.path().join("lake/_silt/checkpoints/clicks");
    let mut live = silt()
        .arg("run")
        .arg(&job)
        .env("SILT_PAUSE_AT", "after_intent:4000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let planned = checkpoint.join("intents/0000000001.json");
    let t = std::time::Instant::now();
    while !planned.exists() {
        assert!(t.elapsed() < Duration::from_secs(60), "no intent written");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Its uploads in flight: local writes go through `{name}#{n}` until they are renamed.
    let partition = dir.path().join("lake/clickstream/dt=2025-11-25/hr=22");
    std::fs::create_dir_all(&partition).unwrap();
    let in_flight = [
        checkpoint.join("commits/0000000001.json#7"),
        partition.join("part-0000000001-0003.parquet#7"),
    ];
    for f in &in_flight {
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, b"half written").unwrap();
    }
    // A run started meanwhile must not take them for a killed writer's leftovers.
    let _ = silt().arg("run").arg(&job).output().unwrap();
    for f in &in_flight {
        assert!(
            f.exists(),
            "{} was removed under a live writer",
            f.display()
        );
    }
    live.wait().unwrap();
    // Once no writer is alive, the next run removes what they left.
    run_ok(silt().arg("run").arg(&job));
    for f in &in_flight {
        assert!(!f.exists(), "{} was left behind", f.display());
    }
    assert_eq!(uuids(dir.path()).len(), 2000);
}

#[test]
fn follow_keeps_going_shows_its_metrics_and_ctrl_c_commits_the_batch_in_hand() {
    let dir = tempfile::tempdir().unwrap();
    let job = setup(
        dir.path(),
        1000,
        "[batch]\nmax_records = 100\ninterval = \"100ms\"\n",
    );
    let port = free_port();
    let child = silt()
        .args(["run", "--follow", "--metrics", &format!("127.0.0.1:{port}")])
        .arg(&job)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let wait_for = |n: usize| {
        for _ in 0..200 {
            if uuids(dir.path()).len() == n {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the lake never reached {n} events");
    };
    wait_for(1000);
    // More events arrive while it runs.
    let stream = FileStream::open(dir.path().join("stream")).unwrap();
    gen::generate(
        &stream,
        &GenOptions {
            events: 700,
            seed: 99,
            start_ms: 1_764_200_000_000,
            bad_per_kind: 0,
            ..Default::default()
        },
    )
    .unwrap();
    wait_for(1700);
    // What a Prometheus scrape of the running job sees.
    let scrape = || {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: job\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        c.read_to_string(&mut text).unwrap();
        text
    };
    let metric = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .parse::<f64>()
            .unwrap() as u64
    };
    let rows = "silt_job_rows_written_total{table=\"clickstream\"}";
    let mut metrics = scrape();
    for _ in 0..100 {
        // The lake shows a commit's files a moment before the commit's report is counted.
        if metrics.contains(rows) && metric(&metrics, rows) == 1700 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        metrics = scrape();
    }
    assert_eq!(metric(&metrics, rows), 1700, "{metrics}");
    assert!(metric(&metrics, "silt_job_last_commit_timestamp_seconds") > 1_700_000_000);
    // The generated events arrived "a year ago": the last commit's lag is that, and once the
    // run finds nothing new it is caught up.
    let lag = "silt_job_lag_seconds";
    for _ in 0..100 {
        if metric(&metrics, lag) == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        metrics = scrape();
    }
    assert_eq!(metric(&metrics, lag), 0, "{metrics}");
    let out = interrupt(child, "INT");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("rows written       1700   to clickstream"),
        "{text}"
    );
    // No terminal to draw progress on: a log line for each micro-batch committed, whose
    // counts add up to the summary's.
    let log = String::from_utf8_lossy(&out.stderr);
    let number_after = |line: &str, before: &str| -> u64 {
        let at = line
            .find(before)
            .unwrap_or_else(|| panic!("{before} in {line}"));
        line[..at].rsplit(' ').next().unwrap().parse().unwrap()
    };
    let batches: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" committed in "))
        .collect();
    let summary_number = |label: &str| -> u64 {
        let line = text.lines().find(|l| l.contains(label)).unwrap();
        line[line.find(label).unwrap() + label.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(
        batches.len() as u64,
        number_after(text.lines().next().unwrap(), " micro-batch(es)"),
        "{log}\n{text}"
    );
    assert_eq!(
        batches
            .iter()
            .map(|l| number_after(l, " records read"))
            .sum::<u64>(),
        summary_number("records read"),
        "{log}"
    );
    assert!(
        batches
            .iter()
            .all(|l| l.contains("job ") && l.contains("lag ")),
        "{log}"
    );
    // The scrape before the stop saw every record the run had read by then.
    assert!(
        metric(&metrics, "silt_job_records_read_total") >= 1700,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "silt_job_duplicates_total"),
        summary_number("duplicates dropped"),
        "{metrics}"
    );
}

#[test]
fn a_rows_transform_with_an_aggregate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let job = setup(dir.path(), 10, "");
    std::fs::write(
        dir.path().join("sql/sales.sql"),
        "SELECT dt, count(*) AS n FROM events GROUP BY dt",
    )
    .unwrap();
    let out = silt().arg("run").arg(&job).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("transform `sales`: uses an aggregate"),
        "{err}"
    );
    assert!(err.contains("mode = \"partitions\""), "{err}");
}

/// Writes `sql` as the SQL of transform `name` (table `name`, already written by a run) and
/// checks that the backfill and the run both refuse it, with stderr containing each of
/// `says`, and leave the table as it was.
fn refused_by_the_run_and_the_backfill(name: &str, sql: &str, says: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let job = setup(dir.path(), 200, "");
    run_json(&job);
    let table = dir.path().join("lake").join(name);
    let before = table_rows(&table);
    assert!(!before.is_empty());
    std::fs::write(dir.path().join(format!("sql/{name}.sql")), sql).unwrap();
    let backfill = silt()
        .args(["backfill", "--from", "2025-11-25", "--to", "2025-11-26"])
        .arg(&job)
        .output()
        .unwrap();
    let run = silt().arg("run").arg(&job).output().unwrap();
    for out in [backfill, run] {
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        for s in says {
            assert!(err.contains(s), "{err}");
        }
    }
    assert_eq!(table_rows(&table), before);
}

/// A transform's output is partitioned by the raw partitions it reads: one that puts rows in
/// other partitions (`hr AS dt, dt AS hr`) would leave a backfill's table unlike the run's, and
/// is refused by both, before anything is written.
#[test]
fn a_transform_that_changes_partition_values_is_refused_by_the_run_and_the_backfill() {
    refused_by_the_run_and_the_backfill(
        "sales",
        "SELECT uuid, \"productId\", hr AS dt, dt AS hr FROM events",
        &[
            "transform `sales`: its output column `dt` is named as a partition column of the raw table but is `events.hr`",
            "select `dt` from events as it is",
        ],
    );
}

/// A `partitions` transform is recomputed over the partitions a micro-batch touched (a
/// backfill: those of its range): one whose rows of an hour draw on other hours' rows (a
/// window over every hour of a product) gave a run's table unlike a backfill's, and is
/// refused by both, before anything is written.
#[test]
fn a_partitions_transform_that_reads_across_partitions_is_refused_by_the_run_and_the_backfill() {
    refused_by_the_run_and_the_backfill(
        "hourly",
        "SELECT dt, hr, \"productId\", count(*) OVER (PARTITION BY \"productId\") AS views FROM events",
        &[
            "transform `hourly`: its window function `count` has a PARTITION BY that lacks `dt`, `hr`",
            "key it by `dt`, `hr` as well",
        ],
    );
}

/// One micro-batch far larger than a check slice (8,192 records) and a transform group
/// (65,536 rows) gives the same tables as many micro-batches of one slice each.
#[test]
fn a_micro_batch_of_many_slices_writes_what_small_micro_batches_write() {
    let dir = tempfile::tempdir().unwrap();
    let opts = GenOptions {
        events: 70_000,
        ..Default::default()
    };
    let job = generated_job(dir.path(), &opts, "[batch]\nmax_records = 1000000\n");
    let s = run_json(&job);
    // Every record in one micro-batch, and no empty one after it.
    assert_eq!(s["batches"], 1, "{s}");
    assert_eq!(uuids(dir.path()).len(), 70_000);

    // The same stream again, in micro-batches of 5,000 records.
    let big = dir.path().join("lake-one-batch");
    std::fs::rename(dir.path().join("lake"), &big).unwrap();
    let text = std::fs::read_to_string(&job).unwrap();
    std::fs::write(
        &job,
        text.replace("max_records = 1000000", "max_records = 5000"),
    )
    .unwrap();
    let s2 = run_json(&job);
    assert!(s2["batches"].as_u64().unwrap() > 10, "{s2}");
    assert_eq!(s["duplicates"], s2["duplicates"]);
    assert_eq!(s["rejected"], s2["rejected"]);

    // Which copy of a repeated event is kept depends on the order micro-batches read the
    // shards in: compare the events, not where their kept copy came from.
    let event = |row: &String| {
        row.split(' ')
            .filter(|c| {
                !["_arrival_time=", "_shard=", "_sequence="]
                    .iter()
                    .any(|p| c.starts_with(p))
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    for table in ["clickstream", "sales", "hourly"] {
        let mut a: Vec<String> = table_rows(&big.join(table)).iter().map(event).collect();
        let mut b: Vec<String> = table_rows(&dir.path().join("lake").join(table))
            .iter()
            .map(event)
            .collect();
        a.sort();
        b.sort();
        assert!(!a.is_empty(), "{table} is empty");
        assert_eq!(a.len(), b.len(), "{table}");
        if let Some((x, y)) = a.iter().zip(&b).find(|(x, y)| x != y) {
            panic!("{table} differs:\n{x}\n{y}");
        }
    }
}

/// Event times come from producers' clocks. One record whose TimeUuid is a day ahead of its
/// arrival (a producer with a wrong clock) used to move the dedup watermark a day ahead, and
/// every later event of every producer was then "late" and dropped. It is rejected now as
/// `future_event_time`; and events that are truly late are kept in the rejected table as
/// `late` rather than dropped in silence.
#[test]
fn a_wrong_clock_cannot_make_other_events_late_and_late_events_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let start = 1_764_108_000_000; // 2025-11-25T22:00:00Z
    let job = generated_job(
        dir.path(),
        &GenOptions {
            events: 400,
            repeat_rate: 0.0,
            bad_per_kind: 0,
            start_ms: start,
            ..Default::default()
        },
        "[batch]\nmax_records = 100\n",
    );
    let stream = FileStream::open(dir.path().join("stream")).unwrap();
    // A record a day ahead of its arrival, in the middle of the stream's time.
    let schema = silt_wire::Schema::parse(gen::V1).unwrap();
    let ids = silt_wire::timeuuid::TimeUuidGenerator::new([9; 6], 9);
    let arrival = start + 100_000;
    let ahead = ids.next_at_unix_millis(arrival + 24 * 3600 * 1000);
    let mut body = ahead.to_vec();
    silt_wire::encode::long(1, &mut body);
    silt_wire::encode::long(0, &mut body); // saleId: null
    let record = silt_wire::envelope(&schema.fingerprint(), &body);
    stream.append_at(0, &[&record], arrival).unwrap();
    // More events after it, in later micro-batches, and then ten from two hours before the
    // stream's first: older than the 15-minute window.
    for (seed, events, at) in [(11, 300, start + 200_000), (12, 10, start - 7_200_000)] {
        gen::generate(
            &stream,
            &GenOptions {
                events,
                seed,
                repeat_rate: 0.0,
                bad_per_kind: 0,
                start_ms: at,
                step_ms: 100,
                ..Default::default()
            },
        )
        .unwrap();
    }

    let s = run_json(&job);
    assert_eq!(s["rejected"], 1, "{s}");
    assert_eq!(s["late"], 10, "only the truly old events are late: {s}");
    assert_eq!(s["rows_written"]["clickstream"], 700, "{s}");
    let rejected = table_rows(&dir.path().join("lake/clickstream_rejected"));
    let count = |code: &str| {
        rejected
            .iter()
            .filter(|r| r.contains(&format!("reason_code={code} ")))
            .count()
    };
    assert_eq!(count("future_event_time"), 1, "{rejected:?}");
    assert_eq!(count("late"), 10, "{rejected:?}");
    assert!(
        rejected
            .iter()
            .any(|r| r.contains("is 1day after the record's arrival")),
        "{rejected:?}"
    );
}

/// Catching up on a backlog whose shards differ in volume: each micro-batch takes an equal
/// share of records from each shard, so the quiet shard's event times run far ahead of the
/// busy one's. The watermark used to follow the quiet shard, and the busy shard's next events
/// were all "late" (dropped, before late events were kept). A shard with more to read now
/// holds the watermark at its own newest event.
#[test]
fn a_busy_shard_catching_up_is_not_made_late_by_a_quiet_one() {
    let dir = tempfile::tempdir().unwrap();
    let schema = silt_wire::Schema::parse(gen::V1).unwrap();
    std::fs::create_dir_all(dir.path().join("schemas")).unwrap();
    std::fs::write(dir.path().join("schemas/v1.avsc"), gen::V1).unwrap();
    register(dir.path(), &[&dir.path().join("schemas/v1.avsc")]);
    let stream = FileStream::create(dir.path().join("stream"), 2).unwrap();
    let start = 1_764_108_000_000i64;
    // Fifty minutes of events: 3,000 on shard 0 (one a second), 300 on shard 1 (one in ten).
    for (shard, count, step_ms, node) in [(0, 3000, 1000, 1u8), (1, 300, 10_000, 2u8)] {
        let ids = silt_wire::timeuuid::TimeUuidGenerator::new([node; 6], 1);
        for i in 0..count {
            let at = start + i as i64 * step_ms;
            let mut body = ids.next_at_unix_millis(at).to_vec();
            silt_wire::encode::long(i as i64, &mut body);
            silt_wire::encode::long(0, &mut body); // saleId: null
            let record = silt_wire::envelope(&schema.fingerprint(), &body);
            stream.append_at(shard, &[&record], at + 50).unwrap();
        }
    }
    let job = write_job(
        dir.path(),
        "skewed",
        &dir.path().join("stream"),
        "[batch]\nmax_records = 200\n",
    );
    let s = run_json(&job);
    assert_eq!(s["late"], 0, "{s}");
    assert_eq!(s["rows_written"]["clickstream"], 3300, "{s}");
}

/// Parquet files per partition folder of a table (`dt=.../hr=...` -> count).
fn files_per_partition(table: &Path) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for f in parquet_files(table) {
        let dir = f.parent().unwrap().strip_prefix(table).unwrap();
        *out.entry(dir.to_string_lossy().into_owned()).or_default() += 1;
    }
    out
}

/// Small micro-batches over eight hours of events leave an hour partition a file per batch;
/// once an hour is closed (the watermark a dedup window past its end) later micro-batches
/// merge its files in their own commits. The lake holds the same rows as without compaction,
/// each closed hour one file, nothing stale on disk; and runs killed anywhere around the
/// compactions end with the same files, byte for byte.
#[test]
fn closed_hours_are_compacted_and_killed_runs_converge_to_the_same_files() {
    let opts = GenOptions {
        events: 6000,
        step_ms: 5000,
        ..Default::default()
    };
    let batch = "[batch]\nmax_records = 50\n";
    let plain = tempfile::tempdir().unwrap();
    let job = generated_job(
        plain.path(),
        &opts,
        &format!("compact_min_files = 0\n{batch}"),
    );
    let s = run_json(&job);
    assert_eq!(s["files_compacted"], 0, "{s}");
    let want = lake_rows(&plain.path().join("lake"));
    assert_eq!(want["clickstream"].len(), 6000);

    let reference = tempfile::tempdir().unwrap();
    let job = generated_job(reference.path(), &opts, batch);
    let out = run_ok(silt().args(["run", "--json"]).arg(&job));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(s["files_compacted"].as_u64().unwrap() > 50, "{s}");
    // The batches that compacted say so in their log lines, and the lines add up.
    let log = String::from_utf8_lossy(&out.stderr);
    let logged: u64 = log
        .lines()
        .filter_map(|l| {
            let at = l.find(" small files compacted")?;
            l[..at].rsplit(' ').next()?.parse::<u64>().ok()
        })
        .sum();
    assert_eq!(logged, s["files_compacted"].as_u64().unwrap(), "{log}");
    let lake = reference.path().join("lake");
    assert_eq!(lake_rows(&lake), want, "compaction changed rows");
    let before = files_per_partition(&plain.path().join("lake/clickstream"));
    let after = files_per_partition(&lake.join("clickstream"));
    assert_eq!(before.len(), 9, "{before:?}");
    // Every hour but the last ones (not closed when the stream ended) is one file now.
    let compacted: Vec<_> = after.iter().filter(|(_, &n)| n == 1).collect();
    assert!(compacted.len() >= 6, "{after:?}");
    for (hour, n) in &compacted {
        assert!(
            before[*hour] >= 10,
            "{hour}: {} files before",
            before[*hour]
        );
        let _ = n;
    }
    let sales = files_per_partition(&lake.join("sales"));
    assert!(
        sales.values().filter(|&&n| n == 1).count() >= 6,
        "{sales:?}"
    );
    // `silt query` reads the compacted commit: the same count.
    let v = query(reference.path(), "SELECT count(*) AS n FROM clickstream");
    assert_eq!(v[0]["n"], 6000, "{v}");

    // Killed at the table writes, before and after the commit, again and again until a run
    // gets to the end: the same files as the uninterrupted run.
    let dir = tempfile::tempdir().unwrap();
    let job = generated_job(dir.path(), &opts, batch);
    let points = [
        "after_table:3",
        "before_commit:2",
        "after_commit:2",
        "after_dedup:2",
    ];
    let mut kills = 0;
    for i in 0.. {
        assert!(i < 1000, "the runs never finished");
        let out = silt()
            .arg("run")
            .arg(&job)
            .env("SILT_CRASH_AT", points[i % points.len()])
            .output()
            .unwrap();
        if out.status.success() {
            break;
        }
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("crash point"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        kills += 1;
    }
    assert!(kills > 30, "only {kills} kills");
    let files = |lake: &Path| -> std::collections::BTreeMap<String, Vec<u8>> {
        parquet_files(lake)
            .into_iter()
            .map(|f| {
                (
                    f.strip_prefix(lake).unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&f).unwrap(),
                )
            })
            .collect()
    };
    let got = files(&dir.path().join("lake"));
    let want_files = files(&lake);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want_files.keys().collect::<Vec<_>>()
    );
    assert!(got == want_files, "the files' bytes differ");
}

/// A table whose files are the raw files whole (`SELECT *`, copied by the raw writer) takes
/// the raw table's merged file when an hour is compacted (the same file, linked) instead of
/// merging its own copies again; a table of some of the columns merges its own. Both keep
/// their rows.
#[test]
fn a_copied_table_takes_the_raw_tables_merged_file_when_an_hour_is_compacted() {
    use std::os::unix::fs::MetadataExt;
    let opts = GenOptions {
        events: 3000,
        step_ms: 5000,
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let job = generated_job(
        dir.path(),
        &opts,
        &format!(
            "[batch]\nmax_records = 50\n{}",
            pass_through_transforms(dir.path())
        ),
    );
    let s = run_json(&job);
    assert!(s["files_compacted"].as_u64().unwrap() > 20, "{s}");
    let lake = dir.path().join("lake");
    let rows = lake_rows(&lake);
    assert_eq!(rows["everything"], rows["clickstream"]);
    assert_eq!(rows["clickstream"].len(), 3000);
    let inode = |table: &str, hour: &str| -> Vec<u64> {
        parquet_files(&lake.join(table).join(hour))
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().ino())
            .collect()
    };
    let raw = files_per_partition(&lake.join("clickstream"));
    let compacted: Vec<&String> = raw
        .iter()
        .filter(|(_, &n)| n == 1)
        .map(|(h, _)| h)
        .collect();
    assert!(compacted.len() >= 3, "{raw:?}");
    for hour in compacted {
        assert_eq!(
            inode("everything", hour),
            inode("clickstream", hour),
            "{hour}"
        );
        let some = inode("some", hour);
        assert_eq!(some.len(), 1, "{hour}: `some` merged too");
        assert_ne!(some, inode("clickstream", hour), "{hour}");
    }
}

/// A version registered within an hour gives that hour files of two schemas (the newer has a
/// column the older lacks): compaction merges the files of each schema apart (no file gains
/// or loses a column), and the others hours whole.
#[test]
fn an_hour_whose_files_differ_in_schema_is_compacted_one_schema_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let schemas = dir.path().join("schemas");
    std::fs::create_dir_all(&schemas).unwrap();
    std::fs::write(schemas.join("v1.avsc"), gen::V1).unwrap();
    std::fs::write(schemas.join("v2.avsc"), gen::V2).unwrap();
    register(dir.path(), &[&schemas.join("v1.avsc")]);
    let stream = FileStream::create(dir.path().join("stream"), 2).unwrap();
    let start_ms = 1_764_108_000_000; // 22:00
    let part = |events: usize, start_ms: i64, seed: u64, v1_share: f64| GenOptions {
        events,
        step_ms: 3000,
        start_ms,
        seed,
        v1_share,
        repeat_rate: 0.0,
        bad_per_kind: 0,
        ..Default::default()
    };
    // 22:00-22:30 written with v1 as the reader: no `channel` column.
    gen::generate(&stream, &part(600, start_ms, 1, 1.0)).unwrap();
    let job = write_job(
        dir.path(),
        "clicks",
        &dir.path().join("stream"),
        "[batch]\nmax_records = 50\n",
    );
    run_ok(silt().arg("run").arg(&job));
    // Then v2, and events on to 01:30: 22:30 onwards has the column.
    register(dir.path(), &[&schemas.join("v2.avsc")]);
    gen::generate(&stream, &part(3600, start_ms + 1_800_000, 2, 0.0)).unwrap();
    let s = run_json(&job);
    let files = files_per_partition(&dir.path().join("lake/clickstream"));
    // A file per micro-batch and shard share (about 24) before: one per schema now.
    assert_eq!(files["dt=2025-11-25/hr=22"], 2, "{files:?} {s}");
    assert_eq!(files["dt=2025-11-25/hr=23"], 1, "{files:?} {s}");
    let mut columns: Vec<Vec<String>> =
        parquet_files(&dir.path().join("lake/clickstream/dt=2025-11-25/hr=22"))
            .iter()
            .map(|f| {
                let file = std::fs::File::open(f).unwrap();
                let reader =
                    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                        .unwrap();
                let names = reader.schema().fields().iter();
                names.map(|c| c.name().clone()).collect()
            })
            .collect();
    columns.sort_by_key(|c| c.len());
    assert!(!columns[0].contains(&"channel".to_string()), "{columns:?}");
    assert!(columns[1].contains(&"channel".to_string()), "{columns:?}");
    let v = query(
        dir.path(),
        "SELECT count(*) AS n, count(channel) AS with_channel FROM clickstream",
    );
    assert_eq!(v[0]["n"], 4200, "{v}");
    // The two are small, but not of one schema: the commit says so, and a scheduled run that
    // finds nothing new commits nothing (it made a micro-batch of no records each time to
    // look at the hour again).
    let commits = || {
        std::fs::read_dir(dir.path().join("lake/_silt/checkpoints/clicks/commits"))
            .unwrap()
            .count()
    };
    let before = commits();
    let out = run_ok(silt().arg("run").arg(&job));
    assert_eq!(
        commits(),
        before,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A lake written before silt recorded each file's schema in its commits: compaction groups
/// its files by their footers, and the files it writes say their schema.
#[test]
fn files_whose_commits_do_not_name_their_schema_are_compacted_by_their_footers() {
    let dir = tempfile::tempdir().unwrap();
    let job = raw_table_job(dir.path(), "compact_min_files = 0");
    run_ok(silt().arg("run").arg(&job));
    let table = dir.path().join("lake/clickstream");
    let before = files_per_partition(&table);
    let rows = lake_rows(&dir.path().join("lake"));
    // The commits as an older silt wrote them: no `schema` for any file.
    fn forget(v: &mut serde_json::Value) -> usize {
        match v {
            serde_json::Value::Object(m) => {
                usize::from(m.remove("schema").is_some())
                    + m.values_mut().map(forget).sum::<usize>()
            }
            serde_json::Value::Array(a) => a.iter_mut().map(forget).sum(),
            _ => 0,
        }
    }
    let commits = dir.path().join("lake/_silt/checkpoints/clicks/commits");
    let mut forgotten = 0;
    for e in std::fs::read_dir(&commits).unwrap() {
        let path = e.unwrap().path();
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        forgotten += forget(&mut v);
        std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    }
    assert!(forgotten > 0, "the commits named no schema");
    // Compaction on (its default), nothing new on the stream.
    let text = std::fs::read_to_string(&job).unwrap();
    std::fs::write(&job, text.replace("compact_min_files = 0", "")).unwrap();
    let s = run_json(&job);
    let after = files_per_partition(&table);
    let hour = "dt=2025-11-26/hr=00";
    assert!(before[hour] >= 10, "{before:?}");
    assert_eq!(after[hour], 1, "{after:?} {s}");
    assert_eq!(
        lake_rows(&dir.path().join("lake")),
        rows,
        "compaction changed rows"
    );
    // The merged file's commit names its schema.
    let last = std::fs::read_dir(&commits)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let text = std::fs::read_to_string(&last).unwrap();
    assert!(text.contains("\"schema\""), "{text}");
}

/// A job over 3,000 events five seconds apart (22:00 to 02:10) in micro-batches of 50, with
/// `lake` settings added to its `[lake]`.
fn four_hours_of_small_batches(dir: &Path, lake: &str) -> std::path::PathBuf {
    let opts = GenOptions {
        events: 3000,
        step_ms: 5000,
        ..Default::default()
    };
    generated_job(dir, &opts, &format!("{lake}\n[batch]\nmax_records = 50\n"))
}

/// Files already at the target size are not merged: merging would give as many again, and
/// every later micro-batch would take the same hour up again.
#[test]
fn hours_of_files_at_the_target_size_are_not_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let job = four_hours_of_small_batches(dir.path(), "target_file_size = \"1KB\"");
    let s = run_json(&job);
    assert_eq!(s["files_compacted"], 0, "{s}");
    assert_eq!(s["rows_written"]["clickstream"], 3000, "{s}");
}

/// A job writing the raw table alone (no transforms, no rejected records: files of one size)
/// over 3,000 events five seconds apart (22:00 to 02:10) in micro-batches of 50; `extra` goes
/// into its `[lake]` (and may start sections of its own after it).
fn raw_table_job(dir: &Path, extra: &str) -> std::path::PathBuf {
    let schemas = dir.join("schemas");
    std::fs::create_dir_all(&schemas).unwrap();
    std::fs::write(schemas.join("v1.avsc"), gen::V1).unwrap();
    register(dir, &[&schemas.join("v1.avsc")]);
    let stream = FileStream::create(dir.join("stream"), 2).unwrap();
    let opts = GenOptions {
        events: 3000,
        step_ms: 5000,
        v1_share: 1.0,
        bad_per_kind: 0,
        ..Default::default()
    };
    gen::generate(&stream, &opts).unwrap();
    let extra = format!("{extra}\n[batch]\nmax_records = 50\ninterval = \"100ms\"\n");
    write_job(dir, "clicks", &dir.join("stream"), &extra)
}

/// The smallest and the largest file of a table.
fn file_sizes(table: &Path) -> (u64, u64) {
    let sizes: Vec<u64> = parquet_files(table)
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .collect();
    (*sizes.iter().min().unwrap(), *sizes.iter().max().unwrap())
}

/// A busy hour is merged a group at a time: each group at most the target file size, at most
/// two groups a micro-batch, so what compaction adds to a micro-batch does not grow with the
/// hour's volume. The hour ends as a few files of about the target size, the rows unchanged.
#[test]
fn a_busy_hour_is_compacted_a_bounded_group_at_a_time() {
    let plain = tempfile::tempdir().unwrap();
    run_ok(
        silt()
            .arg("run")
            .arg(raw_table_job(plain.path(), "compact_min_files = 0")),
    );
    let table = |dir: &Path| dir.join("lake/clickstream");
    let (smallest, largest) = file_sizes(&table(plain.path()));
    // Room for about four files a group.
    let target = 4 * largest;
    let before = files_per_partition(&table(plain.path()));
    assert!(before["dt=2025-11-25/hr=22"] >= 14, "{before:?}");

    let dir = tempfile::tempdir().unwrap();
    let job = raw_table_job(dir.path(), &format!("target_file_size = \"{target}B\""));
    let out = run_ok(silt().args(["run", "--json"]).arg(&job));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let per_batch: Vec<u64> = log
        .lines()
        .filter_map(|l| {
            let at = l.find(" small files compacted")?;
            l[..at].rsplit(' ').next()?.parse::<u64>().ok()
        })
        .collect();
    assert_eq!(
        per_batch.iter().sum::<u64>(),
        s["files_compacted"].as_u64().unwrap(),
        "{log}"
    );
    // Two groups of files that fit in the target size together, at most: fewer than an hour
    // holds.
    let most = 2 * (target / smallest);
    assert!(
        most < before["dt=2025-11-25/hr=22"] as u64,
        "{most} {before:?}"
    );
    assert!(per_batch.len() > 4, "{per_batch:?}");
    assert!(
        per_batch.iter().all(|&n| n <= most),
        "{per_batch:?} (at most {most})"
    );
    assert_eq!(
        lake_rows(&dir.path().join("lake")),
        lake_rows(&plain.path().join("lake"))
    );
    let after = files_per_partition(&table(dir.path()));
    for hour in ["dt=2025-11-25/hr=22", "dt=2025-11-25/hr=23"] {
        assert!(
            after[hour] > 1 && after[hour] * 2 <= before[hour],
            "{hour}: {} files before, {} after",
            before[hour],
            after[hour]
        );
        let mut small = 0;
        for f in parquet_files(&table(dir.path()).join(hour)) {
            let len = std::fs::metadata(&f).unwrap().len();
            assert!(
                len <= target,
                "{}: {len} bytes, target {target}",
                f.display()
            );
            small += usize::from(len < target / 2);
        }
        // The small files the groups left over are merged too, down to one.
        assert!(
            small <= 1,
            "{hour}: {small} small files left of {}",
            after[hour]
        );
    }
}

/// An hour that closes just before the stream goes quiet still has groups to merge: a
/// following run merges them in micro-batches of no records rather than waiting for the next
/// event, and then waits without committing; a run that is not following does the same
/// before it exits.
#[test]
fn a_run_finishes_compacting_when_the_stream_is_quiet() {
    // A window of an hour: 00:00-01:00 closes once the watermark passes 02:00, ten minutes
    // of events (three micro-batches) before the stream ends; merging its files four at a
    // time takes more.
    let window = "[dedup]\nwindow = \"1h\"";
    let plain = tempfile::tempdir().unwrap();
    run_ok(silt().arg("run").arg(raw_table_job(
        plain.path(),
        &format!("compact_min_files = 0\n{window}"),
    )));
    let (_, largest) = file_sizes(&plain.path().join("lake/clickstream"));
    let hour = "dt=2025-11-26/hr=00";
    let before = files_per_partition(&plain.path().join("lake/clickstream"));
    assert!(before[hour] >= 14, "{before:?}");
    let dir = tempfile::tempdir().unwrap();
    let target = 4 * largest;
    let job = raw_table_job(
        dir.path(),
        &format!("target_file_size = \"{target}B\"\n{window}"),
    );
    // Small files of the hour, and its files.
    let files = || {
        let all = parquet_files(&dir.path().join("lake/clickstream").join(hour));
        let small = all
            .iter()
            .filter(|f| std::fs::metadata(f).is_ok_and(|m| m.len() < target / 2))
            .count();
        (small, all.len())
    };
    // A scheduled run, in a copy of the folder: done before it exits.
    let copy = tempfile::tempdir().unwrap();
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(dir.path())
        .arg(copy.path().join("d"))
        .status()
        .unwrap();
    assert!(copied.success());
    let copy_dir = copy.path().join("d");
    let text = std::fs::read_to_string(&job).unwrap();
    let copy_job = copy_dir.join("jobs/clicks.toml");
    let copy_text = text.replace(
        &dir.path().display().to_string(),
        &copy_dir.display().to_string(),
    );
    std::fs::write(&copy_job, copy_text).unwrap();
    let out = run_ok(silt().args(["run", "--json"]).arg(&copy_job));
    let log = String::from_utf8_lossy(&out.stderr);
    let left = parquet_files(&copy_dir.join("lake/clickstream").join(hour))
        .iter()
        .filter(|f| std::fs::metadata(f).unwrap().len() < target / 2)
        .count();
    assert!(left <= 1, "{hour} kept {left} small files: {log}");
    // The last micro-batch read nothing: its commit names the dedup files of the one before
    // (nothing was written for an index that did not change).
    let commits = copy_dir.join("lake/_silt/checkpoints/clicks/commits");
    let mut names: Vec<_> = std::fs::read_dir(&commits)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let read = |p: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let (before_last, last) = (read(&names[names.len() - 2]), read(&names[names.len() - 1]));
    assert_eq!(last["stats"]["records"], 0, "{last}");
    assert_eq!(last["dedup"], before_last["dedup"], "{last}");
    assert_eq!(last["dedup_deltas"], before_last["dedup_deltas"], "{last}");
    assert!(
        log.lines()
            .any(|l| l.contains(": 0 records read") && l.contains("small files compacted")),
        "{log}"
    );

    let child = spawn_following(&job);
    let mut done = false;
    for _ in 0..300 {
        // Before the hour closes it holds a dozen small files and no other (and, while the
        // run writes its first micro-batch, a single small file: not yet done).
        let (small, all) = files();
        if all > small && small <= 1 {
            done = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = interrupt(child, "TERM");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(done, "{hour} kept {:?} small files: {log}", files());
    // The micro-batches that did it read nothing.
    assert!(
        log.lines()
            .any(|l| l.contains(": 0 records read") && l.contains("small files compacted")),
        "{log}"
    );
    // Once done, the quiet run commits nothing more: the last line compacted.
    let last = log
        .lines()
        .rev()
        .find(|l| l.contains(" committed in "))
        .unwrap();
    assert!(last.contains("small files compacted"), "{log}");
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["rows_written"]["clickstream"], 3000, "{s}");
    assert!(
        lake_rows(&dir.path().join("lake")) == lake_rows(&plain.path().join("lake")),
        "compaction changed rows"
    );
}

/// Compaction is an optimisation: an hour whose files cannot be read is left as it is, with a
/// warning, and the stream goes on (the other hours are merged).
#[test]
fn an_hour_that_cannot_be_compacted_does_not_stop_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let job = four_hours_of_small_batches(dir.path(), "compact_min_files = 0");
    run_ok(silt().arg("run").arg(&job));
    let table = dir.path().join("lake/clickstream");
    let before = files_per_partition(&table);
    assert!(before["dt=2025-11-25/hr=22"] >= 10, "{before:?}");
    // One file of 22:00 goes missing; compaction is switched on; more events come.
    let lost = parquet_files(&table.join("dt=2025-11-25/hr=22"))[0].clone();
    std::fs::remove_file(&lost).unwrap();
    let text = std::fs::read_to_string(&job).unwrap();
    std::fs::write(
        &job,
        text.replace("compact_min_files = 0", "compact_min_files = 10"),
    )
    .unwrap();
    six_hundred_more_events(dir.path(), GenOptions::default().v1_share);
    let out = run_ok(silt().args(["run", "--json"]).arg(&job));
    let log = String::from_utf8_lossy(&out.stderr);
    // Said once, not at every micro-batch: the run leaves the hour for a while.
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("compaction skipped"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("dt=2025-11-25/hr=22"), "{log}");
    // Plain text in a log: no colour codes.
    assert!(!log.contains('\u{1b}'), "{log}");
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(s["files_compacted"].as_u64().unwrap() > 0, "{s}");
    let after = files_per_partition(&table);
    assert_eq!(
        after["dt=2025-11-25/hr=22"],
        before["dt=2025-11-25/hr=22"] - 1,
        "{after:?}"
    );
    assert_eq!(after["dt=2025-11-25/hr=23"], 1, "{after:?}");
}

/// A table partitioned without `dt` (here not at all) has no hour that closes: its small
/// files were never merged, one more each micro-batch for ever (a following job's folder of
/// tens of thousands of files a week). They are merged once `compact_min_files` have
/// gathered, every row once.
#[test]
fn a_table_without_hours_has_its_small_files_merged() {
    let dir = tempfile::tempdir().unwrap();
    let job = raw_table_job(dir.path(), "partition_by = []\ncompact_min_files = 5");
    let s = run_json(&job);
    assert!(s["files_compacted"].as_u64().unwrap() >= 60, "{s}");
    let table = dir.path().join("lake/clickstream");
    assert_eq!(parquet_files(&table).len(), 1);
    let rows = table_rows(&table);
    assert_eq!(rows.len(), 3000);
    // More events: their small files are merged too, the merged file with them.
    six_hundred_more_events(dir.path(), 1.0);
    run_json(&job);
    assert_eq!(parquet_files(&table).len(), 1);
    let rows = table_rows(&table);
    assert_eq!(rows.len(), 3600);
    let uuids: std::collections::HashSet<&str> =
        rows.iter().map(|r| r.split(' ').next().unwrap()).collect();
    assert_eq!(uuids.len(), 3600, "a row twice");
}

/// 600 more events in `dir`'s stream, five seconds apart from where the first 3,000 ended,
/// `v1_share` of them of v1, no bad ones.
fn six_hundred_more_events(dir: &Path, v1_share: f64) {
    let stream = FileStream::open(dir.join("stream")).unwrap();
    gen::generate(
        &stream,
        &GenOptions {
            events: 600,
            step_ms: 5000,
            seed: 99,
            v1_share,
            bad_per_kind: 0,
            start_ms: GenOptions::default().start_ms + 3000 * 5000,
            ..Default::default()
        },
    )
    .unwrap();
}
