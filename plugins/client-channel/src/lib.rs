//! # Client channel adapter
//!
//! The generic "bring your own channel" adapter: an **integration layer** you
//! run next to your channel translates the channel's traffic into Patchbay's
//! canonical JSON and back. It speaks Patchbay's own format, not any
//! platform's (Pega's Client Channel API is the `pega-dms` upstream). It is
//! also the reference adapter the provider-specific ones follow.
//!
//! ## Inbound (integration layer → Patchbay)
//!
//! `POST /webhooks/{channel}` with one canonical message as JSON, signed over the
//! exact body with the channel's `signing_secret`:
//!
//! - `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>` (preferred), or
//! - `X-Hub-Signature: sha1=<hex HMAC-SHA1(secret, body)>`.
//!
//! ```json
//! {"message_id": "evt-1", "conversation": {"id": "c-1"},
//!  "sender": {"id": "cust-1", "name": "Ann"},
//!  "content": {"type": "text", "text": "Hello"}}
//! ```
//!
//! `message_id` is required: it is the dedupe key, so a retried POST reaches the
//! application once. Every inbound kind is accepted: text, typing, attachments,
//! postback, end of session, context data — and `receipt`s about messages the
//! integration layer was given (`message_id` of the receipt = Patchbay's id).
//!
//! ## Outbound (Patchbay → integration layer)
//!
//! `POST {settings.webhook_url}` with the canonical message (its `id` is Patchbay's
//! message id), signed the same two ways with the same secret, plus
//! `X-Patchbay-Channel` and `X-Patchbay-Message-Id` (the same on every retry). Every rich type is carried natively unless the channel's
//! configuration narrows it. A 2xx answer may carry `{"message_id": "..."}`, the
//! integration layer's own id, reported in the receipt. Errors: 429 (with
//! `Retry-After`) is rate limiting, 5xx and 408 are retried, 401 refreshes nothing
//! and fails, 404/410 fail with reason 530, 403 with 350, other 4xx with 520.
//!
//! ## What this adapter does not do
//!
//! It does not know your channel: the integration layer owns that conversion.

use patchbay_plugin_sdk::prelude::*;
use patchbay_plugin_sdk::signature::{hmac_sha1_hex, hmac_sha256_hex, split_prefixed, verify_hex};
use serde::Deserialize;
use serde_json::Value;

/// The adapter id used in configs.
pub const ADAPTER_ID: &str = "client-channel";

/// Creates client-channel instances.
#[derive(Debug, Default, Clone, Copy)]
pub struct ClientChannelFactory;

// Loadable as a shared library too (`[[plugin]]` in the host config). A host
// that links several adapters in turns the entry point off (one symbol per binary).
#[cfg(not(feature = "compiled-in"))]
patchbay_plugin_sdk::export_adapter!(ClientChannelFactory);

/// Settings under `[channels.<id>.settings]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Where outbound messages are POSTed.
    webhook_url: String,
}

/// A configured client-channel instance.
#[derive(Debug)]
pub struct ClientChannel {
    channel: String,
    webhook_url: String,
    secret: Secret,
}

fn manifest() -> Manifest {
    Manifest::new(
        ADAPTER_ID,
        "Client channel (bring your own channel)",
        env!("CARGO_PKG_VERSION"),
        ChannelCapabilities {
            inbound: DirectionCapabilities::everything(),
            outbound: DirectionCapabilities::everything(),
        },
    )
    .with_secrets([SettingSpec::required(
        "signing_secret",
        "HMAC key for both directions' X-Hub-Signature headers",
    )])
    .with_settings([SettingSpec::required(
        "webhook_url",
        "the integration layer's URL that receives outbound messages",
    )])
}

impl AdapterFactory for ClientChannelFactory {
    fn manifest(&self) -> Manifest {
        manifest()
    }

    fn create(&self, config: &ChannelConfig) -> Result<Box<dyn ChannelAdapter>, ConfigError> {
        Ok(Box::new(ClientChannel::new(config)?))
    }
}

impl ClientChannel {
    /// Builds an instance from its channel config.
    pub fn new(config: &ChannelConfig) -> Result<Self, ConfigError> {
        let settings: Settings = config.settings()?;
        ConfigError::check_http_url("settings.webhook_url", &settings.webhook_url)?;
        let secret = config.secret("signing_secret")?.clone();
        Ok(ClientChannel {
            channel: config.channel.clone(),
            webhook_url: settings.webhook_url,
            secret,
        })
    }

    fn signature_headers(&self, body: &[u8]) -> [(String, String); 2] {
        let key = self.secret.expose().as_bytes();
        [
            (
                "x-hub-signature".into(),
                format!("sha1={}", hmac_sha1_hex(key, body)),
            ),
            (
                "x-hub-signature-256".into(),
                format!("sha256={}", hmac_sha256_hex(key, body)),
            ),
        ]
    }
}

/// A webhook body as a canonical message and the integration layer's
/// `message_id`, or why it is not one.
///
/// Two typed reads of the body rather than one into a `Value` tree: the
/// first keeps `message_id` and skips the rest without allocating, the
/// second builds the message (which ignores `message_id`). Every webhook
/// passes here twice (verified, then parsed); neither read builds a tree it
/// then throws away.
fn decode(body: &[u8]) -> Result<(Message, String), String> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        message_id: Option<Value>,
    }
    // Typed reads would take an array's items as fields, in order.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Ok(_) => "body is not a JSON object".into(),
                Err(e) => format!("body is not JSON: {e}"),
            },
        );
    }
    let message_id = serde_json::from_slice::<Envelope>(body)
        .map_err(|e| format!("body is not JSON: {e}"))?
        .message_id;
    let message_id = match message_id {
        Some(Value::String(id)) if !id.is_empty() => id,
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err("\"message_id\" (a non-empty string) is required".into()),
    };
    let message: Message =
        serde_json::from_slice(body).map_err(|e| format!("not a canonical message: {e}"))?;
    message.validate()?;
    Ok((message, message_id))
}

impl ChannelAdapter for ClientChannel {
    fn manifest(&self) -> Manifest {
        manifest()
    }

    fn verify(
        &self,
        request: &InboundRequest,
        _now: Timestamp,
        _resources: &Resources,
    ) -> Result<Verdict, Rejection> {
        let key = self.secret.expose().as_bytes();
        let valid = if let Some(sig) = request.header("x-hub-signature-256") {
            matches!(split_prefixed(sig), Some(("sha256", hex)) if verify_hex(hex, &hmac_sha256_hex(key, &request.body)))
        } else if let Some(sig) = request.header("x-hub-signature") {
            matches!(split_prefixed(sig), Some(("sha1", hex)) if verify_hex(hex, &hmac_sha1_hex(key, &request.body)))
        } else {
            return Err(Rejection::unauthorized(
                "missing X-Hub-Signature-256 or X-Hub-Signature header",
            ));
        };
        if !valid {
            return Err(Rejection::unauthorized("signature does not match the body"));
        }
        // Whatever parsing would refuse is refused now, before anything is
        // stored: a body that cannot become a message gets 400, not a dead letter.
        let (_, dedupe_key) = decode(&request.body).map_err(Rejection::bad_request)?;
        Ok(Verdict::accept(Some(dedupe_key)))
    }

    fn parse_inbound(&self, request: &InboundRequest, _now: Timestamp) -> Step {
        let (mut message, provider_id) = match decode(&request.body) {
            Ok(decoded) => decoded,
            Err(e) => return Step::fail(AdapterError::bad_input(e)),
        };
        let provider_id = Some(provider_id);
        // Patchbay owns its ids and channel names; the integration layer cannot set them.
        message.id.clear();
        message.channel = self.channel.clone();
        message.provider_message_id = provider_id;
        Step::messages(vec![message])
    }

    fn render_outbound(&self, message: &Message, _now: Timestamp) -> Step {
        let body = match serde_json::to_vec(message) {
            Ok(b) => b,
            Err(e) => {
                return Step::fail(AdapterError::bad_input(format!(
                    "cannot encode message: {e}"
                )));
            }
        };
        let mut request = HttpRequestSpec {
            method: "POST".into(),
            url: self.webhook_url.clone(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("x-patchbay-channel".into(), self.channel.clone()),
                // Lets the integration layer dedupe a retried delivery.
                ("x-patchbay-message-id".into(), message.id.clone()),
            ],
            body: Vec::new(),
            auth_profile: None,
        };
        request.headers.extend(self.signature_headers(&body));
        request.body = body;
        Step::request(request, &())
    }

    fn resume(
        &self,
        _continuation: Continuation,
        response: ProviderResponse,
        _now: Timestamp,
    ) -> Step {
        if !response.is_success() {
            return Step::fail(response.classify_http_error("the integration layer"));
        }
        #[derive(Deserialize)]
        struct Answer {
            message_id: Option<String>,
        }
        let provider_id = serde_json::from_slice::<Answer>(&response.body)
            .ok()
            .and_then(|a| a.message_id);
        Step::delivered(provider_id)
    }
}
