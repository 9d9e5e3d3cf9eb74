//! Where a model stands on its way from a name in models.toml to serving requests.

use std::sync::{Arc, Mutex};

/// The loading state of one model, as `/api/v1/models/{id}/status` reports it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LoadState {
    /// Loading has not started yet.
    Pending,
    /// The model file is being downloaded.
    Downloading {
        /// Bytes received so far.
        downloaded_bytes: u64,
        /// Size of the file, when the server said.
        total_bytes: Option<u64>,
    },
    /// The weights are being read into memory.
    Loading,
    /// The model serves requests.
    Ready,
    /// Loading failed; the model will not serve requests.
    Failed {
        /// Why, in words.
        error: String,
    },
}

/// A shared, cheaply cloned handle on a model's [`LoadState`], written by [`crate::engine::load`]
/// and read by the status endpoint.
#[derive(Clone, Debug)]
pub struct LoadProgress(Arc<Mutex<LoadState>>);

impl Default for LoadProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl LoadProgress {
    /// A new handle in the [`LoadState::Pending`] state.
    pub fn new() -> Self {
        Self(Arc::new(Mutex::new(LoadState::Pending)))
    }

    /// The current state.
    pub fn snapshot(&self) -> LoadState {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the state.
    pub(crate) fn set(&self, state: LoadState) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_with_a_state_tag() {
        let progress = LoadProgress::new();
        assert_eq!(progress.snapshot(), LoadState::Pending);
        progress.set(LoadState::Downloading {
            downloaded_bytes: 5,
            total_bytes: Some(10),
        });
        let json = serde_json::to_value(progress.snapshot()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"state": "downloading", "downloaded_bytes": 5, "total_bytes": 10})
        );
        let failed = serde_json::to_value(LoadState::Failed { error: "x".into() }).unwrap();
        assert_eq!(failed, serde_json::json!({"state": "failed", "error": "x"}));
    }
}
