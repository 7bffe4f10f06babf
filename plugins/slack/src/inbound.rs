//! Events API and interactivity requests → canonical messages.

use std::collections::BTreeMap;

use patchbay_plugin_sdk::prelude::*;
use patchbay_plugin_sdk::signature::{hmac_sha256_hex, verify_hex};
use serde_json::{Value, json};

use crate::{MAX_CLOCK_SKEW_SECS, Slack, mrkdwn};

/// What Slack posted.
enum Body {
    /// An Events API envelope.
    Event(Value),
    /// An interactivity payload (form field `payload`).
    Interaction(Value),
    /// A slash command (form fields `command`, `text`, …).
    Command(BTreeMap<String, String>),
}

fn decode(request: &InboundRequest) -> Result<Body, String> {
    let form = request
        .header("content-type")
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"))
        || request.body.starts_with(b"payload=");
    if form {
        let fields: BTreeMap<String, String> = request.form().into_iter().collect();
        if let Some(payload) = fields.get("payload") {
            let value = serde_json::from_str(payload).map_err(|e| format!("payload: {e}"))?;
            Ok(Body::Interaction(value))
        } else if fields.contains_key("command") {
            Ok(Body::Command(fields))
        } else {
            Err("form body with neither payload nor command".into())
        }
    } else {
        let value = serde_json::from_slice(&request.body).map_err(|e| format!("body: {e}"))?;
        Ok(Body::Event(value))
    }
}

/// Checks the v0 signature and the timestamp window, then says how to answer.
pub(crate) fn verify(
    slack: &Slack,
    request: &InboundRequest,
    now: Timestamp,
) -> Result<Verdict, Rejection> {
    let timestamp = request
        .header("x-slack-request-timestamp")
        .ok_or_else(|| Rejection::unauthorized("missing X-Slack-Request-Timestamp"))?
        .trim();
    let secs: i64 = timestamp
        .parse()
        .map_err(|_| Rejection::unauthorized("X-Slack-Request-Timestamp is not a number"))?;
    if (now.as_secs() - secs).abs() > MAX_CLOCK_SKEW_SECS {
        return Err(Rejection::unauthorized(
            "request timestamp is more than five minutes from now",
        ));
    }
    let signature = request
        .header("x-slack-signature")
        .ok_or_else(|| Rejection::unauthorized("missing X-Slack-Signature"))?;
    let hex = signature
        .strip_prefix("v0=")
        .ok_or_else(|| Rejection::unauthorized("unsupported X-Slack-Signature version"))?;
    if !verify_hex(hex, &signature_hex(slack, timestamp, &request.body)) {
        return Err(Rejection::unauthorized("X-Slack-Signature mismatch"));
    }

    match decode(request).map_err(Rejection::bad_request)? {
        Body::Interaction(payload) => {
            let key = str_at(&payload, "/trigger_id")
                .or_else(|| str_at(&payload, "/actions/0/action_ts"))
                .map(|id| format!("interaction:{id}"));
            Ok(Verdict::accept(key))
        }
        Body::Command(fields) => Ok(Verdict::accept(
            fields.get("trigger_id").map(|id| format!("command:{id}")),
        )),
        Body::Event(envelope) => match str_at(&envelope, "/type") {
            Some("url_verification") => {
                let challenge = str_at(&envelope, "/challenge").unwrap_or_default();
                let body = json!({ "challenge": challenge }).to_string();
                Ok(Verdict::handshake(AckResponse::with_body(
                    "application/json",
                    body,
                )))
            }
            Some("event_callback") => {
                let event_id = str_at(&envelope, "/event_id")
                    .ok_or_else(|| Rejection::bad_request("event_callback without event_id"))?;
                Ok(Verdict::accept(Some(format!("event:{event_id}"))))
            }
            // app_rate_limited and future envelope types: acknowledge, keep nothing.
            _ => Ok(Verdict::handshake(AckResponse::empty(200))),
        },
    }
}

/// Hex `HMAC-SHA256(signing_secret, "v0:" + timestamp + ":" + body)`.
pub(crate) fn signature_hex(slack: &Slack, timestamp: &str, body: &[u8]) -> String {
    let mut base = Vec::with_capacity(body.len() + timestamp.len() + 4);
    base.extend_from_slice(b"v0:");
    base.extend_from_slice(timestamp.as_bytes());
    base.push(b':');
    base.extend_from_slice(body);
    hmac_sha256_hex(slack.signing_secret.expose().as_bytes(), &base)
}

/// Converts a stored request into canonical messages.
pub(crate) fn parse(slack: &Slack, request: &InboundRequest) -> Step {
    match decode(request) {
        Ok(Body::Event(envelope)) => Step::messages(event(slack, &envelope)),
        Ok(Body::Interaction(payload)) => Step::messages(interaction(&payload)),
        Ok(Body::Command(fields)) => Step::messages(command(&fields)),
        Err(e) => Step::fail(AdapterError::bad_input(format!("Slack request: {e}"))),
    }
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

fn event(slack: &Slack, envelope: &Value) -> Vec<Message> {
    let Some(event) = envelope.get("event") else {
        return Vec::new();
    };
    let kind = str_at(event, "/type").unwrap_or_default();
    let subtype = str_at(event, "/subtype");
    let message = match (kind, subtype) {
        ("message", None | Some("file_share" | "thread_broadcast")) | ("app_mention", _) => {
            user_message(slack, event, event)
        }
        ("message", Some("message_changed")) => {
            let edited = event.get("message").unwrap_or(&Value::Null);
            user_message(slack, event, edited).map(|mut m| {
                m.context.insert("edited".into(), Value::Bool(true));
                m
            })
        }
        ("message", Some("message_deleted")) => deleted(slack, event),
        // Joins, topic changes, bot messages…: nothing for the application.
        _ => None,
    };
    message
        .map(|mut m| {
            if let Some(team) = str_at(envelope, "/team_id") {
                m.context.insert("slack_team_id".into(), json!(team));
            }
            vec![m]
        })
        .unwrap_or_default()
}

fn from_a_bot(slack: &Slack, message: &Value) -> bool {
    message.get("bot_id").is_some_and(|b| !b.is_null())
        || str_at(message, "/subtype") == Some("bot_message")
        || slack
            .bot_user_id
            .as_deref()
            .is_some_and(|own| str_at(message, "/user") == Some(own))
}

/// A message written by a person. `event` carries the channel; `message` the
/// content (the same object except for edits).
fn user_message(slack: &Slack, event: &Value, message: &Value) -> Option<Message> {
    if from_a_bot(slack, message) || from_a_bot(slack, event) {
        return None;
    }
    let channel = str_at(event, "/channel").filter(|c| !c.is_empty())?;
    let text = mrkdwn::to_plain(str_at(message, "/text").unwrap_or_default());
    let files: Vec<Attachment> = message
        .get("files")
        .and_then(Value::as_array)
        .map(|files| files.iter().filter_map(file).collect())
        .unwrap_or_default();
    let content = match (files.is_empty(), text.is_empty()) {
        (false, _) => Content::Attachments {
            attachments: files,
            text: (!text.is_empty()).then_some(text),
        },
        (true, false) => Content::text(text),
        (true, true) => return None,
    };
    let ts = str_at(message, "/ts");
    let mut m = Message::new(channel, content);
    m.conversation.thread_id = str_at(message, "/thread_ts")
        .filter(|thread| Some(*thread) != ts)
        .map(str::to_string);
    m.provider_message_id = ts.map(str::to_string);
    m.sender = str_at(message, "/user").map(|user| Participant {
        id: user.to_string(),
        name: str_at(message, "/user_profile/real_name")
            .or_else(|| str_at(message, "/user_profile/display_name"))
            .filter(|n| !n.is_empty())
            .map(str::to_string),
    });
    Some(m)
}

fn file(file: &Value) -> Option<Attachment> {
    Some(Attachment {
        url: str_at(file, "/url_private")?.to_string(),
        filename: str_at(file, "/name").map(str::to_string),
        content_type: str_at(file, "/mimetype").map(str::to_string),
        size: file.get("size").and_then(Value::as_u64),
    })
}

fn deleted(slack: &Slack, event: &Value) -> Option<Message> {
    let previous = event.get("previous_message").unwrap_or(&Value::Null);
    if from_a_bot(slack, previous) {
        return None;
    }
    let channel = str_at(event, "/channel").filter(|c| !c.is_empty())?;
    let deleted_ts = str_at(event, "/deleted_ts")?;
    let data = BTreeMap::from([
        ("event".to_string(), json!("message_deleted")),
        ("deleted_message_id".to_string(), json!(deleted_ts)),
    ]);
    let mut m = Message::new(channel, Content::ContextData { data });
    m.provider_message_id = Some(deleted_ts.to_string());
    m.sender = str_at(previous, "/user").map(Participant::id);
    Some(m)
}

/// `block_actions` → one postback per action with a value. Link buttons carry
/// no value and are left out: the browser already opened the link.
fn interaction(payload: &Value) -> Vec<Message> {
    if str_at(payload, "/type") != Some("block_actions") {
        return Vec::new();
    }
    let Some(channel) = str_at(payload, "/channel/id")
        .or_else(|| str_at(payload, "/container/channel_id"))
        .filter(|c| !c.is_empty())
    else {
        return Vec::new();
    };
    let thread =
        str_at(payload, "/container/thread_ts").or_else(|| str_at(payload, "/message/thread_ts"));
    let sender = str_at(payload, "/user/id").map(|id| Participant {
        id: id.to_string(),
        name: str_at(payload, "/user/name")
            .or_else(|| str_at(payload, "/user/username"))
            .map(str::to_string),
    });
    let actions = payload.get("actions").and_then(Value::as_array);
    actions
        .into_iter()
        .flatten()
        .filter_map(|action| {
            let (value, text) = match action.get("selected_option") {
                Some(option) => (str_at(option, "/value")?, str_at(option, "/text/text")),
                None => (str_at(action, "/value")?, str_at(action, "/text/text")),
            };
            let mut m = Message::new(
                channel,
                Content::Postback {
                    payload: value.to_string(),
                    text: text.map(str::to_string),
                },
            );
            m.conversation.thread_id = thread.map(str::to_string);
            m.sender = sender.clone();
            m.provider_message_id = str_at(payload, "/container/message_ts").map(str::to_string);
            Some(m)
        })
        .collect()
}

/// A slash command → text `"/command text"`, the command also in context.
fn command(fields: &BTreeMap<String, String>) -> Vec<Message> {
    let channel = fields.get("channel_id").filter(|c| !c.is_empty());
    let (Some(command), Some(channel)) = (fields.get("command"), channel) else {
        return Vec::new();
    };
    let text = fields.get("text").map_or("", |t| t.trim());
    let line = if text.is_empty() {
        command.clone()
    } else {
        format!("{command} {text}")
    };
    let mut m = Message::new(channel, Content::text(line));
    m.sender = fields.get("user_id").map(|id| Participant {
        id: id.clone(),
        name: fields.get("user_name").cloned(),
    });
    m.context.insert("slack_command".into(), json!(command));
    if let Some(team) = fields.get("team_id") {
        m.context.insert("slack_team_id".into(), json!(team));
    }
    vec![m]
}
