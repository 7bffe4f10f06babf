//! A Patchbay adapter for the Telegram Bot API, built as a shared library.
//!
//! - Inbound: Telegram POSTs each `Update` to the webhook set with
//!   `setWebhook(url, secret_token)`, carrying the secret in
//!   `X-Telegram-Bot-Api-Secret-Token`. Messages become text; button presses
//!   (`callback_query`) become postbacks after `answerCallbackQuery` stops the
//!   button's spinner.
//! - Outbound: `sendMessage` (buttons, quick replies and list pickers as an
//!   inline keyboard), `sendChatAction` for typing, `sendDocument` per file.
//!
//! Settings: `api_base_url` (default `https://api.telegram.org`).
//! Secrets: `bot_token`, `webhook_secret`.

mod inbound;
mod outbound;

/// Where an operation left off while the host made a request: a typed
/// continuation, encoded and decoded by the SDK.
#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Pending {
    /// Answering a button press; the postback goes to the application after.
    Callback { message: Box<Message> },
    /// Sending part `part` of `message` (files go one per request).
    Send { part: usize, message: Box<Message> },
}

use patchbay_plugin_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// The adapter id used in configs.
pub const ADAPTER_ID: &str = "telegram";

/// Telegram's limit on a message's text, in characters.
pub const MAX_TEXT: usize = 4096;

/// Telegram's limit on a button's `callback_data`, in bytes.
pub const MAX_CALLBACK_DATA: usize = 64;

/// Makes Telegram channel instances; exported as the plugin's entry point.
#[derive(Debug, Default)]
pub struct TelegramFactory;

patchbay_plugin_sdk::export_adapter!(TelegramFactory);

/// One configured Telegram bot.
#[derive(Debug)]
pub struct Telegram {
    api: String,
    bot_token: Secret,
    webhook_secret: Secret,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default = "default_api")]
    api_base_url: String,
}

fn default_api() -> String {
    "https://api.telegram.org".into()
}

fn manifest() -> Manifest {
    let outbound = DirectionCapabilities::plain_text(MAX_TEXT)
        .with_features([Feature::Typing, Feature::Attachments])
        .with_rich_types([
            RichType::Buttons,
            RichType::QuickReplies,
            RichType::ListPicker,
        ])
        // sendDocument by URL: 20 MB.
        .with_attachments(AttachmentPolicy::any().with_max_size(20 * 1024 * 1024))
        .with_limits(
            RichLimits::none()
                .with_max_buttons(10)
                .with_max_choices(10)
                .with_max_title_length(64),
        );
    Manifest::new(
        ADAPTER_ID,
        "Telegram (example plugin)",
        env!("CARGO_PKG_VERSION"),
        ChannelCapabilities {
            inbound: DirectionCapabilities::plain_text(MAX_TEXT),
            outbound,
        },
    )
    .with_secrets([
        SettingSpec::required("bot_token", "the token @BotFather gave the bot"),
        SettingSpec::required(
            "webhook_secret",
            "the secret_token passed to setWebhook (1-256 of A-Z a-z 0-9 _ -)",
        ),
    ])
    .with_settings([SettingSpec::optional(
        "api_base_url",
        "the Bot API base URL (default https://api.telegram.org)",
    )])
}

impl AdapterFactory for TelegramFactory {
    fn manifest(&self) -> Manifest {
        manifest()
    }

    fn create(&self, config: &ChannelConfig) -> Result<Box<dyn ChannelAdapter>, ConfigError> {
        Ok(Box::new(Telegram::new(config)?))
    }
}

impl Telegram {
    /// Builds an instance from its channel config.
    pub fn new(config: &ChannelConfig) -> Result<Self, ConfigError> {
        let settings: Settings = config.settings()?;
        let api = settings.api_base_url.trim_end_matches('/').to_string();
        ConfigError::check_http_url("settings.api_base_url", &api)?;
        let webhook_secret = config.secret("webhook_secret")?.clone();
        let valid = (1..=256).contains(&webhook_secret.expose().len())
            && webhook_secret
                .expose()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(ConfigError::new(
                "secrets.webhook_secret",
                "Telegram allows 1-256 characters of A-Z, a-z, 0-9, _ and -",
            ));
        }
        Ok(Telegram {
            api,
            bot_token: config.secret("bot_token")?.clone(),
            webhook_secret,
        })
    }

    /// The URL of Bot API `method`. It holds the token: never log it.
    fn method_url(&self, method: &str) -> String {
        format!("{}/bot{}/{method}", self.api, self.bot_token.expose())
    }
}

impl ChannelAdapter for Telegram {
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
            Ok(Pending::Callback { message }) => inbound::after_answer(*message),
            Ok(Pending::Send { part, message }) => outbound::resume(self, part, &message, response),
            Err(e) => Step::fail(e),
        }
    }
}
