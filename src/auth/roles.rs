//! The one place where roles are checked.

use crate::store::UserRole;

/// Things a caller may try to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Read own conversations and settings.
    Read,
    /// Chat with models, create and change own conversations.
    Chat,
    /// Manage users and models.
    Administer,
}

/// Whether `role` grants `permission`.
pub fn allows(role: UserRole, permission: Permission) -> bool {
    match permission {
        Permission::Read => true,
        Permission::Chat => role >= UserRole::User,
        Permission::Administer => role >= UserRole::Admin,
    }
}
