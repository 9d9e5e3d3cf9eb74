//! The house's rules about where code lives (docs/ARCHITECTURE.md), checked on the source tree:
//! cheap, and they fail the moment a rule is broken rather than when someone notices.

use std::path::{Path, PathBuf};

use enclave_protocol::ErrorCode;

/// The repository's root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir` (relative to the root), with its text.
fn rust_files(dir: &str) -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path, text));
            }
        }
    }
    let mut files = Vec::new();
    walk(&root().join(dir), &mut files);
    assert!(!files.is_empty(), "no Rust files under {dir}");
    files
}

/// The lines of `files` that contain any of `needles`, outside comments, as `path:line: text`.
fn offending_lines(files: &[(PathBuf, String)], needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for (path, text) in files {
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            if needles.iter().any(|needle| code.contains(needle)) {
                found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn the_engine_knows_nothing_of_the_rooms_above_it() {
    let found = offending_lines(
        &rust_files("src/engine"),
        &[
            "crate::providers",
            "crate::chat",
            "crate::api",
            "crate::auth",
            "crate::store",
            "crate::config",
        ],
    );
    assert!(found.is_empty(), "the engine reaches up:\n{}", found.join("\n"));
}

#[test]
fn only_the_store_knows_redb() {
    for dir in [
        "src/api",
        "src/auth",
        "src/chat",
        "src/providers",
        "src/engine",
        "src/config",
        "src/generation",
    ] {
        let found = offending_lines(&rust_files(dir), &["redb::", "use redb"]);
        assert!(found.is_empty(), "redb outside src/store:\n{}", found.join("\n"));
    }
}

#[test]
fn http_stays_in_the_api() {
    for dir in [
        "src/auth",
        "src/chat",
        "src/engine",
        "src/store",
        "src/generation",
        "src/config",
    ] {
        let found = offending_lines(&rust_files(dir), &["axum", "StatusCode"]);
        assert!(found.is_empty(), "HTTP outside src/api:\n{}", found.join("\n"));
    }
}

#[test]
fn handlers_go_through_the_services_never_the_store() {
    // Record types may pass through (services return them); the `Store` handle may not.
    let found = offending_lines(
        &rust_files("src/api"),
        &[
            "store::Store",
            "Store::",
            ": Store",
            "<Store>",
            "state.store",
            ".store.",
        ],
    );
    assert!(found.is_empty(), "src/api reaches the store:\n{}", found.join("\n"));
}

#[test]
fn the_web_app_matches_no_error_code_strings() {
    // The UI branches on `ErrorCode` variants from crates/protocol, never on the wire names.
    let files = rust_files("web/src");
    for code in ErrorCode::ALL {
        let literal = format!("\"{}\"", code.as_str());
        let found = offending_lines(&files, &[literal.as_str()]);
        assert!(found.is_empty(), "the web app spells {literal}:\n{}", found.join("\n"));
    }
}

#[test]
fn every_rust_file_opens_with_a_module_doc() {
    let mut missing = Vec::new();
    for dir in ["src", "crates", "web/src", "tests", "benches"] {
        for (path, text) in rust_files(dir) {
            if !text.starts_with("//!") {
                missing.push(path.display().to_string());
            }
        }
    }
    assert!(missing.is_empty(), "files without a //! line:\n{}", missing.join("\n"));
}
