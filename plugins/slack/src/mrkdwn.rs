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

/// Markdown → mrkdwn: `**b**` → `*b*`, `*i*`/`_i_` → `_i_`, `~~s~~` → `~s~`,
/// `[label](url)` → `<url|label>`, headings → bold lines. Code is left alone.
pub(crate) fn from_markdown(markdown: &str) -> String {
    let mut out = Vec::new();
    let mut in_fence = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            out.push(line.to_string());
        } else if in_fence {
            out.push(escape(line));
        } else if let Some(heading) = heading(line) {
            out.push(format!("*{}*", inline(heading)));
        } else {
            out.push(inline(line));
        }
    }
    out.join("\n")
}

fn heading(line: &str) -> Option<&str> {
    let trimmed = line.trim_start();
    let hashes = trimmed.chars().take_while(|c| *c == '#').count();
    (1..=6)
        .contains(&hashes)
        .then(|| trimmed[hashes..].trim())
        .filter(|_| trimmed[hashes..].starts_with(' '))
}

/// Converts the inline markup of one line.
fn inline(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while !rest.is_empty() {
        if let Some(code) = rest.strip_prefix('`')
            && let Some(end) = code.find('`')
        {
            out.push('`');
            out.push_str(&escape(&code[..end]));
            out.push('`');
            rest = &code[end + 1..];
        } else if let Some((label, url, len)) = markdown_link(rest) {
            out.push_str(&link(url, label));
            rest = &rest[len..];
        } else if let Some((inner, len)) = delimited(rest, "**").or_else(|| delimited(rest, "__")) {
            out.push('*');
            out.push_str(&inline(inner));
            out.push('*');
            rest = &rest[len..];
        } else if let Some((inner, len)) = delimited(rest, "~~") {
            out.push('~');
            out.push_str(&inline(inner));
            out.push('~');
            rest = &rest[len..];
        } else if let Some((inner, len)) = delimited(rest, "*").or_else(|| delimited(rest, "_")) {
            out.push('_');
            out.push_str(&inline(inner));
            out.push('_');
            rest = &rest[len..];
        } else {
            let c = rest.chars().next().unwrap_or_default();
            out.push_str(&escape(c.encode_utf8(&mut [0; 4])));
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// `[label](url)` at the start of `text`: label, url and length.
fn markdown_link(text: &str) -> Option<(&str, &str, usize)> {
    let label_end = text.strip_prefix('[')?.find("](")? + 1;
    let url_start = label_end + 2;
    let url_len = text[url_start..].find(')')?;
    Some((
        &text[1..label_end],
        &text[url_start..url_start + url_len],
        url_start + url_len + 1,
    ))
}

/// `marker inner marker` at the start of `text`, with non-blank `inner`.
fn delimited<'a>(text: &'a str, marker: &str) -> Option<(&'a str, usize)> {
    let body = text.strip_prefix(marker)?;
    let end = body.find(marker)?;
    let inner = &body[..end];
    let blank_edge = inner.starts_with(' ') || inner.ends_with(' ');
    (!inner.is_empty() && !blank_edge).then_some((inner, marker.len() * 2 + end))
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
        ];
        for (md, slack) in table {
            assert_eq!(from_markdown(md), slack, "{md}");
        }
    }
}
