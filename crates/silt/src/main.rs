//! The `silt` binary: parse arguments, set up logging, call the library, map errors to exit
//! codes (0 success, 1 failure with a one-line reason on stderr, 2 bad usage).

use clap::{Parser, Subcommand};
use silt::cmd;

#[derive(Debug, Parser)]
#[command(
    name = "silt",
    version,
    about = "silt: a streaming ELT engine (events -> stream -> Parquet lake)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run everything embedded: registry, file stream, synthetic events, a job, queries.
    Demo(cmd::demo::DemoArgs),
    /// Run a job: everything available now (or, with --follow, keep going).
    Run(cmd::run::RunArgs),
    /// Rerun a job's transforms over the raw table's partitions in a time range.
    Backfill(cmd::backfill::BackfillArgs),
    /// Bring rejected records back into the lake once what stopped them is mended (a schema registered late).
    Redrive(cmd::redrive::RedriveArgs),
    /// Run one SQL statement over the lake's committed tables.
    Query(cmd::query::QueryArgs),
    /// An interactive SQL shell over the lake.
    Sql(cmd::sql::SqlArgs),
    /// Put synthetic events, or a file stream's records, on a Kinesis stream.
    Produce(cmd::produce::ProduceArgs),
    /// Kinesis operations (the autoscaling hook).
    #[command(subcommand)]
    Kinesis(cmd::kinesis::KinesisCommand),
    /// Measure the job against the Parquet-write limit on this machine.
    Bench(cmd::bench::BenchArgs),
    /// Schema registry commands.
    #[command(subcommand)]
    Registry(cmd::registry::RegistryCommand),
    /// The HTTP gateway: events checked at the door and put on the stream.
    #[command(subcommand)]
    Gateway(cmd::gateway::GatewayCommand),
}

/// glibc's allocator hands large blocks back to the kernel as soon as they are freed and maps
/// fresh, zeroed pages for the next ones; a job frees and allocates buffers of the same sizes
/// for every slice of every micro-batch (Parquet pages, Arrow builders), so that churn cost
/// about a tenth of its time in page faults. Keep freed memory for reuse instead: the
/// process's memory then stays at its peak rather than going up and down around it.
///
/// With `one_arena` (the job's commands), every thread allocates from one arena: memory one
/// thread frees (a blocking task's Parquet file, a read's record list) is reused by the next,
/// whichever thread it runs on, instead of each arena keeping its own share. The job's peak
/// memory then stops creeping up over micro-batches (233 MB against 290 MB at 3M events, no
/// slower). Servers keep one arena per thread group: their threads allocate at once.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn keep_freed_memory(one_arena: bool) {
    // SAFETY: mallopt only sets allocator parameters; it is called before any other thread
    // exists, and its result (success or not) needs no handling: a refused setting keeps the
    // default behaviour.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
        if one_arena {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory(_one_arena: bool) {}

fn main() {
    let cli = Cli::parse();
    keep_freed_memory(!matches!(
        cli.command,
        Command::Gateway(_) | Command::Registry(_)
    ));
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SILT_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        // No colour codes in a log file or a scheduler's capture.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async move {
        let mut stdout = std::io::stdout();
        match cli.command {
            Command::Demo(a) => cmd::demo::run(a, &mut stdout).await,
            Command::Run(a) => cmd::run::run(a, &mut stdout).await,
            Command::Query(a) => cmd::query::run(a, &mut stdout).await,
            Command::Backfill(a) => cmd::backfill::run(a, &mut stdout).await,
            Command::Redrive(a) => cmd::redrive::run(a, &mut stdout).await,
            Command::Sql(a) => cmd::sql::run(a, &mut stdout).await,
            Command::Produce(a) => cmd::produce::run(a, &mut stdout).await,
            Command::Kinesis(c) => cmd::kinesis::run(c, &mut stdout).await,
            Command::Bench(a) => cmd::bench::run(a, &mut stdout).await,
            Command::Registry(c) => cmd::registry::run(c, &mut stdout).await,
            Command::Gateway(c) => cmd::gateway::run(c, &mut stdout).await,
        }
    });
    if let Err(e) = result {
        let line = silt_transform::sql_error_text(&silt::one_line(&e));
        eprintln!("error: {line}{}", hint(&line));
        std::process::exit(1);
    }
}

/// What to do about an error whose cause is plain only to those who know AWS.
fn hint(line: &str) -> &'static str {
    // The AWS clients ask the EC2 instance metadata service for credentials last, so its
    // refusal is what a machine without credentials reports.
    if line.contains("169.254.169.254") {
        " (no AWS credentials were found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones), or run where the instance metadata service answers)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use silt::one_line;

    #[derive(Debug, thiserror::Error)]
    #[error("transform `t`: {0}")]
    struct Shows(#[source] std::io::Error);

    #[test]
    fn an_s3_error_body_is_told_by_its_code_message_and_bucket() {
        let e = anyhow::anyhow!(
            "l/_silt/tables: Generic S3 error: Error performing GET http://s3/nolake?list-type=2 in 9ms - Server returned non-2xx status code: 404 Not Found: <?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message><BucketName>nolake</BucketName><RequestId>yC5k</RequestId><HostId>9Gj=</HostId></Error>"
        )
        .context("reading the lake's commits");
        assert_eq!(
            one_line(&e),
            "reading the lake's commits: l/_silt/tables: Generic S3 error: Error performing GET http://s3/nolake?list-type=2 in 9ms - Server returned non-2xx status code: 404 Not Found: NoSuchBucket: The specified bucket does not exist (bucket `nolake`)"
        );
    }

    #[test]
    fn a_refusal_by_the_metadata_service_says_credentials_are_missing() {
        let line = "lake/x.json: Generic S3 error: Error performing PUT http://169.254.169.254/latest/api/token: 403";
        assert!(super::hint(line).contains("no AWS credentials were found"));
        assert_eq!(super::hint("cannot read job.toml"), "");
    }

    #[test]
    fn causes_already_shown_are_not_repeated() {
        let io = || std::io::Error::other("disk full");
        let e = anyhow::Error::new(Shows(io())).context("running job j");
        assert_eq!(one_line(&e), "running job j: transform `t`: disk full");
        let e = anyhow::Error::new(io()).context("writing part-1");
        assert_eq!(one_line(&e), "writing part-1: disk full");
        let e = anyhow::anyhow!("no field `a`\n  valid fields are b, c").context("planning");
        assert_eq!(one_line(&e), "planning: no field `a` valid fields are b, c");
    }
}
