//! `silt redrive JOB [--reason CODES] [--from T --to T] [--dry-run]`.

use std::io::Write;
use std::path::PathBuf;

use crate::job::{self, Job, RedriveOptions};

#[derive(Debug, clap::Args)]
pub struct RedriveArgs {
    /// The job whose rejected records to bring back.
    pub job: PathBuf,
    /// Reason codes of the records to look at, separated by commas (`late`, `bad_body`, ...),
    /// or `all`.
    #[arg(long, default_value = "unknown_fingerprint")]
    pub reason: String,
    /// Only records that arrived from this hour: a date, an hour (2025-11-25T22) or an RFC 3339 time.
    #[arg(long, requires = "to")]
    pub from: Option<String>,
    /// ... to this hour, inclusive.
    #[arg(long, requires = "from")]
    pub to: Option<String>,
    /// Say what would be brought in; write and commit nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: RedriveArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let job = Job::load(&args.job).await?;
    let hours = match (&args.from, &args.to) {
        (Some(f), Some(t)) => Some((job::parse_hour(f, false)?, job::parse_hour(t, true)?)),
        _ => None,
    };
    let opts = RedriveOptions {
        reasons: job::parse_reasons(&args.reason)?,
        hours,
        dry_run: args.dry_run,
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let summary = job::redrive(&job, &opts).await?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&summary)?)?;
    } else {
        writeln!(out, "{}", summary.render())?;
    }
    Ok(())
}
