//! # silt: the command line and the job runner
//!
//! `main` parses arguments and calls into this library; tests call the library directly.

pub mod cmd;
