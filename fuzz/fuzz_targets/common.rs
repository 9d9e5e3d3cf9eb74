//! What every target shares: limits small enough that the fuzzer spends its time in parsers,
//! not in legitimately large outputs (a limit hit is a clean error, which is a pass).

use enclave_extract::Limits;

/// Limits for fuzzing: a few MB, a few hundred members and pages.
pub fn limits() -> Limits {
    Limits {
        max_unpacked_bytes: 16 << 20,
        max_members: 200,
        max_depth: 3,
        max_pages: 200,
        max_rows: 20_000,
        max_text_bytes: 4 << 20,
    }
}

/// libfuzzer-sys aborts on every panic, even one the parsers catch on purpose (a PDF page
/// whose parser panics is recorded as unreadable and the others go on). This hook lets caught
/// panics be; a panic that escapes `extract` still aborts the run and is reported as a crash.
pub fn quiet_caught_panics() {
    std::panic::set_hook(Box::new(|_| {}));
}
