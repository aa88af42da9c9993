//! # silt: the command line and the job runner
//!
//! `main` parses arguments and calls into this library; tests call the library directly.
//! The job runner ([`job::run`]) wires the crates together in the one direction data walks:
//! Source -> decode -> dedup -> transform -> lake writer -> commit.

pub mod cmd;
pub mod faults;
pub mod gen;
pub mod job;
