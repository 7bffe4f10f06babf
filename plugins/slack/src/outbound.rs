//! Canonical messages → `chat.postMessage` (Block Kit) and the external file
//! upload flow; Slack's answers → delivered or classified errors.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use patchbay_plugin_sdk::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{AttachmentMode, Slack, mrkdwn};

/// Where a flow left off.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum State {
    /// Waiting for `chat.postMessage`.
    Post,
    /// Uploading `files[index]`.
    Upload(Upload),
}

#[derive(Debug, Serialize, Deserialize)]
struct Upload {
    stage: Stage,
    index: usize,
    files: Vec<Attachment>,
    /// Slack file ids and titles uploaded so far.
    uploaded: Vec<(String, String)>,
    channel: String,
    thread_ts: Option<String>,
    comment: Option<String>,
    /// The downloaded file, between download and upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bytes_b64: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Stage {
    Download,
    GetUploadUrl,
    Upload,
    Complete,
}

fn api_json(slack: &Slack, method: &str, body: &Value) -> HttpRequestSpec {
    HttpRequestSpec {
        method: "POST".into(),
        url: format!("{}/{method}", slack.api),
        headers: vec![
            (
                "content-type".into(),
                "application/json; charset=utf-8".into(),
            ),
            (
                "authorization".into(),
                format!("Bearer {}", slack.bot_token.expose()),
            ),
        ],
        body: body.to_string().into_bytes(),
        auth_profile: None,
    }
}

/// Renders one fitted message.
pub(crate) fn render(slack: &Slack, message: &Message) -> Step {
    let mut body = json!({ "channel": message.conversation.id });
    if let Some(thread) = &message.conversation.thread_id {
        body["thread_ts"] = json!(thread);
    }
    let (text, blocks) = match &message.content {
        Content::Text { text, format } => {
            let text = match format {
                TextFormat::Markdown => mrkdwn::from_markdown(text),
                _ => mrkdwn::escape(text),
            };
            (text, None)
        }
        Content::Attachments { attachments, text } => {
            if slack.attachments == AttachmentMode::Upload {
                return start_upload(message, attachments, text.clone());
            }
            let mut lines: Vec<String> = text.iter().map(|t| mrkdwn::escape(t)).collect();
            lines.extend(
                attachments
                    .iter()
                    .map(|a| mrkdwn::link(&a.url, a.filename.as_deref().unwrap_or(&a.url))),
            );
            (lines.join("\n"), None)
        }
        Content::Buttons { text, buttons } => (
            mrkdwn::escape(text),
            Some(vec![section(&mrkdwn::escape(text)), actions(buttons, "b")]),
        ),
        Content::QuickReplies { text, replies } => {
            let buttons: Vec<Button> = replies
                .iter()
                .map(|r| Button::postback(&r.title, &r.payload))
                .collect();
            (
                mrkdwn::escape(text),
                Some(vec![section(&mrkdwn::escape(text)), actions(&buttons, "q")]),
            )
        }
        Content::ListPicker { title, items } => {
            let options: Vec<Value> = items
                .iter()
                .map(|item| {
                    let mut option = json!({"text": plain(&item.title), "value": item.payload});
                    if let Some(sub) = &item.subtitle {
                        option["description"] = plain(sub);
                    }
                    option
                })
                .collect();
            let mut block = section(&mrkdwn::escape(title));
            block["accessory"] = json!({
                "type": "static_select",
                "action_id": "patchbay_list",
                "placeholder": plain("Choose…"),
                "options": options,
            });
            (mrkdwn::escape(title), Some(vec![block]))
        }
        Content::Carousel { cards } => {
            let mut blocks = Vec::new();
            for (i, card) in cards.iter().enumerate() {
                if i > 0 {
                    blocks.push(json!({"type": "divider"}));
                }
                let mut text = format!("*{}*", mrkdwn::escape(&card.title));
                if let Some(sub) = &card.subtitle {
                    text.push('\n');
                    text.push_str(&mrkdwn::escape(sub));
                }
                let mut block = section(&text);
                if let Some(image) = &card.image_url {
                    block["accessory"] = image_element(image, &card.title);
                }
                blocks.push(block);
                if !card.buttons.is_empty() {
                    blocks.push(actions(&card.buttons, &format!("c{i}")));
                }
            }
            let titles: Vec<&str> = cards.iter().map(|c| c.title.as_str()).collect();
            (mrkdwn::escape(&titles.join(" | ")), Some(blocks))
        }
        Content::RichLink {
            url,
            title,
            image_url,
            description,
        } => {
            let mut text = format!("*{}*", mrkdwn::link(url, title));
            if let Some(d) = description {
                text.push('\n');
                text.push_str(&mrkdwn::escape(d));
            }
            let mut block = section(&text);
            if let Some(image) = image_url {
                block["accessory"] = image_element(image, title);
            }
            (mrkdwn::link(url, title), Some(vec![block]))
        }
        // Nothing to show in Slack: the conversation simply goes quiet.
        Content::EndSession { .. } | Content::ContextData { .. } => {
            return Step::delivered(None);
        }
        other => return Step::fail(AdapterError::unsupported("Slack", other.kind())),
    };
    body["text"] = json!(text);
    if let Some(blocks) = blocks {
        body["blocks"] = Value::Array(blocks);
    }
    Step::request(api_json(slack, "chat.postMessage", &body), &State::Post)
}

fn plain(text: &str) -> Value {
    json!({"type": "plain_text", "text": text, "emoji": true})
}

fn section(mrkdwn_text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn_text}})
}

fn image_element(url: &str, alt: &str) -> Value {
    json!({"type": "image", "image_url": url, "alt_text": alt})
}

/// An actions block; `prefix` keeps action ids unique within the message.
fn actions(buttons: &[Button], prefix: &str) -> Value {
    let elements: Vec<Value> = buttons
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let mut element = json!({
                "type": "button",
                "text": plain(&b.title),
                "action_id": format!("patchbay_{prefix}{i}"),
            });
            match &b.action {
                ButtonAction::Postback { payload } => element["value"] = json!(payload),
                ButtonAction::Link { url } => element["url"] = json!(url),
            }
            element
        })
        .collect();
    json!({"type": "actions", "elements": elements})
}

fn start_upload(message: &Message, files: &[Attachment], comment: Option<String>) -> Step {
    let Some(first) = files.first() else {
        return Step::fail(
            AdapterError::bad_input("attachments content without files")
                .with_reason(ReasonCode::INVALID_STRUCTURE),
        );
    };
    let state = State::Upload(Upload {
        stage: Stage::Download,
        index: 0,
        files: files.to_vec(),
        uploaded: Vec::new(),
        channel: message.conversation.id.clone(),
        thread_ts: message.conversation.thread_id.clone(),
        comment,
        bytes_b64: None,
    });
    Step::request(HttpRequestSpec::get(&first.url), &state)
}

/// Continues a flow with Slack's (or the file host's) answer.
pub(crate) fn resume(
    slack: &Slack,
    continuation: Continuation,
    response: ProviderResponse,
) -> Step {
    let state: State = match continuation.decode() {
        Ok(s) => s,
        Err(e) => return Step::fail(e),
    };
    let result = match state {
        State::Post => api_result(&response, "chat.postMessage")
            .map(|body| Step::delivered(body["ts"].as_str().map(str::to_string))),
        State::Upload(upload) => upload_step(slack, upload, &response),
    };
    result.unwrap_or_else(Step::fail)
}

fn upload_step(
    slack: &Slack,
    mut upload: Upload,
    response: &ProviderResponse,
) -> Result<Step, AdapterError> {
    match upload.stage {
        Stage::Download => {
            if !response.is_success() {
                return Err(download_error(response));
            }
            let file = &upload.files[upload.index];
            let filename = file
                .filename
                .clone()
                .or_else(|| file.url.rsplit('/').next().map(str::to_string))
                .unwrap_or_else(|| "file".into());
            let form = form_urlencoded::Serializer::new(String::new())
                .append_pair("filename", &filename)
                .append_pair("length", &response.body.len().to_string())
                .finish();
            let request = HttpRequestSpec {
                method: "POST".into(),
                url: format!("{}/files.getUploadURLExternal", slack.api),
                headers: vec![
                    (
                        "content-type".into(),
                        "application/x-www-form-urlencoded".into(),
                    ),
                    (
                        "authorization".into(),
                        format!("Bearer {}", slack.bot_token.expose()),
                    ),
                ],
                body: form.into_bytes(),
                auth_profile: None,
            };
            upload.stage = Stage::GetUploadUrl;
            upload.bytes_b64 = Some(B64.encode(&response.body));
            Ok(Step::request(request, &State::Upload(upload)))
        }
        Stage::GetUploadUrl => {
            let body = api_result(response, "files.getUploadURLExternal")?;
            let (Some(url), Some(id)) = (body["upload_url"].as_str(), body["file_id"].as_str())
            else {
                return Err(AdapterError::transient(
                    "files.getUploadURLExternal answered without upload_url or file_id",
                ));
            };
            let bytes = upload
                .bytes_b64
                .take()
                .and_then(|b| B64.decode(b).ok())
                .unwrap_or_default();
            let file = &upload.files[upload.index];
            let title = file.filename.clone().unwrap_or_else(|| file.url.clone());
            upload.uploaded.push((id.to_string(), title));
            let request = HttpRequestSpec {
                method: "POST".into(),
                url: url.to_string(),
                headers: vec![("content-type".into(), "application/octet-stream".into())],
                body: bytes,
                auth_profile: None,
            };
            upload.stage = Stage::Upload;
            Ok(Step::request(request, &State::Upload(upload)))
        }
        Stage::Upload => {
            if !response.is_success() {
                return Err(response.classify_http_error("Slack file upload"));
            }
            upload.index += 1;
            if let Some(next) = upload.files.get(upload.index) {
                let request = HttpRequestSpec::get(&next.url);
                upload.stage = Stage::Download;
                return Ok(Step::request(request, &State::Upload(upload)));
            }
            let files: Vec<Value> = upload
                .uploaded
                .iter()
                .map(|(id, title)| json!({"id": id, "title": title}))
                .collect();
            let mut body = json!({"files": files, "channel_id": upload.channel});
            if let Some(thread) = &upload.thread_ts {
                body["thread_ts"] = json!(thread);
            }
            if let Some(comment) = &upload.comment {
                body["initial_comment"] = json!(comment);
            }
            upload.stage = Stage::Complete;
            Ok(Step::request(
                api_json(slack, "files.completeUploadExternal", &body),
                &State::Upload(upload),
            ))
        }
        Stage::Complete => {
            api_result(response, "files.completeUploadExternal")?;
            Ok(Step::delivered(
                upload.uploaded.first().map(|(id, _)| id.clone()),
            ))
        }
    }
}

/// The application's file could not be fetched: its server's problem is
/// retried, a missing or forbidden file is not.
fn download_error(response: &ProviderResponse) -> AdapterError {
    let message = format!(
        "downloading the attachment answered HTTP {}",
        response.status
    );
    match response.status {
        408 | 429 | 500..=599 => AdapterError::transient(message),
        _ => AdapterError::permanent(message).with_reason(ReasonCode::INVALID_STRUCTURE),
    }
}

/// Slack answers HTTP 200 with `{"ok": false, "error": "…"}`; this reads both
/// layers and classifies failures.
fn api_result(response: &ProviderResponse, method: &str) -> Result<Value, AdapterError> {
    if response.status == 429 {
        return Err(AdapterError::rate_limited(
            response.retry_after_ms(),
            format!("Slack {method} is rate limited"),
        ));
    }
    if !response.is_success() {
        return Err(response.classify_http_error(&format!("Slack {method}")));
    }
    let body: Value = serde_json::from_slice(&response.body).map_err(|_| {
        AdapterError::transient(format!(
            "Slack {method} answered with a body that is not JSON"
        ))
    })?;
    if body["ok"].as_bool() == Some(true) {
        return Ok(body);
    }
    let code = body["error"].as_str().unwrap_or("unknown_error");
    Err(classify(code, method, response))
}

/// Slack's documented error codes → Patchbay's error classes.
fn classify(code: &str, method: &str, response: &ProviderResponse) -> AdapterError {
    let message = format!("Slack {method} failed: {code}");
    match code {
        "ratelimited" | "rate_limited" => {
            AdapterError::rate_limited(response.retry_after_ms(), message)
        }
        "channel_not_found" | "not_in_channel" | "is_archived" | "user_not_found"
        | "user_disabled" | "cannot_dm_bot" => {
            AdapterError::permanent(message).with_reason(ReasonCode::INVALID_DESTINATION)
        }
        "invalid_auth"
        | "not_authed"
        | "token_revoked"
        | "token_expired"
        | "account_inactive"
        | "no_permission"
        | "missing_scope"
        | "not_allowed_token_type" => AdapterError::permanent(format!(
            "{message}; check secrets.bot_token and the app's scopes"
        )),
        "msg_too_long"
        | "invalid_blocks"
        | "invalid_blocks_format"
        | "no_text"
        | "too_many_attachments"
        | "invalid_arguments" => {
            AdapterError::permanent(message).with_reason(ReasonCode::INVALID_STRUCTURE)
        }
        "restricted_action"
        | "restricted_action_read_only_channel"
        | "restricted_action_thread_only_channel"
        | "restricted_action_non_threadable_channel"
        | "ekm_access_denied" => {
            AdapterError::permanent(message).with_reason(ReasonCode::NOT_ALLOWED)
        }
        "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => {
            AdapterError::transient(message)
        }
        _ => AdapterError::permanent(message),
    }
}
