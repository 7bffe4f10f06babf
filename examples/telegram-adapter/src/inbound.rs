//! Telegram `Update`s in: the secret-token check, then text and postbacks.

use patchbay_plugin_sdk::prelude::*;
use patchbay_plugin_sdk::signature::constant_time_eq;
use serde_json::{Value, json};

use crate::{Pending, Telegram};

const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// Telegram signs nothing; it repeats the `secret_token` given to setWebhook.
pub(crate) fn verify(telegram: &Telegram, request: &InboundRequest) -> Result<Verdict, Rejection> {
    let token = request
        .header(SECRET_HEADER)
        .ok_or_else(|| Rejection::unauthorized("missing X-Telegram-Bot-Api-Secret-Token"))?;
    if !constant_time_eq(
        token.as_bytes(),
        telegram.webhook_secret.expose().as_bytes(),
    ) {
        return Err(Rejection::unauthorized(
            "X-Telegram-Bot-Api-Secret-Token does not match secrets.webhook_secret",
        ));
    }
    let update: Value = serde_json::from_slice(&request.body)
        .map_err(|e| Rejection::bad_request(format!("the update is not JSON: {e}")))?;
    let id = update["update_id"]
        .as_i64()
        .ok_or_else(|| Rejection::bad_request("the update has no update_id"))?;
    Ok(Verdict::accept(Some(format!("update:{id}"))))
}

pub(crate) fn parse(telegram: &Telegram, request: &InboundRequest) -> Step {
    let update: Value = match serde_json::from_slice(&request.body) {
        Ok(v) => v,
        Err(e) => return Step::fail(AdapterError::bad_input(format!("not JSON: {e}"))),
    };
    if let Some(query) = update.get("callback_query") {
        return callback(telegram, query);
    }
    // Edits, channel posts, polls and the rest are not conversation turns.
    let Some(message) = update.get("message") else {
        return Step::messages(vec![]);
    };
    if message["from"]["is_bot"].as_bool() == Some(true) {
        return Step::messages(vec![]);
    }
    let text = message["text"]
        .as_str()
        .or_else(|| message["caption"].as_str())
        .unwrap_or_default();
    let mut canonical = envelope(message, &message["from"], Content::text(text));
    // Files are referenced by id: downloading them needs the bot token in
    // the URL, which must not reach the application.
    let files: Vec<Value> = ["document", "video", "audio", "voice"]
        .iter()
        .filter_map(|kind| message[*kind]["file_id"].as_str())
        .chain(
            message["photo"]
                .as_array()
                .and_then(|sizes| sizes.last())
                .and_then(|p| p["file_id"].as_str()),
        )
        .map(|id| json!(id))
        .collect();
    if !files.is_empty() {
        canonical
            .context
            .insert("telegram_file_ids".into(), Value::Array(files));
    } else if text.is_empty() {
        // Stickers, locations, contacts: nothing a canonical message carries.
        return Step::messages(vec![]);
    }
    Step::messages(vec![canonical])
}

/// A button press: stop the button's spinner first, then hand on the payload.
fn callback(telegram: &Telegram, query: &Value) -> Step {
    let Some(message) = query.get("message") else {
        // A button on an inline-mode message: no chat to answer in.
        return Step::messages(vec![]);
    };
    let payload = query["data"].as_str().unwrap_or_default().to_string();
    let postback = envelope(
        message,
        &query["from"],
        Content::Postback {
            payload,
            text: None,
        },
    );
    let answer = HttpRequestSpec::post_json(
        telegram.method_url("answerCallbackQuery"),
        &json!({"callback_query_id": query["id"]}),
    );
    Step::request(
        answer,
        &Pending::Callback {
            message: Box::new(postback),
        },
    )
}

/// The postback goes on whatever answerCallbackQuery said: the spinner is
/// cosmetic, the customer's choice is not.
pub(crate) fn after_answer(postback: Message) -> Step {
    Step::messages(vec![postback])
}

fn envelope(message: &Value, from: &Value, content: Content) -> Message {
    let chat = id_string(&message["chat"]["id"]);
    let mut canonical = Message::new(chat, content);
    canonical.conversation.thread_id = message
        .get("message_thread_id")
        .map(id_string)
        .filter(|id| !id.is_empty());
    canonical.provider_message_id = message.get("message_id").map(id_string);
    if from.is_object() {
        let name = [from["first_name"].as_str(), from["last_name"].as_str()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        canonical.sender = Some(Participant {
            id: id_string(&from["id"]),
            name: (!name.is_empty()).then_some(name),
        });
        if let Some(username) = from["username"].as_str() {
            canonical
                .context
                .insert("telegram_username".into(), json!(username));
        }
    }
    canonical
}

/// Telegram ids are integers (chat ids may be negative); canonical ids are strings.
fn id_string(id: &Value) -> String {
    match id {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}
