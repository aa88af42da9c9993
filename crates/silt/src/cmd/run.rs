//! `silt run JOB [--follow]`.

use std::io::Write;
use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use crate::job::{self, Job, RunOptions};

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
}

pub async fn run(args: RunArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let job = Job::load(&args.job).await?;
    let shutdown = CancellationToken::new();
    let mut opts = RunOptions {
        follow: args.follow,
        shutdown: shutdown.clone(),
        ..RunOptions::on_terminal()
    };
    // Where no progress line can be drawn (a log file, a scheduler's capture), a line per
    // committed micro-batch.
    opts.log_batches = !opts.progress;
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
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&summary)?)?;
    } else {
        writeln!(out, "{}", summary.render())?;
    }
    Ok(())
}
