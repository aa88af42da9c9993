//! `silt gateway serve`: the HTTP gateway (SPEC 5) until Ctrl-C, then a drain and a summary.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use silt_service::gateway::{FileSinks, Gateway, GatewayOptions, KinesisSinks, SinkProvider};

use super::registry::RegistryArg;

#[derive(Debug, clap::Subcommand)]
pub enum GatewayCommand {
    /// Serve the gateway's HTTP API until Ctrl-C (or SIGTERM); accepted events are drained first.
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub registry: RegistryArg,
    /// Where events go: file://DIR (a file stream per streamId in DIR/{streamId}/), kinesis:
    /// (a Kinesis stream per streamId, named as it) or kinesis://NAME (every streamId into one).
    #[arg(long)]
    pub sink: String,
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Shards of a new file stream.
    #[arg(long, default_value_t = 4)]
    pub shards: usize,
    /// Do not fsync file-stream appends before answering 202 (faster, loses the last
    /// requests if the machine, not just the process, dies).
    #[arg(long)]
    pub no_sync: bool,
    /// Events accepted and not yet on the stream, at most; beyond it requests get 503.
    #[arg(long, default_value_t = 200_000)]
    pub buffer_events: usize,
    /// How long a request waits for the stream before it is answered 503 (e.g. 10s, 500ms).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub put_timeout: Duration,
    /// How far ahead of this machine's clock an event's time (its TimeUuid's) may be before
    /// the event is refused (a producer with a wrong clock).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub max_future: Duration,
    /// Kinesis endpoint URL (default from the AWS environment).
    #[arg(long, env = "SILT_KINESIS_ENDPOINT")]
    pub kinesis_endpoint: Option<String>,
    #[arg(long)]
    pub region: Option<String>,
}

pub async fn run(cmd: GatewayCommand, out: &mut impl Write) -> anyhow::Result<()> {
    let GatewayCommand::Serve(args) = cmd;
    let registry = args.registry.open()?;
    let subjects = args.registry.subjects_or_warn(registry.as_ref()).await;
    if subjects.is_some_and(|s| s.is_empty()) {
        // A typo in --registry reads as an empty registry: every stream would be 404.
        eprintln!(
            "note: the registry {} holds no subject yet: every stream is unknown (404) until a \
             schema is registered there",
            args.registry.registry
        );
    }
    let sinks: Arc<dyn SinkProvider> = if let Some(dir) = args.sink.strip_prefix("file://") {
        Arc::new(FileSinks::new(dir, args.shards).with_sync(!args.no_sync))
    } else if let Some(rest) = args.sink.strip_prefix("kinesis:") {
        let one = rest.strip_prefix("//").filter(|n| !n.is_empty());
        if !rest.is_empty() && one.is_none() {
            bail!("--sink {}: write kinesis: or kinesis://NAME", args.sink);
        }
        let client = silt_kinesis::client(&silt_kinesis::KinesisOptions {
            endpoint: args.kinesis_endpoint.clone(),
            region: args.region.clone(),
        })
        .await;
        Arc::new(KinesisSinks::new(client, one.map(str::to_string)))
    } else {
        bail!(
            "--sink {}: expected file://DIR, kinesis: or kinesis://NAME",
            args.sink
        );
    };
    let describe = sinks.describe();
    let gateway = Gateway::new(
        registry,
        sinks,
        GatewayOptions {
            buffer_events: args.buffer_events,
            put_timeout: args.put_timeout,
            max_future: args.max_future,
            ..GatewayOptions::default()
        },
    );
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    writeln!(
        out,
        "silt gateway on http://{} checking against {} into {describe} (OpenAPI at /openapi.json)",
        listener.local_addr()?,
        args.registry.registry
    )?;
    out.flush()?;
    let started = Instant::now();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let stop = shutdown.clone();
    let server = silt_service::gateway::serve(listener, gateway.clone(), shutdown);
    tokio::pin!(server);
    let mut signals = super::StopSignals::new()?;
    loop {
        tokio::select! {
            r = &mut server => { r?; break; }
            _ = signals.recv(), if !stop.is_cancelled() => stop.cancel(),
        }
    }
    let s = gateway.stats();
    writeln!(
        out,
        "silt gateway stopped after {:.1}s: {} events accepted, {} refused, {} requests throttled, {} put retries; every accepted event is on the stream",
        started.elapsed().as_secs_f64(),
        s.accepted,
        s.rejected,
        s.throttled,
        s.retries
    )?;
    Ok(())
}
