//! Model output to HTML, treating the text as untrusted: Markdown (tables, lists, headings,
//! block quotes, code, task lists, strikethrough, `$math$`) becomes HTML, raw HTML in the text
//! is shown as text, links keep only safe schemes and open in a new tab without access to this
//! page, images become links (nothing is fetched on its own). Code blocks get a header with
//! the language and a copy button; math becomes placeholders that KaTeX fills in.

use pulldown_cmark::{CodeBlockKind, CowStr, Event, Options, Parser, Tag, TagEnd};

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Whether a link target is safe to follow: http(s), mailto, or a relative link.
fn safe_url(url: &str) -> bool {
    let trimmed: String = url.chars().filter(|c| !c.is_whitespace() && !c.is_control()).collect();
    let lower = trimmed.to_ascii_lowercase();
    match lower.find(':') {
        None => true,
        Some(colon) => {
            let scheme = &lower[..colon];
            // A colon after a slash, `?` or `#` is not a scheme ("/a:b", "?x=1:2").
            if scheme.contains(['/', '?', '#']) {
                return true;
            }
            matches!(scheme, "http" | "https" | "mailto")
        }
    }
}

/// Renders `markdown` to safe HTML.
pub fn render(markdown: &str) -> String {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_MATH
        | Options::ENABLE_FOOTNOTES;
    let mut events: Vec<Event<'_>> = Vec::new();
    // Inside a link or image that was dropped for its scheme: its end is dropped too.
    let mut dropped_links: Vec<bool> = Vec::new();
    let mut code: Option<(String, String)> = None;
    for event in Parser::new_ext(markdown, options) {
        if let Some((_, text)) = code.as_mut() {
            match event {
                Event::Text(t) => {
                    text.push_str(&t);
                    continue;
                }
                Event::End(TagEnd::CodeBlock) => {
                    let (lang, text) = code.take().unwrap_or_default();
                    events.push(Event::Html(CowStr::from(code_block(&lang, &text))));
                    continue;
                }
                _ => continue,
            }
        }
        let event = match event {
            // Raw HTML from the model is shown, never interpreted.
            Event::Html(html) | Event::InlineHtml(html) => Event::Text(html),
            Event::Start(Tag::CodeBlock(kind)) => {
                let lang = match kind {
                    CodeBlockKind::Fenced(info) => info.split_whitespace().next().unwrap_or("").to_owned(),
                    CodeBlockKind::Indented => String::new(),
                };
                code = Some((lang, String::new()));
                continue;
            }
            Event::Start(Tag::Link { dest_url, title, .. }) | Event::Start(Tag::Image { dest_url, title, .. }) => {
                if safe_url(&dest_url) {
                    dropped_links.push(false);
                    let title = if title.is_empty() {
                        String::new()
                    } else {
                        format!(" title=\"{}\"", escape(&title))
                    };
                    Event::Html(CowStr::from(format!(
                        "<a href=\"{}\"{title} target=\"_blank\" rel=\"noopener noreferrer nofollow\">",
                        escape(&dest_url)
                    )))
                } else {
                    dropped_links.push(true);
                    continue;
                }
            }
            Event::End(TagEnd::Link) | Event::End(TagEnd::Image) => {
                if dropped_links.pop().unwrap_or(true) {
                    continue;
                }
                Event::Html(CowStr::from("</a>"))
            }
            Event::InlineMath(tex) => Event::Html(CowStr::from(format!(
                "<span class=\"math\" data-tex=\"{}\">{}</span>",
                escape(&tex),
                escape(&tex)
            ))),
            Event::DisplayMath(tex) => Event::Html(CowStr::from(format!(
                "<div class=\"math display\" data-tex=\"{}\">{}</div>",
                escape(&tex),
                escape(&tex)
            ))),
            other => other,
        };
        events.push(event);
    }
    // A code block still open (the answer is streaming): show what there is.
    if let Some((lang, text)) = code.take() {
        events.push(Event::Html(CowStr::from(code_block(&lang, &text))));
    }
    let mut html = String::with_capacity(markdown.len() * 2);
    pulldown_cmark::html::push_html(&mut html, events.into_iter());
    html
}

/// A code block with its header: language name and copy button.
fn code_block(lang: &str, text: &str) -> String {
    let lang_class: String = lang
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '#'))
        .collect();
    let class = if lang_class.is_empty() {
        String::new()
    } else {
        format!(" class=\"language-{lang_class}\"")
    };
    format!(
        "<div class=\"code\"><div class=\"code-head\"><span>{}</span><button type=\"button\" class=\"copy\" aria-label=\"Copy code\">Copy</button></div><pre><code{class}>{}</code></pre></div>",
        escape(if lang.is_empty() { "text" } else { lang }),
        escape(text)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_html_is_shown_as_text() {
        let html = render("Hello <script>alert(1)</script> <b>bold</b>");
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        let block = render("<div onclick=\"x()\">hi</div>\n\nafter");
        assert!(!block.contains("<div onclick"), "{block}");
    }

    #[test]
    fn links_are_safe() {
        let html = render("[a](https://example.com) [b](javascript:alert(1)) [c](JaVaScRiPt:x) [d](/local)");
        assert!(html.contains("href=\"https://example.com\""), "{html}");
        assert!(html.contains("rel=\"noopener noreferrer nofollow\""));
        assert!(!html.to_lowercase().contains("javascript:"), "{html}");
        assert!(html.contains(">b<") || html.contains(" b "), "the text stays: {html}");
        assert!(html.contains("href=\"/local\""));
        let image = render("![cat](https://example.com/cat.png) ![x](data:text/html,hi)");
        assert!(!image.contains("<img"), "{image}");
        assert!(!image.contains("data:text"), "{image}");
    }

    #[test]
    fn tables_code_and_math_render() {
        let html =
            render("| a | b |\n|---|---|\n| 1 | 2 |\n\n```rust\nfn main() { 1 < 2 }\n```\n\n$E = mc^2$ and $$x^2$$");
        assert!(html.contains("<table>") && html.contains("<td>1</td>"), "{html}");
        assert!(html.contains("class=\"language-rust\""), "{html}");
        assert!(html.contains("1 &lt; 2"), "{html}");
        assert!(html.contains("class=\"copy\""));
        assert!(html.contains("data-tex=\"E = mc^2\""), "{html}");
        assert!(html.contains("class=\"math display\""), "{html}");
        // A fence still open while streaming renders as code.
        assert!(render("```py\nprint(1)").contains("language-py"));
    }

    #[test]
    fn schemes_are_recognized() {
        assert!(safe_url("https://x"));
        assert!(safe_url("mailto:a@b"));
        assert!(safe_url("#top"));
        assert!(safe_url("/a:b"));
        assert!(!safe_url("javascript:x"));
        assert!(!safe_url(" java\tscript:x"));
        assert!(!safe_url("vbscript:x"));
        assert!(!safe_url("data:x"));
    }
}
