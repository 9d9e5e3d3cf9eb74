//! Every parser on bytes it did not choose: the first byte picks the kind, the rest is the
//! file (a ZIP-based parser gets non-ZIP bytes, the PDF parser gets a mutated PDF...). Any
//! outcome but a panic, a hang or a runaway allocation is a pass.

#![no_main]

use enclave_protocol::DocumentKind;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(init: common::quiet_caught_panics(), |data: &[u8]| {
    let Some((&first, file)) = data.split_first() else {
        return;
    };
    let kind = DocumentKind::ALL[usize::from(first) % DocumentKind::ALL.len()];
    let _ = enclave_extract::extract(file, kind, common::limits());
});
