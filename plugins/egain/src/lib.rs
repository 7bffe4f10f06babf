//! eGain Conversation Hub (`kind = "egain"`): Patchbay is a *customer* client
//! application of the Hub — a bring-your-own channel — for every Patchbay
//! channel routed to the upstream.
//!
//! ## To the Hub
//! `POST {api_url}/conversations/messages` with an OAuth client-credentials
//! token (scope `app.conversation.conversationmgr.interaction.manage`, from
//! `token_url`, credentials in the form), answered 202: a customer's `text`
//! (with attachments by URL, or a postback's payload), `typing.start` /
//! `typing.end`, `customer.info` (context data) and `conversation.end`. The
//! customer's address is Patchbay's customer key; the recipient is the
//! account's address. The Hub has no receipts: a message a channel could not
//! deliver is told to the agent as an `error` message carrying the channel's
//! own text (the refusal's system message, or `channel_msg_failed`).
//!
//! ## From the Hub
//! Callbacks to `POST {public_url}/upstreams/{name}/webhook`, answered 200 at
//! once (the Hub allows 5 s; decoding happens after the answer). They
//! authenticate with a token from Patchbay's own endpoint or with Basic auth
//! ([`callback`]); a missing, wrong or expired one is answered 401, which
//! makes the Hub fetch a new token. Read: `text` (with attachments),
//! `typing.start`/`typing.end`, `conversation.end`, and the rich types
//! `richMessage.listpicker`, `.quickreply`, `.timepicker`, `.richlink`;
//! other types are acknowledged and ignored, as eGain asks of receivers.
//!
//! ## Channels
//! `patchbay upstreams sync <name>` creates or updates each routed channel's
//! channel object from Patchbay's model ([`channel`]) through
//! `GET`/`POST`/`PUT {api_url}/channels` (scope
//! `app.conversation.conversationmgr.manage`) and reports every change;
//! a change that would widen what the Hub's copy allows is held unless
//! `--widen` is given.
//!
//! The message bodies below the documented envelope are assumed; they are
//! all in [`wire`].

pub mod callback;
pub mod channel;
pub mod wire;

use patchbay_plugin_sdk::adapter::{
    AccessToken, AckResponse, ChannelConfig, ConfigError, Continuation, HttpRequestSpec,
    InboundRequest, ProviderResponse, RequestSpec, Step, Timestamp, Verdict,
};
use patchbay_plugin_sdk::capabilities::RichType;
use patchbay_plugin_sdk::error::{AdapterError, Rejection};
use patchbay_plugin_sdk::message::{
    Attachment, Content, ListItem, Message, Participant, QuickReply, ReceiptStatus, TimeSlot,
};
use patchbay_plugin_sdk::upstream::auth::{ClientCredentials, CredentialsIn};
use patchbay_plugin_sdk::upstream::register::{
    ChannelOutcome, RegisterAction, Registration, RegistrationReport,
};
use patchbay_plugin_sdk::upstream::{
    Delivery, PlatformEvent, UpstreamConnector, UpstreamFactory, UpstreamManifest,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use callback::{CallbackAuth, Scheme};
use wire::{Attribute, Envelope, HubAttachment, HubContent, HubMessage, Messages, Metadata, Party};

/// The `kind` upstreams use.
pub const KIND: &str = "egain";

/// The auth profile of messaging calls.
const MESSAGING: &str = "messaging";
/// The auth profile of channel registration.
const MANAGE: &str = "manage";
const MESSAGING_SCOPE: &str = "app.conversation.conversationmgr.interaction.manage";
const MANAGE_SCOPE: &str = "app.conversation.conversationmgr.manage";

// The library build's entry point; linked into a host, the factory is used directly.
#[cfg(not(feature = "compiled-in"))]
patchbay_plugin_sdk::export_upstream!(EgainFactory);

fn manifest() -> UpstreamManifest {
    UpstreamManifest::new(
        KIND,
        env!("CARGO_PKG_VERSION"),
        "eGain Conversation Hub (bring your own channel): customer messages, typing and conversation end to the Hub, agents' messages from it, channels registered from Patchbay's model",
    )
    .with_typing()
    .with_rich_types(&[
        RichType::ListPicker,
        RichType::QuickReplies,
        RichType::TimePicker,
        RichType::RichLink,
    ])
    .with_ack_deadline_ms(5_000)
}

/// `[upstreams.<name>.settings]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// `https://api.egain.cloud/conversation/conversationmgr/v3`.
    api_url: String,
    /// The client application's token URL.
    token_url: String,
    /// The client application's id.
    client_id: String,
    /// The account's address: the recipient of customers' messages.
    account_address: String,
    /// `token` (Patchbay's token endpoint) or `basic`.
    #[serde(default)]
    callback_auth: Scheme,
    /// The id the Hub presents for callbacks.
    callback_client_id: String,
    /// Lifetime of the tokens Patchbay issues to the Hub.
    #[serde(default = "default_token_lifetime")]
    token_lifetime_secs: i64,
    /// A base64 PNG (32×32) for registered channels; a plain one if absent.
    #[serde(default)]
    icon: Option<String>,
}

fn default_token_lifetime() -> i64 {
    3600
}

/// Makes [`Egain`] connectors.
#[derive(Debug, Default, Clone, Copy)]
pub struct EgainFactory;

impl UpstreamFactory for EgainFactory {
    fn manifest(&self) -> UpstreamManifest {
        manifest()
    }

    fn create(&self, config: &ChannelConfig) -> Result<Box<dyn UpstreamConnector>, ConfigError> {
        let settings: Settings = config.settings()?;
        ConfigError::check_http_url("settings.api_url", &settings.api_url)?;
        ConfigError::check_http_url("settings.token_url", &settings.token_url)?;
        ConfigError::check_not_empty([
            ("settings.client_id", settings.client_id.as_str()),
            ("settings.account_address", &settings.account_address),
            ("settings.callback_client_id", &settings.callback_client_id),
        ])?;
        if !(1..=86_400).contains(&settings.token_lifetime_secs) {
            return Err(ConfigError::new(
                "settings.token_lifetime_secs",
                "must be between 1 and 86400",
            ));
        }
        let client_secret = config.secret("client_secret")?;
        let grant = |scope: &str| ClientCredentials {
            token_url: settings.token_url.clone(),
            client_id: settings.client_id.clone(),
            client_secret: client_secret.clone(),
            scope: Some(scope.to_string()),
            credentials_in: CredentialsIn::Form,
        };
        Ok(Box::new(Egain {
            api_url: settings.api_url.trim_end_matches('/').to_string(),
            messaging: grant(MESSAGING_SCOPE),
            manage: grant(MANAGE_SCOPE),
            account_address: settings.account_address.clone(),
            callback: CallbackAuth {
                scheme: settings.callback_auth,
                client_id: settings.callback_client_id.clone(),
                client_secret: config.secret("callback_client_secret")?.clone(),
                audience: config.channel.clone(),
                token_lifetime_secs: settings.token_lifetime_secs,
            },
            icon: settings
                .icon
                .unwrap_or_else(|| channel::DEFAULT_ICON.to_string()),
        }))
    }
}

/// The Conversation Hub connector.
#[derive(Debug)]
pub struct Egain {
    api_url: String,
    messaging: ClientCredentials,
    manage: ClientCredentials,
    account_address: String,
    callback: CallbackAuth,
    icon: String,
}

/// Where a chain is.
#[derive(Debug, Serialize, Deserialize)]
enum Awaiting {
    /// A message's 202: the Hub's id for it.
    Sent,
    /// The Hub's channel list.
    Channels(Pending),
    /// A channel's creation or update.
    Written(Pending),
}

/// A registration in progress: the writes still to make and the report so far.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    registration: Registration,
    writes: Vec<Write>,
    report: RegistrationReport,
}

/// One channel object to create (no id) or update.
#[derive(Debug, Serialize, Deserialize)]
struct Write {
    /// Index of the channel's outcome in the report.
    outcome: usize,
    id: Option<String>,
    body: Value,
}

impl Egain {
    fn post(&self, path: &str, body: &Value, profile: &str) -> HttpRequestSpec {
        let mut request = HttpRequestSpec::post_json(format!("{}/{path}", self.api_url), body);
        request.auth_profile = Some(profile.into());
        request
    }

    fn is_token_request(request: &InboundRequest) -> bool {
        let path = request.url.split(['?', '#']).next().unwrap_or_default();
        path.ends_with("/token")
    }

    fn read(request: &InboundRequest) -> Result<Envelope, String> {
        let envelope: Envelope = serde_json::from_slice(&request.body)
            .map_err(|e| format!("unreadable Hub callback: {e}"))?;
        if envelope.messages.message.is_empty() {
            return Err("a callback without messages".into());
        }
        for message in &envelope.messages.message {
            customer_of(message)?;
            content_of(message)?;
        }
        Ok(envelope)
    }

    /// The message for the Hub from a customer, `kind` with `content`.
    fn customer_call(
        &self,
        delivery: &Delivery,
        kind: &str,
        content: Option<HubContent>,
        now: Timestamp,
    ) -> Value {
        let message = &delivery.message;
        let envelope = Envelope {
            metadata: Some(Metadata {
                attributes: vec![Attribute {
                    name: "patchbay_channel".into(),
                    value: message.channel.clone(),
                }],
            }),
            messages: Messages {
                message: vec![HubMessage {
                    id: Some(message.id.clone()),
                    kind: kind.into(),
                    created_date: Some(now.to_rfc3339()),
                    sender: Some(Party {
                        kind: Some("customer".into()),
                        address: Some(delivery.customer.clone()),
                        name: message.sender.as_ref().and_then(|s| s.name.clone()),
                    }),
                    recipient: Some(Party {
                        address: Some(self.account_address.clone()),
                        ..Party::default()
                    }),
                    in_reply_to: delivery.platform_message_id.clone(),
                    content,
                    ..HubMessage::default()
                }],
            },
        };
        serde_json::to_value(envelope).unwrap_or(Value::Null)
    }

    /// The first write of a registration, or its report when none is left.
    fn next_write(&self, pending: Pending) -> Step {
        let write = match pending.writes.first() {
            Some(write) if !pending.registration.dry_run => write,
            _ => return pending.report.into_step(),
        };
        let mut request = match &write.id {
            Some(id) => {
                let url = format!(
                    "{}/channels/{}",
                    self.api_url,
                    patchbay_plugin_sdk::url::encode_component(id)
                );
                let mut put = HttpRequestSpec::post_json(url, &write.body);
                put.method = "PUT".into();
                put
            }
            None => HttpRequestSpec::post_json(format!("{}/channels", self.api_url), &write.body),
        };
        request.auth_profile = Some(MANAGE.into());
        Step::request(request, &Awaiting::Written(pending))
    }

    /// Compares the Hub's channels with the registration: what to write,
    /// and the report of what was decided.
    fn plan(&self, registration: Registration, listed: &Value) -> Pending {
        let hub: &[Value] = listed
            .get("channel")
            .or_else(|| listed.get("channels"))
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice);
        let mut report = RegistrationReport::default();
        let mut writes = Vec::new();
        for profile in &registration.channels {
            let wanted = channel::channel_object(profile, &self.icon);
            let existing = hub.iter().find(|c| c["type"] == wanted["type"]);
            let outcome = match existing {
                None => {
                    let action = if registration.dry_run {
                        RegisterAction::WouldCreate
                    } else {
                        RegisterAction::Created
                    };
                    writes.push(Write {
                        outcome: report.channels.len(),
                        id: None,
                        body: wanted,
                    });
                    ChannelOutcome::new(&profile.name, action)
                }
                Some(existing) => {
                    let id = existing["id"].as_str().map(str::to_string);
                    let diff = channel::diff(existing, &wanted);
                    let action = if diff.changes.is_empty() {
                        RegisterAction::Unchanged
                    } else if !diff.widenings.is_empty() && !registration.widen {
                        RegisterAction::Held
                    } else if registration.dry_run {
                        RegisterAction::WouldUpdate
                    } else {
                        writes.push(Write {
                            outcome: report.channels.len(),
                            id: id.clone(),
                            body: wanted,
                        });
                        RegisterAction::Updated
                    };
                    ChannelOutcome::new(&profile.name, action)
                        .with_platform_id(id)
                        .with_changes(diff.changes, diff.widenings)
                }
            };
            report.channels.push(outcome);
        }
        Pending {
            registration,
            writes,
            report,
        }
    }
}

/// The customer a Hub message is for: its recipient's address.
fn customer_of(message: &HubMessage) -> Result<String, String> {
    message
        .recipient
        .as_ref()
        .and_then(|r| r.address.clone())
        .filter(|a| !a.is_empty())
        .ok_or_else(|| format!("a {} message without recipient.address", message.kind))
}

fn rich<T: serde::de::DeserializeOwned>(message: &HubMessage) -> Result<T, String> {
    let value = message
        .content
        .as_ref()
        .and_then(|c| c.rich_message.clone())
        .ok_or_else(|| format!("a {} message without content.richMessage", message.kind))?;
    serde_json::from_value(value).map_err(|e| format!("unreadable {}: {e}", message.kind))
}

/// The canonical content of a Hub message; `None` for a type Patchbay ignores.
fn content_of(message: &HubMessage) -> Result<Option<Content>, String> {
    let text = message
        .content
        .as_ref()
        .and_then(|c| c.text.clone())
        .unwrap_or_default();
    let attachments = message
        .content
        .as_ref()
        .map_or(&[][..], |c| c.attachments.as_slice());
    Ok(Some(match message.kind.as_str() {
        "text" if !attachments.is_empty() => Content::Attachments {
            attachments: attachments
                .iter()
                .map(|a| Attachment {
                    url: a.url.clone(),
                    filename: a.name.clone(),
                    content_type: a.content_type.clone(),
                    size: a.size,
                })
                .collect(),
            text: (!text.is_empty()).then_some(text),
        },
        "text" if text.is_empty() => return Err("a text message without text".into()),
        "text" => Content::text(text),
        "typing.start" => Content::Typing { active: true },
        "typing.end" => Content::Typing { active: false },
        "conversation.end" => Content::EndSession { reason: None },
        "richMessage.listpicker" => {
            let list: wire::ListPicker = rich(message)?;
            if list.items.is_empty() {
                return Err("a list picker without items".into());
            }
            Content::ListPicker {
                title: list.title,
                items: list
                    .items
                    .into_iter()
                    .map(|i| ListItem {
                        payload: i.payload.unwrap_or_else(|| i.title.clone()),
                        title: i.title,
                        subtitle: i.subtitle,
                        image_url: i.image_url,
                    })
                    .collect(),
            }
        }
        "richMessage.quickreply" => {
            let quick: wire::QuickReplies = rich(message)?;
            if quick.replies.is_empty() {
                return Err("quick replies without replies".into());
            }
            Content::QuickReplies {
                text: quick.text,
                replies: quick
                    .replies
                    .into_iter()
                    .map(|r| QuickReply {
                        payload: r.payload.unwrap_or_else(|| r.title.clone()),
                        title: r.title,
                    })
                    .collect(),
            }
        }
        "richMessage.timepicker" => {
            let picker: wire::TimePicker = rich(message)?;
            if picker.slots.is_empty() {
                return Err("a time picker without slots".into());
            }
            Content::TimePicker {
                title: picker.title,
                slots: picker
                    .slots
                    .into_iter()
                    .map(|s| TimeSlot {
                        start: s.start,
                        duration_minutes: s.duration_minutes,
                        payload: s.payload,
                    })
                    .collect(),
                timezone: picker.timezone,
            }
        }
        "richMessage.richlink" => {
            let link: wire::RichLink = rich(message)?;
            Content::RichLink {
                title: if link.title.is_empty() {
                    link.url.clone()
                } else {
                    link.title
                },
                url: link.url,
                image_url: link.image_url,
                description: link.description,
            }
        }
        _ => return Ok(None),
    }))
}

impl UpstreamConnector for Egain {
    fn manifest(&self) -> UpstreamManifest {
        manifest()
    }

    fn verify(&self, request: &InboundRequest, now: Timestamp) -> Result<Verdict, Rejection> {
        if Egain::is_token_request(request) {
            // Answered, never stored: the body holds the callback secret.
            return self.callback.issue(request, now).map(Verdict::handshake);
        }
        self.callback.check(request, now)?;
        let envelope = Egain::read(request).map_err(Rejection::bad_request)?;
        let ids: Vec<&str> = envelope
            .messages
            .message
            .iter()
            .filter_map(|m| m.id.as_deref())
            .collect();
        let dedupe = (ids.len() == envelope.messages.message.len()).then(|| ids.join(","));
        Ok(Verdict::accept_with(AckResponse::empty(200), dedupe))
    }

    fn decode(
        &self,
        request: &InboundRequest,
        _now: Timestamp,
    ) -> Result<Vec<PlatformEvent>, AdapterError> {
        let envelope = Egain::read(request).map_err(AdapterError::bad_input)?;
        let mut events = Vec::new();
        for hub in envelope.messages.message {
            let customer = customer_of(&hub).map_err(AdapterError::bad_input)?;
            let Some(content) = content_of(&hub).map_err(AdapterError::bad_input)? else {
                continue;
            };
            let mut message = Message::new("", content);
            message.provider_message_id = hub.id.clone();
            message.sender = hub.sender.as_ref().and_then(|s| {
                let name = s.name.clone();
                let id = name.clone().or_else(|| s.kind.clone())?;
                Some(Participant { id, name })
            });
            events.push(PlatformEvent::Message {
                customer,
                platform_message_id: hub.id,
                message: Box::new(message),
            });
        }
        Ok(events)
    }

    fn deliver(&self, delivery: &Delivery, now: Timestamp) -> Step {
        let text = |text: Option<String>| HubContent {
            text,
            ..HubContent::default()
        };
        let (kind, content) = match &delivery.message.content {
            Content::Text { text: t, .. } => ("text", Some(text(Some(t.clone())))),
            Content::Postback { payload, text: t } => (
                "text",
                Some(HubContent {
                    postback: Some(payload.clone()),
                    ..text(Some(t.clone().unwrap_or_else(|| payload.clone())))
                }),
            ),
            Content::Attachments {
                attachments,
                text: t,
            } => (
                "text",
                Some(HubContent {
                    attachments: attachments
                        .iter()
                        .map(|a| HubAttachment {
                            url: a.url.clone(),
                            name: a.filename.clone(),
                            content_type: a.content_type.clone(),
                            size: a.size,
                        })
                        .collect(),
                    ..text(t.clone())
                }),
            ),
            Content::Typing { active } => (
                if *active {
                    "typing.start"
                } else {
                    "typing.end"
                },
                None,
            ),
            Content::EndSession { .. } => ("conversation.end", None),
            Content::ContextData { data } => (
                "customer.info",
                Some(HubContent {
                    attributes: data
                        .iter()
                        .map(|(name, value)| Attribute {
                            name: name.clone(),
                            value: value
                                .as_str()
                                .map_or_else(|| value.to_string(), str::to_string),
                        })
                        .collect(),
                    ..HubContent::default()
                }),
            ),
            // No receipts in the Hub: a failure is told to the agent, in
            // the channel's own words when the host gives them.
            Content::Receipt(receipt) if receipt.status == ReceiptStatus::Failed => {
                let said = delivery.notice.clone().unwrap_or_else(|| {
                    receipt
                        .reasons
                        .first()
                        .and_then(|r| r.message.clone())
                        .unwrap_or_else(|| "A message could not be delivered.".into())
                });
                ("error", Some(text(Some(said))))
            }
            _ => return Step::delivered(None),
        };
        let body = self.customer_call(delivery, kind, content, now);
        Step::request(
            self.post("conversations/messages", &body, MESSAGING),
            &Awaiting::Sent,
        )
    }

    fn register(&self, registration: &Registration, _now: Timestamp) -> Step {
        if registration.channels.is_empty() {
            return RegistrationReport::default().into_step();
        }
        let mut list = HttpRequestSpec::get(format!("{}/channels", self.api_url));
        list.auth_profile = Some(MANAGE.into());
        let pending = Pending {
            registration: registration.clone(),
            writes: Vec::new(),
            report: RegistrationReport::default(),
        };
        Step::request(list, &Awaiting::Channels(pending))
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
        match awaiting {
            Awaiting::Sent => {
                if !response.is_success() {
                    return Step::fail(response.classify_http_error("eGain Hub"));
                }
                let answer: Value = serde_json::from_slice(&response.body).unwrap_or_default();
                let id = answer["messages"]["message"][0]["id"]
                    .as_str()
                    .map(str::to_string);
                Step::delivered(id)
            }
            Awaiting::Channels(pending) => {
                if !response.is_success() {
                    return Step::fail(response.classify_http_error("eGain channel list"));
                }
                // No channels yet may come back as an empty body.
                let listed: Value = if response.body.is_empty() {
                    json!({})
                } else {
                    match serde_json::from_slice(&response.body) {
                        Ok(v) => v,
                        Err(e) => {
                            return Step::fail(AdapterError::permanent(format!(
                                "unreadable eGain channel list: {e}"
                            )));
                        }
                    }
                };
                self.next_write(self.plan(pending.registration, &listed))
            }
            Awaiting::Written(mut pending) => {
                let write = pending.writes.remove(0);
                let channel = pending.report.channels[write.outcome].channel.clone();
                if !response.is_success() {
                    return Step::fail(
                        response.classify_http_error(&format!("eGain channel {channel}")),
                    );
                }
                if write.id.is_none() {
                    let id = serde_json::from_slice::<Value>(&response.body)
                        .ok()
                        .and_then(|v| v["id"].as_str().map(str::to_string));
                    let outcome = &mut pending.report.channels[write.outcome];
                    *outcome = outcome.clone().with_platform_id(id);
                }
                self.next_write(pending)
            }
        }
    }

    fn token_request(&self, profile: &str, _now: Timestamp) -> Result<RequestSpec, AdapterError> {
        match profile {
            MESSAGING => Ok(self.messaging.request()),
            MANAGE => Ok(self.manage.request()),
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
        self.messaging.response(response, now)
    }
}
