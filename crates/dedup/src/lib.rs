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
//! saves with its checkpoints, so a restart forgets nothing and a rerun of a micro-batch
//! makes the same decisions. Between two snapshots a checkpoint need only save the ids
//! remembered since the last one ([`DedupIndex::delta_bytes`]): a snapshot followed by its
//! deltas ([`DedupIndex::apply_delta`]) restores the index as it was.
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
use std::hash::BuildHasher;

use hashbrown::{HashMap, HashTable};

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
    /// A snapshot or delta of a newer silt, in a format this one does not know.
    #[error("dedup snapshot was written by a newer silt (format {found}; this silt reads up to {known}): upgrade silt to read it")]
    NewerFormat { found: char, known: char },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A snapshot: every id remembered, and the window and watermark.
const MAGIC: &[u8; 8] = b"SILTDD3\n";
/// A delta: the ids remembered since the last snapshot or delta, and the watermark and
/// window the batch ended with.
const DELTA_MAGIC: &[u8; 8] = b"SILTDD4\n";
/// Snapshots and deltas as silt wrote them before they were packed (24 bytes an id: the id,
/// then its time as an `i64`): still read, no longer written.
const OLD_MAGIC: &[u8; 8] = b"SILTDD1\n";
const OLD_DELTA_MAGIC: &[u8; 8] = b"SILTDD2\n";
/// Bytes of the header: magic, window, watermark, number of ids.
const HEADER: usize = 32;

/// Width of a time bucket of ids: ids are kept in buckets of one second of event time.
const BUCKET_US: i64 = 1_000_000;

/// The ids of one second of event time, in the order they were first seen.
///
/// Each id is held once: in `order`, with its time as microseconds into the second (20 bytes).
/// The table that finds it holds its index into `order` (4 bytes and a control byte a slot),
/// not a copy. With a set of the ids beside a list of ids and full times, a million ids took
/// 63 MB; this way 35 MB (massif, `silt run` of 1M events). The window's ids are the index's
/// whole memory (millions of them at a sale's peak).
#[derive(Debug, Clone, Default)]
struct Bucket {
    /// Indexes into `order`, hashed by the id they point to.
    ids: HashTable<u32>,
    order: Vec<([u8; 16], u32)>,
    /// `order[..saved]` are in a saved snapshot or delta already.
    saved: usize,
}

impl Bucket {
    fn with_capacity(n: usize) -> Self {
        Self {
            ids: HashTable::with_capacity(n),
            order: Vec::with_capacity(n),
            saved: 0,
        }
    }

    /// Remembers `id` at `us` microseconds into the second; false when it is there already.
    #[inline]
    fn insert(&mut self, id: [u8; 16], us: u32) -> bool {
        let Bucket { ids, order, .. } = self;
        let at = |i: &u32| &order[*i as usize].0;
        match ids.entry(hash(&id), |i| *at(i) == id, |i| hash(at(i))) {
            hashbrown::hash_table::Entry::Occupied(_) => false,
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(u32::try_from(order.len()).expect("fewer than 2^32 ids in a second"));
                order.push((id, us));
                true
            }
        }
    }
}

#[inline]
fn hash(id: &[u8; 16]) -> u64 {
    FixedState::default().hash_one(u128::from_ne_bytes(*id))
}

/// The bucket of second `key`, made if new: sized like the second before it, so that its
/// table does not grow (and rehash) from empty as the second's ids come in; or like a
/// `typical` second when that is larger but not past twice the second before (which may hold
/// one shard's part so far), so that quiet seconds after a peak are not all sized like the
/// peak's.
#[inline]
fn bucket(buckets: &mut HashMap<i64, Bucket, FixedState>, key: i64, typical: usize) -> &mut Bucket {
    if !buckets.contains_key(&key) {
        let like = match buckets.get(&(key - 1)) {
            Some(b) => {
                let before = b.order.len();
                before.max(typical.min(2 * before))
            }
            None => typical,
        };
        buckets.insert(key, Bucket::with_capacity(like));
    }
    buckets
        .get_mut(&key)
        .expect("made above if it was not there")
}

/// The set of recent event ids, keyed by the 16-byte UUID.
///
/// Ids live in buckets of one second of event time. A stream arrives roughly in event-time
/// order, so the buckets in use are few and stay in cache (a lookup does not miss through a
/// table of the whole window), and forgetting old ids drops whole buckets instead of
/// scanning every id.
#[derive(Debug, Clone)]
pub struct DedupIndex {
    window_us: i64,
    /// Newest event time committed so far.
    watermark_us: i64,
    /// Newest event time seen in the batch in hand.
    pending_watermark_us: i64,
    buckets: HashMap<i64, Bucket, FixedState>,
    len: usize,
    /// Ids in a second, on average over the seconds held when the last batch ended: what a
    /// new second is sized for at least. The second before a new one is not always whole
    /// yet (shards read one after the other each bring their part of every second), and a
    /// second sized like half of it grows, rehashing, as the rest arrives.
    typical: usize,
}

impl DedupIndex {
    /// An empty index with a window in microseconds of event time.
    pub fn new(window_us: i64) -> Self {
        Self {
            window_us,
            watermark_us: i64::MIN,
            pending_watermark_us: i64::MIN,
            buckets: HashMap::with_hasher(FixedState::default()),
            len: 0,
            typical: 0,
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
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Judges one record and remembers it when it is new. `event_us` must follow from the id
    /// (the TimeUuid's own time, as the job passes it): a repeat is looked for among the ids
    /// of its second.
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
        if self.insert(*id, event_us) {
            Verdict::New
        } else {
            Verdict::Duplicate
        }
    }

    /// Judges records in turn, as [`observe`](Self::observe) does each, pushing a verdict a
    /// record to `verdicts`. A run of records of one second (as a shard's records come) looks
    /// its second up once, not once a record.
    pub fn observe_all<'a>(
        &mut self,
        records: impl IntoIterator<Item = (&'a [u8; 16], i64)>,
        verdicts: &mut Vec<Verdict>,
    ) {
        let horizon = (self.watermark_us != i64::MIN)
            .then(|| self.watermark_us.saturating_sub(self.window_us));
        let typical = self.typical;
        let (mut newest, mut added) = (self.pending_watermark_us, 0);
        let mut second: Option<(i64, &mut Bucket)> = None;
        for (id, event_us) in records {
            if horizon.is_some_and(|h| event_us < h) {
                verdicts.push(Verdict::Late);
                continue;
            }
            newest = newest.max(event_us);
            let key = event_us.div_euclid(BUCKET_US);
            let us = event_us.rem_euclid(BUCKET_US) as u32;
            if second.as_ref().is_none_or(|(k, _)| *k != key) {
                second = Some((key, bucket(&mut self.buckets, key, typical)));
            }
            let (_, b) = second.as_mut().expect("the record's second, found above");
            verdicts.push(match b.insert(*id, us) {
                true => {
                    added += 1;
                    Verdict::New
                }
                false => Verdict::Duplicate,
            });
        }
        self.pending_watermark_us = newest;
        self.len += added;
    }

    /// Remembers an id; false when it was remembered already.
    #[inline]
    fn insert(&mut self, id: [u8; 16], event_us: i64) -> bool {
        let key = event_us.div_euclid(BUCKET_US);
        let us = event_us.rem_euclid(BUCKET_US) as u32;
        if !bucket(&mut self.buckets, key, self.typical).insert(id, us) {
            return false;
        }
        self.len += 1;
        true
    }

    /// Keeps the watermark that [`end_batch`](Self::end_batch) sets at or below `at_most_us`:
    /// the newest event time of a shard that still has records to read. A stream whose shards
    /// are read at different paces (a busy shard's backlog beside a quiet one already at the
    /// present) must not have the quiet shard's times make the busy shard's next events late.
    pub fn hold_watermark(&mut self, at_most_us: i64) {
        self.pending_watermark_us = self.pending_watermark_us.min(at_most_us);
    }

    /// Ends a micro-batch: moves the watermark up and forgets ids older than the window
    /// (whole seconds: the second that holds the horizon is kept whole; a record older than
    /// the horizon is judged late before its id is looked up, so the extra ids change no
    /// verdict).
    pub fn end_batch(&mut self) {
        if self.pending_watermark_us > self.watermark_us {
            self.watermark_us = self.pending_watermark_us;
        }
        if self.watermark_us != i64::MIN {
            let horizon = self.watermark_us.saturating_sub(self.window_us);
            let first_kept = horizon.div_euclid(BUCKET_US);
            let len = &mut self.len;
            self.buckets.retain(|&k, b| {
                let keep = k >= first_kept;
                if !keep {
                    *len -= b.order.len();
                }
                keep
            });
        }
        self.note_typical();
    }

    /// Takes the ids held per second, on average, as the size of a typical second.
    fn note_typical(&mut self) {
        self.typical = self.len.div_ceil(self.buckets.len().max(1));
    }

    /// A deterministic snapshot: the ids second by second, each second's in the order they
    /// were first seen, so the same records in the same order (a rerun, or a run restored
    /// from a snapshot) give the same bytes. No sort of the ids.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.write(MAGIC, self.len, |_| 0)
    }

    /// Reads a snapshot made by [`to_bytes`](Self::to_bytes). Its ids count as saved.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let saved = Saved::parse(bytes, Some(Kind::Snapshot))?;
        let mut index = Self {
            window_us: saved.window_us,
            watermark_us: saved.watermark_us,
            pending_watermark_us: saved.watermark_us,
            buckets: HashMap::with_hasher(FixedState::default()),
            len: 0,
            typical: 0,
        };
        saved.for_each(|id, t| {
            if index.insert(id, t) {
                Ok(())
            } else {
                Err(Error::Corrupt("an id appears twice".into()))
            }
        })?;
        index.mark_saved();
        index.note_typical();
        Ok(index)
    }

    /// How many ids a snapshot or a delta holds (from its header).
    pub fn count(bytes: &[u8]) -> Result<usize> {
        Ok(Saved::parse(bytes, None)?.entries)
    }

    /// How many ids were remembered since the last [`mark_saved`](Self::mark_saved) (and are
    /// still remembered): the entries of [`delta_bytes`](Self::delta_bytes).
    pub fn unsaved_len(&self) -> usize {
        self.buckets.values().map(|b| b.order.len() - b.saved).sum()
    }

    /// The ids remembered since the last [`mark_saved`](Self::mark_saved), second by second
    /// and each second's in the order they were first seen (deterministic, as
    /// [`to_bytes`](Self::to_bytes)), with the watermark and window the batch ended with. Ids of
    /// seconds evicted since are left out: the replay evicts them too.
    pub fn delta_bytes(&self) -> Vec<u8> {
        self.write(DELTA_MAGIC, self.unsaved_len(), |b| b.saved)
    }

    /// Records that every id remembered so far is saved (after a snapshot or a delta).
    pub fn mark_saved(&mut self) {
        for b in self.buckets.values_mut() {
            b.saved = b.order.len();
        }
    }

    /// Replays a delta made by [`delta_bytes`](Self::delta_bytes) over the index it followed
    /// (restored from the snapshot and the deltas before it): the ids are remembered, the
    /// watermark moves up and older seconds are forgotten, as the live index did at the end
    /// of that batch. The ids count as saved.
    pub fn apply_delta(&mut self, bytes: &[u8]) -> Result<()> {
        let saved = Saved::parse(bytes, Some(Kind::Delta))?;
        let (window_us, watermark_us) = (saved.window_us, saved.watermark_us);
        saved.for_each(|id, t| {
            if self.insert(id, t) {
                Ok(())
            } else {
                Err(Error::Corrupt(
                    "a delta repeats an id the index holds".into(),
                ))
            }
        })?;
        let window = std::mem::replace(&mut self.window_us, window_us);
        if watermark_us != i64::MIN {
            self.pending_watermark_us = self.pending_watermark_us.max(watermark_us);
        }
        self.end_batch();
        self.window_us = window;
        self.mark_saved();
        Ok(())
    }

    /// Writes the ids of each second from `from(second)` on, packed (see [`Saved`]).
    fn write(&self, magic: &[u8; 8], entries: usize, from: impl Fn(&Bucket) -> usize) -> Vec<u8> {
        let mut keys: Vec<i64> = self.buckets.keys().copied().collect();
        keys.sort_unstable();
        // The distinct tails (bytes 4..16) of the ids, numbered as first seen: a TimeUuid's
        // tail (the high bits of its time, its clock sequence and node) is the same for all
        // the ids of one producer over minutes.
        let mut tails: Vec<[u8; 12]> = Vec::new();
        let mut tail_at: HashMap<[u8; 12], u64, FixedState> =
            HashMap::with_hasher(FixedState::default());
        let mut last: Option<([u8; 12], u64)> = None;
        let mut seconds = 0u64;
        let mut body = Vec::with_capacity(entries * 9);
        let mut prev: Option<i64> = None;
        for k in keys {
            let b = &self.buckets[&k];
            let new = &b.order[from(b)..];
            if new.is_empty() {
                continue;
            }
            seconds += 1;
            // The first second as itself (zigzag), then each as its gap from the one before.
            let gap = match prev {
                None => ((k << 1) ^ (k >> 63)) as u64,
                Some(p) => k.wrapping_sub(p) as u64,
            };
            prev = Some(k);
            varint(gap, &mut body);
            varint(new.len() as u64, &mut body);
            for (id, us) in new {
                let tail: [u8; 12] = id[4..].try_into().expect("12 bytes");
                let n = match last {
                    Some((l, n)) if l == tail => n,
                    _ => {
                        let n = *tail_at.entry(tail).or_insert_with(|| {
                            tails.push(tail);
                            tails.len() as u64 - 1
                        });
                        last = Some((tail, n));
                        n
                    }
                };
                body.extend_from_slice(&id[..4]);
                varint(n, &mut body);
                varint(u64::from(*us), &mut body);
            }
        }
        let mut out = Vec::with_capacity(HEADER + 20 + tails.len() * 12 + body.len());
        out.extend_from_slice(magic);
        out.extend_from_slice(&self.window_us.to_le_bytes());
        out.extend_from_slice(&self.watermark_us.to_le_bytes());
        out.extend_from_slice(&(entries as u64).to_le_bytes());
        varint(tails.len() as u64, &mut out);
        for t in &tails {
            out.extend_from_slice(t);
        }
        varint(seconds, &mut out);
        out.extend_from_slice(&body);
        out
    }

    /// Changes the window (a job file edited between runs).
    pub fn set_window_us(&mut self, window_us: i64) {
        self.window_us = window_us;
    }
}

/// Appends `v` as a LEB128 varint.
fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Snapshot,
    Delta,
}

/// A snapshot or a delta, its header read.
///
/// After the header (magic, window, watermark, number of ids: 8 bytes each, little-endian),
/// the packed form holds, as LEB128 varints unless said otherwise:
/// - the number of distinct id tails, then each tail (bytes 4..16 of an id, 12 bytes);
/// - the number of seconds, then per second in time order: the second (the first as a
///   zigzag number, the others as the gap from the one before), its number of ids, and per
///   id in the order first seen: bytes 0..4 of the id (4 bytes), the index of its tail, and
///   its time in microseconds into the second.
///
/// About 8 bytes a TimeUuid, against the 24 of the older form (the id and its time as they
/// are), which is still read.
struct Saved<'a> {
    window_us: i64,
    watermark_us: i64,
    entries: usize,
    packed: bool,
    rest: &'a [u8],
}

impl<'a> Saved<'a> {
    /// Reads the header of a snapshot or a delta (`kind`, or either when `None`).
    fn parse(bytes: &'a [u8], kind: Option<Kind>) -> Result<Self> {
        let corrupt = |m: &str| Error::Corrupt(m.to_string());
        let magic = bytes.get(..8).unwrap_or_default();
        let (packed, found) = match magic {
            m if m == MAGIC => (true, Kind::Snapshot),
            m if m == DELTA_MAGIC => (true, Kind::Delta),
            m if m == OLD_MAGIC => (false, Kind::Snapshot),
            m if m == OLD_DELTA_MAGIC => (false, Kind::Delta),
            // `SILTDD` and a later digit: a format of a newer silt, refused rather than misread.
            m if m.starts_with(b"SILTDD") && m.ends_with(b"\n") && m[6] > DELTA_MAGIC[6] => {
                return Err(Error::NewerFormat {
                    found: m[6] as char,
                    known: DELTA_MAGIC[6] as char,
                })
            }
            _ => return Err(corrupt("bad header")),
        };
        if kind.is_some_and(|k| k != found) {
            return Err(corrupt(
                "a delta where a snapshot was expected, or the other way round",
            ));
        }
        if bytes.len() < HEADER {
            return Err(corrupt("bad header"));
        }
        let word = |i: usize| i64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        let entries = word(24) as u64;
        let rest = &bytes[HEADER..];
        if !packed && rest.len() as u64 != entries.saturating_mul(24) {
            return Err(corrupt("length does not match the entry count"));
        }
        Ok(Self {
            window_us: word(8),
            watermark_us: word(16),
            entries: usize::try_from(entries).map_err(|_| corrupt("bad entry count"))?,
            packed,
            rest,
        })
    }

    /// Calls `f` with each id and its time, in the order written.
    fn for_each(self, mut f: impl FnMut([u8; 16], i64) -> Result<()>) -> Result<()> {
        if !self.packed {
            for e in self.rest.chunks_exact(24) {
                let t = i64::from_le_bytes(e[16..].try_into().expect("8 bytes"));
                f(e[..16].try_into().expect("16 bytes"), t)?;
            }
            return Ok(());
        }
        let corrupt = |m: &str| Error::Corrupt(m.to_string());
        let mut r = Reader(self.rest);
        let tails_len = r.varint()?;
        let tails = r.take(
            usize::try_from(tails_len)
                .ok()
                .and_then(|n| n.checked_mul(12))
                .ok_or_else(|| corrupt("bad number of id tails"))?,
        )?;
        let seconds = r.varint()?;
        let mut seen = 0usize;
        let mut key: Option<i64> = None;
        for _ in 0..seconds {
            let gap = r.varint()?;
            let k = match key {
                None => (gap >> 1) as i64 ^ -((gap & 1) as i64),
                Some(p) if gap > 0 => p
                    .checked_add_unsigned(gap)
                    .ok_or_else(|| corrupt("a second out of range"))?,
                Some(_) => return Err(corrupt("seconds out of order")),
            };
            key = Some(k);
            let start = k
                .checked_mul(BUCKET_US)
                .ok_or_else(|| corrupt("a second out of range"))?;
            let n = r.varint()?;
            for _ in 0..n {
                seen += 1;
                if seen > self.entries {
                    return Err(corrupt("more ids than the header says"));
                }
                let mut id = [0u8; 16];
                id[..4].copy_from_slice(r.take(4)?);
                let tail = r.varint()?;
                if tail >= tails_len {
                    return Err(corrupt("an id's tail is not in the table"));
                }
                let at = tail as usize * 12;
                id[4..].copy_from_slice(&tails[at..at + 12]);
                let us = r.varint()?;
                if us >= BUCKET_US as u64 {
                    return Err(corrupt("a time outside its second"));
                }
                let t = start
                    .checked_add(us as i64)
                    .ok_or_else(|| corrupt("a second out of range"))?;
                f(id, t)?;
            }
        }
        if seen != self.entries || !r.0.is_empty() {
            return Err(corrupt("length does not match the entry count"));
        }
        Ok(())
    }
}

/// Reads a packed snapshot front to back.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(Error::Corrupt("cut short".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.take(1)?.first().expect("one byte");
            v |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Error::Corrupt("a number too long".into()))
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
    fn a_second_of_many_ids_finds_each_after_its_table_grows() {
        // One second's table grows from empty through many rehashes (each moving the
        // indexes by the ids they point to); the next second starts sized like it.
        let mut rng = silt_wire::testing::SplitMix64(3);
        let ids: Vec<[u8; 16]> = (0..50_000).map(|_| rng.bytes16()).collect();
        let mut d = DedupIndex::new(15 * MIN);
        for (n, i) in ids.iter().enumerate() {
            assert_eq!(d.observe(i, n as i64 % 1_000_000), Verdict::New);
        }
        for (n, i) in ids.iter().enumerate() {
            assert_eq!(
                d.observe(i, n as i64 % 1_000_000),
                Verdict::Duplicate,
                "id {n}"
            );
            // The same id in the next second is another second's business.
            assert_eq!(d.observe(i, 1_000_000 + n as i64), Verdict::New, "id {n}");
        }
        assert_eq!(d.len(), 100_000);
        d.end_batch();
        let restored = DedupIndex::from_bytes(&d.to_bytes()).unwrap();
        assert_eq!(restored.to_bytes(), d.to_bytes());
    }

    #[test]
    fn a_new_second_is_sized_for_a_typical_second_not_for_the_part_of_the_last_seen_so_far() {
        // Two shards read one after the other: the first brings half of each second's ids.
        let shard = |d: &mut DedupIndex, s: u8, seconds: std::ops::Range<i64>| {
            for sec in seconds {
                for k in 0..300u32 {
                    let mut i = [s; 16];
                    i[..8].copy_from_slice(&sec.to_le_bytes());
                    i[8..12].copy_from_slice(&k.to_le_bytes());
                    assert_eq!(d.observe(&i, sec * 1_000_000 + k as i64), Verdict::New);
                }
            }
        };
        let mut d = DedupIndex::new(15 * MIN);
        shard(&mut d, 1, 0..10);
        shard(&mut d, 2, 0..10);
        d.end_batch();
        assert_eq!(d.typical, 600);
        // The next batch: the first shard's part of second 10 makes it, sized for the whole.
        shard(&mut d, 1, 10..12);
        let capacity = |d: &DedupIndex, sec| {
            let b = &d.buckets[&sec];
            (b.ids.capacity(), b.order.capacity())
        };
        let (ids, order) = capacity(&d, 11);
        assert!(ids >= 600 && order >= 600, "{ids} {order}");
        shard(&mut d, 2, 10..12);
        // The whole second came in without either growing.
        assert_eq!(capacity(&d, 11), (ids, order));
        // A restored index sizes its next second the same.
        d.end_batch();
        let restored = DedupIndex::from_bytes(&d.to_bytes()).unwrap();
        assert_eq!(restored.typical, 600);
        // After the peak, quiet seconds of 10 ids are not each sized for 600.
        for sec in 12..20i64 {
            for k in 0..10u32 {
                let mut i = [3u8; 16];
                i[..8].copy_from_slice(&sec.to_le_bytes());
                i[8..12].copy_from_slice(&k.to_le_bytes());
                d.observe(&i, sec * 1_000_000 + k as i64);
            }
        }
        let (ids, order) = capacity(&d, 19);
        assert!(ids < 64 && order <= 20, "{ids} {order}");
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
    fn a_held_watermark_stops_at_the_hold_and_never_goes_back() {
        let mut d = DedupIndex::new(15 * MIN);
        d.observe(&id(1), 100 * MIN);
        d.observe(&id(2), 10 * MIN);
        d.hold_watermark(10 * MIN);
        d.end_batch();
        assert_eq!(d.watermark_us(), Some(10 * MIN));
        // Within the window of the held watermark: not late, and still remembered.
        assert_eq!(d.observe(&id(3), MIN), Verdict::New);
        assert_eq!(d.observe(&id(2), 10 * MIN), Verdict::Duplicate);
        d.end_batch();
        assert_eq!(d.watermark_us(), Some(10 * MIN));
        // A hold below the watermark does not move it back.
        d.observe(&id(4), 20 * MIN);
        d.hold_watermark(5 * MIN);
        d.end_batch();
        assert_eq!(d.watermark_us(), Some(10 * MIN));
    }

    #[test]
    fn snapshots_are_deterministic_and_round_trip() {
        let (mut a, mut b) = (DedupIndex::new(15 * MIN), DedupIndex::new(15 * MIN));
        for n in 0..50u8 {
            a.observe(&id(n), n as i64 * 1000);
            b.observe(&id(n), n as i64 * 1000);
            // A repeat changes nothing.
            b.observe(&id(n / 2), n as i64 * 1000);
        }
        a.end_batch();
        b.end_batch();
        assert_eq!(a.to_bytes(), b.to_bytes());
        let mut c = DedupIndex::from_bytes(&a.to_bytes()).unwrap();
        assert_eq!(c.len(), 50);
        // A restored index goes on as the original: same snapshots after the same records.
        for d in [&mut a, &mut c] {
            assert_eq!(d.observe(&id(7), 7000), Verdict::Duplicate);
            assert_eq!(d.observe(&id(200), 9000), Verdict::New);
            d.end_batch();
        }
        assert_eq!(a.to_bytes(), c.to_bytes());
        assert!(DedupIndex::from_bytes(b"junk").is_err());
    }

    #[test]
    fn eviction_keeps_the_snapshot_in_step_with_the_index() {
        let mut d = DedupIndex::new(15 * MIN);
        for minute in 0..40 {
            d.observe(&id(minute as u8), minute * MIN);
            d.end_batch();
        }
        let r = DedupIndex::from_bytes(&d.to_bytes()).unwrap();
        assert_eq!(r.len(), d.len());
        assert_eq!(d.len(), 16);
    }

    #[test]
    fn a_snapshot_holding_an_id_twice_is_corrupt() {
        // Two ids that differ only in their first four bytes (one tail for both); then the
        // second's head is made the first's.
        let mut d = DedupIndex::new(15 * MIN);
        d.observe(&[1; 16], 0);
        let mut other = [1; 16];
        other[..4].copy_from_slice(&[2; 4]);
        d.observe(&other, 0);
        let mut bytes = d.to_bytes();
        let second = bytes
            .windows(4)
            .position(|w| w == [2, 2, 2, 2])
            .expect("the second id's head");
        bytes[second..second + 4].copy_from_slice(&[1; 4]);
        assert!(matches!(
            DedupIndex::from_bytes(&bytes),
            Err(Error::Corrupt(m)) if m.contains("twice")
        ));
    }

    /// A snapshot or delta in the 24-bytes-an-id form that silt wrote before packing them.
    fn old_form(magic: &[u8; 8], window: i64, watermark: i64, ids: &[([u8; 16], i64)]) -> Vec<u8> {
        let mut out = magic.to_vec();
        out.extend_from_slice(&window.to_le_bytes());
        out.extend_from_slice(&watermark.to_le_bytes());
        out.extend_from_slice(&(ids.len() as u64).to_le_bytes());
        for (id, t) in ids {
            out.extend_from_slice(id);
            out.extend_from_slice(&t.to_le_bytes());
        }
        out
    }

    #[test]
    fn snapshots_and_deltas_of_the_older_form_still_read() {
        let snapshot = old_form(
            OLD_MAGIC,
            15 * MIN,
            2 * MIN,
            &[(id(1), MIN), (id(2), 2 * MIN)],
        );
        let delta = old_form(OLD_DELTA_MAGIC, 15 * MIN, 3 * MIN, &[(id(3), 3 * MIN)]);
        assert_eq!(DedupIndex::count(&snapshot).unwrap(), 2);
        assert_eq!(DedupIndex::count(&delta).unwrap(), 1);
        let mut d = DedupIndex::from_bytes(&snapshot).unwrap();
        d.apply_delta(&delta).unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(d.watermark_us(), Some(3 * MIN));
        for n in 1..=3 {
            assert_eq!(d.observe(&id(n), n as i64 * MIN), Verdict::Duplicate);
        }
        // Written again, packed, it reads back the same.
        let again = DedupIndex::from_bytes(&d.to_bytes()).unwrap();
        assert_eq!(again.to_bytes(), d.to_bytes());
        assert_eq!(&d.to_bytes()[..8], MAGIC);
        assert!(DedupIndex::from_bytes(&snapshot[..snapshot.len() - 1]).is_err());
    }

    /// TimeUuid-like ids: the time's low 32 bits first, the rest (time high bits, clock
    /// sequence, node) the same for one producer.
    fn time_id(t_us: i64, node: u8) -> [u8; 16] {
        let ticks = (t_us as u64) * 10;
        let mut i = [0u8; 16];
        i[..4].copy_from_slice(&(ticks as u32).to_be_bytes());
        i[4..6].copy_from_slice(&((ticks >> 32) as u16).to_be_bytes());
        i[6..8].copy_from_slice(&(((ticks >> 48) as u16 & 0x0fff) | 0x1000).to_be_bytes());
        i[8..].copy_from_slice(&[0x92, 0x34, 0x02, 0x42, 0xac, 0x11, 0x00, node]);
        i
    }

    #[test]
    fn time_uuids_pack_to_a_third_of_the_older_form_and_round_trip() {
        let mut d = DedupIndex::new(15 * MIN);
        let start = 1_764_108_000_000_000i64;
        // Ten minutes at 500 events a second from four producers.
        for k in 0..300_000i64 {
            let t = start + k * 2_000;
            assert_eq!(d.observe(&time_id(t, (k % 4) as u8), t), Verdict::New);
        }
        d.end_batch();
        let bytes = d.to_bytes();
        assert_eq!(DedupIndex::count(&bytes).unwrap(), 300_000);
        assert!(
            bytes.len() * 3 <= HEADER + 300_000 * 24,
            "{} bytes for 300,000 ids",
            bytes.len()
        );
        let r = DedupIndex::from_bytes(&bytes).unwrap();
        assert_eq!(r.len(), d.len());
        assert_eq!(r.to_bytes(), bytes);
        let mut r = r;
        assert_eq!(
            r.observe(&time_id(start + 4_000, 2), start + 4_000),
            Verdict::Duplicate
        );
        assert_eq!(
            r.observe(&time_id(start + 4_000, 3), start + 4_000),
            Verdict::New
        );
    }

    #[test]
    fn a_snapshot_of_a_newer_format_is_refused_as_such() {
        let mut bytes = DedupIndex::new(15 * MIN).to_bytes();
        bytes[6] = b'9';
        let err = DedupIndex::from_bytes(&bytes).unwrap_err();
        assert!(
            matches!(err, Error::NewerFormat { found: '9', .. }),
            "{err}"
        );
        assert!(err.to_string().contains("written by a newer silt"), "{err}");
        bytes[0] = b'X';
        assert!(matches!(
            DedupIndex::from_bytes(&bytes),
            Err(Error::Corrupt(_))
        ));
    }

    #[test]
    fn a_damaged_packed_snapshot_is_corrupt_not_a_panic() {
        let mut d = DedupIndex::new(15 * MIN);
        for k in 0..200i64 {
            let t = k * 7_000;
            d.observe(&time_id(t, (k % 3) as u8), t);
        }
        let bytes = d.to_bytes();
        // Every cut and every single-byte change either fails with Corrupt or reads an index.
        for cut in 0..bytes.len() {
            assert!(
                DedupIndex::from_bytes(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        for at in 8..bytes.len() {
            for x in [0x01u8, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[at] ^= x;
                match DedupIndex::from_bytes(&b) {
                    Ok(_) | Err(Error::Corrupt(_)) => {}
                    Err(e) => panic!("byte {at} ^ {x:#x}: {e}"),
                }
            }
        }
    }

    #[test]
    fn a_repeat_is_found_in_an_older_second_and_the_horizon_second_changes_no_verdict() {
        let sec = 1_000_000;
        let mut d = DedupIndex::new(15 * MIN);
        assert_eq!(d.observe(&id(1), 10 * sec + 400_000), Verdict::New);
        for s in 11..600 {
            d.observe(
                &[
                    s as u8,
                    (s >> 8) as u8,
                    9,
                    9,
                    9,
                    9,
                    9,
                    9,
                    9,
                    9,
                    9,
                    9,
                    9,
                    9,
                    9,
                    9,
                ],
                s * sec,
            );
        }
        // Ten minutes of newer seconds later, the repeat still lands on its own second.
        assert_eq!(d.observe(&id(1), 10 * sec + 400_000), Verdict::Duplicate);
        d.end_batch();
        // Horizon 15 minutes before 599 s, mid-second: the id just before it is kept with its
        // second, and still judged late, as an exact index would.
        d.observe(&id(2), 1000 * sec);
        d.end_batch();
        let horizon = 1000 * sec - 15 * MIN;
        assert_eq!(d.observe(&id(3), horizon - 1), Verdict::Late);
        assert_eq!(d.observe(&id(4), horizon), Verdict::New);
    }

    #[test]
    fn a_snapshot_and_its_deltas_restore_the_index_as_it_was() {
        let sec = 1_000_000;
        let mut live = DedupIndex::new(15 * MIN);
        let mut saved: Vec<Vec<u8>> = Vec::new();
        let mut n = 0u32;
        // 40 batches of one minute each: ids are evicted along the way; a repeat now and then.
        for batch in 0..40i64 {
            for k in 0..50i64 {
                n += 1;
                let mut i = [7u8; 16];
                i[..4].copy_from_slice(&n.to_le_bytes());
                let t = batch * MIN + k * sec;
                assert_eq!(live.observe(&i, t), Verdict::New);
                assert_eq!(live.observe(&i, t), Verdict::Duplicate);
            }
            live.end_batch();
            if batch == 3 {
                saved = vec![live.to_bytes()];
            } else if batch > 3 {
                assert_eq!(live.unsaved_len(), 50);
                saved.push(live.delta_bytes());
                assert_eq!(DedupIndex::count(saved.last().unwrap()).unwrap(), 50);
            }
            live.mark_saved();
        }
        let mut restored = DedupIndex::from_bytes(&saved[0]).unwrap();
        for d in &saved[1..] {
            restored.apply_delta(d).unwrap();
        }
        assert_eq!(restored.len(), live.len());
        assert_eq!(restored.to_bytes(), live.to_bytes());
        assert_eq!(restored.unsaved_len(), 0);
        // A snapshot alone (without its deltas) is not the index.
        assert_ne!(
            DedupIndex::from_bytes(&saved[0]).unwrap().to_bytes(),
            live.to_bytes()
        );
        // A delta is not a snapshot, nor the other way round.
        assert!(DedupIndex::from_bytes(&saved[1]).is_err());
        assert!(restored.apply_delta(&saved[0]).is_err());
        // Replaying a delta twice repeats its ids: corrupt.
        assert!(restored.clone().apply_delta(&saved[36]).is_err());
    }

    #[test]
    fn a_delta_replays_a_changed_window_as_the_batch_had_it() {
        let mut live = DedupIndex::new(15 * MIN);
        live.observe(&id(1), 0);
        live.end_batch();
        let base = live.to_bytes();
        live.mark_saved();
        // The job file's window is cut to 5 minutes between runs.
        live.set_window_us(5 * MIN);
        live.observe(&id(2), 10 * MIN);
        live.end_batch();
        assert_eq!(live.len(), 1, "id 1 is older than 5 minutes: forgotten");
        let delta = live.delta_bytes();
        let mut restored = DedupIndex::from_bytes(&base).unwrap();
        restored.apply_delta(&delta).unwrap();
        assert_eq!(restored.len(), 1, "id 1 forgotten in the replay too");
        assert_eq!(
            restored.window_us(),
            15 * MIN,
            "the window is the caller's to set"
        );
        restored.set_window_us(5 * MIN);
        assert_eq!(restored.to_bytes(), live.to_bytes());
    }

    /// Records judged a run at a time get the verdicts they get one by one, and leave the
    /// index as they would: repeats within a run and across runs, seconds going back and
    /// forth (two shards' records one after the other), and records late against the
    /// watermark the batch began with.
    #[test]
    fn records_judged_together_get_the_verdicts_they_get_one_by_one() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut random = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut one, mut all) = (DedupIndex::new(5 * MIN), DedupIndex::new(5 * MIN));
        let mut verdicts = Vec::new();
        for batch in 0..6i64 {
            let records: Vec<([u8; 16], i64)> = (0..3_000)
                .map(|i| {
                    let n = random();
                    // Mostly in order of time within a shard, some repeats, some far back.
                    let shard = i / 1_500;
                    let us = batch * MIN + (i % 1_500) * 40_000 + shard * 7_000;
                    let us = if n % 50 == 0 { us - 20 * MIN } else { us };
                    let mut id = [0u8; 16];
                    id[..8].copy_from_slice(&(if n % 10 == 0 { n % 300 } else { n }).to_le_bytes());
                    (id, us)
                })
                .collect();
            let singly: Vec<Verdict> = records
                .iter()
                .map(|(id, us)| one.observe(id, *us))
                .collect();
            verdicts.clear();
            all.observe_all(records.iter().map(|(id, us)| (id, *us)), &mut verdicts);
            assert_eq!(verdicts, singly, "batch {batch}");
            for v in [Verdict::New, Verdict::Duplicate, Verdict::Late] {
                assert!(
                    batch == 0 && v == Verdict::Late || verdicts.contains(&v),
                    "{v:?} in {batch}"
                );
            }
            one.end_batch();
            all.end_batch();
            assert_eq!(all.len(), one.len());
            assert_eq!(all.to_bytes(), one.to_bytes());
        }
    }
}
