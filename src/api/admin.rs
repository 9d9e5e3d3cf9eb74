//! `/api/v1/admin/*`: accounts (list and search, create, role, disable / enable, unlock, 2FA
//! removal, signing out, sessions, password reset links), every user's documents, the
//! registration policy and invitations. Each route names its permission; the rules of who may
//! act on whom live in `auth`.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use enclave_protocol::{
    AdminSessionList, AdminUser, AdminUserCreate, AdminUserPage, AdminUserUpdate, AuditAction, DocumentListQuery,
    GrantLink, InviteList, InviteRequest, RegistrationSettings, SecuritySettings,
};
use serde::Deserialize;
use uuid::Uuid;

use super::audit::{audited, record_outcome};
use super::auth::{session_view, user_view};
use super::documents::document_page;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, Authenticated, ClientInfo, IdPath};
use super::{rfc3339, AppState};
use crate::audit::AuditEvent;
use crate::auth::admin::AccountChange;
use crate::auth::registration::DEFAULT_INVITE_LIFETIME;
use crate::auth::roles::Permission;
use crate::auth::Registration;
use crate::store::{Grant, GrantRecord, SessionClient, UserRecord};

/// The most accounts on one page.
const PAGE_MAX: usize = 200;

fn admin_user_view(state: &AppState, user: UserRecord) -> AdminUser {
    let now = crate::store::now_ms();
    let failures = user.login_failures;
    let pending = state.auth.needs_totp_setup(&user);
    AdminUser {
        disabled: user.disabled,
        locked_until: (failures.locked_until > now).then(|| rfc3339(failures.locked_until)),
        failed_logins: failures.count,
        user: user_view(user, pending),
    }
}

fn link_view(record: GrantRecord, token: Option<String>) -> GrantLink {
    let (role, path) = match &record.grant {
        Grant::Invite { role } => (Some(*role), token.as_ref().map(|t| format!("/register?invite={t}"))),
        Grant::PasswordReset { .. } => (None, token.as_ref().map(|t| format!("/reset-password?token={t}"))),
    };
    GrantLink {
        id: record.id,
        role,
        created_at: rfc3339(record.created_at),
        expires_at: rfc3339(record.expires_at),
        token,
        path,
    }
}

/// An administrator's action, from the request's client.
fn admin_event(action: AuditAction, actor: &crate::auth::Caller, client: &SessionClient) -> AuditEvent {
    AuditEvent::new(action).by(actor.user_id).from_client(client)
}

#[derive(Deserialize)]
pub struct UserListQuery {
    /// Part of an email or username.
    search: Option<String>,
    /// The id of the last account of the previous page.
    cursor: Option<String>,
    limit: Option<usize>,
}

/// `GET /admin/users?search=&cursor=&limit=`: accounts, oldest first.
pub async fn list_users(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiQuery(query): ApiQuery<UserListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Permission::ManageUsers)?;
    let limit = query.limit.unwrap_or(50);
    if limit == 0 || limit > PAGE_MAX {
        return Err(ApiError::validation(format!("limit must be 1 to {PAGE_MAX}")));
    }
    let after = match query.cursor.as_deref() {
        None | Some("") => None,
        Some(cursor) => {
            Some(Uuid::parse_str(cursor).map_err(|_| ApiError::validation("cursor is not one this server gave"))?)
        }
    };
    let search = query.search.as_deref().map(str::trim).filter(|s| !s.is_empty());
    // One more than asked says whether there is a next page.
    let mut users = state.auth.list_users(search, after, limit + 1)?;
    let next_cursor = if users.len() > limit {
        users.truncate(limit);
        users.last().map(|u| u.id.to_string())
    } else {
        None
    };
    Ok(Json(AdminUserPage {
        users: users.into_iter().map(|u| admin_user_view(&state, u)).collect(),
        next_cursor,
    }))
}

/// `POST /admin/users`
pub async fn create_user(
    State(state): State<AppState>,
    caller: Authenticated,
    ClientInfo(client): ClientInfo,
    ApiJson(body): ApiJson<AdminUserCreate>,
) -> Result<impl IntoResponse, ApiError> {
    let actor = caller.require(Permission::ManageUsers)?;
    let registration = Registration {
        email: body.email,
        username: body.username,
        password: body.password,
    };
    let created = state.auth.admin_create_user(actor, registration, body.role).await;
    let mut event = admin_event(AuditAction::UserCreate, actor, &client).with(serde_json::json!({ "role": body.role }));
    if let Ok(user) = &created {
        event = event.about(user.id);
    }
    let user = audited(&state, event, created)?;
    Ok((StatusCode::CREATED, Json(admin_user_view(&state, user))))
}

/// `GET /admin/users/{id}`
pub async fn get_user(
    State(state): State<AppState>,
    caller: Authenticated,
    IdPath(id): IdPath,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Permission::ManageUsers)?;
    Ok(Json(admin_user_view(&state, state.auth.get_user(id)?)))
}

/// `PATCH /admin/users/{id}` with `role` and / or `disabled`.
pub async fn update_user(
    State(state): State<AppState>,
    caller: Authenticated,
    ClientInfo(client): ClientInfo,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<AdminUserUpdate>,
) -> Result<impl IntoResponse, ApiError> {
    let actor = caller.require(Permission::ManageUsers)?;
    if body.role.is_none() && body.disabled.is_none() {
        return Err(ApiError::validation("send \"role\" and / or \"disabled\""));
    }
    let before = state.auth.get_user(id).ok();
    let change = AccountChange {
        role: body.role,
        disabled: body.disabled,
    };
    let changed = state.auth.change_account(actor, id, change).map_err(ApiError::from);
    // One entry per change asked for: a role change, a disable or an enable.
    if let Some(role) = body.role {
        let from = before.as_ref().map(|u| u.role);
        let event = admin_event(AuditAction::RoleChange, actor, &client)
            .about(id)
            .with(serde_json::json!({ "from": from, "to": role }));
        record_outcome(&state, event, &changed);
    }
    if let Some(disabled) = body.disabled {
        let action = if disabled {
            AuditAction::UserDisable
        } else {
            AuditAction::UserEnable
        };
        record_outcome(&state, admin_event(action, actor, &client).about(id), &changed);
    }
    Ok(Json(admin_user_view(&state, changed?)))
}

/// `POST /admin/users/{id}/sign-out`: ends every session of the account.
pub async fn sign_out(
    State(state): State<AppState>,
    caller: Authenticated,
    ClientInfo(client): ClientInfo,
    IdPath(id): IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let actor = caller.require(Permission::ManageUsers)?;
    let event = admin_event(AuditAction::SignOut, actor, &client).about(id);
    audited(&state, event, state.auth.sign_out_everywhere(actor, id))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /admin/users/{id}/unlock`
pub async fn unlock(
    State(state): State<AppState>,
    caller: Authenticated,
    ClientInfo(client): ClientInfo,
    IdPath(id): IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let actor = caller.require(Permission::ManageUsers)?;
    let event = admin_event(AuditAction::Unlock, actor, &client).about(id);
    audited(&state, event, state.auth.unlock_account(actor, id))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /admin/users/{id}/reset-2fa`
pub async fn reset_two_factor(
    State(state): State<AppState>,
    caller: Authenticated,
    ClientInfo(client): ClientInfo,
    IdPath(id): IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let actor = caller.require(Permission::ManageUsers)?;
    let event = admin_event(AuditAction::TotpReset, actor, &client).about(id);
    audited(&state, event, state.auth.remove_second_factor(actor, id))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /admin/users/{id}/password-reset`: a one-time link (24 hours).
pub async fn password_reset_link(
    State(state): State<AppState>,
    caller: Authenticated,
    ClientInfo(client): ClientInfo,
    IdPath(id): IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let actor = caller.require(Permission::ManageUsers)?;
    let event = admin_event(AuditAction::PasswordResetLink, actor, &client).about(id);
    let (token, record) = audited(&state, event, state.auth.password_reset_link(actor, id))?;
    Ok((
        StatusCode::CREATED,
        super::auth::no_store(),
        Json(link_view(record, Some(token))),
    ))
}

/// `GET /admin/users/{id}/sessions`
pub async fn user_sessions(
    State(state): State<AppState>,
    caller: Authenticated,
    IdPath(id): IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let sessions = state
        .auth
        .account_sessions(caller.require(Permission::ManageUsers)?, id)?
        .into_iter()
        .map(|s| session_view(s, None))
        .collect();
    Ok(Json(AdminSessionList { sessions }))
}

/// `DELETE /admin/users/{id}/sessions/{session}`
pub async fn end_user_session(
    State(state): State<AppState>,
    caller: Authenticated,
    ClientInfo(client): ClientInfo,
    Path((id, session)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let actor = caller.require(Permission::ManageUsers)?;
    let parse = |raw: &str| Uuid::parse_str(raw).map_err(|_| ApiError::not_found("session"));
    let (id, session) = (parse(&id)?, parse(&session)?);
    let event = admin_event(AuditAction::AdminSessionEnd, actor, &client)
        .about(id)
        .on(format!("session/{session}"));
    audited(&state, event, state.auth.end_account_session(actor, id, session))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /admin/users/{id}/documents?...`: that user's documents (as `GET /documents` lists them).
pub async fn user_documents(
    State(state): State<AppState>,
    caller: Authenticated,
    ClientInfo(client): ClientInfo,
    IdPath(id): IdPath,
    ApiQuery(query): ApiQuery<DocumentListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let actor = caller.require(Permission::ReadAllDocuments)?;
    state.auth.get_user(id)?;
    let event = admin_event(AuditAction::DocumentsRead, actor, &client).about(id);
    Ok(Json(audited(&state, event, document_page(&state, id, query))?))
}

/// `GET /admin/security`
pub async fn security(State(state): State<AppState>, caller: Authenticated) -> Result<impl IntoResponse, ApiError> {
    caller.require(Permission::ManageUsers)?;
    Ok(Json(SecuritySettings {
        require_2fa_for: state.auth.roles_requiring_2fa(),
    }))
}

/// `PUT /admin/security`
pub async fn set_security(
    State(state): State<AppState>,
    caller: Authenticated,
    ClientInfo(client): ClientInfo,
    ApiJson(body): ApiJson<SecuritySettings>,
) -> Result<impl IntoResponse, ApiError> {
    let actor = caller.require(Permission::ManageUsers)?;
    let event = admin_event(AuditAction::SecuritySettings, actor, &client)
        .with(serde_json::json!({ "require_2fa_for": body.require_2fa_for }));
    audited(
        &state,
        event,
        state.auth.require_2fa_for(actor, body.require_2fa_for.clone()),
    )?;
    Ok(Json(body))
}

/// `GET /admin/registration`
pub async fn registration(State(state): State<AppState>, caller: Authenticated) -> Result<impl IntoResponse, ApiError> {
    caller.require(Permission::ManageUsers)?;
    Ok(Json(RegistrationSettings {
        policy: state.auth.registration_policy()?,
    }))
}

/// `PUT /admin/registration`
pub async fn set_registration(
    State(state): State<AppState>,
    caller: Authenticated,
    ClientInfo(client): ClientInfo,
    ApiJson(body): ApiJson<RegistrationSettings>,
) -> Result<impl IntoResponse, ApiError> {
    let actor = caller.require(Permission::ManageUsers)?;
    let event =
        admin_event(AuditAction::RegistrationPolicy, actor, &client).with(serde_json::json!({ "policy": body.policy }));
    audited(&state, event, state.auth.set_registration_policy(actor, body.policy))?;
    Ok(Json(body))
}

/// `GET /admin/invites`: the open invitations.
pub async fn invites(State(state): State<AppState>, caller: Authenticated) -> Result<impl IntoResponse, ApiError> {
    caller.require(Permission::ManageUsers)?;
    let invites = state
        .auth
        .open_invites()?
        .into_iter()
        .map(|r| link_view(r, None))
        .collect();
    Ok(Json(InviteList { invites }))
}

/// `POST /admin/invites`: a new invitation link.
pub async fn create_invite(
    State(state): State<AppState>,
    caller: Authenticated,
    ClientInfo(client): ClientInfo,
    ApiJson(body): ApiJson<InviteRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let actor = caller.require(Permission::ManageUsers)?;
    let lifetime = match body.expires_in_hours {
        None => DEFAULT_INVITE_LIFETIME,
        Some(hours @ 1..=720) => Duration::from_secs(u64::from(hours) * 3600),
        Some(_) => return Err(ApiError::validation("expires_in_hours must be 1 to 720")),
    };
    let invited = state.auth.invite(actor, body.role, lifetime);
    let mut event = admin_event(AuditAction::InviteCreate, actor, &client).with(serde_json::json!({
        "role": body.role, "expires_in_hours": lifetime.as_secs() / 3600,
    }));
    if let Ok((_, record)) = &invited {
        event = event.on(format!("invite/{}", record.id));
    }
    let (token, record) = audited(&state, event, invited)?;
    Ok((
        StatusCode::CREATED,
        super::auth::no_store(),
        Json(link_view(record, Some(token))),
    ))
}

/// `DELETE /admin/invites/{id}`
pub async fn revoke_invite(
    State(state): State<AppState>,
    caller: Authenticated,
    ClientInfo(client): ClientInfo,
    IdPath(id): IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let actor = caller.require(Permission::ManageUsers)?;
    let event = admin_event(AuditAction::InviteRevoke, actor, &client).on(format!("invite/{id}"));
    audited(&state, event, state.auth.revoke_invite(actor, id))?;
    Ok(StatusCode::NO_CONTENT)
}
