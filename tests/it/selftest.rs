//! `enclave selftest` and `enclave synth-model`, the engine tools the GPU check runs, through
//! the real binary.

use std::process::Command;

use serde_json::Value;

fn enclave() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_enclave"));
    command.env("ENCLAVE_LOG", "error");
    command
}

#[test]
fn the_self_test_passes_on_the_cpu_and_writes_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.json");
    let output = enclave()
        .args(["selftest", "--device", "cpu", "--json"])
        .arg(&report_path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    assert_eq!(printed, written);
    assert_eq!(written["device"], "Cpu");
    assert_eq!(written["passed"], true);
    let checks = written["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 5, "{checks:?}");
    for check in &checks[..4] {
        let error = check["figures"]["worst_relative_rms_error"].as_f64().unwrap();
        assert!(error < 0.05, "{check}");
        assert_eq!(check["figures"]["attention"], "CpuKernel");
    }
    // The real-vocabulary model's logits cover all 151,936 tokens.
    assert_eq!(checks[1]["figures"]["vocab"], 151_936);
    assert_eq!(checks[4]["figures"]["same_output"], 16);
}

#[cfg(not(feature = "cuda"))]
#[test]
fn asking_for_cuda_without_it_says_how_to_build_it() {
    let output = enclave().args(["selftest", "--device", "cuda"]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--features cuda"), "{stderr}");
}

#[test]
fn a_synthetic_model_is_written_and_described_in_one_json_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.gguf");
    let output = enclave()
        .args(["synth-model", "--shape", "small", "--weights", "q4_k_m", "--seed", "3"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let line: Value = serde_json::from_slice(&output.stdout).unwrap();
    let bytes = line["tensor_bytes"].as_u64().unwrap();
    assert!(bytes > 0 && bytes < std::fs::metadata(&path).unwrap().len());
    assert!(line["bytes_read_per_token"].as_u64().unwrap() < bytes);

    let refused = enclave()
        .args(["synth-model", "--shape", "tiny-llama"])
        .arg(dir.path().join("x.gguf"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("llama3-8b"));
}
