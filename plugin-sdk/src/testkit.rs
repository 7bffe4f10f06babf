//! Drive any adapter from fixtures with a fixed clock and scripted provider
//! responses (enable the `testkit` feature in your dev-dependencies).
//!
//! ```
//! # #[cfg(feature = "testkit")] {
//! use patchbay_plugin_sdk::testkit::{Harness, request};
//! # use patchbay_plugin_sdk::prelude::*;
//! # struct Echo;
//! # impl ChannelAdapter for Echo {
//! #   fn manifest(&self) -> Manifest { unimplemented!() }
//! #   fn verify(&self, _: &InboundRequest, _: Timestamp, _: &Resources) -> Result<Verdict, Rejection> { Ok(Verdict::accept(None)) }
//! #   fn parse_inbound(&self, r: &InboundRequest, _: Timestamp) -> Step {
//! #     Step::messages(vec![Message::new("c", Content::text(String::from_utf8_lossy(&r.body)))]) }
//! #   fn render_outbound(&self, _: &Message, _: Timestamp) -> Step { Step::delivered(None) }
//! # }
//! let h = Harness::new(Echo, 1_700_000_000_000);
//! let run = h.inbound(&request("POST", "https://gw/webhooks/x", &[], b"hi"), vec![]);
//! assert_eq!(run.messages().unwrap()[0].content, Content::text("hi"));
//! # }
//! ```

pub mod conformance;
pub mod fixtures;

use std::collections::VecDeque;

use crate::adapter::{
    ChannelAdapter, InboundRequest, ProviderResponse, RequestSpec, Resources, Step, StepOutput,
    Timestamp, Verdict,
};
use crate::driver::{Driver, Next, Operations};
use crate::error::{AdapterError, Rejection};
use crate::message::Message;
use crate::upstream::{Delivery, PlatformEvent, UpstreamConnector};

/// Runs an adapter's operations with a fixed `now` and scripted responses.
#[derive(Debug)]
pub struct Harness<A> {
    /// The adapter under test.
    pub adapter: A,
    /// The fixed clock, milliseconds since the epoch.
    pub now: Timestamp,
    /// The resources handed to `verify`.
    pub resources: Resources,
}

/// The record of one driven operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// Every request the adapter asked the host to make, in order.
    pub requests: Vec<RequestSpec>,
    /// How it ended.
    pub outcome: Result<StepOutput, AdapterError>,
}

impl Run {
    /// The parsed messages, or the failure.
    pub fn messages(&self) -> Result<&[Message], AdapterError> {
        match &self.outcome {
            Ok(StepOutput::Messages { messages }) => Ok(messages),
            Ok(other) => Err(AdapterError::permanent(format!(
                "expected messages, got {other:?}"
            ))),
            Err(e) => Err(e.clone()),
        }
    }
}

impl<A: ChannelAdapter> Harness<A> {
    /// A harness at a fixed time.
    pub fn new(adapter: A, now_ms: i64) -> Self {
        Harness {
            adapter,
            now: Timestamp(now_ms),
            resources: Resources::none(),
        }
    }

    /// The same harness with `resource` available to `verify`.
    pub fn with_resource(mut self, name: &str, value: serde_json::Value) -> Self {
        self.resources = self.resources.with(name, value);
        self
    }

    /// Runs `verify`.
    pub fn verify(&self, request: &InboundRequest) -> Result<Verdict, Rejection> {
        self.adapter.verify(request, self.now, &self.resources)
    }

    /// Runs `fetch_resource` to the end, answering requests from `responses` in order.
    pub fn fetch_resource(&self, name: &str, responses: Vec<ProviderResponse>) -> Run {
        self.drive(self.adapter.fetch_resource(name, self.now), responses)
    }

    /// Runs `parse_inbound` to the end, answering requests from `responses` in order.
    pub fn inbound(&self, request: &InboundRequest, responses: Vec<ProviderResponse>) -> Run {
        self.drive(self.adapter.parse_inbound(request, self.now), responses)
    }

    /// Runs `render_outbound` to the end, answering requests from `responses` in order.
    pub fn outbound(&self, message: &Message, responses: Vec<ProviderResponse>) -> Run {
        self.drive(self.adapter.render_outbound(message, self.now), responses)
    }

    fn drive(&self, step: Step, responses: Vec<ProviderResponse>) -> Run {
        let ops: &dyn ChannelAdapter = &self.adapter;
        drive(ops, step, self.now, responses)
    }
}

/// Runs an upstream connector's operations with a fixed `now` and scripted
/// platform answers.
#[derive(Debug)]
pub struct PlatformHarness<C> {
    /// The connector under test.
    pub connector: C,
    /// The fixed clock, milliseconds since the epoch.
    pub now: Timestamp,
}

impl<C: UpstreamConnector> PlatformHarness<C> {
    /// A harness at a fixed time.
    pub fn new(connector: C, now_ms: i64) -> Self {
        PlatformHarness {
            connector,
            now: Timestamp(now_ms),
        }
    }

    /// Runs `verify`.
    pub fn verify(&self, request: &InboundRequest) -> Result<Verdict, Rejection> {
        self.connector.verify(request, self.now)
    }

    /// Runs `verify`, then `decode` if it accepted.
    pub fn webhook(&self, request: &InboundRequest) -> Result<Vec<PlatformEvent>, String> {
        self.verify(request)
            .map_err(|r| format!("verify refused with {}: {}", r.status, r.message))?;
        self.connector
            .decode(request, self.now)
            .map_err(|e| format!("decode failed: {e}"))
    }

    /// Runs `deliver` to the end, answering requests from `responses` in order.
    pub fn deliver(&self, delivery: &Delivery, responses: Vec<ProviderResponse>) -> Run {
        let step = self.connector.deliver(delivery, self.now);
        let ops: &dyn UpstreamConnector = &self.connector;
        drive(ops, step, self.now, responses)
    }

    /// Runs `register` to the end, answering requests from `responses` in
    /// order; a finished run's output reads with
    /// [`RegistrationReport::from_output`](crate::upstream::register::RegistrationReport::from_output).
    pub fn register(
        &self,
        registration: &crate::upstream::register::Registration,
        responses: Vec<ProviderResponse>,
    ) -> Run {
        let step = self.connector.register(registration, self.now);
        let ops: &dyn UpstreamConnector = &self.connector;
        drive(ops, step, self.now, responses)
    }
}

/// Runs `step` through the SDK's [`Driver`] — the same loop the host runs —
/// answering each request with the next scripted response.
fn drive<O: Operations + ?Sized>(
    ops: &O,
    step: Step,
    now: Timestamp,
    responses: Vec<ProviderResponse>,
) -> Run {
    let mut responses = VecDeque::from(responses);
    let mut requests = Vec::new();
    let mut driver = Driver::new(step);
    loop {
        match driver.advance() {
            Next::Request { request, .. } => {
                requests.push(request);
                let Some(response) = responses.pop_front() else {
                    return Run {
                        requests,
                        outcome: Err(AdapterError::permanent(
                            "testkit: more requests were made than were scripted",
                        )),
                    };
                };
                driver.resume_with(|c| ops.resume(c, response, now));
            }
            Next::Finished(outcome) => return Run { requests, outcome },
        }
    }
}

/// Builds an inbound request; header names are lower-cased.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> InboundRequest {
    InboundRequest {
        method: method.into(),
        url: url.into(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), (*v).to_string()))
            .collect(),
        body: body.to_vec(),
    }
}

/// A provider response with a JSON body.
pub fn json_response(status: u16, body: &serde_json::Value) -> ProviderResponse {
    ProviderResponse {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    }
}
