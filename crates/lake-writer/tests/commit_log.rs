//! The commit log stores what each micro-batch changed, not every table's full file list, and
//! reads every commit back whole: from a fresh process, and after the log is pruned.

use std::collections::BTreeMap;
use std::path::Path;

use silt_lake_writer::{Commit, CommitLog, DataFile, TableState, FULL_AFTER_CHANGES};

fn file(path: String, rows: u64) -> DataFile {
    let dt = path[3..13].to_string();
    DataFile {
        path,
        partition: vec![("dt".into(), dt)],
        rows,
        bytes: rows * 10,
        sql: None,
        compacted: false,
        schema: None,
        as_written: false,
    }
}

/// The tables after `batch`: `events` gains `per_batch` files a batch (a row table), `daily`
/// holds one file per day, rewritten by each batch of that day (a `partitions` table).
fn tables_after(batch: u64, per_batch: u64) -> BTreeMap<String, TableState> {
    let mut events = vec![];
    for b in 0..=batch {
        for n in 0..per_batch {
            events.push(file(
                format!("dt=2025-11-{:02}/part-{b:010}-{n:04}.parquet", 1 + b / 24),
                100 + b,
            ));
        }
    }
    // Each day's file as the last batch of that day (up to `batch`) wrote it.
    let daily = (0..=batch / 24)
        .map(|day| {
            let last = (day * 24 + 23).min(batch);
            file(
                format!("dt=2025-11-{:02}/part-{last:010}-0000.parquet", 1 + day),
                last,
            )
        })
        .collect();
    [
        (
            "events".to_string(),
            TableState {
                partition_by: vec!["dt".into()],
                files: events,
            },
        ),
        (
            "daily".to_string(),
            TableState {
                partition_by: vec!["dt".into()],
                files: daily,
            },
        ),
    ]
    .into()
}

fn commit(batch: u64, tables: BTreeMap<String, TableState>) -> Commit {
    Commit {
        job: "j".into(),
        batch,
        committed_at_ms: 1_700_000_000_000 + batch as i64,
        source: serde_json::json!({ "positions": { "shard-000000": batch * 100 } }),
        dedup: Some(format!("{batch:010}.bin")),
        dedup_deltas: vec![],
        tables,
        stats: serde_json::json!({ "records": batch }),
    }
}

fn log(dir: &Path) -> CommitLog {
    CommitLog::new(silt_storage::Location::local(dir).unwrap())
}

fn stored(dir: &Path, batch: u64) -> serde_json::Value {
    let bytes = std::fs::read(dir.join(format!("commits/{batch:010}.json"))).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn commits_store_the_files_their_batch_changed_and_read_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let writer = log(dir.path());
    let mut full = vec![];
    for b in 0..200 {
        let c = commit(b, tables_after(b, 2));
        writer.commit_batch(&c).await.unwrap();
        // A fresh process (nothing cached) reads the commit whole.
        assert_eq!(log(dir.path()).latest().await.unwrap().as_ref(), Some(&c));
        let s = stored(dir.path(), b);
        if s.get("base").is_none() {
            assert!(
                s["tables"].is_object(),
                "a full commit holds the lists: {s}"
            );
            full.push(b);
        } else {
            assert!(s.get("tables").is_none(), "batch {b} stores changes only");
            let changes = &s["changes"];
            let n = |t: &str, k: &str| changes[t][k].as_array().map_or(0, |a| a.len());
            // Since its base: the events files added...
            let base = s["base"].as_u64().unwrap();
            assert!(base < b && full.contains(&base), "batch {b}: base {base}");
            assert_eq!(n("events", "added") as u64, 2 * (b - base), "batch {b}");
            assert_eq!(n("events", "removed"), 0);
            // The base's day file rewritten, and one file for every day begun since.
            assert_eq!(n("daily", "removed"), 1, "batch {b}");
            assert_eq!(
                n("daily", "added") as u64,
                b / 24 - base / 24 + 1,
                "batch {b}"
            );
        }
    }
    // Full lists are written again only when the changes reach half the live files: a few
    // times over 200 batches (their file grows with the table, the others' with the batch).
    assert!(
        full.len() >= 3 && full.len() <= 10,
        "full commits: {full:?}"
    );
    let size = |b: u64| {
        std::fs::metadata(dir.path().join(format!("commits/{b:010}.json")))
            .unwrap()
            .len()
    };
    assert!(size(199) * 2 < size(*full.last().unwrap()) + size(199));
    assert!(
        size(*full.last().unwrap() + 1) * 20 < size(*full.last().unwrap()),
        "the commit after a full one holds one batch's files"
    );
    // Every commit, read out of order by a fresh log, is whole.
    let reader = log(dir.path());
    for b in [199, 3, 150, 0, 77, 198] {
        let got = reader.commit(b).await.unwrap().unwrap();
        assert_eq!(got.tables, tables_after(b, 2), "batch {b}");
        assert_eq!(got.source, commit(b, BTreeMap::new()).source);
    }
}

#[tokio::test]
async fn many_changes_are_written_as_full_lists() {
    let dir = tempfile::tempdir().unwrap();
    let writer = log(dir.path());
    // A batch that adds more files than FULL_AFTER_CHANGES, to a table of many more.
    let per_batch = FULL_AFTER_CHANGES as u64 + 1;
    for b in 0..4 {
        writer
            .commit_batch(&commit(b, tables_after(b, per_batch)))
            .await
            .unwrap();
        assert!(stored(dir.path(), b).get("base").is_none(), "batch {b}");
    }
    // A table dropped cannot be said as changes either.
    let mut tables = tables_after(4, 1);
    writer
        .commit_batch(&commit(4, tables.clone()))
        .await
        .unwrap();
    assert!(stored(dir.path(), 4).get("base").is_none());
    writer
        .commit_batch(&commit(5, tables_after(5, 1)))
        .await
        .unwrap();
    tables = tables_after(6, 1);
    tables.remove("daily");
    writer
        .commit_batch(&commit(6, tables.clone()))
        .await
        .unwrap();
    assert!(stored(dir.path(), 6).get("base").is_none());
    assert_eq!(
        log(dir.path()).latest().await.unwrap().unwrap().tables,
        tables
    );
}

#[tokio::test]
async fn pruning_keeps_the_full_commit_the_kept_ones_build_on() {
    let dir = tempfile::tempdir().unwrap();
    let writer = log(dir.path());
    for b in 0..120 {
        writer
            .commit_batch(&commit(b, tables_after(b, 3)))
            .await
            .unwrap();
        writer.prune(20).await.unwrap();
    }
    let mut left: Vec<u64> = std::fs::read_dir(dir.path().join("commits"))
        .unwrap()
        .map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name[..10].parse().unwrap()
        })
        .collect();
    left.sort_unstable();
    let base = stored(dir.path(), 100)["base"]
        .as_u64()
        .expect("batch 100 stores changes");
    assert!(
        base < 100,
        "the base of the oldest kept commit is older: {base}"
    );
    let mut want: Vec<u64> = (100..120).collect();
    want.insert(0, base);
    assert_eq!(left, want, "20 commits and the full one they build on");
    // A fresh process reads every kept commit whole.
    let reader = log(dir.path());
    for b in 100..120 {
        let got = reader.commit(b).await.unwrap().unwrap();
        assert_eq!(got.tables, tables_after(b, 3), "batch {b}");
    }
}

#[tokio::test]
async fn commits_say_their_format_and_a_newer_one_is_refused_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    let c = commit(0, tables_after(0, 2));
    log(dir.path()).commit_batch(&c).await.unwrap();
    let mut s = stored(dir.path(), 0);
    assert_eq!(s["format"], silt_lake_writer::COMMIT_FORMAT);
    let path = dir.path().join("commits/0000000000.json");
    // As silt wrote it before commits said their format: read as format 1.
    s.as_object_mut().unwrap().remove("format");
    std::fs::write(&path, serde_json::to_vec(&s).unwrap()).unwrap();
    assert_eq!(log(dir.path()).latest().await.unwrap(), Some(c));
    // A format from a newer silt.
    s["format"] = serde_json::json!(silt_lake_writer::COMMIT_FORMAT + 1);
    std::fs::write(&path, serde_json::to_vec(&s).unwrap()).unwrap();
    let err = log(dir.path()).latest().await.unwrap_err().to_string();
    assert!(err.contains("written by a newer silt"), "{err}");
    let known = silt_lake_writer::COMMIT_FORMAT;
    assert!(
        err.contains(&format!(
            "commit format {}; this silt reads formats up to {known}",
            known + 1
        )),
        "{err}"
    );
}

/// A run adopts the intent it finds; one planned by a newer silt (a plan this one may misread)
/// is refused, naming the file, while intents written before they had a format are read.
#[tokio::test]
async fn intents_say_their_format_and_a_newer_one_is_refused_not_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let intent = silt_lake_writer::Intent {
        batch: 3,
        run_id: "run-a".into(),
        plan: serde_json::json!({"shards": [{"shard": "shard-000000", "count": 7}]}),
    };
    assert_eq!(
        log(dir.path()).propose(intent.clone()).await.unwrap(),
        intent
    );
    let path = dir.path().join("intents/0000000003.json");
    let mut s: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(s["format"], silt_lake_writer::INTENT_FORMAT);
    // Another run proposing batch 3 adopts the standing intent.
    let other = silt_lake_writer::Intent {
        run_id: "run-b".into(),
        ..intent.clone()
    };
    assert_eq!(log(dir.path()).propose(other).await.unwrap(), intent);
    // As silt wrote it before intents said their format.
    s.as_object_mut().unwrap().remove("format");
    std::fs::write(&path, serde_json::to_vec(&s).unwrap()).unwrap();
    assert_eq!(log(dir.path()).intent(3).await.unwrap(), Some(intent));
    // From a newer silt.
    s["format"] = serde_json::json!(silt_lake_writer::INTENT_FORMAT + 1);
    std::fs::write(&path, serde_json::to_vec(&s).unwrap()).unwrap();
    let err = log(dir.path()).intent(3).await.unwrap_err().to_string();
    assert!(err.contains("0000000003.json"), "{err}");
    assert!(
        err.contains(&format!(
            "written by a newer silt (intent format {}",
            silt_lake_writer::INTENT_FORMAT + 1
        )),
        "{err}"
    );
}

#[tokio::test]
async fn a_tagged_dedup_blob_keeps_its_own_name_and_is_pruned_like_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let writer = log(dir.path());
    // A stream run and a re-drive saving the index for the same batch.
    let plain = writer.put_dedup(3, "", b"run".to_vec()).await.unwrap();
    let tagged = writer
        .put_dedup(3, "redrive", b"redrive".to_vec())
        .await
        .unwrap();
    assert_eq!(plain, "0000000003.bin");
    assert_eq!(tagged, "0000000003-redrive.bin");
    assert_eq!(&writer.get_dedup(&plain).await.unwrap()[..], b"run");
    assert_eq!(&writer.get_dedup(&tagged).await.unwrap()[..], b"redrive");
    for b in 0..40 {
        writer.put_dedup(b, "", vec![1]).await.unwrap();
        writer
            .commit_batch(&commit(b, tables_after(b, 1)))
            .await
            .unwrap();
        writer.prune(20).await.unwrap();
    }
    let mut left: Vec<String> = std::fs::read_dir(dir.path().join("dedup"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    let want: Vec<String> = (20..40).map(|b| format!("{b:010}.bin")).collect();
    assert_eq!(left, want, "the tagged blob of batch 3 went with its batch");
}

/// A command's lease: held while it lives (a second taker is refused, naming the holder;
/// others' clean-ups see the tag as held), given up on release; a lease whose holder stopped
/// renewing it, or whose holder on this machine has ended, has lapsed and is taken over.
#[tokio::test]
async fn a_lease_is_held_until_released_or_lapsed() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path());
    let lease = log.take_lease("backfill").await.unwrap();
    let e = log.take_lease("backfill").await.unwrap_err().to_string();
    assert!(
        e.contains("another `backfill` of this job is at work"),
        "{e}"
    );
    assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
    assert_eq!(log.held_tags("").await.unwrap(), vec!["backfill"]);
    assert!(log.held_tags("backfill").await.unwrap().is_empty());
    // Another tag is another lease.
    let redrive = log.take_lease("redrive").await.unwrap();
    assert_eq!(
        log.held_tags("").await.unwrap(),
        vec!["backfill", "redrive"]
    );
    lease.release().await;
    redrive.release().await;
    assert!(log.held_tags("").await.unwrap().is_empty());

    let path = dir.path().join("writers/backfill.lease");
    let now = chrono::Utc::now().timestamp_millis();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let write = |host: &str, pid: u32, renewed_at_ms: i64| {
        std::fs::write(
            &path,
            serde_json::json!({"host": host, "pid": pid, "renewed_at_ms": renewed_at_ms})
                .to_string(),
        )
        .unwrap()
    };
    // Renewed 10 s ago on another machine: held.
    write("elsewhere", 1, now - 10_000);
    assert_eq!(log.held_tags("").await.unwrap(), vec!["backfill"]);
    assert!(log.take_lease("backfill").await.is_err());
    // Not renewed for over a minute: lapsed.
    write("elsewhere", 1, now - 61_000);
    assert!(log.held_tags("").await.unwrap().is_empty());
    // Held by a process of this machine that has ended: lapsed at once.
    let mut ended = std::process::Command::new("true").spawn().unwrap();
    let pid = ended.id();
    ended.wait().unwrap();
    write(host.trim(), pid, now);
    assert!(log.held_tags("").await.unwrap().is_empty());
    write(host.trim(), std::process::id(), now);
    assert_eq!(log.held_tags("").await.unwrap(), vec!["backfill"]);
    // A lapsed lease is taken over.
    write("elsewhere", 1, now - 61_000);
    let lease = log.take_lease("backfill").await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(body["pid"], std::process::id(), "{body}");
    lease.release().await;
    assert!(!path.exists());
}

/// A table is one job's: a second job entering it in the catalog is told whose it is once the
/// first job's commits hold it (before, or with the first job's log gone, it may take it
/// over), and of two jobs entering a new table at once the second is told too (the entry is
/// created with a conditional put). A job's own entry is brought up to date.
#[tokio::test]
async fn a_table_in_the_catalog_is_one_jobs() {
    use silt_lake_writer::{other_writer, register_table, table_entry, Error, TableEntry};
    let dir = tempfile::tempdir().unwrap();
    let lake = silt_storage::Location::local(dir.path()).unwrap();
    let entry = |job: &str| {
        let log = lake.join(&format!("_silt/checkpoints/{job}"));
        TableEntry::new(&lake, "clicks", job, &log)
    };
    register_table(&lake, &entry("first")).await.unwrap();
    // The first job has committed nothing: another may take the table over (and give it back).
    assert_eq!(other_writer(&lake, &entry("second")).await.unwrap(), None);
    register_table(&lake, &entry("second")).await.unwrap();
    register_table(&lake, &entry("first")).await.unwrap();
    let first_log = CommitLog::new(lake.join("_silt/checkpoints/first"));
    let holding = [("clicks".to_string(), TableState::default())].into();
    first_log.commit_batch(&commit(0, holding)).await.unwrap();
    assert_eq!(
        other_writer(&lake, &entry("second")).await.unwrap(),
        Some(entry("first"))
    );
    match register_table(&lake, &entry("second")).await {
        Err(Error::Taken { table, job, .. }) => assert_eq!((&*table, &*job), ("clicks", "first")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        table_entry(&lake, "clicks").await.unwrap(),
        Some(entry("first"))
    );
    // Its own job brings the entry up to date.
    assert_eq!(other_writer(&lake, &entry("first")).await.unwrap(), None);
    let typed = entry("first").of_rejected();
    register_table(&lake, &typed).await.unwrap();
    assert_eq!(table_entry(&lake, "clicks").await.unwrap(), Some(typed));
}
