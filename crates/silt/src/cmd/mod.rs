//! The command line's subcommands, each a library function the binary calls.

pub mod backfill;
pub mod bench;
pub mod demo;
pub mod gateway;
pub mod kinesis;
pub mod produce;
pub mod query;
pub mod redrive;
pub mod registry;
pub mod run;
pub mod sql;

/// The requests to stop that a long-running command heeds: Ctrl-C (SIGINT) and SIGTERM, which
/// is how schedulers, systemd and container runtimes stop a service before they kill it.
pub struct StopSignals {
    term: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Starts listening (from here on, SIGTERM no longer ends the process on its own).
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?,
        })
    }

    /// Waits for the next request to stop.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = self.term.recv() => {}
        }
    }
}
