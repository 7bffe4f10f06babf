//! # SMS adapter (Twilio)
//!
//! Text messages (and MMS pictures) through Twilio's Programmable Messaging.
//!
//! ## Inbound
//!
//! Twilio POSTs a form to `/webhooks/{channel}`: `MessageSid`, `From`, `To`,
//! `Body`, `NumMedia` and `MediaUrlN`/`MediaContentTypeN`. Each request is
//! checked with `X-Twilio-Signature`: base64 `HMAC-SHA1(auth_token, URL + every
//! POST parameter name and value, sorted by name)`, where the URL is the public
//! one Twilio called (Patchbay's `server.public_url`, so a proxy in front does
//! not break it). Messages are answered with an empty TwiML `<Response/>`.
//! The conversation is the customer's number.
//!
//! Status callbacks (`MessageStatus`) about messages Patchbay sent become
//! receipts for them: `delivered` → `Delivered`, `read` → `Read`,
//! `undelivered`/`failed` → `Failed` with a reason code from `ErrorCode`
//! (30003, 30005, 30006 → 530; 30007 → 350; 30001, 30022 → 310; others 500).
//! Intermediate states (`queued`, `sent`…) are acknowledged and dropped.
//!
//! ## Outbound
//!
//! `POST {api}/2010-04-01/Accounts/{AccountSid}/Messages.json` (form, basic
//! auth) with `To`, `From` (or `MessagingServiceSid`), `Body`, one `MediaUrl` per
//! attachment, and a `StatusCallback` pointing back at this channel with the
//! Patchbay message id. SMS is plain text: every rich kind is degraded by
//! fitting, and bodies over 1600 characters are split. [`segments`] tells how
//! many SMS segments a body costs (GSM-7 160/153, UCS-2 70/67).
//!
//! Errors: 21211 and 21614 (invalid or non-mobile number) → 530, 21610
//! (unsubscribed) → 350, 429 → rate limited, 5xx → retried, 401 → permanent,
//! naming `secrets.auth_token`.

mod inbound;
mod outbound;
pub mod segments;

pub use inbound::signature;

use patchbay_plugin_sdk::prelude::*;
use serde::Deserialize;

/// The adapter id used in configs.
pub const ADAPTER_ID: &str = "sms";

/// Twilio's limit on one message body, in characters.
pub const MAX_BODY_CHARS: usize = 1600;

/// Creates SMS instances.
#[derive(Debug, Default, Clone, Copy)]
pub struct SmsFactory;

// Loadable as a shared library too (`[[plugin]]` in the host config). A host
// that links several adapters in turns the entry point off (one symbol per binary).
#[cfg(not(feature = "compiled-in"))]
patchbay_plugin_sdk::export_adapter!(SmsFactory);

/// Settings under `[channels.<id>.settings]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    account_sid: String,
    /// The sending number (E.164), unless `messaging_service_sid` is set.
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    messaging_service_sid: Option<String>,
    #[serde(default = "default_api_base_url")]
    api_base_url: String,
    /// Ask Twilio for status callbacks (receipts).
    #[serde(default = "yes")]
    status_callbacks: bool,
}

fn default_api_base_url() -> String {
    "https://api.twilio.com".into()
}

fn yes() -> bool {
    true
}

/// Who sends: a number or a messaging service.
#[derive(Debug, Clone)]
enum Sender {
    Number(String),
    Service(String),
}

/// A configured SMS instance.
#[derive(Debug)]
pub struct Sms {
    account_sid: String,
    sender: Sender,
    api: String,
    auth_token: Secret,
    /// Where status callbacks go (this channel's public webhook URL).
    webhook_url: String,
    status_callbacks: bool,
}

fn manifest() -> Manifest {
    let outbound = DirectionCapabilities::plain_text(MAX_BODY_CHARS)
        .with_features([Feature::Attachments, Feature::Receipts])
        // MMS: 5 MB per message.
        .with_attachments(AttachmentPolicy::any().with_max_size(5 * 1024 * 1024));
    let inbound = DirectionCapabilities::plain_text(MAX_BODY_CHARS)
        .with_features([Feature::Attachments])
        .with_attachments(AttachmentPolicy::any());
    Manifest::new(
        ADAPTER_ID,
        "SMS (Twilio)",
        env!("CARGO_PKG_VERSION"),
        ChannelCapabilities { inbound, outbound },
    )
    .with_secrets([SettingSpec::required(
        "auth_token",
        "the account's Auth Token: signs webhooks and authenticates API calls",
    )])
    .with_settings([
        SettingSpec::required("account_sid", "the Account SID (AC…)"),
        SettingSpec::optional("from", "the sending number in E.164 form"),
        SettingSpec::optional(
            "messaging_service_sid",
            "a Messaging Service (MG…) instead of `from`",
        ),
        SettingSpec::optional(
            "api_base_url",
            "Twilio API base URL (https://api.twilio.com)",
        ),
        SettingSpec::optional(
            "status_callbacks",
            "request status callbacks (default true)",
        ),
    ])
}

impl AdapterFactory for SmsFactory {
    fn manifest(&self) -> Manifest {
        manifest()
    }

    fn create(&self, config: &ChannelConfig) -> Result<Box<dyn ChannelAdapter>, ConfigError> {
        Ok(Box::new(Sms::new(config)?))
    }
}

impl Sms {
    /// Builds an instance from its channel config.
    pub fn new(config: &ChannelConfig) -> Result<Self, ConfigError> {
        let s: Settings = config.settings()?;
        if !s.account_sid.starts_with("AC") {
            return Err(ConfigError::new(
                "settings.account_sid",
                "must start with AC",
            ));
        }
        let sender = match (s.from, s.messaging_service_sid) {
            (_, Some(service)) => Sender::Service(service),
            (Some(number), None) => Sender::Number(number),
            (None, None) => {
                return Err(ConfigError::new(
                    "settings.from",
                    "is required unless settings.messaging_service_sid is set",
                ));
            }
        };
        let api = s.api_base_url.trim_end_matches('/').to_string();
        ConfigError::check_http_url("settings.api_base_url", &api)?;
        Ok(Sms {
            account_sid: s.account_sid,
            sender,
            api,
            auth_token: config.secret("auth_token")?.clone(),
            webhook_url: config.webhook_url.clone(),
            status_callbacks: s.status_callbacks,
        })
    }
}

impl ChannelAdapter for Sms {
    fn manifest(&self) -> Manifest {
        manifest()
    }

    fn verify(
        &self,
        request: &InboundRequest,
        _now: Timestamp,
        _resources: &Resources,
    ) -> Result<Verdict, Rejection> {
        inbound::verify(self, request)
    }

    fn parse_inbound(&self, request: &InboundRequest, _now: Timestamp) -> Step {
        inbound::parse(request)
    }

    fn render_outbound(&self, message: &Message, _now: Timestamp) -> Step {
        outbound::render(self, message)
    }

    fn resume(
        &self,
        _continuation: Continuation,
        response: ProviderResponse,
        _now: Timestamp,
    ) -> Step {
        outbound::resume(response)
    }
}
