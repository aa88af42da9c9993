//! Schema fingerprints: SHA-256 of the Parsing Canonical Form (the envelope's) and CRC-64-AVRO
//! (the single-object encoding's).

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::Error;

/// SHA-256 of a schema's Parsing Canonical Form. Shown and parsed as 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a canonical form.
    pub fn of_canonical(canonical: &str) -> Self {
        Fingerprint(Sha256::digest(canonical.as_bytes()).into())
    }

    /// The raw 32 bytes, as they stand in an envelope.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex, as the registry's API and paths use it.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.to_hex())
    }
}

impl FromStr for Fingerprint {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(Error::InvalidFingerprint {
                text: s.to_string(),
            });
        }
        hex::decode_to_slice(s, &mut out).map_err(|_| Error::InvalidFingerprint {
            text: s.to_string(),
        })?;
        Ok(Fingerprint(out))
    }
}

const EMPTY: u64 = 0xc15d_213a_a4d7_a795;

const fn rabin_table() -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut fp = i as u64;
        let mut j = 0;
        while j < 8 {
            fp = (fp >> 1) ^ (EMPTY & (0u64.wrapping_sub(fp & 1)));
            j += 1;
        }
        table[i] = fp;
        i += 1;
    }
    table
}

static RABIN_TABLE: [u64; 256] = rabin_table();

/// CRC-64-AVRO ("Rabin") fingerprint, as the Avro specification defines it.
pub fn rabin_fingerprint(bytes: &[u8]) -> u64 {
    let mut fp = EMPTY;
    for &b in bytes {
        fp = (fp >> 8) ^ RABIN_TABLE[((fp ^ b as u64) & 0xff) as usize];
    }
    fp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rabin_of_primitives_matches_the_specification_examples() {
        // Values published with the Avro Java implementation's test suite.
        assert_eq!(rabin_fingerprint(br#""int""#), 0x7275_d51a_3f39_5c8f);
        assert_eq!(rabin_fingerprint(br#""string""#), 0x8f01_4872_6345_03c7);
    }

    #[test]
    fn hex_round_trip_and_rejects_upper_case() {
        let fp = Fingerprint::of_canonical("\"int\"");
        assert_eq!(fp.to_hex().parse::<Fingerprint>().unwrap(), fp);
        assert!(fp.to_hex().to_uppercase().parse::<Fingerprint>().is_err());
        assert!("abc".parse::<Fingerprint>().is_err());
    }
}
