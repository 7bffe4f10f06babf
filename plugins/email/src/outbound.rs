//! Canonical messages → MIME over SMTP; the relay's reply codes → delivered or
//! classified errors.
//!
//! Attachments are URLs in the canonical model but bytes in a mail, so a
//! message with attachments is a flow: one `GET` per file (`data:` URLs are
//! decoded in place), then the SMTP submission.

use mail_builder::MessageBuilder;
use mail_builder::headers::content_type::ContentType;
use mail_builder::mime::MimePart;
use patchbay_plugin_sdk::prelude::*;
use patchbay_plugin_sdk::signature::{base64_decode, base64_encode};
use patchbay_plugin_sdk::url::decode_data_url;
use patchbay_plugin_sdk::url::encode_component;
use pulldown_cmark_escape::escape_html;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::inbound::POSTBACK_MARK;
use crate::{Email, is_address};

/// Everything the mail needs, carried through the attachment downloads.
#[derive(Debug, Serialize, Deserialize)]
struct Draft {
    to: String,
    message_id: String,
    subject: String,
    in_reply_to: Option<String>,
    references: Vec<String>,
    text: String,
    html: Option<String>,
    date_secs: i64,
    /// Files still to download.
    pending: Vec<Attachment>,
    /// Files downloaded: name, type, base64 bytes.
    files: Vec<(String, String, String)>,
}

pub(crate) fn render(email: &Email, message: &Message, now: Timestamp) -> Step {
    let to = message.conversation.id.trim();
    if !is_address(to) {
        return Step::fail(
            AdapterError::permanent(format!("conversation id {to:?} is not an email address"))
                .with_reason(ReasonCode::INVALID_DESTINATION),
        );
    }
    let reply = ReplyLink::new(email, message);
    let (text, html, pending) = match &message.content {
        Content::Text { text, format } => match format {
            TextFormat::Markdown => (text.clone(), Some(markdown_html(text)), Vec::new()),
            _ => (text.clone(), None, Vec::new()),
        },
        Content::Attachments { attachments, text } => {
            (text.clone().unwrap_or_default(), None, attachments.clone())
        }
        Content::Buttons { text, buttons } => {
            let html = format!("{}{}", paragraphs(text), button_row(buttons, &reply));
            let plain = format!("{text}\n\n{}", button_lines(buttons, &reply));
            (plain, Some(page(&html)), Vec::new())
        }
        Content::Carousel { cards } => {
            let html: String = cards.iter().map(|c| card_html(c, &reply)).collect();
            let plain = cards
                .iter()
                .map(|c| {
                    let mut lines = vec![c.title.clone()];
                    lines.extend(c.subtitle.clone());
                    lines.push(button_lines(&c.buttons, &reply));
                    lines.join("\n")
                })
                .collect::<Vec<_>>()
                .join("\n\n");
            (plain, Some(page(&html)), Vec::new())
        }
        Content::RichLink {
            url,
            title,
            image_url,
            description,
        } => {
            let card = Card {
                title: title.clone(),
                subtitle: description.clone(),
                image_url: image_url.clone(),
                buttons: vec![Button::link("Open", url)],
            };
            let plain = match description {
                Some(d) => format!("{title}\n{d}\n{url}"),
                None => format!("{title}\n{url}"),
            };
            (plain, Some(page(&card_html(&card, &reply))), Vec::new())
        }
        // Nothing to say by mail.
        Content::EndSession { .. } | Content::ContextData { .. } => {
            return Step::delivered(None);
        }
        other => return Step::fail(AdapterError::unsupported("email", other.kind())),
    };
    let (in_reply_to, references) = threading(message);
    let draft = Draft {
        to: to.to_string(),
        message_id: format!("{}@{}", local_id(message, now), email.from.domain()),
        subject: reply.subject.clone(),
        in_reply_to,
        references,
        text,
        html,
        date_secs: now.as_secs(),
        pending,
        files: Vec::new(),
    };
    next(email, draft)
}

/// The id part of `Message-ID`: Patchbay's message id, which makes the header
/// the provider message id the application can match bounces against.
fn local_id(message: &Message, now: Timestamp) -> String {
    let id: String = message
        .id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-._".contains(*c))
        .collect();
    if id.is_empty() {
        format!("patchbay.{}", now.0)
    } else {
        id
    }
}

/// `In-Reply-To` and `References`: from the context the inbound mail carried
/// (`email_message_id`, `email_references`) when the application passes it
/// back, else from the thread id alone — enough for clients to thread.
fn threading(message: &Message) -> (Option<String>, Vec<String>) {
    let Some(thread) = &message.conversation.thread_id else {
        return (None, Vec::new());
    };
    let mut references: Vec<String> = message
        .context
        .get("email_references")
        .and_then(Value::as_array)
        .map(|ids| {
            ids.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if !references.contains(thread) {
        references.insert(0, thread.clone());
    }
    let in_reply_to = message
        .context
        .get("email_message_id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| references.last().cloned());
    (in_reply_to, references)
}

/// The subject, and `mailto:` reply links that carry a postback payload.
struct ReplyLink {
    subject: String,
    address: String,
}

impl ReplyLink {
    fn new(email: &Email, message: &Message) -> Self {
        let subject = match message.context.get("email_subject").and_then(Value::as_str) {
            Some(s) if message.conversation.thread_id.is_some() && !is_reply(s) => {
                format!("Re: {s}")
            }
            Some(s) => s.to_string(),
            None => email.subject.clone(),
        };
        ReplyLink {
            subject,
            address: email.from.address.clone(),
        }
    }

    fn href(&self, button: &Button) -> String {
        match &button.action {
            ButtonAction::Link { url } => url.clone(),
            ButtonAction::Postback { payload } => {
                let base = if is_reply(&self.subject) {
                    self.subject.clone()
                } else {
                    format!("Re: {}", self.subject)
                };
                format!(
                    "mailto:{}?subject={}",
                    self.address,
                    encode_component(&format!("{base} {POSTBACK_MARK}{payload}]"))
                )
            }
        }
    }
}

fn is_reply(subject: &str) -> bool {
    subject
        .get(..3)
        .is_some_and(|p| p.eq_ignore_ascii_case("re:"))
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // Writing to a String cannot fail.
    let _ = escape_html(&mut out, text);
    out
}

fn paragraphs(text: &str) -> String {
    text.split("\n\n")
        .map(|p| format!("<p>{}</p>", escape(p).replace('\n', "<br>")))
        .collect()
}

fn page(body: &str) -> String {
    format!(
        "<!DOCTYPE html><html><body style=\"font-family:Arial,Helvetica,sans-serif;font-size:14px;color:#222\">{body}</body></html>"
    )
}

fn markdown_html(text: &str) -> String {
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, pulldown_cmark::Parser::new(text));
    page(&html)
}

const BUTTON_STYLE: &str = "display:inline-block;padding:8px 14px;margin:4px 4px 4px 0;border-radius:4px;background:#0b5cad;color:#ffffff;text-decoration:none";

fn button_row(buttons: &[Button], reply: &ReplyLink) -> String {
    if buttons.is_empty() {
        return String::new();
    }
    let links: String = buttons
        .iter()
        .map(|b| {
            format!(
                "<a href=\"{}\" style=\"{BUTTON_STYLE}\">{}</a>",
                escape(&reply.href(b)),
                escape(&b.title)
            )
        })
        .collect();
    format!("<p>{links}</p>")
}

fn button_lines(buttons: &[Button], reply: &ReplyLink) -> String {
    buttons
        .iter()
        .map(|b| format!("- {}: {}", b.title, reply.href(b)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn card_html(card: &Card, reply: &ReplyLink) -> String {
    let mut html = String::from(
        "<div style=\"border:1px solid #dddddd;border-radius:6px;padding:12px;margin:8px 0;max-width:480px\">",
    );
    if let Some(image) = &card.image_url {
        html.push_str(&format!(
            "<img src=\"{}\" alt=\"{}\" style=\"max-width:100%;border-radius:4px\">",
            escape(image),
            escape(&card.title)
        ));
    }
    html.push_str(&format!(
        "<h3 style=\"margin:8px 0 4px\">{}</h3>",
        escape(&card.title)
    ));
    if let Some(sub) = &card.subtitle {
        html.push_str(&format!(
            "<p style=\"margin:0;color:#555555\">{}</p>",
            escape(sub)
        ));
    }
    html.push_str(&button_row(&card.buttons, reply));
    html.push_str("</div>");
    html
}

/// Downloads the next file, or submits the mail when all are in.
fn next(email: &Email, mut draft: Draft) -> Step {
    while let Some(attachment) = draft.pending.first().cloned() {
        if let Some((media_type, bytes)) = decode_data_url(&attachment.url) {
            draft.pending.remove(0);
            push_file(&mut draft, &attachment, Some(&media_type), &bytes);
            continue;
        }
        return Step::request(
            HttpRequestSpec::get(&attachment.url),
            &Pending::Fetch { draft },
        );
    }
    let message = match build(email, &draft) {
        Ok(bytes) => bytes,
        Err(e) => return Step::fail(AdapterError::permanent(format!("building the mail: {e}"))),
    };
    Step::request(
        SmtpRequestSpec {
            relay: email.relay.clone(),
            from: email.from.address.clone(),
            to: vec![draft.to.clone()],
            message,
        },
        &Pending::Send {
            message_id: draft.message_id,
        },
    )
}

/// Where a send left off while the host made a request.
#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Pending {
    /// Downloading the first of `draft.pending`.
    Fetch { draft: Draft },
    /// Submitting the finished mail.
    Send { message_id: String },
}

fn push_file(draft: &mut Draft, attachment: &Attachment, served_type: Option<&str>, bytes: &[u8]) {
    let name = attachment
        .filename
        .clone()
        .or_else(|| {
            let path = attachment.url.split(['?', '#']).next().unwrap_or_default();
            path.rsplit('/')
                .next()
                .filter(|n| !n.is_empty() && !n.starts_with("data:"))
                .map(str::to_string)
        })
        .unwrap_or_else(|| format!("attachment-{}", draft.files.len() + 1));
    let content_type = attachment
        .content_type
        .clone()
        .or_else(|| served_type.map(str::to_string))
        .unwrap_or_else(|| "application/octet-stream".into());
    draft.files.push((name, content_type, base64_encode(bytes)));
}

fn build(email: &Email, draft: &Draft) -> std::io::Result<Vec<u8>> {
    // Fixed boundaries (unique per message id) keep rendering deterministic.
    let local = draft.message_id.split('@').next().unwrap_or_default();
    let boundary = |kind: &str| format!("patchbay-{kind}-{local}");
    let text = MimePart::new("text/plain", draft.text.as_str());
    let mut body = match &draft.html {
        Some(html) => MimePart::new(
            ContentType::new("multipart/alternative").attribute("boundary", boundary("alt")),
            vec![text, MimePart::new("text/html", html.as_str())],
        ),
        None => text,
    };
    if !draft.files.is_empty() {
        let mut parts = vec![body];
        for (name, content_type, b64) in &draft.files {
            let bytes = base64_decode(b64).unwrap_or_default();
            parts.push(MimePart::new(content_type.as_str(), bytes).attachment(name.as_str()));
        }
        body = MimePart::new(
            ContentType::new("multipart/mixed").attribute("boundary", boundary("mixed")),
            parts,
        );
    }
    let from: mail_builder::headers::address::Address<'_> = match &email.from.name {
        Some(name) => (name.as_str(), email.from.address.as_str()).into(),
        None => email.from.address.as_str().into(),
    };
    let mut builder = MessageBuilder::new()
        .from(from)
        .to(draft.to.as_str())
        .subject(draft.subject.as_str())
        .message_id(draft.message_id.as_str())
        .date(draft.date_secs)
        .body(body);
    if let Some(parent) = &draft.in_reply_to {
        builder = builder.in_reply_to(parent.as_str());
    }
    if !draft.references.is_empty() {
        let ids: Vec<&str> = draft.references.iter().map(String::as_str).collect();
        builder = builder.references(ids);
    }
    builder.write_to_vec()
}

pub(crate) fn resume(
    email: &Email,
    continuation: Continuation,
    response: ProviderResponse,
    _now: Timestamp,
) -> Step {
    match continuation.decode() {
        Ok(Pending::Fetch { draft }) => fetched(email, draft, response),
        Ok(Pending::Send { message_id }) => sent(message_id, response),
        Err(e) => Step::fail(e),
    }
}

fn fetched(email: &Email, mut draft: Draft, response: ProviderResponse) -> Step {
    let attachment = draft.pending.remove(0);
    if !response.is_success() {
        let msg = format!(
            "fetching attachment {} answered HTTP {}",
            attachment.filename.as_deref().unwrap_or("(unnamed)"),
            response.status
        );
        return Step::fail(if response.status >= 500 || response.status == 429 {
            AdapterError::transient(msg)
        } else {
            AdapterError::permanent(msg).with_reason(ReasonCode::INVALID_STRUCTURE)
        });
    }
    let served = response
        .header("content-type")
        .map(|ct| ct.split(';').next().unwrap_or(ct).trim().to_string());
    push_file(&mut draft, &attachment, served.as_deref(), &response.body);
    next(email, draft)
}

/// SMTP reply codes: 2xx accepted, 4xx try later, 5xx never.
fn sent(message_id: String, response: ProviderResponse) -> Step {
    let reply = String::from_utf8_lossy(&response.body).trim().to_string();
    let detail = format!("SMTP relay answered {} {reply}", response.status);
    match response.status {
        200..=299 => Step::delivered(Some(message_id)),
        400..=499 => Step::fail(AdapterError::transient(detail)),
        // No such mailbox, not local, or a bad address.
        550 | 551 | 553 => {
            Step::fail(AdapterError::permanent(detail).with_reason(ReasonCode::INVALID_DESTINATION))
        }
        // Too big for the mailbox.
        552 => {
            Step::fail(AdapterError::permanent(detail).with_reason(ReasonCode::INVALID_STRUCTURE))
        }
        // Refused as policy or spam.
        554 => Step::fail(AdapterError::permanent(detail).with_reason(ReasonCode::NOT_ALLOWED)),
        530 | 534 | 535 => Step::fail(AdapterError::permanent(format!(
            "{detail}; check settings.smtp.username and secrets.smtp_password"
        ))),
        _ => Step::fail(AdapterError::permanent(detail)),
    }
}
