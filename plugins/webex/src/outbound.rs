//! Canonical messages → `POST /v1/messages`; Webex's answers → delivered or
//! classified errors.

use patchbay_plugin_sdk::prelude::*;
use serde_json::{Value, json};

use serde::{Deserialize, Serialize};

use crate::{Pending, Webex, cards};

pub(crate) fn render(webex: &Webex, message: &Message) -> Step {
    let to = destination(message);
    let mut body = to.clone();
    // Files beyond the first go in follow-up messages: one file per message.
    let mut more_files: Vec<String> = Vec::new();
    match &message.content {
        Content::Text { text, format } => {
            let field = match format {
                TextFormat::Markdown => "markdown",
                _ => "text",
            };
            body[field] = json!(text);
        }
        Content::Attachments { attachments, text } => {
            if let Some(text) = text {
                body["text"] = json!(text);
            }
            let mut urls = attachments.iter().map(|a| a.url.clone());
            body["files"] = json!(urls.next().into_iter().collect::<Vec<_>>());
            more_files = urls.collect();
        }
        Content::Buttons { text, buttons } => with_card(&mut body, cards::buttons(text, buttons)),
        Content::ListPicker { title, items } => {
            with_card(&mut body, cards::list_picker(title, items))
        }
        Content::Carousel { cards } => with_card(&mut body, cards::carousel(cards)),
        // Webex has no way to show these; nothing is sent.
        Content::EndSession { .. } | Content::ContextData { .. } => {
            return Step::delivered(None);
        }
        other => return Step::fail(AdapterError::unsupported("Webex", other.kind())),
    }
    send(
        webex,
        body,
        Sending {
            to,
            more_files,
            first_id: None,
        },
    )
}

/// A message being sent: the files still to go, one per follow-up message.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Sending {
    /// `roomId`/`parentId` or `toPersonEmail`, repeated in each follow-up.
    to: Value,
    more_files: Vec<String>,
    /// Webex's id for the first message: the one the application sees as its own.
    first_id: Option<String>,
}

/// `roomId` (with `parentId` for a thread), or `toPersonEmail` when the
/// conversation is a person's address.
fn destination(message: &Message) -> Value {
    let conversation = &message.conversation;
    if conversation.id.contains('@') {
        return json!({"toPersonEmail": conversation.id});
    }
    let mut body = json!({"roomId": conversation.id});
    if let Some(parent) = &conversation.thread_id {
        body["parentId"] = json!(parent);
    }
    body
}

fn with_card(body: &mut Value, rendered: cards::Rendered) {
    body["markdown"] = json!(rendered.fallback);
    body["attachments"] = json!([{"contentType": cards::CONTENT_TYPE, "content": rendered.card}]);
}

fn send(webex: &Webex, body: Value, sending: Sending) -> Step {
    let url = format!("{}/v1/messages", webex.api);
    Step::request(
        webex.api_request(HttpRequestSpec::post_json(url, &body)),
        &Pending::Send(sending),
    )
}

pub(crate) fn resume(webex: &Webex, mut sending: Sending, response: ProviderResponse) -> Step {
    if !response.is_success() {
        return Step::fail(classify(&response));
    }
    if sending.first_id.is_none() {
        let sent: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        sending.first_id = sent["id"].as_str().map(str::to_string);
    }
    if sending.more_files.is_empty() {
        return Step::delivered(sending.first_id);
    }
    let file = sending.more_files.remove(0);
    let mut body = sending.to.clone();
    body["files"] = json!([file]);
    send(webex, body, sending)
}

fn classify(response: &ProviderResponse) -> AdapterError {
    let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    let detail = match body["message"].as_str() {
        Some(message) => format!("Webex answered HTTP {}: {message}", response.status),
        None => format!("Webex answered HTTP {}", response.status),
    };
    match response.status {
        401 => Webex::refused_token("POST /v1/messages"),
        404 => AdapterError::permanent(format!(
            "{detail} (the room does not exist or the bot is not a member)"
        ))
        .with_reason(ReasonCode::INVALID_DESTINATION),
        429 => AdapterError::rate_limited(response.retry_after_ms(), detail),
        400 => AdapterError::permanent(detail).with_reason(ReasonCode::INVALID_STRUCTURE),
        _ => response.classify_http_error("Webex"),
    }
}
