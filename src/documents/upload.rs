//! Taking an uploaded file: its type from its bytes, its size within the limit, stored under
//! its id (the user's name kept only as sanitised display text), identical bytes finding the
//! document already there, and the ingestion worker woken. Nothing waits for ingestion.

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::detect::detect;
use super::{DocumentError, DocumentService};
use crate::store::{Created, DocumentRecord, NewDocument};

/// Longest display name kept, in characters.
const MAX_NAME_CHARS: usize = 200;

/// An upload taken.
pub struct Accepted {
    /// The document (new, or the one with the same bytes).
    pub record: DocumentRecord,
    /// Whether the same bytes were there already.
    pub duplicate: bool,
}

/// The display form of an uploaded name: no path, no control characters, bounded length.
pub fn display_name(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
    let cleaned: String = base.chars().filter(|c| !c.is_control()).take(MAX_NAME_CHARS).collect();
    let cleaned = cleaned.trim().trim_start_matches('.').trim().to_owned();
    if cleaned.is_empty() {
        "document".to_owned()
    } else {
        cleaned
    }
}

impl DocumentService {
    /// The largest document accepted, per file.
    pub fn max_upload_bytes(&self) -> u64 {
        self.inner.settings.max_upload_bytes
    }

    /// Stores an uploaded file of `owner` and queues it for ingestion.
    pub async fn upload(&self, owner: Uuid, filename: &str, bytes: Vec<u8>) -> Result<Accepted, DocumentError> {
        let limit = self.inner.settings.max_upload_bytes;
        if bytes.len() as u64 > limit {
            return Err(DocumentError::TooLarge { limit });
        }
        if bytes.is_empty() {
            return Err(DocumentError::Empty);
        }
        let filename = display_name(filename);
        let kind = detect(&bytes, &filename).ok_or(DocumentError::UnsupportedType)?;
        let sha256 = format!("{:x}", Sha256::digest(&bytes));
        let id = crate::store::new_id();
        // The file first, under a temporary name: a record never points at a missing file.
        let path = self.file_path(id);
        let partial = path.with_extension("partial");
        let size_bytes = bytes.len() as u64;
        tokio::fs::write(&partial, &bytes)
            .await
            .map_err(|e| DocumentError::Io(format!("cannot store the file: {e}")))?;
        tokio::fs::rename(&partial, &path)
            .await
            .map_err(|e| DocumentError::Io(format!("cannot store the file: {e}")))?;
        let created = self.inner.store.create_document(NewDocument {
            id,
            owner_id: owner,
            filename,
            kind,
            size_bytes,
            sha256,
        });
        let accepted = match created {
            Ok(Created::New(record)) => {
                tracing::info!(document = %record.id, kind = kind.as_str(), bytes = size_bytes, "document uploaded");
                self.inner.wake.notify_one();
                Accepted {
                    record,
                    duplicate: false,
                }
            }
            Ok(Created::Existing(record)) => {
                let _ = tokio::fs::remove_file(&path).await;
                Accepted {
                    record,
                    duplicate: true,
                }
            }
            Err(error) => {
                let _ = tokio::fs::remove_file(&path).await;
                return Err(error.into());
            }
        };
        Ok(accepted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_lose_paths_and_control_characters() {
        assert_eq!(display_name("../../etc/passwd"), "passwd");
        assert_eq!(display_name("C:\\Users\\ann\\report.pdf"), "report.pdf");
        assert_eq!(display_name("a\u{0}b\nc.txt"), "abc.txt");
        assert_eq!(display_name("..."), "document");
        assert_eq!(display_name(&"x".repeat(500)).chars().count(), MAX_NAME_CHARS);
    }
}
