//! # silt-kinesis: Kinesis behind the `Source` and `Sink` seams
//!
//! [`KinesisSource`] reads a stream through the AWS SDK: shards listed with paging and their
//! parents, iterators from a checkpoint (`AT_SEQUENCE_NUMBER`, skipping what was already
//! read), `TRIM_HORIZON`, `LATEST` or `AT_TIMESTAMP`; `GetRecords` within the service limits
//! (at most 5 calls a second and 10,000 records a call per shard); KPL aggregates
//! de-aggregated, each user record with its sub-sequence number; throttling and 5xx answers
//! retried with exponential backoff and jitter, and counted. A closed shard read to its end
//! reports `ended`, so its children are read only after it.
//!
//! [`KinesisSink`] puts records with `PutRecords` in batches within the 500-record / 5 MB
//! limits, retrying only the records that failed.
//!
//! The SDK's own retries are off: this crate retries, so that every retry is counted and
//! shows in the run summary.

pub mod kpl;
pub mod scale;
pub mod sink;
mod source;
pub mod testing;

pub use aws_sdk_kinesis::Client;
pub use silt_ingest::PutStats;
pub use sink::KinesisSink;
pub use source::KinesisSource;

use std::time::Duration;

use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::error::ProvideErrorMetadata;

/// Where and how to reach Kinesis.
#[derive(Debug, Clone, Default)]
pub struct KinesisOptions {
    /// An endpoint URL (a stand-in, a VPC endpoint); default `SILT_KINESIS_ENDPOINT`, else the
    /// AWS environment (`AWS_ENDPOINT_URL_KINESIS`, `AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    /// Default from the AWS environment, else `us-east-1`.
    pub region: Option<String>,
}

/// A Kinesis client from the usual AWS environment and config, with the SDK's retries off.
pub async fn client(opts: &KinesisOptions) -> Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    let endpoint = opts
        .endpoint
        .clone()
        .or_else(|| std::env::var("SILT_KINESIS_ENDPOINT").ok())
        .filter(|e| !e.is_empty());
    if let Some(e) = &endpoint {
        loader = loader.endpoint_url(e);
    }
    let region = opts
        .region
        .clone()
        .or_else(|| std::env::var("AWS_REGION").ok())
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
        .unwrap_or_else(|| "us-east-1".into());
    loader = loader.region(aws_config::Region::new(region));
    let conf = loader.load().await;
    let conf = aws_sdk_kinesis::config::Builder::from(&conf)
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_kinesis::Client::from_conf(conf)
}

/// An SDK error as one short line: each error of its chain by its message (the AWS code and
/// message of a service error, the cause of a failed connection), without the SDK's debug dump
/// of the raw response that `DisplayErrorContext` appends.
pub(crate) fn describe(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let text = e.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = e.source();
    }
    out
}

/// Whether an SDK error says the stream does not exist.
pub(crate) fn no_stream<E: ProvideErrorMetadata>(
    err: &aws_sdk_kinesis::error::SdkError<E, aws_sdk_kinesis::config::http::HttpResponse>,
) -> bool {
    matches!(err, aws_sdk_kinesis::error::SdkError::ServiceError(e) if e.err().code() == Some("ResourceNotFoundException"))
}

/// Whether an SDK error is worth retrying: throttling, 5xx, timeouts, broken connections.
pub(crate) fn retryable<E: ProvideErrorMetadata>(
    err: &aws_sdk_kinesis::error::SdkError<E, aws_sdk_kinesis::config::http::HttpResponse>,
) -> bool {
    use aws_sdk_kinesis::error::SdkError;
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(e) => {
            e.raw().status().as_u16() >= 500
                || matches!(
                    e.err().code(),
                    Some(
                        "ProvisionedThroughputExceededException"
                            | "LimitExceededException"
                            | "ThrottlingException"
                            | "KMSThrottlingException"
                            | "InternalFailure"
                            | "ServiceUnavailable"
                    )
                )
        }
        _ => false,
    }
}

/// Creates a stream with `shards` shards unless it exists, and waits until it is active.
/// Returns whether it was created.
pub async fn ensure_stream(
    client: &aws_sdk_kinesis::Client,
    name: &str,
    shards: i32,
) -> Result<bool, silt_ingest::Error> {
    if client
        .describe_stream_summary()
        .stream_name(name)
        .send()
        .await
        .is_ok()
    {
        return Ok(false);
    }
    client
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .map_err(|e| {
            silt_ingest::Error::Service(format!("creating stream {name}: {}", describe(&e)))
        })?;
    testing::wait_active(client, name).await;
    Ok(true)
}

/// Exponential backoff with full jitter: 50 ms doubling to 5 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let cap = 50u64.saturating_mul(1 << attempt.min(7)).min(5_000);
    Duration::from_millis(rand::random::<u64>() % (cap + 1))
}

/// How often a call is tried before its error is returned.
pub(crate) const MAX_ATTEMPTS: u32 = 12;
