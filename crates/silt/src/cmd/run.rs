//! `silt run JOB [--follow]`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use silt_service::job::{JobMetrics, TableLabels};
use silt_service::metrics::ReasonLabels;
use tokio_util::sync::CancellationToken;

use crate::job::{self, BatchReport, Job, RunOptions};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The job file (TOML).
    pub job: PathBuf,
    /// Keep going in micro-batches; Ctrl-C (or SIGTERM) finishes the batch in hand, commits and
    /// exits.
    #[arg(long)]
    pub follow: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Serve Prometheus metrics (`/metrics`) and `/health` on this address while the job runs,
    /// e.g. `127.0.0.1:9464`.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Check the job and exit: its reader schema, each transform planned and checked, and how
    /// the job would run it; nothing is read from the stream or written to the lake.
    #[arg(long, conflicts_with_all = ["follow", "metrics"])]
    pub check: bool,
}

pub async fn run(args: RunArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let job = Job::load(&args.job).await?;
    if args.check {
        let plan = job::plan(&job).await?;
        if args.json {
            writeln!(out, "{}", serde_json::to_string_pretty(&plan)?)?;
        } else {
            print_plan(&plan, out)?;
        }
        return Ok(());
    }
    let shutdown = CancellationToken::new();
    // The metrics are served until the run has ended, its last batch included.
    let metrics_served = CancellationToken::new();
    let metrics = match args.metrics {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("serving metrics on {addr}"))?;
            eprintln!(
                "metrics of job {} on http://{}/metrics",
                job.name,
                listener.local_addr()?
            );
            let metrics = JobMetrics::new();
            tokio::spawn(silt_service::job::serve(
                listener,
                metrics.clone(),
                metrics_served.clone(),
            ));
            Some(metrics)
        }
        None => None,
    };
    let mut opts = RunOptions {
        follow: args.follow,
        shutdown: shutdown.clone(),
        ..RunOptions::on_terminal()
    };
    // Where no progress line can be drawn (a log file, a scheduler's capture), a line per
    // committed micro-batch.
    let log = !opts.progress;
    if let Some(m) = &metrics {
        let m = m.clone();
        opts.on_caught_up = Some(Arc::new(move || {
            m.lag_seconds.set(0.0);
        }));
    }
    if log || metrics.is_some() {
        opts.on_commit = Some(Arc::new(move |report: &BatchReport| {
            if log {
                eprintln!("{}", report.log_line());
            }
            if let Some(m) = &metrics {
                observe(m, report);
            }
        }));
    }
    let mut stop = super::StopSignals::new()?;
    let running = job::run(&job, &opts);
    tokio::pin!(running);
    let summary = loop {
        tokio::select! {
            r = &mut running => break r?,
            _ = stop.recv(), if !shutdown.is_cancelled() => {
                eprintln!("interrupted: finishing the micro-batch in hand, then committing (Ctrl-C or SIGTERM again waits too; kill -9 is safe)");
                shutdown.cancel();
            }
        }
    };
    metrics_served.cancel();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&summary)?)?;
    } else {
        writeln!(out, "{}", summary.render())?;
    }
    Ok(())
}

/// Adds a committed micro-batch to the job's metrics.
fn observe(m: &JobMetrics, r: &BatchReport) {
    m.batches.inc();
    m.records_read.inc_by(r.records_read);
    m.duplicates.inc_by(r.duplicates);
    m.late.inc_by(r.late);
    for (code, n) in &r.rejected {
        m.base
            .rejected
            .get_or_create(&ReasonLabels {
                reason: code.to_string(),
            })
            .inc_by(*n);
    }
    for (table, n) in &r.rows_written {
        m.rows_written
            .get_or_create(&TableLabels {
                table: table.clone(),
            })
            .inc_by(*n);
    }
    m.files_written.inc_by(r.files_written);
    m.bytes_written.inc_by(r.bytes_written);
    m.files_compacted.inc_by(r.files_compacted);
    m.source_retries.inc_by(r.source_retries);
    m.batch_seconds.observe(r.seconds);
    if let Some(lag) = r.lag_ms {
        m.lag_seconds.set(lag as f64 / 1000.0);
    }
    m.last_commit_seconds.set(r.committed_at_ms as f64 / 1000.0);
}

/// `--check`'s report: one screen.
fn print_plan(plan: &job::JobPlan, out: &mut dyn Write) -> anyhow::Result<()> {
    const INDENT: &str = "                 ";
    // The columns, on lines of about 100 characters under the heading's text.
    let columns = |c: &[job::PlannedColumn]| {
        let mut text = String::from(INDENT);
        let mut line = INDENT.len();
        for (i, c) in c.iter().enumerate() {
            let item = format!("{} {}", c.name, c.data_type);
            if i > 0 {
                text.push(',');
                if line + item.len() + 2 > 100 {
                    text.push('\n');
                    text.push_str(INDENT);
                    line = INDENT.len();
                } else {
                    text.push(' ');
                    line += 2;
                }
            }
            line += item.len();
            text.push_str(&item);
        }
        text
    };
    let by = |p: &[String]| {
        if p.is_empty() {
            "unpartitioned".to_string()
        } else {
            format!("by {}", p.join(", "))
        }
    };
    writeln!(
        out,
        "job {}: checked (nothing read from the stream, nothing written)",
        plan.job
    )?;
    writeln!(
        out,
        "  reader schema  {} version {} ({})",
        plan.subject, plan.reader_version, plan.reader_fingerprint
    )?;
    writeln!(
        out,
        "  raw table      {} ({})\n{}",
        plan.table,
        by(&plan.partition_by),
        columns(&plan.columns)
    )?;
    for t in &plan.transforms {
        writeln!(
            out,
            "  transform      {} ({}, {}): {}\n{}",
            t.name,
            t.mode,
            by(&t.partition_by),
            t.runs.text(),
            columns(&t.columns)
        )?;
        if let Some((from, to)) = &t.fills_first {
            writeln!(
                out,
                "{INDENT}new to the job: the run first fills its table from the raw table's hours {from} to {to}"
            )?;
        }
        if let Some(e) = &t.earlier_sql {
            writeln!(out, "{INDENT}{}", e.text())?;
        }
    }
    Ok(())
}
