//! Cutting quoted replies and signatures from a plain-text mail body, so the
//! application reads what the customer wrote this time.
//!
//! Recognised, in the order a reply usually has them: a signature delimiter
//! (`-- `), an attribution line (`On … wrote:`, possibly wrapped over two
//! lines), an Outlook header block (`-----Original Message-----`, or a rule or
//! blank line followed by `From:` and `Sent:`/`Date:`), and a trailing block of
//! `>` lines. Everything from the first of these on is cut.

/// The new text of a reply. Returns the whole text when cutting would leave
/// nothing (a message that is only a quote is still a message).
pub(crate) fn strip(text: &str) -> String {
    let text = text.replace("\r\n", "\n");
    let lines: Vec<&str> = text.lines().collect();
    let cut = (0..lines.len())
        .find(|&i| starts_quote(&lines, i))
        .unwrap_or(lines.len());
    let kept = lines[..cut].join("\n");
    let kept = kept.trim();
    if kept.is_empty() {
        text.trim().to_string()
    } else {
        kept.to_string()
    }
}

fn starts_quote(lines: &[&str], i: usize) -> bool {
    let line = lines[i].trim_end();
    let next = lines.get(i + 1).map_or("", |l| l.trim());
    // "-- " is the standard delimiter; "--" is what many clients leave of it.
    if line == "--" || line == "-- " {
        return true;
    }
    let trimmed = line.trim();
    if trimmed.starts_with("On ")
        && (trimmed.ends_with("wrote:") || (next.ends_with("wrote:") && next.len() < 80))
    {
        return true;
    }
    if trimmed.starts_with("-----Original Message-----") {
        return true;
    }
    // Outlook's rule above its header block goes with it.
    let is_rule = trimmed.len() >= 10 && trimmed.chars().all(|c| c == '_' || c == '-');
    if is_rule && i + 1 < lines.len() && lines[i + 1].trim().starts_with("From:") {
        return starts_quote(lines, i + 1);
    }
    if trimmed.starts_with("From:") {
        let after_break = i == 0
            || lines[i - 1].trim().is_empty()
            || lines[i - 1].trim().chars().all(|c| c == '_' || c == '-');
        let header_block = lines[i + 1..]
            .iter()
            .take(4)
            .any(|l| l.trim().starts_with("Sent:") || l.trim().starts_with("Date:"));
        if after_break && header_block {
            return true;
        }
    }
    // Only a quote that runs to the end (ignoring blanks) is cut: interleaved
    // answers between quoted lines are kept whole.
    trimmed.starts_with('>')
        && lines[i..]
            .iter()
            .all(|l| l.trim().is_empty() || l.trim().starts_with('>'))
}

#[cfg(test)]
mod tests {
    use super::strip;

    #[test]
    fn cuts_what_is_quoted() {
        let cases = [
            (
                "Yes please.\n\nOn Fri, 21 Nov 2026 at 09:00, Support <s@shop.example> wrote:\n> Shall we?\n",
                "Yes please.",
            ),
            (
                "Thanks!\r\n\r\nOn Fri, Nov 21, 2026 at 9:00 AM Shop Support <\r\nsupport@shop.example> wrote:\r\n\r\n> Your order shipped.\r\n",
                "Thanks!",
            ),
            (
                "See attached.\n\n-----Original Message-----\nFrom: Support\nSent: Friday\n\nold",
                "See attached.",
            ),
            (
                "Tomorrow works.\n\n________________________________\nFrom: Shop Support <s@shop.example>\nSent: Friday, 21 November 2026 09:00\nTo: Alice\nSubject: Delivery\n\nWhen?",
                "Tomorrow works.",
            ),
            ("Great\n\n-- \nAlice\nSent from my phone", "Great"),
            ("Plain note\n> quoted\n> more\n\n", "Plain note"),
            // Interleaved answers stay whole.
            (
                "> Which colour?\nBlue.\n> Which size?\nM.",
                "> Which colour?\nBlue.\n> Which size?\nM.",
            ),
            // Only a quote: kept, not emptied.
            ("> just forwarding this", "> just forwarding this"),
            // "From:" in running text is not a header block.
            (
                "From: my experience, it works.",
                "From: my experience, it works.",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(strip(input), want, "{input:?}");
        }
    }
}
