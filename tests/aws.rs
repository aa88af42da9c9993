//! Kinesis and S3 through the real AWS SDK and object_store, against the stand-ins that
//! `scripts/test.sh` starts (kinesalite, moto). Skipped without them unless
//! `SILT_REQUIRE_STAND_INS` is set.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use silt_kinesis::testing::{endpoint, unique, FaultProxy};

/// Whether the S3 stand-in runs; `SILT_REQUIRE_STAND_INS` makes its absence a failure.
fn s3_ready() -> bool {
    silt_storage::testing::s3_stand_in()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

/// The paths of the objects below a table of an S3 lake, as listed in the bucket.
fn s3_files(lake: &silt_storage::Location, table: &str) -> Vec<String> {
    runtime().block_on(async {
        use futures::TryStreamExt;
        let table = lake.join(table);
        table
            .store
            .list(Some(&table.prefix))
            .map_ok(|o| o.location.to_string())
            .try_collect()
            .await
            .unwrap()
    })
}

/// The generated job of the file-stream tests (3,000 events five seconds apart from 22:00 on
/// the 25th, micro-batches of `max_records`, two transforms) with its lake in the S3
/// stand-in, under a fresh prefix named after `name`. Returns the job file and the lake's URL.
fn generated_s3_job(dir: &Path, max_records: usize, name: &str) -> (std::path::PathBuf, String) {
    let opts = silt::gen::GenOptions {
        events: 3000,
        step_ms: 5000,
        ..Default::default()
    };
    let job = generated_job(
        dir,
        &opts,
        &format!("[batch]\nmax_records = {max_records}\n"),
    );
    let lake_url = format!("s3://silt-test/{}/lake", unique(name));
    let text = std::fs::read_to_string(&job).unwrap();
    let local = format!("file://{}", dir.join("lake").display());
    std::fs::write(&job, text.replace(&local, &lake_url)).unwrap();
    (job, lake_url)
}

fn kinesis_job(
    dir: &Path,
    name: &str,
    stream: &str,
    endpoint: &str,
    lake: &str,
    extra: &str,
) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("jobs")).unwrap();
    let path = dir.join(format!("jobs/{name}.toml"));
    // An empty endpoint leaves the key out: the job's client then takes the environment's.
    let endpoint = if endpoint.is_empty() {
        String::new()
    } else {
        format!("endpoint = \"{endpoint}\"\n")
    };
    std::fs::write(
        &path,
        format!(
            r#"name = "{name}"

[source]
type = "kinesis"
stream = "{stream}"
{endpoint}region = "us-east-1"

[schema]
registry = "file://{registry}"
subject = "com.gilt.clickstream.v1.ProductPageViewedEvent"

[lake]
location = "{lake}"
table = "clickstream"
{extra}
"#,
            registry = dir.join("registry").display(),
        ),
    )
    .unwrap();
    path
}

fn produce(dir: &Path, endpoint: &str, stream: &str, shards: i32, source: &str) -> String {
    let mut cmd = silt();
    cmd.args([
        "produce",
        "--stream",
        stream,
        "--endpoint",
        endpoint,
        "--create-shards",
        &shards.to_string(),
    ])
    .arg("--registry")
    .arg(format!("file://{}", dir.join("registry").display()));
    if let Some(n) = source.strip_prefix("events:") {
        cmd.args(["--events", n]);
    } else {
        cmd.args(["--from-file-stream", source]);
    }
    String::from_utf8_lossy(&run_ok(&mut cmd).stdout).into_owned()
}

fn register_clickstream(dir: &Path) {
    let data = testdata();
    register(
        dir,
        &[&data.join("schemas/v1.avsc"), &data.join("schemas/v2.avsc")],
    );
}

fn uuid_counts(rows: &[String]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in rows {
        let id = r
            .split(' ')
            .find(|c| c.starts_with("uuid="))
            .unwrap()
            .to_string();
        *m.entry(id).or_default() += 1;
    }
    m
}

#[test]
fn testdata_through_a_four_shard_kinesis_stream_into_an_s3_lake() {
    let Some(e) = endpoint() else { return };
    assert!(s3_ready(), "the Kinesis stand-in runs but not the S3 one");
    let dir = tempfile::tempdir().unwrap();
    register_clickstream(dir.path());
    let stream = unique("small");
    let data = testdata();
    let out = produce(
        dir.path(),
        &e,
        &stream,
        4,
        data.join("stream").to_str().unwrap(),
    );
    assert!(out.contains("put 438 records"), "{out}");
    let lake_url = format!("s3://silt-test/{}/lake", unique("lake"));
    // The S3 endpoint set per job ([storage]), not only through the environment.
    let storage = format!(
        "[storage]\nendpoint = \"{}\"\nregion = \"us-east-1\"\n",
        std::env::var("SILT_S3_ENDPOINT").unwrap()
    );
    // The Kinesis endpoint from SILT_KINESIS_ENDPOINT, as the gateway and `silt produce` take
    // it, not from the job file.
    let job = kinesis_job(dir.path(), "small", &stream, "", &lake_url, &storage);
    let out = run_ok(
        silt()
            .args(["run", "--json"])
            .arg(&job)
            .env_remove("AWS_ENDPOINT_URL_S3")
            .env_remove("AWS_ENDPOINT_URL_KINESIS")
            .env_remove("AWS_ENDPOINT_URL")
            .env("SILT_KINESIS_ENDPOINT", &e),
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["rejected"], 18, "{s}");
    assert_eq!(s["duplicates"], 20, "{s}");

    // Read the lake back from S3 with the parquet crate.
    let lake = silt_storage::open(&lake_url, Path::new("/")).unwrap();
    let rows = runtime().block_on(store_lake_rows(&lake));
    let counts = uuid_counts(&rows["clickstream"]);
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("expected.json")).unwrap())
            .unwrap();
    let events = expected["events"].as_object().unwrap();
    assert_eq!(counts.len(), 400);
    assert!(counts.values().all(|n| *n == 1));
    for id in events.keys() {
        assert!(counts.contains_key(&format!("uuid={id}")), "{id} missing");
    }
    assert_eq!(rows["clickstream_rejected"].len(), 18);
}

#[test]
fn throttled_calls_are_retried_counted_and_the_lake_is_exact() {
    let Some(e) = endpoint() else { return };
    let proxy = FaultProxy::start(&e, 0.3, &["GetRecords", "PutRecords"]);
    let dir = tempfile::tempdir().unwrap();
    register_clickstream(dir.path());
    let stream = unique("throttled");
    let out = produce(dir.path(), &proxy.endpoint, &stream, 2, "events:1500");
    let retries: u64 = out
        .split('(')
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retries > 0, "{out}");
    let lake = format!("file://{}", dir.path().join("lake").display());
    let job = kinesis_job(
        dir.path(),
        "throttled",
        &stream,
        &proxy.endpoint,
        &lake,
        "[batch]\nmax_records = 200\n",
    );
    let s = run_json(&job);
    assert!(s["source_retries"].as_u64().unwrap() > 0, "{s}");
    let counts = uuid_counts(&table_rows(&dir.path().join("lake/clickstream")));
    assert_eq!(counts.len(), 1500);
    assert!(counts.values().all(|n| *n == 1));
    let text = String::from_utf8_lossy(&run_ok(silt().arg("run").arg(&job)).stdout).into_owned();
    assert!(text.contains("source retries"), "{text}");
    assert!(proxy.injected.load(std::sync::atomic::Ordering::Relaxed) > 10);

    // The autoscaling hook weighs the throttling the job's commits report.
    let out = run_ok(
        silt()
            .args([
                "kinesis",
                "scale",
                "--stream",
                &stream,
                "--endpoint",
                &e,
                "--window",
                "10m",
                "--job",
            ])
            .arg(&job),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let throttles: u64 = text
        .split(", ")
        .find(|p| p.contains("throttled call(s)"))
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(throttles > 0, "{text}");
    assert!(
        text.contains("proposal: 3 shard(s): ") && text.contains("throttled"),
        "{text}"
    );
}

/// UpdateShardCount on moto's Kinesis (kinesalite has none).
#[test]
fn the_scale_hook_proposes_and_applies_an_update_shard_count() {
    let Some(_) = endpoint() else { return };
    let moto = std::env::var("SILT_S3_ENDPOINT").expect("moto runs beside kinesalite");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("registry")).unwrap();
    let stream = unique("scale");
    produce(dir.path(), &moto, &stream, 1, "events:3000");
    // With a shard taking 20 records/s, 3,000 records in a minute need more shards: the
    // proposal is bounded by --max, and one step at most doubles.
    let scale = |extra: &[&str]| {
        let out = run_ok(
            silt()
                .args([
                    "kinesis",
                    "scale",
                    "--stream",
                    &stream,
                    "--endpoint",
                    &moto,
                    "--window",
                    "60s",
                    "--shard-records-per-sec",
                    "20",
                ])
                .args(extra),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let held = scale(&["--max", "1"]);
    assert!(
        held.contains("1 open shard(s)")
            && held.contains("proposal: 1 shard(s)")
            && held.contains("bounds"),
        "{held}"
    );
    let applied = scale(&["--apply"]);
    assert!(
        applied.contains("proposal: 2 shard(s)")
            && applied.contains("applied: UpdateShardCount to 2"),
        "{applied}"
    );
    let open = runtime().block_on(async {
        let client = silt_kinesis::testing::test_client(&moto).await;
        let shards = client
            .list_shards()
            .stream_name(&stream)
            .send()
            .await
            .unwrap();
        shards
            .shards()
            .iter()
            .filter(|s| {
                s.sequence_number_range()
                    .and_then(|r| r.ending_sequence_number())
                    .is_none()
            })
            .count()
    });
    assert_eq!(open, 2);
}

#[test]
fn a_shard_split_in_the_middle_of_a_run_loses_nothing_and_reads_parents_first() {
    let Some(e) = endpoint() else { return };
    let dir = tempfile::tempdir().unwrap();
    register_clickstream(dir.path());
    let stream = unique("split");
    produce(dir.path(), &e, &stream, 1, "events:300");
    let lake = format!("file://{}", dir.path().join("lake").display());
    let job = kinesis_job(
        dir.path(),
        "split",
        &stream,
        &e,
        &lake,
        "[batch]\nmax_records = 100\ninterval = \"100ms\"\n",
    );
    let child = silt()
        .args(["run", "--follow"])
        .arg(&job)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let table = dir.path().join("lake/clickstream");
    let wait_for = |n: usize| {
        for _ in 0..300 {
            if uuid_counts(&table_rows(&table)).len() >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the lake never reached {n} events");
    };
    wait_for(300);
    // Split the only shard while the job runs, then produce more (to the children).
    let rt = runtime();
    rt.block_on(async {
        let client = silt_kinesis::testing::test_client(&e).await;
        let shards = client
            .list_shards()
            .stream_name(&stream)
            .send()
            .await
            .unwrap();
        let parent = shards.shards()[0].shard_id().to_string();
        client
            .split_shard()
            .stream_name(&stream)
            .shard_to_split(&parent)
            .new_starting_hash_key("170141183460469231731687303715884105728")
            .send()
            .await
            .unwrap();
        silt_kinesis::testing::wait_active(&client, &stream).await;
    });
    // A second producer run puts new events (other ids: generated later in time).
    let fs_dir = dir.path().join("more");
    let fs = silt_ingest::FileStream::create(&fs_dir, 2).unwrap();
    silt::gen::generate(
        &fs,
        &silt::gen::GenOptions {
            events: 300,
            seed: 5,
            start_ms: 1_764_120_000_000,
            bad_per_kind: 0,
            ..Default::default()
        },
    )
    .unwrap();
    produce(dir.path(), &e, &stream, 1, fs_dir.to_str().unwrap());
    wait_for(600);
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counts = uuid_counts(&table_rows(&table));
    assert_eq!(counts.len(), 600);
    assert!(counts.values().all(|n| *n == 1), "an event twice");
    // In every commit, a child shard has a position only once its parent has ended.
    let commits = dir.path().join("lake/_silt/checkpoints/split/commits");
    let mut saw_children = false;
    for f in std::fs::read_dir(&commits).unwrap().flatten() {
        let c: serde_json::Value =
            serde_json::from_slice(&std::fs::read(f.path()).unwrap()).unwrap();
        let positions = c["source"]["positions"].as_object().unwrap();
        let ended: Vec<&str> = c["source"]["ended"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        if positions.len() > 1 {
            saw_children = true;
            assert!(
                !ended.is_empty(),
                "batch {} read children before the parent ended",
                c["batch"]
            );
        }
    }
    assert!(saw_children);
}

#[test]
fn killed_runs_against_kinesis_and_s3_converge() {
    let Some(e) = endpoint() else { return };
    assert!(s3_ready());
    let dir = tempfile::tempdir().unwrap();
    register_clickstream(dir.path());
    let stream = unique("kill");
    produce(dir.path(), &e, &stream, 2, "events:1200");
    let base = format!("s3://silt-test/{}", unique("kill"));
    let reference = kinesis_job(
        dir.path(),
        "reference",
        &stream,
        &e,
        &format!("{base}/reference"),
        "[batch]\nmax_records = 100\n",
    );
    run_ok(silt().arg("run").arg(&reference));
    let job = kinesis_job(
        dir.path(),
        "killed",
        &stream,
        &e,
        &format!("{base}/killed"),
        "[batch]\nmax_records = 100\n",
    );
    let mut kills = 0;
    for (p, n) in [
        ("mid_read", 1),
        ("after_intent", 1),
        ("after_decode", 1),
        ("after_table", 1),
        ("after_dedup", 1),
        ("before_commit", 1),
        ("after_commit", 1),
        ("after_table", 3),
        ("mid_read", 3),
        ("before_commit", 2),
        ("after_intent", 2),
        ("after_commit", 2),
    ] {
        let out = silt()
            .arg("run")
            .arg(&job)
            .env("SILT_CRASH_AT", format!("{p}:{n}"))
            .output()
            .unwrap();
        if !out.status.success() {
            kills += 1;
        }
    }
    assert!(kills >= 10, "only {kills} kills");
    run_ok(silt().arg("run").arg(&job));
    let rt = runtime();
    let want = rt.block_on(store_lake_rows(
        &silt_storage::open(&format!("{base}/reference"), Path::new("/")).unwrap(),
    ));
    let got = rt.block_on(store_lake_rows(
        &silt_storage::open(&format!("{base}/killed"), Path::new("/")).unwrap(),
    ));
    assert_eq!(want["clickstream"].len(), 1200);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (t, rows) in &want {
        // The stream name and positions are the same for both jobs; rows must match exactly.
        assert!(got[t] == *rows, "{t}: rows differ");
    }
}

/// SPEC 9's "one river": the gateway's `kinesis://NAME` sink puts every streamId into one
/// Kinesis stream. The test stream's clickstream records are produced into it, then orders
/// go in through the gateway; a clickstream job and an orders job each read the whole river
/// and land their own subject's events, passing over the other's (counted, not rejected).
#[test]
fn one_river_carries_two_subjects_and_each_job_lands_its_own() {
    use std::io::{BufRead, BufReader};
    let Some(e) = endpoint() else { return };
    const ORDERS: &str = ORDERS_SUBJECT;
    let dir = tempfile::tempdir().unwrap();
    register_clickstream(dir.path());
    let orders_schema = dir.path().join("orders.avsc");
    std::fs::write(&orders_schema, ORDERS_SCHEMA).unwrap();
    register(dir.path(), &[&orders_schema]);
    let river = unique("river");
    let out = produce(
        dir.path(),
        &e,
        &river,
        2,
        testdata().join("stream").to_str().unwrap(),
    );
    assert!(out.contains("put 438 records"), "{out}");

    let mut gateway = silt()
        .args(["gateway", "serve", "--listen", "127.0.0.1:0", "--registry"])
        .arg(format!("file://{}", dir.path().join("registry").display()))
        .args(["--sink", &format!("kinesis://{river}")])
        .args(["--kinesis-endpoint", &e, "--region", "us-east-1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    BufReader::new(gateway.stdout.as_mut().unwrap())
        .read_line(&mut banner)
        .unwrap();
    let base = banner
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {banner:?}"))
        .to_string();
    let ids = silt_wire::timeuuid::TimeUuidGenerator::new([8; 6], 8);
    let orders: Vec<serde_json::Value> = (0..25)
        .map(|i| {
            serde_json::json!({
                "uuid": silt_wire::timeuuid::to_string(&ids.next()),
                "total": 10.0 + i as f64
            })
        })
        .collect();
    let status = runtime().block_on(async {
        reqwest::Client::new()
            .post(format!("{base}/streams/{ORDERS}/events"))
            .json(&orders)
            .send()
            .await
            .unwrap()
            .status()
    });
    gateway.kill().unwrap();
    gateway.wait().unwrap();
    assert_eq!(status, 202);

    let lake = format!("file://{}", dir.path().join("lake").display());
    let clicks = kinesis_job(dir.path(), "clicks", &river, &e, &lake, "");
    let s = run_json(&clicks);
    assert_eq!(s["records_read"], 438 + 25, "{s}");
    assert_eq!(s["rows_written"]["clickstream"], 400, "{s}");
    assert_eq!(s["other_subjects"], 25, "{s}");
    assert_eq!(s["rejected"], 18, "{s}");

    let orders_job = kinesis_job(dir.path(), "orders", &river, &e, &lake, "")
        .to_string_lossy()
        .into_owned();
    let text = std::fs::read_to_string(&orders_job)
        .unwrap()
        .replace(
            "subject = \"com.gilt.clickstream.v1.ProductPageViewedEvent\"",
            &format!("subject = \"{ORDERS}\""),
        )
        .replace("table = \"clickstream\"", "table = \"orders\"");
    std::fs::write(&orders_job, text).unwrap();
    let s = run_json(Path::new(&orders_job));
    assert_eq!(s["rows_written"]["orders"], 25, "{s}");
    // The clickstream records are the other job's, its bad bodies too (they name its schema):
    // 400 events, 20 repeats, 6 bodies that do not decode.
    assert_eq!(s["other_subjects"], 426, "{s}");
    // Records that name no schema at all are bad in every job of the river.
    assert_eq!(s["rejected"], 12, "{s}");
    let v = query(
        dir.path(),
        "SELECT count(*) AS n, sum(total) AS total FROM orders",
    );
    assert_eq!(v[0]["n"], 25, "{v}");
    assert_eq!(
        v[0]["total"],
        (0..25).map(|i| 10.0 + i as f64).sum::<f64>(),
        "{v}"
    );
}

/// Compaction on S3: the footers are read with ranged GETs, the merged files put, the old
/// ones deleted after the commit; a directory reader of the bucket then sees each closed hour
/// as one file and every row once.
#[test]
fn closed_hours_are_compacted_in_an_s3_lake() {
    if !s3_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (job, lake_url) = generated_s3_job(dir.path(), 50, "compact");
    let s = run_json(&job);
    assert!(s["files_compacted"].as_u64().unwrap() > 20, "{s}");

    let lake = silt_storage::open(&lake_url, Path::new("/")).unwrap();
    let rows = runtime().block_on(store_lake_rows(&lake));
    let counts = uuid_counts(&rows["clickstream"]);
    assert_eq!(counts.len(), 3000);
    assert!(counts.values().all(|n| *n == 1));
    // Files per hour folder of the raw table, as listed in the bucket.
    let files = s3_files(&lake, "clickstream");
    let hour_22 = files
        .iter()
        .filter(|p| p.contains("dt=2025-11-25/hr=22/") && p.ends_with(".parquet"))
        .count();
    assert_eq!(hour_22, 1, "{files:?}");
}

/// Transforms passing the raw table's columns through, in an S3 lake: `SELECT *` is the raw
/// objects copied in the bucket (no second upload), a projection the raw files' column
/// chunks; both read back as the raw rows.
#[test]
fn transforms_passing_raw_columns_through_are_copies_in_an_s3_lake() {
    if !s3_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (job, lake_url) = generated_s3_job(dir.path(), 400, "copies");
    let mut text = std::fs::read_to_string(&job).unwrap();
    text += &pass_through_transforms(dir.path());
    std::fs::write(&job, text).unwrap();
    let s = run_json(&job);
    assert_eq!(
        s["copied"],
        serde_json::json!(["everything", "renamed", "some"]),
        "{s}"
    );

    let lake = silt_storage::open(&lake_url, Path::new("/")).unwrap();
    let objects = |table: &str| -> BTreeMap<String, bytes::Bytes> {
        let t = lake.join(table);
        s3_files(&lake, table)
            .into_iter()
            .filter(|p| p.ends_with(".parquet"))
            .map(|p| {
                let path = object_store::path::Path::from(p.as_str());
                let bytes = runtime().block_on(async {
                    use object_store::ObjectStoreExt;
                    t.store.get(&path).await.unwrap().bytes().await.unwrap()
                });
                (
                    p.rsplit_once(&format!("/{table}/")).unwrap().1.to_string(),
                    bytes,
                )
            })
            .collect()
    };
    let raw = objects("clickstream");
    assert!(raw.len() > 5, "{raw:?}");
    assert!(objects("everything") == raw);
    let rows = runtime().block_on(store_lake_rows(&lake));
    assert_eq!(rows["some"], rows["filtered"]);
    assert_eq!(uuid_counts(&rows["everything"]).len(), 3000);
}

/// A schema registered after its events went through Kinesis: the job keeps them as rejected
/// (with their shard and sequence number), and `silt redrive` brings them into the S3 lake,
/// each event once, with the Kinesis position it had.
#[test]
fn records_of_a_schema_registered_late_are_re_driven_into_an_s3_lake() {
    let Some(e) = endpoint() else { return };
    assert!(s3_ready(), "the Kinesis stand-in runs but not the S3 one");
    let dir = tempfile::tempdir().unwrap();
    let data = testdata();
    register(dir.path(), &[&data.join("schemas/v1.avsc")]);
    let stream = unique("redrive");
    produce(
        dir.path(),
        &e,
        &stream,
        2,
        data.join("stream").to_str().unwrap(),
    );
    let lake_url = format!("s3://silt-test/{}/lake", unique("lake"));
    let job = kinesis_job(dir.path(), "late", &stream, &e, &lake_url, "");
    let s = run_json(&job);
    let unknown = s["rejected"].as_u64().unwrap() - 15;
    assert!(unknown > 100, "{s}");

    register(dir.path(), &[&data.join("schemas/v2.avsc")]);
    let out = run_ok(silt().args(["redrive", "--json"]).arg(&job));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["looked_at"], unknown, "{r}");
    assert_eq!(r["still_rejected"]["unknown_fingerprint"], 3, "{r}");
    assert!(r["batch"].is_u64(), "{r}");

    let lake = silt_storage::open(&lake_url, Path::new("/")).unwrap();
    let rows = runtime().block_on(store_lake_rows(&lake));
    let counts = uuid_counts(&rows["clickstream"]);
    assert_eq!(counts.len(), 400);
    assert!(counts.values().all(|n| *n == 1));
    for row in &rows["clickstream"] {
        let seq = row
            .split(' ')
            .find_map(|c| c.strip_prefix("_sequence="))
            .unwrap();
        assert!(
            seq.len() > 20 && seq.bytes().all(|b| b.is_ascii_digit()),
            "a Kinesis sequence number: {row}"
        );
    }
    assert_eq!(rows["clickstream_rejected"].len(), 18);
}

/// A backfill of an S3 lake paused before its commit while a run of the job commits the
/// micro-batch it was to be, with new events outside the backfill's range: what the backfill
/// built is moved to the next micro-batch's names (S3 has no rename: a copy and a delete)
/// and committed after the run's commit; nothing is built again, nothing is left behind.
#[test]
fn a_backfill_beaten_by_a_run_moves_and_commits_its_files_in_an_s3_lake() {
    if !s3_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (job, lake_url) = generated_s3_job(dir.path(), 400, "backfill");
    let next = run_json(&job)["last_batch"].as_u64().unwrap() + 1;
    // 200 new events at 02:15 on the 26th, for the run.
    new_events_at_0215(dir.path());

    let signal = tempfile::tempdir().unwrap();
    let go = signal.path().join("go");
    let backfill = backfill_command(&job, "2025-11-25", "2025-11-25")
        .env(
            "SILT_PAUSE_AT",
            format!("before_commit:until={}", go.display()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lake = silt_storage::open(&lake_url, Path::new("/")).unwrap();
    let written = format!("part-{next:010}-0000-backfill");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !s3_files(&lake, "hourly")
        .iter()
        .any(|f| f.contains(&written))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the backfill wrote nothing"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let run = run_json(&job);
    assert_eq!(run["last_batch"], next, "{run}");
    std::fs::write(&go, b"").unwrap();
    let out = backfill.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["batch"], next + 1, "{summary}");
    assert_eq!(summary["partitions_kept"], 4, "{summary}");
    assert!(stderr.contains("keeping the other 4"), "{stderr}");

    let hourly = s3_files(&lake, "hourly");
    assert!(!hourly.iter().any(|f| f.contains(&written)), "{hourly:?}");
    let moved = format!("part-{:010}-0000-backfill", next + 1);
    assert_eq!(
        hourly.iter().filter(|f| f.contains(&moved)).count(),
        2,
        "{hourly:?}"
    );
    // Every file in the bucket counts once: the run's events are there, and a backfill of
    // everything changes nothing.
    let after = runtime().block_on(store_lake_rows(&lake));
    assert_eq!(uuid_counts(&after["clickstream"]).len(), 3200);
    run_ok(
        silt()
            .args(["backfill", "--from", "2025-11-25", "--to", "2025-11-26"])
            .arg(&job),
    );
    assert!(
        runtime().block_on(store_lake_rows(&lake)) == after,
        "the lake differs from a backfill of the same raw table"
    );
}

/// A following run whose lake is in a bucket not made yet (or S3 down) waits it out, saying
/// so, and goes on once the bucket is there: it used to exit at its first read of the
/// checkpoint.
#[test]
fn a_follow_run_waits_for_its_lake_bucket_to_be_made() {
    if !s3_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bucket = unique("late-lake");
    let lake_url = format!("s3://{bucket}/lake");
    let job = following_testdata_job(dir.path(), "lake", &lake_url);
    let child = spawn_following(&job);
    std::thread::sleep(Duration::from_millis(1500));
    let made = Command::new("curl")
        .args(["-sf", "-X", "PUT"])
        .arg(format!(
            "{}/{bucket}",
            std::env::var("SILT_S3_ENDPOINT").unwrap()
        ))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(made.success());
    let count = || {
        let out = silt()
            .args(["query", "--format", "json", "--lake", &lake_url])
            .arg("SELECT count(*) AS n FROM clickstream")
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| v[0]["n"].as_u64())
            .unwrap_or(0)
    };
    let mut n = 0;
    for _ in 0..300 {
        n = count();
        if n == 400 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = interrupt(child, "INT");
    assert_eq!(n, 400, "the run went on once the bucket was there");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("NoSuchBucket"), "{err}");
    assert!(err.contains("starting again in 1s"), "{err}");
}
