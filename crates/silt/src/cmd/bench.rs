//! `silt bench`: the job against the Parquet-write limit, on this machine.
//!
//! Generates events into a file stream (both clickstream schema versions, 5% repeats, bad
//! records), runs the real job in this process (decode, dedup, an identity SQL transform and
//! an hourly aggregate, zstd Parquet to local disk, commits), then writes the same output
//! batches to Parquet with the same settings and nothing else: the limit. Job and limit are run
//! in turn for a number of rounds (`--rounds`, 3), each into a fresh lake, and the median
//! round is reported. Prints a table and writes JSON (SPEC 9's keys). Use a release build: `cargo run --release -p silt -- bench`.
//!
//! The identity transform (`SELECT * FROM events`) passes the raw columns through, so the
//! job stores its files as copies of the raw files ([`crate::job::RunSummary::copied`]); the
//! limit encodes its rows as any table's.

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
    /// Events sent through the gateway (in 500-event JSON requests) by this process to a
    /// `silt gateway serve` child process over loopback; 0 skips the gateway.
    #[arg(long, default_value_t = 1_000_000)]
    pub gateway_events: usize,
    /// Requests in flight at once against the gateway.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Run the job without its SQL transforms: check, decode, dedup and the raw table only,
    /// the work the alternatives of `scripts/bench.sh` do.
    #[arg(long)]
    pub no_transforms: bool,
    /// Times the job and the limit are each run, in turn, over the same events (a fresh lake
    /// each round); the figures are the median round's. On a shared machine a single pair
    /// can land in a fast and a slow moment: alternating rounds compare like with like.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub rounds: u32,
}

/// One round: the job over the whole stream into a fresh lake, then the limit.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    pub job_seconds: f64,
    pub job_cpu_seconds: f64,
    /// The part of `job_cpu_seconds` spent in the kernel.
    pub job_kernel_cpu_seconds: f64,
    pub limit_seconds: f64,
    pub job_to_limit: f64,
    /// The process's peak resident memory when this round's job ended (a lifetime peak: the
    /// first round's is the job's own; later ones include the limits before them).
    pub peak_rss_bytes: u64,
    #[serde(skip)]
    summary: job::RunSummary,
    #[serde(skip)]
    limit_rows: u64,
    /// The limit's seconds, table by table.
    #[serde(skip)]
    limit_tables: std::collections::BTreeMap<String, f64>,
}

/// One table of the job: its part of the `transform`, `encode` and `write` stages (`sql`,
/// `encode`, `write`), and the limit's time to write its rows again.
#[derive(Debug, Clone, Serialize)]
pub struct TableFigures {
    #[serde(flatten)]
    pub job: job::TableSeconds,
    pub limit: f64,
    /// A transform passing the raw table's columns through, whose files the job copied from
    /// the raw files' column chunks (the limit encodes them as any table's).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub copied: bool,
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
    /// The part of `cpu_seconds_per_million` spent in the kernel: page faults (first touches
    /// of memory, the mapped input), file writes, syscalls.
    pub kernel_cpu_seconds_per_million: f64,
    pub limit_seconds: f64,
    pub limit_events_per_sec: f64,
    pub job_to_limit: f64,
    /// Peak resident memory of the process once the job ended (generation and job).
    pub peak_rss_bytes: u64,
    pub stages: std::collections::BTreeMap<String, f64>,
    /// The job's time table by table (the median round's): which transform's SQL or
    /// encoding the time went to, beside what the limit took for the same table.
    pub tables: std::collections::BTreeMap<String, TableFigures>,
    /// Average Avro body of a distinct event.
    pub avg_body_bytes: f64,
    /// Rows the job wrote, all tables, rewrites of aggregate partitions included.
    pub rows_written: u64,
    /// Rows the lake holds at the end: what the limit writes.
    pub limit_rows: u64,
    pub gateway: Option<GatewayFigures>,
    /// Every round in the order run; the figures above are the median's (job and limit
    /// seconds, CPU and stages: the round of the median job time; `job_to_limit`: the median
    /// of the rounds' ratios, each a job and a limit run one after the other).
    pub rounds: Vec<Round>,
    /// The job ran without its SQL transforms (`--no-transforms`).
    pub transforms: bool,
    pub build: &'static str,
}

/// The gateway under load from this process.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayFigures {
    pub events: u64,
    pub batch: usize,
    pub connections: usize,
    pub seconds: f64,
    pub events_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// CPU seconds the gateway process used per million events.
    pub cpu_seconds_per_million: f64,
    /// Whether the file stream is fsynced before each 202 (the default).
    pub fsync: bool,
}

/// Writes every dirty page of the page cache to disk before a timed part starts: the stream
/// just generated (hundreds of MB) or the job's files would otherwise be written back by the
/// kernel while the next part runs, and counted against it.
#[allow(unsafe_code)]
fn settle_disk() {
    #[cfg(unix)]
    // SAFETY: sync(2) takes no arguments, touches no memory of ours and cannot fail.
    unsafe {
        libc::sync()
    };
}

/// CPU seconds used by a process so far, in its own code and in the kernel.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    user: f64,
    /// Page faults (first touches of memory, the mapped input), file writes, syscalls.
    kernel: f64,
}

impl Cpu {
    fn total(self) -> f64 {
        self.user + self.kernel
    }

    fn since(self, start: Cpu) -> Cpu {
        Cpu {
            user: self.user - start.user,
            kernel: self.kernel - start.kernel,
        }
    }
}

/// CPU seconds used by this process so far, from getrusage(2): to the microsecond, where
/// /proc counts clock ticks of 10 ms (0.005 CPU s per million events at 2M events).
#[allow(unsafe_code)]
fn cpu_seconds() -> Cpu {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is a writable rusage; RUSAGE_SELF is a valid `who`.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } != 0 {
        return cpu_seconds_of("self");
    }
    // SAFETY: getrusage succeeded and filled it (it was zeroed before in any case).
    let usage = unsafe { usage.assume_init() };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Cpu {
        user: seconds(usage.ru_utime),
        kernel: seconds(usage.ru_stime),
    }
}

/// CPU seconds used by a process (`self` or a pid) so far, from /proc, in clock ticks.
fn cpu_seconds_of(pid: &str) -> Cpu {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Cpu::default();
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th,
    // in clock ticks of 1/100 s.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    Cpu {
        user: ticks(11) / 100.0,
        kernel: ticks(12) / 100.0,
    }
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
            v1_share: 0.05,
            channel_bytes: 126,
            ..Default::default()
        },
    )?;
    let avg_body_bytes = g.body_bytes as f64 / g.distinct.max(1) as f64;
    eprintln!(
        "generated {} events ({:.0} bytes a body on average, {} records with repeats and bad ones) in {:.1}s",
        g.distinct,
        avg_body_bytes,
        g.distinct + g.repeats + g.bad,
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
{}[batch]
max_records = 500000
"#,
            gen::SUBJECT,
            if args.no_transforms {
                ""
            } else {
                "[[transform]]\nname = \"identity\"\nsql = \"sql/identity.sql\"\n[[transform]]\nname = \"hourly\"\nsql = \"sql/hourly.sql\"\nmode = \"partitions\"\n"
            }
        ),
    )?;
    let job = Job::load(&job_path).await?;
    let mut rounds = Vec::new();
    for round in 0..args.rounds {
        if args.rounds > 1 {
            eprintln!("round {} of {}", round + 1, args.rounds);
        }
        for d in ["lake", "limit"] {
            match std::fs::remove_dir_all(dir.join(d)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("clearing {}", dir.join(d).display()))
                }
                _ => {}
            }
        }
        rounds.push(job_and_limit(&dir, &job).await?);
    }
    let peak_rss = rounds[0].peak_rss_bytes;
    // The round of the median job time gives the job's figures; the limit's median and the
    // median ratio are taken each on their own.
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let job_seconds = median(rounds.iter().map(|r| r.job_seconds).collect());
    let limit_seconds = median(rounds.iter().map(|r| r.limit_seconds).collect());
    let job_to_limit = median(rounds.iter().map(|r| r.job_to_limit).collect());
    let mid = rounds
        .iter()
        .find(|r| r.job_seconds == job_seconds)
        .expect("the median is a round's")
        .clone();
    let (summary, job_cpu, job_kernel, n, limit_tables) = (
        mid.summary,
        mid.job_cpu_seconds,
        mid.job_kernel_cpu_seconds,
        mid.limit_rows,
        mid.limit_tables,
    );
    let rows_written: u64 = summary.rows_written.values().sum();
    let events = summary
        .rows_written
        .get("clickstream")
        .copied()
        .unwrap_or(0);
    let gateway = if args.gateway_events > 0 {
        Some(bench_gateway(&dir, args.gateway_events, args.connections.max(1)).await?)
    } else {
        None
    };

    let mut stages = std::collections::BTreeMap::new();
    let s = &summary.stages;
    for (k, v) in [
        ("read", s.read),
        ("check", s.check),
        ("dedup", s.dedup),
        ("decode", s.decode),
        ("transform", s.transform),
        ("encode", s.encode),
        ("write", s.write),
        ("commit", s.commit),
    ] {
        stages.insert(k.to_string(), v);
    }
    let tables = summary
        .tables
        .keys()
        .chain(limit_tables.keys())
        .map(|name| {
            let figures = TableFigures {
                job: summary.tables.get(name).copied().unwrap_or_default(),
                limit: limit_tables.get(name).copied().unwrap_or(0.0),
                copied: summary.copied.contains(name),
            };
            (name.clone(), figures)
        })
        .collect();
    let r = BenchResult {
        events,
        records_read: summary.records_read,
        input_bytes: g.bytes,
        job_seconds,
        job_cpu_seconds: job_cpu,
        job_events_per_sec: events as f64 / job_seconds,
        job_mb_per_sec: g.bytes as f64 / job_seconds / 1e6,
        cpu_seconds_per_million: job_cpu / (events as f64 / 1e6),
        kernel_cpu_seconds_per_million: job_kernel / (events as f64 / 1e6),
        limit_seconds,
        limit_events_per_sec: events as f64 / limit_seconds,
        job_to_limit,
        peak_rss_bytes: peak_rss,
        stages,
        tables,
        avg_body_bytes,
        rows_written,
        limit_rows: n,
        gateway,
        rounds,
        transforms: !args.no_transforms,
        build: if cfg!(debug_assertions) {
            "debug (figures are not meaningful: use --release)"
        } else {
            "release"
        },
    };
    writeln!(
        out,
        "silt bench: {} events ({} records read, {:.1} MB of envelopes, {:.0}-byte bodies on average), {} build",
        r.events,
        r.records_read,
        r.input_bytes as f64 / 1e6,
        r.avg_body_bytes,
        r.build
    )?;
    let row = |out: &mut dyn Write, k: &str, v: String| writeln!(out, "  {k:<40} {v:>12}");
    row(out, "job events/s", format!("{:.0}", r.job_events_per_sec))?;
    row(
        out,
        "job MB/s (envelopes in)",
        format!("{:.1}", r.job_mb_per_sec),
    )?;
    row(
        out,
        "job CPU s per million events",
        format!("{:.3}", r.cpu_seconds_per_million),
    )?;
    row(
        out,
        "  of it in the kernel (page faults)",
        format!("{:.3}", r.kernel_cpu_seconds_per_million),
    )?;
    row(
        out,
        "limit (Parquet write only) events/s",
        format!("{:.0}", r.limit_events_per_sec),
    )?;
    row(out, "job / limit", format!("{:.2}", r.job_to_limit))?;
    row(
        out,
        "peak RSS MB (generate + job)",
        format!("{:.0}", r.peak_rss_bytes as f64 / 1e6),
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
    writeln!(
        out,
        "  {:<30} {:>6} {:>9} {:>6} {:>9}",
        "by table (s)", "SQL", "encoding", "puts", "limit"
    )?;
    for (k, t) in &r.tables {
        if t.copied {
            writeln!(
                out,
                "    {k:<28} {:>16} {:>6.2} {:>9.2}",
                "copied", t.job.write, t.limit
            )?;
        } else {
            writeln!(
                out,
                "    {k:<28} {:>6.2} {:>9.2} {:>6.2} {:>9.2}",
                t.job.sql, t.job.encode, t.job.write, t.limit
            )?;
        }
    }
    if r.rounds.len() > 1 {
        writeln!(
            out,
            "  rounds (job s / limit s / job:limit; the median shown above): {}",
            r.rounds
                .iter()
                .map(|x| format!(
                    "{:.2} / {:.2} / {:.2}",
                    x.job_seconds, x.limit_seconds, x.job_to_limit
                ))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    if let Some((slowest, secs)) = r.stages.iter().max_by(|a, b| a.1.total_cmp(b.1)) {
        writeln!(
            out,
            "  slowest stage: {slowest} ({:.0}% of the job)",
            secs / r.job_seconds * 100.0
        )?;
    }
    if let Some(g) = &r.gateway {
        row(
            out,
            &format!(
                "gateway events/s ({}-event JSON, {} conns)",
                g.batch, g.connections
            ),
            format!("{:.0}", g.events_per_sec),
        )?;
        row(
            out,
            "gateway latency p50 / p99 ms",
            format!("{:.1} / {:.1}", g.p50_ms, g.p99_ms),
        )?;
        row(
            out,
            "gateway CPU s per million events",
            format!("{:.3}", g.cpu_seconds_per_million),
        )?;
    }
    if let Some(p) = &args.out {
        std::fs::write(p, serde_json::to_string_pretty(&r)?)?;
        writeln!(out, "  figures written to {}", p.display())?;
    }
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// Runs the job over the stream in `dir` into its (empty) lake, then the limit: every table
/// the job wrote, its committed files read back as they were written (the same Arrow types)
/// with their partition columns, and written again in batches of the job's size with the
/// same writer settings, and nothing else (only the writes are timed).
async fn job_and_limit(dir: &std::path::Path, job: &Job) -> anyhow::Result<Round> {
    settle_disk();
    let cpu0 = cpu_seconds();
    let t = Instant::now();
    let summary = job::run(job, &RunOptions::on_terminal()).await?;
    let job_seconds = t.elapsed().as_secs_f64();
    let job_cpu = cpu_seconds().since(cpu0);
    // The process's peak so far: generation and the job (the first round's, before any limit
    // held its read-back batches).
    let peak_rss_bytes = peak_rss_bytes();
    settle_disk();

    let lake = silt_storage::open("file://lake", dir)?;
    let snapshot = silt_lake_writer::LakeSnapshot::load(&lake).await?;
    let limit_dir = silt_storage::open("file://limit", dir)?;
    let mut limit_seconds = 0.0;
    let mut limit_tables = std::collections::BTreeMap::new();
    let mut n = 0u64;
    let mut batch_id = 0u64;
    for (table, (state, _)) in &snapshot.tables {
        let source = lake.join(table);
        let target = limit_dir.join(table);
        let mut pending = Vec::new();
        let mut rows = 0;
        let last = state.files.len();
        for (i, file) in state.files.iter().enumerate() {
            for b in silt_lake_writer::read_data_file(&source, file, 8192, &[]).await? {
                rows += b.num_rows();
                pending.push(b);
            }
            if (i + 1 == last && !pending.is_empty()) || rows >= 500_000 {
                let t = Instant::now();
                let files = silt_lake_writer::write_table(
                    &target,
                    batch_id,
                    &pending,
                    &state.partition_by,
                    &job.writer,
                )
                .await?;
                let secs = t.elapsed().as_secs_f64();
                limit_seconds += secs;
                *limit_tables.entry(table.clone()).or_insert(0.0) += secs;
                n += files.iter().map(|f| f.rows).sum::<u64>();
                batch_id += 1;
                pending.clear();
                rows = 0;
            }
        }
    }
    // A `partitions` transform rewrites the partitions a micro-batch touches, so the job
    // wrote some aggregate rows more than once; the limit writes what the lake holds.
    let live: u64 = snapshot
        .tables
        .values()
        .map(|(state, _)| state.files.iter().map(|f| f.rows).sum::<u64>())
        .sum();
    anyhow::ensure!(n == live, "the limit wrote {n} rows, the lake holds {live}");
    Ok(Round {
        job_seconds,
        job_cpu_seconds: job_cpu.total(),
        job_kernel_cpu_seconds: job_cpu.kernel,
        limit_seconds,
        job_to_limit: limit_seconds / job_seconds,
        peak_rss_bytes,
        summary,
        limit_rows: n,
        limit_tables,
    })
}

/// Starts `silt gateway serve` as a child process onto a file stream in `dir`, sends it
/// `events` events as 500-event JSON requests from this process with `connections` requests
/// in flight, and measures throughput, latency and the gateway's CPU.
async fn bench_gateway(
    dir: &std::path::Path,
    events: usize,
    connections: usize,
) -> anyhow::Result<GatewayFigures> {
    use std::io::BufRead;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    const BATCH: usize = 500;
    let exe = std::env::current_exe().context("finding the silt executable")?;
    let mut child = std::process::Command::new(exe)
        .args(["gateway", "serve", "--listen", "127.0.0.1:0", "--registry"])
        .arg(format!("file://{}", dir.join("registry").display()))
        .arg("--sink")
        .arg(format!("file://{}", dir.join("gateway").display()))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting silt gateway serve")?;
    let pid = child.id().to_string();
    let mut banner = String::new();
    let mut child_out = std::io::BufReader::new(child.stdout.take().expect("piped"));
    child_out.read_line(&mut banner)?;
    let base = banner
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .with_context(|| format!("the gateway did not say where it listens: {banner:?}"))?
        .to_string();

    // The requests, made before the clock starts so that the load generator stays cheap.
    let t = Instant::now();
    let ids = silt_wire::timeuuid::TimeUuidGenerator::random();
    let mut bodies = Vec::with_capacity(events.div_ceil(BATCH));
    let mut url = String::new();
    let mut n = 0;
    while n < events {
        let k = BATCH.min(events - n);
        let mut body = String::with_capacity(k * 220);
        body.push('[');
        for i in 0..k {
            use std::fmt::Write as _;
            let product = 1 + ((n + i) * 7919 % 5000);
            url.clear();
            let _ = write!(
                url,
                "https://www.gilt.com/sale/{}/product/{product}?utm_source=newsletter&utm_medium=email&utm_campaign=noon-drop",
                1000 + i % 50
            );
            let _ = write!(
                body,
                r#"{}{{"uuid":"{}","productId":{product},"saleId":{},"channel":"{url}"}}"#,
                if i == 0 { "" } else { "," },
                silt_wire::timeuuid::to_string(&ids.next()),
                1000 + i % 50
            );
        }
        body.push(']');
        bodies.push(bytes::Bytes::from(body));
        n += k;
    }
    eprintln!(
        "gateway: {} requests of {BATCH} events made in {:.1}s; sending",
        bodies.len(),
        t.elapsed().as_secs_f64()
    );
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::new();
    let target = format!("{base}/streams/{}/events", gen::SUBJECT);
    let cpu0 = cpu_seconds_of(&pid);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (bodies, next, client, target) =
            (bodies.clone(), next.clone(), client.clone(), target.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                loop {
                    let t = Instant::now();
                    let r = client.post(&target).body(body.clone()).send().await?;
                    let status = r.status();
                    let _ = r.bytes().await?;
                    if status.as_u16() == 202 {
                        latencies.push(t.elapsed().as_secs_f64());
                        break;
                    }
                    anyhow::ensure!(
                        status.as_u16() == 429 || status.as_u16() == 503,
                        "the gateway answered {status}"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds_of(&pid).since(cpu0).total();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    let mut last = String::new();
    let _ = std::io::Read::read_to_string(&mut child_out, &mut last);
    let status = child.wait()?;
    anyhow::ensure!(status.success(), "the gateway exited with {status}: {last}");
    eprintln!("{}", last.trim());
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize] * 1000.0;
    Ok(GatewayFigures {
        events: events as u64,
        batch: BATCH,
        connections,
        seconds,
        events_per_sec: events as f64 / seconds,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        cpu_seconds_per_million: cpu / (events as f64 / 1e6),
        fsync: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_seconds_count_finer_than_a_clock_tick() {
        // Spin and watch the process's CPU time move: counted in clock ticks every move is
        // 10 ms or more; counted by getrusage it moves by microseconds. Other test threads
        // (or a pause of this one) can make one move long: the smallest of 20 is taken.
        let mut x = 0u64;
        let mut last = cpu_seconds().total();
        let mut smallest = f64::MAX;
        for _ in 0..20 {
            let step = loop {
                for i in 0..1000u64 {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
                }
                let now = cpu_seconds().total();
                if now > last {
                    break now - std::mem::replace(&mut last, now);
                }
            };
            smallest = smallest.min(step);
        }
        assert!(smallest < 0.005, "CPU time moved by {smallest} s at least");
    }
}
