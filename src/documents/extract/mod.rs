//! Reading documents: the parsers are the `enclave-extract` crate (`crates/extract`, apart so
//! that they can be fuzzed without the server's dependencies), re-exported here; [`isolate`]
//! runs them in a child process with time and memory limits.

pub mod isolate;

pub use enclave_extract::*;
