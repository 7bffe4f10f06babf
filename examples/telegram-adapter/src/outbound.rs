//! Canonical messages out: one Bot API call per message, or one per file.

use patchbay_plugin_sdk::message::ReasonCode;
use patchbay_plugin_sdk::prelude::*;
use patchbay_plugin_sdk::url::decode_data_url;
use serde_json::{Map, Value, json};

use crate::{MAX_CALLBACK_DATA, Pending, Telegram};

pub(crate) fn render(telegram: &Telegram, message: &Message) -> Step {
    step(telegram, message, 0)
}

/// The request for part `part` of `message` (files go one per request).
fn step(telegram: &Telegram, message: &Message, part: usize) -> Step {
    let request = match request(telegram, message, part) {
        Ok(Some(request)) => request,
        Ok(None) => return Step::delivered(None),
        Err(error) => return Step::fail(error),
    };
    Step::request(
        request,
        &Pending::Send {
            part,
            message: Box::new(message.clone()),
        },
    )
}

fn request(
    telegram: &Telegram,
    message: &Message,
    part: usize,
) -> Result<Option<HttpRequestSpec>, AdapterError> {
    // Only files take more than one request.
    if part > 0 && !matches!(message.content, Content::Attachments { .. }) {
        return Ok(None);
    }
    let mut body = Map::new();
    body.insert("chat_id".into(), chat_id(&message.conversation.id));
    if let Some(thread) = message.conversation.thread_id.as_deref()
        && let Ok(thread) = thread.parse::<i64>()
    {
        body.insert("message_thread_id".into(), json!(thread));
    }
    let method = match &message.content {
        Content::Text { text, .. } => {
            body.insert("text".into(), json!(text));
            "sendMessage"
        }
        Content::Typing { active: true } => {
            body.insert("action".into(), json!("typing"));
            "sendChatAction"
        }
        // Telegram has no "stopped typing" and no sessions to end.
        Content::Typing { active: false }
        | Content::EndSession { .. }
        | Content::ContextData { .. } => return Ok(None),
        Content::Attachments { attachments, text } => {
            let Some(file) = attachments.get(part) else {
                return Ok(None);
            };
            if part == 0
                && let Some(caption) = text
            {
                body.insert("caption".into(), json!(caption));
            }
            if let Some((media_type, bytes)) = decode_data_url(&file.url) {
                let name = file.filename.as_deref().unwrap_or("file");
                return Ok(Some(upload(
                    telegram,
                    message,
                    &body,
                    name,
                    &media_type,
                    &bytes,
                )));
            }
            body.insert("document".into(), json!(file.url));
            "sendDocument"
        }
        Content::Buttons { text, buttons } => {
            let rows = buttons
                .iter()
                .map(|b| match &b.action {
                    ButtonAction::Postback { payload } => callback_button(&b.title, payload),
                    ButtonAction::Link { url } => Ok(json!([{"text": b.title, "url": url}])),
                })
                .collect::<Result<Vec<_>, _>>()?;
            body.insert("text".into(), json!(text));
            body.insert("reply_markup".into(), json!({"inline_keyboard": rows}));
            "sendMessage"
        }
        Content::QuickReplies { text, replies } => {
            let rows = replies
                .iter()
                .map(|r| callback_button(&r.title, &r.payload))
                .collect::<Result<Vec<_>, _>>()?;
            body.insert("text".into(), json!(text));
            body.insert("reply_markup".into(), json!({"inline_keyboard": rows}));
            "sendMessage"
        }
        Content::ListPicker { title, items } => {
            let rows = items
                .iter()
                .map(|i| callback_button(&i.label(), &i.payload))
                .collect::<Result<Vec<_>, _>>()?;
            body.insert("text".into(), json!(title));
            body.insert("reply_markup".into(), json!({"inline_keyboard": rows}));
            "sendMessage"
        }
        other => return Err(AdapterError::unsupported("Telegram", other.kind())),
    };
    Ok(Some(HttpRequestSpec::post_json(
        telegram.method_url(method),
        &Value::Object(body),
    )))
}

fn callback_button(title: &str, payload: &str) -> Result<Value, AdapterError> {
    if payload.is_empty() || payload.len() > MAX_CALLBACK_DATA {
        return Err(AdapterError::bad_input(format!(
            "Telegram button payloads must be 1-{MAX_CALLBACK_DATA} bytes; {payload:?} is {}",
            payload.len()
        ))
        .with_reason(ReasonCode::INVALID_STRUCTURE));
    }
    Ok(json!([{"text": title, "callback_data": payload}]))
}

/// Numeric chat ids go as numbers, `@channel` names as strings.
fn chat_id(conversation: &str) -> Value {
    conversation
        .parse::<i64>()
        .map_or_else(|_| json!(conversation), |id| json!(id))
}

/// An inlined file, uploaded as `multipart/form-data`.
fn upload(
    telegram: &Telegram,
    message: &Message,
    fields: &Map<String, Value>,
    filename: &str,
    media_type: &str,
    bytes: &[u8],
) -> HttpRequestSpec {
    // Deterministic per message, so renders are reproducible.
    let boundary = format!("patchbay-telegram-{}", message.id);
    let mut body = Vec::new();
    for (name, value) in fields {
        let value = value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_string);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    let filename = filename.replace(['"', '\r', '\n'], "_");
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"document\"; filename=\"{filename}\"\r\nContent-Type: {media_type}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    HttpRequestSpec {
        method: "POST".into(),
        url: telegram.method_url("sendDocument"),
        headers: vec![(
            "content-type".into(),
            format!("multipart/form-data; boundary={boundary}"),
        )],
        body,
        auth_profile: None,
    }
}

pub(crate) fn resume(
    telegram: &Telegram,
    part: usize,
    message: &Message,
    response: ProviderResponse,
) -> Step {
    let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    if !(response.is_success() && body["ok"].as_bool() == Some(true)) {
        return Step::fail(error(&response, &body));
    }
    let sent = body["result"]["message_id"]
        .as_i64()
        .map(|id| id.to_string());
    match step(telegram, message, part + 1) {
        // The last part: its id stands for the message.
        Step::Done { .. } => Step::delivered(sent),
        more => more,
    }
}

fn error(response: &ProviderResponse, body: &Value) -> AdapterError {
    let description = body["description"].as_str().unwrap_or("no description");
    let detail = format!("Telegram answered HTTP {}: {description}", response.status);
    match response.status {
        429 => {
            let retry = body["parameters"]["retry_after"]
                .as_u64()
                .map(|s| s * 1000)
                .or_else(|| response.retry_after_ms());
            AdapterError::rate_limited(retry, detail)
        }
        400 if description.contains("chat not found") => {
            AdapterError::permanent(detail).with_reason(ReasonCode::INVALID_DESTINATION)
        }
        // The user blocked the bot, or the bot was removed from the group.
        403 => AdapterError::permanent(detail).with_reason(ReasonCode::NOT_ALLOWED),
        401 | 404 => AdapterError::permanent(format!("{detail}; check secrets.bot_token")),
        400 => AdapterError::bad_input(detail).with_reason(ReasonCode::INVALID_STRUCTURE),
        _ => response.classify_http_error("Telegram"),
    }
}
