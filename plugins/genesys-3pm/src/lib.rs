//! Genesys Multicloud CX Third-Party Messaging (`kind = "genesys-3pm"`).
//!
//! ## To Genesys
//! `POST {api_url}/channels/{channel_id}/messages` with
//! `{"messages":[{channel:{from,to,messageId}, type, …}]}`, signed
//! `X-Hub-Signature: sha1=<hex HMAC-SHA1(signing_secret, body)>`, with
//! `x-ccid` and, when the customer's message carried one, `X-B3-TraceId`.
//! - A customer's text (or a postback's text, or an attachment's URLs as
//!   text) is `type: "Text"`, `from` the customer, `to` the channel,
//!   `messageId` Patchbay's id; the answer's `data.ids[0]` is Genesys' id.
//! - Attachments: each file is fetched and uploaded to
//!   `POST {api_url}/channels/{channel_id}/media` (multipart `file`), then
//!   one `type: "RichMedia"` message names the uploads' `genesys://nexus/…` URLs.
//! - A mail (a message carrying `context.email_subject`) is `type: "Email"`
//!   with `subject` and `content` parts `text` and `html`.
//! - A receipt for an agent's message is `type: "Receipt"`, `from` the
//!   channel, `to` the customer, `messageId` the id Genesys gave the agent's
//!   message, `status` `Delivered` | `Removed` | `Failed` with numeric
//!   `reasons` (Patchbay's codes are Multicloud's).
//! - Typing and end of session: Multicloud documents neither; not sent.
//!
//! ## From Genesys
//! `POST {public_url}/upstreams/{name}/webhook`, verified as
//! `X-Hub-Signature: sha1=` over the raw body with `webhook_secret` (the app
//! secret; defaults to `signing_secret`). `channel.to.id` is the customer,
//! `channel.messageId` Genesys' id, which Patchbay answers with
//! (`{"messageId": …}`, 200, within Genesys' 10 s) and uses to drop
//! redeliveries. `Text` and `Email` messages are read; anything else gets
//! 400 (Genesys documents no other agent message type).
//!
//! ## Assumed where the documents are silent
//! - The consumer message's body (the document's example is an image lost
//!   from the PDF): `type: "Text"`, `text`, `from` = consumer, `to` = channel.
//! - Attachments: the `RichMedia` message naming the uploads, and the
//!   signature over a multipart upload, are not in the documents (see
//!   `media.rs`).
//! - `status.code` other than 0 in a 2xx answer is a refusal of the message.

mod media;
mod trace;

use std::collections::BTreeMap;

use patchbay_plugin_sdk::adapter::{
    AckResponse, ChannelConfig, ConfigError, Continuation, HttpRequestSpec, InboundRequest,
    ProviderResponse, Secret, Step, Timestamp, Verdict,
};
use patchbay_plugin_sdk::error::{AdapterError, Rejection};
use patchbay_plugin_sdk::message::{
    Content, DeliveryReceipt, Message, Participant, ReasonCode, ReceiptStatus,
};
use patchbay_plugin_sdk::upstream::auth::{BodySignature, StaticHeader};
use patchbay_plugin_sdk::upstream::{
    Delivery, PlatformEvent, UpstreamConnector, UpstreamFactory, UpstreamManifest,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The `kind` upstreams use.
pub const KIND: &str = "genesys-3pm";

// The library build's entry point; linked into a host, the factory is used directly.
#[cfg(not(feature = "compiled-in"))]
patchbay_plugin_sdk::export_upstream!(MulticloudFactory);

fn manifest() -> UpstreamManifest {
    UpstreamManifest::new(
        KIND,
        env!("CARGO_PKG_VERSION"),
        "Genesys Multicloud CX Third-Party Messaging (nexus v3): customer messages and receipts to Genesys, agent messages from its webhook",
    )
    .with_receipts()
    .with_ack_deadline_ms(10_000)
}

/// `[upstreams.<name>.settings]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// The Third-Party Messaging API base, ending in `/nexus/v3`.
    api_url: String,
    /// The contact centre id, sent as `x-ccid`.
    ccid: String,
    /// The Genesys channel id (path and `to`/`from`) for every Patchbay
    /// channel not listed in `channel_ids`.
    channel_id: Option<String>,
    /// Genesys channel ids by Patchbay channel.
    #[serde(default)]
    channel_ids: BTreeMap<String, String>,
}

/// Makes [`Multicloud`] connectors.
#[derive(Debug, Default, Clone, Copy)]
pub struct MulticloudFactory;

impl UpstreamFactory for MulticloudFactory {
    fn manifest(&self) -> UpstreamManifest {
        manifest()
    }

    fn create(&self, config: &ChannelConfig) -> Result<Box<dyn UpstreamConnector>, ConfigError> {
        let settings: Settings = config.settings()?;
        ConfigError::check_http_url("settings.api_url", &settings.api_url)?;
        ConfigError::check_not_empty([("settings.ccid", settings.ccid.as_str())])?;
        if settings.channel_id.is_none() && settings.channel_ids.is_empty() {
            return Err(ConfigError::new(
                "settings.channel_id",
                "name the Genesys channel id (or map each Patchbay channel in channel_ids)",
            ));
        }
        let signing_secret = config.secret("signing_secret")?.clone();
        let webhook_secret = match config.secrets.get("webhook_secret") {
            Some(_) => config.secret("webhook_secret")?.clone(),
            None => signing_secret.clone(),
        };
        let mut headers = vec![StaticHeader {
            name: "x-ccid".into(),
            value: Secret::new(settings.ccid.trim()),
        }];
        if config.secrets.contains_key("api_key") {
            headers.push(StaticHeader {
                name: "x-api-key".into(),
                value: config.secret("api_key")?.clone(),
            });
        }
        Ok(Box::new(Multicloud {
            api_url: settings.api_url.trim_end_matches('/').to_string(),
            channel_id: settings.channel_id,
            channel_ids: settings.channel_ids,
            signing_secret,
            webhook_secret,
            headers,
        }))
    }
}

/// The Third-Party Messaging connector.
#[derive(Debug)]
pub struct Multicloud {
    api_url: String,
    channel_id: Option<String>,
    channel_ids: BTreeMap<String, String>,
    signing_secret: Secret,
    webhook_secret: Secret,
    headers: Vec<StaticHeader>,
}

/// What a delivery waits for.
#[derive(Debug, Serialize, Deserialize)]
enum Awaiting {
    /// The answer to a message: Genesys' id for it.
    Ids,
    /// The answer to a receipt.
    Receipt,
    /// An attachment's bytes, to upload.
    Fetched(media::MediaSend),
    /// Genesys' answer to an upload.
    Uploaded(media::MediaSend),
}

/// Genesys' webhook body (the fields Patchbay reads).
#[derive(Debug, Deserialize)]
struct Webhook {
    channel: WebhookChannel,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    content: Vec<EmailPart>,
    #[serde(default)]
    context: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct WebhookChannel {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    from: Option<Address>,
    to: Address,
    #[serde(rename = "messageId")]
    message_id: String,
}

#[derive(Debug, Deserialize)]
struct Address {
    id: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct EmailPart {
    #[serde(rename = "type")]
    kind: String,
    text: String,
}

impl Multicloud {
    fn channel_for(&self, patchbay_channel: &str) -> Result<&str, AdapterError> {
        self.channel_ids
            .get(patchbay_channel)
            .or(self.channel_id.as_ref())
            .map(String::as_str)
            .ok_or_else(|| {
                AdapterError::permanent(format!(
                    "no Genesys channel id for channel {patchbay_channel:?}: add it to settings.channel_ids"
                ))
                .with_reason(ReasonCode::INVALID_DESTINATION)
            })
    }

    fn post(&self, genesys_channel: &str, trace: Option<&str>, entry: Value) -> HttpRequestSpec {
        let url = format!(
            "{}/channels/{}/messages",
            self.api_url,
            patchbay_plugin_sdk::url::encode_component(genesys_channel)
        );
        self.signed(
            HttpRequestSpec::post_json(url, &json!({ "messages": [entry] })),
            trace,
        )
    }

    /// With `x-ccid` (and any other static header), the trace id and the
    /// body's signature.
    fn signed(&self, mut request: HttpRequestSpec, trace: Option<&str>) -> HttpRequestSpec {
        if let Some(trace) = trace {
            request = request.header("X-B3-TraceId", trace);
        }
        let request = StaticHeader::apply(&self.headers, request);
        BodySignature::hub_sha1().sign(&self.signing_secret, request)
    }

    /// The next step of an attachment send: fetch the next file, or send
    /// the message once every file is uploaded.
    fn media_step(&self, send: media::MediaSend) -> Step {
        match send.next_file() {
            Some(file) => Step::request(
                HttpRequestSpec::get(file.url.clone()),
                &Awaiting::Fetched(send),
            ),
            None => {
                let request = self.post(&send.channel, send.trace.as_deref(), send.message());
                Step::request(request, &Awaiting::Ids)
            }
        }
    }

    /// The entry for a customer's message, or `None` for what Multicloud
    /// cannot take.
    fn customer_entry(&self, delivery: &Delivery, genesys_channel: &str) -> Option<Value> {
        let message = &delivery.message;
        let mut from = json!({ "id": delivery.customer });
        if let Some(name) = message.sender.as_ref().and_then(|s| s.name.as_ref()) {
            from["name"] = json!(name);
        }
        let channel = json!({
            "from": from,
            "to": { "id": genesys_channel },
            "messageId": message.id,
        });
        let text = match &message.content {
            Content::Text { text, .. } => text.clone(),
            Content::Postback { payload, text } => text.clone().unwrap_or_else(|| payload.clone()),
            Content::Attachments { attachments, text } => {
                let mut lines: Vec<String> = text.iter().cloned().collect();
                lines.extend(attachments.iter().map(|a| a.url.clone()));
                lines.join("\n")
            }
            _ => return None,
        };
        if let Some(subject) = message.context.get("email_subject").and_then(Value::as_str) {
            let mut content = vec![json!({ "type": "text", "text": text })];
            if let Some(html) = message.context.get("email_html").and_then(Value::as_str) {
                content.push(json!({ "type": "html", "text": html }));
            }
            return Some(json!({
                "channel": channel,
                "type": "Email",
                "subject": subject,
                "content": content,
            }));
        }
        Some(json!({ "channel": channel, "type": "Text", "text": text }))
    }

    fn receipt_entry(
        &self,
        delivery: &Delivery,
        receipt: &DeliveryReceipt,
        genesys_channel: &str,
    ) -> Option<Value> {
        let message_id = delivery.platform_message_id.as_ref()?;
        let status = match receipt.status {
            ReceiptStatus::Delivered => "Delivered",
            ReceiptStatus::Removed => "Removed",
            ReceiptStatus::Failed => "Failed",
            // Multicloud has no read receipts.
            _ => return None,
        };
        let mut entry = json!({
            "channel": {
                "from": { "id": genesys_channel },
                "to": { "id": delivery.customer },
                "messageId": message_id,
            },
            "type": "Receipt",
            "status": status,
        });
        if receipt.status == ReceiptStatus::Failed {
            let reasons: Vec<Value> = receipt
                .reasons
                .iter()
                .map(|r| match &r.message {
                    Some(m) => json!({ "code": r.code.0, "message": m }),
                    None => json!({ "code": r.code.0 }),
                })
                .collect();
            entry["reasons"] = json!(reasons);
        }
        Some(entry)
    }

    fn read(request: &InboundRequest) -> Result<Webhook, String> {
        let webhook: Webhook = serde_json::from_slice(&request.body)
            .map_err(|e| format!("unreadable webhook: {e}"))?;
        if webhook.channel.to.id.is_empty() || webhook.channel.message_id.is_empty() {
            return Err("channel.to.id and channel.messageId must not be empty".into());
        }
        match webhook.kind.as_str() {
            "Text" if webhook.text.is_some() => Ok(webhook),
            "Email" if webhook.subject.is_some() || !webhook.content.is_empty() => Ok(webhook),
            "Text" | "Email" => Err(format!("a {} message without content", webhook.kind)),
            other => Err(format!("message type {other:?} is not one Patchbay reads")),
        }
    }
}

impl UpstreamConnector for Multicloud {
    fn manifest(&self) -> UpstreamManifest {
        manifest()
    }

    fn verify(&self, request: &InboundRequest, _now: Timestamp) -> Result<Verdict, Rejection> {
        BodySignature::hub_sha1().verify(&self.webhook_secret, request)?;
        let webhook = Multicloud::read(request).map_err(Rejection::bad_request)?;
        let id = webhook.channel.message_id;
        // Genesys looks the message up by this id when receipts arrive.
        let ack =
            AckResponse::with_body("application/json", json!({ "messageId": id }).to_string());
        Ok(Verdict::accept_with(ack, Some(id)))
    }

    fn decode(
        &self,
        request: &InboundRequest,
        _now: Timestamp,
    ) -> Result<Vec<PlatformEvent>, AdapterError> {
        let webhook = Multicloud::read(request).map_err(AdapterError::bad_input)?;
        let content = match webhook.kind.as_str() {
            "Email" => {
                let part = |kind: &str| {
                    webhook
                        .content
                        .iter()
                        .find(|p| p.kind.eq_ignore_ascii_case(kind))
                        .map(|p| p.text.clone())
                };
                part("text").or_else(|| part("html")).unwrap_or_default()
            }
            _ => webhook.text.clone().unwrap_or_default(),
        };
        let mut message = Message::new("", Content::text(content));
        message.provider_message_id = Some(webhook.channel.message_id.clone());
        message.trace = trace::trace_from_b3(request.header("x-b3-traceid"));
        if let Some(from) = &webhook.channel.from {
            message.sender = Some(Participant {
                id: from.id.clone(),
                name: from.name.clone(),
            });
        }
        if webhook.kind == "Email" {
            if let Some(subject) = &webhook.subject {
                message
                    .context
                    .insert("email_subject".into(), json!(subject));
            }
            if let Some(html) = webhook
                .content
                .iter()
                .find(|p| p.kind.eq_ignore_ascii_case("html"))
            {
                message
                    .context
                    .insert("email_html".into(), json!(html.text));
            }
            if let Some(reply_to) = webhook
                .context
                .as_ref()
                .and_then(|c| c.pointer("/replyTo/id"))
            {
                message
                    .context
                    .insert("email_reply_to".into(), reply_to.clone());
            }
        }
        if let Some(channel) = &webhook.channel.id {
            message
                .context
                .insert("genesys_channel_id".into(), json!(channel));
        }
        Ok(vec![PlatformEvent::Message {
            customer: webhook.channel.to.id,
            platform_message_id: Some(webhook.channel.message_id),
            message: Box::new(message),
        }])
    }

    fn deliver(&self, delivery: &Delivery, _now: Timestamp) -> Step {
        let genesys_channel = match self.channel_for(&delivery.message.channel) {
            Ok(c) => c,
            Err(e) => return Step::fail(e),
        };
        let trace = trace::trace_id(&delivery.message.trace);
        if let Content::Attachments { attachments, text } = &delivery.message.content
            && !attachments.is_empty()
        {
            let Some(entry) = self.customer_entry(delivery, genesys_channel) else {
                return Step::delivered(None);
            };
            return self.media_step(media::MediaSend {
                channel: genesys_channel.to_string(),
                envelope: entry["channel"].clone(),
                text: text.clone(),
                files: attachments.clone(),
                uploaded: Vec::new(),
                trace,
                boundary: delivery.message.id.replace('-', ""),
            });
        }
        let (entry, awaiting) = match &delivery.message.content {
            Content::Receipt(receipt) => (
                self.receipt_entry(delivery, receipt, genesys_channel),
                Awaiting::Receipt,
            ),
            _ => (
                self.customer_entry(delivery, genesys_channel),
                Awaiting::Ids,
            ),
        };
        match entry {
            Some(entry) => Step::request(
                self.post(genesys_channel, trace.as_deref(), entry),
                &awaiting,
            ),
            None => Step::delivered(None),
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
        let awaiting = match awaiting {
            Awaiting::Fetched(send) => {
                return match send.upload(&self.api_url, &response) {
                    Ok(upload) => Step::request(
                        self.signed(upload, send.trace.as_deref()),
                        &Awaiting::Uploaded(send),
                    ),
                    Err(e) => Step::fail(e),
                };
            }
            Awaiting::Uploaded(mut send) => {
                return match send.uploaded(&response) {
                    Ok(()) => self.media_step(send),
                    Err(e) => Step::fail(e),
                };
            }
            other => other,
        };
        if !response.is_success() {
            return Step::fail(response.classify_http_error("Genesys"));
        }
        #[derive(Deserialize, Default)]
        struct Answer {
            #[serde(default)]
            status: Status,
            #[serde(default)]
            data: Option<Data>,
        }
        #[derive(Deserialize, Default)]
        struct Status {
            #[serde(default)]
            code: i64,
            #[serde(default)]
            message: Option<String>,
        }
        #[derive(Deserialize)]
        struct Data {
            #[serde(default)]
            ids: Vec<String>,
        }
        let answer: Answer = serde_json::from_slice(&response.body).unwrap_or_default();
        if answer.status.code != 0 {
            return Step::fail(
                AdapterError::permanent(format!(
                    "Genesys refused the message: status {} {}",
                    answer.status.code,
                    answer.status.message.unwrap_or_default()
                ))
                .with_reason(ReasonCode::INVALID_STRUCTURE),
            );
        }
        match awaiting {
            Awaiting::Ids => Step::delivered(answer.data.and_then(|d| d.ids.into_iter().next())),
            Awaiting::Receipt => Step::delivered(None),
            Awaiting::Fetched(_) | Awaiting::Uploaded(_) => Step::fail(AdapterError::permanent(
                "an attachment step was answered out of order",
            )),
        }
    }
}
