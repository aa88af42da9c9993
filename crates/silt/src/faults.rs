//! Crash points for the kill tests: `SILT_CRASH_AT=point:n` makes the process abort (no
//! destructors, no flushing, like SIGKILL) the `n`-th time it reaches `point`. Unset, a
//! crash point costs one relaxed atomic load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static PLAN: OnceLock<Option<(String, u64)>> = OnceLock::new();
static SEEN: AtomicU64 = AtomicU64::new(0);

fn plan() -> &'static Option<(String, u64)> {
    PLAN.get_or_init(|| {
        let v = std::env::var("SILT_CRASH_AT").ok()?;
        let (p, n) = v.split_once(':').unwrap_or((v.as_str(), "1"));
        Some((p.to_string(), n.parse().unwrap_or(1)))
    })
}

/// Marks a crash point.
pub fn point(name: &str) {
    if let Some((p, n)) = plan() {
        if p == name && SEEN.fetch_add(1, Ordering::Relaxed) + 1 == *n {
            eprintln!("crash point {name}:{n} reached: aborting");
            std::process::abort();
        }
    }
}
