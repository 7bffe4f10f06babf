//! # Microsoft Teams adapter (Bot Framework)
//!
//! Connects an Azure Bot registration with the Teams channel to Patchbay.
//!
//! ## Inbound
//!
//! The Bot Framework POSTs activities to the messaging endpoint
//! (`/webhooks/{channel}`) with `Authorization: Bearer <JWT>`. The token is
//! checked against the signing keys published by the configured OpenID metadata
//! (the host fetches and caches them as the `openid_keys` resource, and fetches
//! them again when a token names a key it has not seen): RS256 signature,
//! issuer, audience (the bot's app id), expiry and not-before with five minutes'
//! skew, and the `serviceurl` claim against the activity's `serviceUrl`.
//!
//! - `message` → text (the bot's own `<at>` mention removed) or attachments; a
//!   message carrying `value` (an Adaptive Card `Action.Submit` or a
//!   `messageBack` button) → postback.
//! - `typing` → typing; `endOfConversation` → end of session.
//! - `conversationUpdate` → context data listing members added and removed.
//! - `invoke` `adaptiveCard/action` (Universal Actions) → postback, answered
//!   with the invoke response the Bot Framework expects.
//!
//! Every message carries `context.teams_service_url` and
//! `context.teams_tenant_id`. Activities are deduplicated on their id.
//!
//! ## Outbound
//!
//! `POST {serviceUrl}/v3/conversations/{id}/activities` (or
//! `…/activities/{replyToId}` for a thread) with a bearer token from the OAuth
//! client-credentials flow, cached by the host until it expires; a 401 refreshes
//! it once. The service URL is the message's `context.teams_service_url` when it
//! is `service_url` or starts with one of `service_url_prefixes`, `service_url`
//! when the message names none, and any other host fails the message (530)
//! rather than receive the token. Buttons become
//! a hero card, list pickers an Adaptive Card with a choice set, carousels hero
//! cards with `attachmentLayout: "carousel"`, quick replies `suggestedActions`
//! of `imBack` actions (the tap comes back as the reply's title, which the
//! host maps to its payload; more than the three Teams shows: a card with a
//! choice set); typing is sent as a `typing` activity. Postback buttons on
//! cards use `messageBack` with `{"payload": …}` as value, so the click comes
//! back as a postback.
//!
//! Errors: 429 and 5xx are retried (honouring `Retry-After`), 401 refreshes the
//! token, 403 and 404 fail with reason 530, other 4xx with 520.

mod auth;
mod inbound;
mod outbound;

use patchbay_plugin_sdk::capabilities::RichLimits;
use patchbay_plugin_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// The adapter id used in configs.
pub const ADAPTER_ID: &str = "teams";

/// The OAuth profile outbound requests use.
pub const AUTH_PROFILE: &str = "bot";

/// The resource holding the OpenID signing keys.
pub const KEYS_RESOURCE: &str = "openid_keys";

/// Creates Teams instances.
#[derive(Debug, Default, Clone, Copy)]
pub struct TeamsFactory;

/// Where an operation left off while the host made a request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Pending {
    /// Fetching the OpenID metadata that names the key set.
    KeyMetadata,
    /// Fetching the key set itself.
    KeySet,
    /// Sending an activity.
    Send,
}

// Loadable as a shared library too (`[[plugin]]` in the host config). A host
// that links several adapters in turns the entry point off (one symbol per binary).
#[cfg(not(feature = "compiled-in"))]
patchbay_plugin_sdk::export_adapter!(TeamsFactory);

/// Settings under `[channels.<id>.settings]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// The bot's Microsoft App ID: the audience of inbound tokens and the
    /// client id of outbound ones.
    app_id: String,
    #[serde(default = "default_openid_metadata_url")]
    openid_metadata_url: String,
    #[serde(default = "default_issuer")]
    issuer: String,
    #[serde(default = "default_token_url")]
    token_url: String,
    #[serde(default = "default_token_scope")]
    token_scope: String,
    #[serde(default = "default_service_url")]
    service_url: String,
    #[serde(default = "default_service_url_prefixes")]
    service_url_prefixes: Vec<String>,
}

fn default_openid_metadata_url() -> String {
    "https://login.botframework.com/v1/.well-known/openidconfiguration".into()
}
fn default_issuer() -> String {
    "https://api.botframework.com".into()
}
fn default_token_url() -> String {
    "https://login.microsoftonline.com/botframework.com/oauth2/v2.0/token".into()
}
fn default_token_scope() -> String {
    "https://api.botframework.com/.default".into()
}
fn default_service_url() -> String {
    "https://smba.trafficmanager.net/teams/".into()
}
fn default_service_url_prefixes() -> Vec<String> {
    vec!["https://smba.trafficmanager.net/".into()]
}

/// A configured Teams instance.
#[derive(Debug)]
pub struct Teams {
    app_id: String,
    app_password: Secret,
    openid_metadata_url: String,
    issuer: String,
    token_url: String,
    token_scope: String,
    service_url: String,
    service_url_prefixes: Vec<String>,
}

/// Longest text in one activity, in UTF-8 bytes.
pub const MAX_TEXT_BYTES: usize = 26_000;

fn manifest() -> Manifest {
    // Teams refuses activities over about 28 KB: the limit counts bytes,
    // and the JSON around the text needs room too.
    let text = DirectionCapabilities::plain_text(MAX_TEXT_BYTES)
        .with_max_text_bytes(MAX_TEXT_BYTES)
        .with_features([Feature::Typing, Feature::RichText, Feature::Attachments])
        .with_attachments(AttachmentPolicy::any());
    let outbound = text
        .clone()
        .with_rich_types([
            RichType::Buttons,
            RichType::ListPicker,
            RichType::Carousel,
            RichType::QuickReplies,
            RichType::RichLink,
        ])
        // Hero cards show at most six buttons; carousels ten cards.
        .with_limits(
            RichLimits::none()
                .with_max_buttons(6)
                .with_max_choices(20)
                .with_max_cards(10)
                .with_max_title_length(100),
        );
    let inbound = text;
    Manifest::new(
        ADAPTER_ID,
        "Microsoft Teams (Bot Framework)",
        env!("CARGO_PKG_VERSION"),
        ChannelCapabilities { inbound, outbound },
    )
    .with_secrets([SettingSpec::required(
        "app_password",
        "the bot's client secret (Azure Bot → Configuration → Manage password)",
    )])
    .with_settings([
        SettingSpec::required("app_id", "the bot's Microsoft App ID"),
        SettingSpec::optional(
            "openid_metadata_url",
            "where the token signing keys are published",
        ),
        SettingSpec::optional(
            "issuer",
            "expected token issuer (https://api.botframework.com)",
        ),
        SettingSpec::optional(
            "token_url",
            "OAuth token endpoint (multi-tenant by default)",
        ),
        SettingSpec::optional(
            "token_scope",
            "OAuth scope (https://api.botframework.com/.default)",
        ),
        SettingSpec::optional("service_url", "service URL when a message carries none"),
        SettingSpec::optional("service_url_prefixes", "service URLs a message may name"),
    ])
    .with_auth_profiles([AUTH_PROFILE])
}

impl AdapterFactory for TeamsFactory {
    fn manifest(&self) -> Manifest {
        manifest()
    }

    fn create(&self, config: &ChannelConfig) -> Result<Box<dyn ChannelAdapter>, ConfigError> {
        Ok(Box::new(Teams::new(config)?))
    }
}

impl Teams {
    /// Builds an instance from its channel config.
    pub fn new(config: &ChannelConfig) -> Result<Self, ConfigError> {
        let s: Settings = config.settings()?;
        ConfigError::check_not_empty([("settings.app_id", s.app_id.as_str())])?;
        for (key, url) in [
            ("openid_metadata_url", &s.openid_metadata_url),
            ("token_url", &s.token_url),
            ("service_url", &s.service_url),
        ] {
            ConfigError::check_http_url(&format!("settings.{key}"), url)?;
        }
        let app_password = config.secret("app_password")?.clone();
        Ok(Teams {
            app_id: s.app_id,
            app_password,
            openid_metadata_url: s.openid_metadata_url,
            issuer: s.issuer,
            token_url: s.token_url,
            token_scope: s.token_scope,
            service_url: s.service_url,
            service_url_prefixes: s.service_url_prefixes,
        })
    }
}

impl ChannelAdapter for Teams {
    fn manifest(&self) -> Manifest {
        manifest()
    }

    fn verify(
        &self,
        request: &InboundRequest,
        now: Timestamp,
        resources: &Resources,
    ) -> Result<Verdict, Rejection> {
        inbound::verify(self, request, now, resources)
    }

    fn parse_inbound(&self, request: &InboundRequest, _now: Timestamp) -> Step {
        inbound::parse(request)
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
            Ok(Pending::Send) => outbound::resume(response),
            Ok(keys) => auth::resume_keys(keys, response),
            Err(e) => Step::fail(e),
        }
    }

    fn resources(&self) -> Vec<ResourceSpec> {
        vec![ResourceSpec {
            name: KEYS_RESOURCE.into(),
            // Microsoft rotates keys with notice; a daily refresh is what the
            // Bot Framework documentation asks for.
            refresh_after_ms: 24 * 60 * 60 * 1000,
        }]
    }

    fn fetch_resource(&self, name: &str, _now: Timestamp) -> Step {
        if name != KEYS_RESOURCE {
            return Step::fail(AdapterError::permanent(format!(
                "unknown resource {name:?}"
            )));
        }
        auth::fetch_keys(&self.openid_metadata_url)
    }

    fn token_request(&self, profile: &str, _now: Timestamp) -> Result<RequestSpec, AdapterError> {
        if profile != AUTH_PROFILE {
            return Err(AdapterError::permanent(format!(
                "unknown auth profile {profile:?}"
            )));
        }
        Ok(auth::token_request(self))
    }

    fn token_response(
        &self,
        profile: &str,
        response: ProviderResponse,
        now: Timestamp,
    ) -> Result<AccessToken, AdapterError> {
        if profile != AUTH_PROFILE {
            return Err(AdapterError::permanent(format!(
                "unknown auth profile {profile:?}"
            )));
        }
        auth::token_response(response, now)
    }
}
