//! Incremental detokenization: turns a growing list of token ids into text pieces without ever
//! emitting half a UTF-8 character (a byte-level token may carry a fragment of one).

use crate::engine::error::EngineError;
use crate::engine::load::tokenizer::TextTokenizer;

/// Decodes generated tokens one at a time, emitting only text that is complete.
///
/// Like text-generation-inference's decoder: decode a short window of tokens before and
/// after the last emitted point, and emit the difference once it does not end in a
/// replacement character. Decoding a window (not a single token) keeps the spacing that
/// some decoders derive from the neighbouring token.
#[derive(Debug, Default)]
pub(crate) struct IncrementalDecoder {
    /// Every token generated so far.
    ids: Vec<u32>,
    /// Start of the decoding window.
    prefix_offset: usize,
    /// End of the text already emitted.
    read_offset: usize,
}

impl IncrementalDecoder {
    /// A decoder with no tokens yet.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds `id` and returns the new complete text, if any.
    pub(crate) fn push(&mut self, tokenizer: &TextTokenizer, id: u32) -> Result<Option<String>, EngineError> {
        self.ids.push(id);
        let prefix = tokenizer.decode(&self.ids[self.prefix_offset..self.read_offset])?;
        let full = tokenizer.decode(&self.ids[self.prefix_offset..])?;
        if full.len() <= prefix.len() || full.ends_with('\u{FFFD}') {
            return Ok(None);
        }
        let Some(new_text) = full.get(prefix.len()..).filter(|_| full.starts_with(&prefix)) else {
            // The window decoded differently with the new token; emit from the first
            // difference so that nothing is repeated.
            let common = common_prefix_len(&prefix, &full);
            self.advance();
            return Ok(Some(full[common..].to_owned()).filter(|s| !s.is_empty()));
        };
        let new_text = new_text.to_owned();
        self.advance();
        Ok(Some(new_text))
    }

    fn advance(&mut self) {
        self.prefix_offset = self.read_offset;
        self.read_offset = self.ids.len();
    }
}

/// The length in bytes of the longest common prefix of `a` and `b`, on a char boundary.
fn common_prefix_len(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, ca), cb)| ca != cb)
        .map_or_else(|| a.len().min(b.len()), |((i, _), _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_prefix_is_on_char_boundaries() {
        assert_eq!(common_prefix_len("héllo", "hé!"), 3);
        assert_eq!(common_prefix_len("ab", "abc"), 2);
        assert_eq!(common_prefix_len("", "x"), 0);
    }
}
