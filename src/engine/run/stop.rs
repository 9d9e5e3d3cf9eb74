//! Stop strings: cut the output where one appears, and hold back text that may be the
//! beginning of one so that no part of a stop string is ever emitted.

/// Watches generated text for stop strings.
#[derive(Debug, Default)]
pub(crate) struct StopMatcher {
    /// The stop strings (empty ones dropped).
    stops: Vec<String>,
    /// All text generated so far.
    text: String,
    /// How many bytes of `text` were released to the client.
    emitted: usize,
}

/// What to do after some text arrived.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StopCheck {
    /// Emit this (possibly empty) text and go on.
    Continue(String),
    /// Emit this (possibly empty) text, then stop: a stop string was produced.
    Stop(String),
}

impl StopMatcher {
    /// A matcher for `stops`.
    pub(crate) fn new(stops: &[String]) -> Self {
        let stops = stops.iter().filter(|s| !s.is_empty()).cloned().collect();
        Self {
            stops,
            text: String::new(),
            emitted: 0,
        }
    }

    /// Adds `piece` and says what may be released.
    pub(crate) fn push(&mut self, piece: &str) -> StopCheck {
        self.text.push_str(piece);
        if self.stops.is_empty() {
            return StopCheck::Continue(self.release(self.text.len()));
        }
        // A stop string cannot start before `emitted`: text that could begin one is held back.
        let pending = &self.text[self.emitted..];
        let first_match = self.stops.iter().filter_map(|stop| pending.find(stop.as_str())).min();
        if let Some(at) = first_match {
            return StopCheck::Stop(self.release(self.emitted + at));
        }
        let hold_from = pending
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| self.stops.iter().any(|stop| stop.starts_with(&pending[i..])))
            .unwrap_or(pending.len());
        StopCheck::Continue(self.release(self.emitted + hold_from))
    }

    /// The text held back so far, released because generation ended for another reason.
    pub(crate) fn finish(&mut self) -> String {
        self.release(self.text.len())
    }

    fn release(&mut self, end: usize) -> String {
        let out = self.text[self.emitted..end].to_owned();
        self.emitted = end;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut matcher = StopMatcher::new(&stops);
        let mut out = String::new();
        for piece in pieces {
            match matcher.push(piece) {
                StopCheck::Continue(text) => out.push_str(&text),
                StopCheck::Stop(text) => {
                    out.push_str(&text);
                    return (out, true);
                }
            }
        }
        out.push_str(&matcher.finish());
        (out, false)
    }

    #[test]
    fn cuts_at_a_stop_string_split_over_pieces() {
        assert_eq!(run(&["END"], &["hello E", "N", "D more"]), ("hello ".into(), true));
        assert_eq!(run(&["\n\n"], &["a\n", "\nb"]), ("a".into(), true));
    }

    #[test]
    fn releases_held_text_that_was_not_a_stop() {
        assert_eq!(run(&["END"], &["hello E", "N", "x"]), ("hello ENx".into(), false));
        assert_eq!(run(&["END"], &["hello E"]), ("hello E".into(), false));
    }

    #[test]
    fn the_earliest_of_several_stops_wins() {
        assert_eq!(run(&["c", "ab"], &["xxabc"]), ("xx".into(), true));
    }

    #[test]
    fn no_stops_streams_everything() {
        let mut matcher = StopMatcher::new(&[String::new()]);
        assert_eq!(matcher.push("é"), StopCheck::Continue("é".into()));
    }

    #[test]
    fn holds_back_only_a_possible_start() {
        let mut matcher = StopMatcher::new(&["</s>".to_string()]);
        assert_eq!(matcher.push("ab<"), StopCheck::Continue("ab".into()));
        assert_eq!(matcher.push("b"), StopCheck::Continue("<b".into()));
    }
}
