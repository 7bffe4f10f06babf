//! The sans-I/O adapter contract.
//!
//! An adapter converts; the host does everything else. Each operation is a pure,
//! synchronous function of its inputs: no sockets, no clock (the host passes
//! `now`), no randomness, no retries. When a conversion needs the provider's API
//! (Webex's webhook carries only ids; Slack uploads files in three calls) the adapter
//! returns a [`Step::Request`]: a *description* of the request plus a
//! [`Continuation`]. The host executes the request and calls
//! [`ChannelAdapter::resume`] with the response, until a [`Step::Done`] or
//! [`Step::Fail`].

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::capabilities::ChannelCapabilities;
use crate::error::{AdapterError, Rejection};
use crate::message::{Message, ReasonCode};

/// The current wire version of the JSON payloads exchanged with adapters.
pub const WIRE_VERSION: u32 = 1;

/// A channel adapter instance, configured for one channel.
///
/// Object-safe: the host holds `Arc<dyn ChannelAdapter>` whether the adapter was
/// compiled in or loaded from a shared library.
pub trait ChannelAdapter: Send + Sync {
    /// What this adapter is and can do.
    fn manifest(&self) -> Manifest;

    /// Authenticates an inbound webhook over its exact bytes and says how to
    /// acknowledge it. Must be cheap: it runs before the request is stored.
    /// `resources` holds the documents declared by [`ChannelAdapter::resources`]
    /// (for example a provider's signing keys), as last fetched by the host.
    fn verify(
        &self,
        request: &InboundRequest,
        now: Timestamp,
        resources: &Resources,
    ) -> Result<Verdict, Rejection>;

    /// Converts a stored, verified request into canonical messages.
    fn parse_inbound(&self, request: &InboundRequest, now: Timestamp) -> Step;

    /// Renders one outbound message (already fitted to the channel) and describes
    /// how to deliver it.
    fn render_outbound(&self, message: &Message, now: Timestamp) -> Step;

    /// Continues a multi-step flow with the provider's response.
    fn resume(
        &self,
        continuation: Continuation,
        response: ProviderResponse,
        now: Timestamp,
    ) -> Step {
        let _ = (continuation, response, now);
        Step::fail(AdapterError::permanent(
            "this adapter does not make provider requests",
        ))
    }

    /// Documents `verify` needs that live at the provider (signing keys). The host
    /// fetches each with [`ChannelAdapter::fetch_resource`] before the first
    /// webhook, caches it, and refreshes it when it is older than
    /// [`ResourceSpec::refresh_after_ms`] or when `verify` answers
    /// [`Rejection::stale_resources`].
    fn resources(&self) -> Vec<ResourceSpec> {
        Vec::new()
    }

    /// Fetches one resource: a flow of requests ending in
    /// [`StepOutput::Resource`].
    fn fetch_resource(&self, name: &str, now: Timestamp) -> Step {
        let _ = now;
        Step::fail(AdapterError::permanent(format!(
            "resource {name:?} is not declared by this adapter"
        )))
    }

    /// The OAuth request that obtains a token for `profile` (for example client
    /// credentials). The host caches the token until it expires.
    fn token_request(&self, profile: &str, now: Timestamp) -> Result<RequestSpec, AdapterError> {
        let _ = now;
        Err(AdapterError::permanent(format!(
            "auth profile {profile:?} is not supported by this adapter"
        )))
    }

    /// Reads the token out of the response to [`ChannelAdapter::token_request`].
    fn token_response(
        &self,
        profile: &str,
        response: ProviderResponse,
        now: Timestamp,
    ) -> Result<AccessToken, AdapterError> {
        let _ = (response, now);
        Err(AdapterError::permanent(format!(
            "auth profile {profile:?} is not supported by this adapter"
        )))
    }
}

/// A boxed adapter is an adapter, so the testkit and the conformance checks run
/// on `Box<dyn ChannelAdapter>` — for example one loaded from a shared library.
impl<A: ChannelAdapter + ?Sized> ChannelAdapter for Box<A> {
    fn manifest(&self) -> Manifest {
        (**self).manifest()
    }
    fn verify(
        &self,
        request: &InboundRequest,
        now: Timestamp,
        resources: &Resources,
    ) -> Result<Verdict, Rejection> {
        (**self).verify(request, now, resources)
    }
    fn parse_inbound(&self, request: &InboundRequest, now: Timestamp) -> Step {
        (**self).parse_inbound(request, now)
    }
    fn render_outbound(&self, message: &Message, now: Timestamp) -> Step {
        (**self).render_outbound(message, now)
    }
    fn resume(
        &self,
        continuation: Continuation,
        response: ProviderResponse,
        now: Timestamp,
    ) -> Step {
        (**self).resume(continuation, response, now)
    }
    fn resources(&self) -> Vec<ResourceSpec> {
        (**self).resources()
    }
    fn fetch_resource(&self, name: &str, now: Timestamp) -> Step {
        (**self).fetch_resource(name, now)
    }
    fn token_request(&self, profile: &str, now: Timestamp) -> Result<RequestSpec, AdapterError> {
        (**self).token_request(profile, now)
    }
    fn token_response(
        &self,
        profile: &str,
        response: ProviderResponse,
        now: Timestamp,
    ) -> Result<AccessToken, AdapterError> {
        (**self).token_response(profile, response, now)
    }
}

/// Creates configured adapter instances. One per adapter kind.
pub trait AdapterFactory: Send + Sync {
    /// What the adapter is and can do, before any configuration.
    fn manifest(&self) -> Manifest;

    /// Creates an instance for one channel. A bad config is a clear error
    /// naming the offending setting.
    fn create(&self, config: &ChannelConfig) -> Result<Box<dyn ChannelAdapter>, ConfigError>;
}

/// Milliseconds since the Unix epoch, supplied by the host.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Whole seconds since the epoch.
    pub fn as_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }
}

/// Everything an adapter instance is configured with.
#[derive(Clone, Serialize, Deserialize, Default)]
pub struct ChannelConfig {
    /// The channel instance id.
    pub channel: String,
    /// The public base URL of this channel's webhook, e.g.
    /// `https://gw.example.com/webhooks/support`, for signatures over URLs and
    /// for status callbacks.
    pub webhook_url: String,
    /// Adapter-specific settings (the `settings` table of the channel config).
    #[serde(default)]
    pub settings: Value,
    /// Secrets by name (already resolved from `*_file` and `${ENV}` by the host).
    #[serde(default)]
    pub secrets: BTreeMap<String, Secret>,
}

impl fmt::Debug for ChannelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelConfig")
            .field("channel", &self.channel)
            .field("webhook_url", &self.webhook_url)
            .field("settings", &self.settings)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ChannelConfig {
    /// The secret `name`, or a config error saying it is missing or blank.
    pub fn secret(&self, name: &str) -> Result<&Secret, ConfigError> {
        let key = || format!("secrets.{name}");
        let secret = self
            .secrets
            .get(name)
            .ok_or_else(|| ConfigError::new(key(), "is required"))?;
        if secret.expose().trim().is_empty() {
            return Err(ConfigError::new(key(), "must not be empty"));
        }
        Ok(secret)
    }

    /// Deserialises `settings` into the adapter's own settings type, naming the
    /// offending key on error.
    pub fn settings<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let value = if self.settings.is_null() {
            Value::Object(Default::default())
        } else {
            self.settings.clone()
        };
        serde_json::from_value(value).map_err(|e| ConfigError::new("settings", e.to_string()))
    }
}

/// A secret value. Its `Debug` never shows it.
///
/// ```
/// use patchbay_plugin_sdk::adapter::Secret;
/// let s = Secret::new("hunter2");
/// assert_eq!(format!("{s:?}"), "Secret(***)");
/// assert_eq!(s.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A configuration error: the key at fault and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// The offending key, relative to the channel's table.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// A config error at `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }

    /// Checks that the setting `key` holds an `http://` or `https://` URL.
    ///
    /// ```
    /// use patchbay_plugin_sdk::adapter::ConfigError;
    /// assert!(ConfigError::check_http_url("settings.api", "https://api.example").is_ok());
    /// assert_eq!(ConfigError::check_http_url("settings.api", "ftp://x").unwrap_err().key, "settings.api");
    /// ```
    pub fn check_http_url(key: &str, url: &str) -> Result<(), ConfigError> {
        if url.starts_with("http://") || url.starts_with("https://") {
            Ok(())
        } else {
            Err(ConfigError::new(key, "must be an http:// or https:// URL"))
        }
    }
}

/// What an adapter is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The adapter id used in configs (`"slack"`, `"client-channel"`).
    pub id: String,
    /// A human name.
    pub name: String,
    /// The adapter's own version.
    pub version: String,
    /// The lowest and highest wire version the adapter speaks.
    pub wire: WireRange,
    /// Default capabilities; configuration can narrow them.
    pub capabilities: ChannelCapabilities,
    /// Secrets the adapter reads, by name.
    #[serde(default)]
    pub secrets: Vec<SettingSpec>,
    /// Settings the adapter reads, by name.
    #[serde(default)]
    pub settings: Vec<SettingSpec>,
    /// OAuth profiles the adapter can request tokens for.
    #[serde(default)]
    pub auth_profiles: Vec<String>,
}

/// An inclusive range of wire versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireRange {
    /// Lowest supported.
    pub min: u32,
    /// Highest supported.
    pub max: u32,
}

impl WireRange {
    /// Only the current wire version.
    pub const CURRENT: WireRange = WireRange {
        min: WIRE_VERSION,
        max: WIRE_VERSION,
    };

    /// True when `version` is in range.
    pub fn contains(&self, version: u32) -> bool {
        (self.min..=self.max).contains(&version)
    }
}

/// One documented setting or secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingSpec {
    /// Its key.
    pub name: String,
    /// Whether the adapter refuses to start without it.
    pub required: bool,
    /// What it is for.
    pub description: String,
}

impl SettingSpec {
    /// A required setting.
    pub fn required(name: &str, description: &str) -> Self {
        SettingSpec {
            name: name.into(),
            required: true,
            description: description.into(),
        }
    }

    /// An optional setting.
    pub fn optional(name: &str, description: &str) -> Self {
        SettingSpec {
            name: name.into(),
            required: false,
            description: description.into(),
        }
    }
}

/// An inbound webhook request exactly as received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct InboundRequest {
    /// The HTTP method.
    pub method: String,
    /// The public URL the provider called, with query (from the host's
    /// configured public base URL, not the `Host` header).
    pub url: String,
    /// Headers in order, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    #[serde(with = "crate::bytes_b64")]
    pub body: Vec<u8>,
}

impl InboundRequest {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

pub(crate) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The outcome of a successful [`ChannelAdapter::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The exact response the provider expects.
    pub ack: AckResponse,
    /// The provider's event id; the host drops requests whose key it has seen.
    pub dedupe_key: Option<String>,
    /// `false` for handshakes (Slack's `url_verification`): answer, store nothing.
    pub store: bool,
}

impl Verdict {
    /// Store the request and answer `200` with an empty body.
    pub fn accept(dedupe_key: Option<String>) -> Self {
        Verdict {
            ack: AckResponse::empty(200),
            dedupe_key,
            store: true,
        }
    }

    /// Answer with `ack` and store nothing.
    pub fn handshake(ack: AckResponse) -> Self {
        Verdict {
            ack,
            dedupe_key: None,
            store: false,
        }
    }
}

/// The acknowledgement sent to the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckResponse {
    /// HTTP status.
    pub status: u16,
    /// Content type of `body`, if any.
    pub content_type: Option<String>,
    /// The body.
    #[serde(with = "crate::bytes_b64")]
    pub body: Vec<u8>,
}

impl AckResponse {
    /// A status with no body.
    pub fn empty(status: u16) -> Self {
        AckResponse {
            status,
            content_type: None,
            body: Vec::new(),
        }
    }

    /// A `200` with a body of the given content type.
    pub fn with_body(content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        AckResponse {
            status: 200,
            content_type: Some(content_type.into()),
            body: body.into(),
        }
    }
}

/// One step of an adapter operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Execute `request`, then call [`ChannelAdapter::resume`] with `continuation`
    /// and the response.
    Request {
        /// What to execute.
        request: RequestSpec,
        /// Where the adapter left off.
        continuation: Continuation,
    },
    /// Finished.
    Done {
        /// The result.
        output: StepOutput,
    },
    /// Failed; the error's class tells the host whether to retry.
    Fail {
        /// Why.
        error: AdapterError,
    },
}

impl Step {
    /// Inbound parsing finished with these messages.
    pub fn messages(messages: Vec<Message>) -> Self {
        Step::Done {
            output: StepOutput::Messages { messages },
        }
    }

    /// Outbound delivery finished.
    pub fn delivered(provider_message_id: Option<String>) -> Self {
        Step::Done {
            output: StepOutput::Delivered {
                provider_message_id,
            },
        }
    }

    /// Failed.
    pub fn fail(error: AdapterError) -> Self {
        Step::Fail { error }
    }
}

/// The result of a finished operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepOutput {
    /// Canonical messages parsed from an inbound request (possibly none).
    Messages {
        /// The messages.
        messages: Vec<Message>,
    },
    /// An outbound message was handed to the provider.
    Delivered {
        /// The provider's id for it.
        provider_message_id: Option<String>,
    },
    /// A fetched resource (see [`ChannelAdapter::fetch_resource`]).
    Resource {
        /// The document, in whatever shape the adapter's `verify` reads.
        value: Value,
    },
}

/// A document the host keeps for an adapter's `verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceSpec {
    /// The name `verify` looks it up by.
    pub name: String,
    /// Refresh it when it is older than this.
    pub refresh_after_ms: i64,
}

/// The resources the host has fetched for one adapter instance, by name.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Resources(pub BTreeMap<String, Value>);

impl Resources {
    /// No resources.
    pub fn none() -> Self {
        Resources::default()
    }

    /// The resource `name`, if the host has it.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// Adds or replaces a resource.
    pub fn with(mut self, name: impl Into<String>, value: Value) -> Self {
        self.0.insert(name.into(), value);
        self
    }
}

/// Opaque adapter state carried across a provider request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Continuation(pub Value);

/// A request the host executes on the adapter's behalf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "transport", rename_all = "snake_case")]
pub enum RequestSpec {
    /// An HTTP request.
    Http(HttpRequestSpec),
    /// An SMTP submission.
    Smtp(SmtpRequestSpec),
}

/// An HTTP request, described.
///
/// ```
/// use patchbay_plugin_sdk::adapter::HttpRequestSpec;
/// let req = HttpRequestSpec::post_json("https://api.example/send", &serde_json::json!({"a":1}))
///     .header("x-api-key", "k");
/// assert_eq!(req.body, br#"{"a":1}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HttpRequestSpec {
    /// `GET`, `POST`…
    pub method: String,
    /// The full URL.
    pub url: String,
    /// Headers in order.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The body.
    #[serde(default, with = "crate::bytes_b64")]
    pub body: Vec<u8>,
    /// When set, the host adds `Authorization: Bearer <token>` from its token cache
    /// for this auth profile (see [`ChannelAdapter::token_request`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_profile: Option<String>,
}

impl HttpRequestSpec {
    /// A `GET`.
    pub fn get(url: impl Into<String>) -> Self {
        HttpRequestSpec {
            method: "GET".into(),
            url: url.into(),
            ..Default::default()
        }
    }

    /// A `POST` of a JSON body.
    pub fn post_json(url: impl Into<String>, body: &Value) -> Self {
        HttpRequestSpec {
            method: "POST".into(),
            url: url.into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
            auth_profile: None,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// An SMTP submission, described: the relay to submit to, the envelope and
/// the complete MIME message. The host answers with the server's reply code in
/// [`ProviderResponse::status`] (250 when accepted) and its text in the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SmtpRequestSpec {
    /// Where to submit.
    pub relay: SmtpRelay,
    /// Envelope sender.
    pub from: String,
    /// Envelope recipients.
    pub to: Vec<String>,
    /// The RFC 5322 message.
    #[serde(with = "crate::bytes_b64")]
    pub message: Vec<u8>,
}

/// An SMTP server and how to talk to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SmtpRelay {
    /// Host name (also the name its TLS certificate must carry).
    pub host: String,
    /// Port: usually 587 with STARTTLS, 465 with implicit TLS.
    pub port: u16,
    /// Transport security.
    #[serde(default)]
    pub security: SmtpSecurity,
    /// User name for `AUTH`, when the relay wants it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password for `AUTH`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// The name to greet with in `EHLO` (default `localhost`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hello_name: Option<String>,
}

/// How an SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with `STARTTLS`; refuse servers without it.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
    /// No encryption: only for a relay on the same host or a test server.
    None,
}

/// The provider's answer to a [`RequestSpec`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ProviderResponse {
    /// HTTP status, or the SMTP reply code.
    pub status: u16,
    /// Headers in order (HTTP only).
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The body (or the SMTP reply text).
    #[serde(default, with = "crate::bytes_b64")]
    pub body: Vec<u8>,
}

impl ProviderResponse {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// True for 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// `Retry-After` in milliseconds, when given in seconds (see
    /// [`retry_after_at`](Self::retry_after_at) for HTTP-dates too).
    pub fn retry_after_ms(&self) -> Option<u64> {
        // Without a clock an HTTP-date means nothing; seconds need none.
        let value = self.header("retry-after")?;
        value.trim().parse::<f64>().ok()?;
        retry_after_ms(value, Timestamp(0))
    }

    /// `Retry-After` in milliseconds from `now`, given in seconds or as an
    /// HTTP-date (see [`retry_after_ms`]).
    pub fn retry_after_at(&self, now: Timestamp) -> Option<u64> {
        retry_after_ms(self.header("retry-after")?, now)
    }

    /// The default classification of a non-2xx HTTP answer: 429 rate limited
    /// (honouring `Retry-After`), 401 auth expired, 5xx and 408 transient, 404 and
    /// 410 invalid destination, other 4xx invalid structure.
    pub fn classify_http_error(&self, what: &str) -> AdapterError {
        let status = self.status;
        let msg = format!("{what} answered HTTP {status}");
        match status {
            429 => AdapterError::rate_limited(self.retry_after_ms(), msg),
            401 => AdapterError::auth_expired(msg),
            408 | 500..=599 => AdapterError::transient(msg),
            404 | 410 => AdapterError::permanent(msg).with_reason(ReasonCode::INVALID_DESTINATION),
            403 => AdapterError::permanent(msg).with_reason(ReasonCode::NOT_ALLOWED),
            _ => AdapterError::permanent(msg).with_reason(ReasonCode::INVALID_STRUCTURE),
        }
    }
}

/// An access token and when it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessToken {
    /// The bearer token.
    pub token: Secret,
    /// Expiry, milliseconds since the epoch.
    pub expires_at: Timestamp,
}

/// A `Retry-After` value in milliseconds from `now`: delay-seconds
/// (`"120"`, fractions accepted) or an HTTP-date (`"Wed, 21 Oct 2026
/// 07:28:00 GMT"`; a date already past is 0). `None` if it is neither.
///
/// ```
/// use patchbay_plugin_sdk::adapter::{Timestamp, retry_after_ms};
/// assert_eq!(retry_after_ms("2", Timestamp(0)), Some(2_000));
/// // 1 Jan 1970 00:01:00 GMT is 60 s after the epoch.
/// assert_eq!(retry_after_ms("Thu, 01 Jan 1970 00:01:00 GMT", Timestamp(15_000)), Some(45_000));
/// assert_eq!(retry_after_ms("soon", Timestamp(0)), None);
/// ```
pub fn retry_after_ms(value: &str, now: Timestamp) -> Option<u64> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then_some((secs * 1000.0) as u64);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let at_ms = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    let at_ms = i64::try_from(at_ms).ok()?;
    Some(at_ms.saturating_sub(now.0).max(0) as u64)
}
