//! Jobs: a job file resolved into its parts, and the micro-batch loop that runs it.

pub mod config;
mod run;

pub use run::{run, Job, RunOptions, RunSummary};
