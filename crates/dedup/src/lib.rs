//! # silt-dedup: dropping repeated events by their TimeUuid
//!
//! Producers retry, so the same event (same `uuid`) can arrive twice, minutes apart and on
//! another shard. [`DedupIndex`] remembers every id whose event time is within `window` of
//! the newest event time seen (the watermark) and answers, per record, whether it is new, a
//! repeat, or too late to tell (older than the window: its id may have been forgotten).
//!
//! Memory is bounded by the window, not by the stream: ids older than the watermark minus the
//! window are evicted at the end of each micro-batch ([`DedupIndex::end_batch`]). The index
//! serialises to a compact, deterministic snapshot ([`DedupIndex::to_bytes`]) that the job
//! saves with each checkpoint, so a restart forgets nothing and a rerun of a micro-batch
//! makes the same decisions.
//!
//! Lateness is judged against the watermark as it stood when the micro-batch began, so the
//! order in which shards are read within a batch does not change which records are late.
//!
//! ```
//! use silt_dedup::{DedupIndex, Verdict};
//!
//! let mut index = DedupIndex::new(15 * 60 * 1_000_000);
//! let id = [1u8; 16];
//! assert_eq!(index.observe(&id, 1_000), Verdict::New);
//! assert_eq!(index.observe(&id, 1_000), Verdict::Duplicate);
//! index.end_batch();
//! let restored = DedupIndex::from_bytes(&index.to_bytes()).unwrap();
//! let mut restored = restored;
//! assert_eq!(restored.observe(&id, 1_000), Verdict::Duplicate);
//! ```

use foldhash::fast::FixedState;
use hashbrown::HashMap;

/// What the index says about one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// First time seen within the window: keep it.
    New,
    /// Seen before within the window: drop it.
    Duplicate,
    /// Older than the window: a repeat cannot be ruled out; the job's policy decides.
    Late,
}

/// Errors reading a snapshot.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("dedup snapshot is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

const MAGIC: &[u8; 8] = b"SILTDD1\n";

/// The set of recent event ids, keyed by the 16-byte UUID.
#[derive(Debug, Clone)]
pub struct DedupIndex {
    window_us: i64,
    /// Newest event time committed so far.
    watermark_us: i64,
    /// Newest event time seen in the batch in hand.
    pending_watermark_us: i64,
    ids: HashMap<[u8; 16], i64, FixedState>,
}

impl DedupIndex {
    /// An empty index with a window in microseconds of event time.
    pub fn new(window_us: i64) -> Self {
        Self {
            window_us,
            watermark_us: i64::MIN,
            pending_watermark_us: i64::MIN,
            ids: HashMap::with_hasher(FixedState::default()),
        }
    }

    pub fn window_us(&self) -> i64 {
        self.window_us
    }

    /// The newest event time seen (microseconds), or `None` before any event.
    pub fn watermark_us(&self) -> Option<i64> {
        (self.watermark_us != i64::MIN).then_some(self.watermark_us)
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Judges one record and remembers it when it is new.
    #[inline]
    pub fn observe(&mut self, id: &[u8; 16], event_us: i64) -> Verdict {
        if self.watermark_us != i64::MIN
            && event_us < self.watermark_us.saturating_sub(self.window_us)
        {
            return Verdict::Late;
        }
        if event_us > self.pending_watermark_us {
            self.pending_watermark_us = event_us;
        }
        match self.ids.entry(*id) {
            hashbrown::hash_map::Entry::Occupied(_) => Verdict::Duplicate,
            hashbrown::hash_map::Entry::Vacant(v) => {
                v.insert(event_us);
                Verdict::New
            }
        }
    }

    /// Ends a micro-batch: moves the watermark up and forgets ids older than the window.
    pub fn end_batch(&mut self) {
        if self.pending_watermark_us > self.watermark_us {
            self.watermark_us = self.pending_watermark_us;
        }
        if self.watermark_us != i64::MIN {
            let horizon = self.watermark_us.saturating_sub(self.window_us);
            self.ids.retain(|_, t| *t >= horizon);
        }
    }

    /// A deterministic snapshot: the same index always gives the same bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Sorted by id as one 128-bit number: the same order as the bytes, without a memcmp
        // per comparison.
        let mut entries: Vec<(u128, i64)> = self
            .ids
            .iter()
            .map(|(id, t)| (u128::from_be_bytes(*id), *t))
            .collect();
        entries.sort_unstable_by_key(|e| e.0);
        let mut out = Vec::with_capacity(32 + entries.len() * 24);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.window_us.to_le_bytes());
        out.extend_from_slice(&self.watermark_us.to_le_bytes());
        out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
        for (id, t) in entries {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&t.to_le_bytes());
        }
        out
    }

    /// Reads a snapshot made by [`to_bytes`](Self::to_bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let corrupt = |m: &str| Error::Corrupt(m.to_string());
        if bytes.len() < 32 || &bytes[..8] != MAGIC {
            return Err(corrupt("bad header"));
        }
        let word = |i: usize| i64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        let window_us = word(8);
        let watermark_us = word(16);
        let n = word(24) as usize;
        if bytes.len() != 32 + n * 24 {
            return Err(corrupt("length does not match the entry count"));
        }
        let mut ids = HashMap::with_capacity_and_hasher(n, FixedState::default());
        for e in bytes[32..].chunks_exact(24) {
            ids.insert(
                e[..16].try_into().expect("16 bytes"),
                i64::from_le_bytes(e[16..].try_into().expect("8 bytes")),
            );
        }
        Ok(Self {
            window_us,
            watermark_us,
            pending_watermark_us: watermark_us,
            ids,
        })
    }

    /// Changes the window (a job file edited between runs).
    pub fn set_window_us(&mut self, window_us: i64) {
        self.window_us = window_us;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000;

    fn id(n: u8) -> [u8; 16] {
        [n; 16]
    }

    #[test]
    fn repeats_within_the_window_are_dropped_across_batches() {
        let mut d = DedupIndex::new(15 * MIN);
        assert_eq!(d.observe(&id(1), 0), Verdict::New);
        d.end_batch();
        assert_eq!(d.observe(&id(2), 10 * MIN), Verdict::New);
        assert_eq!(d.observe(&id(1), 0), Verdict::Duplicate);
        d.end_batch();
    }

    #[test]
    fn memory_is_bounded_by_the_window() {
        let mut d = DedupIndex::new(15 * MIN);
        for minute in 0..120 {
            for k in 0..100u32 {
                let mut i = [0u8; 16];
                i[..4].copy_from_slice(&(minute as u32).to_le_bytes());
                i[4..8].copy_from_slice(&k.to_le_bytes());
                assert_eq!(d.observe(&i, minute * MIN), Verdict::New);
            }
            d.end_batch();
        }
        // 16 minutes of ids (the window plus the current minute), not 120.
        assert_eq!(d.len(), 1600);
    }

    #[test]
    fn older_than_the_window_is_late_and_judged_from_the_batch_start() {
        let mut d = DedupIndex::new(15 * MIN);
        d.observe(&id(1), 60 * MIN);
        d.end_batch();
        assert_eq!(d.observe(&id(2), 44 * MIN), Verdict::Late);
        // A much newer event in this batch does not make others in the batch late.
        assert_eq!(d.observe(&id(3), 200 * MIN), Verdict::New);
        assert_eq!(d.observe(&id(4), 50 * MIN), Verdict::New);
        d.end_batch();
        assert_eq!(d.observe(&id(5), 180 * MIN), Verdict::Late);
    }

    #[test]
    fn snapshots_are_deterministic_and_round_trip() {
        let mut a = DedupIndex::new(15 * MIN);
        let mut b = DedupIndex::new(15 * MIN);
        for n in 0..50u8 {
            a.observe(&id(n), n as i64 * 1000);
        }
        for n in (0..50u8).rev() {
            b.observe(&id(n), n as i64 * 1000);
        }
        a.end_batch();
        b.end_batch();
        assert_eq!(a.to_bytes(), b.to_bytes());
        let mut c = DedupIndex::from_bytes(&a.to_bytes()).unwrap();
        assert_eq!(c.len(), 50);
        assert_eq!(c.observe(&id(7), 7000), Verdict::Duplicate);
        assert!(DedupIndex::from_bytes(b"junk").is_err());
    }
}
