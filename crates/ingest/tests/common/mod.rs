//! Records put on a fresh one-shard file stream, read back, and checked by a decoder, as a job
//! does it.

#![allow(dead_code)]

use std::sync::Arc;

use arrow::array::RecordBatch;
use silt_ingest::{
    Chunk, EventDecoder, FileStream, Good, ReadLimit, Rejected, Sink, Source, StartAt,
};

/// The stream, the decoder and what its check made of the records.
pub struct CheckedStream {
    _dir: tempfile::TempDir,
    pub shard: String,
    pub chunks: [Chunk; 1],
    pub decoder: EventDecoder,
    pub good: Vec<Good>,
    pub rejected: Vec<Rejected>,
}

impl CheckedStream {
    /// Puts `records` on a new file stream (arrival now) and checks them with `decoder`.
    pub async fn check(mut decoder: EventDecoder, records: &[Vec<u8>]) -> CheckedStream {
        let dir = tempfile::tempdir().unwrap();
        let stream = FileStream::create(dir.path(), 1).unwrap();
        let refs: Vec<&[u8]> = records.iter().map(|r| r.as_slice()).collect();
        stream.put(0, &refs).await.unwrap();
        let shard = stream.shards().await.unwrap().remove(0).id;
        let chunks = [stream
            .read(&shard, &StartAt::Earliest, ReadLimit::default())
            .await
            .unwrap()];
        let (mut good, mut rejected) = (Vec::new(), Vec::new());
        decoder
            .check(&chunks, &[shard.as_str()], &mut good, &mut rejected)
            .await
            .unwrap();
        CheckedStream {
            _dir: dir,
            shard,
            chunks,
            decoder,
            good,
            rejected,
        }
    }

    /// The good records decoded into one batch.
    pub fn decode(&mut self) -> RecordBatch {
        self.decoder
            .decode(&self.chunks, &[self.shard.as_str()], &self.good)
            .expect("the good records decode")
            .expect("rows")
    }
}

/// A decoder for `reader` over `registry`.
pub fn decoder(
    registry: impl silt_registry::SchemaRegistry + 'static,
    reader: Arc<silt_wire::Schema>,
    framing: silt_wire::Framing,
) -> EventDecoder {
    EventDecoder::new(Arc::new(registry), reader, framing, "test").unwrap()
}
