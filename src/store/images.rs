//! Images attached to messages: one record per stored PNG (the file itself lives under the
//! data dir, named by id), indexed by owner and by the conversation that carries it. An image
//! belongs to at most one conversation, so deleting the conversation deletes its images.

use redb::{ReadableDatabase, ReadableTable, Table};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::schema::*;
use super::{decode, encode, Store, StoreError, StoreResult};

/// A stored image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Time-ordered id; also the file's name.
    pub id: Uuid,
    /// The user who uploaded it; nobody else sees it.
    pub owner_id: Uuid,
    /// The conversation a message of which carries it (`None` until it is sent).
    pub conversation_id: Option<Uuid>,
    /// Width of the stored PNG.
    pub width: u32,
    /// Height of the stored PNG.
    pub height: u32,
    /// Bytes of the stored PNG.
    pub size_bytes: u64,
    /// SHA-256 of the stored PNG, hex (the same picture sent twice has the same hash: prompt
    /// prefixes with it can be shared).
    pub sha256: String,
    /// Upload time (ms).
    pub created_at: i64,
}

/// The outcome of deleting an image.
#[derive(Debug)]
pub enum ImageDeletion {
    /// Gone (the caller removes the file).
    Deleted(ImageRecord),
    /// A message carries it: it goes with its conversation.
    InUse,
}

fn load(table: &impl ReadableTable<u128, &'static [u8]>, id: Uuid) -> StoreResult<ImageRecord> {
    let value = table.get(id.as_u128())?.ok_or(StoreError::NotFound)?;
    decode(value.value())
}

/// Image `id` of `owner`; `NotFound` when it is someone else's.
pub(super) fn load_owned(
    table: &impl ReadableTable<u128, &'static [u8]>,
    owner: Uuid,
    id: Uuid,
) -> StoreResult<ImageRecord> {
    let record = load(table, id)?;
    if record.owner_id != owner {
        return Err(StoreError::NotFound);
    }
    Ok(record)
}

/// Marks the images `ids` of `owner` as carried by `conversation_id` (inside the caller's
/// transaction). Fails with `NotFound` for a missing image or another user's, and with
/// `Conflict` for one that another conversation carries.
pub(super) fn attach(
    images: &mut Table<u128, &'static [u8]>,
    by_conversation: &mut Table<(u128, u128), ()>,
    owner: Uuid,
    conversation_id: Uuid,
    ids: &[Uuid],
) -> StoreResult<()> {
    for &id in ids {
        let mut record = load_owned(images, owner, id)?;
        match record.conversation_id {
            Some(c) if c == conversation_id => continue,
            Some(_) => return Err(StoreError::Conflict("image")),
            None => {}
        }
        record.conversation_id = Some(conversation_id);
        images.insert(id.as_u128(), encode(&record)?.as_slice())?;
        by_conversation.insert((conversation_id.as_u128(), id.as_u128()), ())?;
    }
    Ok(())
}

/// Deletes every image that conversation `conversation_id` carries (inside the caller's
/// transaction) and returns their ids, so that the caller removes the files.
pub(super) fn remove_for_conversation(
    images: &mut Table<u128, &'static [u8]>,
    by_owner: &mut Table<(u128, u128), ()>,
    by_conversation: &mut Table<(u128, u128), ()>,
    owner: Uuid,
    conversation_id: Uuid,
) -> StoreResult<Vec<Uuid>> {
    let key = conversation_id.as_u128();
    let ids: Vec<u128> = by_conversation
        .range((key, 0u128)..=(key, u128::MAX))?
        .map(|entry| entry.map(|(k, _)| k.value().1))
        .collect::<Result<_, _>>()?;
    for &id in &ids {
        images.remove(id)?;
        by_owner.remove((owner.as_u128(), id))?;
        by_conversation.remove((key, id))?;
    }
    Ok(ids.into_iter().map(Uuid::from_u128).collect())
}

impl Store {
    /// Records a stored image.
    pub fn create_image(&self, record: &ImageRecord) -> StoreResult<()> {
        let txn = self.db.begin_write()?;
        {
            txn.open_table(IMAGES)?
                .insert(record.id.as_u128(), encode(record)?.as_slice())?;
            txn.open_table(IMAGES_BY_OWNER)?
                .insert((record.owner_id.as_u128(), record.id.as_u128()), ())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Image `id` of `owner`.
    pub fn get_image(&self, owner: Uuid, id: Uuid) -> StoreResult<ImageRecord> {
        let txn = self.db.begin_read()?;
        load_owned(&txn.open_table(IMAGES)?, owner, id)
    }

    /// Whether an image record with this id exists (whoever owns it).
    pub fn image_exists(&self, id: Uuid) -> StoreResult<bool> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(IMAGES)?.get(id.as_u128())?.is_some())
    }

    /// Deletes image `id` of `owner` unless a message carries it.
    pub fn delete_image(&self, owner: Uuid, id: Uuid) -> StoreResult<ImageDeletion> {
        let txn = self.db.begin_write()?;
        let outcome = {
            let mut images = txn.open_table(IMAGES)?;
            let record = load_owned(&images, owner, id)?;
            if record.conversation_id.is_some() {
                return Ok(ImageDeletion::InUse);
            }
            images.remove(id.as_u128())?;
            txn.open_table(IMAGES_BY_OWNER)?
                .remove((owner.as_u128(), id.as_u128()))?;
            ImageDeletion::Deleted(record)
        };
        txn.commit()?;
        Ok(outcome)
    }

    /// Deletes every image of `owner`, sent or not (their account goes); returns their ids
    /// (the caller removes the files).
    pub fn delete_images_of(&self, owner: Uuid) -> StoreResult<Vec<Uuid>> {
        let txn = self.db.begin_write()?;
        let removed = {
            let mut images = txn.open_table(IMAGES)?;
            let mut by_owner = txn.open_table(IMAGES_BY_OWNER)?;
            let mut by_conversation = txn.open_table(IMAGES_BY_CONVERSATION)?;
            let key = owner.as_u128();
            let ids: Vec<u128> = by_owner
                .range((key, 0u128)..=(key, u128::MAX))?
                .map(|entry| entry.map(|(k, _)| k.value().1))
                .collect::<Result<_, _>>()?;
            for &id in &ids {
                if let Some(conversation) = load(&images, Uuid::from_u128(id))?.conversation_id {
                    by_conversation.remove((conversation.as_u128(), id))?;
                }
                images.remove(id)?;
                by_owner.remove((key, id))?;
            }
            ids.into_iter().map(Uuid::from_u128).collect()
        };
        txn.commit()?;
        Ok(removed)
    }

    /// Deletes the images no message carries that were uploaded before `before_ms`; returns
    /// their ids (the caller removes the files).
    pub fn delete_unsent_images(&self, before_ms: i64) -> StoreResult<Vec<Uuid>> {
        let txn = self.db.begin_write()?;
        let removed = {
            let mut images = txn.open_table(IMAGES)?;
            let mut by_owner = txn.open_table(IMAGES_BY_OWNER)?;
            let stale: Vec<ImageRecord> = images
                .iter()?
                .map(|entry| -> StoreResult<ImageRecord> { decode(entry?.1.value()) })
                .filter(|r| {
                    r.as_ref()
                        .map_or(true, |r| r.conversation_id.is_none() && r.created_at < before_ms)
                })
                .collect::<StoreResult<_>>()?;
            for record in &stale {
                images.remove(record.id.as_u128())?;
                by_owner.remove((record.owner_id.as_u128(), record.id.as_u128()))?;
            }
            stale.into_iter().map(|r| r.id).collect()
        };
        txn.commit()?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{new_id, now_ms, MessageRecord, MessageRole};

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("enclave.redb")).unwrap();
        (dir, store)
    }

    fn image(owner: Uuid, created_at: i64) -> ImageRecord {
        ImageRecord {
            id: new_id(),
            owner_id: owner,
            conversation_id: None,
            width: 2,
            height: 1,
            size_bytes: 70,
            sha256: "ab".repeat(32),
            created_at,
        }
    }

    fn conversation(store: &Store, owner: Uuid) -> Uuid {
        store
            .create_conversation(owner, "t".into(), None, None, Default::default(), false)
            .unwrap()
            .id
    }

    #[test]
    fn images_are_their_owners_only() {
        let (_dir, store) = store();
        let (ann, bob) = (new_id(), new_id());
        let record = image(ann, now_ms());
        store.create_image(&record).unwrap();
        assert_eq!(store.get_image(ann, record.id).unwrap(), record);
        assert!(matches!(store.get_image(bob, record.id), Err(StoreError::NotFound)));
        assert!(matches!(store.delete_image(bob, record.id), Err(StoreError::NotFound)));
    }

    #[test]
    fn a_sent_image_goes_with_its_conversation_and_not_before() {
        let (_dir, store) = store();
        let ann = new_id();
        let record = image(ann, now_ms());
        store.create_image(&record).unwrap();
        let chat = conversation(&store, ann);
        let mut message = MessageRecord::new(chat, None, MessageRole::User, "look".into());
        message.attachments = vec![record.id];
        store.append_message(ann, &message).unwrap();
        assert_eq!(store.get_image(ann, record.id).unwrap().conversation_id, Some(chat));
        assert!(matches!(store.delete_image(ann, record.id), Ok(ImageDeletion::InUse)));
        // Another conversation cannot take it.
        let other = conversation(&store, ann);
        let mut elsewhere = MessageRecord::new(other, None, MessageRole::User, "again".into());
        elsewhere.attachments = vec![record.id];
        assert!(matches!(
            store.append_message(ann, &elsewhere),
            Err(StoreError::Conflict(_))
        ));
        assert!(
            store.list_messages(ann, other).unwrap().is_empty(),
            "nothing half-written"
        );
        assert_eq!(store.delete_conversation(ann, chat).unwrap(), vec![record.id]);
        assert!(!store.image_exists(record.id).unwrap());
    }

    #[test]
    fn another_users_image_cannot_be_attached() {
        let (_dir, store) = store();
        let (ann, bob) = (new_id(), new_id());
        let record = image(bob, now_ms());
        store.create_image(&record).unwrap();
        let chat = conversation(&store, ann);
        let mut message = MessageRecord::new(chat, None, MessageRole::User, "mine?".into());
        message.attachments = vec![record.id];
        assert!(matches!(store.append_message(ann, &message), Err(StoreError::NotFound)));
        assert_eq!(store.get_image(bob, record.id).unwrap().conversation_id, None);
    }

    #[test]
    fn every_image_of_an_owner_goes_with_their_account() {
        let (_dir, store) = store();
        let (ann, bob) = (new_id(), new_id());
        let (unsent, sent, bobs) = (image(ann, now_ms()), image(ann, now_ms()), image(bob, now_ms()));
        for r in [&unsent, &sent, &bobs] {
            store.create_image(r).unwrap();
        }
        let chat = conversation(&store, ann);
        let mut message = MessageRecord::new(chat, None, MessageRole::User, "x".into());
        message.attachments = vec![sent.id];
        store.append_message(ann, &message).unwrap();
        let mut removed = store.delete_images_of(ann).unwrap();
        removed.sort();
        let mut expected = vec![unsent.id, sent.id];
        expected.sort();
        assert_eq!(removed, expected);
        assert!(!store.image_exists(unsent.id).unwrap() && !store.image_exists(sent.id).unwrap());
        assert!(store.image_exists(bobs.id).unwrap(), "another user's stays");
        // The conversation's index no longer names it: deleting the conversation finds none.
        assert!(store.delete_conversation(ann, chat).unwrap().is_empty());
    }

    #[test]
    fn only_old_unsent_images_are_swept() {
        let (_dir, store) = store();
        let ann = new_id();
        let old = image(ann, 1_000);
        let fresh = image(ann, 5_000);
        let sent = image(ann, 1_000);
        for r in [&old, &fresh, &sent] {
            store.create_image(r).unwrap();
        }
        let chat = conversation(&store, ann);
        let mut message = MessageRecord::new(chat, None, MessageRole::User, "x".into());
        message.attachments = vec![sent.id];
        store.append_message(ann, &message).unwrap();
        assert_eq!(store.delete_unsent_images(2_000).unwrap(), vec![old.id]);
        assert!(store.image_exists(fresh.id).unwrap() && store.image_exists(sent.id).unwrap());
    }
}
