//! Documents: their records, the per-owner list, the per-owner content hash (identical bytes
//! uploaded again find the existing document), the text of their pages, and the persistent
//! ingestion queue (a restart resumes what was queued).

use enclave_protocol::{DocumentKind, DocumentProgress, DocumentStatus};
use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::schema::*;
use super::{decode, encode, new_id, now_ms, Store, StoreError, StoreResult};

/// A stored document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DocumentRecord {
    /// Time-ordered id; also the name of the stored file.
    pub id: Uuid,
    /// Who uploaded it; nobody else sees it.
    pub owner_id: Uuid,
    /// The uploaded name, sanitised, for display only.
    pub filename: String,
    /// What it is, from its bytes.
    pub kind: DocumentKind,
    /// Size of the original.
    pub size_bytes: u64,
    /// SHA-256 of the original, hex.
    pub sha256: String,
    /// Where ingestion stands.
    pub status: DocumentStatus,
    /// Why ingestion failed.
    pub error: Option<String>,
    /// How far ingestion has come.
    #[serde(default)]
    pub progress: DocumentProgress,
    /// Pages, for formats that have them.
    pub pages: Option<u32>,
    /// Pages without a text layer.
    #[serde(default)]
    pub pages_without_text: Vec<u32>,
    /// Sections of text stored (pages, sheets, members...).
    #[serde(default)]
    pub sections: u32,
    /// Searchable chunks.
    #[serde(default)]
    pub chunks: u32,
    /// Tokens of its whole text (for deciding whether it fits a prompt whole).
    #[serde(default)]
    pub text_tokens: u32,
    /// The embedding model its vectors come from.
    pub embedding_model: Option<String>,
    /// Ingestion attempts so far.
    #[serde(default)]
    pub attempts: u32,
    /// Upload time (ms).
    pub created_at: i64,
    /// Last change (ms).
    pub updated_at: i64,
}

/// A document to create.
pub struct NewDocument {
    /// Its id (the stored file is already written under it).
    pub id: Uuid,
    /// Who uploads it.
    pub owner_id: Uuid,
    /// Display name.
    pub filename: String,
    /// What it is.
    pub kind: DocumentKind,
    /// Size in bytes.
    pub size_bytes: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// The text of one section of a document (a page, a sheet, an archive member...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SectionRecord {
    /// The page number, for formats with pages.
    pub page: Option<u32>,
    /// The archive member or attachment it comes from.
    pub member: Option<String>,
    /// Its text, tables as Markdown.
    pub text: String,
    /// False for a page without a text layer.
    pub has_text: bool,
    /// Its text was recognised from a scan or photo (OCR).
    #[serde(default)]
    pub ocr: bool,
}

/// Where a documents listing page ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentCursor(u128);

impl DocumentCursor {
    /// The opaque text form.
    pub fn encode(&self) -> String {
        format!("{:032x}", self.0)
    }

    /// Parses the text form.
    pub fn decode(text: &str) -> Option<Self> {
        (text.len() == 32).then(|| u128::from_str_radix(text, 16).ok().map(Self))?
    }
}

/// What a listing keeps.
#[derive(Debug, Clone, Default)]
pub struct DocumentFilter {
    /// Names containing this, case-insensitive.
    pub name: Option<String>,
    /// Only this kind.
    pub kind: Option<DocumentKind>,
    /// Only this status.
    pub status: Option<DocumentStatus>,
}

/// One page of a listing.
pub struct DocumentListing {
    /// Newest first.
    pub items: Vec<DocumentRecord>,
    /// The next page's start.
    pub next: Option<DocumentCursor>,
}

/// The outcome of recording an upload.
pub enum Created {
    /// A new document, queued for ingestion.
    New(DocumentRecord),
    /// The same bytes were uploaded before by this owner: that document.
    Existing(DocumentRecord),
}

fn load(table: &impl ReadableTable<u128, &'static [u8]>, owner: Uuid, id: Uuid) -> StoreResult<DocumentRecord> {
    let value = table.get(id.as_u128())?.ok_or(StoreError::NotFound)?;
    let record: DocumentRecord = decode(value.value())?;
    if record.owner_id != owner {
        return Err(StoreError::NotFound);
    }
    Ok(record)
}

fn hash_key(sha256: &str) -> Vec<u8> {
    sha256.as_bytes().to_vec()
}

impl Store {
    /// Records an upload and queues it, unless `owner` already has a document with the same
    /// bytes (then that one comes back and nothing is written).
    pub fn create_document(&self, new: NewDocument) -> StoreResult<Created> {
        let txn = self.db.begin_write()?;
        let created = {
            let mut documents = txn.open_table(DOCUMENTS)?;
            let mut by_owner = txn.open_table(DOCUMENTS_BY_OWNER)?;
            let mut by_hash = txn.open_table(DOCUMENTS_BY_HASH)?;
            let owner = new.owner_id.as_u128();
            let key = hash_key(&new.sha256);
            let existing = by_hash.get((owner, key.as_slice()))?.map(|v| v.value());
            if let Some(id) = existing {
                let record = load(&documents, new.owner_id, Uuid::from_u128(id))?;
                return Ok(Created::Existing(record));
            }
            let now = now_ms();
            let record = DocumentRecord {
                id: new.id,
                owner_id: new.owner_id,
                filename: new.filename,
                kind: new.kind,
                size_bytes: new.size_bytes,
                sha256: new.sha256,
                status: DocumentStatus::Queued,
                error: None,
                progress: DocumentProgress::default(),
                pages: None,
                pages_without_text: Vec::new(),
                sections: 0,
                chunks: 0,
                text_tokens: 0,
                embedding_model: None,
                attempts: 0,
                created_at: now,
                updated_at: now,
            };
            documents.insert(record.id.as_u128(), encode(&record)?.as_slice())?;
            by_owner.insert((owner, record.id.as_u128()), ())?;
            by_hash.insert((owner, key.as_slice()), record.id.as_u128())?;
            txn.open_table(INGEST_QUEUE)?
                .insert(new_id().as_u128(), record.id.as_u128())?;
            Created::New(record)
        };
        txn.commit()?;
        Ok(created)
    }

    /// A document of `owner`.
    pub fn get_document(&self, owner: Uuid, id: Uuid) -> StoreResult<DocumentRecord> {
        let txn = self.db.begin_read()?;
        load(&txn.open_table(DOCUMENTS)?, owner, id)
    }

    /// A document whoever owns it (the ingestion worker).
    pub fn document_by_id(&self, id: Uuid) -> StoreResult<DocumentRecord> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DOCUMENTS)?;
        let value = table.get(id.as_u128())?.ok_or(StoreError::NotFound)?;
        decode(value.value())
    }

    /// Changes a document with `edit` (by id, whoever owns it); `NotFound` once deleted.
    pub fn update_document(&self, id: Uuid, edit: impl FnOnce(&mut DocumentRecord)) -> StoreResult<DocumentRecord> {
        let txn = self.db.begin_write()?;
        let updated = {
            let mut documents = txn.open_table(DOCUMENTS)?;
            let value = documents.get(id.as_u128())?.ok_or(StoreError::NotFound)?;
            let mut record: DocumentRecord = decode(value.value())?;
            drop(value);
            let (owner, sha, created) = (record.owner_id, record.sha256.clone(), record.created_at);
            edit(&mut record);
            record.id = id;
            record.owner_id = owner;
            record.sha256 = sha;
            record.created_at = created;
            record.updated_at = now_ms().max(record.updated_at);
            documents.insert(id.as_u128(), encode(&record)?.as_slice())?;
            record
        };
        txn.commit()?;
        Ok(updated)
    }

    /// Puts a document of `owner` back in the queue with status `queued` (retry).
    pub fn requeue_document(&self, owner: Uuid, id: Uuid) -> StoreResult<DocumentRecord> {
        let txn = self.db.begin_write()?;
        let record = {
            let mut documents = txn.open_table(DOCUMENTS)?;
            let mut record = load(&documents, owner, id)?;
            record.status = DocumentStatus::Queued;
            record.error = None;
            record.progress = DocumentProgress::default();
            record.updated_at = now_ms().max(record.updated_at);
            documents.insert(id.as_u128(), encode(&record)?.as_slice())?;
            txn.open_table(INGEST_QUEUE)?.insert(new_id().as_u128(), id.as_u128())?;
            record
        };
        txn.commit()?;
        Ok(record)
    }

    /// Deletes a document of `owner`: its record, hash entry, sections and queue entries
    /// (the caller removes the file and the vectors).
    pub fn delete_document(&self, owner: Uuid, id: Uuid) -> StoreResult<DocumentRecord> {
        let txn = self.db.begin_write()?;
        let record = {
            let mut documents = txn.open_table(DOCUMENTS)?;
            let record = load(&documents, owner, id)?;
            documents.remove(id.as_u128())?;
            txn.open_table(DOCUMENTS_BY_OWNER)?
                .remove((owner.as_u128(), id.as_u128()))?;
            let key = hash_key(&record.sha256);
            txn.open_table(DOCUMENTS_BY_HASH)?
                .remove((owner.as_u128(), key.as_slice()))?;
            remove_sections(&mut txn.open_table(DOCUMENT_SECTIONS)?, id)?;
            let mut queue = txn.open_table(INGEST_QUEUE)?;
            let jobs: Vec<u128> = queue
                .iter()?
                .filter_map(|entry| entry.ok())
                .filter(|(_, doc)| doc.value() == id.as_u128())
                .map(|(job, _)| job.value())
                .collect();
            for job in jobs {
                queue.remove(job)?;
            }
            record
        };
        txn.commit()?;
        Ok(record)
    }

    /// One page of `owner`'s documents, newest first.
    pub fn list_documents(
        &self,
        owner: Uuid,
        after: Option<DocumentCursor>,
        limit: usize,
        filter: &DocumentFilter,
    ) -> StoreResult<DocumentListing> {
        let txn = self.db.begin_read()?;
        let by_owner = txn.open_table(DOCUMENTS_BY_OWNER)?;
        let documents = txn.open_table(DOCUMENTS)?;
        let owner_key = owner.as_u128();
        let end = match after {
            Some(DocumentCursor(id)) => id,
            None => u128::MAX,
        };
        let needle = filter.name.as_deref().map(str::to_lowercase).filter(|n| !n.is_empty());
        let mut items = Vec::new();
        let mut next = None;
        for entry in by_owner.range((owner_key, 0u128)..(owner_key, end))?.rev() {
            let (key, _) = entry?;
            let id = key.value().1;
            let Some(value) = documents.get(id)? else { continue };
            let record: DocumentRecord = decode(value.value())?;
            let keep = needle
                .as_ref()
                .is_none_or(|n| record.filename.to_lowercase().contains(n.as_str()))
                && filter.kind.is_none_or(|k| record.kind == k)
                && filter.status.is_none_or(|s| record.status == s);
            if !keep {
                continue;
            }
            if items.len() == limit {
                next = items.last().map(|r: &DocumentRecord| DocumentCursor(r.id.as_u128()));
                break;
            }
            items.push(record);
        }
        Ok(DocumentListing { items, next })
    }

    /// Every document of `owner` (for "all my documents" in chat), newest first.
    pub fn all_documents(&self, owner: Uuid) -> StoreResult<Vec<DocumentRecord>> {
        let txn = self.db.begin_read()?;
        let by_owner = txn.open_table(DOCUMENTS_BY_OWNER)?;
        let documents = txn.open_table(DOCUMENTS)?;
        let owner_key = owner.as_u128();
        let mut items = Vec::new();
        for entry in by_owner.range((owner_key, 0u128)..=(owner_key, u128::MAX))?.rev() {
            let (key, _) = entry?;
            if let Some(value) = documents.get(key.value().1)? {
                items.push(decode(value.value())?);
            }
        }
        Ok(items)
    }

    /// Replaces the sections (page texts) of a document.
    pub fn put_sections(&self, id: Uuid, sections: &[SectionRecord]) -> StoreResult<()> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(DOCUMENT_SECTIONS)?;
            remove_sections(&mut table, id)?;
            for (index, section) in sections.iter().enumerate() {
                table.insert((id.as_u128(), index as u32 + 1), encode(section)?.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Section `index` (1-based) of a document of `owner`.
    pub fn get_section(&self, owner: Uuid, id: Uuid, index: u32) -> StoreResult<SectionRecord> {
        let txn = self.db.begin_read()?;
        load(&txn.open_table(DOCUMENTS)?, owner, id)?;
        let table = txn.open_table(DOCUMENT_SECTIONS)?;
        let value = table.get((id.as_u128(), index))?.ok_or(StoreError::NotFound)?;
        decode(value.value())
    }

    /// Every section of a document, in order.
    pub fn sections(&self, id: Uuid) -> StoreResult<Vec<SectionRecord>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DOCUMENT_SECTIONS)?;
        let key = id.as_u128();
        table
            .range((key, 0u32)..=(key, u32::MAX))?
            .map(|entry| decode(entry?.1.value()))
            .collect()
    }

    /// The queued documents, oldest job first (the worker's backlog; survives restarts).
    pub fn queued_documents(&self) -> StoreResult<Vec<(Uuid, Uuid)>> {
        let txn = self.db.begin_read()?;
        let queue = txn.open_table(INGEST_QUEUE)?;
        queue
            .iter()?
            .map(|entry| {
                let (job, doc) = entry?;
                Ok((Uuid::from_u128(job.value()), Uuid::from_u128(doc.value())))
            })
            .collect()
    }

    /// Removes a job from the queue (its document reached `indexed` or `failed`).
    pub fn finish_job(&self, job: Uuid) -> StoreResult<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(INGEST_QUEUE)?.remove(job.as_u128())?;
        txn.commit()?;
        Ok(())
    }

    /// Queues a job for a document (re-embedding with another model).
    pub fn enqueue_document(&self, id: Uuid) -> StoreResult<Uuid> {
        let job = new_id();
        let txn = self.db.begin_write()?;
        txn.open_table(INGEST_QUEUE)?.insert(job.as_u128(), id.as_u128())?;
        txn.commit()?;
        Ok(job)
    }

    /// Every document of every owner (re-embedding all of them).
    pub fn every_document(&self) -> StoreResult<Vec<DocumentRecord>> {
        let txn = self.db.begin_read()?;
        let documents = txn.open_table(DOCUMENTS)?;
        documents.iter()?.map(|entry| decode(entry?.1.value())).collect()
    }

    /// A server-wide text value (`None` when never set).
    pub fn meta_text(&self, key: &str) -> StoreResult<Option<String>> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let value = meta.get(key)?;
        Ok(value.map(|v| String::from_utf8_lossy(v.value()).into_owned()))
    }

    /// Sets a server-wide text value.
    pub fn set_meta_text(&self, key: &str, value: &str) -> StoreResult<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(META)?.insert(key, value.as_bytes())?;
        txn.commit()?;
        Ok(())
    }
}

fn remove_sections(table: &mut redb::Table<(u128, u32), &[u8]>, id: Uuid) -> StoreResult<()> {
    let key = id.as_u128();
    let indices: Vec<u32> = table
        .range((key, 0u32)..=(key, u32::MAX))?
        .map(|entry| entry.map(|(k, _)| k.value().1))
        .collect::<Result<_, _>>()?;
    for index in indices {
        table.remove((key, index))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("enclave.redb")).unwrap();
        (dir, store)
    }

    fn upload(owner: Uuid, sha: &str) -> NewDocument {
        NewDocument {
            id: new_id(),
            owner_id: owner,
            filename: "a.txt".into(),
            kind: DocumentKind::Text,
            size_bytes: 3,
            sha256: sha.into(),
        }
    }

    #[test]
    fn the_same_bytes_from_the_same_owner_find_the_first_document() {
        let (_dir, store) = store();
        let (alice, bob) = (new_id(), new_id());
        let Created::New(first) = store.create_document(upload(alice, "abc")).unwrap() else {
            panic!("first upload is new")
        };
        let Created::Existing(again) = store.create_document(upload(alice, "abc")).unwrap() else {
            panic!("same bytes again")
        };
        assert_eq!(again.id, first.id);
        // Another owner gets a document of their own.
        assert!(matches!(
            store.create_document(upload(bob, "abc")).unwrap(),
            Created::New(_)
        ));
        assert_eq!(store.queued_documents().unwrap().len(), 2);
        assert!(matches!(store.get_document(bob, first.id), Err(StoreError::NotFound)));
    }

    #[test]
    fn deleting_removes_the_record_its_sections_its_hash_and_its_jobs() {
        let (_dir, store) = store();
        let owner = new_id();
        let Created::New(doc) = store.create_document(upload(owner, "abc")).unwrap() else {
            panic!()
        };
        let section = SectionRecord {
            page: Some(1),
            member: None,
            text: "hello".into(),
            has_text: true,
            ocr: false,
        };
        store.put_sections(doc.id, std::slice::from_ref(&section)).unwrap();
        assert_eq!(store.get_section(owner, doc.id, 1).unwrap(), section);
        store.delete_document(owner, doc.id).unwrap();
        assert!(store.queued_documents().unwrap().is_empty());
        assert!(store.sections(doc.id).unwrap().is_empty());
        assert!(matches!(store.get_document(owner, doc.id), Err(StoreError::NotFound)));
        // The bytes may be uploaded again as a new document.
        assert!(matches!(
            store.create_document(upload(owner, "abc")).unwrap(),
            Created::New(_)
        ));
    }

    #[test]
    fn listing_pages_newest_first_and_filters() {
        let (_dir, store) = store();
        let owner = new_id();
        for i in 0..5 {
            let mut new = upload(owner, &format!("h{i}"));
            new.filename = format!("file{i}.txt");
            store.create_document(new).unwrap();
        }
        let first = store
            .list_documents(owner, None, 2, &DocumentFilter::default())
            .unwrap();
        assert_eq!(
            first.items.iter().map(|d| d.filename.as_str()).collect::<Vec<_>>(),
            ["file4.txt", "file3.txt"]
        );
        let cursor = DocumentCursor::decode(&first.next.unwrap().encode()).unwrap();
        let second = store
            .list_documents(owner, Some(cursor), 10, &DocumentFilter::default())
            .unwrap();
        assert_eq!(second.items.len(), 3);
        assert!(second.next.is_none());
        let filtered = store
            .list_documents(
                owner,
                None,
                10,
                &DocumentFilter {
                    name: Some("FILE2".into()),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(filtered.items.len(), 1);
    }
}
