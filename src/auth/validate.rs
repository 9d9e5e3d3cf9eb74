//! Checks on account fields.

use super::AuthError;

/// Smallest accepted password length, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;
const MAX_PASSWORD_CHARS: usize = 1024;

/// A normalised (trimmed, lower-cased) email, or why it is not one.
pub fn email(raw: &str) -> Result<String, AuthError> {
    let email = raw.trim().to_lowercase();
    let valid = email.len() <= 254
        && !email.chars().any(char::is_whitespace)
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
        });
    if valid {
        Ok(email)
    } else {
        Err(AuthError::Invalid("email is not a valid email address".into()))
    }
}

/// A trimmed username, or why it is not acceptable.
pub fn username(raw: &str) -> Result<String, AuthError> {
    let name = raw.trim();
    let len = name.chars().count();
    if !(3..=32).contains(&len) {
        return Err(AuthError::Invalid("username must be 3 to 32 characters".into()));
    }
    if !name
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(AuthError::Invalid(
            "username may contain only letters, digits, '_', '-' and '.'".into(),
        ));
    }
    Ok(name.to_string())
}

/// Fails if the password is too short or absurdly long.
pub fn password(password: &str) -> Result<(), AuthError> {
    let len = password.chars().count();
    if len < MIN_PASSWORD_CHARS {
        return Err(AuthError::WeakPassword(format!(
            "password must be at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if len > MAX_PASSWORD_CHARS {
        return Err(AuthError::WeakPassword(format!(
            "password must be at most {MAX_PASSWORD_CHARS} characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(email(" Ann@Example.COM ").unwrap(), "ann@example.com");
        for bad in ["", "ann", "ann@", "@x.com", "ann@localhost", "a b@x.com", "ann@x.com."] {
            assert!(email(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn usernames_and_passwords() {
        assert!(username("ann_b-1.c").is_ok());
        assert!(username("ab").is_err());
        assert!(username("ann<script>").is_err());
        assert!(password("short").is_err());
        assert!(password("twelve chars").is_ok());
    }
}
