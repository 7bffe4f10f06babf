//! # Webex adapter (bots)
//!
//! Connects a Webex bot to Patchbay.
//!
//! ## Inbound
//!
//! Webex POSTs webhook notifications to `/webhooks/{channel}`, signed with
//! `X-Spark-Signature`: hex `HMAC-SHA1(webhook_secret, raw body)`. The
//! notification carries ids only, so parsing is a multi-step flow:
//!
//! - `messages/created` → `GET /v1/messages/{id}` with the bot token → text
//!   (markdown when the sender formatted it), files as attachments, the room as
//!   the conversation and `parentId` as the thread. The bot's own messages are
//!   dropped before any lookup; a mention of the bot is removed from the text.
//! - `attachmentActions/created` (a card's submit button) →
//!   `GET /v1/attachment/actions/{id}` → a postback whose payload is the card's
//!   `payload` input, or all inputs as JSON when there is none.
//!
//! Other resources are acknowledged and ignored. Each notification is
//! deduplicated on its resource and data id.
//!
//! ## Outbound
//!
//! `POST /v1/messages` to the room (or `toPersonEmail` when the conversation id
//! is an email address), with `parentId` for threads. Text goes as `markdown`
//! or `text`; buttons, list pickers and carousels as one Adaptive Card (with a
//! text fallback for clients that cannot show cards); attachments as file URLs,
//! one message per file because Webex takes one file per message.
//!
//! Errors: 429 → rate limited honouring `Retry-After`, 404 → the room is gone
//! or the bot is not in it (530), 401 → permanent, naming `secrets.bot_token`,
//! 5xx → retried.

mod cards;
mod inbound;
mod outbound;

/// Where an operation left off while the host made a request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Pending {
    /// Reading the message a webhook names; `bot` is the bot's person id.
    ReadMessage { bot: String },
    /// Reading the card action a webhook names.
    ReadAction,
    /// Sending a message, then its further files one by one.
    Send(outbound::Sending),
}

use patchbay_plugin_sdk::capabilities::RichLimits;
use patchbay_plugin_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// The adapter id used in configs.
pub const ADAPTER_ID: &str = "webex";

/// Webex refuses messages longer than 7439 bytes (UTF-8); leave room for the markup.
pub const MAX_TEXT_BYTES: usize = 7000;

/// Webex shows at most this many actions on one Adaptive Card.
pub const MAX_CARD_ACTIONS: usize = 5;

/// Creates Webex instances.
#[derive(Debug, Default, Clone, Copy)]
pub struct WebexFactory;

// Loadable as a shared library too (`[[plugin]]` in the host config). A host
// that links several adapters in turns the entry point off (one symbol per binary).
#[cfg(not(feature = "compiled-in"))]
patchbay_plugin_sdk::export_adapter!(WebexFactory);

/// Settings under `[channels.<id>.settings]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default = "default_api_base_url")]
    api_base_url: String,
    /// The bot's person id. When absent, a webhook's `createdBy` is taken as
    /// the bot (webhooks registered with the bot token are).
    #[serde(default)]
    bot_person_id: Option<String>,
}

fn default_api_base_url() -> String {
    "https://webexapis.com".into()
}

/// A configured Webex instance.
#[derive(Debug)]
pub struct Webex {
    api: String,
    bot_token: Secret,
    webhook_secret: Secret,
    bot_person_id: Option<String>,
}

fn manifest() -> Manifest {
    // Webex counts its limit in bytes: 7000 characters of CJK text are
    // 21,000 bytes.
    let text =
        DirectionCapabilities::plain_text(MAX_TEXT_BYTES).with_max_text_bytes(MAX_TEXT_BYTES);
    let outbound = text
        .clone()
        .with_features([Feature::RichText, Feature::Attachments])
        .with_rich_types([RichType::Buttons, RichType::ListPicker, RichType::Carousel])
        // Webex fetches file URLs itself and caps them at 100 MB.
        .with_attachments(AttachmentPolicy::any().with_max_size(100 * 1024 * 1024))
        // Webex renders at most 5 actions on a card (more and the card is
        // refused or cut); a "carousel" is Patchbay's stack of containers in
        // one card, readable up to about ten.
        .with_limits(
            RichLimits::none()
                .with_max_buttons(MAX_CARD_ACTIONS)
                .with_max_cards(10),
        );
    let inbound = text.with_features([Feature::RichText, Feature::Attachments]);
    Manifest::new(
        ADAPTER_ID,
        "Webex",
        env!("CARGO_PKG_VERSION"),
        ChannelCapabilities { inbound, outbound },
    )
    .with_secrets([
        SettingSpec::required(
            "bot_token",
            "the bot's access token (developer.webex.com → My Apps)",
        ),
        SettingSpec::required(
            "webhook_secret",
            "the `secret` given when registering the webhooks; signs every notification",
        ),
    ])
    .with_settings([
        SettingSpec::optional("api_base_url", "Webex API base URL (https://webexapis.com)"),
        SettingSpec::optional(
            "bot_person_id",
            "the bot's person id, to ignore its own messages (default: the webhook's creator)",
        ),
    ])
}

impl AdapterFactory for WebexFactory {
    fn manifest(&self) -> Manifest {
        manifest()
    }

    fn create(&self, config: &ChannelConfig) -> Result<Box<dyn ChannelAdapter>, ConfigError> {
        Ok(Box::new(Webex::new(config)?))
    }
}

impl Webex {
    /// Builds an instance from its channel config.
    pub fn new(config: &ChannelConfig) -> Result<Self, ConfigError> {
        let s: Settings = config.settings()?;
        let api = s.api_base_url.trim_end_matches('/').to_string();
        ConfigError::check_http_url("settings.api_base_url", &api)?;
        Ok(Webex {
            api,
            bot_token: config.secret("bot_token")?.clone(),
            webhook_secret: config.secret("webhook_secret")?.clone(),
            bot_person_id: s.bot_person_id.filter(|id| !id.trim().is_empty()),
        })
    }

    /// A request to the Webex API with the bot token.
    fn api_request(&self, request: HttpRequestSpec) -> RequestSpec {
        RequestSpec::Http(request.header(
            "authorization",
            format!("Bearer {}", self.bot_token.expose()),
        ))
    }

    /// The clear message for a token Webex refuses.
    fn refused_token(what: &str) -> AdapterError {
        AdapterError::permanent(format!(
            "Webex refused the bot token (HTTP 401) on {what}; check secrets.bot_token"
        ))
    }
}

impl ChannelAdapter for Webex {
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
        inbound::parse(self, request)
    }

    fn render_outbound(&self, message: &Message, _now: Timestamp) -> Step {
        outbound::render(self, message)
    }

    fn resume(
        &self,
        continuation: Continuation,
        response: ProviderResponse,
        _now: Timestamp,
    ) -> Step {
        match continuation.decode() {
            Ok(Pending::ReadMessage { bot }) => inbound::resume_message(&bot, response),
            Ok(Pending::ReadAction) => inbound::resume_action(response),
            Ok(Pending::Send(sending)) => outbound::resume(self, sending, response),
            Err(e) => Step::fail(e),
        }
    }
}
