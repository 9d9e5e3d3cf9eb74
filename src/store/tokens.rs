//! Refresh tokens: stored hashed, rotated on use, grouped in families so that reuse of a
//! rotated token revokes every token descended from the same login. A family is a session:
//! its id goes into the session's access tokens, which die with it.

use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::schema::*;
use super::{decode, encode, new_id, now_ms, Store, StoreResult};

/// SHA-256 of a refresh token; the token itself is never stored.
pub type RefreshTokenHash = [u8; 32];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum TokenState {
    /// May be exchanged once.
    Active,
    /// Already exchanged for a newer token; presenting it again means it leaked.
    Rotated,
}

#[derive(Debug, Serialize, Deserialize)]
struct TokenRecord {
    user_id: Uuid,
    family_id: Uuid,
    state: TokenState,
    created_at: i64,
    expires_at: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct FamilyRecord {
    user_id: Uuid,
    created_at: i64,
    revoked: bool,
    /// The client that logged in (absent in records of older versions).
    #[serde(default)]
    user_agent: Option<String>,
    /// Its address.
    #[serde(default)]
    ip: Option<std::net::IpAddr>,
    /// The login or the last refresh, ms (0 in records of older versions: the login).
    #[serde(default)]
    last_seen: i64,
}

/// Who started a session, as the server saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionClient {
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
    /// The peer's address.
    pub ip: Option<std::net::IpAddr>,
}

/// A live session as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session (token family) id.
    pub id: Uuid,
    /// Login time, ms.
    pub created_at: i64,
    /// The login or the last token refresh, ms.
    pub last_seen: i64,
    /// Who logged in.
    pub client: SessionClient,
}

/// Whether a session (a token family) may still be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionStatus {
    /// Whose session it is.
    pub user_id: Uuid,
    /// Ended (logout, password change, reuse of a rotated token).
    pub revoked: bool,
    /// When it started (the login), ms since the epoch.
    pub started_at: i64,
}

/// What happened when a refresh token was presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The token was valid; it is now rotated and the new one is stored.
    Rotated {
        /// The token's owner.
        user_id: Uuid,
        /// The session (token family) it belongs to.
        session_id: Uuid,
    },
    /// No such token.
    Unknown,
    /// The token (or its family) expired or was revoked (logout, password change).
    Revoked,
    /// An already rotated token came back: the whole family is now revoked.
    ReuseDetected {
        /// The owner of the compromised family.
        user_id: Uuid,
        /// The revoked session.
        session_id: Uuid,
    },
}

impl Store {
    /// Stores the first refresh token of a new login (a new family); returns the session id.
    pub fn insert_refresh_token(
        &self,
        user_id: Uuid,
        hash: &RefreshTokenHash,
        expires_at: i64,
        client: SessionClient,
    ) -> StoreResult<Uuid> {
        let txn = self.db.begin_write()?;
        let family_id = new_id();
        {
            let family = FamilyRecord {
                user_id,
                created_at: now_ms(),
                revoked: false,
                user_agent: client.user_agent,
                ip: client.ip,
                last_seen: now_ms(),
            };
            txn.open_table(TOKEN_FAMILIES)?
                .insert(family_id.as_u128(), encode(&family)?.as_slice())?;
            txn.open_table(FAMILIES_BY_USER)?
                .insert((user_id.as_u128(), family_id.as_u128()), ())?;
            let token = TokenRecord {
                user_id,
                family_id,
                state: TokenState::Active,
                created_at: now_ms(),
                expires_at,
            };
            txn.open_table(REFRESH_TOKENS)?
                .insert(hash.as_slice(), encode(&token)?.as_slice())?;
        }
        txn.commit()?;
        Ok(family_id)
    }

    /// The state of session `id` (a token family), if it exists.
    pub fn session_status(&self, id: Uuid) -> StoreResult<Option<SessionStatus>> {
        let txn = self.db.begin_read()?;
        let families = txn.open_table(TOKEN_FAMILIES)?;
        Ok(match families.get(id.as_u128())? {
            Some(v) => {
                let family: FamilyRecord = decode(v.value())?;
                Some(SessionStatus {
                    user_id: family.user_id,
                    revoked: family.revoked,
                    started_at: family.created_at,
                })
            }
            None => None,
        })
    }

    /// Exchanges `old` for `new` in one transaction, detecting reuse of rotated tokens. A
    /// session older than `lifetime_ms` has ended; the new token never outlives it.
    pub fn rotate_refresh_token(
        &self,
        old: &RefreshTokenHash,
        new: &RefreshTokenHash,
        new_expires_at: i64,
        lifetime_ms: i64,
    ) -> StoreResult<RefreshOutcome> {
        let txn = self.db.begin_write()?;
        let outcome = {
            let mut tokens = txn.open_table(REFRESH_TOKENS)?;
            let mut families = txn.open_table(TOKEN_FAMILIES)?;
            let mut token: TokenRecord = match tokens.get(old.as_slice())? {
                Some(v) => decode(v.value())?,
                None => return Ok(RefreshOutcome::Unknown),
            };
            let mut family: FamilyRecord = match families.get(token.family_id.as_u128())? {
                Some(v) => decode(v.value())?,
                None => return Ok(RefreshOutcome::Unknown),
            };
            if family.revoked {
                RefreshOutcome::Revoked
            } else if token.state == TokenState::Rotated {
                family.revoked = true;
                families.insert(token.family_id.as_u128(), encode(&family)?.as_slice())?;
                RefreshOutcome::ReuseDetected {
                    user_id: token.user_id,
                    session_id: token.family_id,
                }
            } else if token.expires_at <= now_ms() || family.created_at.saturating_add(lifetime_ms) <= now_ms() {
                RefreshOutcome::Revoked
            } else {
                token.state = TokenState::Rotated;
                tokens.insert(old.as_slice(), encode(&token)?.as_slice())?;
                family.last_seen = now_ms();
                families.insert(token.family_id.as_u128(), encode(&family)?.as_slice())?;
                let next = TokenRecord {
                    user_id: token.user_id,
                    family_id: token.family_id,
                    state: TokenState::Active,
                    created_at: now_ms(),
                    expires_at: new_expires_at.min(family.created_at.saturating_add(lifetime_ms)),
                };
                tokens.insert(new.as_slice(), encode(&next)?.as_slice())?;
                RefreshOutcome::Rotated {
                    user_id: token.user_id,
                    session_id: token.family_id,
                }
            }
        };
        txn.commit()?;
        Ok(outcome)
    }

    /// Revokes the family of this token (logout). Returns the owner and the session, if the
    /// token was known.
    pub fn revoke_refresh_family(&self, hash: &RefreshTokenHash) -> StoreResult<Option<(Uuid, Uuid)>> {
        let txn = self.db.begin_write()?;
        let owner = {
            let tokens = txn.open_table(REFRESH_TOKENS)?;
            let mut families = txn.open_table(TOKEN_FAMILIES)?;
            let token: TokenRecord = match tokens.get(hash.as_slice())? {
                Some(v) => decode(v.value())?,
                None => return Ok(None),
            };
            let family = families
                .get(token.family_id.as_u128())?
                .map(|v| decode::<FamilyRecord>(v.value()))
                .transpose()?;
            if let Some(mut family) = family {
                family.revoked = true;
                families.insert(token.family_id.as_u128(), encode(&family)?.as_slice())?;
            }
            Some((token.user_id, token.family_id))
        };
        txn.commit()?;
        Ok(owner)
    }

    /// The sessions of `user_id` not ended and started after `started_after` (ms), oldest
    /// first.
    pub fn live_sessions(&self, user_id: Uuid, started_after: i64) -> StoreResult<Vec<SessionInfo>> {
        let txn = self.db.begin_read()?;
        let by_user = txn.open_table(FAMILIES_BY_USER)?;
        let families = txn.open_table(TOKEN_FAMILIES)?;
        let key = user_id.as_u128();
        let mut sessions = Vec::new();
        for entry in by_user.range((key, 0u128)..=(key, u128::MAX))? {
            let (k, _) = entry?;
            let family_id = k.value().1;
            let Some(value) = families.get(family_id)? else {
                continue;
            };
            let family: FamilyRecord = decode(value.value())?;
            if family.revoked || family.created_at <= started_after {
                continue;
            }
            sessions.push(SessionInfo {
                id: Uuid::from_u128(family_id),
                created_at: family.created_at,
                last_seen: family.last_seen.max(family.created_at),
                client: SessionClient {
                    user_agent: family.user_agent,
                    ip: family.ip,
                },
            });
        }
        Ok(sessions)
    }

    /// Ends session `id` of `user_id`; false when the user has no such live session.
    pub fn revoke_session(&self, user_id: Uuid, id: Uuid) -> StoreResult<bool> {
        let txn = self.db.begin_write()?;
        let ended = {
            let mut families = txn.open_table(TOKEN_FAMILIES)?;
            let family = families
                .get(id.as_u128())?
                .map(|v| decode::<FamilyRecord>(v.value()))
                .transpose()?;
            match family {
                Some(mut family) if family.user_id == user_id && !family.revoked => {
                    family.revoked = true;
                    families.insert(id.as_u128(), encode(&family)?.as_slice())?;
                    true
                }
                _ => false,
            }
        };
        txn.commit()?;
        Ok(ended)
    }

    /// Revokes every refresh token of a user (password change).
    pub fn revoke_all_refresh_tokens(&self, user_id: Uuid) -> StoreResult<()> {
        let txn = self.db.begin_write()?;
        {
            let by_user = txn.open_table(FAMILIES_BY_USER)?;
            let mut families = txn.open_table(TOKEN_FAMILIES)?;
            let key = user_id.as_u128();
            for entry in by_user.range((key, 0u128)..=(key, u128::MAX))? {
                let (k, _) = entry?;
                let family_id = k.value().1;
                let family = families
                    .get(family_id)?
                    .map(|v| decode::<FamilyRecord>(v.value()))
                    .transpose()?;
                if let Some(mut family) = family.filter(|f| !f.revoked) {
                    family.revoked = true;
                    families.insert(family_id, encode(&family)?.as_slice())?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }
}
