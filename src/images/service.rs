//! The images service: takes an upload (checked and re-encoded off the async threads), stores
//! the PNG under its id before its record (a record never points at a missing file), serves it
//! to its owner only, gets a message's images ready for a model, and cleans up: a
//! conversation's images go with it, uploads never sent go after a day, and files left without
//! a record by a crash go at the next start.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::{normalize, ImageError, ImageLimits, PromptImage};
use crate::store::{new_id, now_ms, ImageDeletion, ImageRecord, Store, StoreError};

/// Uploads that no message carries are deleted after this long.
const UNSENT_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// How often the never-sent uploads are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// How the service runs.
#[derive(Debug, Clone)]
pub struct ImageSettings {
    /// Where the PNGs are stored, named by id.
    pub dir: PathBuf,
    /// What an upload may be.
    pub limits: ImageLimits,
    /// The most images one message may carry.
    pub max_per_message: usize,
}

/// The images service; cheap to clone.
#[derive(Clone)]
pub struct ImageService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    settings: ImageSettings,
}

impl From<StoreError> for ImageError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ImageError::NotFound,
            other => ImageError::Storage(other.to_string()),
        }
    }
}

fn io(what: &str, e: std::io::Error) -> ImageError {
    ImageError::Storage(format!("{what}: {e}"))
}

impl ImageService {
    /// The service over `store`: creates the folder, removes files a crash left without a
    /// record and starts the hourly sweep of never-sent uploads.
    pub fn start(store: Store, settings: ImageSettings) -> Result<Self, ImageError> {
        std::fs::create_dir_all(&settings.dir).map_err(|e| io("cannot create the images folder", e))?;
        let service = Self {
            inner: Arc::new(Inner { store, settings }),
        };
        service.remove_orphan_files();
        let sweeper = service.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(SWEEP_EVERY);
            loop {
                every.tick().await;
                sweeper.sweep_unsent().await;
            }
        });
        Ok(service)
    }

    /// The most images one message may carry.
    pub fn max_per_message(&self) -> usize {
        self.inner.settings.max_per_message
    }

    /// The largest image accepted, in bytes.
    pub fn max_bytes(&self) -> usize {
        self.inner.settings.limits.max_bytes
    }

    fn path(&self, id: Uuid) -> PathBuf {
        self.inner.settings.dir.join(format!("{id}.png"))
    }

    /// Checks and re-encodes an image without storing it (`data:` URLs of `/v1`).
    pub async fn inline(&self, bytes: Vec<u8>) -> Result<PromptImage, ImageError> {
        let limits = self.inner.settings.limits;
        let normalized = tokio::task::spawn_blocking(move || normalize(&bytes, &limits))
            .await
            .map_err(|e| ImageError::Storage(format!("the image decoder stopped: {e}")))??;
        Ok(PromptImage::from_normalized(normalized))
    }

    /// Stores an uploaded image of `owner`.
    pub async fn upload(&self, owner: Uuid, bytes: Vec<u8>) -> Result<ImageRecord, ImageError> {
        let image = self.inline(bytes).await?;
        let record = ImageRecord {
            id: new_id(),
            owner_id: owner,
            conversation_id: None,
            width: image.width,
            height: image.height,
            size_bytes: image.png.len() as u64,
            sha256: image.sha256.clone(),
            created_at: now_ms(),
        };
        self.write_file(record.id, &image.png).await?;
        if let Err(e) = self.inner.store.create_image(&record) {
            self.remove_files(&[record.id]).await;
            return Err(e.into());
        }
        tracing::info!(image = %record.id, width = record.width, height = record.height, bytes = record.size_bytes, "image uploaded");
        Ok(record)
    }

    /// The file first, under a temporary name, then renamed: never a half-written PNG.
    async fn write_file(&self, id: Uuid, png: &[u8]) -> Result<(), ImageError> {
        let path = self.path(id);
        let partial = path.with_extension("partial");
        tokio::fs::write(&partial, png)
            .await
            .map_err(|e| io("cannot store the image", e))?;
        tokio::fs::rename(&partial, &path)
            .await
            .map_err(|e| io("cannot store the image", e))
    }

    /// Image `id` of `owner`.
    pub fn record(&self, owner: Uuid, id: Uuid) -> Result<ImageRecord, ImageError> {
        Ok(self.inner.store.get_image(owner, id)?)
    }

    /// Image `id` of `owner` with its PNG.
    pub async fn get(&self, owner: Uuid, id: Uuid) -> Result<(ImageRecord, Vec<u8>), ImageError> {
        let record = self.record(owner, id)?;
        let png = tokio::fs::read(self.path(id))
            .await
            .map_err(|e| io("the stored image is missing", e))?;
        Ok((record, png))
    }

    /// Deletes an image of `owner` that no message carries.
    pub async fn delete(&self, owner: Uuid, id: Uuid) -> Result<(), ImageError> {
        match self.inner.store.delete_image(owner, id)? {
            ImageDeletion::InUse => Err(ImageError::InUse),
            ImageDeletion::Deleted(_) => {
                self.remove_files(&[id]).await;
                Ok(())
            }
        }
    }

    /// Deletes every image of `owner` and its file (their account goes: issue 19's account
    /// deletion calls this). Returns how many went.
    pub async fn delete_all_of(&self, owner: Uuid) -> Result<usize, ImageError> {
        let ids = self.inner.store.delete_images_of(owner)?;
        self.remove_files(&ids).await;
        tracing::info!(images = ids.len(), "a user's images deleted");
        Ok(ids.len())
    }

    /// The ids a new message of `owner` in `conversation_id` carries, for `requested`: each
    /// must be `owner`'s; one that another conversation already carries is copied (an image
    /// belongs to one conversation, so that deleting either leaves the other whole).
    pub async fn claim(&self, owner: Uuid, conversation_id: Uuid, requested: &[Uuid]) -> Result<Vec<Uuid>, ImageError> {
        let limit = self.max_per_message();
        if requested.len() > limit {
            return Err(ImageError::TooMany {
                count: requested.len(),
                limit,
            });
        }
        let mut ids = Vec::with_capacity(requested.len());
        for &id in requested {
            let record = self.record(owner, id)?;
            match record.conversation_id {
                Some(c) if c != conversation_id => {
                    let (_, png) = self.get(owner, id).await?;
                    let copy = ImageRecord {
                        id: new_id(),
                        conversation_id: None,
                        created_at: now_ms(),
                        ..record
                    };
                    self.write_file(copy.id, &png).await?;
                    if let Err(e) = self.inner.store.create_image(&copy) {
                        self.remove_files(&[copy.id]).await;
                        return Err(e.into());
                    }
                    ids.push(copy.id);
                }
                _ => ids.push(id),
            }
        }
        Ok(ids)
    }

    /// The images `ids` of `owner`, read for a prompt.
    pub async fn for_prompt(&self, owner: Uuid, ids: &[Uuid]) -> Result<Vec<PromptImage>, ImageError> {
        let mut images = Vec::with_capacity(ids.len());
        for &id in ids {
            let (record, png) = self.get(owner, id).await?;
            images.push(PromptImage {
                png: png.into(),
                width: record.width,
                height: record.height,
                sha256: record.sha256,
            });
        }
        Ok(images)
    }

    /// Removes the files of images whose records are gone (a deleted conversation's).
    pub async fn remove_files(&self, ids: &[Uuid]) {
        for id in ids {
            match tokio::fs::remove_file(self.path(*id)).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(image = %id, error = %e, "could not remove a deleted image's file"),
            }
        }
    }

    /// Deletes the uploads that no message carried within a day.
    async fn sweep_unsent(&self) {
        let before = now_ms() - UNSENT_LIFETIME.as_millis() as i64;
        match self.inner.store.delete_unsent_images(before) {
            Ok(ids) if ids.is_empty() => {}
            Ok(ids) => {
                tracing::info!(
                    count = ids.len(),
                    "deleted images uploaded over a day ago and never sent"
                );
                self.remove_files(&ids).await;
            }
            Err(e) => tracing::warn!(error = %e, "could not sweep never-sent images"),
        }
    }

    /// Removes files that have no record (a crash between a delete's commit and its file
    /// removal, or an upload's file write and its record) and stale partial writes.
    fn remove_orphan_files(&self) {
        let Ok(entries) = std::fs::read_dir(&self.inner.settings.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let keep = match (
                path.extension().and_then(|e| e.to_str()),
                path.file_stem().and_then(|s| s.to_str()),
            ) {
                (Some("png"), Some(stem)) => match Uuid::parse_str(stem) {
                    Ok(id) => self.inner.store.image_exists(id).unwrap_or(true),
                    Err(_) => true,
                },
                (Some("partial"), _) => false,
                _ => true,
            };
            if !keep {
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(file = %path.display(), error = %e, "could not remove an orphaned image file");
                }
            }
        }
    }
}
