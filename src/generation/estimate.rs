//! A token count without a tokenizer, for remote providers and as a tokenizer's fallback.

/// A rough token count for models whose tokenizer is not at hand: about four characters per
/// token for English text, never less than one token per word.
pub fn estimate_tokens(text: &str) -> usize {
    let by_chars = text.chars().count().div_ceil(4);
    let by_words = text.split_whitespace().count();
    by_chars.max(by_words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_by_characters_but_never_below_the_words() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("abcdefgh"), 2);
        assert_eq!(estimate_tokens("a b c d e"), 5);
    }
}
