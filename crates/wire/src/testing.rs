//! For tests across the workspace: where the independent test data lives.

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
