//! What the inbound targets share: a framed input, adapters configured as in
//! their tests, and one check run on every request.
//!
//! An input is `content-type \n query \n body`: the first two lines say how
//! the body arrives, the rest is the body. The target signs the request as
//! the provider would, so the fuzzer reaches past signature checks into the
//! parsers, then checks:
//!
//! - nothing panics (`verify`, `parse_inbound`, the step driver);
//! - a request `verify` accepts for storing is never one `parse_inbound`
//!   refuses as bad input before asking the provider anything: what parsing
//!   would certainly refuse must be refused with 400 before it is
//!   acknowledged;
//! - every parsed message passes `Message::validate` and survives JSON.

use patchbay_plugin_sdk::adapter::{
    ChannelAdapter, ChannelConfig, InboundRequest, ProviderResponse, Resources, Secret, StepOutput,
    Timestamp,
};
use patchbay_plugin_sdk::driver::{Driver, Next};
use patchbay_plugin_sdk::error::ErrorClass;
use patchbay_plugin_sdk::message::Message;
use patchbay_plugin_sdk::upstream::{PlatformEvent, UpstreamConnector};

/// The fixed clock of every target (2023-11-14T22:13:20Z).
pub const NOW: i64 = 1_700_000_000_000;

/// One framed input: how the body arrives, and the body.
pub struct Framed<'a> {
    /// The `content-type` header, if the first line is not empty.
    pub content_type: Option<&'a str>,
    /// The query string of the webhook URL.
    pub query: &'a str,
    /// The raw body.
    pub body: &'a [u8],
}

impl<'a> Framed<'a> {
    /// Splits `data`; inputs without two lines are skipped.
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        let mut parts = data.splitn(3, |b| *b == b'\n');
        let content_type = std::str::from_utf8(parts.next()?).ok()?;
        let query = std::str::from_utf8(parts.next()?).ok()?;
        let body = parts.next()?;
        Some(Framed {
            content_type: (!content_type.is_empty()).then_some(content_type),
            query,
            body,
        })
    }

    /// The webhook request at `base_url`.
    pub fn request(&self, base_url: &str) -> InboundRequest {
        let url = if self.query.is_empty() {
            base_url.to_string()
        } else {
            format!("{base_url}?{}", self.query)
        };
        let headers = self
            .content_type
            .map(|ct| vec![("content-type".to_string(), ct.to_string())])
            .unwrap_or_default();
        InboundRequest {
            method: "POST".into(),
            url,
            headers,
            body: self.body.to_vec(),
        }
    }
}

/// A channel config with these settings and secrets.
pub fn config(
    channel: &str,
    settings: serde_json::Value,
    secrets: &[(&str, &str)],
) -> ChannelConfig {
    ChannelConfig {
        channel: channel.into(),
        webhook_url: format!("https://gw.example/webhooks/{channel}"),
        settings,
        secrets: secrets
            .iter()
            .map(|(k, v)| (k.to_string(), Secret::new(*v)))
            .collect(),
    }
}

/// Verifies `request`; when it is accepted for storing, or when `parse_anyway`
/// (the signature cannot be forged here), parses it, answering provider
/// lookups with `lookup`; checks the properties in the module docs.
pub fn check(
    adapter: &dyn ChannelAdapter,
    request: &InboundRequest,
    parse_anyway: bool,
    lookup: &[u8],
) {
    let now = Timestamp(NOW);
    let verdict = adapter.verify(request, now, &Resources::none());
    let stored = matches!(&verdict, Ok(v) if v.store);
    if !stored && !parse_anyway {
        return;
    }
    let mut driver = Driver::new(adapter.parse_inbound(request, now));
    let mut requests = 0;
    let outcome = loop {
        match driver.advance() {
            Next::Request { .. } => {
                requests += 1;
                let answer = ProviderResponse {
                    status: 200,
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: lookup.to_vec(),
                };
                driver.resume(adapter, answer, now);
            }
            Next::Finished(outcome) => break outcome,
        }
    };
    match outcome {
        Ok(StepOutput::Messages { messages }) => {
            for message in messages {
                check_message(&message);
            }
        }
        Ok(_) => {}
        Err(error) => {
            if stored && requests == 0 && error.class() == ErrorClass::BadInput {
                panic!("verify accepted a request parsing refuses: {error}");
            }
        }
    }
}

/// Verifies a platform webhook; when it is accepted, decodes it: decoding
/// must not refuse it, every message must be valid (with the conversation
/// the host would fill in) and survive JSON, every customer key non-empty.
pub fn check_platform(connector: &dyn UpstreamConnector, request: &InboundRequest) {
    let now = Timestamp(NOW);
    if connector.verify(request, now).is_err() {
        return;
    }
    let events = match connector.decode(request, now) {
        Ok(events) => events,
        Err(e) => panic!("verify accepted a webhook decode refuses: {e}"),
    };
    for event in events {
        if let PlatformEvent::Message {
            customer, message, ..
        } = event
        {
            assert!(!customer.is_empty(), "a message for no customer");
            let mut message = *message;
            message.conversation.id = "fuzz".into();
            check_message(&message);
        }
    }
}

/// A parsed or accepted message is valid and survives JSON.
pub fn check_message(message: &Message) {
    if let Err(e) = message.validate() {
        panic!("an invalid message came out: {e}");
    }
    let json = serde_json::to_vec(message).expect("messages serialise");
    let back: Message = serde_json::from_slice(&json).expect("messages deserialise");
    assert_eq!(&back, message, "a message changed through JSON");
}
