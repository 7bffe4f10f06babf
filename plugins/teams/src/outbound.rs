//! Canonical messages → Bot Framework activities; the connector's answers →
//! delivered or classified errors.

use patchbay_plugin_sdk::prelude::*;
use patchbay_plugin_sdk::url::encode_component;
use serde_json::{Value, json};

use crate::{AUTH_PROFILE, Pending, Teams};

const HERO: &str = "application/vnd.microsoft.card.hero";
const ADAPTIVE: &str = "application/vnd.microsoft.card.adaptive";

/// Renders one fitted message as an activity.
pub(crate) fn render(teams: &Teams, message: &Message) -> Step {
    let service_url = match service_url(teams, message) {
        Ok(url) => url,
        Err(e) => return Step::fail(e),
    };
    let mut activity = json!({"type": "message"});
    match &message.content {
        Content::Text { text, format } => {
            activity["text"] = json!(text);
            activity["textFormat"] = json!(match format {
                TextFormat::Markdown => "markdown",
                _ => "plain",
            });
        }
        Content::Typing { .. } => activity = json!({"type": "typing"}),
        Content::Attachments { attachments, text } => {
            if let Some(text) = text {
                activity["text"] = json!(text);
            }
            let files: Vec<Value> = attachments
                .iter()
                .map(|a| {
                    let mut file = json!({
                        "contentType": a.content_type.as_deref().unwrap_or("application/octet-stream"),
                        "contentUrl": a.url,
                    });
                    if let Some(name) = &a.filename {
                        file["name"] = json!(name);
                    }
                    file
                })
                .collect();
            activity["attachments"] = Value::Array(files);
        }
        Content::Buttons { text, buttons } => {
            activity["attachments"] = json!([hero(None, None, Some(text), None, buttons)]);
        }
        Content::Carousel { cards } => {
            let cards: Vec<Value> = cards
                .iter()
                .map(|c| {
                    hero(
                        Some(&c.title),
                        c.subtitle.as_deref(),
                        None,
                        c.image_url.as_deref(),
                        &c.buttons,
                    )
                })
                .collect();
            activity["attachmentLayout"] = json!("carousel");
            activity["attachments"] = Value::Array(cards);
        }
        Content::ListPicker { title, items } => {
            let choices = items
                .iter()
                .map(|item| (item.label(), item.payload.clone()));
            activity["attachments"] = json!([choice_card(title, choices)]);
        }
        // Teams shows only the first three suggested actions: more go out as
        // a card with a choice set, so none is hidden.
        Content::QuickReplies { text, replies } if replies.len() > MAX_SUGGESTED_ACTIONS => {
            let choices = replies.iter().map(|r| (r.title.clone(), r.payload.clone()));
            activity["attachments"] = json!([choice_card(text, choices)]);
        }
        // Suggested actions support imBack, not messageBack: the tap comes
        // back as the reply's title, which the host maps to its payload.
        Content::QuickReplies { text, replies } => {
            activity["text"] = json!(text);
            let actions: Vec<Value> = replies
                .iter()
                .map(|r| json!({"type": "imBack", "title": r.title, "value": r.title}))
                .collect();
            activity["suggestedActions"] = json!({"actions": actions});
        }
        Content::RichLink {
            url,
            title,
            image_url,
            description,
        } => {
            let mut card = hero(
                Some(title),
                None,
                description.as_deref(),
                image_url.as_deref(),
                &[Button::link("Open", url)],
            );
            card["content"]["tap"] = json!({"type": "openUrl", "value": url});
            activity["attachments"] = json!([card]);
        }
        // Teams has no way to show these; nothing is sent.
        Content::EndSession { .. } | Content::ContextData { .. } => {
            return Step::delivered(None);
        }
        other => return Step::fail(AdapterError::unsupported("Teams", other.kind())),
    }
    let conversation = encode_component(&message.conversation.id);
    let base = service_url.trim_end_matches('/');
    let url = match &message.conversation.thread_id {
        Some(reply_to) => {
            activity["replyToId"] = json!(reply_to);
            format!(
                "{base}/v3/conversations/{conversation}/activities/{}",
                encode_component(reply_to)
            )
        }
        None => format!("{base}/v3/conversations/{conversation}/activities"),
    };
    activity["conversation"] = json!({"id": message.conversation.id});
    let mut request = HttpRequestSpec::post_json(url, &activity);
    request.auth_profile = Some(AUTH_PROFILE.into());
    Step::request(request, &Pending::Send)
}

/// The message's service URL when it is a trusted one, else the configured one.
fn service_url(teams: &Teams, message: &Message) -> Result<String, AdapterError> {
    match message
        .context
        .get("teams_service_url")
        .and_then(Value::as_str)
    {
        None => Ok(teams.service_url.clone()),
        Some(url)
            if url == teams.service_url
                || teams
                    .service_url_prefixes
                    .iter()
                    .any(|p| url.starts_with(p.as_str())) =>
        {
            Ok(url.to_string())
        }
        // The bot's token must never be sent to a host the operator did not list.
        Some(_) => Err(AdapterError::permanent(
            "context.teams_service_url is not under settings.service_url_prefixes",
        )
        .with_reason(ReasonCode::INVALID_DESTINATION)),
    }
}

/// Suggested actions Teams shows; it drops the rest without a word.
const MAX_SUGGESTED_ACTIONS: usize = 3;

/// An Adaptive Card attachment: a heading and a choice set submitted with one
/// button, whose `payload` input comes back as the postback.
fn choice_card(title: &str, choices: impl Iterator<Item = (String, String)>) -> Value {
    let choices: Vec<Value> = choices
        .map(|(label, payload)| json!({"title": label, "value": payload}))
        .collect();
    let card = json!({
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": title, "wrap": true, "weight": "Bolder"},
            {"type": "Input.ChoiceSet", "id": "payload", "style": "expanded",
             "isRequired": true, "choices": choices},
        ],
        "actions": [{"type": "Action.Submit", "title": "Send"}],
    });
    json!({"contentType": ADAPTIVE, "content": card})
}

/// A `messageBack` action whose value comes back as a postback.
fn message_back(title: &str, payload: &str) -> Value {
    json!({
        "type": "messageBack",
        "title": title,
        "displayText": title,
        "text": title,
        "value": {"payload": payload},
    })
}

fn card_action(button: &Button) -> Value {
    match &button.action {
        ButtonAction::Postback { payload } => message_back(&button.title, payload),
        ButtonAction::Link { url } => {
            json!({"type": "openUrl", "title": button.title, "value": url})
        }
    }
}

fn hero(
    title: Option<&str>,
    subtitle: Option<&str>,
    text: Option<&str>,
    image: Option<&str>,
    buttons: &[Button],
) -> Value {
    let mut content = json!({});
    if let Some(title) = title {
        content["title"] = json!(title);
    }
    if let Some(subtitle) = subtitle {
        content["subtitle"] = json!(subtitle);
    }
    if let Some(text) = text {
        content["text"] = json!(text);
    }
    if let Some(image) = image {
        content["images"] = json!([{"url": image}]);
    }
    if !buttons.is_empty() {
        content["buttons"] = Value::Array(buttons.iter().map(card_action).collect());
    }
    json!({"contentType": HERO, "content": content})
}

/// The connector's answer: the activity id, or a classified error.
pub(crate) fn resume(response: ProviderResponse) -> Step {
    if response.is_success() {
        let id = serde_json::from_slice::<Value>(&response.body)
            .ok()
            .and_then(|b| b["id"].as_str().map(str::to_string));
        return Step::delivered(id);
    }
    let what = "the Bot Framework connector";
    let error = match response.status {
        429 => AdapterError::rate_limited(
            response.retry_after_ms(),
            format!("{what} is rate limiting (HTTP 429)"),
        ),
        // The bot was removed from the conversation, or it never existed.
        403 | 404 => AdapterError::permanent(format!("{what} answered HTTP {}", response.status))
            .with_reason(ReasonCode::INVALID_DESTINATION),
        // An outage that says when to come back is waited out that long.
        500..=599 if response.retry_after_ms().is_some() => AdapterError::rate_limited(
            response.retry_after_ms(),
            format!("{what} answered HTTP {}", response.status),
        ),
        _ => response.classify_http_error(what),
    };
    Step::fail(error)
}
