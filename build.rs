//! Embeds the built web UI (`web/dist/`, made by `scripts/build-web.sh`) into the binary: one
//! table of files with their content type, cache policy and precompressed variants. Without a
//! built UI the table is empty and the server says how to build it; the API works either way.
//!
//! The default `web/dist` is named relative to the crate (`concat!(env!("CARGO_MANIFEST_DIR"),
//! ...)`), not by absolute path: cargo records the build script's inputs relative to the
//! package, so a target directory shared by two checkouts (CI's and a developer's) reuses this
//! script's output, and absolute paths in it would name the other checkout's files.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let dist = std::env::var_os("ENCLAVE_WEB_DIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("web/dist"));
    println!("cargo:rerun-if-env-changed=ENCLAVE_WEB_DIST");
    println!("cargo:rerun-if-changed={}", dist.display());
    // The expression that names a file of `dist` in the generated code.
    let relative_to_crate = std::env::var_os("ENCLAVE_WEB_DIST").is_none();
    let name = |relative: &str, absolute: &Path| {
        if relative_to_crate {
            format!(
                "concat!(env!(\"CARGO_MANIFEST_DIR\"), {:?})",
                format!("/web/dist/{relative}")
            )
        } else {
            format!("{:?}", absolute.display().to_string())
        }
    };
    let mut files = Vec::new();
    if dist.join("index.html").is_file() {
        collect(&dist, &dist, &mut files);
    }
    files.sort();
    let mut code =
        String::from("/// The embedded web UI: every file of `web/dist`.\npub(crate) static ASSETS: &[Asset] = &[\n");
    for relative in &files {
        let path = dist.join(relative);
        let absolute = std::fs::canonicalize(&path).expect("a file just listed");
        let slashed = relative.replace('\\', "/");
        let variant = |ext: &str| {
            let compressed = PathBuf::from(format!("{}.{ext}", absolute.display()));
            if compressed.is_file() {
                format!(
                    "Some(include_bytes!({}))",
                    name(&format!("{slashed}.{ext}"), &compressed)
                )
            } else {
                "None".to_owned()
            }
        };
        let url = format!("/{slashed}");
        let _ = writeln!(
            code,
            "    Asset {{ path: {url:?}, content_type: {:?}, immutable: {}, body: include_bytes!({}), gzip: {}, brotli: {} }},",
            content_type(relative),
            immutable(relative),
            name(&slashed, &absolute),
            variant("gz"),
            variant("br"),
        );
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("web_assets.rs");
    std::fs::write(out, code).expect("write the asset table");
}

/// Every file under `dir` except the precompressed copies, relative to `root`.
fn collect(root: &Path, dir: &Path, files: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, files);
        } else if !matches!(path.extension().and_then(|e| e.to_str()), Some("gz" | "br")) {
            if let Ok(relative) = path.strip_prefix(root) {
                files.push(relative.to_string_lossy().into_owned());
            }
        }
    }
}

/// The Content-Type of a file, by extension.
fn content_type(name: &str) -> &'static str {
    match Path::new(name).extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "ttf" => "font/ttf",
        "txt" | "md" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Whether a file's name changes whenever its content does (a content hash in the name, or a
/// versioned vendor folder), so that browsers may keep it forever.
fn immutable(name: &str) -> bool {
    if name.starts_with("vendor/") {
        return true;
    }
    let stem = Path::new(name).file_stem().and_then(|s| s.to_str()).unwrap_or("");
    stem.rsplit(['-', '.'])
        .next()
        .is_some_and(|tail| tail.len() >= 8 && tail.chars().all(|c| c.is_ascii_hexdigit()))
}
