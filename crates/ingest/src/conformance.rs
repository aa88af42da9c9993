//! The [`Source`] contract, written once and run against every implementation (in-memory,
//! file stream, Kinesis through the emulator). Each check takes a source with no records
//! and a sink that writes to it, with at least two shards, and panics on failure.

use std::collections::HashMap;

use crate::source::{Chunk, Position, ReadLimit, Sink, Source, StartAt};

/// Reads a shard from `from` to its current end, in reads of `limit`.
pub async fn read_all(
    source: &dyn Source,
    shard: &str,
    from: StartAt,
    limit: ReadLimit,
) -> (Vec<Vec<u8>>, Vec<Position>, StartAt) {
    let mut payloads = Vec::new();
    let mut positions = Vec::new();
    let mut at = from;
    for _ in 0..10_000 {
        let chunk: Chunk = source.read(shard, &at, limit).await.expect("read");
        for i in 0..chunk.records.len() {
            payloads.push(chunk.payload(i).to_vec());
            positions.push(chunk.position(i));
        }
        if let Some(next) = chunk.next.clone() {
            at = next;
        }
        if chunk.caught_up && chunk.records.is_empty() {
            break;
        }
    }
    (payloads, positions, at)
}

fn payloads(prefix: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{prefix}-{i:05}").into_bytes())
        .collect()
}

async fn put_all(sink: &dyn Sink, shard: usize, records: &[Vec<u8>]) {
    let refs: Vec<&[u8]> = records.iter().map(|r| r.as_slice()).collect();
    for chunk in refs.chunks(100) {
        sink.put(shard, chunk).await.expect("put");
    }
}

/// Which shard index (as `shards()` lists them) received the records put with a hint.
async fn shard_with(source: &dyn Source, first_payload: &[u8]) -> String {
    for s in source.shards().await.expect("shards") {
        let (p, _, _) = read_all(source, &s.id, StartAt::Earliest, ReadLimit::default()).await;
        if p.iter().any(|x| x == first_payload) {
            return s.id;
        }
    }
    panic!(
        "no shard holds {:?}",
        String::from_utf8_lossy(first_payload)
    );
}

/// Records come back in order, once each, with growing positions and arrival times.
pub async fn reads_in_order(source: &dyn Source, sink: &dyn Sink) {
    let recs = payloads("order", 250);
    put_all(sink, 0, &recs).await;
    let shard = shard_with(source, &recs[0]).await;
    let (got, positions, _) = read_all(
        source,
        &shard,
        StartAt::Earliest,
        ReadLimit {
            max_records: 7,
            max_bytes: 1 << 20,
        },
    )
    .await;
    assert_eq!(got, recs, "records in order, each once");
    let chunk = source
        .read(&shard, &StartAt::Earliest, ReadLimit::default())
        .await
        .unwrap();
    assert!(
        chunk
            .records
            .iter()
            .all(|r| r.arrival_ms > 1_600_000_000_000),
        "arrival times set"
    );
    assert_eq!(positions.len(), 250);
    assert!(source.shards().await.unwrap().len() >= 2);
}

/// `After(p)` continues right after `p`, and reading the same range twice gives the same records.
pub async fn resumes_after_a_position_and_replays(source: &dyn Source, sink: &dyn Sink) {
    let recs = payloads("resume", 40);
    put_all(sink, 1, &recs).await;
    let shard = shard_with(source, &recs[0]).await;
    let limit = ReadLimit {
        max_records: 10,
        max_bytes: 1 << 20,
    };
    let first = source
        .read(&shard, &StartAt::Earliest, limit)
        .await
        .unwrap();
    assert_eq!(first.records.len(), 10);
    let next = first.next.clone().unwrap();
    assert_eq!(next, StartAt::After(first.position(9)));
    let a = source.read(&shard, &next, limit).await.unwrap();
    let b = source.read(&shard, &next, limit).await.unwrap();
    assert_eq!(a.payload(0), recs[10].as_slice());
    assert_eq!(
        a.records, b.records,
        "a replayed range has the same positions"
    );
    let (rest, _, _) = read_all(source, &shard, next, limit).await;
    assert_eq!(rest, recs[10..].to_vec());
}

/// `Latest` sees only what arrives after, `caught_up` says when the shard is drained, and
/// later records are read from where the reader stopped.
pub async fn latest_and_caught_up(source: &dyn Source, sink: &dyn Sink) {
    let old = payloads("old", 5);
    put_all(sink, 0, &old).await;
    let shard = shard_with(source, &old[0]).await;
    let chunk = source
        .read(&shard, &StartAt::Latest, ReadLimit::default())
        .await
        .unwrap();
    assert!(chunk.records.is_empty() && chunk.caught_up);
    let at = chunk.next.clone().expect("a position to continue from");
    let new = payloads("new", 3);
    put_all(sink, 0, &new).await;
    let (got, _, end) = read_all(source, &shard, at, ReadLimit::default()).await;
    assert_eq!(got, new);
    let tail = source
        .read(&shard, &end, ReadLimit::default())
        .await
        .unwrap();
    assert!(tail.records.is_empty() && tail.caught_up);
}

/// `ArrivedAt(t)` starts at the first record that arrived at or after `t`.
pub async fn starts_at_an_arrival_time(source: &dyn Source, sink: &dyn Sink) {
    let before = payloads("before", 3);
    put_all(sink, 1, &before).await;
    let shard = shard_with(source, &before[0]).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let after = payloads("after", 2);
    put_all(sink, 1, &after).await;
    let (got, _, _) = read_all(source, &shard, StartAt::ArrivedAt(t), ReadLimit::default()).await;
    assert_eq!(got, after);
}

/// An unknown shard is an error, not an empty read.
pub async fn unknown_shard_is_an_error(source: &dyn Source) {
    assert!(source
        .read("no-such-shard", &StartAt::Earliest, ReadLimit::default())
        .await
        .is_err());
}

/// Keyed puts: every record of one key lands on one shard, in put order; the keys spread over
/// more than one shard; the answer counts every record.
pub async fn keyed_puts_keep_a_key_on_one_shard_in_order(source: &dyn Source, sink: &dyn Sink) {
    let keys: Vec<String> = (0..40).map(|k| format!("key-{k:03}")).collect();
    let records: Vec<(String, Vec<u8>)> = (0..400)
        .map(|i| {
            let key = keys[(i * 7) % keys.len()].clone();
            let payload = format!("{key}/{i:05}").into_bytes();
            (key, payload)
        })
        .collect();
    let refs: Vec<(&str, &[u8])> = records
        .iter()
        .map(|(k, p)| (k.as_str(), p.as_slice()))
        .collect();
    let stats = sink.put_keyed(&refs).await.expect("keyed put");
    assert_eq!(stats.records, 400);
    let mut shard_of: HashMap<String, String> = HashMap::new();
    let mut seen: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    let mut used_shards = 0;
    for s in source.shards().await.expect("shards") {
        let (p, _, _) = read_all(source, &s.id, StartAt::Earliest, ReadLimit::default()).await;
        used_shards += usize::from(!p.is_empty());
        for payload in p {
            let text = String::from_utf8(payload.clone()).expect("utf-8");
            let key = text.split('/').next().expect("a key").to_string();
            if let Some(other) = shard_of.insert(key.clone(), s.id.clone()) {
                assert_eq!(other, s.id, "records of {key} on two shards");
            }
            seen.entry(key).or_default().push(payload);
        }
    }
    assert!(used_shards > 1, "40 keys all landed on one shard");
    for (key, got) in seen {
        let want: Vec<Vec<u8>> = records
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, p)| p.clone())
            .collect();
        assert_eq!(got, want, "records of {key} out of order or missing");
    }
}
