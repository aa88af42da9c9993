//! `silt kinesis scale`: the autoscaling hook (the seed's answer to throttling and cost).

use std::io::Write;
use std::path::PathBuf;

use silt_kinesis::scale::{self, ScaleOptions};

#[derive(Debug, clap::Subcommand)]
pub enum KinesisCommand {
    /// Measure a stream's recent incoming rate and throttling, and propose (or with --apply
    /// make) an UpdateShardCount within bounds.
    Scale(ScaleArgs),
}

/// Where the Kinesis API is, for the commands that talk to a stream.
#[derive(Debug, clap::Args)]
pub struct KinesisArgs {
    /// The Kinesis stream.
    #[arg(long)]
    pub stream: String,
    /// Kinesis endpoint URL (default from the AWS environment).
    #[arg(long, env = "SILT_KINESIS_ENDPOINT")]
    pub endpoint: Option<String>,
    #[arg(long)]
    pub region: Option<String>,
}

impl KinesisArgs {
    pub async fn client(&self) -> silt_kinesis::Client {
        silt_kinesis::client(&silt_kinesis::KinesisOptions {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
        })
        .await
    }
}

#[derive(Debug, clap::Args)]
pub struct ScaleArgs {
    #[command(flatten)]
    pub kinesis: KinesisArgs,
    #[arg(long, default_value_t = 1)]
    pub min: usize,
    #[arg(long, default_value_t = 64)]
    pub max: usize,
    /// How far back to measure (e.g. 5m).
    #[arg(long, default_value = "5m")]
    pub window: String,
    #[arg(long, default_value_t = 0.7)]
    pub target_utilization: f64,
    /// A shard's write capacity in records/s (1000 on Kinesis).
    #[arg(long, default_value_t = 1000.0)]
    pub shard_records_per_sec: f64,
    /// A shard's write capacity in bytes/s (1 MiB on Kinesis).
    #[arg(long, default_value_t = 1_048_576.0)]
    pub shard_bytes_per_sec: f64,
    /// A job reading the stream: the throttled calls its commits in the window report count.
    #[arg(long)]
    pub job: Option<PathBuf>,
    /// Make the change instead of only proposing it.
    #[arg(long)]
    pub apply: bool,
}

pub async fn run(cmd: KinesisCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    let KinesisCommand::Scale(a) = cmd;
    let window = crate::job::config::parse_duration(&a.window)?;
    let mut throttles = 0;
    if let Some(job) = &a.job {
        throttles = crate::job::throttles_since(&crate::job::Job::load(job).await?, window).await?;
    }
    let client = a.kinesis.client().await;
    let opts = ScaleOptions {
        min_shards: a.min,
        max_shards: a.max,
        window,
        target_utilization: a.target_utilization,
        shard_bytes_per_sec: a.shard_bytes_per_sec,
        shard_records_per_sec: a.shard_records_per_sec,
        throttles,
    };
    let p = scale::propose(&client, &a.kinesis.stream, &opts).await?;
    writeln!(
        out,
        "stream {}: {} open shard(s), {:.1} records/s, {:.1} KB/s, {} throttled call(s) in the last {}",
        a.kinesis.stream,
        p.open_shards,
        p.records_per_sec,
        p.bytes_per_sec / 1024.0,
        p.throttles,
        a.window
    )?;
    writeln!(out, "proposal: {} shard(s): {}", p.target_shards, p.reason)?;
    if a.apply {
        if scale::apply(&client, &a.kinesis.stream, &p).await? {
            writeln!(
                out,
                "applied: UpdateShardCount to {} (uniform scaling)",
                p.target_shards
            )?;
        } else {
            writeln!(out, "nothing to apply")?;
        }
    }
    Ok(())
}
