//! Records aggregated by the Kinesis Producer Library: `F3 89 9A C2`, a protobuf
//! `AggregatedRecord`, and the MD5 of the protobuf. Decoded by hand (three message types,
//! two wire types) rather than with a protobuf code generator.

use md5::{Digest, Md5};

/// The KPL's magic prefix.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Iterates the fields of a protobuf message: (field number, wire type, payload range or value).
fn fields(buf: &[u8]) -> Option<Vec<(u64, Field)>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (field, wire) = (key >> 3, key & 7);
        let value = match wire {
            0 => Field::Varint(varint(buf, &mut pos)?),
            2 => {
                let len = varint(buf, &mut pos)? as usize;
                let end = pos.checked_add(len).filter(|e| *e <= buf.len())?;
                let r = pos..end;
                pos = end;
                Field::Bytes(r)
            }
            1 => {
                pos = pos.checked_add(8).filter(|e| *e <= buf.len())?;
                Field::Skipped
            }
            5 => {
                pos = pos.checked_add(4).filter(|e| *e <= buf.len())?;
                Field::Skipped
            }
            _ => return None,
        };
        out.push((field, value));
    }
    Some(out)
}

enum Field {
    Varint(#[allow(dead_code)] u64),
    Bytes(std::ops::Range<usize>),
    Skipped,
}

/// The user records inside a KPL aggregate, as ranges of `data`; `None` when `data` is not a
/// well-formed aggregate (then it is an ordinary record).
pub fn deaggregate(data: &[u8]) -> Option<Vec<std::ops::Range<usize>>> {
    if data.len() < MAGIC.len() + 16 || data[..4] != MAGIC {
        return None;
    }
    let body = &data[4..data.len() - 16];
    if Md5::digest(body).as_slice() != &data[data.len() - 16..] {
        return None;
    }
    let mut out = Vec::new();
    for (field, value) in fields(body)? {
        if let (3, Field::Bytes(r)) = (field, value) {
            // Record { partition_key_index = 1; explicit_hash_key_index = 2; data = 3; tags = 4 }
            let record = &body[r.clone()];
            let inner = fields(record)?;
            let d = inner.into_iter().find_map(|(f, v)| match (f, v) {
                (3, Field::Bytes(d)) => Some(d),
                _ => None,
            })?;
            let start = 4 + r.start + d.start;
            out.push(start..start + d.len());
        }
    }
    Some(out)
}

/// Builds an aggregate of `records` (for tests and producers that want fewer, larger puts).
pub fn aggregate(partition_key: &str, records: &[&[u8]]) -> Vec<u8> {
    fn put_varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn put_bytes(field: u64, b: &[u8], out: &mut Vec<u8>) {
        put_varint((field << 3) | 2, out);
        put_varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }
    let mut body = Vec::new();
    put_bytes(1, partition_key.as_bytes(), &mut body);
    for r in records {
        let mut rec = Vec::new();
        put_varint(1 << 3, &mut rec);
        put_varint(0, &mut rec);
        put_bytes(3, r, &mut rec);
        put_bytes(3, &rec, &mut body);
    }
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&body);
    out.extend_from_slice(&Md5::digest(&body));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let agg = aggregate("k", &[b"one", b"", b"three"]);
        let parts = deaggregate(&agg).unwrap();
        let got: Vec<&[u8]> = parts.iter().map(|r| &agg[r.clone()]).collect();
        assert_eq!(got, vec![b"one".as_slice(), b"", b"three"]);
    }

    #[test]
    fn a_bad_checksum_or_plain_data_is_not_an_aggregate() {
        let mut agg = aggregate("k", &[b"one"]);
        let n = agg.len();
        agg[n - 1] ^= 1;
        assert!(deaggregate(&agg).is_none());
        assert!(deaggregate(b"\x81plain envelope").is_none());
    }
}
