//! The Kinesis [`Source`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::ShardIteratorType;
use bytes::BytesMut;
use silt_ingest::{
    Chunk, Error, Position, ReadLimit, RecordRef, Result, ShardInfo, Source, StartAt,
};

use crate::{backoff, kpl, retryable, MAX_ATTEMPTS};

/// GetRecords may be called five times a second per shard.
const MIN_CALL_GAP: Duration = Duration::from_millis(200);

/// Reads a Kinesis stream. See the crate docs.
#[derive(Debug)]
pub struct KinesisSource {
    client: aws_sdk_kinesis::Client,
    stream: String,
    /// Shard iterators that continue a read: (shard, where it continues) -> iterator.
    iterators: Mutex<HashMap<(String, StartAt), String>>,
    last_call: Mutex<HashMap<String, Instant>>,
}

impl KinesisSource {
    pub fn new(client: aws_sdk_kinesis::Client, stream: impl Into<String>) -> Self {
        Self {
            client,
            stream: stream.into(),
            iterators: Default::default(),
            last_call: Default::default(),
        }
    }

    fn service(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::Service(format!("kinesis stream `{}`: {what}: {e}", self.stream))
    }

    async fn pace(&self, shard: &str) {
        let wait = {
            let calls = self.last_call.lock().expect("not poisoned");
            calls
                .get(shard)
                .map(|t| MIN_CALL_GAP.saturating_sub(t.elapsed()))
        };
        if let Some(w) = wait.filter(|w| !w.is_zero()) {
            tokio::time::sleep(w).await;
        }
        self.last_call
            .lock()
            .expect("not poisoned")
            .insert(shard.to_string(), Instant::now());
    }

    /// The iterator for a start point, and the record to skip up to (a checkpoint inside or at
    /// the end of an aggregate).
    async fn iterator(
        &self,
        shard: &str,
        from: &StartAt,
        retries: &mut u64,
    ) -> Result<(String, Option<(String, u32)>)> {
        if let Some(it) = self
            .iterators
            .lock()
            .expect("not poisoned")
            .remove(&(shard.to_string(), from.clone()))
        {
            return Ok((it, None));
        }
        let mut attempt = 0;
        loop {
            let mut req = self
                .client
                .get_shard_iterator()
                .stream_name(&self.stream)
                .shard_id(shard);
            let mut skip = None;
            req = match from {
                StartAt::Earliest => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
                StartAt::Latest => req.shard_iterator_type(ShardIteratorType::Latest),
                StartAt::ArrivedAt(t) => req
                    .shard_iterator_type(ShardIteratorType::AtTimestamp)
                    .timestamp(DateTime::from_millis(*t)),
                StartAt::At(Position::Sequence { number, sub }) => {
                    if *sub > 0 {
                        skip = Some((number.clone(), sub - 1));
                    }
                    req.shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                        .starting_sequence_number(number)
                }
                StartAt::After(Position::Sequence { number, sub }) => {
                    skip = Some((number.clone(), *sub));
                    req.shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                        .starting_sequence_number(number)
                }
                StartAt::At(p) | StartAt::After(p) => {
                    return Err(Error::BadPosition {
                        shard: shard.to_string(),
                        position: p.clone(),
                        reason: "a Kinesis position is a sequence number".into(),
                    })
                }
            };
            match req.send().await {
                Ok(out) => {
                    let it = out
                        .shard_iterator
                        .ok_or_else(|| self.service("GetShardIterator", "no iterator"))?;
                    return Ok((it, skip));
                }
                Err(e) if retryable(&e) && attempt + 1 < MAX_ATTEMPTS => {
                    *retries += 1;
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) => {
                    let text = crate::describe(&e);
                    if text.contains("ResourceNotFound") {
                        return Err(Error::UnknownShard {
                            stream: self.stream.clone(),
                            shard: shard.to_string(),
                        });
                    }
                    return Err(self.service("GetShardIterator", text));
                }
            }
        }
    }
}

#[async_trait]
impl Source for KinesisSource {
    fn name(&self) -> &str {
        &self.stream
    }

    async fn shards(&self) -> Result<Vec<ShardInfo>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        let mut attempt = 0;
        loop {
            let req = match &token {
                Some(t) => self.client.list_shards().next_token(t),
                None => self.client.list_shards().stream_name(&self.stream),
            };
            match req.send().await {
                Ok(page) => {
                    for s in page.shards() {
                        let mut parents: Vec<String> = Vec::new();
                        parents.extend(s.parent_shard_id().map(str::to_string));
                        parents.extend(s.adjacent_parent_shard_id().map(str::to_string));
                        out.push(ShardInfo {
                            id: s.shard_id().to_string(),
                            parents,
                        });
                    }
                    token = page.next_token().map(str::to_string);
                    if token.is_none() {
                        break;
                    }
                }
                Err(e) if retryable(&e) && attempt + 1 < MAX_ATTEMPTS => {
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) if crate::no_stream(&e) => {
                    return Err(Error::NoStream {
                        stream: self.stream.clone(),
                        reason: format!("Kinesis ListShards: {}", crate::describe(&e)),
                    })
                }
                Err(e) => return Err(self.service("ListShards", crate::describe(&e))),
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn read(&self, shard: &str, from: &StartAt, limit: ReadLimit) -> Result<Chunk> {
        let mut retries = 0u64;
        let (mut iterator, mut skip) = self.iterator(shard, from, &mut retries).await?;
        let mut data = BytesMut::new();
        let mut records: Vec<RecordRef> = Vec::new();
        let mut sequences: Vec<Position> = Vec::new();
        let mut attempt = 0;
        let mut empty_reads = 0;
        loop {
            self.pace(shard).await;
            // A resumed checkpoint re-reads its own record first (to skip it): ask for one more.
            let want = (limit.max_records - records.len() + usize::from(skip.is_some()))
                .clamp(1, 10_000) as i32;
            let mut out = match self
                .client
                .get_records()
                .shard_iterator(&iterator)
                .limit(want)
                .send()
                .await
            {
                Ok(o) => o,
                Err(e) if retryable(&e) && attempt + 1 < MAX_ATTEMPTS => {
                    retries += 1;
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                    continue;
                }
                Err(e) => {
                    let text = crate::describe(&e);
                    if text.contains("ExpiredIteratorException") && attempt + 1 < MAX_ATTEMPTS {
                        // Iterators live five minutes: get a fresh one for the same point.
                        attempt += 1;
                        let (it, sk) = self.iterator(shard, from, &mut retries).await?;
                        iterator = it;
                        skip = sk;
                        continue;
                    }
                    return Err(self.service("GetRecords", text));
                }
            };
            attempt = 0;
            let behind = out.millis_behind_latest().unwrap_or(0);
            let next_iterator = out.next_shard_iterator.take();
            let mut truncated = false;
            let got_some = !out.records.is_empty();
            // The SDK's records are taken as they are: each sequence number moves into its
            // record's position (no copy per record).
            for r in std::mem::take(&mut out.records) {
                let arrival = r
                    .approximate_arrival_timestamp()
                    .and_then(|t| t.to_millis().ok())
                    .unwrap_or(0);
                let blob = r.data.as_ref();
                // A plain record is one user record: the whole blob.
                let aggregated = kpl::deaggregate(blob);
                #[allow(clippy::single_range_in_vec_init)] // one range: the whole blob
                let whole = [0..blob.len()];
                let parts = aggregated.as_deref().unwrap_or(&whole);
                let mut seq = r.sequence_number;
                for (i, range) in parts.iter().enumerate() {
                    let sub = i as u32;
                    if let Some((n, s)) = &skip {
                        if *n == seq && sub <= *s {
                            continue;
                        }
                    }
                    if records.len() >= limit.max_records {
                        truncated = true;
                        break;
                    }
                    let begin = data.len();
                    data.extend_from_slice(&blob[range.clone()]);
                    // The last part takes the number; those before it (aggregated records
                    // only) copy it.
                    let number = if i + 1 == parts.len() {
                        std::mem::take(&mut seq)
                    } else {
                        seq.clone()
                    };
                    records.push(RecordRef::new(
                        begin..data.len(),
                        arrival,
                        sequences.len() as u64,
                    ));
                    sequences.push(Position::Sequence { number, sub });
                }
                if truncated {
                    break;
                }
            }
            skip = None;
            let ended = next_iterator.is_none();
            let at = match sequences.last() {
                Some(p) => StartAt::After(p.clone()),
                None => from.clone(),
            };
            // Keep the iterator for the next read when this read took everything it returned.
            if let (Some(it), false) = (&next_iterator, truncated) {
                self.iterators
                    .lock()
                    .expect("not poisoned")
                    .insert((shard.to_string(), at.clone()), it.clone());
            }
            let caught_up = ended || (!got_some && behind == 0);
            let full = records.len() >= limit.max_records || data.len() >= limit.max_bytes;
            if ended || caught_up || full || truncated || got_some {
                return Ok(Chunk {
                    data: data.freeze(),
                    records,
                    next: Some(at),
                    caught_up,
                    ended: ended && !truncated,
                    retries,
                    mapping: None,
                    sequences,
                });
            }
            // An empty answer while behind: Kinesis has a gap here; read on (bounded).
            empty_reads += 1;
            if empty_reads > 20 {
                return Ok(Chunk {
                    data: data.freeze(),
                    records,
                    next: Some(at),
                    caught_up: false,
                    ended: false,
                    retries,
                    mapping: None,
                    sequences,
                });
            }
            iterator = next_iterator.expect("not ended");
        }
    }
}
