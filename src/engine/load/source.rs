//! Finds a model's files: on disk, in the hf-hub cache, or downloaded from Hugging Face (a
//! GGUF file, or a safetensors checkpoint with its configuration and tokenizer files).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use hf_hub::progress::{DownloadEvent, ProgressEvent, ProgressHandler};
use indicatif::{ProgressBar, ProgressStyle};

use crate::engine::error::EngineError;
use crate::engine::load::config::{LocalModelConfig, ModelSource};
use crate::engine::load::progress::{LoadProgress, LoadState};

/// What finding a model's files needs to know, whatever kind of model it is.
pub(crate) trait ModelFiles: Sync {
    /// The model's id, for messages.
    fn id(&self) -> &str;
    /// Where the files come from.
    fn source(&self) -> &ModelSource;
    /// Where hf-hub caches downloads.
    fn cache_dir(&self) -> &Path;
    /// Never touch the network.
    fn offline(&self) -> bool;
}

impl ModelFiles for LocalModelConfig {
    fn id(&self) -> &str {
        &self.id
    }
    fn source(&self) -> &ModelSource {
        &self.source
    }
    fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }
    fn offline(&self) -> bool {
        self.offline
    }
}

/// Resolves the model file of `config`: its path when that file exists, else the hf-hub
/// download (or, offline, the hf-hub cache). The error names everything that was tried.
pub(crate) fn resolve_model_file(config: &impl ModelFiles, progress: &LoadProgress) -> Result<PathBuf, EngineError> {
    let source = config.source();
    let mut tried = Vec::new();
    if let Some(path) = &source.path {
        if path.is_file() || path.join("config.json").is_file() {
            return Ok(path.clone());
        }
        tried.push(format!("no model at {}", path.display()));
    }
    match (&source.hf_repo, &source.hf_file) {
        (Some(repo), Some(file)) => match download_model(config, repo, file, source.hf_revision.as_deref(), progress) {
            Ok(path) => return Ok(path),
            Err(error) => tried.push(format!("{repo}/{file} from Hugging Face: {error}")),
        },
        (Some(repo), None) => tried.push(format!("Hugging Face repo {repo} names no file")),
        (None, Some(file)) => tried.push(format!("Hugging Face file {file} names no repo")),
        (None, None) => {}
    }
    if tried.is_empty() {
        tried.push("the source names neither a path nor a Hugging Face repo and file".into());
    }
    Err(EngineError::NotFound(format!(
        "model {}: {}",
        config.id(),
        tried.join("; ")
    )))
}

/// Companion files of a safetensors checkpoint: required, then optional.
const HF_REQUIRED: [&str; 2] = ["config.json", "tokenizer.json"];
/// See [`HF_REQUIRED`] (`sentence_bert_config.json`: an embedding model's window;
/// `preprocessor_config.json`: a vision-language model's image processing).
const HF_OPTIONAL: [&str; 4] = [
    "tokenizer_config.json",
    "generation_config.json",
    "sentence_bert_config.json",
    "preprocessor_config.json",
];

/// Fetches a model: `file` itself, and for a safetensors checkpoint (`*.safetensors` or
/// `model.safetensors.index.json`) its shards and configuration and tokenizer files, all into
/// the same hf-hub snapshot directory.
fn download_model(
    config: &impl ModelFiles,
    repo: &str,
    file: &str,
    revision: Option<&str>,
    progress: &LoadProgress,
) -> Result<PathBuf, String> {
    let main = download(config, repo, file, revision, progress)?;
    if !(file.ends_with(".safetensors") || file.ends_with(".safetensors.index.json")) {
        return Ok(main);
    }
    if file.ends_with(".index.json") {
        let text = std::fs::read_to_string(&main).map_err(|e| e.to_string())?;
        let index: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{file}: {e}"))?;
        let shards: std::collections::BTreeSet<&str> = index["weight_map"]
            .as_object()
            .map(|m| m.values().filter_map(serde_json::Value::as_str).collect())
            .unwrap_or_default();
        for shard in shards {
            download(config, repo, shard, revision, progress)?;
        }
    }
    for companion in HF_REQUIRED {
        download(config, repo, companion, revision, progress)?;
    }
    for companion in HF_OPTIONAL {
        if let Err(error) = download(config, repo, companion, revision, progress) {
            tracing::debug!(repo, companion, %error, "optional model file not fetched");
        }
    }
    Ok(main)
}

/// Fetches `repo`/`file` through hf-hub into `config.cache_dir`, reporting progress; with
/// `config.offline` only the cache is looked at.
fn download(
    config: &impl ModelFiles,
    repo: &str,
    file: &str,
    revision: Option<&str>,
    progress: &LoadProgress,
) -> Result<PathBuf, String> {
    let (owner, name) = repo
        .split_once('/')
        .ok_or_else(|| format!("the repo must be owner/name, got {repo:?}"))?;
    let client = hf_hub::HFClient::builder()
        .cache_dir(config.cache_dir().to_path_buf())
        .retry_max_attempts(3)
        .build()
        .map_err(|e| e.to_string())?;
    let handler = DownloadProgress::new(progress.clone(), file);
    let bar = handler.bar.clone();
    if !config.offline() {
        tracing::info!(model = %config.id(), repo, file, "downloading the model from Hugging Face");
    }
    // hf-hub is async; run it on a private runtime in a thread of its own so that this works
    // whether or not the caller sits inside a tokio runtime.
    let result = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                runtime.block_on(async {
                    client
                        .model(owner, name)
                        .download_file()
                        .filename(file)
                        .maybe_revision(revision.map(str::to_owned))
                        .local_files_only(config.offline())
                        .progress(handler)
                        .send()
                        .await
                        .map_err(|e| match e {
                            hf_hub::HFError::LocalEntryNotFound { .. } => {
                                format!(
                                    "not in the hf-hub cache under {} (offline)",
                                    config.cache_dir().display()
                                )
                            }
                            other => other.to_string(),
                        })
                })
            })
            .join()
            .unwrap_or_else(|_| Err("the download thread panicked".into()))
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    result
}

/// Turns hf-hub download events into [`LoadState::Downloading`] and, when stderr is a
/// terminal, a progress bar.
struct DownloadProgress {
    /// The model's shared state.
    progress: LoadProgress,
    /// The terminal bar, when stderr is a terminal.
    bar: Option<ProgressBar>,
}

impl DownloadProgress {
    fn new(progress: LoadProgress, file: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::no_length();
            if let Ok(style) =
                ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(display_name(file));
            bar
        });
        Self { progress, bar }
    }

    fn report(&self, downloaded_bytes: u64, total_bytes: Option<u64>) {
        self.progress.set(LoadState::Downloading {
            downloaded_bytes,
            total_bytes,
        });
        if let Some(bar) = &self.bar {
            if let Some(total) = total_bytes {
                bar.set_length(total);
            }
            bar.set_position(downloaded_bytes);
        }
    }
}

impl ProgressHandler for DownloadProgress {
    fn on_progress(&self, event: &ProgressEvent) {
        let ProgressEvent::Download(event) = event else {
            return;
        };
        match event {
            DownloadEvent::Start { total_bytes, .. } => self.report(0, (*total_bytes > 0).then_some(*total_bytes)),
            DownloadEvent::Progress { files } => {
                let done: u64 = files.iter().map(|f| f.bytes_completed).sum();
                let total: u64 = files.iter().map(|f| f.total_bytes).sum();
                self.report(done, (total > 0).then_some(total));
            }
            DownloadEvent::AggregateProgress {
                bytes_completed,
                total_bytes,
                ..
            } => self.report(*bytes_completed, (*total_bytes > 0).then_some(*total_bytes)),
            DownloadEvent::Complete => {}
        }
    }
}

/// The last path component of a repo file, for the progress bar.
fn display_name(file: &str) -> String {
    Path::new(file)
        .file_name()
        .map_or_else(|| file.to_owned(), |n| n.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_path_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        std::fs::write(&path, b"x").unwrap();
        let config = LocalModelConfig::from_path("m", &path);
        let found = resolve_model_file(&config, &LoadProgress::new()).unwrap();
        assert_eq!(found, path);
    }

    #[test]
    fn a_missing_file_names_path_and_repo() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = LocalModelConfig::from_path("m", dir.path().join("missing.gguf"));
        config.source.hf_repo = Some("someone/some-model".into());
        config.source.hf_file = Some("some-model.Q4_0.gguf".into());
        config.cache_dir = dir.path().join("cache");
        config.offline = true;
        let error = resolve_model_file(&config, &LoadProgress::new()).unwrap_err();
        let EngineError::NotFound(message) = error else {
            panic!("wrong error {error:?}")
        };
        assert!(message.contains("missing.gguf"), "{message}");
        assert!(message.contains("someone/some-model/some-model.Q4_0.gguf"), "{message}");
        assert!(message.contains("offline"), "{message}");
    }

    #[test]
    fn no_source_at_all_is_not_found() {
        let mut config = LocalModelConfig::from_path("m", "x");
        config.source = Default::default();
        let error = resolve_model_file(&config, &LoadProgress::new()).unwrap_err();
        assert!(matches!(error, EngineError::NotFound(_)));
    }

    /// Hugging Face is unreachable here: the online path must fail with a clear NotFound.
    #[test]
    #[ignore = "touches the network"]
    fn an_unreachable_hub_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = LocalModelConfig::from_path("m", dir.path().join("missing.gguf"));
        config.source.hf_repo = Some("HuggingFaceTB/SmolLM2-135M-Instruct-GGUF".into());
        config.source.hf_file = Some("smollm2-135m-instruct-q8_0.gguf".into());
        config.cache_dir = dir.path().join("cache");
        config.offline = false;
        let started = std::time::Instant::now();
        let error = resolve_model_file(&config, &LoadProgress::new()).unwrap_err();
        eprintln!("{error} after {:?}", started.elapsed());
        assert!(matches!(error, EngineError::NotFound(_)));
    }
}
