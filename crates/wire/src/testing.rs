//! For tests across the workspace: where the independent test data lives.

use std::path::PathBuf;

/// `shared/testdata/clickstream-small`, made with fastavro: `SILT_TESTDATA` (the folder that
/// holds it), or `../shared/testdata` beside the repository.
pub fn clickstream_small() -> PathBuf {
    std::env::var_os("SILT_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata")
        })
        .join("clickstream-small")
}
