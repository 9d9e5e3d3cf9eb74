//! The upload path: the kind is decided from the bytes (as the server does), then extracted.
//! Any outcome but a panic, a hang or a runaway allocation is a pass.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(init: common::quiet_caught_panics(), |data: &[u8]| {
    if let Some(kind) = enclave_extract::detect::detect(data, "upload") {
        let _ = enclave_extract::extract(data, kind, common::limits());
    }
});
