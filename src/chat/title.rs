//! Names a conversation after its first exchange.

use futures::StreamExt;
use uuid::Uuid;

use super::ChatService;
use crate::providers::{ChatEvent, ChatMessage, ChatRequest, GenerationParams, Role};

/// Longest title kept, in characters.
const MAX_TITLE_CHARS: usize = 60;

/// A title made from the first message, shown until the model's title arrives.
pub fn provisional(first_message: &str) -> String {
    let line = first_message
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    truncate_words(line, 40)
}

fn truncate_words(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let cut: String = text.chars().take(max_chars).collect();
    let cut = match cut.rfind(char::is_whitespace) {
        Some(i) if i > max_chars / 2 => &cut[..i],
        _ => &cut,
    };
    format!("{}…", cut.trim_end())
}

/// Cleans a model-written title: first line, no quotes or markdown, bounded length. `None`
/// when nothing readable is left.
pub fn sanitize(raw: &str) -> Option<String> {
    let line = raw.lines().map(str::trim).find(|l| !l.is_empty())?;
    let line = line.trim_start_matches(['#', '*', '-', ' ']);
    let line = line
        .strip_prefix("Title:")
        .or_else(|| line.strip_prefix("title:"))
        .unwrap_or(line);
    let cleaned: String = line
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | '*' | '`' | '#' | '\u{fffd}'))
        .collect();
    let cleaned = cleaned.trim().trim_end_matches(['.', ':']).trim().to_string();
    let letters = cleaned.chars().filter(|c| c.is_alphanumeric()).count();
    if letters < 2 {
        return None;
    }
    Some(truncate_words(&cleaned, MAX_TITLE_CHARS))
}

/// Asks the model for a short title and stores it; keeps the provisional title on any failure.
pub async fn generate(
    service: &ChatService,
    owner: Uuid,
    conversation_id: Uuid,
    model: &str,
    question: &str,
    answer: &str,
) {
    let excerpt = |s: &str| s.chars().take(1000).collect::<String>();
    let request = ChatRequest {
        model: model.to_string(),
        messages: vec![
            ChatMessage {
                role: Role::System,
                content:
                    "You write short titles for conversations. Reply with the title only: at most six words, no quotes."
                        .into(),
                images: Vec::new(),
            },
            ChatMessage {
                role: Role::User,
                content: format!(
                    "Conversation:\nUser: {}\nAssistant: {}\n\nTitle:",
                    excerpt(question),
                    excerpt(answer)
                ),
                images: Vec::new(),
            },
        ],
        params: GenerationParams {
            temperature: Some(0.0),
            max_tokens: Some(16),
            ..Default::default()
        },
        user: None,
    };
    let registry = service.registry();
    let Ok((mut stream, _)) = registry.chat_stream(model, request).await else {
        return;
    };
    let mut raw = String::new();
    let collect = async {
        while let Some(Ok(event)) = stream.next().await {
            match event {
                ChatEvent::Token(t) => raw.push_str(&t),
                ChatEvent::Done { .. } => break,
            }
        }
    };
    if tokio::time::timeout(std::time::Duration::from_secs(30), collect)
        .await
        .is_err()
    {
        return;
    }
    let Some(title) = sanitize(&raw) else { return };
    let result = service
        .inner
        .store
        .update_conversation(owner, conversation_id, false, |c| {
            if !c.title_set_by_user {
                c.title = title;
            }
        });
    if let Err(e) = result {
        tracing::debug!(conversation = %conversation_id, error = %e, "title not stored");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_cleaned() {
        assert_eq!(
            sanitize("\"Paris Trip Planning\"\nmore").as_deref(),
            Some("Paris Trip Planning")
        );
        assert_eq!(sanitize("## Title: Rust lifetimes.").as_deref(), Some("Rust lifetimes"));
        assert_eq!(sanitize("  \n ** \n"), None);
        assert!(sanitize(&"word ".repeat(40)).unwrap().chars().count() <= MAX_TITLE_CHARS + 1);
        assert_eq!(
            provisional("\n  What is the capital of France?"),
            "What is the capital of France?"
        );
    }
}
