//! The sans-I/O upstream connector contract: Patchbay as the integration
//! layer of a contact-centre platform.
//!
//! A channel adapter speaks to a *provider* (Slack, Twilio); an upstream
//! connector speaks to the *platform* behind Patchbay (Genesys, Pega DMS,
//! eGain) in that platform's own terms, in both directions:
//!
//! | direction | connector operation | host does |
//! |---|---|---|
//! | customer → platform | [`UpstreamConnector::deliver`] a [`Delivery`] (a customer's message, typing, or a receipt for an agent's message) | runs the [`Step`]s, retries, records the platform's id |
//! | platform → customer | [`UpstreamConnector::verify`] the platform's webhook over its raw bytes, then [`UpstreamConnector::decode`] it into [`PlatformEvent`]s | stores, acknowledges with the verdict's body, maps each event to its channel and conversation |
//!
//! Like adapters, connectors are pure: no sockets, no clock, no randomness.
//! A delivery that needs the platform's API returns [`Step::Request`], is
//! resumed with the answer through [`UpstreamConnector::resume`], and ends with
//! [`StepOutput::Delivered`](crate::adapter::StepOutput::Delivered) carrying the platform's id for what was sent.
//! The same [`Driver`](crate::driver::Driver) runs both kinds of chain.
//!
//! **Customers.** The platform knows a customer by a key Patchbay chooses:
//! [`customer_key`] of the channel and conversation (`sms-main:+15550001`).
//! The platform echoes it on every reply, and the host keeps the key →
//! channel and conversation mapping durably, so a connector never needs to.
//!
//! The auth schemes platforms use (body HMAC, static headers, OAuth client
//! credentials) are shared helpers in [`auth`].

pub mod auth;
pub mod register;

use serde::{Deserialize, Serialize};

use crate::adapter::{
    AccessToken, ChannelConfig, ConfigError, Continuation, InboundRequest, ProviderResponse,
    RequestSpec, Step, Timestamp, Verdict,
};
use crate::capabilities::RichType;
use crate::error::{AdapterError, Rejection};
use crate::message::{DeliveryReceipt, Message};
use register::Registration;

/// What a connector declares about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UpstreamManifest {
    /// The `kind` upstreams name in config (`genesys-3pm`).
    pub kind: String,
    /// The connector's version.
    pub version: String,
    /// One line for `patchbay plugins inspect` and errors.
    pub description: String,
    /// Whether the platform takes delivery receipts for its agents' messages.
    pub receipts: bool,
    /// Whether the platform takes the customer's typing.
    pub typing: bool,
    /// The rich content kinds the platform's agents may send.
    pub rich_types: Vec<RichType>,
    /// Milliseconds within which the platform expects its webhook answered.
    pub ack_deadline_ms: u64,
}

impl UpstreamManifest {
    /// A manifest for `kind`, taking neither receipts nor typing, no rich types.
    pub fn new(kind: &str, version: &str, description: &str) -> Self {
        UpstreamManifest {
            kind: kind.to_string(),
            version: version.to_string(),
            description: description.to_string(),
            receipts: false,
            typing: false,
            rich_types: Vec::new(),
            ack_deadline_ms: 10_000,
        }
    }

    /// Takes delivery receipts.
    pub fn with_receipts(mut self) -> Self {
        self.receipts = true;
        self
    }

    /// Takes the customer's typing.
    pub fn with_typing(mut self) -> Self {
        self.typing = true;
        self
    }

    /// The rich kinds its agents send.
    pub fn with_rich_types(mut self, types: &[RichType]) -> Self {
        self.rich_types = types.to_vec();
        self
    }

    /// The platform's acknowledgement deadline.
    pub fn with_ack_deadline_ms(mut self, ms: u64) -> Self {
        self.ack_deadline_ms = ms;
        self
    }
}

/// One thing for the platform, from the customer's side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Delivery {
    /// The customer's key on the platform ([`customer_key`]).
    pub customer: String,
    /// The canonical message: the customer's text, attachments, postback,
    /// typing, end of session, or a receipt for an agent's message. Its `id`
    /// is Patchbay's and stays the same on every retry.
    pub message: Message,
    /// For a receipt: the platform's id of the message it is about. For a
    /// postback: the platform's id of the structured message answered, when
    /// known.
    pub platform_message_id: Option<String>,
    /// For a `Failed` receipt to a platform without receipts: the channel's
    /// `channel_msg_failed` text, in the channel's language, for the
    /// connector to show in the conversation instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
}

impl Delivery {
    /// A delivery of `message` for `customer`.
    pub fn new(customer: impl Into<String>, message: Message) -> Self {
        Delivery {
            customer: customer.into(),
            message,
            platform_message_id: None,
            notice: None,
        }
    }

    /// With the text to show in the conversation for a failure.
    pub fn with_notice(mut self, notice: Option<String>) -> Self {
        self.notice = notice;
        self
    }

    /// With the platform's id of the message this refers to.
    pub fn referring_to(mut self, platform_message_id: Option<String>) -> Self {
        self.platform_message_id = platform_message_id;
        self
    }
}

/// What a platform webhook asks of Patchbay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum PlatformEvent {
    /// A message for a customer: an agent's or bot's text, rich content,
    /// attachments, typing, or end of session. The host fills in its channel
    /// and conversation from `customer`.
    Message {
        /// The customer's key, as the platform echoed it.
        customer: String,
        /// The platform's id of this message: receipts and the customer's
        /// answers to it are reported with it.
        platform_message_id: Option<String>,
        /// The canonical message (`conversation` is left empty).
        message: Box<Message>,
    },
    /// The platform's receipt for a customer message Patchbay delivered
    /// (for instance, the platform refused it). The host logs it.
    Receipt {
        /// The customer's key, when the platform gives it.
        customer: Option<String>,
        /// The receipt; `message_id` is the platform's id.
        receipt: DeliveryReceipt,
    },
}

/// The sans-I/O contract of an upstream connector. See the [module docs](self).
pub trait UpstreamConnector: Send + Sync {
    /// What the connector is.
    fn manifest(&self) -> UpstreamManifest;

    /// Checks a platform webhook over its exact bytes, before anything is
    /// stored: signature or token, and that [`decode`](Self::decode) will
    /// read it. The verdict's ack is the body the platform expects.
    fn verify(&self, request: &InboundRequest, now: Timestamp) -> Result<Verdict, Rejection>;

    /// Decodes a verified, stored webhook.
    fn decode(
        &self,
        request: &InboundRequest,
        now: Timestamp,
    ) -> Result<Vec<PlatformEvent>, AdapterError>;

    /// Sends one thing to the platform. Ends with
    /// [`StepOutput::Delivered`](crate::adapter::StepOutput::Delivered)
    /// carrying the platform's id for it, if it gave one; something the
    /// platform cannot take (typing, when it has no typing) ends delivered
    /// with no request.
    fn deliver(&self, delivery: &Delivery, now: Timestamp) -> Step;

    /// Continues a delivery with the platform's answer.
    fn resume(
        &self,
        continuation: Continuation,
        response: ProviderResponse,
        now: Timestamp,
    ) -> Step {
        let _ = (continuation, response, now);
        Step::fail(AdapterError::permanent(
            "this connector does not continue requests",
        ))
    }

    /// Creates or updates the platform's model of each channel (see
    /// [`register`]), for platforms that keep one. Driven like a delivery;
    /// ends with [`RegistrationReport::into_step`](register::RegistrationReport::into_step).
    fn register(&self, registration: &Registration, now: Timestamp) -> Step {
        let _ = (registration, now);
        Step::fail(AdapterError::permanent(
            "this platform keeps no channel registrations",
        ))
    }

    /// The token request for an auth profile its requests name (see
    /// [`auth::ClientCredentials`]).
    fn token_request(&self, profile: &str, now: Timestamp) -> Result<RequestSpec, AdapterError> {
        let _ = now;
        Err(AdapterError::permanent(format!(
            "auth profile {profile:?} is not supported by this connector"
        )))
    }

    /// Reads the token response for an auth profile.
    fn token_response(
        &self,
        profile: &str,
        response: ProviderResponse,
        now: Timestamp,
    ) -> Result<AccessToken, AdapterError> {
        let _ = (response, now);
        Err(AdapterError::permanent(format!(
            "auth profile {profile:?} is not supported by this connector"
        )))
    }
}

impl<C: UpstreamConnector + ?Sized> UpstreamConnector for Box<C> {
    fn manifest(&self) -> UpstreamManifest {
        (**self).manifest()
    }
    fn verify(&self, request: &InboundRequest, now: Timestamp) -> Result<Verdict, Rejection> {
        (**self).verify(request, now)
    }
    fn decode(
        &self,
        request: &InboundRequest,
        now: Timestamp,
    ) -> Result<Vec<PlatformEvent>, AdapterError> {
        (**self).decode(request, now)
    }
    fn deliver(&self, delivery: &Delivery, now: Timestamp) -> Step {
        (**self).deliver(delivery, now)
    }
    fn resume(
        &self,
        continuation: Continuation,
        response: ProviderResponse,
        now: Timestamp,
    ) -> Step {
        (**self).resume(continuation, response, now)
    }
    fn register(&self, registration: &Registration, now: Timestamp) -> Step {
        (**self).register(registration, now)
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

/// Creates connector instances from an upstream's config. The config's
/// `channel` is the upstream's name and `webhook_url` the URL the platform
/// calls (`{public_url}/upstreams/{name}/webhook`).
pub trait UpstreamFactory: Send + Sync {
    /// What it creates.
    fn manifest(&self) -> UpstreamManifest;

    /// One instance, or the setting or secret at fault.
    fn create(&self, config: &ChannelConfig) -> Result<Box<dyn UpstreamConnector>, ConfigError>;
}

/// The key a platform knows a customer by: the channel and the conversation
/// (and thread, if any), readable in an agent's desktop. Unique per
/// conversation: `%`, `/` and `#` in ids are escaped.
///
/// ```
/// use patchbay_plugin_sdk::upstream::customer_key;
/// assert_eq!(customer_key("sms-main", "+15550001", None), "sms-main:+15550001");
/// assert_eq!(customer_key("slack", "C1", Some("17.2")), "slack:C1#17.2");
/// assert_eq!(customer_key("t", "a#b", None), "t:a%23b");
/// ```
pub fn customer_key(channel: &str, conversation: &str, thread: Option<&str>) -> String {
    let escape = |s: &str| {
        s.replace('%', "%25")
            .replace('#', "%23")
            .replace('/', "%2F")
    };
    match thread {
        Some(thread) => format!("{channel}:{}#{}", escape(conversation), escape(thread)),
        None => format!("{channel}:{}", escape(conversation)),
    }
}
