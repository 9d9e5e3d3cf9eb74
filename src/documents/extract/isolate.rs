//! Runs extraction where a bad file cannot hurt the server: in a child process (the same
//! binary, `enclave extract`) with a wall-clock limit and an address-space limit, answering
//! with JSON on its standard output. A crash, a timeout or the memory limit becomes
//! [`ExtractError::Crashed`] for that one document. The child runs at a lower scheduling
//! priority ([`CHILD_NICENESS`]): parsing a long PDF takes a core for seconds, and chat
//! answers streaming on the same cores must not slow down for it.
//!
//! Without an executable (unit tests, where the current executable is the test harness) the
//! extraction runs on a blocking thread with panics caught and the same time limit on the
//! wait.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use enclave_protocol::DocumentKind;
use tokio::io::AsyncReadExt;

use super::{extract_with, ExtractError, Extracted, Limits, Options};

#[cfg(unix)]
/// How much nicer than the server the extraction process runs (`nice` 10: it gets the CPU
/// the server's threads leave).
const CHILD_NICENESS: libc::c_int = 10;

/// How extraction is isolated.
#[derive(Debug, Clone)]
pub struct Isolation {
    /// The `enclave` executable to run as the child (`None`: in-process, panics caught).
    pub executable: Option<PathBuf>,
    /// Wall-clock limit of one document.
    pub timeout: Duration,
    /// Address-space limit of the child.
    pub memory_bytes: u64,
    /// What one document may unpack to.
    pub limits: Limits,
    /// The Tesseract language(s) pictures of text are read in; `None`: no OCR.
    pub ocr_language: Option<String>,
}

impl Isolation {
    /// In-process extraction (tests).
    pub fn in_process(limits: Limits) -> Self {
        Self {
            executable: None,
            timeout: Duration::from_secs(120),
            memory_bytes: 0,
            limits,
            ocr_language: None,
        }
    }
}

impl Isolation {
    /// How the parser reads a document.
    fn options(&self) -> Options {
        Options {
            limits: self.limits,
            ocr_language: self.ocr_language.clone(),
        }
    }
}

/// The child's answer on its standard output.
type Answer = Result<Extracted, ExtractError>;

/// Extracts the file at `path` as `kind`, isolated as `isolation` says.
pub async fn extract_file(path: &Path, kind: DocumentKind, isolation: &Isolation) -> Result<Extracted, ExtractError> {
    match &isolation.executable {
        Some(executable) => in_child(executable, path, kind, isolation).await,
        None => {
            let path = path.to_path_buf();
            let options = isolation.options();
            let work = tokio::task::spawn_blocking(move || {
                let bytes =
                    std::fs::read(&path).map_err(|e| ExtractError::Corrupt(format!("cannot read the file: {e}")))?;
                std::panic::catch_unwind(|| extract_with(&bytes, kind, &options))
                    .unwrap_or_else(|_| Err(ExtractError::Crashed("the parser crashed".into())))
            });
            match tokio::time::timeout(isolation.timeout, work).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => Err(ExtractError::Crashed("the parser crashed".into())),
                Err(_) => Err(timed_out(isolation.timeout)),
            }
        }
    }
}

fn timed_out(limit: Duration) -> ExtractError {
    ExtractError::Crashed(format!(
        "reading the file took longer than {} s; the file may be damaged or built to stall parsers",
        limit.as_secs()
    ))
}

async fn in_child(executable: &Path, path: &Path, kind: DocumentKind, isolation: &Isolation) -> Answer {
    let options = serde_json::to_string(&isolation.options()).map_err(|e| ExtractError::Crashed(e.to_string()))?;
    let mut command = tokio::process::Command::new(executable);
    command
        .arg("extract")
        .arg("--kind")
        .arg(kind.as_str())
        .arg("--options")
        .arg(options)
        .arg(path)
        .env("RUST_LOG", "off")
        // Tesseract's OpenMP threads spin while they wait: on a few cores, one thread reads a
        // page about six times as fast (libgomp reads this when the library loads).
        .env("OMP_THREAD_LIMIT", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    #[cfg(unix)]
    {
        let memory = isolation.memory_bytes;
        // Safety: only async-signal-safe calls between fork and exec (setrlimit, setpriority).
        unsafe {
            command.pre_exec(move || {
                // Best effort: a failure leaves the child at the server's priority.
                libc::setpriority(libc::PRIO_PROCESS, 0, CHILD_NICENESS);
                if memory > 0 {
                    let limit = libc::rlimit {
                        rlim_cur: memory as libc::rlim_t,
                        rlim_max: memory as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }
    let mut child = command
        .spawn()
        .map_err(|e| ExtractError::Crashed(format!("cannot start the extraction process: {e}")))?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| ExtractError::Crashed("the extraction process has no output".into()))?;
    let run = async {
        let mut output = Vec::new();
        stdout.read_to_end(&mut output).await?;
        let status = child.wait().await?;
        Ok::<_, std::io::Error>((output, status))
    };
    let (output, status) = match tokio::time::timeout(isolation.timeout, run).await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return Err(ExtractError::Crashed(format!("the extraction process failed: {e}"))),
        // Dropping the child kills it (kill_on_drop).
        Err(_) => return Err(timed_out(isolation.timeout)),
    };
    match serde_json::from_slice::<Answer>(&output) {
        Ok(answer) => answer,
        Err(_) if !status.success() => Err(ExtractError::Crashed(format!(
            "the parser stopped ({}); the file may be damaged or need more memory than allowed",
            describe_status(status)
        ))),
        Err(e) => Err(ExtractError::Crashed(format!("unreadable answer from the parser: {e}"))),
    }
}

fn describe_status(status: std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("signal {signal}");
        }
    }
    status.to_string()
}

/// The child's side (`enclave extract --kind K --options JSON FILE`): extracts and writes the
/// answer as JSON on standard output. A panic aborts the process (the parent reports it).
pub fn run_child(kind: &str, options: &str, file: &Path) -> std::process::ExitCode {
    let answer: Answer = (|| {
        let kind: DocumentKind = serde_json::from_value(serde_json::Value::String(kind.to_owned()))
            .map_err(|_| ExtractError::Corrupt(format!("unknown kind {kind:?}")))?;
        let options: Options = serde_json::from_str(options).map_err(|e| ExtractError::Corrupt(e.to_string()))?;
        let bytes = std::fs::read(file).map_err(|e| ExtractError::Corrupt(format!("cannot read the file: {e}")))?;
        extract_with(&bytes, kind, &options)
    })();
    let Ok(json) = serde_json::to_vec(&answer) else {
        return std::process::ExitCode::FAILURE;
    };
    let mut stdout = std::io::stdout().lock();
    if stdout.write_all(&json).and_then(|()| stdout.flush()).is_err() {
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}
