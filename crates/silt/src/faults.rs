//! Crash points for the kill tests: `SILT_CRASH_AT=point:n` makes the process abort (no
//! destructors, no flushing, like SIGKILL) the `n`-th time it reaches `point`;
//! `SILT_PAUSE_AT=point:ms` makes it sleep there, `SILT_PAUSE_AT=point:until=PATH` wait there
//! until the file `PATH` exists (to line two processes up; it makes `PATH.waiting` when it
//! gets there). Unset, a point costs a check of a
//! value read once.

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

enum Pause {
    Millis(u64),
    /// Until the file exists (given up after ten minutes).
    Until(std::path::PathBuf),
}

static PAUSE: OnceLock<Option<(String, Pause)>> = OnceLock::new();

/// Marks a crash point (and a pause point).
pub fn point(name: &str) {
    let pause = PAUSE.get_or_init(|| {
        let v = std::env::var("SILT_PAUSE_AT").ok()?;
        let (p, how) = v.split_once(':')?;
        let how = match how.strip_prefix("until=") {
            Some(path) => Pause::Until(path.into()),
            None => Pause::Millis(how.parse().ok()?),
        };
        Some((p.to_string(), how))
    });
    match pause {
        Some((p, Pause::Millis(ms))) if p == name => {
            std::thread::sleep(std::time::Duration::from_millis(*ms));
        }
        Some((p, Pause::Until(path))) if p == name => {
            // Tells a test that the process is at the point.
            let _ = std::fs::write(path.with_extension("waiting"), b"");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
            while !path.exists() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        _ => {}
    }
    if let Some((p, n)) = plan() {
        if p == name && SEEN.fetch_add(1, Ordering::Relaxed) + 1 == *n {
            eprintln!("crash point {name}:{n} reached: aborting");
            std::process::abort();
        }
    }
}
