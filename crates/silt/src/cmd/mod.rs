//! The command line's subcommands, each a library function the binary calls.

pub mod registry;
