//! The independent test stream through a job, read back with the `parquet` crate directly.

mod common;

use std::collections::HashMap;

use arrow::array::{Array, StringArray};
use common::*;

#[test]
fn testdata_stream_lands_in_the_lake_exactly() {
    let data = testdata();
    let dir = tempfile::tempdir().unwrap();
    register_testdata(dir.path());
    let job = write_job(
        dir.path(),
        "small",
        &data.join("stream"),
        "[batch]\nmax_records = 100\n",
    );
    let out = run_ok(silt().arg("run").arg(&job));
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("rejected     18"), "{summary}");
    assert!(summary.contains("duplicates dropped       20"), "{summary}");

    assert_lake_holds_expected(&dir.path().join("lake/clickstream"));

    // The rejected table: 18 records with their reasons and raw bytes.
    let rejected: Vec<_> = parquet_files(&dir.path().join("lake/clickstream_rejected"))
        .iter()
        .flat_map(|f| read_parquet(f))
        .collect();
    let mut codes: HashMap<String, usize> = HashMap::new();
    let mut total = 0;
    for b in &rejected {
        let code = b.column(b.schema().index_of("reason_code").unwrap());
        let code = code.as_any().downcast_ref::<StringArray>().unwrap();
        let reason = b.column(b.schema().index_of("reason").unwrap());
        let reason = reason.as_any().downcast_ref::<StringArray>().unwrap();
        for i in 0..b.num_rows() {
            assert!(!reason.value(i).is_empty());
            *codes.entry(code.value(i).to_string()).or_default() += 1;
            total += 1;
        }
    }
    assert_eq!(total, 18);
    assert_eq!(codes["too_short"], 6);
    for c in [
        "bad_header",
        "unknown_fingerprint",
        "bad_body",
        "trailing_bytes",
    ] {
        assert_eq!(codes[c], 3, "{c}");
    }

    // A second run finds nothing new and changes nothing.
    let before = lake_rows(&dir.path().join("lake"));
    let out = run_ok(silt().arg("run").arg(&job));
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 micro-batch(es)"));
    assert_eq!(lake_rows(&dir.path().join("lake")), before);

    // silt query sees the same.
    let out = run_ok(
        silt()
            .args(["query", "--format", "csv", "--lake"])
            .arg(format!("file://{}", dir.path().join("lake").display()))
            .arg("SELECT count(*) AS n, count(DISTINCT uuid) AS d, count(channel) AS c FROM clickstream"),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("expected.json")).unwrap())
            .unwrap();
    let events = expected["events"].as_object().unwrap();
    let with_channel = events.values().filter(|e| !e["channel"].is_null()).count();
    assert_eq!(text.trim(), format!("n,d,c\n400,400,{with_channel}"));
}

/// The producers' usual path: the job runs while only v1 is registered, then v2 (a new
/// optional field) is registered and its events arrive. The next run writes files with the
/// new column beside the older files without it, and silt's reader sees one table: the old
/// rows with the new column null. (`tests/outside_readers.rs` reads the same lake with DuckDB
/// and pyarrow.)
#[test]
fn a_version_registered_between_runs_adds_its_column_to_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let runs = evolved_lake(dir.path());
    assert!(runs[0]["rows_written"]["clickstream"].as_u64().unwrap() > 0);
    let rows = query(
        dir.path(),
        "SELECT count(*) AS n, count(channel) AS with_channel, count(DISTINCT uuid) AS ids FROM clickstream",
    );
    assert_eq!(rows[0]["n"], 400, "{rows}");
    assert_eq!(rows[0]["ids"], 400, "{rows}");
    assert_eq!(rows[0]["with_channel"], expected_with_channel(), "{rows}");
}

/// The BACKWARD changes of a subject: a field added with a default that is not null (a
/// column that the older files lack and that holds no null), and a type promoted (`long` to
/// `double`: older files hold the narrower type). silt's readers give the older rows the
/// default, as Avro reads their events with the new schema, and the newer type. A
/// `partitions` transform over the new columns, filled over every hour of the raw table, and
/// `silt query` agree, the defaults of logical types (a timestamp's) too; a default of a
/// collection (an array's) reads as null.
#[test]
fn fields_added_with_defaults_and_promoted_types_read_as_avro_reads_older_events() {
    let dir = tempfile::tempdir().unwrap();
    evolved_lake(dir.path());
    let mut v3: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(testdata().join("schemas/v2.avsc")).unwrap())
            .unwrap();
    let fields = v3["fields"].as_array_mut().unwrap();
    assert_eq!(fields[1]["name"], "productId");
    fields[1]["type"] = serde_json::json!("double");
    fields.push(serde_json::json!({"name": "region", "type": "string", "default": "eu"}));
    fields.push(serde_json::json!({"name": "rank", "type": "int", "default": 3}));
    fields.push(serde_json::json!({"name": "seen", "default": 0,
        "type": {"type": "long", "logicalType": "timestamp-millis"}}));
    fields.push(serde_json::json!({"name": "tags", "default": [],
        "type": {"type": "array", "items": "string"}}));
    let v3_path = dir.path().join("v3.avsc");
    std::fs::write(&v3_path, v3.to_string()).unwrap();
    register(dir.path(), &[&v3_path]);
    let mut v3_json = v3.clone();
    // One event of v3, an hour after the test stream's.
    let v3 = silt_wire::Schema::parse(&v3.to_string()).unwrap();
    let at = chrono::DateTime::parse_from_rfc3339("2025-11-26T03:00:00Z")
        .unwrap()
        .timestamp_millis();
    let uuid = silt_wire::timeuuid::TimeUuidGenerator::random().next_at_unix_millis(at);
    let stream = silt_ingest::FileStream::open(dir.path().join("stream")).unwrap();
    append_json(
        &stream,
        &v3,
        &serde_json::json!({"uuid": silt_wire::timeuuid::to_string(&uuid), "productId": 1,
            "region": "us", "rank": 5, "seen": at}),
        at,
    );
    let job = write_job(
        dir.path(),
        "evolving",
        &dir.path().join("stream"),
        &transforms(
            dir.path(),
            &[(
                "by_region",
                "SELECT dt, region, rank, count(*) AS n FROM events GROUP BY dt, region, rank",
                "partitions",
            )],
        ),
    );
    let run = run_json(&job);
    assert!(run["filled"]["rows"]["by_region"].is_u64(), "{run}");
    let raw = query(
        dir.path(),
        "SELECT count(*) AS n, count(*) FILTER (WHERE region = 'eu') AS eu, sum(rank) AS ranks, \
         count(*) FILTER (WHERE seen = to_timestamp_millis(0)) AS unseen, count(tags) AS tags, \
         count(productId) AS products, min(arrow_typeof(productId)) AS product_type \
         FROM clickstream",
    );
    assert_eq!(
        raw,
        serde_json::json!([{"n": 401, "eu": 400, "ranks": 1205, "unseen": 400, "tags": 1,
            "products": 401, "product_type": "Float64"}])
    );
    let filled = query(
        dir.path(),
        "SELECT region, rank, sum(n) AS n FROM by_region GROUP BY region, rank ORDER BY region",
    );
    assert_eq!(
        filled,
        serde_json::json!([{"region": "eu", "rank": 3, "n": 400}, {"region": "us", "rank": 5, "n": 1}])
    );

    // A version that drops a field the transform reads stops the job, saying which version.
    v3_json["fields"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f["name"] != "region");
    std::fs::write(&v3_path, v3_json.to_string()).unwrap();
    register(dir.path(), &[&v3_path]);
    let out = silt().arg("run").arg(&job).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("version 4 of subject `com.gilt.clickstream.v1.ProductPageViewedEvent`")
            && err.contains("transform `by_region`")
            && err.contains("No field named region"),
        "{err}"
    );
}

/// A field added to a record within a column (an order's line items gain a `note`): the
/// older files' column lacks it. A `partitions` transform over it, added after the change and
/// so filled over the older files, and `silt query` read it as null in the older rows.
#[test]
fn a_field_added_within_a_record_column_reads_as_null_in_older_rows() {
    let dir = tempfile::tempdir().unwrap();
    let schema = |item_fields: serde_json::Value| {
        event_schema(serde_json::json!([
            {"name": "items", "type": {"type": "array", "items": {"type": "record",
                "name": "Item", "fields": item_fields}}}]))
    };
    let v1 = schema(serde_json::json!([{"name": "sku", "type": "string"}]));
    let v2 = schema(serde_json::json!([{"name": "sku", "type": "string"},
        {"name": "note", "type": "string", "default": ""}]));
    let stream = silt_ingest::FileStream::create(dir.path().join("stream"), 1).unwrap();
    let at = chrono::DateTime::parse_from_rfc3339("2025-11-26T03:00:00Z")
        .unwrap()
        .timestamp_millis();
    let ids = silt_wire::timeuuid::TimeUuidGenerator::random();
    let send = |version: &serde_json::Value, items: serde_json::Value| {
        let schema = registered(dir.path(), version);
        let uuid = silt_wire::timeuuid::to_string(&ids.next_at_unix_millis(at));
        append_json(
            &stream,
            &schema,
            &serde_json::json!({"uuid": uuid, "items": items}),
            at,
        );
    };
    send(&v1, serde_json::json!([{"sku": "a"}, {"sku": "b"}]));
    let job = write_job(dir.path(), "orders", &dir.path().join("stream"), "");
    run_json(&job);
    send(&v2, serde_json::json!([{"sku": "c", "note": "gift"}]));
    let job = write_job(
        dir.path(),
        "orders",
        &dir.path().join("stream"),
        &transforms(
            dir.path(),
            &[(
                "lines",
                "SELECT dt, count(*) AS lines, count(i.note) AS notes \
                 FROM (SELECT dt, unnest(items) AS i FROM events) GROUP BY dt",
                "partitions",
            )],
        ),
    );
    run_json(&job);
    assert_eq!(
        query(dir.path(), "SELECT lines, notes FROM lines"),
        serde_json::json!([{"lines": 3, "notes": 1}])
    );
    assert_eq!(
        query(
            dir.path(),
            "SELECT i.sku AS sku, i.note AS note FROM \
             (SELECT unnest(items) AS i FROM clickstream) ORDER BY sku"
        ),
        serde_json::json!([{"sku": "a", "note": null}, {"sku": "b", "note": null}, {"sku": "c", "note": "gift"}])
    );
}

/// A `--follow` run while the subject evolves: v2 is registered and its events arrive while
/// the run goes on with v1 as its reader. The run must not read them with v1 (their `channel`
/// would be dropped from the lake for good): it starts again with v2 and the lake ends up as
/// if v2 had been there from the start.
#[test]
fn a_follow_run_takes_a_version_registered_while_it_runs() {
    let data = testdata();
    let dir = tempfile::tempdir().unwrap();
    register(dir.path(), &[&data.join("schemas/v1.avsc")]);
    let [first, later] = testdata_split_at_v2();
    let stream = silt_ingest::FileStream::create(dir.path().join("stream"), 1).unwrap();
    append_records(&stream, &first);
    let job = write_job(
        dir.path(),
        "following",
        &dir.path().join("stream"),
        "[batch]\ninterval = \"100ms\"\n",
    );
    let child = spawn_following(&job);
    let committed = || {
        try_query(dir.path(), "SELECT count(*) AS n FROM clickstream")
            .map_or(0, |v| v[0]["n"].as_u64().unwrap())
    };
    let wait_for = |n: u64| {
        for _ in 0..200 {
            let now = committed();
            if now >= n {
                return now;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the lake never reached {n} events");
    };
    let v1_rows = wait_for(1);
    assert!(v1_rows < 400);

    register(dir.path(), &[&data.join("schemas/v2.avsc")]);
    append_records(&stream, &later);
    assert_eq!(wait_for(400), 400);
    // Stopped as a scheduler stops a service: SIGTERM, which must end it as Ctrl-C does.
    let out = interrupt(child, "TERM");
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["reader_changes"], 1, "{s}");
    assert_eq!(s["rows_written"]["clickstream"], 400, "{s}");
    assert_eq!(s["rejected"], 18, "{s}");
    let v = query(
        dir.path(),
        "SELECT count(*) AS n, count(channel) AS with_channel FROM clickstream",
    );
    assert_eq!(v[0]["n"], 400, "{v}");
    assert_eq!(
        v[0]["with_channel"],
        expected_with_channel(),
        "v2 events keep their channel: {v}"
    );
}

/// A `--follow` run whose registry does not answer (its service down or not yet up) waits it
/// out, saying so, and goes on once it answers: it used to exit at the first failed lookup.
#[test]
fn a_follow_run_waits_out_a_registry_that_does_not_answer() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let job = following_testdata_job(dir.path(), "registry", &format!("http://127.0.0.1:{port}"));
    let child = spawn_following(&job);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(
        try_query(dir.path(), "SELECT count(*) AS n FROM clickstream").is_none(),
        "nothing committed while the registry is down"
    );
    // Stopped however the test ends (a server left running holds the test's output open).
    struct Stopped(std::process::Child);
    impl Drop for Stopped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let server = Stopped(spawn_registry(dir.path(), port));
    let mut n = 0;
    for _ in 0..300 {
        n = try_query(dir.path(), "SELECT count(*) AS n FROM clickstream")
            .map_or(0, |v| v[0]["n"].as_u64().unwrap());
        if n == 400 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = interrupt(child, "INT");
    drop(server);
    assert_eq!(n, 400, "the run went on once the registry answered");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("starting again in 1s"), "{err}");
    assert!(err.contains("Connection refused"), "{err}");
}

/// A schema with unions of several types (`["null","string","long"]`, a choice of records)
/// once made `silt run` panic in the Parquet writer (which has no union type), and arrow-avro
/// failed every batch after its first; such a union is now a struct of its branches in the
/// lake, read by `silt query` and by transforms. A field of a record that may be null (a
/// branch's record, `at` below) read 0 where the record was null (arrow-avro fills it, Parquet
/// kept it, DataFusion's `at.x` did not look at `at`): counts and averages were wrong.
#[test]
fn unions_and_records_that_may_be_null_land_and_read_back_as_sent() {
    let dir = tempfile::tempdir().unwrap();
    let schema = event_schema(serde_json::json!([
        {"name": "ref", "type": ["null", "string", "long"], "default": null},
        {"name": "by", "type": ["null",
            {"type": "record", "name": "Person", "fields": [{"name": "name", "type": "string"}]},
            {"type": "record", "name": "Bot", "fields": [{"name": "id", "type": "long"}]}],
         "default": null},
        {"name": "at", "type": ["null", {"type": "record", "name": "Place", "fields": [
            {"name": "x", "type": "long"}]}], "default": null}]));
    let (schema, stream) = registered_with_a_stream(dir.path(), &schema);
    let at = chrono::DateTime::parse_from_rfc3339("2025-11-26T03:00:00Z")
        .unwrap()
        .timestamp_millis();
    let ids = silt_wire::timeuuid::TimeUuidGenerator::random();
    // 20,000 events: more than one batch of the decoder's.
    let refs = [
        serde_json::json!("a"),
        serde_json::json!(7),
        serde_json::Value::Null,
    ];
    let bys = [
        serde_json::json!({"name": "ann"}),
        serde_json::json!({"id": 9}),
        serde_json::Value::Null,
        serde_json::json!({"name": "bo"}),
    ];
    for i in 0..20_000 {
        let uuid = silt_wire::timeuuid::to_string(&ids.next_at_unix_millis(at));
        append_json(
            &stream,
            &schema,
            &serde_json::json!({"uuid": uuid, "ref": refs[i % 3], "by": bys[i % 4],
                "at": (i % 5 == 0).then(|| serde_json::json!({"x": 10}))}),
            at,
        );
    }
    let job = write_job(
        dir.path(),
        "views",
        &dir.path().join("stream"),
        &transforms(
            dir.path(),
            &[
                (
                    "by_kind",
                    "SELECT dt, count(by.\"Person\") AS people, count(by.\"Bot\") AS bots, \
                 count(by.\"Bot\".id) AS bot_ids, sum(ref.long) AS refs, \
                 count(at.x) AS places, avg(at.x) AS x FROM events GROUP BY dt",
                    "partitions",
                ),
                (
                    // Merged micro-batch by micro-batch (count and sum only): rows in memory.
                    "place_sums",
                    "SELECT dt, count(at.x) AS places, sum(at.x) AS x FROM events GROUP BY dt",
                    "partitions",
                ),
                (
                    // Each micro-batch's rows in memory, as decoded.
                    "placed",
                    "SELECT dt, hr, at.x AS x FROM events WHERE at.x IS NOT NULL",
                    "rows",
                ),
            ],
        ),
    );
    run_json(&job);
    assert_eq!(
        query(
            dir.path(),
            "SELECT people, bots, bot_ids, refs, places, x FROM by_kind"
        ),
        serde_json::json!([{"people": 10_000, "bots": 5_000, "bot_ids": 5_000,
            "refs": 7 * 6_667, "places": 4_000, "x": 10.0}])
    );
    assert_eq!(
        query(
            dir.path(),
            "SELECT count(by.\"Person\".name) AS names, count(at.x) AS places, \
             avg(at.x) AS x FROM clickstream"
        ),
        serde_json::json!([{"names": 10_000, "places": 4_000, "x": 10.0}])
    );
    assert_eq!(
        query(dir.path(), "SELECT places, x FROM place_sums"),
        serde_json::json!([{"places": 4_000, "x": 40_000}])
    );
    assert_eq!(
        query(dir.path(), "SELECT count(*) AS n, sum(x) AS x FROM placed"),
        serde_json::json!([{"n": 4_000, "x": 40_000}])
    );
    assert_eq!(
        query(
            dir.path(),
            "SELECT ref, by FROM clickstream ORDER BY CAST(_sequence AS BIGINT) LIMIT 4"
        ),
        serde_json::json!([
            {"ref": {"string": "a", "long": null}, "by": {"Person": {"name": "ann"}, "Bot": null}},
            {"ref": {"string": null, "long": 7}, "by": {"Person": null, "Bot": {"id": 9}}},
            {"ref": null, "by": null},
            {"ref": {"string": "a", "long": null}, "by": {"Person": {"name": "bo"}, "Bot": null}},
        ])
    );
}

/// A table partitioned by a text column whose values hold `/`, `%`, `:`, `=`, spaces...:
/// `silt query` read each as its escaped folder name (`a%2Fb` for `a/b`, `50%25` for
/// `50%`), and a filter on such a value found no row. Each now reads and filters as sent.
/// The folders are named as Hive names them (`a%2Fb`), which outside readers decode once:
/// they were escaped twice (`a%252Fb`, the object store's encoding of Hive's), and a killed
/// writer's file in such a folder was never cleaned up (the clean-up looked for it at a name
/// escaped three times).
#[test]
fn text_partition_values_read_back_as_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (job, values) = text_partitioned_lake(dir.path());
    let got = query(dir.path(), "SELECT channel FROM clickstream ORDER BY n");
    assert_eq!(
        got,
        serde_json::json!(values.map(|v| serde_json::json!({"channel": v})))
    );
    for (n, channel) in values.iter().enumerate() {
        let sql = format!(
            "SELECT n FROM clickstream WHERE channel = '{}'",
            channel.replace('\'', "''")
        );
        assert_eq!(
            query(dir.path(), &sql),
            serde_json::json!([{"n": n}]),
            "{sql}"
        );
    }
    let table = dir.path().join("lake/clickstream");
    let folders = |table: &std::path::Path| {
        let mut v: Vec<String> = std::fs::read_dir(table)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    let mut hive = [
        "web", "a b", "50%25", "a%2Fb", "x%3Ay", "%252F", "\u{fc}", "a%3Db", "a%5Cb", "..",
        "%23%3F&", "a%2520b",
    ]
    .map(|v| format!("channel={v}"))
    .to_vec();
    hive.sort();
    assert_eq!(folders(&table), hive);

    // A killed writer's file in such a folder goes at the next run's start; the live ones stay.
    let live = parquet_files(&table);
    let stray = table.join("channel=a%2Fb/part-0000000000-0009.parquet");
    std::fs::copy(&live[0], &stray).unwrap();
    run_json(&job);
    assert!(!stray.exists(), "the stray file is still there");
    assert_eq!(parquet_files(&table), live);
    assert_eq!(
        query(dir.path(), "SELECT count(*) AS n FROM clickstream"),
        serde_json::json!([{"n": values.len()}])
    );
}

/// Today's UTC date, as `dt` names it.
fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

/// A backfill of `job` over today, which must succeed.
fn backfill_today(job: &std::path::Path) {
    run_ok(&mut backfill_command(job, &today(), &today()));
}

/// Events of `schema` (each `fields` with a fresh uuid) appended to `stream`, arriving now.
fn append_events(
    stream: &silt_ingest::FileStream,
    schema: &silt_wire::Schema,
    events: impl IntoIterator<Item = serde_json::Value>,
) {
    let at = chrono::Utc::now().timestamp_millis();
    let ids = silt_wire::timeuuid::TimeUuidGenerator::random();
    for mut e in events {
        e["uuid"] = silt_wire::timeuuid::to_string(&ids.next_at_unix_millis(at)).into();
        append_json(stream, schema, &e, at);
    }
}

/// A job partitioned by a number column read its folders back as text: a transform's
/// `n + 1` or `sum(n)` worked on the stream's rows but failed wherever the lake was read (the
/// recomputation of a `partitions` transform at the next micro-batch, so the job stopped for
/// good: "sum(Utf8)"; every backfill: "Cannot coerce Utf8 + Int64"), `silt query` compared
/// `n` as text, and a null `n` read as the text `__HIVE_DEFAULT_PARTITION__`. The lake's
/// readers now type partition columns as the job wrote them, a null as null.
#[test]
fn a_number_partition_column_reads_back_as_a_number_wherever_the_lake_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let schema =
        event_schema(serde_json::json!([{"name": "n", "type": ["null", "int"], "default": null}]));
    let (schema, stream) = registered_with_a_stream(dir.path(), &schema);
    let values = [None, Some(1), Some(2), Some(10)];
    let events = || values.map(|n| serde_json::json!({ "n": n }));
    append_events(&stream, &schema, events().into_iter().chain(events()));
    let extra = r#"partition_by = ["dt", "n"]"#.to_string()
        + &transforms(
            dir.path(),
            &[
                ("calc", "SELECT uuid, n + 1 AS m, n, dt FROM events", "rows"),
                (
                    "agg",
                    "SELECT dt, n, count(*) AS c, sum(n) AS s FROM events GROUP BY dt, n",
                    "partitions",
                ),
            ],
        );
    let job = write_job(dir.path(), "numbers", &dir.path().join("stream"), &extra);
    run_json(&job);
    // The next micro-batch merges into (or recomputes) the partitions of `n` it touches.
    append_events(&stream, &schema, events());
    run_json(&job);
    let tables = |dir: &std::path::Path| {
        [
            "SELECT arrow_typeof(n) AS t, count(*) AS c FROM clickstream GROUP BY 1",
            "SELECT n, count(*) AS c FROM clickstream GROUP BY n ORDER BY n",
            "SELECT count(*) AS c FROM clickstream WHERE n > 2",
            "SELECT m, n FROM calc ORDER BY m, uuid",
            "SELECT n, c, s FROM agg ORDER BY n",
        ]
        .map(|sql| query(dir, sql))
    };
    let got = tables(dir.path());
    assert_eq!(got[0], serde_json::json!([{"t": "Int32", "c": 12}]));
    assert_eq!(
        got[1],
        serde_json::json!([{"n": 1, "c": 3}, {"n": 2, "c": 3}, {"n": 10, "c": 3}, {"n": null, "c": 3}])
    );
    assert_eq!(got[2], serde_json::json!([{"c": 3}]));
    let m: Vec<_> = got[3]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["m"].clone())
        .collect();
    let mut expected: Vec<serde_json::Value> =
        [2, 2, 2, 3, 3, 3, 11, 11, 11].map(Into::into).into();
    expected.extend(std::iter::repeat_n(serde_json::Value::Null, 3));
    assert_eq!(m, expected);
    assert_eq!(
        got[4],
        serde_json::json!([
            {"n": 1, "c": 3, "s": 3}, {"n": 2, "c": 3, "s": 6}, {"n": 10, "c": 3, "s": 30},
            {"n": null, "c": 3, "s": null}])
    );
    // A backfill reads the raw table as the stream had it: the same tables.
    backfill_today(&job);
    assert_eq!(tables(dir.path()), got);
}

/// A text partition column that may be null, given `""` by some events and null by others:
/// the lake keeps both in Hive's default partition, which its readers read as null, while a
/// stream's transform saw `""`, and a backfill of it the folder name
/// `__HIVE_DEFAULT_PARTITION__`. Both now see null, as `silt query` does.
#[test]
fn an_empty_text_partition_value_reads_as_null_on_the_stream_and_in_the_lake() {
    let dir = tempfile::tempdir().unwrap();
    let schema = event_schema(serde_json::json!([
        {"name": "channel", "type": ["null", "string"], "default": null}]));
    let (schema, stream) = registered_with_a_stream(dir.path(), &schema);
    append_events(
        &stream,
        &schema,
        ["", "web", ""]
            .map(|c| serde_json::json!({ "channel": c }))
            .into_iter()
            .chain([serde_json::json!({ "channel": null })]),
    );
    let extra = r#"partition_by = ["dt", "channel"]"#.to_string()
        + &transforms(
            dir.path(),
            &[(
                "seen",
                "SELECT uuid, channel AS c, channel IS NULL AS none, dt FROM events",
                "rows",
            )],
        );
    let job = write_job(dir.path(), "channels", &dir.path().join("stream"), &extra);
    run_json(&job);
    let seen = "SELECT c, none, count(*) AS n FROM seen GROUP BY c, none ORDER BY c";
    let expected =
        serde_json::json!([{"c": "web", "none": false, "n": 1}, {"c": null, "none": true, "n": 3}]);
    assert_eq!(query(dir.path(), seen), expected);
    assert_eq!(
        query(
            dir.path(),
            "SELECT count(*) AS n FROM clickstream WHERE channel IS NULL"
        ),
        serde_json::json!([{"n": 3}])
    );
    backfill_today(&job);
    assert_eq!(query(dir.path(), seen), expected);
}

/// A job whose stream has had no bad record: its rejected table was "no table
/// `clickstream_rejected`" to `silt query` (an alert counting rejections failed on a lake that
/// was doing well). It is a table of no rows, with its columns.
#[test]
fn a_rejected_table_that_no_record_has_reached_reads_as_empty() {
    let dir = tempfile::tempdir().unwrap();
    let schema = event_schema(serde_json::json!([]));
    one_event_now(dir.path(), &schema, serde_json::json!({}));
    let job = write_job(dir.path(), "clean", &dir.path().join("stream"), "");
    assert_eq!(run_json(&job)["rejected"], 0);
    assert_eq!(
        query(
            dir.path(),
            "SELECT count(*) AS n, count(reason) AS r, count(dt) AS d FROM clickstream_rejected"
        ),
        serde_json::json!([{"n": 0, "r": 0, "d": 0}])
    );
}

/// A float partition column holding `-0.0` and `0.0`: the raw table had both folders while
/// a `GROUP BY` makes them one group, so a `partitions` transform's stream output for `-0.0`
/// landed in `price=0.0`, and a backfill, replacing the output partition `-0.0` it maps the
/// raw one to, left the stream's rows beside its own (counted twice). `-0.0` is kept as
/// `0.0`, one folder.
#[test]
fn a_float_partition_keeps_negative_zero_as_zero() {
    let dir = tempfile::tempdir().unwrap();
    let schema = event_schema(serde_json::json!([{"name": "price", "type": "double"}]));
    let (schema, stream) = registered_with_a_stream(dir.path(), &schema);
    append_events(
        &stream,
        &schema,
        [-0.0, 0.0, 1.5].map(|p| serde_json::json!({ "price": p })),
    );
    let extra = r#"partition_by = ["dt", "price"]"#.to_string()
        + &transforms(
            dir.path(),
            &[(
                "prices",
                "SELECT dt, price, count(*) AS n FROM events GROUP BY dt, price",
                "partitions",
            )],
        );
    let job = write_job(dir.path(), "prices", &dir.path().join("stream"), &extra);
    run_json(&job);
    let day = today();
    let folders: Vec<String> =
        std::fs::read_dir(dir.path().join(format!("lake/clickstream/dt={day}")))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
    assert!(!folders.iter().any(|f| f.contains("-0")), "{folders:?}");
    let prices = "SELECT price, n FROM prices ORDER BY price";
    let expected = serde_json::json!([{"price": 0.0, "n": 2}, {"price": 1.5, "n": 1}]);
    assert_eq!(query(dir.path(), prices), expected);
    backfill_today(&job);
    assert_eq!(query(dir.path(), prices), expected);
}

/// A `silt sql` session left open while a job runs: it read the commits of its start until
/// `\r`, so an analyst watching the lake saw old counts, and once a micro-batch had recomputed
/// an hour of a `partitions` transform (deleting its earlier file) a statement over it could
/// fail with "Object at location ... not found". Each statement now reads the latest commits,
/// as `silt query` does (and one that a commit races is run again over the newer ones).
#[test]
fn a_sql_session_reads_the_latest_commits_at_each_statement() {
    use std::io::{BufRead, Write};
    let dir = tempfile::tempdir().unwrap();
    let schema = event_schema(serde_json::json!([]));
    let (schema, stream) = registered_with_a_stream(dir.path(), &schema);
    let three = || std::iter::repeat_n(serde_json::json!({}), 3);
    append_events(&stream, &schema, three());
    let extra = transforms(
        dir.path(),
        &[(
            "ids",
            "SELECT dt, hr, count(DISTINCT uuid) AS u FROM events GROUP BY dt, hr",
            "partitions",
        )],
    );
    let job = write_job(dir.path(), "ids", &dir.path().join("stream"), &extra);
    run_json(&job);
    let mut sql = silt()
        .args(["sql", "--format", "csv", "--lake"])
        .arg(format!("file://{}", dir.path().join("lake").display()))
        .env("HOME", dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = sql.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(sql.stdout.take().unwrap());
    let mut result = || {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            assert!(stdout.read_line(&mut line).unwrap() > 0, "{lines:?}");
            if line.contains("row(s) in") {
                return lines;
            }
            lines.push(line.trim().to_string());
        }
    };
    let statement = b"SELECT u FROM ids;\n";
    stdin.write_all(statement).unwrap();
    assert_eq!(result().last().unwrap(), "3");
    // The job recomputes the hour: a new file for it, the old one deleted.
    append_events(&stream, &schema, three());
    run_json(&job);
    stdin.write_all(statement).unwrap();
    assert_eq!(result().last().unwrap(), "6");
    drop(stdin);
    let out = sql.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A job whose `partition_by` changed after its first run wrote the new files in the new
/// layout beside the old (`dt=.../hr=.../country=.../` beside `dt=.../hr=.../`) while its commits kept the
/// old columns: one table of two layouts, rows missing to readers of either. A transform
/// whose SQL came to select other partition columns did the same to its table. Each is
/// refused (`run`, `--check`), naming the table, both layouts and the way out.
#[test]
fn a_tables_partition_columns_cannot_change_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let schema = event_schema(serde_json::json!([{"name": "country", "type": "string"}]));
    one_event_now(dir.path(), &schema, serde_json::json!({"country": "US"}));
    let hourly = |sql: &str| transforms(dir.path(), &[("hourly", sql, "partitions")]);
    let by_hour = "SELECT dt, hr, count(*) AS n FROM events GROUP BY dt, hr";
    let stream = dir.path().join("stream");
    let job = write_job(dir.path(), "j", &stream, &hourly(by_hour));
    run_json(&job);
    let by_country = format!(
        "partition_by = [\"dt\", \"hr\", \"country\"]\n{}",
        hourly(by_hour)
    );
    refused(
        &write_job(dir.path(), "j", &stream, &by_country),
        &[
            "the raw table `clickstream`",
            "[\"dt\", \"hr\"]",
            "[\"dt\", \"hr\", \"country\"]",
        ],
    );
    let by_day = "SELECT dt, count(*) AS n FROM events GROUP BY dt";
    refused(
        &write_job(dir.path(), "j", &stream, &hourly(by_day)),
        &[
            "transform `hourly`",
            "[\"dt\", \"hr\"]",
            "[\"dt\"]",
            "another name",
        ],
    );
    // As it was, it runs on.
    run_json(&write_job(dir.path(), "j", &stream, &hourly(by_hour)));
}

/// A job file copied for a second stream with its `table` left as it was wrote its files
/// under the same names as the first job's (`part-0000000000-0000.parquet` over the first
/// job's file), each job deleted after a crash the other's files as its own leftovers, and
/// the catalog named whichever ran last: the other's rows were gone to readers. A job whose
/// table another job writes is refused, naming the job and the way out; a renamed job that
/// names its old commit log goes on.
#[test]
fn two_jobs_cannot_write_one_table() {
    let dir = tempfile::tempdir().unwrap();
    let hourly = first_job_and_a_second_stream(dir.path());
    let copied = write_job(dir.path(), "copied", &dir.path().join("eu"), &hourly);
    refused(
        &copied,
        &[
            "table `clickstream` is written by job `first`",
            "this job, `copied`",
            "[lake] table",
            "[checkpoint] location",
        ],
    );
    let rows = "SELECT country FROM clickstream ORDER BY country";
    assert_eq!(
        query(dir.path(), rows),
        serde_json::json!([{"country": "US"}])
    );
    // Renamed, with the first job's commit log named: the same job, going on.
    let log = dir.path().join("lake/_silt/checkpoints/first");
    let renamed = write_job(
        dir.path(),
        "copied",
        &dir.path().join("stream"),
        &format!(
            "[checkpoint]\nlocation = \"file://{}\"\n{hourly}",
            log.display()
        ),
    );
    let summary = run_json(&renamed);
    assert_eq!(summary["records_read"], 0, "{summary}");
    assert_eq!(
        query(dir.path(), rows),
        serde_json::json!([{"country": "US"}])
    );
}

/// A job file copied for a second stream with its `name` (so its commit log) left as it was
/// took up the first stream's positions in the second: offsets of another file stream (here
/// past the second stream's one record, which was skipped without a word), sequence numbers
/// of another Kinesis stream. Such a run is refused, naming both streams.
#[test]
fn a_job_cannot_take_up_another_streams_positions() {
    let dir = tempfile::tempdir().unwrap();
    let hourly = first_job_and_a_second_stream(dir.path());
    let moved = write_job(dir.path(), "first", &dir.path().join("eu"), &hourly);
    refused(
        &moved,
        &[
            "holds positions in the stream `stream`",
            "now reads the stream `eu`",
            "another `name`",
        ],
    );
    // Under a name of its own it reads the second stream from its start.
    let own = write_job(dir.path(), "eu", &dir.path().join("eu"), "");
    with_table(&own, "eu");
    run_json(&own);
    let rows = "SELECT country FROM eu";
    assert_eq!(
        query(dir.path(), rows),
        serde_json::json!([{"country": "FR"}])
    );
}

/// A job whose `[lake] table` was renamed went on into a new, empty raw table: the stream's
/// earlier events were behind its positions, and each hour its `partitions` transform then
/// recomputed from the new table lost the rows written before (an hourly count of 2 became
/// 1). Such a job is refused, naming the tables its commits hold.
#[test]
fn a_jobs_raw_table_cannot_be_renamed_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let hourly = first_job_and_a_second_stream(dir.path());
    let job = write_job(dir.path(), "first", &dir.path().join("stream"), &hourly);
    with_table(&job, "clicks");
    refused(
        &job,
        &[
            "[lake] table: the job's commits hold no table `clicks` (they hold clickstream",
            "put `table` back",
        ],
    );
    let out = backfill_command(&job, "2000-01-01", "2100-01-01")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no raw table `clicks`"), "{err}");
}

/// A transform whose SQL gives two columns differing only in case would write a table Spark
/// refuses to read ("the column `n` already exists"): `run` and `run --check` refuse it.
#[test]
fn a_transform_whose_columns_differ_only_in_case_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let schema = event_schema(serde_json::json!([{"name": "country", "type": "string"}]));
    one_event_now(dir.path(), &schema, serde_json::json!({"country": "US"}));
    let sql = transforms(
        dir.path(),
        &[(
            "counts",
            "SELECT dt, hr, count(*) AS n, count(DISTINCT country) AS \"N\" FROM events GROUP BY dt, hr",
            "partitions",
        )],
    );
    let job = write_job(dir.path(), "cased", &dir.path().join("stream"), &sql);
    refused(
        &job,
        &[
            "transform `counts`: its columns `n` and `N` differ only in case",
            "rename one in its SQL",
        ],
    );
}

/// Rewrites a job file of [`write_job`] to name its raw table `table`.
fn with_table(job: &std::path::Path, table: &str) {
    let text = std::fs::read_to_string(job).unwrap();
    let text = text.replace("table = \"clickstream\"", &format!("table = {table:?}"));
    std::fs::write(job, text).unwrap();
}

/// `silt run JOB` and `silt run JOB --check` both exit 1, their stderr saying each of `what`.
fn refused(job: &std::path::Path, what: &[&str]) {
    for check in [false, true] {
        let mut cmd = silt();
        cmd.arg("run").arg(job);
        if check {
            cmd.arg("--check");
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        for w in what {
            assert!(err.contains(w), "{w}: {err}");
        }
    }
}

/// A job `first` (a `partitions` transform `hourly`, whose job-file text it returns) run over
/// a stream `dir/stream` of one event from the US, and a second stream `dir/eu` of one event
/// from France at the same time.
fn first_job_and_a_second_stream(dir: &std::path::Path) -> String {
    let schema = event_schema(serde_json::json!([{"name": "country", "type": "string"}]));
    let at = one_event_now(dir, &schema, serde_json::json!({"country": "US"}));
    let hourly = transforms(
        dir,
        &[(
            "hourly",
            "SELECT dt, hr, count(*) AS n FROM events GROUP BY dt, hr",
            "partitions",
        )],
    );
    run_json(&write_job(dir, "first", &dir.join("stream"), &hourly));
    let eu = silt_ingest::FileStream::create(dir.join("eu"), 1).unwrap();
    let uuid = silt_wire::timeuuid::TimeUuidGenerator::random().next_at_unix_millis(at);
    let event = serde_json::json!({"uuid": silt_wire::timeuuid::to_string(&uuid), "country": "FR"});
    append_json(
        &eu,
        &silt_wire::Schema::parse(&schema.to_string()).unwrap(),
        &event,
        at,
    );
    hourly
}

/// `schema` registered, and a stream at `dir/stream` of one event: `fields` with a fresh uuid
/// of now. Returns its time (ms).
fn one_event_now(
    dir: &std::path::Path,
    schema: &serde_json::Value,
    mut fields: serde_json::Value,
) -> i64 {
    let (schema, stream) = registered_with_a_stream(dir, schema);
    let at = chrono::Utc::now().timestamp_millis();
    fields["uuid"] = silt_wire::timeuuid::to_string(
        &silt_wire::timeuuid::TimeUuidGenerator::random().next_at_unix_millis(at),
    )
    .into();
    append_json(&stream, &schema, &fields, at);
    at
}

/// A partition column that is a record or a list made `silt run` fail at its first record
/// with "Cast error: Casting from Struct(...) to Utf8 not supported" (a list was cut into
/// folders named by its printed text, the values lost), and one the events lack failed there
/// too. Each is refused before a record is read, naming the column and the rule.
#[test]
fn a_partition_column_that_is_missing_or_not_a_plain_value_is_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let schema = event_schema(serde_json::json!([
        {"name": "pay", "type": ["null", {"type": "record", "name": "Pay", "fields": [
            {"name": "amount", "type": "long"}]}], "default": null},
        {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []}]));
    one_event_now(
        dir.path(),
        &schema,
        serde_json::json!({"pay": {"amount": 1}, "tags": ["a"]}),
    );
    for (column, says) in [
        (
            "pay",
            "[lake] partition_by: `pay` is Struct(\"amount\": Int64), not a plain value",
        ),
        (
            "tags",
            "[lake] partition_by: `tags` is List(non-null Utf8), not a plain value",
        ),
        (
            "nope",
            "[lake] partition_by: no column `nope` (the columns: uuid, pay, tags, ",
        ),
    ] {
        let job = write_job(
            dir.path(),
            column,
            &dir.path().join("stream"),
            &format!(r#"partition_by = ["dt", "{column}"]"#),
        );
        let out = silt().args(["run"]).arg(&job).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{column}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{column}: {err}");
        assert!(
            parquet_files(&dir.path().join("lake")).is_empty(),
            "{column}: nothing written"
        );
    }
}

#[test]
fn an_event_field_named_as_a_time_partition_is_refused_rather_than_taking_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let schema = event_schema(serde_json::json!([{"name": "hr", "type": "int"}]));
    let at = one_event_now(dir.path(), &schema, serde_json::json!({"hr": 99}));
    // The producer is told at registration (here: the check of the same schema again).
    let check = silt()
        .args(["registry", "check", "--registry"])
        .arg(format!("file://{}", dir.path().join("registry").display()))
        .arg(dir.path().join("schema.avsc"))
        .output()
        .unwrap();
    let note = String::from_utf8_lossy(&check.stderr);
    assert!(
        note.contains("note: /fields/hr: `hr` is also the name of a time partition column"),
        "{note}"
    );
    // The default partitions (dt, hr): the events' `hr` would have named the folders (hr=99).
    let job = write_job(dir.path(), "clicks", &dir.path().join("stream"), "");
    let out = silt().args(["run"]).arg(&job).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[lake] partition_by: `hr` is the event time's UTC hour, but the events have a field `hr` of their own"),
        "{err}"
    );
    assert!(parquet_files(&dir.path().join("lake")).is_empty());
    // Partitioned by the date alone, `hr` is one of the events' columns like any other.
    let job = write_job(
        dir.path(),
        "by_date",
        &dir.path().join("stream"),
        r#"partition_by = ["dt"]"#,
    );
    run_json(&job);
    let today = chrono::DateTime::from_timestamp_millis(at)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string();
    assert_eq!(
        query(dir.path(), "SELECT dt, hr FROM clickstream"),
        serde_json::json!([{"dt": today, "hr": 99}])
    );
}
