//! Slack's text formats: reading `mrkdwn` as plain text, writing markdown and
//! plain text as `mrkdwn`.

/// Slack message text → plain text: `<url|label>` becomes `label (url)`,
/// mentions become `@user`/`#channel`, and `&amp;`, `&lt;`, `&gt;` are decoded.
pub(crate) fn to_plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('>') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        out.push_str(&angle_token(&rest[start + 1..start + len]));
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    unescape(&out)
}

/// The inside of one `<…>` token.
fn angle_token(token: &str) -> String {
    let (target, label) = match token.split_once('|') {
        Some((t, l)) => (t, Some(l)),
        None => (token, None),
    };
    if let Some(user) = target.strip_prefix('@') {
        return format!("@{}", label.unwrap_or(user));
    }
    if let Some(channel) = target.strip_prefix('#') {
        return format!("#{}", label.unwrap_or(channel));
    }
    if let Some(special) = target.strip_prefix('!') {
        // <!here>, <!channel>, <!subteam^ID|@team>, <!date^…|fallback>
        return label.map_or_else(|| format!("@{special}"), str::to_string);
    }
    let target = target.strip_prefix("mailto:").unwrap_or(target);
    match label {
        Some(label) if label != target => format!("{label} ({target})"),
        _ => target.to_string(),
    }
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Escapes the three characters Slack reserves for its control sequences.
pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A link in mrkdwn.
pub(crate) fn link(url: &str, label: &str) -> String {
    format!("<{}|{}>", escape(url), escape(label).replace('|', "¦"))
}

/// Markdown (CommonMark with strikethrough) → mrkdwn: `**b**` → `*b*`,
/// `*i*`/`_i_` → `_i_`, `~~s~~` → `~s~`, `[label](url)` → `<url|label>`,
/// headings → bold lines, list items → `•` or their number, code kept as
/// code; text is escaped so it never reads as a Slack control sequence.
pub(crate) fn from_markdown(markdown: &str) -> String {
    use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};

    let mut out = String::with_capacity(markdown.len());
    // Each open link's URL and the output before it (the label is built apart).
    let mut links: Vec<(String, String)> = Vec::new();
    let mut lists: Vec<Option<u64>> = Vec::new();
    let mut quote_depth = 0usize;
    for event in Parser::new_ext(markdown, Options::ENABLE_STRIKETHROUGH) {
        match event {
            Event::Text(t) | Event::Html(t) | Event::InlineHtml(t) => out.push_str(&escape(&t)),
            Event::Code(t) => {
                out.push('`');
                out.push_str(&escape(&t));
                out.push('`');
            }
            Event::SoftBreak | Event::HardBreak => {
                out.push('\n');
                out.push_str(&"> ".repeat(quote_depth));
            }
            Event::Start(Tag::Strong) | Event::End(TagEnd::Strong) => out.push('*'),
            Event::Start(Tag::Emphasis) | Event::End(TagEnd::Emphasis) => out.push('_'),
            Event::Start(Tag::Strikethrough) | Event::End(TagEnd::Strikethrough) => out.push('~'),
            Event::Start(Tag::Heading { .. }) => {
                block_start(&mut out, quote_depth);
                out.push('*');
            }
            Event::End(TagEnd::Heading(_)) => {
                out.push('*');
                out.push('\n');
            }
            Event::Start(Tag::Paragraph) if lists.is_empty() => block_start(&mut out, quote_depth),
            Event::End(TagEnd::Paragraph) if lists.is_empty() => out.push('\n'),
            Event::Start(Tag::BlockQuote(_)) => quote_depth += 1,
            Event::End(TagEnd::BlockQuote(_)) => quote_depth = quote_depth.saturating_sub(1),
            Event::Start(Tag::CodeBlock(kind)) => {
                block_start(&mut out, quote_depth);
                out.push_str("```");
                if let CodeBlockKind::Fenced(_) = kind {
                    out.push('\n');
                }
            }
            Event::End(TagEnd::CodeBlock) => {
                if !out.ends_with('\n') {
                    out.push('\n');
                }
                out.push_str("```\n");
            }
            Event::Start(Tag::List(first)) => {
                if lists.is_empty() {
                    block_start(&mut out, quote_depth);
                }
                lists.push(first);
            }
            Event::End(TagEnd::List(_)) => {
                lists.pop();
            }
            Event::Start(Tag::Item) => {
                if !out.is_empty() && !out.ends_with('\n') {
                    out.push('\n');
                }
                out.push_str(&"> ".repeat(quote_depth));
                out.push_str(&"    ".repeat(lists.len().saturating_sub(1)));
                match lists.last_mut() {
                    Some(Some(n)) => {
                        out.push_str(&format!("{n}. "));
                        *n += 1;
                    }
                    _ => out.push_str("• "),
                }
            }
            Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
                links.push((dest_url.to_string(), std::mem::take(&mut out)));
            }
            Event::End(TagEnd::Link | TagEnd::Image) => {
                if let Some((url, before)) = links.pop() {
                    let label = std::mem::replace(&mut out, before);
                    out.push_str(&format!("<{}|{}>", escape(&url), label.replace('|', "¦")));
                }
            }
            Event::Rule => {
                block_start(&mut out, quote_depth);
                out.push_str("———\n");
            }
            _ => {}
        }
    }
    out.trim_end().to_string()
}

/// Starts a block: a blank line after the previous one, and the quote marks.
fn block_start(out: &mut String, quote_depth: usize) {
    if !out.is_empty() {
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push('\n');
    }
    out.push_str(&"> ".repeat(quote_depth));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_text_reads_as_plain_text() {
        let table = [
            ("hello", "hello"),
            ("<@U1> hi", "@U1 hi"),
            ("<@U1|ann> hi", "@ann hi"),
            ("see <#C1|general>", "see #general"),
            ("<!here> up", "@here up"),
            (
                "<https://a.example|docs> and <https://b.example>",
                "docs (https://a.example) and https://b.example",
            ),
            ("<mailto:a@b.example|a@b.example>", "a@b.example"),
            ("a &lt;b&gt; &amp; c", "a <b> & c"),
            ("broken <tag", "broken <tag"),
        ];
        for (slack, plain) in table {
            assert_eq!(to_plain(slack), plain, "{slack}");
        }
    }

    #[test]
    fn markdown_becomes_mrkdwn() {
        let table = [
            ("plain & <safe>", "plain &amp; &lt;safe&gt;"),
            ("**bold** and *it* and _it_", "*bold* and _it_ and _it_"),
            ("~~gone~~", "~gone~"),
            (
                "[docs](https://d.example/a?b=1)",
                "<https://d.example/a?b=1|docs>",
            ),
            ("# Title", "*Title*"),
            ("`a*b*c`", "`a*b*c`"),
            ("2 * 3 * 4", "2 * 3 * 4"),
            ("```\nx < y\n```", "```\nx &lt; y\n```"),
            ("- one\n- two", "• one\n• two"),
            ("1. one\n2. two", "1. one\n2. two"),
            ("> quoted\n> still", "> quoted\n> still"),
            ("snake_case_name", "snake_case_name"),
            ("para one\n\npara two", "para one\n\npara two"),
            ("[a|b](https://x.example)", "<https://x.example|a¦b>"),
        ];
        for (md, slack) in table {
            assert_eq!(from_markdown(md), slack, "{md}");
        }
    }
}
