//! Genesys Cloud Open Messaging (`kind = "genesys-open-messaging"`).
//!
//! ## To Genesys
//! Under `{api_url}/api/v2/conversations/messages/{integration_id}/inbound/open/`,
//! with a bearer token from an OAuth client-credentials grant against
//! `login_url` (cached; fetched again once when Genesys answers 401):
//! - `message`: a customer's text and attachments, `channel.from` the
//!   customer (`idType: "Opaque"`, the customer key), `channel.messageId`
//!   Patchbay's id and `channel.time` its creation time — both stable across
//!   retries, which is what Genesys dedupes on. The answer's `id` is Genesys'.
//! - `structured/response`: a postback answering a structured message whose
//!   Genesys id is known (`originatingMessageId`), as a `QuickReply` or
//!   `Button` response; without that id, a postback goes as text.
//! - `event`: the customer's typing (`eventType: "Typing"`).
//! - `receipt`: `Delivered` or `Failed` (with string reasons) for an agent's
//!   message, naming Genesys' id for it.
//!
//! ## From Genesys
//! The integration's outbound webhook, verified as
//! `X-Hub-Signature-256: sha256=<base64 HMAC-SHA256(webhook_secret, body)>`.
//! `channel.to.id` is the customer; `id` drops redeliveries. Read:
//! `Text` (with attachments), `Structured` (`QuickReply` → quick replies,
//! `Card` → buttons, `Carousel` → carousel, `DatePicker` → time picker),
//! `Event` typing, and `Receipt` (logged by the host: Genesys' verdict on a
//! customer message). Core fits each to the customer's channel.
//!
//! ## Assumed where the documents are silent
//! - The token endpoint takes the credentials as HTTP Basic (the
//!   `gildas/go-gcloudcx` client does); `settings.credentials_in = "form"`
//!   switches to form fields.
//! - DatePicker's shape: `datePicker: {title, availableTimes: [{dateTime, duration}]}`.
//! - A receipt's `reasons[].code` strings pair with Patchbay's numeric codes
//!   as in `reasons.rs`.

use patchbay_plugin_sdk::adapter::{
    AccessToken, ChannelConfig, ConfigError, Continuation, HttpRequestSpec, InboundRequest,
    ProviderResponse, RequestSpec, Step, Timestamp, Verdict,
};
use patchbay_plugin_sdk::capabilities::RichType;
use patchbay_plugin_sdk::error::{AdapterError, Rejection};
use patchbay_plugin_sdk::message::{
    Attachment, Button, Card, Content, DeliveryReceipt, Message, Participant, QuickReply, Reason,
    ReasonCode, ReceiptStatus, TimeSlot,
};
use patchbay_plugin_sdk::upstream::auth::{BodySignature, ClientCredentials, CredentialsIn};
use patchbay_plugin_sdk::upstream::{
    Delivery, PlatformEvent, UpstreamConnector, UpstreamFactory, UpstreamManifest,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

mod reasons;

/// The `kind` upstreams use.
pub const KIND: &str = "genesys-open-messaging";

// The library build's entry point; linked into a host, the factory is used directly.
#[cfg(not(feature = "compiled-in"))]
patchbay_plugin_sdk::export_upstream!(OpenMessagingFactory);

/// The auth profile requests name.
const PROFILE: &str = "oauth";

fn manifest() -> UpstreamManifest {
    UpstreamManifest::new(
        KIND,
        env!("CARGO_PKG_VERSION"),
        "Genesys Cloud Open Messaging: customer messages, typing, button responses and receipts to Genesys, agent messages from its webhook",
    )
    .with_receipts()
    .with_typing()
    .with_rich_types(&[
        RichType::QuickReplies,
        RichType::Buttons,
        RichType::Carousel,
        RichType::TimePicker,
    ])
}

/// `[upstreams.<name>.settings]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// The region's API host, `https://api.mypurecloud.com` and so on.
    api_url: String,
    /// The region's token endpoint, `https://login.mypurecloud.com/oauth/token`.
    login_url: String,
    /// The Open Messaging integration's id.
    integration_id: String,
    /// The OAuth client id.
    client_id: String,
    /// Where the client credentials go on the token request.
    #[serde(default)]
    credentials_in: CredentialsIn,
}

/// Makes [`OpenMessaging`] connectors.
#[derive(Debug, Default, Clone, Copy)]
pub struct OpenMessagingFactory;

impl UpstreamFactory for OpenMessagingFactory {
    fn manifest(&self) -> UpstreamManifest {
        manifest()
    }

    fn create(&self, config: &ChannelConfig) -> Result<Box<dyn UpstreamConnector>, ConfigError> {
        let settings: Settings = config.settings()?;
        ConfigError::check_http_url("settings.api_url", &settings.api_url)?;
        ConfigError::check_http_url("settings.login_url", &settings.login_url)?;
        ConfigError::check_not_empty([
            ("settings.integration_id", settings.integration_id.as_str()),
            ("settings.client_id", &settings.client_id),
        ])?;
        Ok(Box::new(OpenMessaging {
            base: format!(
                "{}/api/v2/conversations/messages/{}/inbound/open",
                settings.api_url.trim_end_matches('/'),
                patchbay_plugin_sdk::url::encode_component(settings.integration_id.trim())
            ),
            grant: ClientCredentials {
                token_url: settings.login_url,
                client_id: settings.client_id,
                client_secret: config.secret("client_secret")?.clone(),
                scope: None,
                credentials_in: settings.credentials_in,
            },
            webhook_secret: config.secret("webhook_secret")?.clone(),
        }))
    }
}

/// The Open Messaging connector.
#[derive(Debug)]
pub struct OpenMessaging {
    /// `…/conversations/messages/{integration_id}/inbound/open`.
    base: String,
    grant: ClientCredentials,
    webhook_secret: patchbay_plugin_sdk::adapter::Secret,
}

/// What a delivery waits for.
#[derive(Debug, Serialize, Deserialize)]
enum Awaiting {
    /// A message's answer: Genesys' id for it.
    Message,
    /// An answer with nothing to read.
    Accepted,
}

/// The outbound webhook (the fields Patchbay reads).
#[derive(Debug, Deserialize)]
struct Webhook {
    id: String,
    channel: WebhookChannel,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    content: Vec<Value>,
    #[serde(default)]
    events: Vec<Value>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    reasons: Vec<CloudReason>,
}

#[derive(Debug, Deserialize)]
struct WebhookChannel {
    to: Address,
    #[serde(default)]
    from: Option<Address>,
}

#[derive(Debug, Deserialize)]
struct Address {
    id: String,
    #[serde(default)]
    nickname: Option<String>,
    #[serde(default, rename = "nickName")]
    nick_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CloudReason {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl OpenMessaging {
    fn post(&self, path: &str, body: &Value) -> HttpRequestSpec {
        let mut request = HttpRequestSpec::post_json(format!("{}/{path}", self.base), body);
        request.auth_profile = Some(PROFILE.into());
        request
    }

    fn channel(delivery: &Delivery, now: Timestamp) -> Value {
        let message = &delivery.message;
        let mut from = json!({ "id": delivery.customer, "idType": "Opaque" });
        if let Some(name) = message.sender.as_ref().and_then(|s| s.name.as_ref()) {
            from["nickname"] = json!(name);
        }
        json!({
            "messageId": message.id,
            "time": message_time(message, now),
            "from": from,
        })
    }

    fn message_body(delivery: &Delivery, now: Timestamp) -> Option<Value> {
        let (text, attachments) = match &delivery.message.content {
            Content::Text { text, .. } => (Some(text.clone()), &[][..]),
            Content::Postback { payload, text } => (
                Some(text.clone().unwrap_or_else(|| payload.clone())),
                &[][..],
            ),
            Content::Attachments { attachments, text } => (text.clone(), attachments.as_slice()),
            _ => return None,
        };
        let mut body = json!({ "channel": OpenMessaging::channel(delivery, now) });
        if let Some(text) = text {
            body["text"] = json!(text);
        }
        if !attachments.is_empty() {
            let content: Vec<Value> = attachments.iter().map(attachment_content).collect();
            body["content"] = json!(content);
        }
        Some(body)
    }

    fn receipt_body(
        delivery: &Delivery,
        receipt: &DeliveryReceipt,
        now: Timestamp,
    ) -> Option<Value> {
        let id = delivery.platform_message_id.as_ref()?;
        let status = match receipt.status {
            ReceiptStatus::Delivered => "Delivered",
            ReceiptStatus::Failed => "Failed",
            // Open Messaging takes Delivered and Failed only.
            _ => return None,
        };
        let mut body = json!({
            "id": id,
            "channel": {
                "to": { "id": delivery.customer, "idType": "Opaque" },
                "time": now.to_rfc3339(),
            },
            "status": status,
            "direction": "Outbound",
            "isFinalReceipt": true,
        });
        if receipt.status == ReceiptStatus::Failed {
            let reasons: Vec<Value> = receipt
                .reasons
                .iter()
                .map(|r| {
                    let mut reason = json!({ "code": reasons::cloud_name(r.code) });
                    if let Some(m) = &r.message {
                        reason["message"] = json!(m);
                    }
                    reason
                })
                .collect();
            body["reasons"] = json!(reasons);
        }
        Some(body)
    }

    fn read(request: &InboundRequest) -> Result<Webhook, String> {
        let webhook: Webhook = serde_json::from_slice(&request.body)
            .map_err(|e| format!("unreadable webhook: {e}"))?;
        if webhook.id.is_empty() || webhook.channel.to.id.is_empty() {
            return Err("id and channel.to.id must not be empty".into());
        }
        match webhook.kind.as_str() {
            "Text" | "Structured" | "Event" | "Receipt" => Ok(webhook),
            other => Err(format!("message type {other:?} is not one Patchbay reads")),
        }
    }
}

fn attachment_content(a: &Attachment) -> Value {
    let mime = a
        .content_type
        .clone()
        .unwrap_or_else(|| "application/octet-stream".into());
    let media_type = match mime.split('/').next().unwrap_or_default() {
        "image" => "Image",
        "video" => "Video",
        "audio" => "Audio",
        _ => "File",
    };
    let mut attachment = json!({ "mediaType": media_type, "url": a.url, "mime": mime });
    if let Some(name) = &a.filename {
        attachment["filename"] = json!(name);
    }
    json!({ "contentType": "Attachment", "attachment": attachment })
}

/// The canonical content of a `Text` or `Structured` message.
fn content_of(webhook: &Webhook) -> Result<Content, String> {
    let text = webhook.text.clone().unwrap_or_default();
    let kind_of = |c: &Value| {
        c.get("contentType")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let first = webhook.content.first();
    match first.and_then(kind_of).as_deref() {
        None if webhook.kind == "Text" => Ok(Content::text(text)),
        Some("Attachment") => {
            let attachments: Vec<Attachment> = webhook
                .content
                .iter()
                .filter_map(|c| {
                    let a = c.get("attachment")?;
                    Some(Attachment {
                        url: a.get("url")?.as_str()?.to_string(),
                        filename: str_at(a, "filename"),
                        content_type: str_at(a, "mime"),
                        size: a.get("contentSizeBytes").and_then(Value::as_u64),
                    })
                })
                .collect();
            if attachments.is_empty() {
                return Err("an attachment without a url".into());
            }
            Ok(Content::Attachments {
                attachments,
                text: (!text.is_empty()).then_some(text),
            })
        }
        Some("QuickReply") => {
            let replies: Vec<QuickReply> = webhook
                .content
                .iter()
                .filter_map(|c| {
                    let q = c.get("quickReply")?;
                    let title = str_at(q, "text")?;
                    let payload = str_at(q, "payload").unwrap_or_else(|| title.clone());
                    Some(QuickReply { title, payload })
                })
                .collect();
            if replies.is_empty() {
                return Err("quick replies without options".into());
            }
            Ok(Content::QuickReplies { text, replies })
        }
        Some("Card") => {
            let card = first
                .and_then(|c| c.get("card"))
                .ok_or("a Card without a card")?;
            let card = card_of(card);
            let text = [Some(card.title.clone()), card.subtitle.clone()]
                .into_iter()
                .flatten()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("\n");
            Ok(Content::Buttons {
                text: if text.is_empty() {
                    webhook.text.clone().unwrap_or_default()
                } else {
                    text
                },
                buttons: card.buttons,
            })
        }
        Some("Carousel") => {
            let cards: Vec<Card> = first
                .and_then(|c| c.pointer("/carousel/cards"))
                .and_then(Value::as_array)
                .map(|cards| cards.iter().map(card_of).collect())
                .unwrap_or_default();
            if cards.is_empty() {
                return Err("a carousel without cards".into());
            }
            Ok(Content::Carousel { cards })
        }
        Some("DatePicker") => {
            let picker = first
                .and_then(|c| c.get("datePicker"))
                .ok_or("a DatePicker without a datePicker")?;
            let slots: Vec<TimeSlot> = picker
                .get("availableTimes")
                .and_then(Value::as_array)
                .map(|times| {
                    times
                        .iter()
                        .filter_map(|t| {
                            Some(TimeSlot {
                                start: str_at(t, "dateTime")?,
                                duration_minutes: t
                                    .get("duration")
                                    .and_then(Value::as_u64)
                                    .map(|s| (s / 60) as u32),
                                payload: None,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            if slots.is_empty() {
                return Err("a date picker without times".into());
            }
            Ok(Content::TimePicker {
                title: str_at(picker, "title").unwrap_or(text),
                slots,
                timezone: None,
            })
        }
        _ if !text.is_empty() => Ok(Content::text(text)),
        other => Err(format!(
            "structured content {:?} is not one Patchbay reads",
            other.unwrap_or("(none)")
        )),
    }
}

fn card_of(card: &Value) -> Card {
    let buttons = card
        .get("actions")
        .and_then(Value::as_array)
        .map(|actions| {
            actions
                .iter()
                .filter_map(|a| {
                    let title = str_at(a, "text")?;
                    match a.get("type").and_then(Value::as_str) {
                        Some("Link") => Some(Button::link(title, str_at(a, "url")?)),
                        _ => {
                            let payload = str_at(a, "payload").unwrap_or_else(|| title.clone());
                            Some(Button::postback(title, payload))
                        }
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    Card {
        title: str_at(card, "title").unwrap_or_default(),
        subtitle: str_at(card, "description"),
        image_url: str_at(card, "image"),
        buttons,
    }
}

fn str_at(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_string)
}

impl UpstreamConnector for OpenMessaging {
    fn manifest(&self) -> UpstreamManifest {
        manifest()
    }

    fn verify(&self, request: &InboundRequest, _now: Timestamp) -> Result<Verdict, Rejection> {
        BodySignature::hub_sha256_base64().verify(&self.webhook_secret, request)?;
        let webhook = OpenMessaging::read(request).map_err(Rejection::bad_request)?;
        if matches!(webhook.kind.as_str(), "Text" | "Structured") {
            content_of(&webhook).map_err(Rejection::bad_request)?;
        }
        Ok(Verdict::accept(Some(webhook.id)))
    }

    fn decode(
        &self,
        request: &InboundRequest,
        _now: Timestamp,
    ) -> Result<Vec<PlatformEvent>, AdapterError> {
        let webhook = OpenMessaging::read(request).map_err(AdapterError::bad_input)?;
        let customer = webhook.channel.to.id.clone();
        let content = match webhook.kind.as_str() {
            "Receipt" => {
                let status = match webhook.status.as_deref() {
                    Some("Failed") => ReceiptStatus::Failed,
                    Some("Removed") => ReceiptStatus::Removed,
                    Some("Read") => ReceiptStatus::Read,
                    _ => ReceiptStatus::Delivered,
                };
                let receipt = DeliveryReceipt {
                    message_id: webhook.id.clone(),
                    status,
                    reasons: webhook
                        .reasons
                        .iter()
                        .map(|r| Reason {
                            code: r
                                .code
                                .as_deref()
                                .map_or(ReasonCode::GENERAL, reasons::code_of),
                            message: r.message.clone(),
                        })
                        .collect(),
                    ..Default::default()
                };
                return Ok(vec![PlatformEvent::Receipt {
                    customer: Some(customer),
                    receipt,
                }]);
            }
            "Event" => {
                let typing = webhook
                    .events
                    .iter()
                    .any(|e| e.get("eventType").and_then(Value::as_str) == Some("Typing"));
                if !typing {
                    return Ok(vec![]);
                }
                Content::Typing { active: true }
            }
            _ => content_of(&webhook).map_err(AdapterError::bad_input)?,
        };
        let mut message = Message::new("", content);
        message.provider_message_id = Some(webhook.id.clone());
        if let Some(from) = &webhook.channel.from {
            message.sender = Some(Participant {
                id: from.id.clone(),
                name: from.nickname.clone().or_else(|| from.nick_name.clone()),
            });
        }
        Ok(vec![PlatformEvent::Message {
            customer,
            platform_message_id: Some(webhook.id),
            message: Box::new(message),
        }])
    }

    fn deliver(&self, delivery: &Delivery, now: Timestamp) -> Step {
        let message = &delivery.message;
        match &message.content {
            Content::Receipt(receipt) => {
                match OpenMessaging::receipt_body(delivery, receipt, now) {
                    Some(body) => Step::request(self.post("receipt", &body), &Awaiting::Accepted),
                    None => Step::delivered(None),
                }
            }
            Content::Typing { active: true } => {
                let mut channel = OpenMessaging::channel(delivery, now);
                if let Some(c) = channel.as_object_mut() {
                    c.remove("messageId");
                }
                let body = json!({
                    "channel": channel,
                    "events": [{ "eventType": "Typing", "typing": { "type": "On" } }],
                });
                Step::request(self.post("event", &body), &Awaiting::Accepted)
            }
            Content::Postback { payload, text } if delivery.platform_message_id.is_some() => {
                let body = json!({
                    "channel": OpenMessaging::channel(delivery, now),
                    "buttonResponse": {
                        "type": "QuickReply",
                        "text": text.clone().unwrap_or_else(|| payload.clone()),
                        "payload": payload,
                    },
                    "originatingMessageId": delivery.platform_message_id,
                });
                Step::request(self.post("structured/response", &body), &Awaiting::Message)
            }
            _ => match OpenMessaging::message_body(delivery, now) {
                Some(body) => Step::request(self.post("message", &body), &Awaiting::Message),
                None => Step::delivered(None),
            },
        }
    }

    fn resume(
        &self,
        continuation: Continuation,
        response: ProviderResponse,
        _now: Timestamp,
    ) -> Step {
        let awaiting: Awaiting = match continuation.decode() {
            Ok(a) => a,
            Err(e) => return Step::fail(e),
        };
        if !response.is_success() {
            return Step::fail(response.classify_http_error("Genesys Cloud"));
        }
        match awaiting {
            Awaiting::Message => {
                let id = serde_json::from_slice::<Value>(&response.body)
                    .ok()
                    .and_then(|v| str_at(&v, "id"));
                Step::delivered(id)
            }
            Awaiting::Accepted => Step::delivered(None),
        }
    }

    fn token_request(&self, profile: &str, _now: Timestamp) -> Result<RequestSpec, AdapterError> {
        match profile {
            PROFILE => Ok(self.grant.request()),
            other => Err(AdapterError::permanent(format!(
                "unknown auth profile {other:?}"
            ))),
        }
    }

    fn token_response(
        &self,
        _profile: &str,
        response: ProviderResponse,
        now: Timestamp,
    ) -> Result<AccessToken, AdapterError> {
        self.grant.response(response, now)
    }
}

/// When a message was created: its timestamp, else the time in its UUIDv7
/// id, else `now`. Stable across retries, which Genesys Cloud needs: it
/// dedupes on the message id *and* time.
fn message_time(message: &Message, now: Timestamp) -> String {
    if let Some(ts) = message
        .timestamp
        .as_deref()
        .and_then(Timestamp::parse_rfc3339)
    {
        return ts.to_rfc3339();
    }
    let hex: String = message.id.chars().filter(|c| *c != '-').take(12).collect();
    match i64::from_str_radix(&hex, 16) {
        Ok(ms) if hex.len() == 12 && message.id.len() == 36 => Timestamp(ms).to_rfc3339(),
        _ => now.to_rfc3339(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_time_is_stable_for_a_uuid7_id() {
        let mut m = Message::new("c", Content::text("x"));
        m.id = "0190163d-8694-739b-aea5-966c26f8ad91".into();
        let t = message_time(&m, Timestamp(5));
        assert_eq!(t, message_time(&m, Timestamp(99_999)));
        assert!(t.starts_with("2024-06-"), "{t}");
        m.id = "not-a-uuid".into();
        assert_eq!(message_time(&m, Timestamp(0)), Timestamp(0).to_rfc3339());
    }
}
