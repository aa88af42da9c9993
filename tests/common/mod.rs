//! Helpers for the end-to-end tests: a job folder, running the `silt` binary, reading a lake
//! with the `parquet` crate directly (not through silt's query path).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

pub fn testdata() -> PathBuf {
    silt_wire::testing::clickstream_small()
}

pub fn silt() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_silt"));
    c.env_remove("SILT_CRASH_AT").env_remove("SILT_PAUSE_AT");
    c
}

pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("silt runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Writes a job file into `dir/jobs/NAME.toml` with absolute paths.
pub fn write_job(dir: &Path, name: &str, stream: &Path, extra: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("jobs")).unwrap();
    let path = dir.join(format!("jobs/{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"name = "{name}"

[source]
type = "file"
path = "{stream}"

[schema]
registry = "file://{registry}"
subject = "com.gilt.clickstream.v1.ProductPageViewedEvent"

[lake]
location = "file://{lake}"
table = "clickstream"
{extra}
"#,
            stream = stream.display(),
            registry = dir.join("registry").display(),
            lake = dir.join("lake").display(),
        ),
    )
    .unwrap();
    path
}

/// Registers schema files with the CLI.
pub fn register(dir: &Path, schemas: &[&Path]) {
    for s in schemas {
        run_ok(
            silt()
                .args(["registry", "register", "--registry"])
                .arg(format!("file://{}", dir.join("registry").display()))
                .arg(s),
        );
    }
}

/// Both testdata schema versions registered in `dir/registry`.
pub fn register_testdata(dir: &Path) {
    let data = testdata();
    register(
        dir,
        &[&data.join("schemas/v1.avsc"), &data.join("schemas/v2.avsc")],
    );
}

/// A job over a generated clickstream: both schemas registered, a file stream of generated
/// events, and two transforms (`hourly`: partitions; `sales`: rows). `extra` goes into the job
/// file before the transforms (e.g. a `[batch]` section).
pub fn generated_job(dir: &Path, opts: &silt::gen::GenOptions, extra: &str) -> PathBuf {
    use silt::gen;
    let schemas = dir.join("schemas");
    std::fs::create_dir_all(&schemas).unwrap();
    std::fs::write(schemas.join("v1.avsc"), gen::V1).unwrap();
    std::fs::write(schemas.join("v2.avsc"), gen::V2).unwrap();
    register(dir, &[&schemas.join("v1.avsc"), &schemas.join("v2.avsc")]);
    let stream = silt_ingest::FileStream::create(dir.join("stream"), 2).unwrap();
    gen::generate(&stream, opts).unwrap();
    write_job(
        dir,
        "clicks",
        &dir.join("stream"),
        &with_transforms(dir, extra),
    )
}

/// `extra` (job file text) followed by two transforms, their SQL written into `dir/sql`:
/// `hourly` (partitions) and `sales` (rows).
pub fn with_transforms(dir: &Path, extra: &str) -> String {
    std::fs::create_dir_all(dir.join("sql")).unwrap();
    std::fs::write(
        dir.join("sql/hourly.sql"),
        silt::cmd::demo::PAGE_VIEWS_HOURLY_SQL,
    )
    .unwrap();
    std::fs::write(
        dir.join("sql/sales.sql"),
        "SELECT uuid, \"productId\", \"saleId\", dt, hr FROM events WHERE \"saleId\" IS NOT NULL",
    )
    .unwrap();
    format!(
        "{extra}\n[[transform]]\nname = \"hourly\"\nsql = \"{}\"\nmode = \"partitions\"\n\n[[transform]]\nname = \"sales\"\nsql = \"{}\"\n",
        dir.join("sql/hourly.sql").display(),
        dir.join("sql/sales.sql").display()
    )
}

/// Five `rows` transforms (job file text), their SQL written into `dir/sql`: three that pass
/// columns of the raw table through (`everything`: `SELECT *`; `some`: two columns in
/// another order, and the partition columns; `renamed`: a column renamed), and two that do
/// not (`filtered`: `some`'s columns through a filter that keeps every row; `dated`: a
/// partition column's values in a column of another name, which the raw files lack).
pub fn pass_through_transforms(dir: &Path) -> String {
    transforms(
        dir,
        &[
            ("everything", "SELECT * FROM events", "rows"),
            (
                "some",
                "SELECT \"productId\", uuid, dt, hr FROM events",
                "rows",
            ),
            (
                "filtered",
                "SELECT \"productId\", uuid, dt, hr FROM events WHERE uuid <> ''",
                "rows",
            ),
            ("renamed", "SELECT uuid AS id, dt, hr FROM events", "rows"),
            (
                "dated",
                "SELECT uuid, dt AS day, dt, hr FROM events",
                "rows",
            ),
        ],
    )
}

/// Transforms as job file text, each `(name, SQL, mode)`, their SQL written into `dir/sql`.
pub fn transforms(dir: &Path, transforms: &[(&str, &str, &str)]) -> String {
    let sql = dir.join("sql");
    std::fs::create_dir_all(&sql).unwrap();
    let mut text = String::new();
    for (name, query, mode) in transforms {
        let path = sql.join(format!("{name}.sql"));
        std::fs::write(&path, query).unwrap();
        text += &format!(
            "\n[[transform]]\nname = \"{name}\"\nsql = \"{}\"\nmode = \"{mode}\"\n",
            path.display()
        );
    }
    text
}

/// Whether two paths are one file (a hard link), as a local store's copy makes them.
pub fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let id = |p: &Path| {
        let m = std::fs::metadata(p).unwrap();
        (m.dev(), m.ino())
    };
    id(a) == id(b)
}

/// Every `.parquet` file below a folder, as a directory reader finds them.
pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(parquet_files(&p));
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Every file below a folder.
pub fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(all_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

pub fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    let f = std::fs::File::open(path).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

/// A table read as a directory reader would (every Parquet file below it), as sorted rows of
/// `column=value` text, with the Hive partition values from the path.
pub fn table_rows(table_dir: &Path) -> Vec<String> {
    let files: Vec<(String, bytes::Bytes)> = parquet_files(table_dir)
        .into_iter()
        .map(|f| {
            let rel = f
                .strip_prefix(table_dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (rel, bytes::Bytes::from(std::fs::read(&f).unwrap()))
        })
        .collect();
    rows_of_files(&files)
}

/// Rows of Parquet files given as (path below the table, bytes).
pub fn rows_of_files(files: &[(String, bytes::Bytes)]) -> Vec<String> {
    let mut rows = Vec::new();
    for (rel, data) in files {
        let parts: Vec<String> = rel
            .split('/')
            .filter(|p| p.contains('='))
            .map(str::to_string)
            .collect();
        let reader = ParquetRecordBatchReaderBuilder::try_new(data.clone())
            .unwrap()
            .build()
            .unwrap();
        for b in reader {
            let b = b.unwrap();
            let opts = FormatOptions::default().with_null("null");
            let fmts: Vec<_> = b
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
                .collect();
            for r in 0..b.num_rows() {
                let mut cells: Vec<String> = parts.clone();
                for (i, field) in b.schema().fields().iter().enumerate() {
                    cells.push(format!("{}={}", field.name(), fmts[i].value(r)));
                }
                rows.push(cells.join(" "));
            }
        }
    }
    rows.sort();
    rows
}

/// Every table of a lake in an object store location, as rows (what a directory reader of
/// the bucket sees).
pub async fn store_lake_rows(lake: &silt_storage::Location) -> BTreeMap<String, Vec<String>> {
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    let objects: Vec<_> = lake
        .store
        .list(Some(&lake.prefix))
        .try_collect()
        .await
        .unwrap();
    let mut tables: BTreeMap<String, Vec<(String, bytes::Bytes)>> = BTreeMap::new();
    for o in objects {
        let rel = lake.relative(&o.location).unwrap();
        if rel.starts_with('_') || !rel.ends_with(".parquet") {
            continue;
        }
        let (table, path) = rel.split_once('/').unwrap();
        let data = lake
            .store
            .get(&o.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        tables
            .entry(table.to_string())
            .or_default()
            .push((path.to_string(), data));
    }
    tables
        .into_iter()
        .map(|(t, files)| (t, rows_of_files(&files)))
        .collect()
}

/// Every table of a lake folder (its non-underscore sub-folders) as rows.
pub fn lake_rows(lake: &Path) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(lake).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.path().is_dir() && !name.starts_with('_') {
            out.insert(name, table_rows(&e.path()));
        }
    }
    out
}

/// Asserts that a raw table holds exactly the testdata's expected events (`expected.json`):
/// every distinct event once, with its values, in the partition of its event hour.
pub fn assert_lake_holds_expected(table: &Path) {
    use arrow::array::{Array, Int64Array, StringArray, TimestampMicrosecondArray};
    use std::collections::{BTreeSet, HashMap};
    let data = testdata();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("expected.json")).unwrap())
            .unwrap();
    let events = expected["events"].as_object().unwrap();

    // Read every file of the raw table with the parquet crate.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut partitions = BTreeSet::new();
    for f in parquet_files(table) {
        let rel = f
            .strip_prefix(table)
            .unwrap()
            .parent()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        partitions.insert(rel.clone());
        for b in read_parquet(&f) {
            let col = |n: &str| b.column(b.schema().index_of(n).unwrap()).clone();
            let uuid = col("uuid");
            let uuid = uuid.as_any().downcast_ref::<StringArray>().unwrap();
            let product = col("productId");
            let product = product.as_any().downcast_ref::<Int64Array>().unwrap();
            let sale = col("saleId");
            let sale = sale.as_any().downcast_ref::<Int64Array>().unwrap();
            let channel = col("channel");
            let channel = channel.as_any().downcast_ref::<StringArray>().unwrap();
            let t = col("_event_time");
            let t = t
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .unwrap();
            for i in 0..b.num_rows() {
                let id = uuid.value(i).to_string();
                let e = &events[&id];
                assert_eq!(product.value(i), e["productId"].as_i64().unwrap(), "{id}");
                assert_eq!(sale.is_null(i), e["saleId"].is_null(), "{id}");
                if !sale.is_null(i) {
                    assert_eq!(sale.value(i), e["saleId"].as_i64().unwrap(), "{id}");
                }
                assert_eq!(
                    channel.is_null(i),
                    e["channel"].is_null(),
                    "{id}: v1 rows have channel null"
                );
                if !channel.is_null(i) {
                    assert_eq!(channel.value(i), e["channel"].as_str().unwrap(), "{id}");
                }
                let ms = t.value(i) / 1000;
                assert_eq!(ms, e["event_ms"].as_i64().unwrap(), "{id}");
                // The partition is the event's UTC hour.
                let when = chrono::DateTime::from_timestamp_millis(ms).unwrap();
                assert_eq!(rel, when.format("dt=%Y-%m-%d/hr=%H").to_string(), "{id}");
                *seen.entry(id).or_default() += 1;
            }
        }
    }
    assert_eq!(seen.len(), 400, "every expected event is in the lake");
    assert!(seen.values().all(|n| *n == 1), "each exactly once");
    assert_eq!(
        partitions.into_iter().collect::<Vec<_>>(),
        vec![
            "dt=2025-11-25/hr=22",
            "dt=2025-11-25/hr=23",
            "dt=2025-11-26/hr=00"
        ],
        "partitions by event hour, across midnight"
    );
}

/// Events of the test stream with a `channel` (v2 events that set it).
pub fn expected_with_channel() -> usize {
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(testdata().join("expected.json")).unwrap())
            .unwrap();
    expected["events"]
        .as_object()
        .unwrap()
        .values()
        .filter(|e| !e["channel"].is_null())
        .count()
}

/// The test stream's records with their arrival times, split at the writer: v1's records,
/// then the rest (v2's and the bad ones).
pub fn testdata_split_at_v2() -> [Vec<(Vec<u8>, i64)>; 2] {
    let data = testdata();
    let v1 =
        silt_wire::Schema::parse(&std::fs::read_to_string(data.join("schemas/v1.avsc")).unwrap())
            .unwrap()
            .fingerprint();
    let (mut first, mut later) = (Vec::new(), Vec::new());
    for shard in std::fs::read_dir(data.join("stream")).unwrap() {
        let bytes = std::fs::read(shard.unwrap().path()).unwrap();
        let mut at = 0;
        while at + 12 <= bytes.len() {
            let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            let arrival = i64::from_be_bytes(bytes[at + 4..at + 12].try_into().unwrap());
            let payload = bytes[at + 12..at + 12 + len].to_vec();
            at += 12 + len;
            let is_v1 = payload.len() >= 33 && payload[0] == 0x81 && payload[1..33] == v1.0;
            if is_v1 { &mut first } else { &mut later }.push((payload, arrival));
        }
    }
    [first, later]
}

/// Appends one event, given as the gateway's JSON, in an envelope of `schema` to shard 0 of a
/// file stream, arriving at `at` (ms).
pub fn append_json(
    stream: &silt_ingest::FileStream,
    schema: &silt_wire::Schema,
    event: &serde_json::Value,
    at: i64,
) {
    let mut body = Vec::new();
    silt_wire::json::JsonEncoder::new(schema)
        .encode(event, &mut body)
        .unwrap();
    append_records(
        stream,
        &[(silt_wire::envelope(&schema.fingerprint(), &body), at)],
    );
}

/// Appends records with their arrival times to shard 0 of a file stream.
pub fn append_records(stream: &silt_ingest::FileStream, records: &[(Vec<u8>, i64)]) {
    for (p, a) in records {
        stream.append_at(0, &[p], *a).unwrap();
    }
}

/// A lake written while the subject evolved: a run while only v1 is registered, over the test
/// stream's v1 records; then v2 is registered and a run over the rest (v2 records and the bad
/// ones). The two runs' summaries; between them they write the 400 events and reject the 18.
pub fn evolved_lake(dir: &Path) -> [serde_json::Value; 2] {
    let data = testdata();
    register(dir, &[&data.join("schemas/v1.avsc")]);
    let [first, later] = testdata_split_at_v2();
    let stream = silt_ingest::FileStream::create(dir.join("stream"), 1).unwrap();
    let job = write_job(dir, "evolving", &dir.join("stream"), "");
    let run = || run_json(&job);
    append_records(&stream, &first);
    let before = run();
    register(dir, &[&data.join("schemas/v2.avsc")]);
    append_records(&stream, &later);
    let after = run();
    let total = |key: &str, sub: Option<&str>| -> u64 {
        [&before, &after]
            .iter()
            .map(|s| match sub {
                Some(t) => s[key][t].as_u64().unwrap(),
                None => s[key].as_u64().unwrap(),
            })
            .sum()
    };
    assert_eq!(
        total("rows_written", Some("clickstream")),
        400,
        "{before} {after}"
    );
    assert_eq!(total("rejected", None), 18, "{before} {after}");
    [before, after]
}

/// `silt registry serve` over the folder registry of `dir` on a free port, once it answers:
/// the process (kill it when done) and its base URL.
pub fn serve_registry(dir: &Path) -> (std::process::Child, String) {
    let port = free_port();
    let server = spawn_registry(dir, port);
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (server, format!("http://127.0.0.1:{port}"))
}

/// A job `following` over the test stream (v1 and v2 registered, micro-batches every 100 ms,
/// for `--follow`) whose location `from` (the registry's or the lake's `file://` URL in `dir`)
/// is `to` instead.
pub fn following_testdata_job(dir: &Path, from: &str, to: &str) -> PathBuf {
    let data = testdata();
    register(
        dir,
        &[&data.join("schemas/v1.avsc"), &data.join("schemas/v2.avsc")],
    );
    let job = write_job(
        dir,
        "following",
        &data.join("stream"),
        "[batch]\ninterval = \"100ms\"\n",
    );
    let from = format!("file://{}", dir.join(from).display());
    let text = std::fs::read_to_string(&job).unwrap();
    assert!(text.contains(&from), "{from} is not in the job");
    std::fs::write(&job, text.replace(&from, to)).unwrap();
    job
}

/// A port of 127.0.0.1 that nothing listens on (now).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `silt registry serve` over the folder registry of `dir` on `port`, not waited for.
pub fn spawn_registry(dir: &Path, port: u16) -> std::process::Child {
    silt()
        .args([
            "registry",
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--registry")
        .arg(format!("file://{}", dir.join("registry").display()))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// `silt query --format json` over the lake folder of `dir`: the rows, or `None` when the
/// query fails (before the first commit there is no table yet).
pub fn try_query(dir: &Path, sql: &str) -> Option<serde_json::Value> {
    let out = silt()
        .args(["query", "--lake"])
        .arg(format!("file://{}", dir.join("lake").display()))
        .args(["--format", "json", sql])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

/// [`try_query`] that must succeed.
pub fn query(dir: &Path, sql: &str) -> serde_json::Value {
    try_query(dir, sql).unwrap_or_else(|| panic!("silt query failed: {sql}"))
}

/// Starts `silt run --follow --json JOB`, its output captured (stop it with [`interrupt`]).
pub fn spawn_following(job: &Path) -> std::process::Child {
    silt()
        .args(["run", "--follow", "--json"])
        .arg(job)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Stops a `silt run --follow` with `signal` (`INT`: Ctrl-C; `TERM`: a scheduler or container
/// runtime): its output once it exited 0.
pub fn interrupt(child: std::process::Child, signal: &str) -> Output {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A second subject for streams that carry many types.
pub const ORDERS_SUBJECT: &str = "com.gilt.orders.v1.OrderPlacedEvent";

/// Its schema.
pub const ORDERS_SCHEMA: &str = r#"{"type":"record","name":"OrderPlacedEvent","namespace":"com.gilt.orders.v1","fields":[
    {"name":"uuid","type":{"type":"fixed","name":"UUID","namespace":"gfc.avro","size":16}},
    {"name":"total","type":"double"}]}"#;

/// `silt backfill --json --from FROM --to TO JOB`, to be run.
pub fn backfill_command(job: &Path, from: &str, to: &str) -> Command {
    let mut c = silt();
    c.args(["backfill", "--json", "--from", from, "--to", to])
        .arg(job);
    c
}

/// `silt run --json JOB`, which must succeed: its summary.
pub fn run_json(job: &Path) -> serde_json::Value {
    let out = run_ok(silt().args(["run", "--json"]).arg(job));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Races `writer` (a `silt` command that commits a micro-batch of its own beside the job's
/// runs: a backfill, a re-drive), paused before its commit, against a `silt run --json` of
/// `job` started once a file whose path holds `marker` appears below `table` (the writer's
/// files are written) and that waits longer before its commit: the writer must succeed, and
/// the run lose micro-batch `batch` to it and start again after it. Returns the run's
/// summary.
pub fn race_a_run(
    writer: &mut Command,
    job: &Path,
    table: &Path,
    marker: &str,
    batch: u64,
) -> serde_json::Value {
    let writer = paused_before_commit(writer, "4000", table, marker);
    let run = silt()
        .args(["run", "--json"])
        .arg(job)
        .env("SILT_PAUSE_AT", "before_commit:12000")
        .output()
        .unwrap();
    let writer = writer.wait_with_output().unwrap();
    assert!(
        writer.status.success(),
        "{}",
        String::from_utf8_lossy(&writer.stderr)
    );
    let msg = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{msg}");
    assert!(
        msg.contains(&format!("committed micro-batch {batch} first"))
            && msg.contains("starting again after it"),
        "{msg}"
    );
    serde_json::from_slice(&run.stdout).unwrap()
}

/// `writer` (a command beside the runs) started with a pause before its commit (`pause`, as
/// `SILT_PAUSE_AT` takes it after the point), once a file whose path holds `marker` appears
/// below `table` (its files are written).
fn paused_before_commit(
    writer: &mut Command,
    pause: &str,
    table: &Path,
    marker: &str,
) -> std::process::Child {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let child = writer
        .env("SILT_PAUSE_AT", format!("before_commit:{pause}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !all_files(table)
        .iter()
        .any(|f| f.to_string_lossy().contains(marker))
    {
        assert!(Instant::now() < deadline, "the writer wrote nothing");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// The other way round from [`race_a_run`]: `writer` paused before its commit while a `silt
/// run --json` of `job` commits the micro-batch it was to be. The writer must succeed, having
/// done its work again after the run's commit (which it says on stderr, returned), and none
/// of its lost attempt's files (holding `marker`) may be left below `table`. Returns the
/// run's summary, the writer's summary and its stderr.
pub fn lose_a_race(
    writer: &mut Command,
    job: &Path,
    table: &Path,
    marker: &str,
) -> (serde_json::Value, serde_json::Value, String) {
    lose_a_race_to(writer, table, marker, || run_json(job))
}

/// [`lose_a_race`] with whatever `meanwhile` does (runs of the job) while the writer waits
/// to commit; returns what `meanwhile` returned.
pub fn lose_a_race_to<T>(
    writer: &mut Command,
    table: &Path,
    marker: &str,
    meanwhile: impl FnOnce() -> T,
) -> (T, serde_json::Value, String) {
    // The writer waits before its commit until the runs are done, however slow the machine.
    let signal = tempfile::tempdir().unwrap();
    let go = signal.path().join("go");
    let writer = paused_before_commit(writer, &format!("until={}", go.display()), table, marker);
    let done = meanwhile();
    std::fs::write(&go, b"").unwrap();
    let out = writer.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("again after it"), "{stderr}");
    assert!(
        !all_files(table)
            .iter()
            .any(|f| f.to_string_lossy().contains(marker)),
        "the lost attempt's files are left"
    );
    (done, serde_json::from_slice(&out.stdout).unwrap(), stderr)
}

/// 200 new events in `dir`'s stream from 02:15 on the 26th, one a second: in the last hour
/// of 3,000 generated events five seconds apart from the default start (22:00 on the 25th).
pub fn new_events_at_0215(dir: &Path) {
    let stream = silt_ingest::FileStream::open(dir.join("stream")).unwrap();
    silt::gen::generate(
        &stream,
        &silt::gen::GenOptions {
            events: 200,
            seed: 99,
            start_ms: 1_764_108_000_000 + (4 * 60 + 15) * 60_000,
            step_ms: 1000,
            repeat_rate: 0.0,
            bad_per_kind: 0,
            ..Default::default()
        },
    )
    .unwrap();
}

/// The test subject's record (`com.gilt.clickstream.v1.ProductPageViewedEvent`): a `uuid`, then
/// `fields` (a JSON array of Avro fields).
pub fn event_schema(fields: serde_json::Value) -> serde_json::Value {
    let mut all = vec![serde_json::json!({"name": "uuid", "type": "gfc.avro.UUID"})];
    all.extend(
        fields
            .as_array()
            .expect("an array of fields")
            .iter()
            .cloned(),
    );
    serde_json::json!({"type": "record", "name": "ProductPageViewedEvent",
        "namespace": "com.gilt.clickstream.v1", "fields": all})
}

/// `schema` registered (with the CLI, in `dir`'s registry), parsed.
pub fn registered(dir: &std::path::Path, schema: &serde_json::Value) -> silt_wire::Schema {
    let path = dir.join("schema.avsc");
    std::fs::write(&path, schema.to_string()).unwrap();
    register(dir, &[&path]);
    silt_wire::Schema::parse(&schema.to_string()).unwrap()
}

/// [`registered`], and a file stream of one shard at `dir/stream` for its events.
pub fn registered_with_a_stream(
    dir: &std::path::Path,
    schema: &serde_json::Value,
) -> (silt_wire::Schema, silt_ingest::FileStream) {
    let stream = silt_ingest::FileStream::create(dir.join("stream"), 1).unwrap();
    (registered(dir, schema), stream)
}

/// The values of [`text_partitioned_lake`]'s partition column, in the order of its `n`.
pub const AWKWARD_VALUES: [&str; 12] = [
    "web", "a b", "50%", "a/b", "x:y", "%2F", "\u{fc}", "a=b", "a\\b", "..", "#?&", "a%20b",
];

/// A lake of one table `clickstream` partitioned by a text column `channel` whose values are
/// [`AWKWARD_VALUES`] (one event each, `n` its index), written by one run of the job it
/// returns.
pub fn text_partitioned_lake(dir: &Path) -> (PathBuf, [&'static str; 12]) {
    let schema = event_schema(serde_json::json!([
        {"name": "channel", "type": "string"},
        {"name": "n", "type": "int"}]));
    let (schema, stream) = registered_with_a_stream(dir, &schema);
    let at = chrono::Utc::now().timestamp_millis();
    let ids = silt_wire::timeuuid::TimeUuidGenerator::random();
    for (n, channel) in AWKWARD_VALUES.iter().enumerate() {
        let uuid = silt_wire::timeuuid::to_string(&ids.next_at_unix_millis(at));
        append_json(
            &stream,
            &schema,
            &serde_json::json!({"uuid": uuid, "channel": channel, "n": n}),
            at,
        );
    }
    let job = write_job(
        dir,
        "channels",
        &dir.join("stream"),
        r#"partition_by = ["channel"]"#,
    );
    run_json(&job);
    (job, AWKWARD_VALUES)
}

/// `cmd` started with a pause at the crash point `point` (`SILT_PAUSE_AT`), once it is there;
/// [`resume`] lets it go on. Its output is piped.
pub fn paused_at(cmd: &mut Command, point: &str) -> (std::process::Child, tempfile::TempDir) {
    use std::time::{Duration, Instant};
    let signal = tempfile::tempdir().unwrap();
    let go = signal.path().join("go");
    let child = cmd
        .env("SILT_PAUSE_AT", format!("{point}:until={}", go.display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !go.with_extension("waiting").exists() {
        assert!(Instant::now() < deadline, "{cmd:?} did not reach `{point}`");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, signal)
}

/// Lets a command [`paused_at`] a point go on; its output, which must be a success's.
pub fn resume(child: std::process::Child, signal: tempfile::TempDir) -> (String, String) {
    std::fs::write(signal.path().join("go"), b"").unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

/// A generated job (3,000 events five seconds apart, `bad_per_kind` bad records of each
/// kind) run in micro-batches of 50 with compaction off, so that every hour holds many small
/// files; then switched on (`compact_min_files = 10`), for the next run to merge the hours.
pub fn small_files_then_compaction(dir: &Path, bad_per_kind: usize) -> PathBuf {
    let opts = silt::gen::GenOptions {
        events: 3000,
        step_ms: 5000,
        bad_per_kind,
        ..Default::default()
    };
    let job = generated_job(
        dir,
        &opts,
        "compact_min_files = 0\n[batch]\nmax_records = 50\n",
    );
    run_ok(silt().arg("run").arg(&job));
    let text = std::fs::read_to_string(&job).unwrap();
    std::fs::write(
        &job,
        text.replace("compact_min_files = 0", "compact_min_files = 10"),
    )
    .unwrap();
    job
}
