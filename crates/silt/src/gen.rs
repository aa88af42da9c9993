//! Synthetic clickstream events, as the demo, the tests and the benchmark use them: both
//! schema versions, producer retries (repeats, sometimes on the other shard) and bad records
//! of every kind.

use std::sync::Arc;

use silt_ingest::FileStream;
use silt_wire::testing::SplitMix64 as Rng;
use silt_wire::{encode, envelope, timeuuid::TimeUuidGenerator, Fingerprint, Schema};

pub const SUBJECT: &str = "com.gilt.clickstream.v1.ProductPageViewedEvent";

pub const V1: &str = r#"{"type":"record","name":"ProductPageViewedEvent","namespace":"com.gilt.clickstream.v1","fields":[{"name":"uuid","type":{"type":"fixed","name":"UUID","namespace":"gfc.avro","size":16}},{"name":"productId","type":"long"},{"name":"saleId","type":["null","long"],"default":null}]}"#;

pub const V2: &str = r#"{"type":"record","name":"ProductPageViewedEvent","namespace":"com.gilt.clickstream.v1","fields":[{"name":"uuid","type":{"type":"fixed","name":"UUID","namespace":"gfc.avro","size":16}},{"name":"productId","type":"long"},{"name":"saleId","type":["null","long"],"default":null},{"name":"channel","type":["null","string"],"default":null}]}"#;

const CHANNELS: [&str; 4] = ["web", "ios", "android", "email"];

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenOptions {
    /// Distinct events.
    pub events: usize,
    /// Share of events sent twice.
    pub repeat_rate: f64,
    /// Bad records of each of the six kinds.
    pub bad_per_kind: usize,
    /// Event time of the first event (ms since the Unix epoch) and the spacing.
    pub start_ms: i64,
    pub step_ms: i64,
    pub shards: usize,
    pub seed: u64,
    /// Distinct products (page views per product make the aggregates interesting).
    pub products: u64,
    /// Share of events written with v1 (the first ones); the rest use v2.
    pub v1_share: f64,
    /// When non-zero, every v2 event's `channel` is a referrer URL of this many bytes (the
    /// benchmark's ~150-byte bodies); else a short channel name, or none.
    pub channel_bytes: usize,
}

impl Default for GenOptions {
    fn default() -> Self {
        Self {
            events: 20_000,
            repeat_rate: 0.05,
            bad_per_kind: 3,
            start_ms: 1_764_108_000_000, // 2025-11-25T22:00:00Z
            step_ms: 500,
            shards: 2,
            seed: 7,
            products: 500,
            v1_share: 0.5,
            channel_bytes: 0,
        }
    }
}

/// What was generated.
#[derive(Debug, Clone, Default)]
pub struct Generated {
    pub distinct: usize,
    pub repeats: usize,
    pub bad: usize,
    /// Bytes of all records put (envelopes).
    pub bytes: u64,
    /// Bytes of the distinct events' Avro bodies.
    pub body_bytes: u64,
}

/// The two schema versions, parsed.
pub fn schemas() -> (Arc<Schema>, Arc<Schema>) {
    (
        Arc::new(Schema::parse(V1).expect("valid")),
        Arc::new(Schema::parse(V2).expect("valid")),
    )
}

/// Encodes one event body (v1 when `channel` is `None` and `v1` is set).
pub fn body(
    uuid: &[u8; 16],
    product: i64,
    sale: Option<i64>,
    channel: Option<&str>,
    v2: bool,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(uuid);
    encode::long(product, out);
    match sale {
        None => encode::long(0, out),
        Some(s) => {
            encode::long(1, out);
            encode::long(s, out);
        }
    }
    if v2 {
        match channel {
            None => encode::long(0, out),
            Some(c) => {
                encode::long(1, out);
                encode::bytes(c.as_bytes(), out);
            }
        }
    }
}

/// A referrer URL of exactly `len` bytes (cut or padded with a fragment).
fn referrer(rng: &mut Rng, product: i64, sale: Option<i64>, len: usize, out: &mut String) {
    use std::fmt::Write as _;
    const SOURCES: [&str; 5] = ["newsletter", "google", "facebook", "instagram", "affiliate"];
    const MEDIUMS: [&str; 3] = ["email", "cpc", "social"];
    out.clear();
    let _ = write!(
        out,
        "https://www.gilt.com/sale/{}/product/{product}?utm_source={}&utm_medium={}&utm_campaign=noon-drop-{}&ref={:08x}",
        sale.unwrap_or(0),
        SOURCES[(rng.next_u64() % 5) as usize],
        MEDIUMS[(rng.next_u64() % 3) as usize],
        rng.next_u64() % 365,
        rng.next_u64() as u32,
    );
    if out.len() > len {
        out.truncate(len);
    } else {
        out.push('#');
        while out.len() < len {
            out.push('x');
        }
        out.truncate(len);
    }
}

/// Writes events into a file stream: the first half with v1, the rest with v2, repeats a
/// few records later (sometimes on the other shard), bad records spread through.
pub fn generate(stream: &FileStream, opts: &GenOptions) -> silt_ingest::Result<Generated> {
    let (v1, v2) = schemas();
    let (fp1, fp2): (Fingerprint, Fingerprint) = (v1.fingerprint(), v2.fingerprint());
    let ids = TimeUuidGenerator::new([0x02, 0x42, 0xac, 0x11, 0x00, 0x02], 0x1234);
    let mut rng = Rng(opts.seed);
    let shards = opts.shards.max(1);
    let mut out = Generated::default();
    let mut pending: Vec<Vec<Vec<u8>>> = vec![Vec::new(); shards];
    let mut repeats: Vec<(usize, Vec<u8>)> = Vec::new();
    let bad_every = if opts.bad_per_kind == 0 {
        usize::MAX
    } else {
        (opts.events / (opts.bad_per_kind * 6 + 1)).max(1)
    };
    let mut bad_made = 0;
    let mut body_buf = Vec::with_capacity(64);
    let mut url = String::with_capacity(opts.channel_bytes + 64);
    let flush = |pending: &mut Vec<Vec<Vec<u8>>>,
                 arrival: i64,
                 out: &mut Generated|
     -> silt_ingest::Result<()> {
        for (s, recs) in pending.iter_mut().enumerate() {
            if recs.is_empty() {
                continue;
            }
            let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
            out.bytes += refs.iter().map(|r| r.len() as u64).sum::<u64>();
            stream.append_at(s, &refs, arrival)?;
            recs.clear();
        }
        Ok(())
    };
    for i in 0..opts.events {
        let event_ms = opts.start_ms + i as i64 * opts.step_ms;
        let uuid = ids.next_at_unix_millis(event_ms);
        let v2_now = i as f64 >= opts.events as f64 * opts.v1_share;
        let product = 1 + (rng.next_u64() % opts.products) as i64;
        let sale = (rng.unit() < 0.3).then(|| 1000 + (rng.next_u64() % 50) as i64);
        let channel = if opts.channel_bytes > 0 && v2_now {
            referrer(&mut rng, product, sale, opts.channel_bytes, &mut url);
            Some(url.as_str())
        } else {
            (v2_now && rng.unit() < 0.8).then(|| CHANNELS[(rng.next_u64() % 4) as usize])
        };
        body_buf.clear();
        body(&uuid, product, sale, channel, v2_now, &mut body_buf);
        out.body_bytes += body_buf.len() as u64;
        let rec = envelope(if v2_now { &fp2 } else { &fp1 }, &body_buf);
        let shard = (rng.next_u64() % shards as u64) as usize;
        if rng.unit() < opts.repeat_rate {
            let other = if rng.unit() < 0.3 {
                (shard + 1) % shards
            } else {
                shard
            };
            repeats.push((other, rec.clone()));
            out.repeats += 1;
        }
        pending[shard].push(rec);
        out.distinct += 1;
        // A producer retry shows up a little later.
        if repeats.len() > 8 || (i + 1 == opts.events && !repeats.is_empty()) {
            for (s, r) in repeats.drain(..) {
                pending[s].push(r);
            }
        }
        if i % bad_every == bad_every - 1 && bad_made < opts.bad_per_kind * 6 {
            let kind = bad_made % 6;
            let mut bad = envelope(if v2_now { &fp2 } else { &fp1 }, &body_buf);
            match kind {
                0 => bad[0] = 0x80,                           // wrong header
                1 => bad[1..33].copy_from_slice(&[0xEE; 32]), // unknown fingerprint
                2 => bad.truncate(bad.len() - 3),             // truncated body
                3 => bad.extend_from_slice(&[0, 0]),          // trailing bytes
                4 => bad.truncate(20),                        // shorter than 33 bytes
                _ => bad.clear(),                             // empty
            }
            pending[shard].push(bad);
            bad_made += 1;
            out.bad += 1;
        }
        if i % 256 == 255 {
            flush(&mut pending, event_ms + 40, &mut out)?;
        }
    }
    let last = opts.start_ms + opts.events as i64 * opts.step_ms;
    for (s, r) in repeats.drain(..) {
        pending[s].push(r);
    }
    flush(&mut pending, last + 40, &mut out)?;
    Ok(out)
}
