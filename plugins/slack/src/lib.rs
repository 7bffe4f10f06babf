//! # Slack adapter
//!
//! Connects a Slack app (bot) to Patchbay.
//!
//! ## Inbound
//!
//! - **Events API** (`POST /webhooks/{channel}`, JSON): `url_verification` is
//!   answered with its challenge and stored nowhere; `event_callback` is stored
//!   and deduplicated on `event_id`, so Slack's retries (`X-Slack-Retry-Num`)
//!   reach the application once. `message` (with thread replies → thread id,
//!   shared files → attachments, edits → text marked `edited`, deletions →
//!   context data) and `app_mention` become canonical messages; messages from
//!   bots, including this one, are ignored so replies never loop.
//! - **Interactivity** (same URL, form-encoded `payload=<json>`):
//!   `block_actions` from buttons and selects become postbacks carrying the
//!   action's value.
//! - Every request is checked with Slack's signing secret (v0:
//!   `HMAC-SHA256(secret, "v0:" + timestamp + ":" + body)`), and a timestamp more
//!   than five minutes from now is refused.
//!
//! ## Outbound
//!
//! `chat.postMessage` with the bot token: text as mrkdwn (`thread_ts` for
//! threads), Block Kit for buttons, list pickers (a static select), carousels
//! (a section with image and buttons per card), quick replies (buttons) and rich
//! links. Attachments are uploaded with Slack's external upload flow (download
//! → `files.getUploadURLExternal` → upload → `files.completeUploadExternal`), or
//! sent as links when `attachments = "links"`. Slack has no bot typing
//! indicator, so typing is dropped by fitting; Block Kit limits (25 buttons,
//! 75-character button text, 10 cards to stay under 50 blocks) are declared as
//! capabilities so fitting enforces them.
//!
//! Errors: HTTP 429 or `ratelimited` → rate limited with `Retry-After`;
//! `channel_not_found`, `not_in_channel`, `is_archived` → reason 530;
//! `invalid_auth`, `token_revoked` and other token errors → permanent, naming
//! `secrets.bot_token`; `msg_too_long`, `invalid_blocks` → 520; Slack's own
//! outages → retried.

mod inbound;
mod mrkdwn;
mod outbound;

use patchbay_plugin_sdk::capabilities::RichLimits;
use patchbay_plugin_sdk::prelude::*;
use serde::Deserialize;

/// The adapter id used in configs.
pub const ADAPTER_ID: &str = "slack";

/// How far a request's timestamp may be from now.
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;

/// Creates Slack instances.
#[derive(Debug, Default, Clone, Copy)]
pub struct SlackFactory;

// Loadable as a shared library too (`[[plugin]]` in the host config). A host
// that links several adapters in turns the entry point off (one symbol per binary).
#[cfg(not(feature = "compiled-in"))]
patchbay_plugin_sdk::export_adapter!(SlackFactory);

/// How outbound attachments reach Slack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AttachmentMode {
    /// Upload the file (needs the `files:write` scope).
    #[default]
    Upload,
    /// Post the file's link as text.
    Links,
}

/// Settings under `[channels.<id>.settings]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Slack's Web API base URL.
    #[serde(default = "default_api_base_url")]
    api_base_url: String,
    /// The bot's own user id, to ignore its messages even without `bot_id`.
    #[serde(default)]
    bot_user_id: Option<String>,
    /// Upload attachments or send links.
    #[serde(default)]
    attachments: AttachmentMode,
}

fn default_api_base_url() -> String {
    "https://slack.com/api".into()
}

/// A configured Slack instance.
#[derive(Debug)]
pub struct Slack {
    api: String,
    bot_user_id: Option<String>,
    attachments: AttachmentMode,
    signing_secret: Secret,
    bot_token: Secret,
}

/// The manifest; `attachments` decides whether files are carried natively.
fn manifest(attachments: AttachmentMode) -> Manifest {
    let features = match attachments {
        AttachmentMode::Upload => vec![Feature::RichText, Feature::Attachments],
        AttachmentMode::Links => vec![Feature::RichText],
    };
    let outbound = DirectionCapabilities::plain_text(4000)
        .with_features(features)
        .with_rich_types([
            RichType::Buttons,
            RichType::ListPicker,
            RichType::Carousel,
            RichType::QuickReplies,
            RichType::RichLink,
        ])
        .with_attachments(AttachmentPolicy::any().with_max_size(20 * 1024 * 1024))
        .with_limits(
            RichLimits::none()
                .with_max_buttons(25)
                .with_max_choices(25)
                .with_max_cards(10)
                .with_max_title_length(75),
        );
    let inbound = DirectionCapabilities::plain_text(40_000)
        .with_features([Feature::RichText, Feature::Attachments])
        .with_attachments(AttachmentPolicy::any());
    Manifest::new(
        ADAPTER_ID,
        "Slack",
        env!("CARGO_PKG_VERSION"),
        ChannelCapabilities { inbound, outbound },
    )
    .with_secrets([
        SettingSpec::required(
            "signing_secret",
            "the app's signing secret (Basic Information)",
        ),
        SettingSpec::required("bot_token", "the bot user OAuth token, xoxb-…"),
    ])
    .with_settings([
        SettingSpec::optional(
            "api_base_url",
            "Slack Web API base URL (https://slack.com/api)",
        ),
        SettingSpec::optional(
            "bot_user_id",
            "the bot's user id, to ignore its own messages",
        ),
        SettingSpec::optional("attachments", "\"upload\" (default) or \"links\""),
    ])
}

impl AdapterFactory for SlackFactory {
    fn manifest(&self) -> Manifest {
        manifest(AttachmentMode::Upload)
    }

    fn create(&self, config: &ChannelConfig) -> Result<Box<dyn ChannelAdapter>, ConfigError> {
        Ok(Box::new(Slack::new(config)?))
    }
}

impl Slack {
    /// Builds an instance from its channel config.
    pub fn new(config: &ChannelConfig) -> Result<Self, ConfigError> {
        let settings: Settings = config.settings()?;
        let api = settings.api_base_url.trim_end_matches('/').to_string();
        ConfigError::check_http_url("settings.api_base_url", &api)?;
        Ok(Slack {
            api,
            bot_user_id: settings.bot_user_id,
            attachments: settings.attachments,
            signing_secret: config.secret("signing_secret")?.clone(),
            bot_token: config.secret("bot_token")?.clone(),
        })
    }
}

impl ChannelAdapter for Slack {
    fn manifest(&self) -> Manifest {
        manifest(self.attachments)
    }

    fn verify(
        &self,
        request: &InboundRequest,
        now: Timestamp,
        _resources: &Resources,
    ) -> Result<Verdict, Rejection> {
        inbound::verify(self, request, now)
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
        outbound::resume(self, continuation, response)
    }
}
