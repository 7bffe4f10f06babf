//! Fitting an outbound message to a channel's capabilities.
//!
//! Every outbound message passes through [`fit`] before its adapter renders it.
//! The rules, applied in this order and always the same way for the same input:
//!
//! | content | channel lacks | becomes |
//! |---|---|---|
//! | typing | `typing` | dropped |
//! | markdown text | `rich_text` | plain text (markers removed, links as `label (url)`) |
//! | list picker | `list_picker` | numbered menu |
//! | buttons | `buttons` | text, postback buttons numbered, links as `title: url` |
//! | carousel | `carousel` | each card's title, then its numbered postbacks and links |
//! | quick replies | `quick_replies` | text and an options line `1) Yes  2) No` |
//! | time picker | `time_picker` | numbered slots |
//! | rich link | `rich_link` | title, URL, description |
//! | rich content | more entries than `limits` allow | numbered text, as if unsupported |
//! | rich content | a title longer than `limits.max_title_length` | title shortened with `…` |
//! | attachments | `attachments` | text with the files' links |
//! | attachment | extension not allowed | refused: `blocked_file_extension`, reason 350 |
//! | attachment | larger than `max_size` | refused: `attachment_size_exceeds_limit`, reason 350 |
//! | receipt, unknown kind | — | refused: `invalid_content_type_to_agent`, reason 510 |
//! | any text | `max_text_length` | split at word boundaries into several messages |
//!
//! Numbered menus are returned as a [`Menu`] so a numeric reply can be mapped back.

use patchbay_plugin_sdk::capabilities::{
    DirectionCapabilities, Feature, RichLimits, SystemMessageKey, SystemMessages,
};
use patchbay_plugin_sdk::message::{
    Adjustment, AdjustmentAction, Attachment, Button, ButtonAction, Content, ReasonCode, TextFormat,
};

use crate::menu::Menu;
use crate::text::{TextLimit, markdown_to_plain, split_within};

/// Where a message is going.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The channel's outbound capabilities (already narrowed).
    pub capabilities: &'a DirectionCapabilities,
    /// The channel's system messages.
    pub system_messages: &'a SystemMessages,
    /// The language for system messages (`"en-US"`).
    pub language: &'a str,
}

/// The result of fitting one message.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Fitted {
    /// What to send, in order: none (dropped), one, or several (split).
    pub parts: Vec<Content>,
    /// Every change made, for the application.
    pub adjustments: Vec<Adjustment>,
    /// Set when rich choices were degraded to numbers.
    pub menu: Option<Menu>,
    /// Set when the message must not be sent at all.
    pub refusal: Option<Refusal>,
}

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The reason code for the `Failed` receipt.
    pub reason: ReasonCode,
    /// The localised system message explaining it.
    pub message: String,
}

/// Fits `content` to `target`.
///
/// ```
/// use patchbay_core::fit::{fit, Target};
/// use patchbay_plugin_sdk::capabilities::{DirectionCapabilities, SystemMessages};
/// use patchbay_plugin_sdk::message::{Content, QuickReply};
///
/// let sms = DirectionCapabilities::plain_text(160);
/// let target = Target { capabilities: &sms, system_messages: &SystemMessages::default(), language: "en" };
/// let content = Content::QuickReplies { text: "Continue?".into(), replies: vec![
///     QuickReply { title: "Yes".into(), payload: "Y".into() },
///     QuickReply { title: "No".into(), payload: "N".into() }] };
/// let fitted = fit(&content, target);
/// assert_eq!(fitted.parts, vec![Content::text("Continue?\n1) Yes  2) No")]);
/// assert_eq!(fitted.menu.unwrap().resolve("2").unwrap().payload, "N");
/// ```
pub fn fit(content: &Content, target: Target<'_>) -> Fitted {
    let caps = target.capabilities;
    let mut out = Fitted::default();
    let mut menu = Menu::default();

    let degraded: Option<String> = match content {
        Content::Typing { .. } if !caps.has(Feature::Typing) => {
            out.adjust(
                content,
                AdjustmentAction::Dropped,
                "the channel has no typing indicator",
            );
            return out;
        }
        Content::Text {
            text,
            format: TextFormat::Markdown,
        } if !caps.has(Feature::RichText) => {
            out.adjust(
                content,
                AdjustmentAction::Converted,
                "markdown flattened to plain text",
            );
            Some(markdown_to_plain(text))
        }
        Content::Attachments { attachments, text } => {
            if let Some(refusal) = check_attachments(attachments, target) {
                out.adjust(content, AdjustmentAction::Refused, &refusal.message);
                out.refusal = Some(refusal);
                return out;
            }
            if caps.has(Feature::Attachments) && caps.attachment_policy.enabled {
                None
            } else {
                out.adjust(
                    content,
                    AdjustmentAction::Converted,
                    "attachments sent as links",
                );
                let mut lines: Vec<String> = text.iter().cloned().collect();
                lines.extend(attachments.iter().map(attachment_line));
                Some(lines.join("\n"))
            }
        }
        Content::Receipt(_) | Content::Unknown(_) => {
            let message = target.system_messages.render(
                target.language,
                SystemMessageKey::InvalidContentTypeToAgent,
                "",
            );
            out.adjust(content, AdjustmentAction::Refused, &message);
            out.refusal = Some(Refusal {
                reason: ReasonCode::UNSUPPORTED,
                message,
            });
            return out;
        }
        rich => match rich.rich_type() {
            Some(kind) if !caps.supports_rich(kind) => {
                let text = degrade_rich(rich, &mut menu);
                out.adjust(
                    content,
                    AdjustmentAction::Converted,
                    "sent as numbered text",
                );
                Some(text)
            }
            Some(_) if exceeds_limits(rich, &caps.limits) => {
                let text = degrade_rich(rich, &mut menu);
                out.adjust(
                    content,
                    AdjustmentAction::Converted,
                    "more entries than the channel shows; sent as numbered text",
                );
                Some(text)
            }
            _ => None,
        },
    };

    let content = match degraded {
        Some(text) => Content::text(text),
        None => shorten_titles(content, caps.limits.max_title_length, &mut out),
    };
    if let Content::QuickReplies { replies, .. } = &content {
        // Some channels return a tapped quick reply as its text (Teams'
        // imBack): the label maps back to the payload.
        menu = Menu::labels(
            replies
                .iter()
                .map(|r| (r.title.as_str(), r.payload.as_str())),
        );
    }
    if !menu.is_empty() {
        out.menu = Some(menu);
    }
    out.parts = split_if_long(content, TextLimit::of(caps), &mut out.adjustments);
    out
}

impl Fitted {
    fn adjust(&mut self, content: &Content, action: AdjustmentAction, detail: &str) {
        self.adjustments.push(Adjustment {
            subject: content.kind().to_string(),
            action,
            detail: detail.to_string(),
        });
    }
}

/// True when native rich content has more entries than the channel carries.
fn exceeds_limits(content: &Content, limits: &RichLimits) -> bool {
    let over = |n: usize, max: Option<usize>| max.is_some_and(|max| n > max);
    match content {
        Content::Buttons { buttons, .. } => over(buttons.len(), limits.max_buttons),
        Content::Carousel { cards } => {
            over(cards.len(), limits.max_cards)
                || cards
                    .iter()
                    .any(|c| over(c.buttons.len(), limits.max_buttons))
        }
        Content::ListPicker { items, .. } => over(items.len(), limits.max_choices),
        Content::QuickReplies { replies, .. } => over(replies.len(), limits.max_choices),
        Content::TimePicker { slots, .. } => over(slots.len(), limits.max_choices),
        _ => false,
    }
}

/// Shortens button, choice and card titles to `max` characters.
fn shorten_titles(content: &Content, max: Option<usize>, out: &mut Fitted) -> Content {
    let Some(max) = max else {
        return content.clone();
    };
    let mut shortened = content.clone();
    let mut changed = false;
    let mut cut = |title: &mut String| {
        if title.chars().count() > max {
            *title = truncate(title, max);
            changed = true;
        }
    };
    match &mut shortened {
        Content::Buttons { buttons, .. } => buttons.iter_mut().for_each(|b| cut(&mut b.title)),
        Content::Carousel { cards } => {
            for card in cards {
                cut(&mut card.title);
                card.buttons.iter_mut().for_each(|b| cut(&mut b.title));
            }
        }
        Content::ListPicker { items, .. } => items.iter_mut().for_each(|i| cut(&mut i.title)),
        Content::QuickReplies { replies, .. } => {
            replies.iter_mut().for_each(|r| cut(&mut r.title));
        }
        _ => {}
    }
    if changed {
        out.adjust(
            content,
            AdjustmentAction::Truncated,
            &format!("titles shortened to {max} characters"),
        );
    }
    shortened
}

/// `text` cut to `max` characters, the last one an ellipsis.
fn truncate(text: &str, max: usize) -> String {
    let mut short: String = text.chars().take(max.saturating_sub(1)).collect();
    short.push('…');
    short
}

fn check_attachments(attachments: &[Attachment], target: Target<'_>) -> Option<Refusal> {
    let policy = &target.capabilities.attachment_policy;
    if !target.capabilities.has(Feature::Attachments) || !policy.enabled {
        // Sent as links: nothing of the file crosses the channel, nothing to refuse.
        return None;
    }
    for attachment in attachments {
        let ext = attachment.extension();
        if !policy.allows_extension(ext.as_deref()) {
            let shown = ext.unwrap_or_else(|| "(none)".into());
            return Some(Refusal {
                reason: ReasonCode::NOT_ALLOWED,
                message: target.system_messages.render(
                    target.language,
                    SystemMessageKey::BlockedFileExtension,
                    &shown,
                ),
            });
        }
        if let (Some(max), Some(size)) = (policy.max_size, attachment.size)
            && size > max
        {
            return Some(Refusal {
                reason: ReasonCode::NOT_ALLOWED,
                message: target.system_messages.render(
                    target.language,
                    SystemMessageKey::AttachmentSizeExceedsLimit,
                    &human_size(max),
                ),
            });
        }
    }
    None
}

fn human_size(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    const KIB: u64 = 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MB", bytes / MIB)
    } else if bytes >= KIB && bytes.is_multiple_of(KIB) {
        format!("{} KB", bytes / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

fn attachment_line(a: &Attachment) -> String {
    match &a.filename {
        Some(name) => format!("{name}: {}", a.url),
        None => a.url.clone(),
    }
}

/// Numbered lines for postback buttons, `title: url` lines for links.
fn button_lines(buttons: &[Button], menu: &mut Menu, indent: &str, lines: &mut Vec<String>) {
    for b in buttons {
        match &b.action {
            ButtonAction::Postback { payload } => {
                let n = menu.push(&b.title, payload);
                lines.push(format!("{indent}{n}. {}", b.title));
            }
            ButtonAction::Link { url } => lines.push(format!("{indent}{}: {url}", b.title)),
        }
    }
}

fn degrade_rich(content: &Content, menu: &mut Menu) -> String {
    let mut lines = Vec::new();
    match content {
        Content::ListPicker { title, items } => {
            lines.push(title.clone());
            for item in items {
                let n = menu.push(&item.title, &item.payload);
                match &item.subtitle {
                    Some(sub) => lines.push(format!("{n}. {} - {sub}", item.title)),
                    None => lines.push(format!("{n}. {}", item.title)),
                }
            }
        }
        Content::Buttons { text, buttons } => {
            lines.push(text.clone());
            button_lines(buttons, menu, "", &mut lines);
        }
        Content::Carousel { cards } => {
            for (i, card) in cards.iter().enumerate() {
                if i > 0 {
                    lines.push(String::new());
                }
                match &card.subtitle {
                    Some(sub) => lines.push(format!("{} - {sub}", card.title)),
                    None => lines.push(card.title.clone()),
                }
                if let Some(image) = &card.image_url {
                    lines.push(image.clone());
                }
                button_lines(&card.buttons, menu, "", &mut lines);
            }
        }
        Content::QuickReplies { text, replies } => {
            lines.push(text.clone());
            let options: Vec<String> = replies
                .iter()
                .map(|r| format!("{}) {}", menu.push(&r.title, &r.payload), r.title))
                .collect();
            lines.push(options.join("  "));
        }
        Content::TimePicker {
            title,
            slots,
            timezone,
        } => {
            match timezone {
                Some(tz) => lines.push(format!("{title} ({tz})")),
                None => lines.push(title.clone()),
            }
            for slot in slots {
                let label = match slot.duration_minutes {
                    Some(min) => format!("{} ({min} min)", slot.start),
                    None => slot.start.clone(),
                };
                let payload = slot.payload.as_deref().unwrap_or(&slot.start);
                let n = menu.push(&label, payload);
                lines.push(format!("{n}. {label}"));
            }
        }
        Content::RichLink {
            url,
            title,
            description,
            ..
        } => {
            lines.push(title.clone());
            lines.push(url.clone());
            if let Some(d) = description {
                lines.push(d.clone());
            }
        }
        other => lines.push(format!("[{}]", other.kind())),
    }
    lines.join("\n")
}

fn split_if_long(
    content: Content,
    limit: TextLimit,
    adjustments: &mut Vec<Adjustment>,
) -> Vec<Content> {
    if limit.is_none() {
        return vec![content];
    }
    match content {
        Content::Text { text, format } if !limit.fits(&text) => {
            let parts = split_within(&text, limit);
            adjustments.push(Adjustment {
                subject: "text".into(),
                action: AdjustmentAction::Split,
                detail: format!(
                    "split into {} messages of at most {}",
                    parts.len(),
                    limit.describe()
                ),
            });
            parts
                .into_iter()
                .map(|text| Content::Text { text, format })
                .collect()
        }
        Content::Attachments {
            attachments,
            text: Some(text),
        } if !limit.fits(&text) => {
            // The caption goes first as text; the files follow without one.
            let mut parts: Vec<Content> = split_within(&text, limit)
                .into_iter()
                .map(Content::text)
                .collect();
            adjustments.push(Adjustment {
                subject: "attachments".into(),
                action: AdjustmentAction::Split,
                detail: "caption sent as separate text".into(),
            });
            parts.push(Content::Attachments {
                attachments,
                text: None,
            });
            parts
        }
        other => vec![other],
    }
}
