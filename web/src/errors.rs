//! What the UI tells people about an error code: one sentence per code that needs more than
//! the server's own message.

use crate::api::{ApiError, ErrorCode};

/// The sentence for a failed answer or request with this code.
pub fn describe_code(code: ErrorCode) -> String {
    match code {
        ErrorCode::RateLimited => "Too many requests right now (yours or the model's). Wait a moment and retry.".into(),
        ErrorCode::Overloaded => "The model is busy with other requests. Retry in a moment.".into(),
        ErrorCode::ModelUnavailable => "The model is not available right now.".into(),
        ErrorCode::Network => "The connection to the server was lost.".into(),
        ErrorCode::PromptTooLong => "This conversation is too long for the model's context window.".into(),
        ErrorCode::ShuttingDown => "The server restarted while answering.".into(),
        ErrorCode::GenerationInProgress => "An answer is already being written in this conversation.".into(),
        ErrorCode::Unknown => "The answer failed.".into(),
        other => format!("The answer failed ({other})."),
    }
}

/// The line shown under a failed turn: the description and the server's message (a lost
/// connection says it once).
pub fn describe_turn_error(error: &ApiError) -> String {
    if error.code == ErrorCode::Network {
        error.message.clone()
    } else {
        format!("{} {}", describe_code(error.code), error.message)
    }
}

/// The message for a failed sign-in or sign-up.
pub fn describe_sign_in_error(error: &ApiError) -> String {
    match error.code {
        ErrorCode::InvalidCredentials => "Wrong email, username or password.".into(),
        ErrorCode::InvalidTotp => "That code is not right (or was used already). Try the next one.".into(),
        ErrorCode::AccountLocked => format!("{} Wait, or ask an administrator to unlock it.", error.message),
        ErrorCode::AccountDisabled => "This account is disabled. Ask an administrator.".into(),
        _ => error.message.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes_get_their_sentence_and_others_name_the_code() {
        assert!(describe_code(ErrorCode::RateLimited).contains("Too many requests"));
        assert_eq!(
            describe_code(ErrorCode::ProviderError),
            "The answer failed (PROVIDER_ERROR)."
        );
        let lost = ApiError::network();
        assert_eq!(describe_turn_error(&lost), lost.message);
    }
}
