//! Pega Digital Messaging Service through its Client Channel API
//! (`kind = "pega-dms"`): Patchbay is the integration layer between the
//! customers' channels and a Pega application.
//!
//! ## To DMS
//! `POST {dms_url}` (the connection's Digital Messaging Webhook URL) with
//! `Authorization: Bearer <JWT>` — HS256 over `{"iss": connection_id, "iat": now}`
//! with the connection's JWT secret, minted per request (DMS accepts a token
//! for five minutes) — and a `connection_id` header:
//! - a customer's text: `{type: "text", customer_id, customer_name, message_id, text: [text]}`
//!   (text is an array); attachments add `attachments: [{url}]`; a postback
//!   adds `postback: <payload>` with the chosen label as the text; context
//!   data adds `context_data`;
//! - typing: `{type: "typing_indicator", customer_id}`;
//! - end of session: `{type: "customer_end_session", customer_id}`.
//!
//! DMS has no receipts: a message a channel could not deliver is reported as
//! a text in the conversation from the customer's side — the channel's
//! `channel_msg_failed` system message, which the host passes as the
//! delivery's notice (else `[Patchbay] …` with the reason) — so the agent
//! sees it; a delivered one sends nothing.
//!
//! ## From DMS
//! Its calls to `POST {public_url}/upstreams/{name}/webhook` carry the same
//! kind of token: HS256 only, `iss` the connection id, issued at most 300 s
//! ago (60 s of clock skew allowed the other way); anything else is refused
//! with 403 and nothing is stored. Accepted calls are answered `200 success`.
//! `customer_id` is the customer key Patchbay gave DMS. Read: `text` (with
//! attachments), `menu` (a list picker), `link_button`, `carousel`,
//! `typing_indicator`, `csr_end_session`, `wait_time`; other types are
//! acknowledged and ignored, as Pega's own SDK does.
//!
//! ## Assumed where the documents are silent
//! - `link_button` carries `title`, `label`, `url`; `carousel` carries
//!   `items: [{title, subtitle, image_url, buttons: [{text, payload | url}]}]`.
//! - `wait_time`'s `waitTime` has no documented unit: it is shown as given
//!   ("Estimated wait: 5").
//! - `customer_end_session` confirms nothing back.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use patchbay_plugin_sdk::adapter::{
    AckResponse, ChannelConfig, ConfigError, Continuation, HttpRequestSpec, InboundRequest,
    ProviderResponse, Secret, Step, Timestamp, Verdict,
};
use patchbay_plugin_sdk::capabilities::RichType;
use patchbay_plugin_sdk::error::{AdapterError, Rejection};
use patchbay_plugin_sdk::message::{
    Attachment, Button, Card, Content, ListItem, Message, Participant, ReceiptStatus,
};
use patchbay_plugin_sdk::signature::auth_credentials;
use patchbay_plugin_sdk::upstream::{
    Delivery, PlatformEvent, UpstreamConnector, UpstreamFactory, UpstreamManifest,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The `kind` upstreams use.
pub const KIND: &str = "pega-dms";

/// How old a DMS token may be, in seconds.
const MAX_TOKEN_AGE_SECS: i64 = 300;
/// How far in the future a token's `iat` may be (clock skew), in seconds.
const SKEW_SECS: i64 = 60;

// The library build's entry point; linked into a host, the factory is used directly.
#[cfg(not(feature = "compiled-in"))]
patchbay_plugin_sdk::export_upstream!(PegaDmsFactory);

fn manifest() -> UpstreamManifest {
    UpstreamManifest::new(
        KIND,
        env!("CARGO_PKG_VERSION"),
        "Pega Digital Messaging Service (Client Channel API): customer messages, typing and end of session to DMS, agent messages from it",
    )
    .with_typing()
    .with_rich_types(&[RichType::ListPicker, RichType::Buttons, RichType::Carousel])
}

/// `[upstreams.<name>.settings]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// The connection's Digital Messaging Webhook URL.
    dms_url: String,
    /// The connection id (the tokens' `iss`, and the `connection_id` header).
    connection_id: String,
}

/// Makes [`PegaDms`] connectors.
#[derive(Debug, Default, Clone, Copy)]
pub struct PegaDmsFactory;

impl UpstreamFactory for PegaDmsFactory {
    fn manifest(&self) -> UpstreamManifest {
        manifest()
    }

    fn create(&self, config: &ChannelConfig) -> Result<Box<dyn UpstreamConnector>, ConfigError> {
        let settings: Settings = config.settings()?;
        ConfigError::check_http_url("settings.dms_url", &settings.dms_url)?;
        ConfigError::check_not_empty([(
            "settings.connection_id",
            settings.connection_id.as_str(),
        )])?;
        Ok(Box::new(PegaDms {
            dms_url: settings.dms_url,
            connection_id: settings.connection_id.trim().to_string(),
            jwt_secret: config.secret("jwt_secret")?.clone(),
        }))
    }
}

/// The Client Channel API connector.
#[derive(Debug)]
pub struct PegaDms {
    dms_url: String,
    connection_id: String,
    jwt_secret: Secret,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    iat: i64,
}

/// A DMS call (the fields Patchbay reads).
#[derive(Debug, Deserialize)]
struct Call {
    #[serde(rename = "type")]
    kind: String,
    customer_id: String,
    #[serde(default)]
    message_id: Option<String>,
    #[serde(default)]
    csr_name: Option<String>,
    #[serde(default)]
    text: Vec<String>,
    #[serde(default)]
    attachments: Vec<DmsAttachment>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    items: Vec<Value>,
    #[serde(default, rename = "waitTime")]
    wait_time: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct DmsAttachment {
    url: String,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    file_name: Option<String>,
    #[serde(default)]
    size: Option<u64>,
}

impl PegaDms {
    /// A token for one request.
    fn token(&self, now: Timestamp) -> Result<String, AdapterError> {
        let claims = Claims {
            iss: self.connection_id.clone(),
            iat: now.as_secs(),
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(self.jwt_secret.expose().as_bytes()),
        )
        .map_err(|e| AdapterError::permanent(format!("cannot sign the DMS token: {e}")))
    }

    fn post(&self, body: &Value, now: Timestamp) -> Step {
        let token = match self.token(now) {
            Ok(t) => t,
            Err(e) => return Step::fail(e),
        };
        let request = HttpRequestSpec::post_json(self.dms_url.clone(), body)
            .header("authorization", format!("Bearer {token}"))
            .header("connection_id", self.connection_id.clone());
        Step::request(request, &())
    }

    /// Checks the caller's token: HS256, our connection, fresh.
    fn check_token(&self, request: &InboundRequest, now: Timestamp) -> Result<(), Rejection> {
        let forbidden = |why: &str| Rejection {
            status: 403,
            message: why.to_string(),
            stale_resources: false,
        };
        let token = request
            .header("authorization")
            .and_then(|h| auth_credentials(h, "Bearer"))
            .ok_or_else(|| forbidden("missing bearer token"))?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.validate_exp = false;
        validation.required_spec_claims = ["iss".to_string()].into();
        validation.set_issuer(&[&self.connection_id]);
        let data = jsonwebtoken::decode::<Claims>(
            token,
            &DecodingKey::from_secret(self.jwt_secret.expose().as_bytes()),
            &validation,
        )
        .map_err(|_| forbidden("invalid token"))?;
        let age = now.as_secs() - data.claims.iat;
        if !(-SKEW_SECS..=MAX_TOKEN_AGE_SECS).contains(&age) {
            return Err(forbidden("token expired"));
        }
        Ok(())
    }

    fn read(request: &InboundRequest) -> Result<Call, String> {
        let call: Call = serde_json::from_slice(&request.body)
            .map_err(|e| format!("unreadable DMS call: {e}"))?;
        if call.customer_id.is_empty() {
            return Err("customer_id must not be empty".into());
        }
        content_of(&call)?;
        Ok(call)
    }
}

/// The canonical content of a call; `None` for a type Patchbay ignores.
fn content_of(call: &Call) -> Result<Option<Content>, String> {
    let text = call.text.join("\n");
    Ok(Some(match call.kind.as_str() {
        "text" if !call.attachments.is_empty() => Content::Attachments {
            attachments: call
                .attachments
                .iter()
                .map(|a| Attachment {
                    url: a.url.clone(),
                    filename: a.file_name.clone(),
                    content_type: a.content_type.clone(),
                    size: a.size,
                })
                .collect(),
            text: (!text.is_empty()).then_some(text),
        },
        "text" if text.is_empty() => return Err("a text message without text".into()),
        "text" => Content::text(text),
        "menu" => {
            let items: Vec<ListItem> = call
                .items
                .iter()
                .filter_map(|item| {
                    let title = str_at(item, "text")?;
                    Some(ListItem {
                        payload: str_at(item, "payload").unwrap_or_else(|| title.clone()),
                        title,
                        subtitle: None,
                        image_url: str_at(item, "image_url"),
                    })
                })
                .collect();
            if items.is_empty() {
                return Err("a menu without items".into());
            }
            Content::ListPicker {
                title: call.title.clone().unwrap_or(text),
                items,
            }
        }
        "link_button" => {
            let (Some(label), Some(url)) = (&call.label, &call.url) else {
                return Err("a link_button needs a label and a url".into());
            };
            Content::Buttons {
                text: call.title.clone().unwrap_or_else(|| label.clone()),
                buttons: vec![Button::link(label, url)],
            }
        }
        "carousel" => {
            let cards: Vec<Card> = call.items.iter().map(card_of).collect();
            if cards.is_empty() {
                return Err("a carousel without items".into());
            }
            Content::Carousel { cards }
        }
        "typing_indicator" => Content::Typing { active: true },
        "csr_end_session" => Content::EndSession { reason: None },
        "wait_time" => {
            let wait = match &call.wait_time {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => return Err("wait_time without waitTime".into()),
            };
            Content::text(format!("Estimated wait: {wait}"))
        }
        _ => return Ok(None),
    }))
}

fn card_of(item: &Value) -> Card {
    let buttons = item
        .get("buttons")
        .and_then(Value::as_array)
        .map(|buttons| {
            buttons
                .iter()
                .filter_map(|b| {
                    let title = str_at(b, "text").or_else(|| str_at(b, "label"))?;
                    match str_at(b, "url") {
                        Some(url) => Some(Button::link(title, url)),
                        None => {
                            let payload = str_at(b, "payload").unwrap_or_else(|| title.clone());
                            Some(Button::postback(title, payload))
                        }
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    Card {
        title: str_at(item, "title").unwrap_or_default(),
        subtitle: str_at(item, "subtitle"),
        image_url: str_at(item, "image_url"),
        buttons,
    }
}

fn str_at(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_string)
}

impl UpstreamConnector for PegaDms {
    fn manifest(&self) -> UpstreamManifest {
        manifest()
    }

    fn verify(&self, request: &InboundRequest, now: Timestamp) -> Result<Verdict, Rejection> {
        self.check_token(request, now)?;
        let call = PegaDms::read(request).map_err(Rejection::bad_request)?;
        let ack = AckResponse::with_body("text/plain", "success");
        Ok(Verdict::accept_with(ack, call.message_id))
    }

    fn decode(
        &self,
        request: &InboundRequest,
        _now: Timestamp,
    ) -> Result<Vec<PlatformEvent>, AdapterError> {
        let call = PegaDms::read(request).map_err(AdapterError::bad_input)?;
        let Some(content) = content_of(&call).map_err(AdapterError::bad_input)? else {
            return Ok(vec![]);
        };
        let mut message = Message::new("", content);
        message.provider_message_id = call.message_id.clone();
        message.sender = call.csr_name.clone().map(|name| Participant {
            id: name.clone(),
            name: Some(name),
        });
        Ok(vec![PlatformEvent::Message {
            customer: call.customer_id,
            platform_message_id: call.message_id,
            message: Box::new(message),
        }])
    }

    fn deliver(&self, delivery: &Delivery, now: Timestamp) -> Step {
        let message = &delivery.message;
        let customer = &delivery.customer;
        let name = message.sender.as_ref().and_then(|s| s.name.clone());
        let text_call = |text: Vec<String>| {
            let mut body = json!({
                "type": "text",
                "customer_id": customer,
                "message_id": message.id,
                "text": text,
            });
            if let Some(name) = &name {
                body["customer_name"] = json!(name);
            }
            body
        };
        let body = match &message.content {
            Content::Text { text, .. } => text_call(vec![text.clone()]),
            Content::Postback { payload, text } => {
                let mut body = text_call(vec![text.clone().unwrap_or_else(|| payload.clone())]);
                body["postback"] = json!(payload);
                body
            }
            Content::Attachments { attachments, text } => {
                let mut body = text_call(text.iter().cloned().collect());
                let urls: Vec<Value> = attachments
                    .iter()
                    .map(|a| json!({ "url": a.url }))
                    .collect();
                body["attachments"] = json!(urls);
                body
            }
            Content::ContextData { data } => {
                let mut body = text_call(vec![]);
                body["context_data"] = json!(data);
                body
            }
            Content::Typing { active: true } => {
                json!({ "type": "typing_indicator", "customer_id": customer })
            }
            Content::EndSession { .. } => {
                json!({ "type": "customer_end_session", "customer_id": customer })
            }
            // No receipts in DMS: a failure is told in the conversation, in
            // the channel's own words when the host gives them.
            Content::Receipt(receipt) if receipt.status == ReceiptStatus::Failed => {
                let text = delivery.notice.clone().unwrap_or_else(|| {
                    let why = receipt
                        .reasons
                        .first()
                        .and_then(|r| r.message.clone())
                        .unwrap_or_else(|| "no reason given".into());
                    format!("[Patchbay] A message could not be delivered to the customer: {why}")
                });
                text_call(vec![text])
            }
            _ => return Step::delivered(None),
        };
        self.post(&body, now)
    }

    fn resume(
        &self,
        _continuation: Continuation,
        response: ProviderResponse,
        _now: Timestamp,
    ) -> Step {
        if response.is_success() {
            // DMS answers without ids.
            Step::delivered(None)
        } else {
            Step::fail(response.classify_http_error("DMS"))
        }
    }
}
