//! An in-memory stream: for unit tests and examples, with shard splits for resharding tests.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use crate::source::{
    group_by_shard, Chunk, Position, PutStats, ReadLimit, RecordRef, ShardInfo, Sink, Source,
    StartAt, MAX_CHUNK_BYTES,
};
use crate::{Error, Result};

#[derive(Debug)]
struct Shard {
    info: ShardInfo,
    records: Vec<(Bytes, i64)>,
    closed: bool,
}

/// An in-memory [`Source`] and [`Sink`]. Positions are record indexes.
#[derive(Debug)]
pub struct InMemoryStream {
    name: String,
    shards: Mutex<Vec<Shard>>,
}

impl InMemoryStream {
    pub fn new(name: impl Into<String>, shards: usize) -> Self {
        let shards = (0..shards.max(1))
            .map(|n| Shard {
                info: ShardInfo {
                    id: format!("shard-{n:06}"),
                    parents: vec![],
                },
                records: vec![],
                closed: false,
            })
            .collect();
        Self {
            name: name.into(),
            shards: Mutex::new(shards),
        }
    }

    /// Appends records to the `n`-th open shard with an arrival time.
    pub fn append_at(&self, n: usize, payloads: &[&[u8]], arrival_ms: i64) {
        let mut shards = self.shards.lock().expect("not poisoned");
        let open: Vec<usize> = (0..shards.len()).filter(|i| !shards[*i].closed).collect();
        let shard = &mut shards[open[n % open.len()]];
        shard.records.extend(
            payloads
                .iter()
                .map(|p| (Bytes::copy_from_slice(p), arrival_ms)),
        );
    }

    /// Closes a shard and opens two children of it (a split).
    pub fn split(&self, shard: &str) -> Result<(String, String)> {
        let mut shards = self.shards.lock().expect("not poisoned");
        let n = shards.len();
        let s = shards
            .iter_mut()
            .find(|s| s.info.id == shard && !s.closed)
            .ok_or_else(|| Error::UnknownShard {
                stream: self.name.clone(),
                shard: shard.to_string(),
            })?;
        s.closed = true;
        let children = (format!("shard-{n:06}"), format!("shard-{:06}", n + 1));
        for id in [&children.0, &children.1] {
            shards.push(Shard {
                info: ShardInfo {
                    id: id.clone(),
                    parents: vec![shard.to_string()],
                },
                records: vec![],
                closed: false,
            });
        }
        Ok(children)
    }
}

#[async_trait]
impl Source for InMemoryStream {
    fn name(&self) -> &str {
        &self.name
    }

    async fn shards(&self) -> Result<Vec<ShardInfo>> {
        let mut v: Vec<ShardInfo> = self
            .shards
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|s| s.info.clone())
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(v)
    }

    async fn read(&self, shard: &str, from: &StartAt, limit: ReadLimit) -> Result<Chunk> {
        let shards = self.shards.lock().expect("not poisoned");
        let s = shards
            .iter()
            .find(|s| s.info.id == shard)
            .ok_or_else(|| Error::UnknownShard {
                stream: self.name.clone(),
                shard: shard.to_string(),
            })?;
        let bad = |p: &Position| Error::BadPosition {
            shard: shard.to_string(),
            position: p.clone(),
            reason: "not a record index of this shard".into(),
        };
        let start = match from {
            StartAt::Earliest => 0,
            StartAt::Latest => s.records.len(),
            StartAt::ArrivedAt(t) => s
                .records
                .iter()
                .position(|r| r.1 >= *t)
                .unwrap_or(s.records.len()),
            StartAt::At(Position::Offset(o)) if *o as usize <= s.records.len() => *o as usize,
            StartAt::After(Position::Offset(o)) if (*o as usize) < s.records.len() => {
                *o as usize + 1
            }
            StartAt::At(p) | StartAt::After(p) => return Err(bad(p)),
        };
        let mut data = BytesMut::new();
        let mut records = Vec::new();
        let mut i = start;
        while i < s.records.len()
            && records.len() < limit.max_records
            && (records.is_empty()
                || data.len() + s.records[i].0.len() <= limit.max_bytes.min(MAX_CHUNK_BYTES))
        {
            let (payload, arrival) = &s.records[i];
            let begin = data.len();
            data.extend_from_slice(payload);
            records.push(RecordRef::new(begin..data.len(), *arrival, i as u64));
            i += 1;
        }
        let caught_up = i == s.records.len();
        Ok(Chunk {
            data: data.freeze(),
            next: Some(match records.last() {
                Some(r) => StartAt::After(Position::Offset(r.pos)),
                None => StartAt::At(Position::Offset(start as u64)),
            }),
            records,
            caught_up,
            ended: caught_up && s.closed,
            retries: 0,
            mapping: None,
            sequences: Vec::new(),
        })
    }
}

#[async_trait]
impl Sink for InMemoryStream {
    async fn put(&self, shard_hint: usize, records: &[&[u8]]) -> Result<()> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as i64;
        self.append_at(shard_hint, records, now);
        Ok(())
    }

    async fn put_keyed(&self, records: &[(&str, &[u8])]) -> Result<PutStats> {
        let open = {
            let shards = self.shards.lock().expect("not poisoned");
            shards.iter().filter(|s| !s.closed).count()
        };
        let mut calls = 0;
        for (n, group) in group_by_shard(records, open).iter().enumerate() {
            if !group.is_empty() {
                self.put(n, group).await?;
                calls += 1;
            }
        }
        Ok(PutStats {
            records: records.len() as u64,
            calls,
            retries: 0,
        })
    }
}
