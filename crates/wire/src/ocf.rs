//! Avro object container files: how a producer sends a batch of Avro events in one request
//! (SPEC 5). Reading splits the file into one body per record, each checked exactly against
//! the file's schema, so that every record can be put on the stream in its own envelope.
//!
//! Codecs: `null`, `deflate`, `snappy` (CRC checked) and `zstandard`.

use std::io::{Read, Write};

use crate::body::{encode, BodyCheck};
use crate::schema::Schema;
use crate::{Error, Result};

/// The four bytes every container file starts with.
pub const MAGIC: [u8; 4] = *b"Obj\x01";

/// A block codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Null,
    Deflate,
    Snappy,
    Zstandard,
}

impl Codec {
    pub fn name(self) -> &'static str {
        match self {
            Codec::Null => "null",
            Codec::Deflate => "deflate",
            Codec::Snappy => "snappy",
            Codec::Zstandard => "zstandard",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "null" => Codec::Null,
            "deflate" => Codec::Deflate,
            "snappy" => Codec::Snappy,
            "zstandard" => Codec::Zstandard,
            _ => return None,
        })
    }
}

/// One record of a container file: its body and what the check learnt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRecord {
    pub body: Vec<u8>,
    pub uuid: Option<[u8; 16]>,
}

/// A whole container file, read.
#[derive(Debug, Clone)]
pub struct Container {
    /// The writer schema the file declares.
    pub schema: Schema,
    pub codec: Codec,
    pub records: Vec<ContainerRecord>,
}

fn malformed(offset: usize, reason: impl Into<String>) -> Error {
    Error::BadContainer {
        offset,
        record: None,
        reason: reason.into(),
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn long(&mut self) -> Result<i64> {
        crate::body::zigzag(self.buf, &mut self.pos).map_err(|reason| malformed(self.pos, reason))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        match self.pos.checked_add(n).filter(|e| *e <= self.buf.len()) {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(malformed(
                self.pos,
                format!(
                    "truncated: needs {n} more bytes, has {}",
                    self.buf.len() - self.pos
                ),
            )),
        }
    }

    fn length(&mut self) -> Result<usize> {
        let at = self.pos;
        let n = self.long()?;
        usize::try_from(n).map_err(|_| malformed(at, format!("negative length {n}")))
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.length()?;
        self.take(n)
    }
}

/// Whether `bytes` looks like a container file.
pub fn is_container(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

/// Reads a container file. Every record must be exactly one value of the file's schema; the
/// first one that is not fails the read with its record number.
///
/// `limit` bounds the bytes the blocks decompress to, all together: a small file can hold
/// blocks that inflate a thousand times and more (a deflate or zstandard block of zeros), and
/// a block is decompressed whole before its records are checked. A file over it fails with
/// [`Error::ContainerTooLarge`] as soon as the limit is passed, before more is allocated.
pub fn read(bytes: &[u8], limit: usize) -> Result<Container> {
    let mut r = Reader { buf: bytes, pos: 0 };
    if r.take(4).ok() != Some(&MAGIC[..]) {
        return Err(malformed(
            0,
            "not an Avro object container file (no `Obj\\x01` magic)",
        ));
    }
    let mut schema_text = None;
    let mut codec = Codec::Null;
    loop {
        let mut count = r.long()?;
        if count == 0 {
            break;
        }
        if count < 0 {
            count = -count;
            r.long()?; // the block's size in bytes
        }
        for _ in 0..count {
            let key = r.bytes()?;
            let value = r.bytes()?;
            match key {
                b"avro.schema" => {
                    schema_text = Some(
                        std::str::from_utf8(value)
                            .map_err(|_| malformed(r.pos, "the avro.schema entry is not UTF-8"))?,
                    )
                }
                b"avro.codec" => {
                    let name = String::from_utf8_lossy(value);
                    codec = Codec::from_name(&name).ok_or_else(|| {
                        malformed(
                            r.pos,
                            format!(
                                "unsupported codec `{name}` (null, deflate, snappy or zstandard)"
                            ),
                        )
                    })?;
                }
                _ => {}
            }
        }
    }
    let schema_text =
        schema_text.ok_or_else(|| malformed(r.pos, "the header has no avro.schema entry"))?;
    let schema = Schema::parse(schema_text)?;
    let check = BodyCheck::new(&schema);
    let sync: [u8; 16] = r.take(16)?.try_into().expect("16 bytes");
    let mut records = Vec::new();
    let mut block_no = 0;
    let mut room = limit;
    while r.pos < bytes.len() {
        let block_at = r.pos;
        let count = r.length()?;
        let data = r.bytes()?;
        if r.take(16)? != sync {
            return Err(malformed(
                r.pos - 16,
                format!("block {block_no}: the sync marker does not match the header's"),
            ));
        }
        let plain = match decompress(codec, data, room) {
            Ok(Some(plain)) => plain,
            Ok(None) => {
                return Err(Error::ContainerTooLarge {
                    block: block_no,
                    limit,
                })
            }
            Err(e) => return Err(malformed(block_at, format!("block {block_no}: {e}"))),
        };
        room -= plain.len();
        let mut at = 0;
        for _ in 0..count {
            let n = records.len();
            let (checked, len) =
                check
                    .check_prefix(&plain[at..])
                    .map_err(|e| Error::BadContainer {
                        offset: block_at,
                        record: Some(n),
                        reason: format!("record {n} (block {block_no}): {e}"),
                    })?;
            records.push(ContainerRecord {
                body: plain[at..at + len].to_vec(),
                uuid: checked.uuid,
            });
            at += len;
        }
        if at != plain.len() {
            return Err(malformed(
                block_at,
                format!(
                    "block {block_no}: {} bytes left after its {count} records",
                    plain.len() - at
                ),
            ));
        }
        block_no += 1;
    }
    Ok(Container {
        schema,
        codec,
        records,
    })
}

/// A block decompressed, or `None` when it holds more than `room` bytes (found without
/// decompressing more than `room + 1` of them).
fn decompress(
    codec: Codec,
    data: &[u8],
    room: usize,
) -> std::result::Result<Option<Vec<u8>>, String> {
    // Reads at most one byte past the room: enough to tell that the block holds more.
    let bounded = |reader: &mut dyn Read, what: &str| -> std::result::Result<Vec<u8>, String> {
        let mut out = Vec::new();
        reader
            .take((room as u64).saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|e| format!("{what}: {e}"))?;
        Ok(out)
    };
    let out = match codec {
        Codec::Null => data.to_vec(),
        Codec::Deflate => bounded(&mut flate2::read::DeflateDecoder::new(data), "deflate")?,
        Codec::Snappy => {
            if data.len() < 4 {
                return Err("snappy block shorter than its CRC".into());
            }
            let (packed, crc) = data.split_at(data.len() - 4);
            // The length is the block's first bytes: known before anything is allocated.
            let len = snap::raw::decompress_len(packed).map_err(|e| format!("snappy: {e}"))?;
            if len > room {
                return Ok(None);
            }
            let out = snap::raw::Decoder::new()
                .decompress_vec(packed)
                .map_err(|e| format!("snappy: {e}"))?;
            if crc32fast::hash(&out).to_be_bytes() != crc {
                return Err("snappy block fails its CRC-32".into());
            }
            out
        }
        Codec::Zstandard => bounded(
            &mut zstd::stream::read::Decoder::with_buffer(data)
                .map_err(|e| format!("zstandard: {e}"))?,
            "zstandard",
        )?,
    };
    Ok((out.len() <= room).then_some(out))
}

/// Writes a container file of bodies already encoded with `schema`, in blocks of up to
/// `block_records`.
pub fn write(schema: &Schema, bodies: &[&[u8]], codec: Codec, block_records: usize) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    encode::long(2, &mut out);
    encode::bytes(b"avro.schema", &mut out);
    encode::bytes(schema.json().as_bytes(), &mut out);
    encode::bytes(b"avro.codec", &mut out);
    encode::bytes(codec.name().as_bytes(), &mut out);
    out.push(0);
    let sync: [u8; 16] = rand::random();
    out.extend_from_slice(&sync);
    for chunk in bodies.chunks(block_records.max(1)) {
        let plain: Vec<u8> = chunk.concat();
        let data = match codec {
            Codec::Null => plain,
            Codec::Deflate => {
                let mut e =
                    flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(&plain).expect("writing to a Vec");
                e.finish().expect("writing to a Vec")
            }
            Codec::Snappy => {
                let mut d = snap::raw::Encoder::new()
                    .compress_vec(&plain)
                    .expect("snappy compresses any input");
                d.extend_from_slice(&crc32fast::hash(&plain).to_be_bytes());
                d
            }
            Codec::Zstandard => zstd::stream::encode_all(&plain[..], 1).expect("zstd"),
        };
        encode::long(chunk.len() as i64, &mut out);
        encode::bytes(&data, &mut out);
        out.extend_from_slice(&sync);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = r#"{"type":"record","name":"E","namespace":"t","fields":[
        {"name":"uuid","type":"gfc.avro.UUID"},{"name":"n","type":"long"}]}"#;

    fn bodies(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                let mut b = crate::timeuuid::from_parts(1 << 50 | i as u64, 1, [1; 6]).to_vec();
                encode::long(i as i64 * 1000, &mut b);
                b
            })
            .collect()
    }

    #[test]
    fn round_trips_every_codec() {
        let schema = Schema::parse(SCHEMA).unwrap();
        let bodies = bodies(25);
        let refs: Vec<&[u8]> = bodies.iter().map(|b| b.as_slice()).collect();
        for codec in [Codec::Null, Codec::Deflate, Codec::Snappy, Codec::Zstandard] {
            let file = write(&schema, &refs, codec, 10);
            assert!(is_container(&file));
            let c = read(&file, 1 << 20).unwrap();
            assert_eq!(c.codec, codec);
            assert_eq!(c.schema.fingerprint(), schema.fingerprint());
            let got: Vec<&[u8]> = c.records.iter().map(|r| r.body.as_slice()).collect();
            assert_eq!(got, refs, "{codec:?}");
            assert_eq!(c.records[3].uuid.unwrap()[..], bodies[3][..16]);
        }
    }

    #[test]
    fn truncated_and_corrupt_files_name_the_block_or_record() {
        let schema = Schema::parse(SCHEMA).unwrap();
        let bodies = bodies(4);
        let refs: Vec<&[u8]> = bodies.iter().map(|b| b.as_slice()).collect();
        let file = write(&schema, &refs, Codec::Null, 2);
        let e = read(&file[..file.len() - 20], 1 << 20).unwrap_err();
        assert_eq!(e.code(), "bad_container");
        assert!(e.to_string().contains("truncated"), "{e}");

        // A record whose body is one byte short: the block's second record runs out.
        let mut short = refs.clone();
        let cut = &bodies[1][..bodies[1].len() - 1];
        short[1] = cut;
        let file = write(&schema, &short, Codec::Null, 2);
        let e = read(&file, 1 << 20).unwrap_err();
        assert!(
            matches!(
                e,
                Error::BadContainer {
                    record: Some(1),
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("record 1 (block 0)"), "{e}");

        let mut file = write(&schema, &refs, Codec::Null, 2);
        let last = file.len() - 1;
        file[last] ^= 0xff;
        assert!(read(&file, 1 << 20)
            .unwrap_err()
            .to_string()
            .contains("sync marker"));
        assert!(read(b"{\"not\": \"avro\"}", 1 << 20).is_err());
    }

    #[test]
    fn blocks_that_decompress_past_the_limit_are_refused() {
        let schema = Schema::parse(SCHEMA).unwrap();
        let bodies = bodies(40);
        let refs: Vec<&[u8]> = bodies.iter().map(|b| b.as_slice()).collect();
        let total: usize = refs.iter().map(|b| b.len()).sum();
        for codec in [Codec::Null, Codec::Deflate, Codec::Snappy, Codec::Zstandard] {
            // One block, and blocks of ten that pass the limit in the last one.
            for per_block in [40, 10] {
                let file = write(&schema, &refs, codec, per_block);
                assert_eq!(read(&file, total).unwrap().records.len(), 40, "{codec:?}");
                let e = read(&file, total - 1).unwrap_err();
                let block = 40 / per_block - 1;
                assert_eq!(
                    e,
                    Error::ContainerTooLarge {
                        block,
                        limit: total - 1
                    },
                    "{codec:?} in blocks of {per_block}"
                );
                assert_eq!(e.code(), "container_too_large");
            }
        }

        // A block that inflates a thousandfold: 64 MiB of zeros in a file of some 64 KiB.
        let mut plain = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        plain.write_all(&vec![0u8; 64 << 20]).unwrap();
        let zeros = plain.finish().unwrap();
        // A file of no records ends with the header's sync marker: one block is added.
        let mut file = write(&schema, &[], Codec::Deflate, 1);
        let sync = file[file.len() - 16..].to_vec();
        encode::long(1, &mut file);
        encode::bytes(&zeros, &mut file);
        file.extend_from_slice(&sync);
        assert!(file.len() < 1 << 17, "{}", file.len());
        let e = read(&file, 1 << 20).unwrap_err();
        assert!(
            matches!(e, Error::ContainerTooLarge { block: 0, .. }),
            "{e}"
        );
    }
}
