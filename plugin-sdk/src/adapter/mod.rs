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

mod config;
mod inbound;
mod manifest;
mod request;
mod step;

pub use config::{ChannelConfig, ConfigError, Secret};
pub use inbound::{AckResponse, InboundRequest, Verdict};
pub use manifest::{Manifest, SettingSpec, WireRange};
pub use request::{
    AccessToken, HttpRequestSpec, OutboxPush, ProviderResponse, RequestSpec, SmtpRelay,
    SmtpRequestSpec, SmtpSecurity, retry_after_ms,
};
pub use step::{Continuation, ResourceSpec, Resources, Step, StepOutput};

use serde::{Deserialize, Serialize};

use crate::error::{AdapterError, Rejection};
use crate::message::Message;

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
    /// The time `secs` seconds after the epoch.
    pub fn from_secs(secs: i64) -> Self {
        Timestamp(secs.saturating_mul(1000))
    }

    /// Whole seconds since the epoch.
    pub fn as_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// RFC 3339 in UTC with milliseconds, as most provider APIs write times.
    ///
    /// ```
    /// use patchbay_plugin_sdk::adapter::Timestamp;
    /// assert_eq!(Timestamp(1_700_000_000_123).to_rfc3339(), "2023-11-14T22:13:20.123Z");
    /// ```
    pub fn to_rfc3339(self) -> String {
        humantime::format_rfc3339_millis(self.to_system_time()).to_string()
    }

    /// Reads an RFC 3339 time (`Z` or no offset; fractions optional).
    ///
    /// ```
    /// use patchbay_plugin_sdk::adapter::Timestamp;
    /// assert_eq!(Timestamp::parse_rfc3339("2023-11-14T22:13:20.123Z"), Some(Timestamp(1_700_000_000_123)));
    /// assert_eq!(Timestamp::parse_rfc3339("yesterday"), None);
    /// ```
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        let time = humantime::parse_rfc3339_weak(text.trim()).ok()?;
        let ms = time.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
        i64::try_from(ms).ok().map(Timestamp)
    }

    fn to_system_time(self) -> std::time::SystemTime {
        let since = std::time::Duration::from_millis(self.0.unsigned_abs());
        if self.0 >= 0 {
            std::time::UNIX_EPOCH + since
        } else {
            std::time::UNIX_EPOCH - since
        }
    }
}
