//! `silt bench`: the job against the Parquet-write limit, on this machine.
//!
//! Generates events into a file stream (both clickstream schema versions, 5% repeats, bad
//! records), runs the real job in this process (decode, dedup, an identity SQL transform and
//! an hourly aggregate, zstd Parquet to local disk, commits), then writes the same output
//! batches to Parquet with the same settings and nothing else: the limit. Prints a table and
//! writes JSON (SPEC 9's keys). Use a release build: `cargo run --release -p silt -- bench`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;
use silt_ingest::FileStream;
use silt_registry::SchemaRegistry;

use crate::gen::{self, GenOptions};
use crate::job::{self, Job, RunOptions};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Distinct events to generate.
    #[arg(long, default_value_t = 2_000_000)]
    pub events: usize,
    /// Write the figures as JSON here too.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Work folder (default: a new temporary folder, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// The figures.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub events: u64,
    pub records_read: u64,
    pub input_bytes: u64,
    pub job_seconds: f64,
    pub job_cpu_seconds: f64,
    pub job_events_per_sec: f64,
    pub job_mb_per_sec: f64,
    pub cpu_seconds_per_million: f64,
    pub limit_seconds: f64,
    pub limit_events_per_sec: f64,
    pub job_to_limit: f64,
    pub peak_rss_bytes: u64,
    pub stages: std::collections::BTreeMap<String, f64>,
    pub build: &'static str,
}

/// CPU seconds used by this process so far (user + system), from /proc.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// Peak resident memory of this process (VmHWM), in bytes.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

pub async fn run(args: BenchArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let (dir, temporary) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("silt-bench-{}", std::process::id())),
            true,
        ),
    };
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let registry = silt_registry::open("file://registry", &dir)?;
    registry.register(gen::SUBJECT, gen::V1).await?;
    registry.register(gen::SUBJECT, gen::V2).await?;
    let stream = FileStream::create(dir.join("stream"), 2)?;
    let t = Instant::now();
    let g = gen::generate(
        &stream,
        &GenOptions {
            events: args.events,
            step_ms: 2,
            products: 5000,
            ..Default::default()
        },
    )?;
    eprintln!(
        "generated {} events ({} bytes) in {:.1}s",
        g.distinct,
        g.bytes,
        t.elapsed().as_secs_f64()
    );
    std::fs::create_dir_all(dir.join("sql"))?;
    std::fs::write(dir.join("sql/identity.sql"), "SELECT * FROM events")?;
    std::fs::write(
        dir.join("sql/hourly.sql"),
        crate::cmd::demo::PAGE_VIEWS_HOURLY_SQL,
    )?;
    let job_path = dir.join("bench.toml");
    std::fs::write(
        &job_path,
        format!(
            r#"name = "bench"
[source]
type = "file"
path = "stream"
[schema]
registry = "file://registry"
subject = "{}"
[lake]
location = "file://lake"
table = "clickstream"
compression = "zstd(1)"
[[transform]]
name = "identity"
sql = "sql/identity.sql"
[[transform]]
name = "hourly"
sql = "sql/hourly.sql"
mode = "partitions"
[batch]
max_records = 500000
"#,
            gen::SUBJECT
        ),
    )?;
    let job = Job::load(&job_path).await?;
    let cpu0 = cpu_seconds();
    let t = Instant::now();
    let summary = job::run(
        &job,
        &RunOptions {
            progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            ..Default::default()
        },
    )
    .await?;
    let job_seconds = t.elapsed().as_secs_f64();
    let job_cpu = cpu_seconds() - cpu0;

    // The limit: the raw table's rows, written again with the same settings, nothing else.
    let lake = silt_storage::open("file://lake", &dir)?;
    let batches = crate::cmd::query::query(&lake, "SELECT * FROM clickstream")
        .await
        .context("reading the raw table back")?;
    let limit_dir = silt_storage::open("file://limit", &dir)?;
    let partition_by = vec!["dt".to_string(), "hr".to_string()];
    let t = Instant::now();
    let mut n = 0u64;
    for (i, chunk) in batches.chunks(64).enumerate() {
        let files =
            silt_lake_writer::write_table(&limit_dir, i as u64, chunk, &partition_by, &job.writer)
                .await?;
        n += files.iter().map(|f| f.rows).sum::<u64>();
    }
    let limit_seconds = t.elapsed().as_secs_f64();
    let events = summary
        .rows_written
        .get("clickstream")
        .copied()
        .unwrap_or(0);
    anyhow::ensure!(n == events, "the limit wrote {n} rows, the job {events}");

    let mut stages = std::collections::BTreeMap::new();
    let s = &summary.stages;
    for (k, v) in [
        ("read", s.read),
        ("check", s.check),
        ("dedup", s.dedup),
        ("decode", s.decode),
        ("transform", s.transform),
        ("write", s.write),
        ("commit", s.commit),
    ] {
        stages.insert(k.to_string(), v);
    }
    let r = BenchResult {
        events,
        records_read: summary.records_read,
        input_bytes: g.bytes,
        job_seconds,
        job_cpu_seconds: job_cpu,
        job_events_per_sec: events as f64 / job_seconds,
        job_mb_per_sec: g.bytes as f64 / job_seconds / 1e6,
        cpu_seconds_per_million: job_cpu / (events as f64 / 1e6),
        limit_seconds,
        limit_events_per_sec: events as f64 / limit_seconds,
        job_to_limit: limit_seconds / job_seconds,
        peak_rss_bytes: peak_rss_bytes(),
        stages,
        build: if cfg!(debug_assertions) {
            "debug (figures are not meaningful: use --release)"
        } else {
            "release"
        },
    };
    writeln!(
        out,
        "silt bench: {} events ({} records read, {:.1} MB of envelopes), {} build",
        r.events,
        r.records_read,
        r.input_bytes as f64 / 1e6,
        r.build
    )?;
    writeln!(
        out,
        "  {:<34} {:>12}",
        "job events/s",
        format!("{:.0}", r.job_events_per_sec)
    )?;
    writeln!(
        out,
        "  {:<34} {:>12}",
        "job MB/s (envelopes in)",
        format!("{:.1}", r.job_mb_per_sec)
    )?;
    writeln!(
        out,
        "  {:<34} {:>12}",
        "job CPU s per million events",
        format!("{:.3}", r.cpu_seconds_per_million)
    )?;
    writeln!(
        out,
        "  {:<34} {:>12}",
        "limit (Parquet write) events/s",
        format!("{:.0}", r.limit_events_per_sec)
    )?;
    writeln!(
        out,
        "  {:<34} {:>12}",
        "job / limit",
        format!("{:.2}", r.job_to_limit)
    )?;
    writeln!(
        out,
        "  {:<34} {:>12}",
        "peak RSS MB",
        format!("{:.0}", r.peak_rss_bytes as f64 / 1e6)
    )?;
    writeln!(
        out,
        "  stages (s): {}",
        r.stages
            .iter()
            .map(|(k, v)| format!("{k} {v:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    if let Some(p) = &args.out {
        std::fs::write(p, serde_json::to_string_pretty(&r)?)?;
        writeln!(out, "  figures written to {}", p.display())?;
    }
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
