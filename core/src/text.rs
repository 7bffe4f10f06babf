//! Text helpers: splitting at word boundaries and flattening markdown.

use patchbay_plugin_sdk::capabilities::DirectionCapabilities;

/// How long one message's text may be: in characters (Unicode scalar values),
/// in UTF-8 bytes, or both (`None`: no limit of that kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TextLimit {
    /// Most characters.
    pub chars: Option<usize>,
    /// Most UTF-8 bytes.
    pub bytes: Option<usize>,
}

impl TextLimit {
    /// The text limit a direction declares.
    pub fn of(capabilities: &DirectionCapabilities) -> Self {
        TextLimit {
            chars: capabilities.max_text_length,
            bytes: capabilities.max_text_bytes,
        }
    }

    /// True when there is no limit at all.
    pub fn is_none(&self) -> bool {
        self.chars.is_none() && self.bytes.is_none()
    }

    /// True when `text` is within both limits.
    pub fn fits(&self, text: &str) -> bool {
        self.bytes.is_none_or(|max| text.len() <= max)
            && self.chars.is_none_or(|max| text.chars().count() <= max)
    }

    /// The byte index just past the longest prefix of `text` within both
    /// limits; at least one character, so splitting always progresses.
    fn prefix_end(&self, text: &str) -> usize {
        let mut end = self
            .chars
            .and_then(|max| text.char_indices().nth(max.max(1)).map(|(i, _)| i))
            .unwrap_or(text.len());
        if let Some(max) = self.bytes {
            end = end.min(max);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
        }
        if end == 0 {
            end = text.chars().next().map_or(0, char::len_utf8);
        }
        end
    }

    /// Describes the limit for people ("4000 characters", "7000 bytes").
    pub fn describe(&self) -> String {
        match (self.chars, self.bytes) {
            (Some(c), Some(b)) => format!("{c} characters and {b} bytes"),
            (Some(c), None) => format!("{c} characters"),
            (None, Some(b)) => format!("{b} bytes"),
            (None, None) => "no limit".into(),
        }
    }
}

/// Splits `text` into parts of at most `max` characters (Unicode scalar values);
/// see [`split_within`].
///
/// ```
/// use patchbay_core::text::split_words;
/// assert_eq!(split_words("the quick brown fox", 10), ["the quick", "brown fox"]);
/// assert_eq!(split_words("abcdefghij", 4), ["abcd", "efgh", "ij"]);
/// ```
pub fn split_words(text: &str, max: usize) -> Vec<String> {
    split_within(
        text,
        TextLimit {
            chars: Some(max),
            bytes: None,
        },
    )
}

/// Splits `text` into parts within `limit`, breaking at the last whitespace
/// that fits; a single word longer than the limit is cut (between characters,
/// never inside one). Whitespace at a break is dropped; nothing else is lost.
///
/// ```
/// use patchbay_core::text::{split_within, TextLimit};
/// // "é" is two bytes: six bytes hold three of them.
/// let limit = TextLimit { chars: None, bytes: Some(6) };
/// assert_eq!(split_within("ééééé", limit), ["ééé", "éé"]);
/// ```
pub fn split_within(text: &str, limit: TextLimit) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = text;
    loop {
        if limit.fits(rest) {
            if !rest.is_empty() || parts.is_empty() {
                parts.push(rest.to_string());
            }
            return parts;
        }
        let end = limit.prefix_end(rest);
        let window = &rest[..end];
        // A break right after the window still fits, so look one character further.
        let next_len = rest[end..].chars().next().map_or(0, char::len_utf8);
        let cut = rest[..end + next_len]
            .char_indices()
            .filter(|(_, c)| c.is_whitespace())
            .map(|(i, _)| i)
            .next_back()
            .filter(|&i| i > 0);
        let (head, tail) = match cut {
            Some(i) => (&rest[..i], &rest[i..]),
            // No whitespace, or only at the very start: only a hard cut fits.
            None => (window, &rest[end..]),
        };
        let head = head.trim_end();
        if !head.is_empty() {
            parts.push(head.to_string());
        }
        rest = tail.trim_start();
        if rest.is_empty() {
            return parts;
        }
    }
}

/// Flattens markdown (CommonMark, with strikethrough) to plain text: emphasis
/// and code lose their markers, `[label](url)` becomes `label (url)`, list
/// items keep a `- ` or their number, paragraphs and headings are separated by
/// a blank line. Text that only looks like markup (`2 * 3`, `snake_case`) stays.
///
/// ```
/// use patchbay_core::text::markdown_to_plain;
/// assert_eq!(markdown_to_plain("**Hi** see [docs](https://d) and `x_y`"), "Hi see docs (https://d) and x_y");
/// assert_eq!(markdown_to_plain("# Menu\n\n1. *tea*\n2. coffee"), "Menu\n\n1. tea\n2. coffee");
/// ```
pub fn markdown_to_plain(text: &str) -> String {
    use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

    let mut out = String::with_capacity(text.len());
    // The URL of each open link or image, and where its label starts in `out`.
    let mut links: Vec<(String, usize)> = Vec::new();
    // The next number of each open list (`None`: a bullet list).
    let mut lists: Vec<Option<u64>> = Vec::new();
    for event in Parser::new_ext(text, Options::ENABLE_STRIKETHROUGH) {
        match event {
            Event::Text(t) | Event::Code(t) | Event::Html(t) | Event::InlineHtml(t) => {
                out.push_str(&t)
            }
            Event::SoftBreak | Event::HardBreak => out.push('\n'),
            Event::Rule => out.push_str("---\n\n"),
            Event::Start(Tag::List(first)) => {
                end_line(&mut out);
                lists.push(first);
            }
            Event::End(TagEnd::List(_)) => {
                lists.pop();
                if lists.is_empty() {
                    out.push('\n');
                }
            }
            Event::Start(Tag::Item) => {
                end_line(&mut out);
                out.push_str(&"  ".repeat(lists.len().saturating_sub(1)));
                match lists.last_mut() {
                    Some(Some(n)) => {
                        out.push_str(&format!("{n}. "));
                        *n += 1;
                    }
                    _ => out.push_str("- "),
                }
            }
            Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
                links.push((dest_url.to_string(), out.len()));
            }
            Event::End(TagEnd::Link | TagEnd::Image) => {
                if let Some((url, label_at)) = links.pop()
                    && out[label_at..] != url
                {
                    out.push_str(&format!(" ({url})"));
                }
            }
            Event::End(TagEnd::Paragraph | TagEnd::Heading(_) | TagEnd::CodeBlock)
                if lists.is_empty() =>
            {
                end_line(&mut out);
                out.push('\n');
            }
            _ => {}
        }
    }
    out.trim_end().to_string()
}

/// Ends the current line, unless nothing has been written or it just ended.
fn end_line(out: &mut String) {
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn markdown_flattens_to_what_a_reader_sees() {
        let table = [
            ("plain", "plain"),
            ("**bold**, *it*, ~~gone~~", "bold, it, gone"),
            (
                "2 * 3 * 4 and snake_case_name",
                "2 * 3 * 4 and snake_case_name",
            ),
            (
                "[https://a.example](https://a.example)",
                "https://a.example",
            ),
            ("- one\n- two", "- one\n- two"),
            ("para one\n\npara two", "para one\n\npara two"),
            ("```\nlet x = 1;\n```", "let x = 1;"),
            ("a \\*literal\\*", "a *literal*"),
        ];
        for (md, plain) in table {
            assert_eq!(markdown_to_plain(md), plain, "{md:?}");
        }
    }

    #[test]
    fn split_table() {
        let table: &[(&str, usize, &[&str])] = &[
            ("", 5, &[""]),
            ("short", 5, &["short"]),
            ("two words", 4, &["two", "word", "s"]),
            ("a b c d e f", 3, &["a b", "c d", "e f"]),
            ("  lead", 3, &["lea", "d"]),
            ("line one\nline two", 9, &["line one", "line two"]),
            ("héllo wörld", 6, &["héllo", "wörld"]),
            ("🙂🙂🙂 🙂", 3, &["🙂🙂🙂", "🙂"]),
        ];
        for (text, max, want) in table {
            assert_eq!(split_words(text, *max), *want, "{text:?} / {max}");
        }
    }

    proptest! {
        #[test]
        fn split_respects_limit_and_keeps_every_word(text in "[a-z ]{0,200}", max in 1usize..40) {
            let parts = split_words(&text, max);
            for p in &parts {
                prop_assert!(p.chars().count() <= max);
            }
            let joined: String = parts.concat();
            let original: String = text.split_whitespace().collect();
            let kept: String = joined.split_whitespace().collect();
            prop_assert_eq!(kept, original);
        }
    }
}
