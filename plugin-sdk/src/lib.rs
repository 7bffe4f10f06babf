//! # Patchbay plugin SDK
//!
//! The stable contract between the Patchbay host and its channel adapters.
//!
//! ## Design
//!
//! Patchbay sits between messaging providers (Slack, Teams, SMS, email, any
//! channel a third party adds) and one business application. The application
//! speaks one [canonical format](message); each **adapter** converts between that
//! format and one provider's webhooks and API.
//!
//! Adapters are **sans-I/O**: pure, synchronous converters. The host owns every
//! socket, the clock, randomness, retries, rate limits, token caches and
//! durability. An adapter:
//!
//! 1. [`verify`](adapter::ChannelAdapter::verify)s an inbound webhook over its
//!    exact bytes and says how to acknowledge it and how to dedupe it;
//! 2. [`parse_inbound`](adapter::ChannelAdapter::parse_inbound)s the stored request
//!    into canonical [`Message`](message::Message)s;
//! 3. [`render_outbound`](adapter::ChannelAdapter::render_outbound)s a canonical
//!    message — already fitted to the channel's [capabilities] by the host — into a
//!    provider request.
//!
//! When a conversion needs the provider (fetch a message by id, upload a file),
//! the adapter returns a [`Step::Request`](adapter::Step::Request) describing the
//! call and a continuation; the host performs it and
//! [`resume`](adapter::ChannelAdapter::resume)s the adapter. Failures carry an
//! [`ErrorClass`](error::ErrorClass) that tells the host whether to retry.
//!
//! When `verify` needs a document that lives at the provider — the signing keys
//! of a JWT, say — the adapter declares it as a
//! [`resource`](adapter::ChannelAdapter::resources). The host fetches it with
//! the same request/continuation flow, caches it, passes it to every `verify`,
//! and refreshes it when it ages out or when `verify` answers
//! [`Rejection::stale_resources`](error::Rejection::stale_resources).
//!
//! Native rich content has size limits on most providers (Slack's Block Kit,
//! Teams' cards). Adapters declare them as
//! [`RichLimits`](capabilities::RichLimits); the host's fitting keeps messages
//! within them, so adapters render what they receive as it is.
//!
//! ## What this crate does not do
//!
//! No networking, no async runtime, no logging, no storage, no dynamic loading.
//! Those belong to the host, which is why one adapter can run compiled in or as a
//! shared library built by another compiler.
//!
//! ## A worked example
//!
//! An adapter for a made-up channel whose webhook posts `{"from":..,"text":..}`
//! with a hex HMAC-SHA256 in `x-sig`, and which sends with `POST /send`:
//!
//! ```
//! use patchbay_plugin_sdk::prelude::*;
//! use patchbay_plugin_sdk::signature::{hmac_sha256_hex, verify_hex};
//!
//! struct Toy { secret: Secret, api: String }
//!
//! impl ChannelAdapter for Toy {
//!     fn manifest(&self) -> Manifest {
//!         let text = DirectionCapabilities::plain_text(1000);
//!         let capabilities = ChannelCapabilities { inbound: text.clone(), outbound: text };
//!         Manifest::new("toy", "Toy", "0.1.0", capabilities)
//!             .with_secrets([SettingSpec::required("secret", "webhook signing key")])
//!     }
//!
//!     fn verify(&self, req: &InboundRequest, _now: Timestamp, _: &Resources) -> Result<Verdict, Rejection> {
//!         let sig = req.header("x-sig").ok_or_else(|| Rejection::unauthorized("missing x-sig"))?;
//!         let expected = hmac_sha256_hex(self.secret.expose().as_bytes(), &req.body);
//!         if !verify_hex(sig, &expected) {
//!             return Err(Rejection::unauthorized("signature mismatch"));
//!         }
//!         Ok(Verdict::accept(None))
//!     }
//!
//!     fn parse_inbound(&self, req: &InboundRequest, _now: Timestamp) -> Step {
//!         #[derive(serde::Deserialize)]
//!         struct Wire { from: String, text: String }
//!         match serde_json::from_slice::<Wire>(&req.body) {
//!             Ok(w) => {
//!                 let mut m = Message::new(w.from.clone(), Content::text(w.text));
//!                 m.sender = Some(Participant::id(w.from));
//!                 Step::messages(vec![m])
//!             }
//!             Err(e) => Step::fail(AdapterError::bad_input(format!("toy payload: {e}"))),
//!         }
//!     }
//!
//!     fn render_outbound(&self, msg: &Message, _now: Timestamp) -> Step {
//!         let Content::Text { text, .. } = &msg.content else {
//!             return Step::fail(AdapterError::bad_input("toy sends text only")
//!                 .with_reason(ReasonCode::UNSUPPORTED));
//!         };
//!         let body = serde_json::json!({"to": msg.conversation.id, "text": text});
//!         Step::Request {
//!             request: RequestSpec::Http(HttpRequestSpec::post_json(format!("{}/send", self.api), &body)),
//!             continuation: Continuation(serde_json::Value::Null),
//!         }
//!     }
//!
//!     fn resume(&self, _c: Continuation, resp: ProviderResponse, _now: Timestamp) -> Step {
//!         if resp.is_success() { Step::delivered(None) } else { Step::fail(resp.classify_http_error("toy")) }
//!     }
//! }
//!
//! let toy = Toy { secret: Secret::new("k"), api: "http://127.0.0.1:1".into() };
//! let body = br#"{"from":"u1","text":"hello"}"#;
//! let sig = hmac_sha256_hex(b"k", body);
//! let req = InboundRequest { method: "POST".into(), url: "https://gw/webhooks/toy".into(),
//!     headers: vec![("x-sig".into(), sig)], body: body.to_vec() };
//! assert!(toy.verify(&req, Timestamp(0), &Resources::none()).is_ok());
//! let Step::Done { output: StepOutput::Messages { messages } } = toy.parse_inbound(&req, Timestamp(0)) else { panic!() };
//! assert_eq!(messages[0].content, Content::text("hello"));
//! ```
//!
//! ## Versioning
//!
//! [`WIRE_VERSION`](adapter::WIRE_VERSION) versions the JSON payloads that cross
//! the shared-library boundary. Wire payloads accept unknown fields; config structs
//! reject them. The [guide] ends with the host ↔ SDK ↔ ABI ↔ wire
//! compatibility table.
//!
//! ## Writing your own
//!
//! The [guide] goes from `cargo new` to a plugin loaded by `patchbay serve`;
//! `testkit::conformance` (feature `testkit`) checks an adapter from its own
//! `cargo test`.

#![doc(html_no_source)]
#![deny(missing_docs)]

pub mod abi;
pub mod adapter;
pub mod driver;
#[doc = include_str!("../docs/writing-an-adapter.md")]
pub mod guide {}
pub mod capabilities;
pub mod error;
pub mod message;
pub mod signature;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod upstream;
pub mod url;

mod bytes_b64;

/// Everything an adapter author usually needs.
pub mod prelude {
    pub use crate::adapter::{
        AccessToken, AckResponse, AdapterFactory, ChannelAdapter, ChannelConfig, ConfigError,
        Continuation, HttpRequestSpec, InboundRequest, Manifest, OutboxPush, ProviderResponse,
        RequestSpec, ResourceSpec, Resources, Secret, SettingSpec, SmtpRelay, SmtpRequestSpec,
        SmtpSecurity, Step, StepOutput, Timestamp, Verdict, WireRange,
    };
    pub use crate::capabilities::{
        AttachmentPolicy, ChannelCapabilities, DirectionCapabilities, Feature, ListMode,
        RichLimits, RichType,
    };
    pub use crate::error::{AdapterError, ErrorClass, Rejection};
    pub use crate::message::{
        Attachment, Button, ButtonAction, Card, Content, Conversation, DeliveryReceipt, ListItem,
        Message, Participant, QuickReply, ReasonCode, ReceiptStatus, TextFormat, TimeSlot,
    };
}
