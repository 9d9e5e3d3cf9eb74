//! With the `cuda` feature: compiles the GPU attention kernel (`src/attention/paged.cu`) to
//! PTX with nvcc (`CUDA_PATH/bin/nvcc` or the one on PATH), for compute capability
//! `CUDA_COMPUTE_CAP` (default 80; the driver compiles PTX for newer GPUs at load).

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=src/attention/paged.cu");
    println!("cargo::rerun-if-env-changed=CUDA_COMPUTE_CAP");
    println!("cargo::rerun-if-env-changed=CUDA_PATH");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "80".into());
    let nvcc = std::env::var("CUDA_PATH")
        .map(|root| std::path::Path::new(&root).join("bin/nvcc"))
        .ok()
        .filter(|p| p.is_file())
        .unwrap_or_else(|| "nvcc".into());
    let status = std::process::Command::new(&nvcc)
        .args(["-ptx", "-O3", "--use_fast_math", &format!("-arch=compute_{cap}")])
        .arg("src/attention/paged.cu")
        .arg("-o")
        .arg(out.join("paged_attention.ptx"))
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", nvcc.display()));
    assert!(status.success(), "nvcc failed on src/attention/paged.cu");
}
