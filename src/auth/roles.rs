//! The permission table: what each role may do, in one place. Every route names the permission
//! it needs (`Authenticated::require` in `src/api/extract.rs`), and `tests/it/access.rs` checks
//! every route for every role.
//!
//! | permission | viewer | user | admin | super_admin |
//! |---|---|---|---|---|
//! | `OwnAccount`: own password, 2FA, sessions, preferences | yes | yes | yes | yes |
//! | `ReadOwn`: own conversations and documents, the model list | yes | yes | yes | yes |
//! | `Chat`: send messages, create and change conversations, `/v1` | | yes | yes | yes |
//! | `ManageOwnDocuments`: upload, retry, delete own documents | | yes | yes | yes |
//! | `ManageUsers`: accounts, invites, registration policy, reset links | | | yes | yes |
//! | `ReadAllDocuments`: every user's documents | | | yes | yes |
//! | `ReadAudit`: the audit log | | | yes | yes |
//! | `ReadMetrics`: `/metrics` (also open to its bearer secret) | | | yes | yes |
//! | `ManageServer`: models and server settings | | | | yes |
//!
//! Among accounts, an admin manages viewers and users; a super_admin manages everyone
//! ([`may_manage`], [`may_grant`]). Nobody changes the role of, or disables, their own account.

use crate::store::UserRole;

/// Things a caller may try to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Own password, 2FA, sessions and preferences.
    OwnAccount,
    /// Read own conversations, documents and settings; list the models.
    ReadOwn,
    /// Chat with models; create, change and delete own conversations; the `/v1` API.
    Chat,
    /// Upload, retry and delete own documents.
    ManageOwnDocuments,
    /// Manage accounts (below one's own rank), invites, the registration policy, reset links.
    ManageUsers,
    /// Read every user's documents.
    ReadAllDocuments,
    /// Read and export the audit log.
    ReadAudit,
    /// Read the server's metrics.
    ReadMetrics,
    /// Change models and server-wide settings.
    ManageServer,
}

/// The least role that has `permission` (roles are ordered viewer < user < admin < super_admin).
pub const fn least_role(permission: Permission) -> UserRole {
    match permission {
        Permission::OwnAccount | Permission::ReadOwn => UserRole::Viewer,
        Permission::Chat | Permission::ManageOwnDocuments => UserRole::User,
        Permission::ManageUsers | Permission::ReadAllDocuments | Permission::ReadAudit | Permission::ReadMetrics => {
            UserRole::Admin
        }
        Permission::ManageServer => UserRole::SuperAdmin,
    }
}

/// Whether `role` grants `permission`.
pub fn allows(role: UserRole, permission: Permission) -> bool {
    role >= least_role(permission)
}

/// Whether an account of role `actor` may manage (disable, sign out, unlock, reset) an account
/// of role `target`: a super_admin anyone, an admin viewers and users.
pub fn may_manage(actor: UserRole, target: UserRole) -> bool {
    allows(actor, Permission::ManageUsers) && (actor == UserRole::SuperAdmin || target < UserRole::Admin)
}

/// Whether an account of role `actor` may give an account the role `role` (create it so, or
/// change it to it): a super_admin any role, an admin viewer and user.
pub fn may_grant(actor: UserRole, role: UserRole) -> bool {
    may_manage(actor, role)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLES: [UserRole; 4] = [UserRole::Viewer, UserRole::User, UserRole::Admin, UserRole::SuperAdmin];

    #[test]
    fn a_viewer_reads_but_cannot_chat_or_upload() {
        assert!(allows(UserRole::Viewer, Permission::ReadOwn));
        assert!(allows(UserRole::Viewer, Permission::OwnAccount));
        assert!(!allows(UserRole::Viewer, Permission::Chat));
        assert!(!allows(UserRole::Viewer, Permission::ManageOwnDocuments));
    }

    #[test]
    fn each_role_has_what_the_role_below_has() {
        for permission in [
            Permission::OwnAccount,
            Permission::ReadOwn,
            Permission::Chat,
            Permission::ManageOwnDocuments,
            Permission::ManageUsers,
            Permission::ReadAllDocuments,
            Permission::ReadAudit,
            Permission::ReadMetrics,
            Permission::ManageServer,
        ] {
            for pair in ROLES.windows(2) {
                assert!(
                    !allows(pair[0], permission) || allows(pair[1], permission),
                    "{permission:?}"
                );
            }
        }
        assert!(!allows(UserRole::Admin, Permission::ManageServer));
        assert!(allows(UserRole::SuperAdmin, Permission::ManageServer));
    }

    #[test]
    fn admins_manage_the_ranks_below_them_and_super_admins_everyone() {
        assert!(may_manage(UserRole::Admin, UserRole::User));
        assert!(may_manage(UserRole::Admin, UserRole::Viewer));
        assert!(!may_manage(UserRole::Admin, UserRole::Admin));
        assert!(!may_manage(UserRole::Admin, UserRole::SuperAdmin));
        assert!(!may_grant(UserRole::Admin, UserRole::Admin));
        for role in ROLES {
            assert!(may_manage(UserRole::SuperAdmin, role));
            assert!(!may_manage(UserRole::User, role));
        }
    }
}
