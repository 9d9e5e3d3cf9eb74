//! Extractors that turn every bad input into an [`ApiError`] instead of axum's plain-text
//! rejections: JSON bodies, query strings, path ids, and the bearer token.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use std::net::IpAddr;

use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use enclave_protocol::ErrorCode;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::error::ApiError;
use super::AppState;
use crate::auth::roles::{allows, Permission};
use crate::auth::Caller;

/// A JSON body; malformed or oversize bodies become JSON errors.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => ApiError::validation(format!("invalid request body: {}", e.body_text())),
        JsonRejection::JsonSyntaxError(_) => ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::MalformedJson,
            "the request body is not valid JSON",
        ),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "send the body as JSON with Content-Type: application/json",
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            "the request body is too large",
        ),
        other => ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, other.body_text()),
    }
}

/// A query string (`?limit=50&cursor=...`); a value of the wrong type is a 422 JSON error
/// naming it.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| ApiQuery(value))
            .map_err(|rejection| ApiError::validation(format!("invalid query string: {}", rejection.body_text())))
    }
}

/// A UUID taken from the path (`/conversations/{id}`); a malformed id is a 404.
pub struct IdPath(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::not_found("resource"))?;
        Uuid::parse_str(&raw)
            .map(IdPath)
            .map_err(|_| ApiError::not_found("resource"))
    }
}

/// The caller, authenticated by `Authorization: Bearer <access token>`.
pub struct Authenticated(pub Caller);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // A layer in front (the request budget) may have authenticated the request already.
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(Authenticated(caller.clone()));
        }
        let token = bearer_token(&parts.headers)?;
        Ok(Authenticated(state.auth.authenticate(token)?))
    }
}

/// The token of `Authorization: Bearer <token>` (401 without one).
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthenticated,
                "send Authorization: Bearer <access token>",
            )
        })?;
    header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::InvalidToken,
                "the Authorization header is not a bearer token",
            )
        })
}

impl Authenticated {
    /// Fails with 403 unless the caller's role grants `permission`.
    /// An account whose role requires 2FA and that has none gets only its own account's
    /// routes (to set it up): 403 `TOTP_SETUP_REQUIRED` for the rest.
    pub fn require(&self, permission: Permission) -> Result<&Caller, ApiError> {
        if self.0.totp_setup_pending && permission != Permission::OwnAccount {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::TotpSetupRequired,
                "your role requires two-factor authentication: set it up first (POST /api/v1/auth/2fa/setup)",
            ));
        }
        if allows(self.0.role, permission) {
            Ok(&self.0)
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "your role does not allow this",
            ))
        }
    }
}

/// Who is asking, as the server sees them: the client's address and the `User-Agent` header
/// (cut to [`USER_AGENT_MAX`] characters). Never fails.
///
/// The address is the socket's peer, unless that peer is one of the configured trusted
/// proxies: then `X-Forwarded-For` is read from its right end (the entry the nearest proxy
/// added), skipping further trusted proxies, and the first other address is the client. A
/// client cannot spoof its address by sending the header itself: its entries lie to the left of
/// the ones the trusted proxies append.
pub struct ClientInfo(pub crate::store::SessionClient);

/// The most characters of a `User-Agent` kept.
const USER_AGENT_MAX: usize = 200;

impl FromRequestParts<AppState> for ClientInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip());
        let ip = peer.map(|peer| client_address(peer, &parts.headers, &state.config.trusted_proxies));
        let user_agent = parts
            .headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(USER_AGENT_MAX).collect::<String>())
            .filter(|v| !v.is_empty());
        Ok(ClientInfo(crate::store::SessionClient { user_agent, ip }))
    }
}

/// Whether the client's connection is HTTPS. Enclave itself listens on plain HTTP, so that is
/// when a trusted proxy (which terminates TLS) says so in `X-Forwarded-Proto` (its last entry,
/// the one the nearest proxy set); the header from any other peer is ignored.
pub struct Https(pub bool);

impl FromRequestParts<AppState> for Https {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let trusted_peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .is_some_and(|info| {
                state
                    .config
                    .trusted_proxies
                    .iter()
                    .any(|net| net.contains(&info.0.ip()))
            });
        let https = trusted_peer
            && parts
                .headers
                .get_all("x-forwarded-proto")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .next_back()
                .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"));
        Ok(Https(https))
    }
}

/// The client's address behind `peer` (see [`ClientInfo`]).
fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    let mut client = peer;
    for entry in forwarded.iter().rev() {
        match entry.parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            // A malformed entry: what lies beyond it cannot be trusted either.
            Err(_) => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(forwarded: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in forwarded {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        headers
    }

    fn nets(list: &[&str]) -> Vec<ipnet::IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_header_is_ignored_unless_the_peer_is_a_trusted_proxy() {
        let h = headers(&["203.0.113.9"]);
        assert_eq!(client_address(ip("198.51.100.1"), &h, &[]), ip("198.51.100.1"));
        assert_eq!(
            client_address(ip("198.51.100.1"), &h, &nets(&["10.0.0.0/8"])),
            ip("198.51.100.1")
        );
        assert_eq!(
            client_address(ip("10.1.2.3"), &h, &nets(&["10.0.0.0/8"])),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn the_client_is_the_rightmost_address_that_is_not_a_trusted_proxy() {
        // The client claims 1.2.3.4; proxy 10.0.0.5 appended the real client, 10.0.0.6 appended 10.0.0.5.
        let h = headers(&["1.2.3.4, 203.0.113.9", "10.0.0.5"]);
        assert_eq!(
            client_address(ip("10.0.0.6"), &h, &nets(&["10.0.0.0/8"])),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn a_malformed_entry_stops_the_walk_and_no_header_means_the_proxy_itself() {
        let h = headers(&["1.2.3.4, junk, 10.0.0.7"]);
        assert_eq!(
            client_address(ip("10.0.0.6"), &h, &nets(&["10.0.0.0/8"])),
            ip("10.0.0.7")
        );
        assert_eq!(
            client_address(ip("10.0.0.6"), &HeaderMap::new(), &nets(&["10.0.0.0/8"])),
            ip("10.0.0.6")
        );
    }
}
