//! Builds the prompt for a turn: the system prompt, then as much recent history as the model's
//! context allows (oldest turns dropped first), always ending with the newest user message.
//! A message's images count against the budget like its text.

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
        /// Messages to send (without their images).
        messages: Vec<ChatMessage>,
        /// The images of each message, by id (parallel to `messages`; empty for most).
        attachments: Vec<Vec<Uuid>>,
        /// Their token count (with template overhead and images).
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

/// Fits `history` (ending with the user message to answer) into `budget` tokens, a message
/// costing its text's tokens plus `image_cost` of it. Assistant messages that failed with no
/// text are skipped.
pub fn fit(
    system_prompt: Option<&str>,
    history: &[&MessageRecord],
    budget: usize,
    count: impl Fn(&str) -> usize,
    image_cost: impl Fn(&MessageRecord) -> usize,
) -> Fitted {
    let mut used = 0;
    let mut head = Vec::new();
    if let Some(system) = system_prompt.filter(|s| !s.trim().is_empty()) {
        used += count(system) + PER_MESSAGE_OVERHEAD;
        head.push(ChatMessage::text(Role::System, system));
    }
    let usable: Vec<&MessageRecord> = history
        .iter()
        .copied()
        .filter(|m| !(m.role == MessageRole::Assistant && m.status == MessageStatus::Error && m.content.is_empty()))
        .collect();
    let mut tail = Vec::new();
    for (i, message) in usable.iter().rev().enumerate() {
        let cost = count(&message.content) + PER_MESSAGE_OVERHEAD + image_cost(message);
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
        tail.push((
            ChatMessage::text(role, message.content.clone()),
            message.attachments.clone(),
        ));
    }
    tail.reverse();
    // A history cut in the middle should not start with an assistant turn.
    while tail.first().is_some_and(|(m, _)| m.role == Role::Assistant) && tail.len() > 1 {
        tail.remove(0);
    }
    let mut attachments = vec![Vec::new(); head.len()];
    for (message, images) in tail {
        head.push(message);
        attachments.push(images);
    }
    Fitted::Fits {
        messages: head,
        attachments,
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
        match fit(Some("be brief"), &path, 15, words, |_| 0) {
            Fitted::Fits { messages, tokens, .. } => {
                assert_eq!(tokens, 12);
                assert_eq!(messages.len(), 2);
                assert_eq!(messages[0].role, Role::System);
                assert_eq!(messages[1].content, "nine ten");
            }
            Fitted::TooLong { .. } => panic!("should fit"),
        }
        match fit(Some("be brief"), &path, 100, words, |_| 0) {
            Fitted::Fits { messages, .. } => assert_eq!(messages.len(), 4),
            Fitted::TooLong { .. } => panic!("should fit"),
        }
        assert!(matches!(
            fit(Some("be brief"), &path, 8, words, |_| 0),
            Fitted::TooLong { needed: 12, budget: 8 }
        ));
    }

    #[test]
    fn images_count_against_the_budget_and_stay_with_their_message() {
        let image = Uuid::now_v7();
        let mut a = msg(None, MessageRole::User, "look at this");
        a.attachments = vec![image];
        let b = msg(Some(a.id), MessageRole::Assistant, "a cat");
        let c = msg(Some(b.id), MessageRole::User, "what colour");
        let all = vec![a, b, c.clone()];
        let path = path_to(&all, c.id);
        let words = |s: &str| s.split_whitespace().count();
        let cost = |m: &MessageRecord| m.attachments.len() * 258;
        match fit(None, &path, 1000, words, cost) {
            Fitted::Fits {
                messages,
                attachments,
                tokens,
            } => {
                assert_eq!(messages.len(), 3);
                assert_eq!(attachments, vec![vec![image], vec![], vec![]]);
                assert_eq!(tokens, 3 + 4 + 258 + 2 + 4 + 2 + 4);
            }
            Fitted::TooLong { .. } => panic!("should fit"),
        }
        // Without room for the image, its turn is dropped (oldest first), never the image alone.
        match fit(None, &path, 100, words, cost) {
            Fitted::Fits {
                messages, attachments, ..
            } => {
                assert_eq!(messages.len(), 1, "the cut history does not start with an answer");
                assert_eq!(attachments, vec![Vec::<Uuid>::new()]);
            }
            Fitted::TooLong { .. } => panic!("should fit"),
        }
    }

    #[test]
    fn remote_images_cost_a_tile_count() {
        assert_eq!(crate::providers::default_image_tokens("g", 1, 1), 258);
        assert_eq!(crate::providers::default_image_tokens("g", 768, 768), 258);
        assert_eq!(crate::providers::default_image_tokens("g", 1024, 1024), 4 * 258);
    }
}
