//! The audit log's records: an append-only table of entries chained by hashes, and the
//! per-user keys that turn account ids into pseudonyms.
//!
//! **Chain.** Entry `n` is stored as `hash(n) ‖ body(n)`, where `body(n)` is the entry's JSON
//! (which names `prev_hash = hash(n-1)`) and `hash(n) = SHA-256(hash(n-1) ‖ body(n))`. Editing
//! an entry's body makes its own hash fail; recomputing that hash breaks the next entry's link;
//! removing entries leaves a gap in the sequence numbers or a log that ends before the head
//! recorded in the meta table. Retention removes the oldest entries and records the last
//! removed one's hash as the anchor the remaining chain starts from.
//!
//! **Pseudonyms.** An entry names accounts by `p-` and 24 hex digits of SHA-256(key ‖ id), with
//! a random key per account made on first sight. Only the server (holding the key) can link a
//! pseudonym to its account; erasing the key (when the account is erased) leaves every entry
//! and the chain intact while nobody can tell whose they were any more.

use redb::{ReadableDatabase, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::schema::*;
use super::{decode, encode, Store, StoreError, StoreResult};

/// (seq, hash) of the newest entry ever appended.
const HEAD_KEY: &str = "audit_head";
/// (seq, hash) of the newest entry retention removed: where the remaining chain starts.
const ANCHOR_KEY: &str = "audit_anchor";
/// The hash the first entry links to.
const GENESIS: [u8; 32] = [0; 32];

/// An entry to append; the store adds its number, pseudonyms and hashes.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEntry {
    /// When (ms).
    pub at: i64,
    /// What happened (`auth.login`, ...).
    pub action: String,
    /// `ok` or an error code.
    pub outcome: String,
    /// Who acted.
    pub actor: Option<Uuid>,
    /// Whom it was about.
    pub subject: Option<Uuid>,
    /// What it was about.
    pub resource: Option<String>,
    /// The client's address.
    pub ip: Option<String>,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
    /// More about it.
    pub details: serde_json::Value,
}

/// An entry as stored (its hash is kept beside it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Its number.
    pub seq: u64,
    /// When (ms).
    pub at: i64,
    /// What happened.
    pub action: String,
    /// `ok` or an error code.
    pub outcome: String,
    /// The actor's pseudonym.
    pub actor: Option<String>,
    /// The subject's pseudonym.
    pub subject: Option<String>,
    /// What it was about.
    pub resource: Option<String>,
    /// The client's address.
    pub ip: Option<String>,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
    /// More about it.
    pub details: serde_json::Value,
    /// Hex hash of the entry before.
    pub prev_hash: String,
}

/// A stored entry and its hash (hex).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditItem {
    /// The entry.
    pub record: AuditRecord,
    /// Its hash.
    pub hash: String,
}

/// Which entries a listing wants.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    /// Entries whose actor or subject is this account.
    pub user: Option<Uuid>,
    /// Entries of this action.
    pub action: Option<String>,
    /// Entries with this outcome (`ok` or an error code).
    pub outcome: Option<String>,
    /// Entries at or after this time (ms).
    pub since: Option<i64>,
    /// Entries before this time (ms).
    pub until: Option<i64>,
}

/// What checking the chain found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCheck {
    /// Entries checked.
    pub checked: u64,
    /// The first entry that does not hold and why, if one does not.
    pub broken: Option<(u64, String)>,
}

impl Store {
    /// Appends `entries` in order, in one transaction; returns the number of the last.
    pub fn append_audit(&self, entries: &[NewAuditEntry]) -> StoreResult<u64> {
        let txn = self.db.begin_write()?;
        let (mut seq, mut prev) = read_point(&txn.open_table(META)?, HEAD_KEY)?.unwrap_or((0, GENESIS));
        {
            let mut log = txn.open_table(AUDIT_LOG)?;
            for entry in entries {
                seq += 1;
                let record = AuditRecord {
                    seq,
                    at: entry.at,
                    action: entry.action.clone(),
                    outcome: entry.outcome.clone(),
                    actor: entry.actor.map(|id| pseudonym_in(&txn, id)).transpose()?,
                    subject: entry.subject.map(|id| pseudonym_in(&txn, id)).transpose()?,
                    resource: entry.resource.clone(),
                    ip: entry.ip.clone(),
                    user_agent: entry.user_agent.clone(),
                    details: entry.details.clone(),
                    prev_hash: hex::encode(prev),
                };
                let body = encode(&record)?;
                let hash = chain_hash(&prev, &body);
                let mut value = Vec::with_capacity(32 + body.len());
                value.extend_from_slice(&hash);
                value.extend_from_slice(&body);
                log.insert(seq, value.as_slice())?;
                prev = hash;
            }
        }
        txn.open_table(META)?
            .insert(HEAD_KEY, point_bytes(seq, &prev).as_slice())?;
        txn.commit()?;
        Ok(seq)
    }

    /// Up to `limit` entries matching `filter`, newest first, older than entry `before`;
    /// and the `before` of the next page when there are more.
    pub fn audit_page(
        &self,
        filter: &AuditFilter,
        before: Option<u64>,
        limit: usize,
    ) -> StoreResult<(Vec<AuditItem>, Option<u64>)> {
        let txn = self.db.begin_read()?;
        let Some(wanted) = Matcher::new(&txn, filter)? else {
            return Ok((Vec::new(), None));
        };
        let log = txn.open_table(AUDIT_LOG)?;
        let mut items = Vec::new();
        for row in log.range(..before.unwrap_or(u64::MAX))?.rev() {
            let (_, value) = row?;
            let item = parse_item(value.value())?;
            if filter.since.is_some_and(|since| item.record.at < since) {
                break;
            }
            if !wanted.matches(&item.record) {
                continue;
            }
            if items.len() == limit {
                let next = items.last().map(|i: &AuditItem| i.record.seq);
                return Ok((items, next));
            }
            items.push(item);
        }
        Ok((items, None))
    }

    /// Up to `limit` entries matching `filter`, oldest first, after entry `after` (an export
    /// reads the log in such slices).
    pub fn audit_slice(&self, filter: &AuditFilter, after: u64, limit: usize) -> StoreResult<Vec<AuditItem>> {
        let txn = self.db.begin_read()?;
        let Some(wanted) = Matcher::new(&txn, filter)? else {
            return Ok(Vec::new());
        };
        let log = txn.open_table(AUDIT_LOG)?;
        let mut items = Vec::new();
        for row in log.range(after.saturating_add(1)..)? {
            let (_, value) = row?;
            let item = parse_item(value.value())?;
            if filter.until.is_some_and(|until| item.record.at >= until) || items.len() == limit {
                break;
            }
            if wanted.matches(&item.record) {
                items.push(item);
            }
        }
        Ok(items)
    }

    /// Checks every entry against its hash and the one before, from the anchor to the head.
    pub fn verify_audit(&self) -> StoreResult<AuditCheck> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let (mut expected_seq, mut prev) = read_point(&meta, ANCHOR_KEY)?.unwrap_or((0, GENESIS));
        let head = read_point(&meta, HEAD_KEY)?;
        let log = txn.open_table(AUDIT_LOG)?;
        let mut checked = 0;
        let broken = |seq: u64, problem: String, checked: u64| {
            Ok(AuditCheck {
                checked,
                broken: Some((seq, problem)),
            })
        };
        for row in log.iter()? {
            let (key, value) = row?;
            let (seq, value) = (key.value(), value.value());
            expected_seq += 1;
            if seq != expected_seq {
                return broken(expected_seq, format!("entry {expected_seq} is missing"), checked);
            }
            checked += 1;
            if value.len() < 32 {
                return broken(seq, "the entry is truncated".into(), checked);
            }
            let (stored_hash, body) = value.split_at(32);
            let record: AuditRecord = match decode(body) {
                Ok(record) => record,
                Err(_) => return broken(seq, "the entry is not readable".into(), checked),
            };
            if record.seq != seq {
                return broken(seq, format!("the entry says it is number {}", record.seq), checked);
            }
            if record.prev_hash != hex::encode(prev) {
                return broken(seq, "the entry does not link to the entry before it".into(), checked);
            }
            if chain_hash(&prev, body) != stored_hash {
                return broken(seq, "the entry's content does not match its hash".into(), checked);
            }
            prev.copy_from_slice(stored_hash);
        }
        if let Some((head_seq, head_hash)) = head {
            if head_seq > expected_seq {
                return broken(
                    expected_seq + 1,
                    format!("entries {} to {head_seq} are missing", expected_seq + 1),
                    checked,
                );
            }
            if head_seq == expected_seq && head_hash != prev {
                return broken(head_seq, "the entry is not the one last written".into(), checked);
            }
        }
        Ok(AuditCheck { checked, broken: None })
    }

    /// Removes the entries older than `cutoff` (ms); the newest removed becomes the anchor the
    /// chain is checked from. Returns how many went.
    pub fn prune_audit(&self, cutoff: i64) -> StoreResult<u64> {
        let txn = self.db.begin_write()?;
        let removed = {
            let mut log = txn.open_table(AUDIT_LOG)?;
            let mut last: Option<(u64, [u8; 32])> = None;
            for row in log.iter()? {
                let (key, value) = row?;
                let item = parse_item(value.value())?;
                if item.record.at >= cutoff {
                    break;
                }
                let mut hash = [0u8; 32];
                hash.copy_from_slice(&value.value()[..32]);
                last = Some((key.value(), hash));
            }
            match last {
                None => 0,
                Some((seq, hash)) => {
                    let first = log.first()?.map(|(k, _)| k.value()).unwrap_or(seq);
                    log.retain_in(..=seq, |_, _| false)?;
                    txn.open_table(META)?
                        .insert(ANCHOR_KEY, point_bytes(seq, &hash).as_slice())?;
                    seq - first + 1
                }
            }
        };
        txn.commit()?;
        Ok(removed)
    }

    /// The pseudonym of `user_id` in the log, if the account has appeared in it (and its key
    /// was not erased).
    pub fn audit_pseudonym(&self, user_id: Uuid) -> StoreResult<Option<String>> {
        let txn = self.db.begin_read()?;
        let keys = txn.open_table(AUDIT_KEYS)?;
        let key = keys.get(user_id.as_u128())?;
        Ok(key.map(|k| pseudonym(k.value(), user_id)))
    }

    /// The account behind `pseudonym`, while its key exists.
    pub fn audit_account(&self, pseudonym: &str) -> StoreResult<Option<Uuid>> {
        let txn = self.db.begin_read()?;
        let index = txn.open_table(AUDIT_PSEUDONYMS)?;
        let id = index.get(pseudonym)?;
        Ok(id.map(|v| Uuid::from_u128(v.value())))
    }

    /// Forgets which account the pseudonym of `user_id` stood for (erasing the account): its
    /// entries stay, and so does the chain.
    pub fn erase_audit_key(&self, user_id: Uuid) -> StoreResult<bool> {
        let txn = self.db.begin_write()?;
        let erased = {
            let mut keys = txn.open_table(AUDIT_KEYS)?;
            let key = keys.remove(user_id.as_u128())?.map(|k| k.value().to_vec());
            match key {
                Some(key) => {
                    txn.open_table(AUDIT_PSEUDONYMS)?
                        .remove(pseudonym(&key, user_id).as_str())?;
                    true
                }
                None => false,
            }
        };
        txn.commit()?;
        Ok(erased)
    }
}

/// Which stored entries a filter keeps; `None` from [`Matcher::new`] when none can match (an
/// account that never appeared in the log).
struct Matcher<'a> {
    filter: &'a AuditFilter,
    pseudonym: Option<String>,
}

impl<'a> Matcher<'a> {
    fn new(txn: &redb::ReadTransaction, filter: &'a AuditFilter) -> StoreResult<Option<Matcher<'a>>> {
        let pseudonym = match filter.user {
            None => None,
            Some(user) => {
                let keys = txn.open_table(AUDIT_KEYS)?;
                let key = keys.get(user.as_u128())?;
                match key {
                    Some(key) => Some(pseudonym(key.value(), user)),
                    None => return Ok(None),
                }
            }
        };
        Ok(Some(Matcher { filter, pseudonym }))
    }

    fn matches(&self, r: &AuditRecord) -> bool {
        let f = self.filter;
        f.action.as_ref().is_none_or(|a| *a == r.action)
            && f.outcome.as_ref().is_none_or(|o| *o == r.outcome)
            && f.since.is_none_or(|since| r.at >= since)
            && f.until.is_none_or(|until| r.at < until)
            && self
                .pseudonym
                .as_ref()
                .is_none_or(|p| r.actor.as_ref() == Some(p) || r.subject.as_ref() == Some(p))
    }
}

/// The pseudonym of `user_id`, making the account's key on first sight.
fn pseudonym_in(txn: &WriteTransaction, user_id: Uuid) -> StoreResult<String> {
    let mut keys = txn.open_table(AUDIT_KEYS)?;
    let existing = keys.get(user_id.as_u128())?.map(|k| k.value().to_vec());
    if let Some(key) = existing {
        return Ok(pseudonym(&key, user_id));
    }
    let key: [u8; 32] = rand::random();
    keys.insert(user_id.as_u128(), key.as_slice())?;
    let name = pseudonym(&key, user_id);
    txn.open_table(AUDIT_PSEUDONYMS)?
        .insert(name.as_str(), user_id.as_u128())?;
    Ok(name)
}

fn pseudonym(key: &[u8], user_id: Uuid) -> String {
    let digest = Sha256::new()
        .chain_update(b"enclave audit pseudonym")
        .chain_update(key)
        .chain_update(user_id.as_bytes())
        .finalize();
    format!("p-{}", &hex::encode(digest)[..24])
}

fn chain_hash(prev: &[u8; 32], body: &[u8]) -> [u8; 32] {
    Sha256::new().chain_update(prev).chain_update(body).finalize().into()
}

fn parse_item(value: &[u8]) -> StoreResult<AuditItem> {
    if value.len() < 32 {
        return Err(StoreError::NotFound);
    }
    let (hash, body) = value.split_at(32);
    Ok(AuditItem {
        record: decode(body)?,
        hash: hex::encode(hash),
    })
}

fn point_bytes(seq: u64, hash: &[u8; 32]) -> Vec<u8> {
    let mut bytes = seq.to_le_bytes().to_vec();
    bytes.extend_from_slice(hash);
    bytes
}

fn read_point(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> StoreResult<Option<(u64, [u8; 32])>> {
    let Some(value) = meta.get(key)? else {
        return Ok(None);
    };
    let bytes = value.value();
    if bytes.len() != 40 {
        return Ok(None);
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&bytes[..8]);
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&bytes[8..]);
    Ok(Some((u64::from_le_bytes(seq), hash)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Store::open(&dir.path().join("enclave.redb")).expect("the store opens");
        (dir, store)
    }

    fn entry(at: i64, action: &str, actor: Option<Uuid>) -> NewAuditEntry {
        NewAuditEntry {
            at,
            action: action.into(),
            outcome: "ok".into(),
            actor,
            subject: None,
            resource: None,
            ip: Some("192.0.2.1".into()),
            user_agent: None,
            details: serde_json::json!({}),
        }
    }

    /// Rewrites entry `seq`'s stored bytes with `edit` applied to its JSON body.
    fn tamper(store: &Store, seq: u64, edit: impl FnOnce(&mut serde_json::Value)) {
        let txn = store.db.begin_write().expect("a write");
        {
            let mut log = txn.open_table(AUDIT_LOG).expect("the log");
            let value = log.get(seq).expect("read").expect("the entry").value().to_vec();
            let mut body: serde_json::Value = serde_json::from_slice(&value[32..]).expect("json");
            edit(&mut body);
            let mut new = value[..32].to_vec();
            new.extend_from_slice(&serde_json::to_vec(&body).expect("json"));
            log.insert(seq, new.as_slice()).expect("write");
        }
        txn.commit().expect("commit");
    }

    #[test]
    fn an_untouched_log_verifies_and_numbers_entries_without_gaps() {
        let (_dir, store) = store();
        assert_eq!(
            store.verify_audit().unwrap(),
            AuditCheck {
                checked: 0,
                broken: None
            }
        );
        let user = Uuid::now_v7();
        store
            .append_audit(&[entry(1, "auth.login", Some(user)), entry(2, "auth.logout", Some(user))])
            .unwrap();
        assert_eq!(store.append_audit(&[entry(3, "auth.login", None)]).unwrap(), 3);
        assert_eq!(
            store.verify_audit().unwrap(),
            AuditCheck {
                checked: 3,
                broken: None
            }
        );
        let (page, next) = store.audit_page(&AuditFilter::default(), None, 10).unwrap();
        assert_eq!(page.iter().map(|i| i.record.seq).collect::<Vec<_>>(), vec![3, 2, 1]);
        assert_eq!(next, None);
        assert_eq!(page[2].record.prev_hash, hex::encode(GENESIS));
        assert_eq!(page[1].record.prev_hash, page[2].hash);
    }

    #[test]
    fn editing_an_entry_breaks_the_chain_at_that_entry() {
        let (_dir, store) = store();
        for at in 1..=5 {
            store.append_audit(&[entry(at, "auth.login", None)]).unwrap();
        }
        tamper(&store, 3, |body| body["ip"] = "203.0.113.9".into());
        let check = store.verify_audit().unwrap();
        assert_eq!(check.broken.as_ref().map(|b| b.0), Some(3), "{check:?}");
        assert!(check.broken.unwrap().1.contains("does not match its hash"));
    }

    #[test]
    fn removing_entries_is_seen_in_the_middle_and_at_the_end() {
        let (_dir, store) = store();
        store
            .append_audit(&(1..=5).map(|at| entry(at, "auth.login", None)).collect::<Vec<_>>())
            .unwrap();
        let remove = |seq: u64| {
            let txn = store.db.begin_write().unwrap();
            txn.open_table(AUDIT_LOG).unwrap().remove(seq).unwrap();
            txn.commit().unwrap();
        };
        remove(5);
        assert_eq!(store.verify_audit().unwrap().broken.map(|b| b.0), Some(5));
        remove(2);
        assert_eq!(store.verify_audit().unwrap().broken.map(|b| b.0), Some(2));
    }

    #[test]
    fn pruning_keeps_the_rest_of_the_chain_verifiable() {
        let (_dir, store) = store();
        store
            .append_audit(
                &(1..=6)
                    .map(|at| entry(at * 1000, "auth.login", None))
                    .collect::<Vec<_>>(),
            )
            .unwrap();
        assert_eq!(store.prune_audit(3500).unwrap(), 3);
        assert_eq!(
            store.verify_audit().unwrap(),
            AuditCheck {
                checked: 3,
                broken: None
            }
        );
        store.append_audit(&[entry(7000, "auth.login", None)]).unwrap();
        assert_eq!(
            store.verify_audit().unwrap(),
            AuditCheck {
                checked: 4,
                broken: None
            }
        );
        let (page, _) = store.audit_page(&AuditFilter::default(), None, 10).unwrap();
        assert_eq!(page.iter().map(|i| i.record.seq).collect::<Vec<_>>(), vec![7, 6, 5, 4]);
    }

    #[test]
    fn erasing_a_key_unlinks_the_pseudonym_and_keeps_the_chain() {
        let (_dir, store) = store();
        let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
        store
            .append_audit(&[entry(1, "auth.login", Some(alice)), entry(2, "auth.login", Some(bob))])
            .unwrap();
        let alias = store.audit_pseudonym(alice).unwrap().expect("alice has a pseudonym");
        assert_ne!(Some(alias.clone()), store.audit_pseudonym(bob).unwrap());
        assert_eq!(store.audit_account(&alias).unwrap(), Some(alice));
        let only_alice = AuditFilter {
            user: Some(alice),
            ..AuditFilter::default()
        };
        assert_eq!(store.audit_page(&only_alice, None, 10).unwrap().0.len(), 1);

        assert!(store.erase_audit_key(alice).unwrap());
        assert_eq!(store.audit_account(&alias).unwrap(), None);
        assert_eq!(store.audit_pseudonym(alice).unwrap(), None);
        assert!(store.audit_page(&only_alice, None, 10).unwrap().0.is_empty());
        let (page, _) = store.audit_page(&AuditFilter::default(), None, 10).unwrap();
        assert_eq!(
            page[1].record.actor.as_deref(),
            Some(alias.as_str()),
            "the entry keeps its pseudonym"
        );
        assert_eq!(store.verify_audit().unwrap().broken, None);
    }

    #[test]
    fn pages_and_slices_follow_the_filter() {
        let (_dir, store) = store();
        let entries: Vec<_> = (1..=9)
            .map(|at| entry(at, if at % 3 == 0 { "auth.logout" } else { "auth.login" }, None))
            .collect();
        store.append_audit(&entries).unwrap();
        let logins = AuditFilter {
            action: Some("auth.login".into()),
            ..AuditFilter::default()
        };
        let (first, next) = store.audit_page(&logins, None, 4).unwrap();
        assert_eq!(first.iter().map(|i| i.record.seq).collect::<Vec<_>>(), vec![8, 7, 5, 4]);
        let (second, next) = store.audit_page(&logins, next, 4).unwrap();
        assert_eq!(second.iter().map(|i| i.record.seq).collect::<Vec<_>>(), vec![2, 1]);
        assert_eq!(next, None);
        let window = AuditFilter {
            since: Some(3),
            until: Some(7),
            ..AuditFilter::default()
        };
        let slice = store.audit_slice(&window, 0, 100).unwrap();
        assert_eq!(slice.iter().map(|i| i.record.seq).collect::<Vec<_>>(), vec![3, 4, 5, 6]);
        assert_eq!(store.audit_slice(&window, 4, 1).unwrap()[0].record.seq, 5);
    }
}
