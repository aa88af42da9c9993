//! The lake as outside tools read it (SPEC 8): DuckDB and pyarrow with Hive partitioning, on
//! the independent test stream. Needs the Python that `scripts/test.sh` sets up
//! (`SILT_PYTHON`, with duckdb and pyarrow).

mod common;

use common::*;

#[test]
fn duckdb_and_pyarrow_read_the_lake_as_it_is() {
    let python = match std::env::var("SILT_PYTHON") {
        Ok(p) => p,
        Err(_) => {
            assert!(
                std::env::var_os("SILT_REQUIRE_STAND_INS").is_none(),
                "SILT_PYTHON is not set"
            );
            eprintln!("skipped: no Python with duckdb and pyarrow (run scripts/test.sh)");
            return;
        }
    };
    let data = testdata();
    let dir = tempfile::tempdir().unwrap();
    register(
        dir.path(),
        &[&data.join("schemas/v1.avsc"), &data.join("schemas/v2.avsc")],
    );
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
    let out = run_ok(
        std::process::Command::new(&python)
            .arg("-c")
            .arg(script)
            .arg(&lake),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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
