//! Builds the prompt for a turn: the system prompt, then as much recent history as the model's
//! context allows (oldest turns dropped first), always ending with the newest user message.

use std::collections::HashMap;

use uuid::Uuid;

use crate::providers::{ChatMessage, Role};
use crate::store::{MessageRecord, MessageRole, MessageStatus};

/// Tokens a chat template adds around each message (role markers, separators).
const PER_MESSAGE_OVERHEAD: usize = 4;

/// The messages from the root of the tree down to `leaf`, in order.
pub fn path_to(messages: &[MessageRecord], leaf: Uuid) -> Vec<&MessageRecord> {
    let by_id: HashMap<Uuid, &MessageRecord> = messages.iter().map(|m| (m.id, m)).collect();
    let mut path = Vec::new();
    let mut cursor = Some(leaf);
    while let Some(id) = cursor {
        let Some(message) = by_id.get(&id) else { break };
        path.push(*message);
        cursor = message.parent_id;
        if path.len() > messages.len() {
            break; // a cycle cannot be built through the API; refuse to loop on a corrupt tree
        }
    }
    path.reverse();
    path
}

/// A prompt that fits, or how much it would need.
pub enum Fitted {
    /// The prompt and its size in tokens.
    Fits {
        /// Messages to send.
        messages: Vec<ChatMessage>,
        /// Their token count (with template overhead).
        tokens: usize,
    },
    /// Even the system prompt plus the newest message exceed the budget.
    TooLong {
        /// Tokens needed.
        needed: usize,
        /// Tokens available.
        budget: usize,
    },
}

/// Fits `history` (ending with the user message to answer) into `budget` tokens.
/// Assistant messages that failed with no text are skipped.
pub fn fit(
    system_prompt: Option<&str>,
    history: &[&MessageRecord],
    budget: usize,
    count: impl Fn(&str) -> usize,
) -> Fitted {
    let mut used = 0;
    let mut head = Vec::new();
    if let Some(system) = system_prompt.filter(|s| !s.trim().is_empty()) {
        used += count(system) + PER_MESSAGE_OVERHEAD;
        head.push(ChatMessage {
            role: Role::System,
            content: system.to_string(),
        });
    }
    let usable: Vec<&MessageRecord> = history
        .iter()
        .copied()
        .filter(|m| !(m.role == MessageRole::Assistant && m.status == MessageStatus::Error && m.content.is_empty()))
        .collect();
    let mut tail = Vec::new();
    for (i, message) in usable.iter().rev().enumerate() {
        let cost = count(&message.content) + PER_MESSAGE_OVERHEAD;
        if used + cost > budget {
            if i == 0 {
                return Fitted::TooLong {
                    needed: used + cost,
                    budget,
                };
            }
            break;
        }
        used += cost;
        let role = match message.role {
            MessageRole::User => Role::User,
            MessageRole::Assistant => Role::Assistant,
        };
        tail.push(ChatMessage {
            role,
            content: message.content.clone(),
        });
    }
    tail.reverse();
    // A history cut in the middle should not start with an assistant turn.
    while tail.first().is_some_and(|m| m.role == Role::Assistant) && tail.len() > 1 {
        tail.remove(0);
    }
    head.extend(tail);
    Fitted::Fits {
        messages: head,
        tokens: used,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(parent: Option<Uuid>, role: MessageRole, text: &str) -> MessageRecord {
        MessageRecord::new(Uuid::nil(), parent, role, text.into())
    }

    #[test]
    fn keeps_system_and_drops_oldest_turns() {
        let a = msg(None, MessageRole::User, "one two three four");
        let b = msg(Some(a.id), MessageRole::Assistant, "five six seven eight");
        let c = msg(Some(b.id), MessageRole::User, "nine ten");
        let all = vec![a, b, c.clone()];
        let path = path_to(&all, c.id);
        assert_eq!(path.len(), 3);
        let words = |s: &str| s.split_whitespace().count();
        // system 2 + 4, newest 2 + 4: 12 fits; adding the 8-token assistant turn would be 20.
        match fit(Some("be brief"), &path, 15, words) {
            Fitted::Fits { messages, tokens } => {
                assert_eq!(tokens, 12);
                assert_eq!(messages.len(), 2);
                assert_eq!(messages[0].role, Role::System);
                assert_eq!(messages[1].content, "nine ten");
            }
            Fitted::TooLong { .. } => panic!("should fit"),
        }
        match fit(Some("be brief"), &path, 100, words) {
            Fitted::Fits { messages, .. } => assert_eq!(messages.len(), 4),
            Fitted::TooLong { .. } => panic!("should fit"),
        }
        assert!(matches!(
            fit(Some("be brief"), &path, 8, words),
            Fitted::TooLong { needed: 12, budget: 8 }
        ));
    }
}
