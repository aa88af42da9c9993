//! The autoscaling hook: measure a stream's recent incoming rate, weigh the throttling its
//! readers saw, and propose (or make) an `UpdateShardCount` within bounds.
//!
//! Rate is measured from the stream itself (records and bytes that arrived in the window,
//! read with `AT_TIMESTAMP`), so it works without CloudWatch, against stand-ins too. A shard
//! takes in 1 MB/s and 1,000 records/s; the proposal keeps each shard at the target
//! utilisation, adds half again when readers were throttled, stays within `[min, max]`, and
//! within what one `UpdateShardCount` may do (half to double the open shards).

use std::time::Duration;

use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::{ScalingType, ShardIteratorType};
use silt_ingest::{Error, Result};

/// What the proposal is based on.
#[derive(Debug, Clone)]
pub struct ScaleOptions {
    pub min_shards: usize,
    pub max_shards: usize,
    /// How far back to measure.
    pub window: Duration,
    /// Share of a shard's capacity to aim for (0.7: room for a tenfold burst needs more).
    pub target_utilization: f64,
    pub shard_bytes_per_sec: f64,
    pub shard_records_per_sec: f64,
    /// Throttled calls the stream's readers and writers saw in the window (from run summaries
    /// or commits).
    pub throttles: u64,
}

impl Default for ScaleOptions {
    fn default() -> Self {
        Self {
            min_shards: 1,
            max_shards: 64,
            window: Duration::from_secs(300),
            target_utilization: 0.7,
            shard_bytes_per_sec: 1_048_576.0,
            shard_records_per_sec: 1000.0,
            throttles: 0,
        }
    }
}

/// A proposal and what it rests on.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub open_shards: usize,
    pub records_per_sec: f64,
    pub bytes_per_sec: f64,
    pub throttles: u64,
    pub target_shards: usize,
    /// Why, in words.
    pub reason: String,
}

fn service(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Service(format!("{what}: {e}"))
}

/// Pure arithmetic of the proposal (tested without a stream).
pub fn decide(
    open: usize,
    records_per_sec: f64,
    bytes_per_sec: f64,
    opts: &ScaleOptions,
) -> (usize, String) {
    let u = opts.target_utilization.clamp(0.05, 1.0);
    let by_bytes = (bytes_per_sec / (opts.shard_bytes_per_sec * u)).ceil() as usize;
    let by_records = (records_per_sec / (opts.shard_records_per_sec * u)).ceil() as usize;
    let mut want = by_bytes.max(by_records).max(1);
    let mut why = format!(
        "{records_per_sec:.0} records/s and {:.0} KB/s need {want} shard(s) at {:.0}% utilisation",
        bytes_per_sec / 1024.0,
        u * 100.0
    );
    if opts.throttles > 0 && want <= open {
        want = (open * 3).div_ceil(2).max(open + 1);
        why = format!(
            "{} throttled call(s) in the window: add half again",
            opts.throttles
        );
    }
    let bounded = want.clamp(opts.min_shards.max(1), opts.max_shards.max(1));
    if bounded != want {
        why += &format!(
            "; held to the bounds [{}, {}]",
            opts.min_shards, opts.max_shards
        );
    }
    let stepped = bounded.clamp(open.div_ceil(2).max(1), (open * 2).max(1));
    if stepped != bounded {
        why += "; one UpdateShardCount may only halve or double";
    }
    (stepped, why)
}

/// Measures the stream and proposes a shard count.
pub async fn propose(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    opts: &ScaleOptions,
) -> Result<Proposal> {
    let shards = client
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .map_err(|e| service("ListShards", crate::describe(&e)))?;
    let open: Vec<String> = shards
        .shards()
        .iter()
        .filter(|s| {
            s.sequence_number_range()
                .and_then(|r| r.ending_sequence_number())
                .is_none()
        })
        .map(|s| s.shard_id().to_string())
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let since = now.saturating_sub(opts.window).as_millis() as i64;
    let (mut records, mut bytes) = (0u64, 0u64);
    // Every shard that may hold records of the window, closed ones included.
    for shard in shards.shards() {
        let it = client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::AtTimestamp)
            .timestamp(DateTime::from_millis(since))
            .send()
            .await
            .map_err(|e| service("GetShardIterator", crate::describe(&e)))?;
        let mut iterator = it.shard_iterator().map(str::to_string);
        let mut calls = 0;
        while let Some(i) = iterator.take() {
            calls += 1;
            let out = client
                .get_records()
                .shard_iterator(i)
                .limit(10_000)
                .send()
                .await
                .map_err(|e| service("GetRecords", crate::describe(&e)))?;
            for r in out.records() {
                let arrived = r
                    .approximate_arrival_timestamp()
                    .and_then(|t| t.to_millis().ok())
                    .unwrap_or(since);
                if arrived >= since {
                    records += 1;
                    bytes += r.data().as_ref().len() as u64
                        + r.partition_key().map_or(0, str::len) as u64;
                }
            }
            if out.records().is_empty() || calls >= 50 {
                break;
            }
            iterator = out.next_shard_iterator().map(str::to_string);
        }
    }
    let secs = opts.window.as_secs_f64().max(1.0);
    let (records_per_sec, bytes_per_sec) = (records as f64 / secs, bytes as f64 / secs);
    let (target_shards, reason) = decide(open.len(), records_per_sec, bytes_per_sec, opts);
    Ok(Proposal {
        open_shards: open.len(),
        records_per_sec,
        bytes_per_sec,
        throttles: opts.throttles,
        target_shards,
        reason,
    })
}

/// Makes the change a proposal names (nothing when it names the current count).
pub async fn apply(client: &aws_sdk_kinesis::Client, stream: &str, p: &Proposal) -> Result<bool> {
    if p.target_shards == p.open_shards {
        return Ok(false);
    }
    client
        .update_shard_count()
        .stream_name(stream)
        .target_shard_count(p.target_shards as i32)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await
        .map_err(|e| service("UpdateShardCount", crate::describe(&e)))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposals() {
        let o = ScaleOptions::default();
        // 3,500 records/s of 200 bytes: records decide, five shards at 70%.
        assert_eq!(decide(4, 3500.0, 700_000.0, &o).0, 5);
        // Quiet: scale in, but only by half at a time.
        assert_eq!(decide(8, 10.0, 1000.0, &o).0, 4);
        // Throttled while the rate looks fine: add half again.
        let t = ScaleOptions {
            throttles: 12,
            ..o.clone()
        };
        let (n, why) = decide(4, 100.0, 10_000.0, &t);
        assert_eq!(n, 6);
        assert!(why.contains("throttled"));
        // Bounds hold, and one step at most doubles.
        let b = ScaleOptions {
            max_shards: 3,
            ..o.clone()
        };
        assert_eq!(decide(2, 10_000.0, 0.0, &b).0, 3);
        assert_eq!(decide(2, 100_000.0, 0.0, &o).0, 4);
    }
}
