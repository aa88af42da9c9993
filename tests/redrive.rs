//! `silt redrive`: rejected records brought back into the lake once what stopped them is
//! mended, deduplicated against the lake, in one commit.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// A job over the test stream (two shards, v1 then v2 events, repeats, 18 bad records) with a
/// `partitions` transform (`hourly`) and a `rows` one (`sales`); `schemas` registered first.
fn testdata_job(dir: &Path, schemas: &[&str]) -> PathBuf {
    register_testdata(dir, schemas);
    let extra = with_transforms(dir, "[batch]\nmax_records = 150\n");
    write_job(dir, "clicks", &testdata().join("stream"), &extra)
}

/// Registers the test stream's schemas named (`v1`, `v2`).
fn register_testdata(dir: &Path, schemas: &[&str]) {
    let files: Vec<PathBuf> = schemas
        .iter()
        .map(|s| testdata().join(format!("schemas/{s}.avsc")))
        .collect();
    register(dir, &files.iter().map(|p| p.as_path()).collect::<Vec<_>>());
}

/// Records with their arrival times.
type Records = Vec<(Vec<u8>, i64)>;

/// A job over a one-shard copy of the test stream (its v1 records, then the rest), run once
/// with `schemas` registered: the stream (to append to), the job, and the two parts.
fn copied_stream_job(
    dir: &Path,
    schemas: &[&str],
) -> (silt_ingest::FileStream, PathBuf, [Records; 2]) {
    register_testdata(dir, schemas);
    let stream = silt_ingest::FileStream::create(dir.join("stream"), 1).unwrap();
    let parts = testdata_split_at_v2();
    append_records(&stream, &parts[0]);
    append_records(&stream, &parts[1]);
    let job = write_job(dir, "clicks", &dir.join("stream"), "");
    run_json(&job);
    (stream, job, parts)
}

/// The test stream's 400 events are each in the raw table once, for silt and for a directory
/// reader alike.
fn every_event_once(dir: &Path, raw: &Path) {
    assert_eq!(
        query(
            dir,
            "SELECT count(DISTINCT uuid) AS d, count(*) AS n FROM clickstream"
        ),
        serde_json::json!([{"d": 400, "n": 400}])
    );
    assert_eq!(
        directory_uuids(raw),
        (400, 400),
        "a directory reader sees each event once"
    );
}

/// The `uuid`s of every Parquet file below a table's folder, as a directory reader sees them:
/// (how many, how many distinct).
fn directory_uuids(table: &Path) -> (usize, usize) {
    let mut ids = Vec::new();
    for f in parquet_files(table) {
        for b in read_parquet(&f) {
            let col = b.column(b.schema().index_of("uuid").unwrap()).clone();
            let col = col
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap();
            ids.extend(col.iter().flatten().map(str::to_string));
        }
    }
    ids.sort();
    let n = ids.len();
    ids.dedup();
    (n, ids.len())
}

fn redrive(job: &Path, args: &[&str]) -> serde_json::Value {
    let out = run_ok(silt().args(["redrive", "--json"]).args(args).arg(job));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What analysts see of the lake: the events (their fields, not which of two copies was
/// kept), the transforms' tables and the rejected records.
fn seen(dir: &Path) -> Vec<serde_json::Value> {
    [
        "SELECT uuid, \"productId\", \"saleId\", channel, _event_time, _fingerprint, dt, hr FROM clickstream ORDER BY uuid",
        "SELECT * FROM hourly ORDER BY dt, hr, \"productId\"",
        "SELECT * FROM sales ORDER BY uuid",
        "SELECT reason_code, _shard, _sequence, raw FROM clickstream_rejected ORDER BY _shard, _sequence",
    ]
    .iter()
    .map(|sql| query(dir, sql))
    .collect()
}

/// Every table of the lake whole, to tell that nothing changed.
fn whole(dir: &Path) -> Vec<serde_json::Value> {
    [
        "SELECT * FROM clickstream ORDER BY uuid",
        "SELECT * FROM hourly ORDER BY dt, hr, \"productId\"",
        "SELECT * FROM sales ORDER BY uuid",
        "SELECT * FROM clickstream_rejected ORDER BY _shard, _sequence",
    ]
    .iter()
    .map(|sql| query(dir, sql))
    .collect()
}

#[test]
fn records_of_a_schema_registered_late_come_in_as_if_it_had_been_registered_all_along() {
    // The lake as it should be: both versions registered before the run.
    let all_along = tempfile::tempdir().unwrap();
    let job = testdata_job(all_along.path(), &["v1", "v2"]);
    run_json(&job);
    let expected = seen(all_along.path());

    // v2 registered only after its events arrived: the run keeps them as rejected.
    let late = tempfile::tempdir().unwrap();
    let job = testdata_job(late.path(), &["v1"]);
    let run = run_json(&job);
    let unknown = query(
        late.path(),
        "SELECT count(*) AS n FROM clickstream_rejected WHERE reason_code = 'unknown_fingerprint'",
    )[0]["n"]
        .as_u64()
        .unwrap();
    assert_eq!(run["rejected"], unknown + 15, "{run}");
    assert!(unknown > 100, "{run}");
    let before = whole(late.path());

    // Nothing passes yet: nothing moves, nothing is committed.
    let s = redrive(&job, &[]);
    assert_eq!(s["looked_at"], unknown, "{s}");
    assert_eq!(s["redriven"], 0, "{s}");
    assert_eq!(s["still_rejected"]["unknown_fingerprint"], unknown, "{s}");
    assert!(s["batch"].is_null(), "{s}");
    assert_eq!(whole(late.path()), before);

    register(late.path(), &[&testdata().join("schemas/v2.avsc")]);
    // A dry run tells, and leaves the lake as it is.
    let dry = redrive(&job, &["--dry-run"]);
    assert!(dry["batch"].is_null(), "{dry}");
    assert_eq!(whole(late.path()), before);

    let s = redrive(&job, &[]);
    assert_eq!(s, {
        let mut d = dry.clone();
        d["dry_run"] = false.into();
        d["batch"] = s["batch"].clone();
        d["rows"] = s["rows"].clone();
        d["files_written"] = s["files_written"].clone();
        d["files_replaced"] = s["files_replaced"].clone();
        d["elapsed_s"] = s["elapsed_s"].clone();
        d
    });
    assert!(s["batch"].is_u64(), "{s}");
    // The three records of a fingerprint nobody registered stay; the repeats among the v2
    // records are brought in once.
    assert_eq!(s["still_rejected"]["unknown_fingerprint"], 3, "{s}");
    let redriven = s["redriven"].as_u64().unwrap();
    assert_eq!(
        redriven + s["duplicates"].as_u64().unwrap() + 3,
        unknown,
        "{s}"
    );
    assert_eq!(s["rows"]["clickstream"], redriven, "{s}");
    assert_eq!(
        query(late.path(), "SELECT count(*) AS n FROM clickstream")[0]["n"],
        400
    );
    let after = seen(late.path());
    let after_whole = whole(late.path());
    for (i, table) in ["clickstream", "hourly", "sales", "clickstream_rejected"]
        .iter()
        .enumerate()
    {
        assert!(
            after[i] == expected[i],
            "{table} differs from the lake of a run with v2 registered all along"
        );
    }

    // Again: only the three unknown ones are left, and they stay.
    let again = redrive(&job, &[]);
    assert_eq!(again["looked_at"], 3, "{again}");
    assert!(again["batch"].is_null(), "{again}");
    assert_eq!(whole(late.path()), after_whole);
    // The stream job goes on from where it was, and takes nothing again.
    let rerun = run_json(&job);
    assert_eq!(rerun["records_read"], 0, "{rerun}");
    assert_eq!(whole(late.path()), after_whole);
}

#[test]
fn late_records_already_in_the_lake_leave_the_rejected_table_without_being_written_twice() {
    let dir = tempfile::tempdir().unwrap();
    let data = testdata();
    let (stream, job, [v1, rest]) = copied_stream_job(dir.path(), &["v1", "v2"]);
    let events = || query(dir.path(), "SELECT * FROM clickstream ORDER BY uuid");
    let lake = events();
    assert_eq!(lake.as_array().unwrap().len(), 400);

    // A producer puts the first 40 events again hours later: too old for the dedup window,
    // so the job keeps them as late. One more is an event the lake has never seen.
    let newest = v1.iter().chain(&rest).map(|(_, a)| *a).max().unwrap();
    let mut again: Vec<(Vec<u8>, i64)> = v1[..40]
        .iter()
        .map(|(p, _)| (p.clone(), newest + 1000))
        .collect();
    let uuid = silt_wire::timeuuid::TimeUuidGenerator::new([9; 6], 1)
        .next_at_unix_millis(1_764_108_000_000 + 30 * 60_000); // 2025-11-25T22:30Z
    let mut body = Vec::new();
    silt::gen::body(&uuid, 7, None, None, false, &mut body);
    let mut record = Vec::new();
    let v1_fp =
        silt_wire::Schema::parse(&std::fs::read_to_string(data.join("schemas/v1.avsc")).unwrap())
            .unwrap()
            .fingerprint();
    silt_wire::write_envelope(&v1_fp, &body, &mut record);
    again.push((record, newest + 1000));
    append_records(&stream, &again);
    let run = run_json(&job);
    assert_eq!(run["late"], 41, "{run}");
    assert_eq!(events(), lake);

    // Hours they did not arrive in hold none of them.
    let before = redrive(
        &job,
        &[
            "--reason",
            "late",
            "--from",
            "2025-11-25",
            "--to",
            "2025-11-25",
        ],
    );
    assert_eq!(before["looked_at"], 0, "{before}");
    assert!(before["batch"].is_null(), "{before}");
    // Re-driving them writes only the one the lake lacks, into its event hour.
    let s = redrive(&job, &["--reason", "late"]);
    assert_eq!(s["looked_at"], 41, "{s}");
    assert_eq!(s["redriven"], 1, "{s}");
    assert_eq!(s["duplicates"], 40, "{s}");
    let now = events();
    assert_eq!(now.as_array().unwrap().len(), 401);
    let id = silt_wire::timeuuid::to_string(&uuid);
    let row = query(
        dir.path(),
        &format!("SELECT dt, hr, \"productId\" FROM clickstream WHERE uuid = '{id}'"),
    );
    assert_eq!(
        row,
        serde_json::json!([{"dt": "2025-11-25", "hr": "22", "productId": 7}])
    );
    let late_left = query(
        dir.path(),
        "SELECT count(*) AS n FROM clickstream_rejected WHERE reason_code = 'late'",
    );
    assert_eq!(
        late_left[0]["n"], 0,
        "the late records left the rejected table"
    );
    // The bad records of the stream stay.
    assert_eq!(
        query(dir.path(), "SELECT count(*) AS n FROM clickstream_rejected")[0]["n"],
        18
    );
    // Only the reasons asked for are looked at.
    let s = redrive(&job, &["--reason", "bad_body"]);
    assert_eq!(s["looked_at"], 3, "{s}");
    assert_eq!(s["still_rejected"]["bad_body"], 3, "{s}");
    assert!(s["batch"].is_null(), "{s}");
    // Nothing left of a reason: the summary says what the rejected table holds.
    let out = run_ok(silt().args(["redrive", "--reason", "late"]).arg(&job));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("0 rejected record(s) (late) looked at")
            && text.contains("the rejected table holds (in the hours asked for): bad_body 3, bad_header 3, too_short 6, trailing_bytes 3, unknown_fingerprint 3"),
        "{text}"
    );
}

#[test]
fn an_unknown_reason_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let job = testdata_job(dir.path(), &["v1", "v2"]);
    let out = silt()
        .args(["redrive", "--reason", "unknown"])
        .arg(&job)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`unknown` is not a reason code") && err.contains("unknown_fingerprint"),
        "{err}"
    );
}

/// The test stream run with v1 only (v2's events rejected), v2 registered, and a producer's
/// retry of the last v2 event put on the stream after it (new to the stream run): the job.
fn v1_run_then_a_retry_of_the_last_v2_event(dir: &Path) -> PathBuf {
    let (stream, job, [_, rest]) = copied_stream_job(dir, &["v1"]);
    register_testdata(dir, &["v2"]);
    let v2 = silt_wire::Schema::parse(
        &std::fs::read_to_string(testdata().join("schemas/v2.avsc")).unwrap(),
    )
    .unwrap()
    .fingerprint();
    let last = rest
        .iter()
        .rfind(|(p, _)| p.len() > 33 && p[0] == 0x81 && p[1..33] == v2.0)
        .unwrap()
        .clone();
    append_records(&stream, &[(last.0, last.1 + 1000)]);
    job
}

/// A re-drive and a stream run of the job racing to commit the same micro-batch: neither
/// writes over the other's files (the re-drive's carry a tag), the run that loses starts
/// again after the re-drive's commit, and the lake ends exact.
#[test]
fn a_stream_run_that_loses_its_micro_batch_to_a_redrive_starts_again_after_it() {
    let dir = tempfile::tempdir().unwrap();
    // A producer's retry of the last v2 event: new to the stream run, in the hour the
    // re-drive writes to as well.
    let job = v1_run_then_a_retry_of_the_last_v2_event(dir.path());

    // The re-drive writes its files, then waits before its commit; the stream run writes its
    // micro-batch meanwhile (same number, same hours) and commits after it.
    let raw = dir.path().join("lake/clickstream");
    // The run, having lost its micro-batch to the re-drive, starts again after it: it drops
    // the retry (the re-drive's ids are in the dedup index) and clears the files it wrote
    // first: every event once, for silt and for a directory reader alike.
    let raced = race_a_run(
        silt().args(["redrive", "--json"]).arg(&job),
        &job,
        &raw,
        "-redrive.parquet",
        1,
    );
    assert_eq!(raced["duplicates"], 1, "{raced}");
    assert_eq!(run_json(&job)["records_read"], 0);
    every_event_once(dir.path(), &raw);
}

/// The other way round: the stream run commits the micro-batch the re-drive was to be while
/// the re-drive waits to commit. The re-drive does its work again after the run's commit:
/// the run's retry of an event the re-drive brings in is then already in the lake, and the
/// lake ends exact.
#[test]
fn a_redrive_that_loses_its_micro_batch_to_a_stream_run_redrives_again_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let job = v1_run_then_a_retry_of_the_last_v2_event(dir.path());
    let raw = dir.path().join("lake/clickstream");
    let (run, redriven, stderr) = lose_a_race(
        silt().args(["redrive", "--json"]).arg(&job),
        &job,
        &raw,
        "part-0000000001-0000-redrive",
    );
    assert_eq!(run["last_batch"], 1, "{run}");
    assert_eq!(run["rows_written"]["clickstream"], 1, "{run}");
    assert!(
        stderr.contains("re-driving the records again after it"),
        "{stderr}"
    );
    // The run's copy of the retried event came first: the re-drive finds it in the lake and
    // brings in the other 199 v2 events.
    assert_eq!(redriven["batch"], 2, "{redriven}");
    assert_eq!(redriven["redriven"], 199, "{redriven}");
    every_event_once(dir.path(), &raw);
}

/// A re-drive killed before its commit, a stream run committing the micro-batch number it
/// had, and the re-drive run again: what the killed one wrote is gone before the new one
/// writes, so a directory reader sees each event once.
#[test]
fn a_redrive_killed_before_its_commit_and_run_again_leaves_no_row_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (stream, job, [_, rest]) = copied_stream_job(dir.path(), &["v1"]);
    register_testdata(dir.path(), &["v2"]);
    let killed = silt()
        .args(["redrive"])
        .arg(&job)
        .env("SILT_CRASH_AT", "before_commit:1")
        .output()
        .unwrap();
    assert!(!killed.status.success());
    let raw = dir.path().join("lake/clickstream");
    assert!(
        all_files(&raw)
            .iter()
            .any(|f| f.to_string_lossy().ends_with("-redrive.parquet")),
        "the killed re-drive wrote its files"
    );
    // A stream run commits the micro-batch number the killed re-drive had.
    append_records(&stream, &rest[rest.len() - 1..]);
    let run = run_json(&job);
    assert_eq!(run["last_batch"], 1, "{run}");

    let s = redrive(&job, &[]);
    assert_eq!(s["batch"], 2, "{s}");
    every_event_once(dir.path(), &raw);
}

/// Re-driven events newer than the stream job's watermark do not move it: the job's next
/// event, a second after the newest it had decoded, is on time, not late.
#[test]
fn a_redrive_leaves_the_watermark_where_the_stream_job_had_it() {
    let dir = tempfile::tempdir().unwrap();
    let (stream, job, [v1, _]) = copied_stream_job(dir.path(), &["v1"]);
    register_testdata(dir.path(), &["v2"]);
    let s = redrive(&job, &[]);
    assert!(s["redriven"].as_u64().unwrap() > 100, "{s}");

    let newest_v1 = v1
        .iter()
        .filter(|(p, _)| p.len() >= 49)
        .filter_map(|(p, _)| silt_wire::timeuuid::unix_millis(p[33..49].try_into().unwrap()))
        .max()
        .unwrap();
    let uuid = silt_wire::timeuuid::TimeUuidGenerator::new([9; 6], 1)
        .next_at_unix_millis(newest_v1 + 1000);
    let mut body = Vec::new();
    silt::gen::body(&uuid, 7, None, None, false, &mut body);
    let v1_fp = silt_wire::Schema::parse(
        &std::fs::read_to_string(testdata().join("schemas/v1.avsc")).unwrap(),
    )
    .unwrap()
    .fingerprint();
    let mut record = Vec::new();
    silt_wire::write_envelope(&v1_fp, &body, &mut record);
    append_records(&stream, &[(record, newest_v1 + 2000)]);
    let run = run_json(&job);
    assert_eq!(run["late"], 0, "{run}");
    assert_eq!(run["rows_written"]["clickstream"], 1, "{run}");
}

#[test]
fn a_redrive_writes_transforms_passing_raw_columns_through_as_copies() {
    let dir = tempfile::tempdir().unwrap();
    register_testdata(dir.path(), &["v1"]);
    let extra = format!(
        "[batch]\nmax_records = 150\n{}",
        pass_through_transforms(dir.path())
    );
    let job = write_job(dir.path(), "clicks", &testdata().join("stream"), &extra);
    run_json(&job);
    register(dir.path(), &[&testdata().join("schemas/v2.avsc")]);
    let s = redrive(&job, &[]);
    let batch = s["batch"].as_u64().unwrap();
    let redriven = s["redriven"].as_u64().unwrap();
    assert!(redriven > 100, "{s}");
    for t in ["everything", "some", "filtered", "renamed", "dated"] {
        assert_eq!(s["rows"][t], redriven, "{t}: {s}");
    }

    // The re-drive's files of `everything` are its raw files (on a local disk, hard links to
    // them); every table holds each event.
    let lake = dir.path().join("lake");
    let name = format!("part-{batch:010}-");
    let files = |t: &str| -> Vec<(PathBuf, Vec<u8>)> {
        parquet_files(&lake.join(t))
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(&name))
            .map(|p| {
                let bytes = std::fs::read(&p).unwrap();
                (p.strip_prefix(lake.join(t)).unwrap().to_path_buf(), bytes)
            })
            .collect()
    };
    let raw = files("clickstream");
    assert!(!raw.is_empty());
    assert!(files("everything") == raw);
    for (rel, _) in &raw {
        let (a, b) = (lake.join("everything"), lake.join("clickstream"));
        assert!(same_file(&a.join(rel), &b.join(rel)), "{}", rel.display());
    }
    let rows = lake_rows(&lake);
    assert_eq!(rows["everything"], rows["clickstream"]);
    assert_eq!(rows["some"], rows["filtered"]);
    assert_eq!(rows["some"].len(), 400);
}

/// A `rows` transform (`products`) for a job's file, its SQL written into `dir/sql`.
fn products_transform(dir: &Path) -> String {
    transforms(
        dir,
        &[(
            "products",
            "SELECT uuid, \"productId\", dt, hr FROM events",
            "rows",
        )],
    )
}

/// A transform added to the job before a re-drive gets its table filled from every raw hour
/// first, as a run would fill it: the re-drive's rows are not all it holds.
#[test]
fn a_redrive_fills_the_table_of_a_transform_new_to_the_job_first() {
    let all_along = tempfile::tempdir().unwrap();
    let job = testdata_job(all_along.path(), &["v1", "v2"]);
    let text = std::fs::read_to_string(&job).unwrap() + &products_transform(all_along.path());
    std::fs::write(&job, text).unwrap();
    run_json(&job);
    let products = "SELECT uuid, \"productId\", dt, hr FROM products ORDER BY uuid";
    let expected = query(all_along.path(), products);
    assert_eq!(expected.as_array().unwrap().len(), 400);

    let late = tempfile::tempdir().unwrap();
    let job = testdata_job(late.path(), &["v1"]);
    let last = run_json(&job)["last_batch"].as_u64().unwrap();
    let text = std::fs::read_to_string(&job).unwrap() + &products_transform(late.path());
    std::fs::write(&job, text).unwrap();
    register(late.path(), &[&testdata().join("schemas/v2.avsc")]);
    // A dry run fills nothing.
    let dry = redrive(&job, &["--dry-run"]);
    assert!(dry["filled"].is_null(), "{dry}");
    assert!(try_query(late.path(), products).is_none());

    let s = redrive(&job, &[]);
    assert_eq!(
        s["filled"]["transforms"],
        serde_json::json!(["products"]),
        "{s}"
    );
    assert_eq!(s["filled"]["batch"], last + 1, "{s}");
    assert_eq!(s["batch"], last + 2, "{s}");
    assert!(s["redriven"].as_u64().unwrap() > 100, "{s}");
    assert_eq!(query(late.path(), products), expected);
}

#[test]
fn a_rejected_table_that_a_redrive_empties_reads_as_empty() {
    let dir = tempfile::tempdir().unwrap();
    register_testdata(dir.path(), &["v1"]);
    let v2 = silt_wire::Schema::parse(
        &std::fs::read_to_string(testdata().join("schemas/v2.avsc")).unwrap(),
    )
    .unwrap()
    .fingerprint();
    // Five events of v2, not yet registered: the run keeps them all as rejected.
    let stream = silt_ingest::FileStream::create(dir.path().join("stream"), 1).unwrap();
    let ids = silt_wire::timeuuid::TimeUuidGenerator::new([7; 6], 1);
    let records: Vec<(Vec<u8>, i64)> = (0..5)
        .map(|i| {
            let at = 1_764_108_000_000 + i * 1000; // 2025-11-25T22:00Z
            let mut body = Vec::new();
            silt::gen::body(
                &ids.next_at_unix_millis(at),
                i,
                None,
                Some("web"),
                true,
                &mut body,
            );
            let mut record = Vec::new();
            silt_wire::write_envelope(&v2, &body, &mut record);
            (record, at)
        })
        .collect();
    append_records(&stream, &records);
    let job = write_job(dir.path(), "clicks", &dir.path().join("stream"), "");
    assert_eq!(run_json(&job)["rejected"], 5);
    let rejected = "SELECT count(*) AS n FROM clickstream_rejected";
    assert_eq!(query(dir.path(), rejected), serde_json::json!([{"n": 5}]));

    register_testdata(dir.path(), &["v2"]);
    let s = redrive(&job, &[]);
    assert_eq!(s["redriven"], 5, "{s}");
    // No file of the rejected table is left; it is still a table, of no rows (it was "no
    // table" before), its columns as ever.
    assert_eq!(query(dir.path(), rejected), serde_json::json!([{"n": 0}]));
    assert_eq!(
        query(
            dir.path(),
            "SELECT count(reason) AS n FROM clickstream_rejected WHERE dt = '2025-11-25'"
        ),
        serde_json::json!([{"n": 0}])
    );
    assert_eq!(
        query(dir.path(), "SELECT count(*) AS n FROM clickstream"),
        serde_json::json!([{"n": 5}])
    );
}

/// A re-drive at work while a run of the job compacts the rejected table's closed hours it is
/// reading (the run's commit deletes the small files): it failed with "Object at location ...
/// not found". It is beaten by that commit as by a commit of its micro-batch, and re-drives
/// again after it.
#[test]
fn a_redrive_whose_files_a_compaction_deletes_redrives_again_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let job = small_files_then_compaction(dir.path(), 25);
    let rejected = dir.path().join("lake/clickstream_rejected");
    let before = parquet_files(&rejected).len();
    let (waiting, signal) = paused_at(
        silt()
            .args(["redrive", "--json", "--reason", "all"])
            .arg(&job),
        "before_redrive",
    );
    let s = run_json(&job);
    assert!(s["files_compacted"].as_u64().unwrap() > 0, "{s}");
    assert!(
        parquet_files(&rejected).len() < before,
        "nothing of the rejected table merged"
    );
    let (stdout, stderr) = resume(waiting, signal);
    assert!(
        stderr.contains("re-driving the records again after it"),
        "{stderr}"
    );
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(summary["looked_at"].as_u64().unwrap() > 0, "{summary}");
    let n = query(
        dir.path(),
        "SELECT count(*) AS n, count(DISTINCT uuid) AS d FROM clickstream",
    );
    assert_eq!(n[0]["n"], n[0]["d"], "a row twice: {n}");
}
