//! For tests across the workspace: where the independent test data lives, and a small
//! deterministic random number generator for generated data.

use std::path::PathBuf;

/// `shared/testdata/clickstream-small`, made with fastavro: `SILT_TESTDATA` (the folder that
/// holds it), or `../shared/testdata` beside the repository.
pub fn clickstream_small() -> PathBuf {
    std::env::var_os("SILT_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // The package's folder as cargo names it when it runs the test, so that a binary
            // built in another checkout looks beside this one.
            std::env::var_os("CARGO_MANIFEST_DIR")
                .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
                .join("../../../shared/testdata")
        })
        .join("clickstream-small")
}

/// SplitMix64: a small, fast, deterministic generator of 64-bit numbers (for generated test
/// and benchmark data, not for anything secret).
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Sixteen random bytes (an id spread over every byte).
    pub fn bytes16(&mut self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        b[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        b
    }
}
