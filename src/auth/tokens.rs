//! Access tokens (HS256 JWT) and opaque refresh tokens.

use std::time::Duration;

use base64::Engine;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::AuthError;
use crate::store::{RefreshTokenHash, UserRole};

/// Claims carried by an access token.
#[derive(Debug, Serialize, Deserialize)]
pub struct AccessClaims {
    /// User id.
    pub sub: String,
    /// Role when issued (for clients to read; the server reads the role from the store).
    pub role: UserRole,
    /// The session (refresh-token family) the token belongs to; it dies with the session.
    /// Absent in tokens of older versions, which are then refused.
    #[serde(default)]
    pub sid: String,
    /// Issued at (seconds).
    pub iat: u64,
    /// Expires at (seconds).
    pub exp: u64,
    /// Unique token id.
    pub jti: String,
}

/// Signing and verification keys.
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Keys {
    /// Keys for a shared secret.
    pub fn new(secret: &[u8]) -> Keys {
        let mut validation = Validation::new(Algorithm::HS256);
        // Issuer and verifier are the same process: no clock skew to allow for.
        validation.leeway = 0;
        Keys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// A signed access token for a user's session.
    pub fn issue_access(
        &self,
        user_id: Uuid,
        role: UserRole,
        session_id: Uuid,
        ttl: Duration,
    ) -> Result<String, AuthError> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = AccessClaims {
            sub: user_id.to_string(),
            role,
            sid: session_id.to_string(),
            iat: now,
            exp: now + ttl.as_secs(),
            jti: Uuid::new_v4().to_string(),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(|_| AuthError::Hashing)
    }

    /// The claims of a valid token.
    pub fn verify_access(&self, token: &str) -> Result<AccessClaims, AuthError> {
        decode::<AccessClaims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::TokenExpired,
                _ => AuthError::InvalidToken,
            })
    }
}

/// A fresh secret token and its hash: 256 random bits, URL-safe, stored only as the hash.
/// Refresh tokens, invitation links and password reset links are all such tokens.
pub fn new_secret_token() -> (String, RefreshTokenHash) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_secret_token(&token);
    (token, hash)
}

/// The stored form of a secret token (SHA-256).
pub fn hash_secret_token(token: &str) -> RefreshTokenHash {
    Sha256::digest(token.as_bytes()).into()
}
