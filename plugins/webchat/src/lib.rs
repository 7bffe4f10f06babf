//! # Web chat adapter
//!
//! Patchbay's own channel: a widget a site embeds with one `<script>` tag,
//! talking to Patchbay over a WebSocket. The host serves the widget, holds the
//! sockets and keeps each conversation's durable outbox; this adapter does
//! what every adapter does — authenticates what customers send, converts it
//! to canonical messages, and renders replies — so capabilities, fitting and
//! receipts work as on any channel.
//!
//! ## Inbound (widget → Patchbay)
//!
//! One JSON object per message, with the customer's session token
//! (`Authorization: Bearer <token>`; the host adds it for socket frames):
//!
//! ```json
//! {"client_id": "m-6f1c…", "content": {"type": "text", "text": "Hello"}}
//! ```
//!
//! `client_id` is the widget's id for the message and the dedupe key (per
//! customer): a message re-sent after a dropped connection reaches the
//! application once. Customers send `text`, `attachments`, `postback` (a
//! button, quick reply, list item or time slot they picked), `typing`,
//! `end_session`, and `receipt` (`read`, about a message they were shown).
//!
//! ## Outbound (Patchbay → widget)
//!
//! A reply becomes an entry of the conversation's outbox
//! ([`RequestSpec::Outbox`]): `{"id", "timestamp", "content"}` with the
//! canonical content unchanged — the widget shows every rich type natively.
//! The receipt says `delivered` once the entry is stored; `read` follows when
//! the widget reports it.

mod session;

pub use session::{Customer, Issued, Origins, Sessions};

use patchbay_plugin_sdk::prelude::*;
use serde::Deserialize;
use serde_json::json;

/// The adapter id used in configs.
pub const ADAPTER_ID: &str = "webchat";

/// The longest `client_id` accepted.
const MAX_CLIENT_ID: usize = 100;

/// Creates web chat instances.
#[derive(Debug, Default, Clone, Copy)]
pub struct WebchatFactory;

/// Settings under `[channels.<id>.settings]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Settings {
    /// Pages that may embed the widget (`https://www.example.com`).
    #[serde(default)]
    allowed_origins: Vec<String>,
    /// How long a session token lasts.
    #[serde(default = "default_session_hours")]
    session_hours: u32,
    /// A site's RSA public key (PEM) for RS256 site JWTs.
    #[serde(default)]
    site_jwt_public_key: Option<String>,
    /// The `iss` site JWTs must carry, when set.
    #[serde(default)]
    site_jwt_issuer: Option<String>,
    /// The `aud` site JWTs must carry, when set.
    #[serde(default)]
    site_jwt_audience: Option<String>,
    /// Refuse anonymous visitors.
    #[serde(default)]
    require_site_jwt: bool,
    /// The widget's heading.
    #[serde(default = "default_title")]
    title: String,
    /// Serve a page at `/` with this channel's widget, for trials.
    #[serde(default)]
    demo_page: bool,
    /// The widget's own words, in the channel's language.
    #[serde(default)]
    texts: Texts,
}

/// The widget's own words; each left out keeps the widget's English.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Texts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    launcher: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    placeholder: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    send: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typing: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    connecting: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reconnecting: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unreachable: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ended: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    not_sent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    too_large: Option<String>,
}

fn default_session_hours() -> u32 {
    24
}

fn default_title() -> String {
    "Chat with us".into()
}

/// A configured web chat channel.
#[derive(Debug)]
pub struct Webchat {
    channel: String,
    sessions: Sessions,
    origins: Origins,
    title: String,
    demo_page: bool,
    texts: Texts,
}

fn manifest() -> Manifest {
    let inbound = DirectionCapabilities::plain_text(usize::MAX)
        .with_features([Feature::Typing, Feature::Attachments, Feature::Receipts])
        .with_attachments(AttachmentPolicy::default());
    Manifest::new(
        ADAPTER_ID,
        "Web chat (Patchbay's own widget)",
        env!("CARGO_PKG_VERSION"),
        ChannelCapabilities {
            inbound,
            outbound: DirectionCapabilities::everything(),
        },
    )
    .with_secrets([
        SettingSpec::required(
            "session_secret",
            "HMAC key for the session tokens Patchbay issues (≥ 32 characters)",
        ),
        SettingSpec::optional(
            "site_jwt_secret",
            "HS256 key of the JWTs a site signs about its customers",
        ),
    ])
    .with_settings([
        SettingSpec::optional(
            "allowed_origins",
            "pages that may embed the widget, e.g. [\"https://www.example.com\"]",
        ),
        SettingSpec::optional("session_hours", "session token lifetime (default 24)"),
        SettingSpec::optional(
            "site_jwt_public_key",
            "RSA public key (PEM) of RS256 site JWTs",
        ),
        SettingSpec::optional("site_jwt_issuer", "required `iss` of site JWTs"),
        SettingSpec::optional("site_jwt_audience", "required `aud` of site JWTs"),
        SettingSpec::optional("require_site_jwt", "refuse anonymous visitors"),
        SettingSpec::optional("title", "the widget's heading"),
        SettingSpec::optional("demo_page", "serve a trial page with this widget at /"),
        SettingSpec::optional(
            "texts",
            "the widget's words: launcher, placeholder, send, typing, connecting, reconnecting, unreachable, ended, not_sent, too_large",
        ),
    ])
}

impl AdapterFactory for WebchatFactory {
    fn manifest(&self) -> Manifest {
        manifest()
    }

    fn create(&self, config: &ChannelConfig) -> Result<Box<dyn ChannelAdapter>, ConfigError> {
        Ok(Box::new(Webchat::new(config)?))
    }
}

impl Webchat {
    /// Builds an instance from its channel config.
    pub fn new(config: &ChannelConfig) -> Result<Self, ConfigError> {
        let settings: Settings = config.settings()?;
        Ok(Webchat {
            channel: config.channel.clone(),
            sessions: Sessions::new(config, &settings)?,
            origins: Origins::new(&settings.allowed_origins)?,
            title: settings.title,
            demo_page: settings.demo_page,
            texts: settings.texts,
        })
    }

    /// Issues and checks this channel's session tokens.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// The pages that may embed the widget.
    pub fn origins(&self) -> &Origins {
        &self.origins
    }

    /// The widget's heading.
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The widget's own words the config sets (the rest stay English).
    pub fn texts(&self) -> &Texts {
        &self.texts
    }

    /// Whether this channel's widget is the trial page at `/`.
    pub fn demo_page(&self) -> bool {
        self.demo_page
    }

    fn token<'a>(&self, request: &'a InboundRequest) -> Result<&'a str, Rejection> {
        let header = request
            .header("authorization")
            .ok_or_else(|| Rejection::unauthorized("missing session token"))?;
        header
            .strip_prefix("Bearer ")
            .map(str::trim)
            .ok_or_else(|| {
                Rejection::unauthorized("expected Authorization: Bearer <session token>")
            })
    }
}

/// What the widget sends (fields a newer widget adds are ignored).
#[derive(Debug, Deserialize)]
struct Frame {
    client_id: String,
    content: Content,
}

/// A body as the widget's message, or why it is not one.
fn decode(body: &[u8]) -> Result<Frame, String> {
    let frame: Frame = serde_json::from_slice(body).map_err(|e| format!("not a message: {e}"))?;
    if frame.client_id.is_empty() || frame.client_id.len() > MAX_CLIENT_ID {
        return Err(format!("client_id must be 1 to {MAX_CLIENT_ID} bytes"));
    }
    frame.content.validate()?;
    match &frame.content {
        Content::Text { text, .. } if text.trim().is_empty() => Err("empty text".into()),
        Content::Text { .. }
        | Content::Attachments { .. }
        | Content::Postback { .. }
        | Content::Typing { .. }
        | Content::EndSession { .. } => Ok(frame),
        Content::Receipt(r) if r.status == ReceiptStatus::Read && !r.message_id.is_empty() => {
            Ok(frame)
        }
        Content::Receipt(_) => Err("a customer's receipt says `read` about a message_id".into()),
        other => Err(format!("a customer cannot send {:?} content", other.kind())),
    }
}

impl ChannelAdapter for Webchat {
    fn manifest(&self) -> Manifest {
        manifest()
    }

    fn verify(
        &self,
        request: &InboundRequest,
        now: Timestamp,
        _resources: &Resources,
    ) -> Result<Verdict, Rejection> {
        // Browsers always name the page; a page not allowed gets nothing.
        if let Some(origin) = request.header("origin")
            && !self.origins.allows(origin, request.header("host"))
        {
            return Err(Rejection {
                status: 403,
                message: "this page's origin may not use the chat".into(),
                stale_resources: false,
            });
        }
        let customer = self.sessions.check(self.token(request)?, now)?;
        let frame = decode(&request.body).map_err(Rejection::bad_request)?;
        Ok(Verdict::accept(Some(format!(
            "{}/{}",
            customer.id, frame.client_id
        ))))
    }

    fn parse_inbound(&self, request: &InboundRequest, now: Timestamp) -> Step {
        let customer = match self
            .token(request)
            .and_then(|t| self.sessions.customer_of(t))
        {
            Ok(c) => c,
            Err(r) => return Step::fail(AdapterError::bad_input(r.message)),
        };
        let frame = match decode(&request.body) {
            Ok(f) => f,
            Err(e) => return Step::fail(AdapterError::bad_input(e)),
        };
        let mut message = Message::new(customer.id.clone(), frame.content);
        message.channel = self.channel.clone();
        message.sender = Some(Participant {
            id: customer.id,
            name: customer.name,
        });
        message.provider_message_id = Some(frame.client_id);
        message.timestamp = Some(now.to_rfc3339());
        Step::messages(vec![message])
    }

    fn render_outbound(&self, message: &Message, now: Timestamp) -> Step {
        let entry = json!({
            "id": message.id,
            "timestamp": message.timestamp.clone().unwrap_or_else(|| now.to_rfc3339()),
            "sender": message.sender.as_ref().and_then(|s| s.name.clone()),
            "content": message.content,
        });
        let push = OutboxPush {
            conversation: message.conversation.id.clone(),
            body: entry.to_string().into_bytes(),
        };
        Step::request(push, &())
    }

    fn resume(
        &self,
        _continuation: Continuation,
        response: ProviderResponse,
        _now: Timestamp,
    ) -> Step {
        if !response.is_success() {
            return Step::fail(response.classify_http_error("the outbox"));
        }
        #[derive(Deserialize)]
        struct Stored {
            seq: i64,
        }
        let seq = serde_json::from_slice::<Stored>(&response.body)
            .ok()
            .map(|s| s.seq.to_string());
        Step::delivered(seq)
    }
}
