//! Text helpers: splitting at word boundaries and flattening markdown.

/// Splits `text` into parts of at most `max` characters (Unicode scalar values),
/// breaking at the last whitespace that fits; a single word longer than `max` is
/// cut. Whitespace at a break is dropped; nothing else is lost.
///
/// ```
/// use patchbay_core::text::split_words;
/// assert_eq!(split_words("the quick brown fox", 10), ["the quick", "brown fox"]);
/// assert_eq!(split_words("abcdefghij", 4), ["abcd", "efgh", "ij"]);
/// ```
pub fn split_words(text: &str, max: usize) -> Vec<String> {
    let max = max.max(1);
    let mut parts = Vec::new();
    let mut rest = text;
    loop {
        if rest.chars().count() <= max {
            if !rest.is_empty() || parts.is_empty() {
                parts.push(rest.to_string());
            }
            return parts;
        }
        // Byte index just past the `max`-th character.
        let limit = rest.char_indices().nth(max).map_or(rest.len(), |(i, _)| i);
        let window = &rest[..limit];
        // A break right after the window still fits, so look one character further.
        let next_len = rest[limit..].chars().next().map_or(0, char::len_utf8);
        let cut = rest[..limit + next_len]
            .char_indices()
            .filter(|(_, c)| c.is_whitespace())
            .map(|(i, _)| i)
            .next_back()
            .filter(|&i| i > 0);
        let (head, tail) = match cut {
            Some(i) => (&rest[..i], &rest[i..]),
            // No whitespace, or only at the very start: only a hard cut fits.
            None => (window, &rest[limit..]),
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

/// Flattens common markdown to plain text: `**b**`, `__b__` and backticks lose
/// their markers, `[label](url)` becomes `label (url)`. Single `*`/`_` are kept,
/// since they are as often part of names as emphasis.
///
/// ```
/// use patchbay_core::text::markdown_to_plain;
/// assert_eq!(markdown_to_plain("**Hi** see [docs](https://d) and `x_y`"), "Hi see docs (https://d) and x_y");
/// ```
pub fn markdown_to_plain(text: &str) -> String {
    let text = text.replace("**", "").replace("__", "").replace('`', "");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let parsed = after.find("](").and_then(|close| {
            let url_part = &after[close + 2..];
            url_part
                .find(')')
                .map(|end| (&after[..close], &url_part[..end], &url_part[end + 1..]))
        });
        match parsed {
            Some((label, url, tail)) if !label.contains('[') => {
                out.push_str(&rest[..open]);
                out.push_str(label);
                out.push_str(" (");
                out.push_str(url);
                out.push(')');
                rest = tail;
            }
            _ => {
                out.push_str(&rest[..=open]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
