//! `silt backfill JOB --from T --to T`.

use std::io::Write;
use std::path::PathBuf;

use crate::job::{self, Job};

#[derive(Debug, clap::Args)]
pub struct BackfillArgs {
    /// The job file whose transforms to rerun.
    pub job: PathBuf,
    /// First hour: a date (2025-11-25: from its first hour), an hour (2025-11-25T22) or an RFC 3339 time.
    #[arg(long)]
    pub from: String,
    /// Last hour, inclusive: a date (to its last hour), an hour, or an RFC 3339 time.
    #[arg(long)]
    pub to: String,
    /// Rerun only this transform (repeat for more); the other tables stay as they are.
    #[arg(long = "transform", value_name = "NAME")]
    pub transforms: Vec<String>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: BackfillArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let job = Job::load(&args.job).await?;
    let from = job::parse_hour(&args.from, false)?;
    let to = job::parse_hour(&args.to, true)?;
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let summary = job::backfill(&job, from, to, &args.transforms, progress).await?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&summary)?)?;
    } else {
        writeln!(out, "{}", summary.render())?;
    }
    Ok(())
}
