//! Helpers for tests against a Kinesis stand-in (kinesalite), shared by this crate's tests and
//! the end-to-end tests.

use std::time::Duration;

use aws_sdk_kinesis::types::StreamStatus;

use crate::{client, KinesisOptions};

/// The stand-in's endpoint from `SILT_KINESIS_ENDPOINT` (set by `scripts/test.sh`), or `None`
/// (the test is skipped) unless `SILT_REQUIRE_STAND_INS` demands it.
pub fn endpoint() -> Option<String> {
    match std::env::var("SILT_KINESIS_ENDPOINT") {
        Ok(e) => Some(e),
        Err(_) => {
            assert!(
                std::env::var_os("SILT_REQUIRE_STAND_INS").is_none(),
                "SILT_REQUIRE_STAND_INS is set but SILT_KINESIS_ENDPOINT is not"
            );
            eprintln!("skipped: no Kinesis stand-in (run scripts/test.sh)");
            None
        }
    }
}

/// A client for an endpoint with dummy credentials.
pub async fn test_client(endpoint: &str) -> aws_sdk_kinesis::Client {
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        // Test processes only: the stand-ins accept any credentials.
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    }
    client(&KinesisOptions {
        endpoint: Some(endpoint.to_string()),
        region: Some("us-east-1".into()),
    })
    .await
}

/// A unique stream name with a prefix.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:x}", rand::random::<u64>())
}

/// Creates a stream and waits until it is active.
pub async fn create_stream(client: &aws_sdk_kinesis::Client, name: &str, shards: i32) {
    client
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .expect("create stream");
    wait_active(client, name).await;
}

/// Waits until a stream is active (after creation or a reshard).
pub async fn wait_active(client: &aws_sdk_kinesis::Client, name: &str) {
    for _ in 0..200 {
        let d = client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .expect("describe");
        if d.stream_description_summary().map(|s| s.stream_status()) == Some(&StreamStatus::Active)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("stream {name} never became active");
}
