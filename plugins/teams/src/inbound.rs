//! Bot Framework activities → canonical messages.

use std::collections::BTreeMap;

use patchbay_plugin_sdk::prelude::*;
use serde_json::{Value, json};

use crate::{Teams, auth};

fn str_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

/// Authenticates the activity and says how to answer it.
pub(crate) fn verify(
    teams: &Teams,
    request: &InboundRequest,
    now: Timestamp,
    resources: &Resources,
) -> Result<Verdict, Rejection> {
    // Only serviceUrl and channelId are read before the token is checked:
    // the token's serviceurl claim must match the one, its key be endorsed
    // for the other.
    let activity: Value = serde_json::from_slice(&request.body)
        .map_err(|_| Rejection::bad_request("activity is not JSON"))?;
    let service_url = str_at(&activity, "/serviceUrl")
        .ok_or_else(|| Rejection::bad_request("activity has no serviceUrl"))?;
    let channel_id = str_at(&activity, "/channelId")
        .ok_or_else(|| Rejection::bad_request("activity has no channelId"))?;
    auth::validate(
        teams,
        request.header("authorization"),
        auth::ActivityHead {
            service_url,
            channel_id,
        },
        now,
        resources,
    )?;
    // Parsing needs it; without it the activity could only be dead-lettered.
    if str_at(&activity, "/conversation/id").is_none_or(str::is_empty) {
        return Err(Rejection::bad_request("activity has no conversation.id"));
    }
    let dedupe_key = str_at(&activity, "/id").map(|id| format!("activity:{id}"));
    let is_card_action = str_at(&activity, "/type") == Some("invoke")
        && str_at(&activity, "/name") == Some("adaptiveCard/action");
    let mut verdict = Verdict::accept(dedupe_key);
    if is_card_action {
        // Universal Actions expect an invoke response; the card stays as it is.
        let body = json!({
            "statusCode": 200,
            "type": "application/vnd.microsoft.activity.message",
            "value": "Received",
        });
        verdict.ack = AckResponse::with_body("application/json", body.to_string());
    } else if str_at(&activity, "/type") == Some("invoke") {
        verdict.ack = AckResponse::with_body("application/json", r#"{"status":200}"#);
    }
    Ok(verdict)
}

/// Converts a stored activity into canonical messages.
pub(crate) fn parse(request: &InboundRequest) -> Step {
    let activity: Value = match serde_json::from_slice(&request.body) {
        Ok(a) => a,
        Err(e) => return Step::fail(AdapterError::bad_input(format!("activity: {e}"))),
    };
    let content = match str_at(&activity, "/type").unwrap_or_default() {
        "message" => message_content(&activity),
        "typing" => Some(Content::Typing { active: true }),
        "endOfConversation" => Some(Content::EndSession {
            reason: str_at(&activity, "/code").map(str::to_string),
        }),
        "conversationUpdate" => conversation_update(&activity),
        "invoke" if str_at(&activity, "/name") == Some("adaptiveCard/action") => {
            card_action(&activity)
        }
        _ => None,
    };
    let Some(content) = content else {
        return Step::messages(Vec::new());
    };
    let Some(conversation) = str_at(&activity, "/conversation/id").filter(|c| !c.is_empty()) else {
        return Step::fail(AdapterError::bad_input("activity has no conversation.id"));
    };
    let mut m = Message::new(conversation, content);
    m.conversation.thread_id = str_at(&activity, "/replyToId").map(str::to_string);
    m.sender = participant(activity.get("from"));
    m.recipient = participant(activity.get("recipient"));
    m.provider_message_id = str_at(&activity, "/id").map(str::to_string);
    m.timestamp = str_at(&activity, "/timestamp").map(str::to_string);
    if let Some(url) = str_at(&activity, "/serviceUrl") {
        m.context.insert("teams_service_url".into(), json!(url));
    }
    let tenant = str_at(&activity, "/conversation/tenantId")
        .or_else(|| str_at(&activity, "/channelData/tenant/id"));
    if let Some(tenant) = tenant {
        m.context.insert("teams_tenant_id".into(), json!(tenant));
    }
    Step::messages(vec![m])
}

fn participant(value: Option<&Value>) -> Option<Participant> {
    let value = value?;
    Some(Participant {
        id: str_at(value, "/id")?.to_string(),
        name: str_at(value, "/name").map(str::to_string),
    })
}

fn message_content(activity: &Value) -> Option<Content> {
    if let Some(value) = activity.get("value").filter(|v| !v.is_null()) {
        return Some(Content::Postback {
            payload: payload_of(value),
            text: str_at(activity, "/text").map(str::to_string),
        });
    }
    let text = strip_bot_mention(
        str_at(activity, "/text").unwrap_or_default(),
        str_at(activity, "/recipient/name"),
    );
    let files: Vec<Attachment> = activity
        .get("attachments")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(attachment).collect())
        .unwrap_or_default();
    if !files.is_empty() {
        return Some(Content::Attachments {
            attachments: files,
            text: (!text.is_empty()).then_some(text),
        });
    }
    if text.is_empty() {
        return None;
    }
    let format = match str_at(activity, "/textFormat") {
        Some("markdown") => TextFormat::Markdown,
        _ => TextFormat::Plain,
    };
    Some(Content::Text { text, format })
}

/// A submit's value: our own `{"payload": "…"}`, else the data as JSON text.
fn payload_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => match other.get("payload").and_then(Value::as_str) {
            Some(p) => p.to_string(),
            None => other.to_string(),
        },
    }
}

/// Removes `<at>Bot</at>` (how Teams writes a mention of the bot) and trims.
fn strip_bot_mention(text: &str, bot_name: Option<&str>) -> String {
    let text = match bot_name {
        Some(name) => text.replace(&format!("<at>{name}</at>"), ""),
        None => text.to_string(),
    };
    text.trim().to_string()
}

/// A file the user shared, or an inline image. Teams repeats a message's text
/// as a `text/html` attachment; that one is not a file.
fn attachment(value: &Value) -> Option<Attachment> {
    let content_type = str_at(value, "/contentType")?;
    let name = str_at(value, "/name").map(str::to_string);
    if content_type == "application/vnd.microsoft.teams.file.download.info" {
        return Some(Attachment {
            url: str_at(value, "/content/downloadUrl")?.to_string(),
            filename: name,
            content_type: str_at(value, "/content/fileType").map(str::to_string),
            size: None,
        });
    }
    if content_type.starts_with("text/html")
        || content_type.starts_with("application/vnd.microsoft.card")
    {
        return None;
    }
    Some(Attachment {
        url: str_at(value, "/contentUrl")?.to_string(),
        filename: name,
        content_type: Some(content_type.to_string()),
        size: None,
    })
}

fn members(activity: &Value, key: &str) -> Vec<Value> {
    activity
        .get(key)
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|m| {
                    let p = participant(Some(m))?;
                    Some(json!({"id": p.id, "name": p.name}))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn conversation_update(activity: &Value) -> Option<Content> {
    let added = members(activity, "membersAdded");
    let removed = members(activity, "membersRemoved");
    if added.is_empty() && removed.is_empty() {
        return None;
    }
    let bot = str_at(activity, "/recipient/id");
    let mut data = BTreeMap::from([("event".to_string(), json!("conversation_update"))]);
    data.insert("members_added".into(), Value::Array(added.clone()));
    data.insert("members_removed".into(), Value::Array(removed));
    // The application usually greets people, not itself: say when it is the bot.
    let bot_added = bot.is_some_and(|bot| added.iter().any(|m| m["id"] == bot));
    data.insert("bot_added".into(), json!(bot_added));
    Some(Content::ContextData { data })
}

/// `adaptiveCard/action`: the action's data is the payload.
fn card_action(activity: &Value) -> Option<Content> {
    let action = activity.pointer("/value/action")?;
    let payload = action
        .get("data")
        .map(payload_of)
        .or_else(|| str_at(action, "/verb").map(str::to_string))?;
    Some(Content::Postback {
        payload,
        text: str_at(action, "/title").map(str::to_string),
    })
}
