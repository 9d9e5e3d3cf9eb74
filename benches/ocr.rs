//! OCR throughput on real scans: pages a second that `extract_with` (the documents pipeline's
//! parser, as the extraction child runs it) reads from the ocrmypdf sdist's scanned PDFs (a
//! 150 dpi JPEG page, four 300 dpi JBIG2 pages, one CCITT G4 page) and from the book page
//! uploaded as a photo; beside it, the `tesseract` command-line program on the same JPEG (the
//! same engine as OCRmyPDF and Open WebUI's Tesseract loader use).
//!
//! ```text
//! OMP_THREAD_LIMIT=1 cargo bench --bench ocr
//! ```
//!
//! `OMP_THREAD_LIMIT=1` as the server sets it for its extraction child (Tesseract's threads
//! spin while they wait; libgomp reads the variable when the library loads). `BENCH_ROUNDS`
//! (default 3) rounds, the best kept. Under `cargo test` (no `--bench`) one round of the
//! book page, to keep the harness itself tested.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use enclave::documents::extract::{extract_with, Options};
use enclave_protocol::DocumentKind;

fn scan(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/documents/scans")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{} (run scripts/fetch-test-documents.sh): {e}", path.display()))
}

/// The JPEG that makes up the scanned page of c03-29.pdf (stored as is: DCTDecode).
fn jpeg_of_the_page(pdf: &[u8]) -> Vec<u8> {
    let start = pdf
        .windows(3)
        .position(|w| w == [0xFF, 0xD8, 0xFF])
        .expect("a JPEG stream");
    let end = start
        + pdf[start..]
            .windows(9)
            .position(|w| w == b"endstream")
            .expect("the stream's end");
    let mut jpeg = pdf[start..end].to_vec();
    while jpeg.last().is_some_and(|b| b.is_ascii_whitespace()) {
        jpeg.pop();
    }
    jpeg
}

/// The best of `rounds` timings of `work`.
fn best(rounds: usize, mut work: impl FnMut()) -> Duration {
    (0..rounds)
        .map(|_| {
            let started = Instant::now();
            work();
            started.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let rounds = if benchmarking { rounds } else { 1 };
    if std::env::var("OMP_THREAD_LIMIT").is_err() {
        eprintln!("note: OMP_THREAD_LIMIT is not set; the server sets it to 1 for its extraction child");
    }
    let options = Options {
        ocr_language: Some("eng".into()),
        ..Options::default()
    };
    let book = scan("c03-29.pdf");
    let mut files: Vec<(&str, Vec<u8>, DocumentKind)> =
        vec![("c03-29.pdf (JPEG, 150 dpi)", book.clone(), DocumentKind::Pdf)];
    if benchmarking {
        files.push(("cardinal.pdf (JBIG2, 300 dpi)", scan("cardinal.pdf"), DocumentKind::Pdf));
        files.push(("ccitt.pdf (CCITT G4, 300 dpi)", scan("ccitt.pdf"), DocumentKind::Pdf));
        files.push((
            "c03-29 page as a JPEG photo",
            jpeg_of_the_page(&book),
            DocumentKind::Image,
        ));
    }
    println!("| file | pages | best of {rounds} | pages/s |");
    println!("|---|---|---|---|");
    for (name, bytes, kind) in &files {
        let mut pages = 0;
        let time = best(rounds, || {
            let extracted = extract_with(bytes, *kind, &options).expect("OCR");
            assert!(
                extracted.sections.iter().all(|s| s.ocr && s.has_text),
                "{name}: every page read"
            );
            pages = extracted.sections.len();
        });
        println!(
            "| {name} | {pages} | {:.2} s | {:.2} |",
            time.as_secs_f64(),
            pages as f64 / time.as_secs_f64()
        );
    }
    if benchmarking {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let jpeg = dir.path().join("page.jpg");
        std::fs::write(&jpeg, jpeg_of_the_page(&book)).expect("write the page");
        let time = best(rounds, || {
            let status = std::process::Command::new("tesseract")
                .arg(&jpeg)
                .arg(dir.path().join("out"))
                .args(["-l", "eng"])
                .stderr(std::process::Stdio::null())
                .status()
                .expect("the tesseract command (apt: tesseract-ocr)");
            assert!(status.success());
        });
        println!(
            "| peer: `tesseract page.jpg` (CLI, PSM 3) | 1 | {:.2} s | {:.2} |",
            time.as_secs_f64(),
            1.0 / time.as_secs_f64()
        );
    }
}
