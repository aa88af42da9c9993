//! TimeUuid (SPEC 3): RFC 4122 version-1 UUIDs whose timestamp is the event time and which
//! are the deduplication key.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use uuid::Uuid;

use crate::{Error, Result};

/// 100 ns ticks between 1582-10-15 (the UUID epoch) and 1970-01-01.
pub const UUID_TICKS_AT_UNIX_EPOCH: u64 = 0x01B2_1DD2_1381_4000;

/// The version nibble of a UUID in its 16-byte form.
#[inline]
pub fn version(bytes: &[u8; 16]) -> u8 {
    bytes[6] >> 4
}

/// The 60-bit timestamp (100 ns ticks since 1582-10-15) of a version-1 UUID, or `None` when
/// the UUID is of another version.
#[inline]
pub fn ticks(bytes: &[u8; 16]) -> Option<u64> {
    if version(bytes) != 1 {
        return None;
    }
    let low = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as u64;
    let mid = u16::from_be_bytes([bytes[4], bytes[5]]) as u64;
    let high = (u16::from_be_bytes([bytes[6], bytes[7]]) & 0x0fff) as u64;
    Some((high << 48) | (mid << 32) | low)
}

/// Event time in microseconds since the Unix epoch (may be negative for pre-1970 ids).
#[inline]
pub fn unix_micros(bytes: &[u8; 16]) -> Option<i64> {
    ticks(bytes).map(|t| (t as i64 - UUID_TICKS_AT_UNIX_EPOCH as i64).div_euclid(10))
}

/// Event time in milliseconds since the Unix epoch.
#[inline]
pub fn unix_millis(bytes: &[u8; 16]) -> Option<i64> {
    ticks(bytes).map(|t| (t as i64 - UUID_TICKS_AT_UNIX_EPOCH as i64).div_euclid(10_000))
}

/// Builds a version-1 UUID from a tick count, clock sequence and node.
pub fn from_parts(ticks: u64, clock_seq: u16, node: [u8; 6]) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0..4].copy_from_slice(&((ticks & 0xffff_ffff) as u32).to_be_bytes());
    b[4..6].copy_from_slice(&(((ticks >> 32) & 0xffff) as u16).to_be_bytes());
    b[6..8].copy_from_slice(&((((ticks >> 48) & 0x0fff) as u16) | 0x1000).to_be_bytes());
    b[8..10].copy_from_slice(&((clock_seq & 0x3fff) | 0x8000).to_be_bytes());
    b[10..16].copy_from_slice(&node);
    b
}

/// Parses the usual 36-character string form.
pub fn parse_str(s: &str) -> Result<[u8; 16]> {
    Uuid::try_parse(s)
        .map(|u| *u.as_bytes())
        .map_err(|e| Error::BadUuid {
            reason: format!("`{s}` is not a UUID: {e}"),
        })
}

/// Parses the string form from raw bytes (as found in an Avro string).
#[inline]
pub fn parse_ascii(s: &[u8]) -> Option<[u8; 16]> {
    Uuid::try_parse_ascii(s).ok().map(|u| *u.as_bytes())
}

/// Two lower-case hex digits for every byte value.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [DIGITS[i >> 4], DIGITS[i & 15]];
        i += 1;
    }
    t
};

/// The usual lower-case hyphenated string form as ASCII bytes, written into a caller's buffer
/// (no allocation), one table lookup a byte: for columns of ids written straight into their
/// values buffer.
#[inline]
pub fn write_ascii(bytes: &[u8; 16], out: &mut [u8; 36]) {
    let mut at = 0;
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out[at] = b'-';
            at += 1;
        }
        out[at..at + 2].copy_from_slice(&HEX_PAIRS[*b as usize]);
        at += 2;
    }
}

/// The string form as a new `String`.
pub fn to_string(bytes: &[u8; 16]) -> String {
    Uuid::from_bytes(*bytes).hyphenated().to_string()
}

/// Generates version-1 UUIDs for one node with strictly increasing timestamps.
///
/// Each id takes the current time in 100 ns ticks, or the previous id's ticks plus one when
/// the clock has not moved on (more than 10,000 ids in a millisecond) or has stepped back:
/// ids never repeat and their timestamps never go backwards, whatever the wall clock does,
/// and the generator catches up with real time once the burst or the step is over. Safe to
/// share between threads (one atomic compare-and-swap per id).
#[derive(Debug)]
pub struct TimeUuidGenerator {
    node: [u8; 6],
    clock_seq: u16,
    last: AtomicU64,
}

impl TimeUuidGenerator {
    /// A generator for a node id. Per RFC 4122 a random node id has the multicast bit set.
    pub fn new(node: [u8; 6], clock_seq: u16) -> Self {
        Self {
            node,
            clock_seq,
            last: AtomicU64::new(0),
        }
    }

    /// A generator with a random node id and clock sequence.
    pub fn random() -> Self {
        let mut node: [u8; 6] = rand::random();
        node[0] |= 0x01;
        Self::new(node, rand::random())
    }

    fn now_ticks() -> u64 {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        UUID_TICKS_AT_UNIX_EPOCH + since.as_nanos() as u64 / 100
    }

    /// The next id, with the current time.
    pub fn next(&self) -> [u8; 16] {
        self.next_at(Self::now_ticks())
    }

    /// The next id for a given clock reading (ticks since 1582-10-15): for generating events
    /// with chosen event times, and for testing clock steps.
    pub fn next_at(&self, clock_ticks: u64) -> [u8; 16] {
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let ticks = clock_ticks.max(last + 1);
            match self
                .last
                .compare_exchange_weak(last, ticks, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return from_parts(ticks, self.clock_seq, self.node),
                Err(seen) => last = seen,
            }
        }
    }

    /// The next id for an event time in milliseconds since the Unix epoch.
    pub fn next_at_unix_millis(&self, millis: i64) -> [u8; 16] {
        self.next_at((UUID_TICKS_AT_UNIX_EPOCH as i64 + millis * 10_000) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_of_a_known_id() {
        // From the test data: 165c0cf3-ca4a-11f0-bb9a-0242ac110002 is 2025-11-25T22:00:00Z.
        let b = parse_str("165c0cf3-ca4a-11f0-bb9a-0242ac110002").unwrap();
        assert_eq!(unix_millis(&b), Some(1_764_108_000_000));
        let mut buf = [0u8; 36];
        write_ascii(&b, &mut buf);
        assert_eq!(&buf, b"165c0cf3-ca4a-11f0-bb9a-0242ac110002");
    }

    #[test]
    fn ascii_form_is_the_usual_string_form() {
        let mut rng = crate::testing::SplitMix64(7);
        let mut ids: Vec<[u8; 16]> = vec![[0; 16], [0xff; 16]];
        ids.extend((0..1000).map(|_| rng.bytes16()));
        let mut out = [0u8; 36];
        for id in &ids {
            write_ascii(id, &mut out);
            assert_eq!(std::str::from_utf8(&out).unwrap(), to_string(id), "{id:?}");
        }
    }

    #[test]
    fn other_versions_have_no_time() {
        let v4 = parse_str("9b2c1f0e-6a4b-4c3d-8e2f-1a2b3c4d5e6f").unwrap();
        assert_eq!(ticks(&v4), None);
    }

    #[test]
    fn parts_round_trip() {
        let id = from_parts(0x0abc_def0_1234_5678, 0x1234, [1, 2, 3, 4, 5, 6]);
        assert_eq!(version(&id), 1);
        assert_eq!(ticks(&id), Some(0x0abc_def0_1234_5678));
        assert_eq!(Uuid::from_bytes(id).get_version_num(), 1);
        assert_eq!(Uuid::from_bytes(id).get_variant(), uuid::Variant::RFC4122);
    }

    #[test]
    fn clock_stepping_back_does_not_repeat_or_reverse() {
        let g = TimeUuidGenerator::new([1; 6], 7);
        let a = g.next_at(1_000_000);
        let b = g.next_at(500_000); // the clock stepped back
        let c = g.next_at(500_000);
        let d = g.next_at(2_000_000); // and caught up again
        let t: Vec<u64> = [a, b, c, d].iter().map(|x| ticks(x).unwrap()).collect();
        assert_eq!(t, vec![1_000_000, 1_000_001, 1_000_002, 2_000_000]);
    }

    #[test]
    fn a_million_ids_from_eight_threads_are_distinct_and_ordered_per_thread() {
        let g = std::sync::Arc::new(TimeUuidGenerator::random());
        let per_thread = 125_000;
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let g = g.clone();
                std::thread::spawn(move || {
                    let ids: Vec<[u8; 16]> = (0..per_thread).map(|_| g.next()).collect();
                    for w in ids.windows(2) {
                        assert!(ticks(&w[0]).unwrap() < ticks(&w[1]).unwrap());
                    }
                    ids
                })
            })
            .collect();
        let mut all: Vec<[u8; 16]> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        assert_eq!(all.len(), 1_000_000);
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 1_000_000, "some ids repeated");
    }
}
