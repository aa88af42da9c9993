//! The Kinesis [`Sink`]: `PutRecords` within the service limits, only failed records retried.

use async_trait::async_trait;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use silt_ingest::{Error, PutStats, Result, Sink};

use crate::{backoff, retryable, MAX_ATTEMPTS};

/// PutRecords takes at most 500 records and 5 MB (keys included) a call.
const MAX_RECORDS: usize = 500;
const MAX_BYTES: usize = 5 << 20;

/// Puts records on a Kinesis stream.
#[derive(Debug, Clone)]
pub struct KinesisSink {
    client: aws_sdk_kinesis::Client,
    stream: String,
}

impl KinesisSink {
    pub fn new(client: aws_sdk_kinesis::Client, stream: impl Into<String>) -> Self {
        Self {
            client,
            stream: stream.into(),
        }
    }

    /// Puts `(partition key, data)` pairs; returns when every record is taken, or fails
    /// after retrying the failed ones with backoff.
    pub async fn put_keyed(&self, records: &[(&str, &[u8])]) -> Result<PutStats> {
        let mut stats = PutStats::default();
        let mut start = 0;
        while start < records.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < records.len() && end - start < MAX_RECORDS {
                let size = records[end].0.len() + records[end].1.len();
                if end > start && bytes + size > MAX_BYTES {
                    break;
                }
                bytes += size;
                end += 1;
            }
            self.put_batch(&records[start..end], &mut stats).await?;
            start = end;
        }
        stats.records = records.len() as u64;
        Ok(stats)
    }

    async fn put_batch(&self, batch: &[(&str, &[u8])], stats: &mut PutStats) -> Result<()> {
        let mut pending: Vec<usize> = (0..batch.len()).collect();
        let mut attempt = 0;
        while !pending.is_empty() {
            let entries = pending
                .iter()
                .map(|&i| {
                    PutRecordsRequestEntry::builder()
                        .partition_key(batch[i].0)
                        .data(Blob::new(batch[i].1))
                        .build()
                        .map_err(|e| Error::Service(e.to_string()))
                })
                .collect::<Result<Vec<_>>>()?;
            stats.calls += 1;
            let out = match self
                .client
                .put_records()
                .stream_name(&self.stream)
                .set_records(Some(entries))
                .send()
                .await
            {
                Ok(o) => o,
                Err(e) if retryable(&e) && attempt + 1 < MAX_ATTEMPTS => {
                    stats.retries += 1;
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                    continue;
                }
                Err(e) if crate::no_stream(&e) => {
                    return Err(Error::NoStream {
                        stream: self.stream.clone(),
                        reason: format!("Kinesis PutRecords: {}", crate::describe(&e)),
                    })
                }
                Err(e) => {
                    return Err(Error::Service(format!(
                        "kinesis stream `{}`: PutRecords: {}",
                        self.stream,
                        crate::describe(&e)
                    )))
                }
            };
            let failed: Vec<usize> = out
                .records()
                .iter()
                .zip(&pending)
                .filter(|(r, _)| r.error_code().is_some())
                .map(|(_, &i)| i)
                .collect();
            if failed.is_empty() {
                return Ok(());
            }
            if attempt + 1 >= MAX_ATTEMPTS {
                return Err(Error::Throttled(format!(
                    "kinesis stream `{}`: {} record(s) still failing after {MAX_ATTEMPTS} attempts",
                    self.stream,
                    failed.len()
                )));
            }
            stats.retries += failed.len() as u64;
            pending = failed;
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for KinesisSink {
    /// Records put with one hint share a partition key, so they land on one shard in order.
    async fn put(&self, shard_hint: usize, records: &[&[u8]]) -> Result<()> {
        let key = format!("shard-hint-{shard_hint}");
        let keyed: Vec<(&str, &[u8])> = records.iter().map(|r| (key.as_str(), *r)).collect();
        KinesisSink::put_keyed(self, &keyed).await.map(|_| ())
    }

    async fn put_keyed(&self, records: &[(&str, &[u8])]) -> Result<PutStats> {
        KinesisSink::put_keyed(self, records).await
    }
}
