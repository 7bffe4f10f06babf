//! Webex webhook notifications → lookups → canonical messages.

use patchbay_plugin_sdk::prelude::*;
use patchbay_plugin_sdk::signature::{hmac_sha1_hex, verify_hex};
use patchbay_plugin_sdk::url::encode_component;
use serde_json::{Value, json};

use crate::{Pending, Webex};

pub(crate) fn verify(webex: &Webex, request: &InboundRequest) -> Result<Verdict, Rejection> {
    let received = request
        .header("x-spark-signature")
        .ok_or_else(|| Rejection::unauthorized("missing X-Spark-Signature"))?;
    let expected = hmac_sha1_hex(webex.webhook_secret.expose().as_bytes(), &request.body);
    if !verify_hex(received, &expected) {
        return Err(Rejection::unauthorized("X-Spark-Signature mismatch"));
    }
    let event: Value = serde_json::from_slice(&request.body)
        .map_err(|_| Rejection::bad_request("notification is not JSON"))?;
    let (Some(resource), Some(id)) = (event["resource"].as_str(), event["data"]["id"].as_str())
    else {
        return Err(Rejection::bad_request(
            "notification without resource or data.id",
        ));
    };
    let event_name = event["event"].as_str().unwrap_or_default();
    Ok(Verdict::accept(Some(format!(
        "{resource}/{event_name}:{id}"
    ))))
}

pub(crate) fn parse(webex: &Webex, request: &InboundRequest) -> Step {
    let event: Value = match serde_json::from_slice(&request.body) {
        Ok(event) => event,
        Err(_) => return Step::fail(AdapterError::bad_input("notification is not JSON")),
    };
    let data = &event["data"];
    let Some(id) = data["id"].as_str() else {
        return Step::fail(AdapterError::bad_input("notification without data.id"));
    };
    let bot = webex
        .bot_person_id
        .as_deref()
        .or(event["createdBy"].as_str())
        .unwrap_or_default();
    let (path, pending) = match (event["resource"].as_str(), event["event"].as_str()) {
        (Some("messages"), Some("created")) => {
            // The bot hears its own messages too; no lookup for those.
            if !bot.is_empty() && data["personId"].as_str() == Some(bot) {
                return Step::messages(Vec::new());
            }
            (
                "messages",
                Pending::ReadMessage {
                    bot: bot.to_string(),
                },
            )
        }
        (Some("attachmentActions"), Some("created")) => ("attachment/actions", Pending::ReadAction),
        // Memberships, rooms, deletions: acknowledged, nothing to deliver.
        _ => return Step::messages(Vec::new()),
    };
    let url = format!("{}/v1/{path}/{}", webex.api, encode_component(id));
    Step::request(webex.api_request(HttpRequestSpec::get(url)), &pending)
}

/// The message a `messages` webhook named, as Webex answered it.
pub(crate) fn resume_message(bot: &str, response: ProviderResponse) -> Step {
    lookup(response, |body| message(body, bot))
}

/// The card action an `attachmentActions` webhook named, as Webex answered it.
pub(crate) fn resume_action(response: ProviderResponse) -> Step {
    lookup(response, action)
}

fn lookup(response: ProviderResponse, read: impl FnOnce(&Value) -> Option<Message>) -> Step {
    if response.status == 404 {
        // Deleted before Patchbay read it: nothing left to deliver.
        return Step::messages(Vec::new());
    }
    if response.status == 401 {
        return Step::fail(Webex::refused_token("a webhook lookup"));
    }
    if !response.is_success() {
        return Step::fail(response.classify_http_error("Webex"));
    }
    let Ok(body) = serde_json::from_slice::<Value>(&response.body) else {
        return Step::fail(AdapterError::transient(
            "Webex answered a lookup with non-JSON",
        ));
    };
    match read(&body) {
        Some(m) => Step::messages(vec![m]),
        None => Step::fail(AdapterError::bad_input(
            "Webex lookup without roomId or personId",
        )),
    }
}

/// A message as `GET /v1/messages/{id}` returns it.
fn message(body: &Value, bot: &str) -> Option<Message> {
    let (text, format) = match body["markdown"].as_str() {
        Some(markdown) => (markdown, TextFormat::Markdown),
        None => (body["text"].as_str().unwrap_or_default(), TextFormat::Plain),
    };
    let text = without_mention(text, body["html"].as_str(), bot);
    let files: Vec<Attachment> = body["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|url| Attachment {
            url: url.to_string(),
            filename: None,
            content_type: None,
            size: None,
        })
        .collect();
    let content = if files.is_empty() {
        Content::Text { text, format }
    } else {
        Content::Attachments {
            attachments: files,
            text: (!text.is_empty()).then_some(text),
        }
    };
    let mut m = envelope(body, content)?;
    m.conversation.thread_id = body["parentId"].as_str().map(str::to_string);
    if let Some(email) = body["personEmail"].as_str() {
        m.context.insert("webex_person_email".into(), json!(email));
    }
    Some(m)
}

/// A card submission as `GET /v1/attachment/actions/{id}` returns it.
fn action(body: &Value) -> Option<Message> {
    let inputs = &body["inputs"];
    let payload = match inputs["payload"].as_str() {
        Some(payload) => payload.to_string(),
        None => inputs.to_string(),
    };
    let mut m = envelope(
        body,
        Content::Postback {
            payload,
            text: None,
        },
    )?;
    if let Some(card) = body["messageId"].as_str() {
        m.context
            .insert("webex_card_message_id".into(), json!(card));
    }
    Some(m)
}

fn envelope(body: &Value, content: Content) -> Option<Message> {
    let room = body["roomId"].as_str()?;
    let person = body["personId"].as_str()?;
    let mut m = Message::new(room, content);
    m.sender = Some(Participant::id(person));
    m.provider_message_id = body["id"].as_str().map(str::to_string);
    m.timestamp = body["created"].as_str().map(str::to_string);
    if let Some(kind) = body["roomType"].as_str() {
        m.context.insert("webex_room_type".into(), json!(kind));
    }
    Some(m)
}

/// Removes the bot's mention: in group rooms people address the bot by name,
/// which the application does not want in the text. The name comes from the
/// message's HTML, where mentions are marked up with the person id.
fn without_mention(text: &str, html: Option<&str>, bot: &str) -> String {
    let mut text = text.to_string();
    if bot.is_empty() {
        return text;
    }
    // Markdown mention syntax: <@personId:ID> or <@personId:ID|Name>.
    let token = format!("<@personId:{bot}");
    if let Some(start) = text.find(&token)
        && let Some(len) = text[start..].find('>')
    {
        text.replace_range(start..start + len + 1, "");
    } else if let Some(name) = html.and_then(|html| mention_name(html, bot))
        && let Some(start) = text.find(name)
    {
        text.replace_range(start..start + name.len(), "");
    }
    text.trim().to_string()
}

fn mention_name<'a>(html: &'a str, bot: &str) -> Option<&'a str> {
    let marker = format!("data-object-id=\"{bot}\">");
    let start = html.find(&marker)? + marker.len();
    let len = html[start..].find("</spark-mention>")?;
    Some(&html[start..start + len])
}
