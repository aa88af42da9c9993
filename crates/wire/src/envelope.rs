//! Framing of one stream record: the silt envelope (SPEC 2) and the optional Avro
//! single-object and Confluent framings.

use crate::fingerprint::Fingerprint;
use crate::{Error, Result};

/// First byte of a silt envelope (format version).
pub const ENVELOPE_HEADER: u8 = 0x81;
/// Header byte plus the 32-byte SHA-256 fingerprint.
pub const ENVELOPE_PREFIX_LEN: usize = 33;
/// Magic of the Avro single-object encoding (followed by an 8-byte little-endian CRC-64-AVRO).
pub const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xC3, 0x01];
/// Magic byte of the Confluent wire format (followed by a 4-byte big-endian schema id).
pub const CONFLUENT_MAGIC: u8 = 0x00;

/// How a job's records are framed. The envelope is the default; the others are for streams
/// written by tools that speak those framings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// `0x81 | SHA-256 fingerprint | body`.
    #[default]
    Envelope,
    /// `C3 01 | CRC-64-AVRO little-endian | body`.
    SingleObject,
    /// `00 | schema id big-endian | body`.
    Confluent,
}

/// What the framing says about the writer schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriterRef {
    Sha256(Fingerprint),
    Rabin(u64),
    ConfluentId(u32),
}

impl std::fmt::Display for WriterRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriterRef::Sha256(fp) => write!(f, "fingerprint {fp}"),
            WriterRef::Rabin(fp) => write!(f, "CRC-64-AVRO fingerprint {fp:016x}"),
            WriterRef::ConfluentId(id) => write!(f, "Confluent schema id {id}"),
        }
    }
}

/// One framed record split into its writer reference and Avro body.
#[derive(Debug, Clone, Copy)]
pub struct Framed<'a> {
    pub writer: WriterRef,
    pub body: &'a [u8],
}

impl Framing {
    /// Length of the prefix before the body.
    pub fn prefix_len(self) -> usize {
        match self {
            Framing::Envelope => ENVELOPE_PREFIX_LEN,
            Framing::SingleObject => 10,
            Framing::Confluent => 5,
        }
    }

    /// Splits a record into writer reference and body, checking length and header.
    #[inline]
    pub fn split(self, record: &[u8]) -> Result<Framed<'_>> {
        let min = self.prefix_len();
        if record.len() < min {
            return Err(Error::TooShort {
                len: record.len(),
                min,
            });
        }
        let writer = match self {
            Framing::Envelope => {
                if record[0] != ENVELOPE_HEADER {
                    return Err(Error::BadHeader {
                        found: hex::encode(&record[..1]),
                        expected: "81",
                    });
                }
                let fp: [u8; 32] = record[1..33].try_into().expect("length checked");
                WriterRef::Sha256(Fingerprint(fp))
            }
            Framing::SingleObject => {
                if record[..2] != SINGLE_OBJECT_MAGIC {
                    return Err(Error::BadHeader {
                        found: hex::encode(&record[..2]),
                        expected: "c301",
                    });
                }
                WriterRef::Rabin(u64::from_le_bytes(
                    record[2..10].try_into().expect("length checked"),
                ))
            }
            Framing::Confluent => {
                if record[0] != CONFLUENT_MAGIC {
                    return Err(Error::BadHeader {
                        found: hex::encode(&record[..1]),
                        expected: "00",
                    });
                }
                WriterRef::ConfluentId(u32::from_be_bytes(
                    record[1..5].try_into().expect("length checked"),
                ))
            }
        };
        Ok(Framed {
            writer,
            body: &record[min..],
        })
    }
}

/// Appends a silt envelope (`0x81 | fingerprint | body`) to `out`.
pub fn write_envelope(fingerprint: &Fingerprint, body: &[u8], out: &mut Vec<u8>) {
    out.reserve(ENVELOPE_PREFIX_LEN + body.len());
    out.push(ENVELOPE_HEADER);
    out.extend_from_slice(fingerprint.as_bytes());
    out.extend_from_slice(body);
}

/// A silt envelope as a new vector.
pub fn envelope(fingerprint: &Fingerprint, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_envelope(fingerprint, body, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trip() {
        let fp = Fingerprint([7; 32]);
        let rec = envelope(&fp, b"body");
        let framed = Framing::Envelope.split(&rec).unwrap();
        assert_eq!(framed.writer, WriterRef::Sha256(fp));
        assert_eq!(framed.body, b"body");
    }

    #[test]
    fn short_and_bad_header_are_named() {
        let err = Framing::Envelope.split(&[0x81; 10]).unwrap_err();
        assert!(matches!(err, Error::TooShort { len: 10, min: 33 }), "{err}");
        let mut rec = envelope(&Fingerprint([0; 32]), b"");
        rec[0] = 0x80;
        let err = Framing::Envelope.split(&rec).unwrap_err();
        assert_eq!(err.to_string(), "bad header: found 0x80, expected 0x81");
    }

    #[test]
    fn single_object_and_confluent() {
        let mut rec = vec![0xC3, 0x01];
        rec.extend_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
        rec.push(2);
        let f = Framing::SingleObject.split(&rec).unwrap();
        assert_eq!(f.writer, WriterRef::Rabin(0x1122_3344_5566_7788));
        assert_eq!(f.body, &[2]);
        let rec = [0u8, 0, 0, 0x04, 0xD2, 9];
        let f = Framing::Confluent.split(&rec).unwrap();
        assert_eq!(f.writer, WriterRef::ConfluentId(1234));
        assert_eq!(f.body, &[9]);
        assert!(Framing::Confluent.split(&[1, 0, 0, 0, 0]).is_err());
    }
}
