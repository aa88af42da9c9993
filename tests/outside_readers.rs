//! The lake as outside tools read it (SPEC 8): DuckDB and pyarrow with Hive partitioning, on
//! the independent test stream; and records as an outside producer frames them (Confluent's
//! serializer against `silt registry serve`). Needs the Python that `scripts/test.sh` sets up
//! (`SILT_PYTHON`, with duckdb, pyarrow and confluent-kafka).

mod common;

use common::*;

/// The Python with duckdb, pyarrow and confluent-kafka, or `None` (the test is skipped) outside
/// `scripts/test.sh`, which requires it.
fn python() -> Option<String> {
    match std::env::var("SILT_PYTHON") {
        Ok(p) => Some(p),
        Err(_) => {
            assert!(
                std::env::var_os("SILT_REQUIRE_STAND_INS").is_none(),
                "SILT_PYTHON is not set"
            );
            eprintln!("skipped: no Python with duckdb and pyarrow (run scripts/test.sh)");
            None
        }
    }
}

/// Runs a Python script with arguments; its standard output as JSON.
fn python_json(python: &str, script: &str, args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let out = run_ok(
        std::process::Command::new(python)
            .arg("-c")
            .arg(script)
            .args(args),
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn duckdb_and_pyarrow_read_the_lake_as_it_is() {
    let Some(python) = python() else { return };
    let data = testdata();
    let dir = tempfile::tempdir().unwrap();
    register_testdata(dir.path());
    let job = write_job(dir.path(), "small", &data.join("stream"), "");
    run_ok(silt().arg("run").arg(&job));
    let lake = dir.path().join("lake");
    let script = r#"
import json, sys
import duckdb
import pyarrow.dataset as ds
lake = sys.argv[1]
con = duckdb.connect()
r = con.execute(f"""
    SELECT count(*), count(DISTINCT uuid), count(channel),
           count(DISTINCT dt || '/' || hr), min(_event_time)::VARCHAR,
           count(*) FILTER (WHERE uuid = '165c0cf3-ca4a-11f0-bb9a-0242ac110002')
    FROM read_parquet('{lake}/clickstream/*/*/*.parquet', hive_partitioning = true)
""").fetchone()
t = ds.dataset(f"{lake}/clickstream", format="parquet", partitioning="hive").to_table()
rej = ds.dataset(f"{lake}/clickstream_rejected", format="parquet", partitioning="hive").to_table()
print(json.dumps({
    "duckdb": list(r),
    "pyarrow_rows": t.num_rows,
    "columns": t.schema.names,
    "uuid_type": str(t.schema.field("uuid").type),
    "event_time_type": str(t.schema.field("_event_time").type),
    "rejected": rej.num_rows,
}))
"#;
    let v = python_json(&python, script, &[lake.as_ref()]);
    let d = &v["duckdb"];
    assert_eq!(d[0], 400, "{v}");
    assert_eq!(d[1], 400, "{v}");
    assert_eq!(d[3], 3, "three hour partitions: {v}");
    assert!(
        d[4].as_str().unwrap().starts_with("2025-11-25 22:00:00"),
        "{v}"
    );
    assert_eq!(d[5], 1, "a uuid compares with a string literal: {v}");
    assert_eq!(v["pyarrow_rows"], 400);
    assert_eq!(v["rejected"], 18);
    assert_eq!(v["uuid_type"], "string");
    assert_eq!(v["event_time_type"], "timestamp[us, tz=UTC]");
    let cols: Vec<&str> = v["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for c in [
        "uuid",
        "productId",
        "saleId",
        "channel",
        "_event_time",
        "_arrival_time",
        "_stream",
        "_shard",
        "_sequence",
        "_fingerprint",
        "dt",
        "hr",
    ] {
        assert!(cols.contains(&c), "{c} missing from {cols:?}");
    }
}

/// Files of thousands of rows get the adaptive encodings (the small stream above gives too few
/// rows a file): `_event_time` delta-packed, `_sequence` delta byte arrays, 128 KiB pages.
/// Both outside readers must read them, and agree with each other and with the stream.
#[test]
fn duckdb_and_pyarrow_read_the_delta_encoded_columns_of_larger_files() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let opts = silt::gen::GenOptions {
        events: 20_000,
        channel_bytes: 120,
        ..Default::default()
    };
    let job = generated_job(dir.path(), &opts, "");
    run_ok(silt().arg("run").arg(&job));
    let lake = dir.path().join("lake");
    let script = r#"
import json, sys
import duckdb
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pyarrow.compute as pc
lake, start_us = sys.argv[1], int(sys.argv[2])
con = duckdb.connect()
d = con.execute(f"""
    SELECT count(*), count(DISTINCT uuid), count(DISTINCT _shard || '/' || _sequence),
           sum(epoch_us(_event_time) - {start_us}), sum(length(channel))
    FROM read_parquet('{lake}/clickstream/*/*/*.parquet', hive_partitioning = true)
""").fetchone()
t = ds.dataset(f"{lake}/clickstream", format="parquet", partitioning="hive").to_table()
us = pc.subtract(pc.cast(t.column("_event_time"), "int64"), start_us)
pos = pc.binary_join_element_wise(pc.cast(t.column("_shard"), "string"), t.column("_sequence"), "/")
encodings = {}
for f in ds.dataset(f"{lake}/clickstream", format="parquet").files:
    m = pq.ParquetFile(f).metadata
    for g in range(m.num_row_groups):
        for c in range(m.num_columns):
            col = m.row_group(g).column(c)
            encodings.setdefault(col.path_in_schema, set()).update(col.encodings)
print(json.dumps({
    "duckdb": [int(x) for x in d],
    "pyarrow": [t.num_rows, len(pc.unique(t.column("uuid"))),
                len(pc.unique(pos)), pc.sum(us).as_py(),
                pc.sum(pc.utf8_length(t.column("channel"))).as_py()],
    "encodings": {k: sorted(v) for k, v in encodings.items()},
}))
"#;
    let start_us = (opts.start_ms * 1000).to_string();
    let v = python_json(&python, script, &[lake.as_ref(), start_us.as_ref()]);
    let e = &v["encodings"];
    let has = |col: &str, enc: &str| {
        e[col]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x.as_str() == Some(enc))
    };
    assert!(has("_event_time", "DELTA_BINARY_PACKED"), "{e}");
    assert!(has("_sequence", "DELTA_BYTE_ARRAY"), "{e}");
    // Every event once; the two readers agree on every figure.
    assert_eq!(v["duckdb"][0], 20_000, "{v}");
    assert_eq!(v["duckdb"][1], 20_000, "{v}");
    assert_eq!(v["duckdb"][2], 20_000, "{v}");
    assert_eq!(v["duckdb"], v["pyarrow"], "{v}");
    // The event times are the generator's: start + i * step for i in 0..20,000.
    let n = 20_000i64;
    assert_eq!(v["duckdb"][3], opts.step_ms * n * (n - 1) / 2 * 1000, "{v}");
    assert_eq!(
        v["duckdb"][4],
        10_000 * 120,
        "every v2 event's 120-byte URL: {v}"
    );
}

/// The metadata columns `_stream`, `_shard` and `_fingerprint` are written by silt run by run
/// (lake-writer's `runs`), not by parquet-rs: both outside readers read their values, filter
/// on them (row group statistics) and agree with each other and with silt's own query (page
/// indexes), over files of several pages.
#[test]
fn duckdb_and_pyarrow_read_and_filter_the_run_written_metadata_columns() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    // 50,000 events 50 ms apart: files of up to 50k rows, pages of 20k.
    let opts = silt::gen::GenOptions {
        events: 50_000,
        step_ms: 50,
        ..Default::default()
    };
    let job = generated_job(dir.path(), &opts, "");
    run_ok(silt().arg("run").arg(&job));
    let lake = dir.path().join("lake");
    let fp2 = silt::gen::schemas().1.fingerprint().to_hex();
    let script = r#"
import json, sys
import duckdb
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pyarrow as pa
lake, fp2 = sys.argv[1], sys.argv[2]
con = duckdb.connect()
src = f"read_parquet('{lake}/clickstream/*/*/*.parquet', hive_partitioning = true)"
d = con.execute(f"""
    SELECT _shard, count(*), count(DISTINCT _fingerprint), min(_stream), max(_stream)
    FROM {src} GROUP BY _shard ORDER BY _shard
""").fetchall()
d_one = con.execute(f"SELECT count(*) FROM {src} WHERE _shard = 'shard-000001'").fetchone()[0]
d_v2 = con.execute(f"SELECT count(*) FROM {src} WHERE _fingerprint = '{fp2}'").fetchone()[0]
data = ds.dataset(f"{lake}/clickstream", format="parquet", partitioning="hive")
t = data.to_table(columns=["uuid", "_stream", "_shard", "_fingerprint"])
# The dictionary columns as plain text (pyarrow's group_by takes no dictionary aggregates).
t = t.cast(pa.schema([(f.name, pa.string()) for f in t.schema]))
g = t.group_by("_shard").aggregate([("uuid", "count"), ("_fingerprint", "count_distinct"),
                                    ("_stream", "min"), ("_stream", "max")])
p = sorted([r["_shard"], r["uuid_count"], r["_fingerprint_count_distinct"], r["_stream_min"],
            r["_stream_max"]] for r in g.to_pylist())
p_one = data.to_table(filter=ds.field("_shard") == "shard-000001").num_rows
p_v2 = data.to_table(filter=ds.field("_fingerprint") == fp2).num_rows
chunks = {}
for f in data.files:
    m = pq.ParquetFile(f).metadata
    for rg in range(m.num_row_groups):
        for c in range(m.num_columns):
            col = m.row_group(rg).column(c)
            chunks.setdefault(col.path_in_schema, set()).add(col.compression)
print(json.dumps({
    "duckdb": [list(r) for r in d], "pyarrow": p,
    "one": [d_one, p_one], "v2": [d_v2, p_v2],
    "compression": {k: sorted(v) for k, v in chunks.items()},
}))
"#;
    let v = python_json(&python, script, &[lake.as_ref(), fp2.as_ref()]);
    // The run way was taken (its chunks are stored uncompressed), the others zstd.
    for c in ["_stream", "_shard", "_fingerprint"] {
        assert_eq!(
            v["compression"][c],
            serde_json::json!(["UNCOMPRESSED"]),
            "{v}"
        );
    }
    assert_eq!(v["compression"]["uuid"], serde_json::json!(["ZSTD"]), "{v}");
    assert_eq!(v["duckdb"], v["pyarrow"], "{v}");
    let shards = v["duckdb"].as_array().unwrap();
    assert_eq!(shards.len(), 2, "{v}");
    let total: i64 = shards.iter().map(|s| s[1].as_i64().unwrap()).sum();
    assert_eq!(total, 50_000, "{v}");
    for s in shards {
        assert_eq!(s[2], 2, "both schema versions in each shard: {v}");
        assert_eq!(s[3], s[4], "one stream: {v}");
    }
    // A filter on a run column finds every row it names, by both readers.
    assert_eq!(v["one"][0], shards[1][1], "{v}");
    assert_eq!(v["one"][1], shards[1][1], "{v}");
    assert_eq!(v["v2"], serde_json::json!([25_000, 25_000]), "{v}");
    // silt's own query (DataFusion, with the page indexes) agrees.
    let out = run_ok(
        silt()
            .args(["query", "--format", "csv", "--lake"])
            .arg(&lake)
            .arg("SELECT count(*) AS n FROM clickstream WHERE _shard = 'shard-000001'"),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("n\n{}", shards[1][1]),
    );
}

/// A table partitioned by a text column whose values hold `/`, `%`, `:`, `=`, `#`, `..`,
/// non-ASCII: DuckDB and pyarrow read every value as it was sent (the folders are named as Hive
/// names them, which both decode once; they read `a%2Fb` for `a/b` when silt escaped the
/// values twice), and a filter on one finds its row.
#[test]
fn duckdb_and_pyarrow_read_text_partition_values_as_sent() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (_, values) = text_partitioned_lake(dir.path());
    let lake = dir.path().join("lake");
    let script = r#"
import json, sys
import duckdb
import pyarrow.dataset as ds
lake = sys.argv[1]
d = duckdb.connect().execute(f"""
    SELECT channel FROM read_parquet('{lake}/clickstream/*/*.parquet', hive_partitioning = true,
                                     hive_types_autocast = false)
    ORDER BY n
""").fetchall()
one = duckdb.connect().execute(f"""
    SELECT n FROM read_parquet('{lake}/clickstream/*/*.parquet', hive_partitioning = true,
                               hive_types_autocast = false)
    WHERE channel = 'a/b'
""").fetchall()
t = ds.dataset(f"{lake}/clickstream", format="parquet", partitioning="hive").to_table()
p = [c for _, c in sorted(zip(t.column("n").to_pylist(), t.column("channel").to_pylist()))]
print(json.dumps({"duckdb": [r[0] for r in d], "filtered": [r[0] for r in one], "pyarrow": p}))
"#;
    let v = python_json(&python, script, &[lake.as_ref()]);
    assert_eq!(v["duckdb"], serde_json::json!(values), "{v}");
    assert_eq!(v["pyarrow"], serde_json::json!(values), "{v}");
    assert_eq!(v["filtered"], serde_json::json!([3]), "{v}");
}

/// A lake whose older files predate a field (v2 registered between two runs): DuckDB with
/// `union_by_name` and pyarrow with the files' schemas unified read one table, the old rows
/// with the new column null, as the README tells analysts to read it.
#[test]
fn duckdb_and_pyarrow_read_files_written_before_and_after_a_new_field() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    evolved_lake(dir.path());
    let lake = dir.path().join("lake");
    let script = r#"
import json, sys
import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
lake = sys.argv[1]
r = duckdb.connect().execute(f"""
    SELECT count(*), count(DISTINCT uuid), count(channel)
    FROM read_parquet('{lake}/clickstream/*/*/*.parquet', hive_partitioning = true,
                      union_by_name = true)
""").fetchone()
first = ds.dataset(f"{lake}/clickstream", format="parquet", partitioning="hive")
schema = pa.unify_schemas([f.physical_schema for f in first.get_fragments()])
t = ds.dataset(f"{lake}/clickstream", format="parquet", partitioning="hive",
               schema=schema.append(pa.field("dt", pa.string())).append(pa.field("hr", pa.string()))
               if "dt" not in schema.names else schema).to_table()
print(json.dumps({
    "duckdb": list(r),
    "pyarrow": [t.num_rows, len(set(t.column("uuid").to_pylist())),
                t.num_rows - t.column("channel").null_count],
    "schemas": len({str(f.physical_schema) for f in first.get_fragments()}),
}))
"#;
    let v = python_json(&python, script, &[lake.as_ref()]);
    let with_channel = expected_with_channel();
    assert_eq!(v["schemas"], 2, "files before and after the field: {v}");
    assert_eq!(
        v["duckdb"],
        serde_json::json!([400, 400, with_channel]),
        "{v}"
    );
    assert_eq!(
        v["pyarrow"],
        serde_json::json!([400, 400, with_channel]),
        "{v}"
    );
}

/// An outside producer: Confluent's Python client (`confluent-kafka`'s `SchemaRegistryClient`
/// and `AvroSerializer`, record-name subject strategy) registers v1 and then v2 with
/// `silt registry serve` and frames events the Confluent way; Python writes them into a file
/// stream (SPEC 6). A job with `framing = "confluent"` reading its schemas from the same
/// service lands every event, v1 events with the v2 default.
#[test]
fn a_confluent_serializer_registers_and_frames_events_a_confluent_job_lands() {
    let Some(python) = python() else { return };
    let data = testdata();
    let dir = tempfile::tempdir().unwrap();
    let (mut server, base) = serve_registry(dir.path());
    let stream = dir.path().join("stream");
    std::fs::create_dir_all(&stream).unwrap();
    let script = r#"
import json, struct, sys, time, uuid
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import SerializationContext, MessageField
url, v1, v2, shard = sys.argv[1:5]
client = SchemaRegistryClient({"url": url})
conf = {"auto.register.schemas": True,
        "subject.name.strategy": lambda ctx, record_name: record_name}
ctx = SerializationContext("clicks", MessageField.VALUE)
out, ids = open(shard, "wb"), set()
def put(ser, event):
    framed = ser(event, ctx)
    ids.add(struct.unpack(">I", framed[1:5])[0])
    out.write(struct.pack(">IQ", len(framed), int(time.time() * 1000)) + framed)
ser1 = AvroSerializer(client, open(v1).read(), conf=conf)
for i in range(30):
    put(ser1, {"uuid": uuid.uuid1().bytes, "productId": i, "saleId": None})
ser2 = AvroSerializer(client, open(v2).read(), conf=conf)
for i in range(30, 50):
    put(ser2, {"uuid": uuid.uuid1().bytes, "productId": i, "saleId": 7, "channel": "app"})
out.close()
print(json.dumps(sorted(ids)))
"#;
    let (v1, v2) = (data.join("schemas/v1.avsc"), data.join("schemas/v2.avsc"));
    let shard = stream.join(silt_ingest::shard_file_name(0));
    let ids = python_json(
        &python,
        script,
        &[base.as_ref(), v1.as_ref(), v2.as_ref(), shard.as_ref()],
    );
    assert_eq!(ids.as_array().unwrap().len(), 2, "one id per schema: {ids}");

    let job = write_job(dir.path(), "confluent", &stream, "");
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace(
            "type = \"file\"",
            "type = \"file\"\nframing = \"confluent\"",
        )
        .replace(
            &format!("file://{}", dir.path().join("registry").display()),
            &base,
        );
    std::fs::write(&job, text).unwrap();
    let s = run_json(&job);
    let v = query(
        dir.path(),
        "SELECT count(*) AS n, count(channel) AS app, sum(\"productId\") AS products, count(\"saleId\") AS sales FROM clickstream",
    );
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(s["rejected"], 0, "{s}");
    assert_eq!(s["rows_written"]["clickstream"], 50, "{s}");
    assert_eq!(
        v[0],
        serde_json::json!({"n": 50, "app": 20, "products": (0..50).sum::<i64>(), "sales": 20}),
        "{v}"
    );
}
