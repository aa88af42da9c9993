//! The command line: errors name what is wrong, exit codes mean something.

mod common;

use common::*;
use silt_wire::WriterRef;

#[test]
fn unknown_job_keys_are_named_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let job = write_job(dir.path(), "j", dir.path(), "tabel = 3\n");
    let out = silt().arg("run").arg(&job).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field `tabel`"), "{err}");
}

/// A reference table whose file is not there is named with its path when the job is read
/// (it came as DataFusion's "No files found ... cannot infer schema", under the context of
/// the reader schema).
#[test]
fn a_missing_reference_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let job = write_job(
        dir.path(),
        "j",
        dir.path(),
        "\n[[reference]]\nname = \"sales\"\npath = \"nosuch.csv\"\n",
    );
    let out = silt().arg("run").arg(&job).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[[reference]] sales: cannot read ") && err.contains("nosuch.csv"),
        "{err}"
    );
}

/// A folder where `silt demo` ran over 1,000 events: its lake in `lake/`.
fn demo_lake() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    run_ok(
        silt()
            .args(["demo", "--events", "1000", "--dir"])
            .arg(dir.path()),
    );
    dir
}

/// `silt registry COMMAND --registry REG FILE`.
fn registry_command(reg: &str, command: &str, file: &std::path::Path) -> std::process::Command {
    let mut c = silt();
    c.args(["registry", command, "--registry", reg]).arg(file);
    c
}

/// Nothing but version 1 of `subject` is registered.
fn assert_only_version_1(reg: &str, subject: &str) {
    let out = run_ok(silt().args(["registry", "show", "--registry", reg, subject]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("version 1") && !text.contains("version 2"),
        "{text}"
    );
}

#[test]
fn registry_check_reports_each_offending_field() {
    let dir = tempfile::tempdir().unwrap();
    let reg = format!("file://{}", dir.path().join("registry").display());
    let v1 = dir.path().join("v1.avsc");
    std::fs::write(&v1, silt::gen::V1).unwrap();
    let bad = dir.path().join("bad.avsc");
    std::fs::write(
        &bad,
        silt::gen::V1.replace(
            r#"{"name":"productId","type":"long"}"#,
            r#"{"name":"productId","type":"string"},{"name":"shop","type":"string"}"#,
        ),
    )
    .unwrap();
    run_ok(&mut registry_command(&reg, "register", &v1));
    let out = registry_command(&reg, "check", &bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("/fields/productId/type\ttype changed from `long` to `string`"),
        "{report}"
    );
    assert!(
        report.contains("/fields/shop\treader field has no default"),
        "{report}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 offending field(s)"), "{err}");
    // Registering it is refused the same way, and nothing is registered.
    let out = registry_command(&reg, "register", &bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let refusal = String::from_utf8_lossy(&out.stdout);
    assert!(
        refusal.contains("/fields/productId/type\ttype changed from `long` to `string`")
            && refusal.contains("/fields/shop\treader field has no default"),
        "{refusal}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 offending field(s)"), "{err}");
    assert_only_version_1(&reg, silt::gen::SUBJECT);
    // A rule of the lake's, not of compatibility: said as what it is.
    let cased = dir.path().join("cased.avsc");
    std::fs::write(
        &cased,
        silt::gen::V1.replace(
            r#"{"name":"productId","type":"long"}"#,
            r#"{"name":"productId","type":"long"},{"name":"ProductId","type":"long","default":0}"#,
        ),
    )
    .unwrap();
    let out = registry_command(&reg, "check", &cased).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot be registered: /fields/ProductId: fields `productId` and `ProductId` differ only in case"),
        "{err}"
    );
}

/// A schema that differs from a registered version only where the fingerprint does not look
/// (a logical type) is neither "already registered" nor called incompatible: both commands
/// say which version has its fingerprint and what differs, and exit 1.
#[test]
fn registry_commands_refuse_a_schema_sharing_a_versions_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let reg = format!("file://{}", dir.path().join("registry").display());
    let schema = |unit: &str| {
        format!(
            r#"{{"type":"record","name":"Paid","namespace":"shop.v1","fields":[
            {{"name":"uuid","type":"gfc.avro.UUID"}},
            {{"name":"at","type":{{"type":"long","logicalType":"timestamp-{unit}"}}}}]}}"#
        )
    };
    let (v1, micros) = (dir.path().join("v1.avsc"), dir.path().join("micros.avsc"));
    std::fs::write(&v1, schema("millis")).unwrap();
    std::fs::write(&micros, schema("micros")).unwrap();
    run_ok(&mut registry_command(&reg, "register", &v1));
    let out = registry_command(&reg, "check", &micros).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains(
            "/fields/at/type\tlogical type changed from timestamp-millis to timestamp-micros"
        ),
        "{report}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("version 1 of shop.v1.Paid has its fingerprint") && !err.contains("BACKWARD"),
        "{err}"
    );
    let out = registry_command(&reg, "register", &micros)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("of version 1 of `shop.v1.Paid`")
            && err.contains("/fields/at/type: logical type changed"),
        "{err}"
    );
    // A schema no job could store is said to be so by `check` too, before any rule.
    let tree = dir.path().join("tree.avsc");
    std::fs::write(
        &tree,
        schema("millis").replace(
            r#"{"name":"uuid","type":"gfc.avro.UUID"},"#,
            r#"{"name":"uuid","type":"gfc.avro.UUID"},{"name":"next","type":["null","Paid"]},"#,
        ),
    )
    .unwrap();
    let out = registry_command(&reg, "check", &tree).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot be registered: /fields/next/type: record `shop.v1.Paid` holds itself"),
        "{err}"
    );
    assert_only_version_1(&reg, "shop.v1.Paid");
}

/// `silt sql ARGS` with `script` piped in and `home` as its home (its history file), to its end.
fn silt_sql(args: &[&str], home: &std::path::Path, script: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = silt()
        .arg("sql")
        .args(args)
        .env("HOME", home)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(script).unwrap();
    child.wait_with_output().unwrap()
}

/// Statements piped into `silt sql` fail the command when one failed (a script must not pass
/// over an error); each error is on stderr, the others' results on stdout.
#[test]
fn sql_with_statements_piped_in_exits_1_when_one_failed() {
    let dir = tempfile::tempdir().unwrap();
    let lake = format!("file://{}", dir.path().display());
    let sql = |script: &str| silt_sql(&["--lake", &lake], dir.path(), script.as_bytes());
    let out = sql("SELECT 1 AS one;\nSELECT nope;\nSELECT 2 AS two;\n");
    assert_eq!(out.status.code(), Some(1));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        stdout.contains("| one") && stdout.contains("| two"),
        "{stdout}"
    );
    assert!(
        stderr.contains("nope") && stderr.contains("1 of 3 statement(s) failed"),
        "{stderr}"
    );
    let out = sql("SELECT 1 AS one;\n");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A last statement without its ';' is run, as psql runs one (it was dropped silently);
    // its error fails the command like any other's.
    let out = sql("SELECT 1 AS one;\nSELECT 3\n  AS three");
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("| three") && stdout.contains("| 3 "),
        "{stdout}"
    );
    let out = sql("SELECT 1 AS one;\nSELECT nope");
    assert_eq!(out.status.code(), Some(1));
    // A script saved with a byte order mark (a Windows editor's) reads as without.
    let out = sql("\u{feff}SELECT 4 AS four;\n");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("| four"));
}

#[test]
fn demo_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_ok(
        silt()
            .args(["demo", "--events", "3000", "--dir"])
            .arg(dir.path()),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("rows written       3000   to clickstream"),
        "{text}"
    );
    assert!(text.contains("| reason_code"), "{text}");
    // Again in the same folder: a new stream and a new lake, not the old lake's checkpoint
    // over a new stream (which read nothing and showed the old lake).
    let out = run_ok(
        silt()
            .args(["demo", "--events", "2000", "--dir"])
            .arg(dir.path()),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("starting afresh"), "{text}");
    assert!(
        text.contains("rows written       2000   to clickstream"),
        "{text}"
    );
}

/// The run's summary says which table the time went to: each transform's SQL, each table's
/// encoding and puts, adding up to the run's `transform`, `encode` and `write` stages.
#[test]
fn a_run_times_each_table_and_the_tables_add_up_to_their_stages() {
    let opts = silt::gen::GenOptions {
        events: 3000,
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let job = generated_job(dir.path(), &opts, "[batch]\nmax_records = 1000\n");
    let s = run_json(&job);
    let tables = s["tables"].as_object().unwrap_or_else(|| panic!("{s}"));
    let secs = |t: &str, k: &str| {
        tables[t][k]
            .as_f64()
            .unwrap_or_else(|| panic!("{t}.{k}: {s}"))
    };
    for t in ["clickstream", "hourly", "sales"] {
        assert!(secs(t, "encode") > 0.0, "{t}: {s}");
    }
    assert!(s["rejected"].as_u64().unwrap() > 0, "{s}");
    assert!(secs("clickstream_rejected", "encode") > 0.0, "{s}");
    // Only the transforms run SQL: the `rows` one on every slice, the `partitions` one as it
    // merges each micro-batch.
    assert_eq!(secs("clickstream", "sql"), 0.0, "{s}");
    assert!(
        secs("sales", "sql") > 0.0 && secs("hourly", "sql") > 0.0,
        "{s}"
    );
    let sum = |k: &str| tables.values().map(|t| t[k].as_f64().unwrap()).sum::<f64>();
    let stage = |k: &str| s["stages"][k].as_f64().unwrap();
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.max(1.0);
    assert!(close(sum("sql"), stage("transform")), "{s}");
    assert!(close(sum("write"), stage("write")), "{s}");
    // Compaction's encoding is the stage's, not a table's.
    if s["files_compacted"] == 0 {
        assert!(close(sum("encode"), stage("encode")), "{s}");
    } else {
        assert!(sum("encode") < stage("encode"), "{s}");
    }

    let dir = tempfile::tempdir().unwrap();
    let job = generated_job(dir.path(), &opts, "[batch]\nmax_records = 1000\n");
    let out = run_ok(silt().arg("run").arg(&job));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |t: &str| {
        text.lines()
            .find(|l| l.contains("rows written") && l.split_whitespace().nth(4) == Some(t))
            .unwrap_or_else(|| panic!("no line for {t}: {text}"))
            .to_string()
    };
    assert!(
        line("sales").contains("SQL") && line("sales").contains("encoding"),
        "{text}"
    );
    assert!(
        !line("clickstream").contains("SQL") && line("clickstream").contains("encoding"),
        "{text}"
    );
}

/// A table whose files cannot be read (one gone, say) leaves the lake's other tables to be
/// queried: it once made every `silt query` and `silt sql` fail. Asked for, it is named with
/// why; `silt sql` says at the start which tables it left out.
#[test]
fn a_table_that_cannot_be_read_leaves_the_others_readable() {
    let dir = demo_lake();
    let hourly = dir.path().join("lake/page_views_hourly");
    let gone = parquet_files(&hourly)
        .pop()
        .expect("a file of page_views_hourly");
    std::fs::remove_file(&gone).unwrap();
    let lake = format!("file://{}", dir.path().join("lake").display());

    let out = run_ok(
        silt()
            .args(["query", "--format", "csv", "--lake", &lake])
            .arg("SELECT count(*) AS n FROM clickstream"),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "n\n1000\n");

    let out = silt()
        .args(["query", "--lake", &lake, "SELECT * FROM page_views_hourly"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let name = gone.file_name().unwrap().to_string_lossy();
    assert!(
        err.contains("table `page_views_hourly` of the lake at")
            && err.contains("cannot be read: reading its schema")
            && err.contains(name.as_ref()),
        "{err}"
    );

    let out = silt_sql(
        &["--format", "csv", "--lake", &lake],
        dir.path(),
        b"SELECT count(*) AS n FROM clickstream;\n\\d page_views_hourly\n",
    );
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("n\n1000\n"), "{text}");
    assert!(
        text.contains("page_views_hourly: cannot be read: "),
        "{text}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: table `page_views_hourly` cannot be read and is left out: "),
        "{err}"
    );
}

#[test]
fn sql_shell_takes_multi_line_statements_and_query_speaks_csv_and_json() {
    let dir = demo_lake();
    let lake = format!("file://{}", dir.path().join("lake").display());
    let out = silt_sql(
        &["--format", "csv", "--lake", &lake],
        dir.path(),
        b"SELECT count(*) AS n\n  FROM clickstream\n  WHERE dt = '2025-11-25';\n\\d\n\\d clickstream\n\\d nope\n\\q\n",
    );
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("n\n1000\n"), "{text}");
    assert!(text.contains("page_views_hourly\t"), "{text}");
    assert!(text.contains("clickstream: 1000 rows in 1 files"), "{text}");
    assert!(text.contains("  productId\tInt64 not null\n"), "{text}");
    assert!(text.contains("  dt\tUtf8"), "{text}");
    assert!(
        text.contains("no table `nope`; the lake's tables: clickstream, "),
        "{text}"
    );

    let out = run_ok(
        silt()
            .args(["query", "--format", "json", "--lake", &lake])
            .arg("SELECT hr, count(*) AS n FROM clickstream GROUP BY hr ORDER BY hr"),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["hr"], "22");
    assert_eq!(v[0]["n"], 1000);
    // A null is a key of null, not a key left out (arrow's writer's default).
    let out = run_ok(
        silt()
            .args(["query", "--format", "json", "--lake", &lake])
            .arg("SELECT 1 AS one, CAST(NULL AS BIGINT) AS none"),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"[{"one":1,"none":null}]"#
    );

    // Avro's camelCase field names need no quotes, and SQL's words any case.
    let out = run_ok(
        silt()
            .args(["query", "--format", "csv", "--lake", &lake])
            .arg(
            "SELECT COUNT(DISTINCT productId) > 1 AS many FROM clickstream WHERE saleId IS NULL",
        ),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "many\ntrue\n");

    // No rows: the columns are still named (a table's header, a CSV's first line), where
    // the table once printed as `++` and the CSV as nothing.
    let none = "SELECT hr, productId FROM clickstream WHERE productId < 0";
    for (format, want) in [
        (
            "table",
            "+----+-----------+\n| hr | productId |\n+----+-----------+\n+----+-----------+\n",
        ),
        ("csv", "hr,productId\n"),
        ("json", "[]\n"),
    ] {
        let out = run_ok(
            silt()
                .args(["query", "--format", format, "--lake", &lake])
                .arg(none),
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), want, "{format}");
    }

    // Lists, structs and maps have no CSV form: each is its value's JSON text (nulls empty).
    let out = run_ok(
        silt()
            .args(["query", "--format", "csv", "--lake", &lake])
            .arg(
                "SELECT make_array(1, 2) AS a, named_struct('k', 'v', 'n', 7) AS s, \
                 map(['src'], ['app']) AS m, CAST(NULL AS INT[]) AS z, hr \
                 FROM clickstream LIMIT 1",
            ),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "a,s,m,z,hr\n\"[1,2]\",\"{\"\"k\"\":\"\"v\"\",\"\"n\"\":7}\",\"{\"\"src\"\":\"\"app\"\"}\",,22\n"
    );

    // A table the lake lacks: one line naming it and the tables there are, exit 1.
    let out = silt()
        .args(["query", "--lake", &lake, "SELECT * FROM clikstream"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no table `clikstream` in the lake"), "{err}");
    assert!(err.contains("clickstream, clickstream_rejected"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let empty = tempfile::tempdir().unwrap();
    let out = silt()
        .args(["query", "--lake"])
        .arg(format!("file://{}", empty.path().display()))
        .arg("SELECT * FROM clickstream")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has no committed table yet"), "{err}");
    // A table's folder given for the lake: told which lake it is in.
    let out = silt()
        .args(["query", "--lake", &format!("{lake}/clickstream")])
        .arg("SELECT count(*) FROM clickstream")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "is the folder of the table `clickstream` of the lake at {lake}, not a lake: give \
             the lake (--lake {lake})"
        )),
        "{err}"
    );
}

#[test]
fn bench_prints_a_table_and_writes_the_spec_keys() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = run_ok(
        silt()
            .args([
                "bench",
                "--events",
                "5000",
                "--gateway-events",
                "2000",
                "--rounds",
                "2",
                "--out",
            ])
            .arg(&json)
            .arg("--dir")
            .arg(dir.path().join("w")),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("job / limit"), "{text}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    for k in [
        "events",
        "job_events_per_sec",
        "limit_events_per_sec",
        "job_to_limit",
        "peak_rss_bytes",
        "stages",
    ] {
        assert!(!v[k].is_null(), "missing {k}: {v}");
    }
    assert_eq!(v["events"], 5000);
    // Job and limit were run in turn, twice, each round over the whole stream into a fresh
    // lake; the ratio reported is one of theirs.
    let rounds = v["rounds"].as_array().expect("rounds");
    assert_eq!(rounds.len(), 2, "{v}");
    assert!(text.contains("rounds (job s / limit s"), "{text}");
    let ratios: Vec<f64> = rounds
        .iter()
        .map(|r| r["job_to_limit"].as_f64().unwrap())
        .collect();
    let reported = v["job_to_limit"].as_f64().unwrap();
    assert!(
        ratios.contains(&reported),
        "{reported} not among {ratios:?}"
    );
    // The kernel's share of the job's CPU is reported beside it, and is a part of it.
    assert!(text.contains("of it in the kernel"), "{text}");
    let part_of = |o: &serde_json::Value, whole: &str, part: &str| {
        let w = o[whole].as_f64().unwrap();
        let p = o[part].as_f64().unwrap_or_else(|| panic!("{part}: {o}"));
        assert!((0.0..=w).contains(&p), "{part} {p} of {whole} {w}");
    };
    part_of(
        &v,
        "cpu_seconds_per_million",
        "kernel_cpu_seconds_per_million",
    );
    for r in rounds {
        part_of(r, "job_cpu_seconds", "job_kernel_cpu_seconds");
    }
    // Peak memory is the job's: taken when the first round's job ended, before any limit
    // held the lake's rows read back.
    assert_eq!(v["peak_rss_bytes"], rounds[0]["peak_rss_bytes"], "{v}");
    assert!(rounds[0]["peak_rss_bytes"].as_u64() <= rounds[1]["peak_rss_bytes"].as_u64());
    // Every stage the issue names, encoding apart from storing, and no time counted twice.
    let stage = |k: &str| {
        v["stages"][k]
            .as_f64()
            .unwrap_or_else(|| panic!("stage {k}: {v}"))
    };
    for k in [
        "read",
        "check",
        "decode",
        "dedup",
        "transform",
        "encode",
        "write",
        "commit",
    ] {
        assert!(stage(k) >= 0.0);
    }
    assert!(stage("encode") > 0.0 && stage("write") > 0.0, "{v}");
    let total: f64 = v["stages"]
        .as_object()
        .unwrap()
        .values()
        .map(|s| s.as_f64().unwrap())
        .sum();
    let job = v["job_seconds"].as_f64().unwrap();
    assert!(
        total <= job * 1.01,
        "stages add up to {total} s of a {job} s job"
    );
    // Table by table: the raw table's and the aggregate's SQL and encoding, each beside the
    // limit's writing of the same table; the identity transform (`SELECT *`) is the raw
    // files' column chunks copied, put apart; the limit's tables are its whole.
    assert!(text.contains("by table (s)"), "{text}");
    let table = |t: &str, k: &str| {
        v["tables"][t][k]
            .as_f64()
            .unwrap_or_else(|| panic!("{t}.{k}: {v}"))
    };
    for t in ["clickstream", "hourly"] {
        assert!(
            table(t, "encode") > 0.0 && table(t, "limit") > 0.0,
            "{t}: {v}"
        );
    }
    assert_eq!(table("clickstream", "sql"), 0.0, "{v}");
    assert!(table("hourly", "sql") > 0.0, "{v}");
    assert_eq!(v["tables"]["identity"]["copied"], true, "{v}");
    assert_eq!(table("identity", "sql"), 0.0, "{v}");
    assert_eq!(table("identity", "encode"), 0.0, "{v}");
    assert!(
        table("identity", "write") > 0.0 && table("identity", "limit") > 0.0,
        "{v}"
    );
    let limits: f64 = v["tables"]
        .as_object()
        .unwrap()
        .values()
        .map(|t| t["limit"].as_f64().unwrap())
        .sum();
    assert!(
        rounds
            .iter()
            .any(|r| (r["limit_seconds"].as_f64().unwrap() - limits).abs() < 1e-6),
        "the tables' limits add up to {limits}, no round's: {v}"
    );
    // The limit writes every row the job wrote: raw, identity and the hourly aggregate.
    assert!(v["rows_written"].as_u64().unwrap() > 10_000, "{v}");
    let body = v["avg_body_bytes"].as_f64().unwrap();
    assert!(
        (120.0..=160.0).contains(&body),
        "bodies of about 150 bytes: {body}"
    );
    assert_eq!(v["gateway"]["events"], 2000, "{v}");
    assert!(v["gateway"]["p99_ms"].as_f64().unwrap() >= v["gateway"]["p50_ms"].as_f64().unwrap());
    assert!(text.contains("gateway events/s"), "{text}");
}

/// The alternatives script (`scripts/bench/alternatives.py`) runs silt's raw-table job on the
/// bench's stream in the same interleaved rounds as the alternatives and reports the median
/// round; `summary.py` takes each ratio to that run. Only the standard library is needed for
/// silt's part, so any Python 3 will do.
#[test]
fn the_bench_script_runs_silts_job_in_rounds_beside_the_alternatives() {
    let python = std::env::var("SILT_PYTHON").unwrap_or_else(|_| "python3".into());
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    let (work, results) = (dir.path().join("w"), dir.path().join("results"));
    std::fs::create_dir_all(&results).unwrap();
    // The bench's job, SQL transforms and all, leaves the stream, registry and job file.
    run_ok(
        silt()
            .args(["bench", "--events", "3000", "--rounds", "1"])
            .args(["--gateway-events", "0", "--out"])
            .arg(results.join("job.json"))
            .arg("--dir")
            .arg(&work),
    );
    let out = results.join("alternatives.json");
    let script = root.join("scripts/bench/alternatives.py");
    run_ok(
        std::process::Command::new(&python)
            .arg(&script)
            .args(["all", "--only", "silt", "--rounds", "3", "--silt"])
            .arg(env!("CARGO_BIN_EXE_silt"))
            .arg("--dir")
            .arg(&work)
            .arg("--out")
            .arg(&out),
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let runs = v.as_array().expect("a list");
    assert_eq!(runs.len(), 1, "{v}");
    let r = &runs[0];
    assert_eq!(r["name"], "silt", "{v}");
    // Every distinct event once, into the raw table.
    assert_eq!(r["events"], 3000, "{v}");
    let mut rounds: Vec<f64> = r["rounds"]
        .as_array()
        .expect("rounds")
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(rounds.len(), 3, "{v}");
    rounds.sort_by(f64::total_cmp);
    let reported = r["events_per_sec_per_core"].as_f64().unwrap();
    assert!(
        (reported - rounds[1]).abs() <= 1.0,
        "{reported} is not the median of {rounds:?}"
    );
    // The raw table only: the bench job's SQL transforms were left out.
    let lake = work.join("alternatives/silt-lake");
    let mut tables: Vec<String> = std::fs::read_dir(&lake)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('_'))
        .collect();
    tables.sort();
    assert_eq!(tables, ["clickstream", "clickstream_rejected"]);
    // The summary's ratios are to silt's run in those rounds: an alternative at a quarter of
    // its speed (written in here; Spark and the others are not installed for tests) is 4x.
    let quarter = serde_json::json!({
        "name": "duckdb",
        "columns": "as silt's raw table",
        "events_per_sec_per_core": reported / 4.0,
        "cpu_seconds_per_million": 1.0,
    });
    let mut both = runs.clone();
    both.push(quarter);
    std::fs::write(&out, serde_json::to_vec(&both).unwrap()).unwrap();
    let out = run_ok(
        std::process::Command::new(&python)
            .arg(root.join("scripts/bench/summary.py"))
            .arg(&results),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("silt run, raw table only, in the rounds below"),
        "{text}"
    );
    assert!(text.contains("rounds, the same table"), "{text}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(results.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        summary["alternatives"]["silt"]["events_per_sec_per_core"], r["events_per_sec_per_core"],
        "{summary}"
    );
    let ratio = summary["alternatives"]["duckdb"]["silt_ratio"]
        .as_f64()
        .unwrap();
    assert!((ratio - 4.0).abs() < 1e-9, "{summary}");
}

#[test]
fn a_job_reads_its_schemas_from_the_registry_service() {
    let data = testdata();
    let dir = tempfile::tempdir().unwrap();
    register_testdata(dir.path());
    let (mut server, base) = serve_registry(dir.path());
    // The CLI speaks to the service too.
    let out = run_ok(silt().args(["registry", "list", "--registry", &base]));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "com.gilt.clickstream.v1.ProductPageViewedEvent"
    );
    let job = write_job(dir.path(), "viahttp", &data.join("stream"), "");
    let text = std::fs::read_to_string(&job).unwrap();
    let text = text.replace(
        &format!("file://{}", dir.path().join("registry").display()),
        &base,
    );
    std::fs::write(&job, text).unwrap();
    let s = run_json(&job);
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(s["rows_written"]["clickstream"], 400, "{s}");
    assert_eq!(s["rejected"], 18, "{s}");
}

/// The test stream re-framed the Confluent way (`00` + the registry's 4-byte id for the
/// record's writer): a job with `framing = "confluent"` resolves each id through the registry
/// and fills the lake with exactly the expected events; records of an unknown writer (an id
/// no schema has) and the stream's other bad records are rejected, not lost.
#[test]
fn a_job_reads_confluent_framed_records_by_registry_id() {
    let data = testdata();
    let dir = tempfile::tempdir().unwrap();
    register_testdata(dir.path());
    let reg = format!("file://{}", dir.path().join("registry").display());
    // `registry show` lists each version with its fingerprint and id.
    let out = run_ok(silt().args([
        "registry",
        "show",
        "--registry",
        &reg,
        "com.gilt.clickstream.v1.ProductPageViewedEvent",
    ]));
    let ids: std::collections::HashMap<String, u32> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.trim().split('\t').collect();
            let id = cols.get(2)?.strip_prefix("id ")?.parse().ok()?;
            Some((cols[1].to_string(), id))
        })
        .collect();
    assert_eq!(ids.len(), 2, "{}", String::from_utf8_lossy(&out.stdout));
    let unused = (1..).find(|i| !ids.values().any(|v| v == i)).unwrap();

    let stream = silt_ingest::FileStream::create(dir.path().join("stream"), 1).unwrap();
    let (mut records, mut unknown) = (0, 0);
    for shard in std::fs::read_dir(data.join("stream")).unwrap() {
        let bytes = std::fs::read(shard.unwrap().path()).unwrap();
        let mut at = 0;
        while at + 12 <= bytes.len() {
            let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            let arrival = u64::from_be_bytes(bytes[at + 4..at + 12].try_into().unwrap());
            let payload = &bytes[at + 12..at + 12 + len];
            at += 12 + len;
            let reframed = match silt_wire::Framing::Envelope.split(payload) {
                Ok(f) => {
                    let WriterRef::Sha256(fp) = f.writer else {
                        unreachable!()
                    };
                    let id = ids.get(&fp.to_hex()).copied().unwrap_or_else(|| {
                        unknown += 1;
                        unused
                    });
                    let mut r = vec![silt_wire::CONFLUENT_MAGIC];
                    r.extend_from_slice(&id.to_be_bytes());
                    r.extend_from_slice(f.body);
                    r
                }
                // Too short or a wrong header: kept as they are, bad in any framing.
                Err(_) => payload.to_vec(),
            };
            stream.append_at(0, &[&reframed], arrival as i64).unwrap();
            records += 1;
        }
    }
    assert_eq!(records, 438);
    assert_eq!(unknown, 3, "the stream's records of an unregistered writer");

    let job = write_job(dir.path(), "confluent", &dir.path().join("stream"), "");
    let text = std::fs::read_to_string(&job).unwrap().replace(
        "type = \"file\"",
        "type = \"file\"\nframing = \"confluent\"",
    );
    std::fs::write(&job, text).unwrap();
    let s = run_json(&job);
    assert_eq!(s["rows_written"]["clickstream"], 400, "{s}");
    assert_eq!(s["rejected"], 18, "{s}");
    assert_lake_holds_expected(&dir.path().join("lake/clickstream"));
}

/// A stream that carries many types (the gateway's `kinesis://NAME` "one river", here a file
/// stream): the job takes its subject's events and passes over the other subject's records,
/// counting them, without rejecting them or stopping.
#[test]
fn a_job_passes_over_records_of_other_subjects_in_its_stream() {
    let data = testdata();
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("ordered.avsc");
    std::fs::write(&other, ORDERS_SCHEMA).unwrap();
    register(
        dir.path(),
        &[
            &data.join("schemas/v1.avsc"),
            &data.join("schemas/v2.avsc"),
            &other,
        ],
    );
    let stream_dir = dir.path().join("river");
    std::fs::create_dir_all(&stream_dir).unwrap();
    for f in std::fs::read_dir(data.join("stream")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), stream_dir.join(f.file_name())).unwrap();
    }
    let orders = silt_wire::Schema::parse(&std::fs::read_to_string(&other).unwrap()).unwrap();
    let ids = silt_wire::timeuuid::TimeUuidGenerator::new([4; 6], 1);
    let records: Vec<Vec<u8>> = (0..5)
        .map(|i| {
            let mut body = Vec::new();
            silt_wire::json::JsonEncoder::new(&orders)
                .encode(
                    &serde_json::json!({
                        "uuid": silt_wire::timeuuid::to_string(&ids.next()),
                        "total": 10.0 * i as f64
                    }),
                    &mut body,
                )
                .unwrap();
            silt_wire::envelope(&orders.fingerprint(), &body)
        })
        .collect();
    let stream = silt_ingest::FileStream::open(&stream_dir).unwrap();
    for r in &records {
        stream.append(1, &[r]).unwrap();
    }

    let job = write_job(dir.path(), "river", &stream_dir, "");
    let s = run_json(&job);
    assert_eq!(s["records_read"], 438 + 5, "{s}");
    assert_eq!(s["other_subjects"], 5, "{s}");
    assert_eq!(s["rejected"], 18, "{s}");
    assert_eq!(s["rows_written"]["clickstream"], 400, "{s}");
    assert_lake_holds_expected(&dir.path().join("lake/clickstream"));
}

/// A record the check passes but arrow-avro refuses (bytes that are not UTF-8, which the
/// latest version reads as a string: a promotion the rules allow) used to fail the run, and
/// every rerun, at the same record. The run now names it, redoes the micro-batch with it
/// rejected as `undecodable`, and lands the others.
#[test]
fn a_record_the_columnar_decoder_refuses_is_rejected_and_the_run_goes_on() {
    const SUBJECT: &str = "com.gilt.notes.v1.NoteEvent";
    let dir = tempfile::tempdir().unwrap();
    let schemas = dir.path().join("schemas");
    std::fs::create_dir_all(&schemas).unwrap();
    let field = |ty: &str| {
        format!(
            r#"{{"type":"record","name":"NoteEvent","namespace":"com.gilt.notes.v1","fields":[
            {{"name":"uuid","type":{{"type":"fixed","name":"UUID","namespace":"gfc.avro","size":16}}}},
            {{"name":"note","type":"{ty}"}}]}}"#
        )
    };
    std::fs::write(schemas.join("v1.avsc"), field("bytes")).unwrap();
    std::fs::write(schemas.join("v2.avsc"), field("string")).unwrap();
    register(
        dir.path(),
        &[&schemas.join("v1.avsc"), &schemas.join("v2.avsc")],
    );
    let v1 = silt_wire::Schema::parse(&field("bytes")).unwrap();
    let ids = silt_wire::timeuuid::TimeUuidGenerator::new([3; 6], 3);
    let stream = silt_ingest::FileStream::create(dir.path().join("stream"), 1).unwrap();
    for note in [&b"first"[..], &[0xc3, 0x28], b"third"] {
        let id = ids.next();
        let mut body = id.to_vec();
        silt_wire::encode::bytes(note, &mut body);
        let arrival = silt_wire::timeuuid::unix_millis(&id).unwrap();
        stream
            .append_at(
                0,
                &[&silt_wire::envelope(&v1.fingerprint(), &body)],
                arrival,
            )
            .unwrap();
    }
    let job = write_job(dir.path(), "notes", &dir.path().join("stream"), "");
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("com.gilt.clickstream.v1.ProductPageViewedEvent", SUBJECT)
        .replace("table = \"clickstream\"", "table = \"notes\"");
    std::fs::write(&job, text).unwrap();
    let s = run_json(&job);
    assert_eq!(s["rows_written"]["notes"], 2, "{s}");
    assert_eq!(s["rejected"], 1, "{s}");
    let v = query(
        dir.path(),
        "SELECT string_agg(note, ',' ORDER BY note) AS notes FROM notes",
    );
    assert_eq!(v[0]["notes"], "first,third", "{v}");
    let v = query(dir.path(), "SELECT reason_code, reason FROM notes_rejected");
    assert_eq!(v[0]["reason_code"], "undecodable", "{v}");
    assert!(
        v[0]["reason"]
            .as_str()
            .unwrap()
            .contains("arrow-avro cannot decode it"),
        "{v}"
    );
    // A re-drive of every rejected record finds it refused again, and leaves it where it is.
    let out = run_ok(
        silt()
            .args(["redrive", "--json", "--reason", "all"])
            .arg(&job),
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["looked_at"], 1, "{r}");
    assert_eq!(r["still_rejected"]["undecodable"], 1, "{r}");
    assert!(r["batch"].is_null(), "{r}");
}

/// A lake copied or moved elsewhere (another folder, another bucket) still finds its commits:
/// the catalog names the jobs' checkpoints below the lake's root.
#[test]
fn a_moved_lake_is_read_where_it_now_is() {
    let dir = demo_lake();
    let moved = dir.path().join("moved-lake");
    std::fs::rename(dir.path().join("lake"), &moved).unwrap();
    let out = run_ok(
        silt()
            .args(["query", "--format", "csv", "--lake"])
            .arg(format!("file://{}", moved.display()))
            .arg("SELECT count(*) AS n FROM clickstream"),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "n\n1000\n");
}

/// `scripts/target-dir.sh`, which the test and bench scripts source, builds where the README's
/// first command (`cargo run`) does, so the README's two commands build silt once: in `cargo
/// run`'s `./target` when it built there first; else in the folder shared by every clone
/// (`$HOME/.cache/silt-target`), which `./target` is made to point to; `CARGO_TARGET_DIR` when set.
#[test]
fn the_scripts_build_where_cargo_run_builds() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("scripts/target-dir.sh");
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let chosen = |clone: &std::path::Path, set: Option<&str>| -> std::path::PathBuf {
        let mut cmd = std::process::Command::new("bash");
        cmd.arg("-c")
            .arg(r#". "$0" && printf %s "$CARGO_TARGET_DIR""#)
            .arg(&script)
            .current_dir(clone)
            .env("HOME", &home)
            .env_remove("CARGO_TARGET_DIR");
        if let Some(set) = set {
            cmd.env("CARGO_TARGET_DIR", set);
        }
        String::from_utf8(run_ok(&mut cmd).stdout).unwrap().into()
    };
    let shared = home.join(".cache/silt-target");

    // A fresh clone (CI's): the shared folder, and `./target` a link to it for `cargo run`.
    let fresh = dir.path().join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    assert_eq!(chosen(&fresh, None), shared);
    assert!(shared.is_dir());
    assert_eq!(std::fs::read_link(fresh.join("target")).unwrap(), shared);
    // And again through that link.
    assert_eq!(chosen(&fresh, None), shared);

    // `cargo run -p silt -- demo` came first and built into `./target`: that folder.
    let ran = dir.path().join("ran");
    std::fs::create_dir_all(ran.join("target/debug")).unwrap();
    assert_eq!(chosen(&ran, None), ran.join("target"));
    assert!(ran.join("target/debug").is_dir());

    // A target folder the user chose is left as it is, and nothing is linked.
    let own = dir.path().join("own");
    std::fs::create_dir_all(&own).unwrap();
    assert_eq!(
        chosen(&own, Some("/elsewhere/target")),
        std::path::PathBuf::from("/elsewhere/target")
    );
    assert!(std::fs::symlink_metadata(own.join("target")).is_err());
}

/// `silt run JOB --check` makes every check a run makes before it reads anything and reports
/// how the run would go (reader schema, each transform's partitions and how it is run),
/// reading nothing from the stream and writing nothing; a transform a run would refuse makes
/// it fail the same way.
#[test]
fn run_check_reports_the_plan_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let opts = silt::gen::GenOptions {
        events: 100,
        ..Default::default()
    };
    let job = generated_job(dir.path(), &opts, &pass_through_transforms(dir.path()));
    let out = silt()
        .args(["run", "--check", "--json"])
        .arg(&job)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Two versions registered: the second is the reader schema.
    assert_eq!(plan["reader_version"], 2, "{plan}");
    assert_eq!(plan["partition_by"], serde_json::json!(["dt", "hr"]));
    let runs: std::collections::BTreeMap<String, String> = plan["transforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["runs"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (name, how) in [
        ("everything", "copied"),
        ("some", "copied"),
        ("filtered", "rows"),
        ("hourly", "merged"),
        ("sales", "rows"),
    ] {
        assert_eq!(
            runs.get(name).map(String::as_str),
            Some(how),
            "{name}: {plan}"
        );
    }
    let hourly = plan["transforms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "hourly")
        .unwrap();
    assert_eq!(hourly["partition_by"], serde_json::json!(["dt", "hr"]));
    assert!(
        hourly["columns"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "views" && c["type"] == "Int64"),
        "{hourly}"
    );
    // Nothing read, nothing written: no file in the lake (its folder is made when the job
    // opens it), no checkpoint.
    let files_in_lake = || {
        fn walk(p: &std::path::Path) -> usize {
            std::fs::read_dir(p).map_or(0, |d| {
                d.map(|e| e.unwrap().path())
                    .map(|p| if p.is_dir() { walk(&p) } else { 1 })
                    .sum()
            })
        }
        walk(&dir.path().join("lake"))
    };
    assert_eq!(files_in_lake(), 0);

    let text = silt().args(["run", "--check"]).arg(&job).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("transform      hourly (partitions, by dt, hr): each micro-batch grouped and merged into its partitions"),
        "{text}"
    );

    std::fs::write(
        dir.path().join("sql/hourly.sql"),
        "SELECT dt, hr, \"productId\", count(*) OVER (PARTITION BY \"productId\") AS n FROM events",
    )
    .unwrap();
    let out = silt().args(["run", "--check"]).arg(&job).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("transform `hourly`: its window function `count` has a PARTITION BY that lacks `dt`, `hr`"), "{err}");
    assert_eq!(files_in_lake(), 0);
}
