//! `/api/v1/auth/*`: register, login, refresh, logout, password change, me.

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use enclave_protocol::{
    AuditAction, ErrorCode, LoginRequest, PasswordChangeRequest, PasswordResetRequest, RecoveryCodes, RefreshRequest,
    RegisterRequest, Session, SessionList, Tokens, TotpDisableRequest, TotpSetup, TotpVerifyRequest, User,
};

use super::audit::audited;
use super::error::ApiError;
use super::extract::{ApiJson, Authenticated, ClientInfo, Https, IdPath};
use super::{rfc3339, AppState};
use crate::audit::AuditEvent;
use crate::auth::roles::Permission;
use crate::auth::AuthError;
use crate::auth::{Registration, SecondFactor, TokenPair};
use crate::store::{SessionInfo, UserRecord};

/// An account as the API shows it (never the password hash).
pub(super) fn user_view(u: UserRecord, totp_setup_required: bool) -> User {
    User {
        id: u.id,
        email: u.email,
        username: u.username,
        role: u.role,
        created_at: rfc3339(u.created_at),
        totp_enabled: u.totp.is_some_and(|t| t.enabled),
        totp_setup_required,
    }
}

/// `POST /auth/register`
pub async fn register(
    State(state): State<AppState>,
    ClientInfo(client): ClientInfo,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let registration = Registration {
        email: body.email,
        username: body.username,
        password: body.password,
    };
    let registered = state
        .auth
        .register(registration, body.invite.as_deref(), client.ip)
        .await;
    let mut event = AuditEvent::new(AuditAction::Register).from_client(&client);
    if let Ok(user) = &registered {
        event = event.by(user.id).with(serde_json::json!({ "role": user.role }));
    }
    let user = audited(&state, event, registered)?;
    let pending = state.auth.needs_totp_setup(&user);
    Ok((StatusCode::CREATED, Json(user_view(user, pending))))
}

/// The cookie that carries the web UI's refresh token.
const REFRESH_COOKIE: &str = "enclave_refresh";

/// `Set-Cookie` for `token` (or, with `None`, one that clears the cookie): HttpOnly, sent only
/// to the auth endpoints, never cross-site, and `Secure` (HTTPS only) when the request came
/// over HTTPS (on plain HTTP, as on localhost, a Secure cookie would never come back).
fn refresh_cookie(token: Option<&str>, max_age: std::time::Duration, https: bool) -> HeaderValue {
    let secure = if https { "; Secure" } else { "" };
    let value = match token {
        Some(token) => format!(
            "{REFRESH_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/api/v1/auth; Max-Age={}{secure}",
            max_age.as_secs()
        ),
        None => format!("{REFRESH_COOKIE}=; HttpOnly; SameSite=Strict; Path=/api/v1/auth; Max-Age=0{secure}"),
    };
    // Tokens are URL-safe base64 or hex: always a valid header value.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The refresh token of the request's cookie.
fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == REFRESH_COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|v| !v.is_empty())
}

/// The token response; with `in_cookie` the refresh token goes into the cookie, not the body.
/// Never cached (`Cache-Control: no-store`): it carries credentials.
fn token_response(state: &AppState, tokens: TokenPair, in_cookie: bool, https: bool) -> Response {
    let mut body = Tokens {
        access_token: tokens.access_token,
        refresh_token: Some(tokens.refresh_token),
        token_type: tokens.token_type.to_owned(),
        expires_in: tokens.expires_in,
    };
    let no_store = (CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if !in_cookie {
        return ([no_store], Json(body)).into_response();
    }
    let cookie = refresh_cookie(
        body.refresh_token.take().as_deref(),
        state.config.accounts.refresh_token_ttl,
        https,
    );
    ([(SET_COOKIE, cookie), no_store], Json(body)).into_response()
}

/// `POST /auth/login` with email or username.
pub async fn login(
    State(state): State<AppState>,
    ClientInfo(client): ClientInfo,
    Https(https): Https,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let login = body
        .email
        .or(body.username)
        .filter(|l| !l.trim().is_empty())
        .ok_or_else(|| ApiError::validation("send \"email\" or \"username\" with the password"))?;
    let second_factor = second_factor(body.totp_code, body.recovery_code, "totp_code")?;
    let attempt = state
        .auth
        .login(&login, body.password, second_factor, client.clone())
        .await;
    let event = AuditEvent::new(AuditAction::Login).from_client(&client);
    let event = match &attempt {
        Ok((user, _)) => event.by(user.id),
        // The name is not recorded (people type passwords into it); its account, if any, is.
        Err(_) => match state.auth.account_id(&login)? {
            Some(id) => event.by(id),
            None => event.with(serde_json::json!({ "account": "unknown" })),
        },
    };
    let (_, tokens) = audited(&state, event, attempt)?;
    Ok(token_response(&state, tokens, body.cookie, https))
}

/// The second factor a body brings: a current code (in the field `code_field`) or a recovery
/// code, not both.
fn second_factor(
    code: Option<String>,
    recovery_code: Option<String>,
    code_field: &str,
) -> Result<SecondFactor, ApiError> {
    match (code, recovery_code) {
        (Some(_), Some(_)) => Err(ApiError::validation(format!(
            "send \"{code_field}\" or \"recovery_code\", not both"
        ))),
        (Some(code), None) => Ok(SecondFactor::TotpCode(code)),
        (None, Some(code)) => Ok(SecondFactor::RecoveryCode(code)),
        (None, None) => Ok(SecondFactor::Missing),
    }
}

/// The refresh token of the body, else of the cookie, and whether it came from the cookie.
/// Neither is a 401 `NOT_SIGNED_IN`: there is no session to act on (a browser's first visit).
fn presented_token(body: RefreshRequest, headers: &HeaderMap) -> Result<(String, bool), ApiError> {
    match body.refresh_token.filter(|t| !t.is_empty()) {
        Some(token) => Ok((token, false)),
        None => cookie_token(headers).map(|token| (token, true)).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::NotSignedIn,
                "no session: send \"refresh_token\" or sign in",
            )
        }),
    }
}

/// `POST /auth/refresh`: rotates the refresh token.
pub async fn refresh(
    State(state): State<AppState>,
    Https(https): Https,
    ClientInfo(client): ClientInfo,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<Response, ApiError> {
    let (token, from_cookie) = presented_token(body, &headers)?;
    let refreshed = state.auth.refresh(&token);
    if let Err(AuthError::TokenReused { user_id }) = &refreshed {
        // Someone replayed a rotated token: a stolen token or a confused client.
        let event = AuditEvent::new(AuditAction::RefreshReuse)
            .about(*user_id)
            .from_client(&client);
        state.audit.record(event.failed(ErrorCode::TokenReused));
    }
    let tokens = refreshed?;
    Ok(token_response(&state, tokens, from_cookie, https))
}

/// `POST /auth/logout`: ends the session of the refresh token (and clears the cookie).
pub async fn logout(
    State(state): State<AppState>,
    Https(https): Https,
    ClientInfo(client): ClientInfo,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<Response, ApiError> {
    let (token, _) = presented_token(body, &headers)?;
    let user_id = state.auth.logout(&token)?;
    state
        .audit
        .record(AuditEvent::new(AuditAction::Logout).by(user_id).from_client(&client));
    let clear = refresh_cookie(None, std::time::Duration::ZERO, https);
    Ok((StatusCode::NO_CONTENT, [(SET_COOKIE, clear)]).into_response())
}

/// `PUT /auth/password/change`: ends every session of the user.
pub async fn change_password(
    State(state): State<AppState>,
    caller: Authenticated,
    ClientInfo(client): ClientInfo,
    ApiJson(body): ApiJson<PasswordChangeRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let user_id = caller.require(Permission::OwnAccount)?.user_id;
    let changed = state
        .auth
        .change_password(user_id, body.current_password, body.new_password, client.ip)
        .await;
    let event = AuditEvent::new(AuditAction::PasswordChange)
        .by(user_id)
        .from_client(&client);
    audited(&state, event, changed)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /auth/sessions`: the caller's live sessions, oldest first.
pub async fn sessions(State(state): State<AppState>, caller: Authenticated) -> Result<impl IntoResponse, ApiError> {
    let current = caller.require(Permission::OwnAccount)?.session_id;
    let sessions = state
        .auth
        .sessions(caller.0.user_id)?
        .into_iter()
        .map(|s| session_view(s, Some(current)))
        .collect();
    Ok(Json(SessionList { sessions }))
}

/// A session as the API shows it; `current` when it is the caller's own.
pub(super) fn session_view(s: SessionInfo, current: Option<uuid::Uuid>) -> Session {
    Session {
        id: s.id,
        created_at: rfc3339(s.created_at),
        last_seen_at: rfc3339(s.last_seen),
        user_agent: s.client.user_agent,
        ip: s.client.ip.map(|ip| ip.to_string()),
        current: Some(s.id) == current,
    }
}

/// `Cache-Control: no-store`, for answers that carry secrets.
pub(super) fn no_store() -> [(axum::http::HeaderName, HeaderValue); 1] {
    [(CACHE_CONTROL, HeaderValue::from_static("no-store"))]
}

/// `POST /auth/password/reset`: sets a new password through an administrator's one-time link
/// (no sign-in); every session of the account ends.
pub async fn reset_password(
    State(state): State<AppState>,
    ClientInfo(client): ClientInfo,
    ApiJson(body): ApiJson<PasswordResetRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let reset = state
        .auth
        .reset_password(&body.token, body.new_password, client.ip)
        .await;
    let mut event = AuditEvent::new(AuditAction::PasswordReset).from_client(&client);
    if let Ok(user_id) = &reset {
        event = event.by(*user_id);
    }
    audited(&state, event, reset)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /auth/sessions/{id}`: ends one of the caller's sessions (the current one too).
pub async fn end_session(
    State(state): State<AppState>,
    caller: Authenticated,
    ClientInfo(client): ClientInfo,
    IdPath(id): IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let user_id = caller.require(Permission::OwnAccount)?.user_id;
    let event = AuditEvent::new(AuditAction::SessionEnd)
        .by(user_id)
        .on(format!("session/{id}"))
        .from_client(&client);
    audited(&state, event, state.auth.end_session(user_id, id))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /auth/me`
pub async fn me(State(state): State<AppState>, caller: Authenticated) -> Result<impl IntoResponse, ApiError> {
    let user = state.auth.user(caller.require(Permission::OwnAccount)?.user_id)?;
    let pending = state.auth.needs_totp_setup(&user);
    Ok(Json(user_view(user, pending)))
}

/// `POST /auth/2fa/setup`: a new authenticator secret with its URI and QR code (not in force
/// until confirmed). Never cached: it is a secret.
pub async fn totp_setup(State(state): State<AppState>, caller: Authenticated) -> Result<Response, ApiError> {
    let setup = state.auth.totp_setup(caller.require(Permission::OwnAccount)?.user_id)?;
    let body = TotpSetup {
        secret: setup.secret,
        otpauth_uri: setup.uri,
        qr_svg: setup.qr_svg,
    };
    Ok(([(CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(body)).into_response())
}

/// `POST /auth/2fa/verify`: confirms the new secret with a code; 2FA is on and the recovery
/// codes come back, this once.
pub async fn totp_verify(
    State(state): State<AppState>,
    caller: Authenticated,
    ClientInfo(client): ClientInfo,
    ApiJson(body): ApiJson<TotpVerifyRequest>,
) -> Result<Response, ApiError> {
    let user_id = caller.require(Permission::OwnAccount)?.user_id;
    let event = AuditEvent::new(AuditAction::TotpEnable)
        .by(user_id)
        .from_client(&client);
    let recovery_codes = audited(&state, event, state.auth.totp_enable(user_id, &body.code, client.ip))?;
    let no_store = [(CACHE_CONTROL, HeaderValue::from_static("no-store"))];
    Ok((no_store, Json(RecoveryCodes { recovery_codes })).into_response())
}

/// `POST /auth/2fa/disable`: with the password and a current or recovery code.
pub async fn totp_disable(
    State(state): State<AppState>,
    caller: Authenticated,
    ClientInfo(client): ClientInfo,
    ApiJson(body): ApiJson<TotpDisableRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let factor = second_factor(body.code, body.recovery_code, "code")?;
    let user_id = caller.require(Permission::OwnAccount)?.user_id;
    let disabled = state.auth.totp_disable(user_id, body.password, factor, client.ip).await;
    let event = AuditEvent::new(AuditAction::TotpDisable)
        .by(user_id)
        .from_client(&client);
    audited(&state, event, disabled)?;
    Ok(StatusCode::NO_CONTENT)
}
