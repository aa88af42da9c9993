//! The command line's subcommands, each a library function the binary calls.

pub mod backfill;
pub mod bench;
pub mod demo;
pub mod gateway;
pub mod kinesis;
pub mod produce;
pub mod query;
pub mod registry;
pub mod run;
pub mod sql;
