//! Finds a cited passage in its page's text, for the citation viewer's highlight. The
//! citation's snippet is the chunk's start with its whitespace flattened (and a chunk may begin
//! with Markdown the page text does not have, such as a heading's `#`), so the match is made
//! on words: the longest run of the snippet's words found in a row in the page, starting at
//! one of its first few words.

use std::ops::Range;

/// A word of `text`: its lower-cased letters and digits, and where it lies in `text`.
fn words(text: &str) -> Vec<(String, Range<usize>)> {
    let mut out = Vec::new();
    let mut start = None;
    for (at, c) in text.char_indices().chain(std::iter::once((text.len(), ' '))) {
        match (c.is_alphanumeric(), start) {
            (true, None) => start = Some(at),
            (false, Some(s)) => {
                out.push((text[s..at].to_lowercase(), s..at));
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// Snippet words tried as the start of the match (the first ones may be markup or a heading
/// repeated from an earlier page).
const STARTS: usize = 6;
/// Fewest words in a row that count as a match.
const MIN_WORDS: usize = 3;

/// The byte range of `text` that the passage `snippet` covers, when found.
pub fn locate(text: &str, snippet: &str) -> Option<Range<usize>> {
    let page = words(text);
    let wanted: Vec<String> = words(snippet.trim_end_matches('…'))
        .into_iter()
        .map(|(w, _)| w)
        .collect();
    let mut best: Option<(usize, Range<usize>)> = None;
    for first in 0..wanted.len().min(STARTS) {
        for (at, (word, _)) in page.iter().enumerate() {
            if *word != wanted[first] {
                continue;
            }
            let run = page[at..]
                .iter()
                .zip(&wanted[first..])
                .take_while(|((a, _), b)| a == *b)
                .count();
            if run >= MIN_WORDS.min(wanted.len() - first) && best.as_ref().is_none_or(|(n, _)| run > *n) {
                best = Some((run, page[at].1.start..page[at + run - 1].1.end));
            }
        }
    }
    best.map(|(_, range)| range)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flattened_snippet_is_found_across_line_breaks() {
        let text = "Intro.\n\nThe appendix.autolabel parameter\nspecifies the labeling format. More text.";
        let range = locate(text, "The appendix.autolabel parameter specifies the labeling…").unwrap();
        assert_eq!(&text[range], "The appendix.autolabel parameter\nspecifies the labeling");
    }

    #[test]
    fn markup_before_the_passage_is_skipped() {
        let text = "Top left | Top right\nBottom left";
        let range = locate(text, "# Table\n| Top left | Top right |").unwrap();
        assert_eq!(&text[range], "Top left | Top right");
    }

    #[test]
    fn the_longest_run_wins_over_an_earlier_partial_one() {
        let text = "the cat sat here. the cat sat on the mat today";
        let range = locate(text, "the cat sat on the mat").unwrap();
        assert_eq!(&text[range], "the cat sat on the mat");
    }

    #[test]
    fn a_passage_from_elsewhere_is_not_found() {
        assert_eq!(locate("alpha beta gamma delta", "one two three four"), None);
        assert_eq!(locate("", "one two three"), None);
    }
}
