//! Inbound mail — raw MIME, SendGrid Inbound Parse, Mailgun routes — →
//! canonical messages.

use mail_parser::decoders::html::html_to_text;
use mail_parser::{HeaderValue, MessageParser, MimeHeaders, PartType};
use patchbay_plugin_sdk::prelude::*;
use patchbay_plugin_sdk::signature::{
    auth_credentials, base64_decode, base64_encode, constant_time_eq, hmac_sha256_hex, verify_hex,
};
use serde_json::json;

use crate::form::{self, Field};
use crate::{Email, InboundProvider, Mailbox, quote};

/// Mailgun's timestamps must be this close to the host's clock.
const MAILGUN_WINDOW_SECS: i64 = 15 * 60;

/// The subject marker of a reply sent from a postback button's link.
pub(crate) const POSTBACK_MARK: &str = "[pb:";

/// What the request is, by its content type.
enum Source {
    Mime,
    Form(Vec<Field>),
}

fn source(request: &InboundRequest) -> Result<Source, String> {
    let content_type = request.header("content-type").unwrap_or_default();
    if content_type
        .trim()
        .to_ascii_lowercase()
        .starts_with("message/rfc822")
    {
        return Ok(Source::Mime);
    }
    form::parse(content_type, &request.body)
        .map(Source::Form)
        .ok_or_else(|| format!("expected message/rfc822 or a form post, got {content_type:?}"))
}

pub(crate) fn verify(
    email: &Email,
    request: &InboundRequest,
    now: Timestamp,
) -> Result<Verdict, Rejection> {
    let source = source(request).map_err(Rejection::bad_request)?;
    let message_id = match (&source, email.inbound) {
        (Source::Form(fields), InboundProvider::Mailgun) => {
            check_mailgun(email, fields, now)?;
            match form::text(fields, "body-mime") {
                Some(raw) => mime_message_id(raw.as_bytes())?,
                None => mailgun_message_id(fields),
            }
        }
        (Source::Form(fields), InboundProvider::Sendgrid) => {
            check_token(email, request)?;
            match fields
                .iter()
                .find(|f| f.name == "email" && f.file.is_none())
            {
                Some(raw) => mime_message_id(&raw.value)?,
                // Parsed fields: the header block may be missing; the mail is not.
                None => {
                    let headers = form::text(fields, "headers").unwrap_or_default();
                    mime_message_id(headers.as_bytes()).unwrap_or_default()
                }
            }
        }
        (Source::Mime, _) => {
            check_token(email, request)?;
            mime_message_id(&request.body)?
        }
    };
    // A mail the worker could never turn into a message is refused now (400)
    // rather than acknowledged and dead-lettered.
    convert(email, request).map_err(Rejection::bad_request)?;
    Ok(Verdict::accept(
        message_id.map(|id| format!("message-id:{id}")),
    ))
}

/// The `Message-ID` of a raw message, reading its headers only.
fn mime_message_id(raw: &[u8]) -> Result<Option<String>, Rejection> {
    let message = MessageParser::default()
        .parse_headers(raw)
        .ok_or_else(|| Rejection::bad_request("not a parsable email"))?;
    Ok(message.message_id().map(str::to_string))
}

/// The shared inbound token, as a bearer token, a basic-auth password or a
/// `token` query parameter (SendGrid can only put credentials in the URL).
fn check_token(email: &Email, request: &InboundRequest) -> Result<(), Rejection> {
    let Some(expected) = &email.inbound_token else {
        return Err(Rejection::unauthorized(
            "this channel takes no raw MIME or SendGrid posts until secrets.inbound_token is set",
        ));
    };
    let authorization = request.header("authorization").unwrap_or_default();
    let from_header = if let Some(token) = auth_credentials(authorization, "Bearer") {
        Some(token.to_string())
    } else if let Some(basic) = auth_credentials(authorization, "Basic") {
        base64_decode(basic.trim())
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|pair| {
                pair.split_once(':')
                    .map(|(_, password)| password.to_string())
            })
    } else {
        None
    };
    let from_query = request.query("token");
    let given = from_header
        .or(from_query)
        .ok_or_else(|| Rejection::unauthorized("missing inbound token"))?;
    if constant_time_eq(given.as_bytes(), expected.expose().as_bytes()) {
        Ok(())
    } else {
        Err(Rejection::unauthorized("inbound token mismatch"))
    }
}

/// Mailgun: hex `HMAC-SHA256(signing key, timestamp + token)`, timestamp fresh.
fn check_mailgun(email: &Email, fields: &[Field], now: Timestamp) -> Result<(), Rejection> {
    let key = email
        .mailgun_signing_key
        .as_ref()
        .ok_or_else(|| Rejection::unauthorized("no Mailgun signing key configured"))?;
    let (Some(timestamp), Some(token), Some(signature)) = (
        form::text(fields, "timestamp"),
        form::text(fields, "token"),
        form::text(fields, "signature"),
    ) else {
        return Err(Rejection::unauthorized(
            "missing Mailgun timestamp, token or signature",
        ));
    };
    let expected = hmac_sha256_hex(
        key.expose().as_bytes(),
        format!("{timestamp}{token}").as_bytes(),
    );
    if !verify_hex(signature, &expected) {
        return Err(Rejection::unauthorized("Mailgun signature mismatch"));
    }
    let sent: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| Rejection::unauthorized("Mailgun timestamp is not a number"))?;
    if (now.as_secs() - sent).abs() > MAILGUN_WINDOW_SECS {
        return Err(Rejection::unauthorized(
            "Mailgun timestamp outside the 15-minute window",
        ));
    }
    Ok(())
}

pub(crate) fn parse(email: &Email, request: &InboundRequest) -> Step {
    match convert(email, request) {
        Ok(message) => Step::messages(vec![message]),
        Err(e) => Step::fail(AdapterError::bad_input(e)),
    }
}

/// The stored request as a canonical message, or why it cannot be one.
fn convert(email: &Email, request: &InboundRequest) -> Result<Message, String> {
    let mail = match source(request)? {
        Source::Mime => Mail::from_mime(&request.body),
        Source::Form(fields) => match email.inbound {
            InboundProvider::Mailgun => Mail::from_mailgun(&fields),
            InboundProvider::Sendgrid => Mail::from_sendgrid(&fields),
        },
    };
    mail.and_then(Mail::into_message)
        .ok_or_else(|| "email without a valid From address".to_string())
}

/// A received email, whatever it came in.
#[derive(Debug, Default)]
struct Mail {
    from: Option<Mailbox>,
    to: Vec<String>,
    cc: Vec<String>,
    subject: Option<String>,
    message_id: Option<String>,
    in_reply_to: Vec<String>,
    references: Vec<String>,
    text: Option<String>,
    html: Option<String>,
    files: Vec<File>,
}

#[derive(Debug)]
struct File {
    filename: Option<String>,
    content_type: Option<String>,
    bytes: Vec<u8>,
}

impl Mail {
    fn from_mime(raw: &[u8]) -> Option<Mail> {
        let message = MessageParser::default().parse(raw)?;
        let addresses = |list: Option<&mail_parser::Address<'_>>| -> Vec<String> {
            list.into_iter()
                .flat_map(|a| a.iter())
                .filter_map(|a| a.address())
                .map(str::to_string)
                .collect()
        };
        let from = message.from().and_then(|f| f.first()).and_then(|a| {
            Some(Mailbox {
                name: a.name().map(str::to_string),
                address: a.address()?.to_string(),
            })
        });
        let files = message
            .attachments()
            .map(|part| File {
                filename: part.attachment_name().map(str::to_string),
                content_type: part.content_type().map(form::media_type),
                bytes: part.contents().to_vec(),
            })
            .collect();
        Some(Mail {
            from,
            to: addresses(message.to()),
            cc: addresses(message.cc()),
            subject: message.subject().map(str::to_string),
            message_id: message.message_id().map(str::to_string),
            in_reply_to: id_list(message.in_reply_to()),
            references: id_list(message.references()),
            text: message.body_text(0).map(|t| t.into_owned()),
            // Only an HTML part the sender wrote; mail-parser would otherwise
            // make one from the text.
            html: message
                .html_body
                .iter()
                .filter_map(|&i| message.parts.get(i as usize))
                .find_map(|part| match &part.body {
                    PartType::Html(html) => Some(html.to_string()),
                    _ => None,
                }),
            files,
        })
    }

    /// SendGrid Inbound Parse: the raw message in `email` when "POST the raw,
    /// full MIME message" is on, else parsed fields plus the header block.
    fn from_sendgrid(fields: &[Field]) -> Option<Mail> {
        if let Some(raw) = fields
            .iter()
            .find(|f| f.name == "email" && f.file.is_none())
        {
            return Mail::from_mime(&raw.value);
        }
        let headers = form::text(fields, "headers").unwrap_or_default();
        let mut mail = Mail::from_mime(format!("{}\r\n\r\n", headers.trim_end()).as_bytes())
            .unwrap_or_default();
        if mail.from.is_none() {
            mail.from = form::text(fields, "from").and_then(Mailbox::parse);
        }
        if let Some(subject) = form::text(fields, "subject") {
            mail.subject = Some(subject.to_string());
        }
        mail.text = form::text(fields, "text").map(str::to_string);
        mail.html = form::text(fields, "html").map(str::to_string);
        mail.files = files(fields);
        Some(mail)
    }

    /// Mailgun routes: `body-mime` for "store and notify … mime" URLs, else
    /// parsed fields and `message-headers` as JSON pairs.
    fn from_mailgun(fields: &[Field]) -> Option<Mail> {
        if let Some(raw) = form::text(fields, "body-mime") {
            return Mail::from_mime(raw.as_bytes());
        }
        let headers: Vec<(String, String)> = form::text(fields, "message-headers")
            .and_then(|h| serde_json::from_str(h).ok())
            .unwrap_or_default();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let address_list = |name: &str| -> Vec<String> {
            header(name)
                .into_iter()
                .flat_map(|v| v.split(','))
                .filter_map(Mailbox::parse)
                .map(|m| m.address)
                .collect()
        };
        Some(Mail {
            from: form::text(fields, "from")
                .or_else(|| form::text(fields, "sender"))
                .and_then(Mailbox::parse),
            to: address_list("To"),
            cc: address_list("Cc"),
            subject: form::text(fields, "subject").map(str::to_string),
            message_id: mailgun_message_id(fields),
            in_reply_to: header("In-Reply-To").map(ids).unwrap_or_default(),
            references: header("References").map(ids).unwrap_or_default(),
            text: form::text(fields, "body-plain").map(str::to_string),
            html: form::text(fields, "body-html").map(str::to_string),
            files: files(fields),
        })
    }

    fn into_message(self) -> Option<Message> {
        let from = self.from?;
        let customer = from.address.to_ascii_lowercase();
        let full_text = match (&self.text, &self.html) {
            (Some(text), _) => text.replace("\r\n", "\n"),
            (None, Some(html)) => html_to_text(html),
            (None, None) => String::new(),
        };
        let text = quote::strip(&full_text);
        let postback = self.subject.as_deref().and_then(postback_payload);
        let content = if let Some(payload) = postback {
            Content::Postback {
                payload,
                text: None,
            }
        } else if !self.files.is_empty() {
            Content::Attachments {
                attachments: self.files.iter().map(data_url_attachment).collect(),
                text: (!text.is_empty()).then(|| text.clone()),
            }
        } else {
            Content::text(text.clone())
        };
        let mut m = Message::new(customer.as_str(), content);
        m.sender = Some(Participant {
            id: customer.clone(),
            name: from.name,
        });
        m.recipient = self
            .to
            .first()
            .map(|to| Participant::id(to.to_ascii_lowercase()));
        m.provider_message_id = self.message_id.clone();
        // Every message of a mail thread names its first message in References.
        m.conversation.thread_id = self
            .references
            .first()
            .or(self.in_reply_to.first())
            .or(self.message_id.as_ref())
            .cloned();
        let context = &mut m.context;
        if let Some(subject) = &self.subject {
            context.insert("email_subject".into(), json!(subject));
        }
        if let Some(id) = &self.message_id {
            context.insert("email_message_id".into(), json!(id));
            // What a reply's References header should be.
            let mut chain = self.references.clone();
            if chain.is_empty() {
                chain.extend(self.in_reply_to.iter().cloned());
            }
            chain.push(id.clone());
            context.insert("email_references".into(), json!(chain));
        }
        if full_text.trim() != text {
            context.insert("email_full_text".into(), json!(full_text));
        }
        if let Some(html) = &self.html {
            context.insert("email_html".into(), json!(html));
        }
        for (key, list) in [("email_to", &self.to), ("email_cc", &self.cc)] {
            if !list.is_empty() {
                context.insert(key.into(), json!(list));
            }
        }
        Some(m)
    }
}

/// Mailgun's `Message-Id` field, or the header of that name.
fn mailgun_message_id(fields: &[Field]) -> Option<String> {
    let from_headers = || {
        let headers: Vec<(String, String)> = form::text(fields, "message-headers")
            .and_then(|h| serde_json::from_str(h).ok())
            .unwrap_or_default();
        headers
            .into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("Message-Id"))
            .map(|(_, v)| v)
    };
    form::text(fields, "Message-Id")
        .map(str::to_string)
        .or_else(from_headers)
        .and_then(|id| ids(&id).into_iter().next())
}

/// File fields of a provider form (`attachment1`, `attachment-1`…).
fn files(fields: &[Field]) -> Vec<File> {
    fields
        .iter()
        .filter_map(|f| {
            let meta = f.file.as_ref()?;
            Some(File {
                filename: Some(meta.filename.clone()),
                content_type: meta.content_type.clone(),
                bytes: f.value.clone(),
            })
        })
        .collect()
}

/// Mail attachments live inside the mail; they reach the application inline.
fn data_url_attachment(file: &File) -> Attachment {
    let content_type = file
        .content_type
        .clone()
        .unwrap_or_else(|| "application/octet-stream".into());
    Attachment {
        url: format!("data:{content_type};base64,{}", base64_encode(&file.bytes)),
        filename: file.filename.clone(),
        content_type: Some(content_type),
        size: Some(file.bytes.len() as u64),
    }
}

/// The payload of a `[pb:<payload>]` subject marker.
fn postback_payload(subject: &str) -> Option<String> {
    let start = subject.find(POSTBACK_MARK)? + POSTBACK_MARK.len();
    let len = subject[start..].rfind(']')?;
    let payload = subject[start..start + len].trim();
    (!payload.is_empty()).then(|| payload.to_string())
}

fn id_list(value: &HeaderValue<'_>) -> Vec<String> {
    match value {
        HeaderValue::Text(id) => vec![id.to_string()],
        HeaderValue::TextList(ids) => ids.iter().map(|id| id.to_string()).collect(),
        _ => Vec::new(),
    }
}

/// `<a@b> <c@d>` → `["a@b", "c@d"]`.
fn ids(text: &str) -> Vec<String> {
    text.split('<')
        .filter_map(|part| part.split_once('>'))
        .map(|(id, _)| id.trim().to_string())
        .filter(|id| !id.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postback_markers_and_id_lists() {
        assert_eq!(
            postback_payload("Re: Your order [pb:ORDER_STATUS]").as_deref(),
            Some("ORDER_STATUS")
        );
        assert_eq!(
            postback_payload("Re: [pb:{\"a\":[1]}]").as_deref(),
            Some("{\"a\":[1]}")
        );
        assert_eq!(postback_payload("Re: [pb:]"), None);
        assert_eq!(postback_payload("Re: Your order"), None);
        assert_eq!(
            ids("<a@b.example>  <c@d.example>"),
            ["a@b.example", "c@d.example"]
        );
    }
}
