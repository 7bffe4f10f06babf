//! Requests the host executes for an adapter, and the provider's answers.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::inbound::header;
use super::{Secret, Timestamp};
use crate::error::AdapterError;
use crate::message::ReasonCode;

/// A request the host executes on the adapter's behalf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "transport", rename_all = "snake_case")]
pub enum RequestSpec {
    /// An HTTP request.
    Http(HttpRequestSpec),
    /// An SMTP submission.
    Smtp(SmtpRequestSpec),
    /// A message for a customer connected to Patchbay itself (web chat): the
    /// host appends it to the conversation's durable outbox, which the
    /// customer's browser reads and resumes from. The host answers 200 with
    /// `{"seq": n}`, the entry's position in the outbox.
    Outbox(OutboxPush),
}

/// An entry for a conversation's outbox (see [`RequestSpec::Outbox`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct OutboxPush {
    /// The conversation whose customer reads it.
    pub conversation: String,
    /// What the customer's client receives, as the adapter rendered it.
    #[serde(with = "crate::bytes_b64")]
    pub body: Vec<u8>,
}

impl From<OutboxPush> for RequestSpec {
    fn from(request: OutboxPush) -> Self {
        RequestSpec::Outbox(request)
    }
}

impl From<HttpRequestSpec> for RequestSpec {
    fn from(request: HttpRequestSpec) -> Self {
        RequestSpec::Http(request)
    }
}

impl From<SmtpRequestSpec> for RequestSpec {
    fn from(request: SmtpRequestSpec) -> Self {
        RequestSpec::Smtp(request)
    }
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
    /// for this auth profile (see [`ChannelAdapter::token_request`](super::ChannelAdapter::token_request)).
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

    /// `Retry-After` in milliseconds. The Patchbay host hands adapters
    /// `Retry-After` in seconds whatever form the provider used (it turns an
    /// HTTP-date into seconds from its clock), so this is all an adapter
    /// needs; [`retry_after_at`](Self::retry_after_at) reads both forms
    /// itself.
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
    ///
    /// A 401 is "auth expired" only for a request that carried a token from an
    /// auth profile: the [driver](crate::driver) fetches a fresh token and
    /// tries once more. For any other request the driver makes it a permanent
    /// failure (`NOT_ALLOWED`): the configured credentials were refused.
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
