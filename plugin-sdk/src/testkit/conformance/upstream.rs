//! The conformance kit for upstream connectors: the checks every connector
//! must pass, from its author's own `cargo test`.
//!
//! - **manifest**: kind usable in configs, version and description set, an
//!   acknowledgement deadline, a JSON round trip.
//! - **verify**: the signed sample webhook is accepted and decodes to at
//!   least one event, every message's content valid and unchanged through
//!   JSON, every customer key non-empty; without its signature, with a byte
//!   of its body changed (unless [`UpstreamConformance::body_not_signed`]),
//!   and with any value the signer wrote changed, it is refused with 401 or
//!   403.
//! - **unknown fields**: the sample with an extra JSON field, signed again,
//!   is accepted and decodes to as many events.
//! - **deliveries**: a customer's text, typing, a postback, end of session
//!   and a receipt (with and without the platform's id) run to the end —
//!   each platform call answered with the given answer — without failing or
//!   panicking, through well-formed requests.

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::{Outcome, Report, fail, forgeries, refused, tamper, well_formed};
use crate::adapter::{InboundRequest, ProviderResponse, StepOutput};
use crate::driver::MAX_STEPS;
use crate::message::{Content, DeliveryReceipt, Message, ReasonCode};
use crate::testkit::PlatformHarness;
use crate::upstream::{Delivery, PlatformEvent, UpstreamConnector, customer_key};

type Signer = Box<dyn Fn(&mut InboundRequest)>;

/// The checks to run against one connector.
pub struct UpstreamConformance<C> {
    harness: PlatformHarness<C>,
    sample: Option<(InboundRequest, Signer)>,
    body_signed: bool,
    answer: ProviderResponse,
}

impl<C> std::fmt::Debug for UpstreamConformance<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConformance")
            .field("now", &self.harness.now)
            .finish_non_exhaustive()
    }
}

impl<C: UpstreamConnector> UpstreamConformance<C> {
    /// Checks for `connector` with the clock fixed at `now_ms`. Platform
    /// calls are answered `200 {}` unless [`answer`](Self::answer) says
    /// otherwise.
    pub fn new(connector: C, now_ms: i64) -> Self {
        UpstreamConformance {
            harness: PlatformHarness::new(connector, now_ms),
            sample: None,
            body_signed: true,
            answer: ProviderResponse {
                status: 200,
                headers: vec![],
                body: b"{}".to_vec(),
            },
        }
    }

    /// The platform's webhook `body`, and how the platform signs it.
    pub fn webhook(mut self, body: &[u8], sign: impl Fn(&mut InboundRequest) + 'static) -> Self {
        let request = InboundRequest {
            method: "POST".into(),
            url: "https://patchbay.test/upstreams/conformance/webhook".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_vec(),
        };
        self.sample = Some((request, Box::new(sign)));
        self
    }

    /// The platform authenticates its calls with a token that does not cover
    /// the body (Pega's JWT): the tampered-body check is skipped.
    pub fn body_not_signed(mut self) -> Self {
        self.body_signed = false;
        self
    }

    /// How the platform answers a successful call (its ids, say).
    pub fn answer(mut self, status: u16, body: &str) -> Self {
        self.answer = ProviderResponse {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        };
        self
    }

    /// Runs every check.
    pub fn run(&self) -> Report {
        let mut report = Report::default();
        let mut check = |name: &str, f: &dyn Fn() -> Outcome| {
            let outcome = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
                let text = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                Outcome::Failed(format!("panicked: {text}"))
            });
            report.checks.push((name.to_string(), outcome));
        };
        check("manifest is valid", &|| self.manifest());
        check(
            "verify accepts the signed sample, decode reads it",
            &|| match self.signed().map(|s| self.decoded(&s)) {
                None => no_sample(),
                Some(Ok(_)) => Outcome::Passed,
                Some(Err(e)) => fail(e),
            },
        );
        check(
            "verify refuses a missing signature",
            &|| match &self.sample {
                Some((unsigned, _)) => refused(self.harness.verify(unsigned)),
                None => no_sample(),
            },
        );
        check("verify refuses a tampered body", &|| {
            if !self.body_signed {
                return Outcome::Skipped("the platform does not sign the body".into());
            }
            let Some(mut tampered) = self.signed() else {
                return no_sample();
            };
            if !tamper(&mut tampered.body) {
                return Outcome::Skipped("the sample body has no letter or digit to change".into());
            }
            refused(self.harness.verify(&tampered))
        });
        check("verify refuses a wrong signature or token", &|| {
            let (Some((unsigned, _)), Some(signed)) = (&self.sample, self.signed()) else {
                return no_sample();
            };
            for (what, forged) in forgeries(unsigned, &signed) {
                if let Outcome::Failed(why) = refused(self.harness.verify(&forged)) {
                    return fail(format!("with a wrong {what}: {why}"));
                }
            }
            Outcome::Passed
        });
        check("unknown webhook fields are tolerated", &|| {
            self.tolerates_unknown_fields()
        });
        for (what, delivery) in deliveries() {
            check(&format!("delivery of {what} runs to the end"), &|| {
                self.delivers(&delivery)
            });
        }
        report
    }

    fn manifest(&self) -> Outcome {
        let m = self.harness.connector.manifest();
        let kind_ok = !m.kind.is_empty()
            && m.kind
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !kind_ok || m.kind == "webhook" {
            return fail(format!(
                "kind {:?} must be lowercase letters, digits and '-', and not \"webhook\"",
                m.kind
            ));
        }
        if m.version.trim().is_empty() || m.description.trim().is_empty() {
            return fail("version and description must be set");
        }
        if m.ack_deadline_ms == 0 {
            return fail("the acknowledgement deadline is 0");
        }
        match serde_json::to_string(&m)
            .ok()
            .and_then(|j| serde_json::from_str::<crate::upstream::UpstreamManifest>(&j).ok())
        {
            Some(back) if back == m => Outcome::Passed,
            _ => fail("the manifest does not round-trip through JSON"),
        }
    }

    fn signed(&self) -> Option<InboundRequest> {
        let (unsigned, sign) = self.sample.as_ref()?;
        let mut signed = unsigned.clone();
        sign(&mut signed);
        Some(signed)
    }

    /// Verifies and decodes; the number of events.
    fn decoded(&self, request: &InboundRequest) -> Result<usize, String> {
        let events = self.harness.webhook(request)?;
        if events.is_empty() {
            return Err("the sample decodes to no event".into());
        }
        for event in &events {
            if let PlatformEvent::Message {
                customer, message, ..
            } = event
            {
                if customer.is_empty() {
                    return Err("a message for an empty customer key".into());
                }
                message
                    .content
                    .validate()
                    .map_err(|e| format!("invalid content: {e}"))?;
                let json = serde_json::to_string(message).map_err(|e| e.to_string())?;
                let back: Message = serde_json::from_str(&json).map_err(|e| e.to_string())?;
                if back != **message {
                    return Err(format!("message changes through JSON: {json}"));
                }
            }
        }
        Ok(events.len())
    }

    fn tolerates_unknown_fields(&self) -> Outcome {
        let Some((unsigned, sign)) = &self.sample else {
            return no_sample();
        };
        let Ok(serde_json::Value::Object(mut map)) =
            serde_json::from_slice::<serde_json::Value>(&unsigned.body)
        else {
            return Outcome::Skipped("the sample is not a JSON object".into());
        };
        map.insert(
            "patchbay_conformance_unknown".into(),
            serde_json::json!({"nested": [1, "two", null]}),
        );
        let mut extended = unsigned.clone();
        extended.body = serde_json::Value::Object(map).to_string().into_bytes();
        sign(&mut extended);
        let Some(signed) = self.signed() else {
            return no_sample();
        };
        match (self.decoded(&signed), self.decoded(&extended)) {
            (Ok(a), Ok(b)) if a == b => Outcome::Passed,
            (Ok(a), Ok(b)) => fail(format!("{a} events without the field, {b} with it")),
            (_, Err(e)) | (Err(e), _) => fail(e),
        }
    }

    fn delivers(&self, delivery: &Delivery) -> Outcome {
        let run = self
            .harness
            .deliver(delivery, vec![self.answer.clone(); MAX_STEPS]);
        if let Some(why) = run.requests.iter().find_map(|r| match well_formed(r) {
            Outcome::Failed(why) => Some(why),
            _ => None,
        }) {
            return fail(why);
        }
        match run.outcome {
            Ok(StepOutput::Delivered { .. }) => Outcome::Passed,
            Ok(other) => fail(format!("ended with {other:?}")),
            Err(e) => fail(format!("failed: {e}")),
        }
    }
}

/// One delivery of each kind a customer's side produces.
fn deliveries() -> Vec<(&'static str, Delivery)> {
    let customer = customer_key("conformance", "customer-1", None);
    let message = |content: Content| {
        let mut m = Message::new("customer-1", content);
        m.id = "0190163d-8694-739b-aea5-966c26f8ad91".into();
        m.channel = "conformance".into();
        m
    };
    let receipt = DeliveryReceipt::failed("p-1", ReasonCode::INVALID_DESTINATION, "no such user");
    vec![
        (
            "a customer's text",
            Delivery::new(&customer, message(Content::text("hello"))),
        ),
        (
            "typing",
            Delivery::new(&customer, message(Content::Typing { active: true })),
        ),
        (
            "a postback",
            Delivery::new(
                &customer,
                message(Content::Postback {
                    payload: "yes".into(),
                    text: Some("Yes".into()),
                }),
            )
            .referring_to(Some("platform-structured-1".into())),
        ),
        (
            "end of session",
            Delivery::new(&customer, message(Content::EndSession { reason: None })),
        ),
        (
            "a receipt the platform can place",
            Delivery::new(&customer, message(Content::Receipt(receipt.clone())))
                .referring_to(Some("platform-1".into())),
        ),
        (
            "a receipt for a message the platform did not send",
            Delivery::new(&customer, message(Content::Receipt(receipt))),
        ),
    ]
}

fn no_sample() -> Outcome {
    Outcome::Skipped("no webhook sample given (UpstreamConformance::webhook)".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::{HttpRequestSpec, Step, Timestamp, Verdict};
    use crate::error::{AdapterError, Rejection};
    use crate::signature::{hmac_sha256_hex, verify_hex};
    use crate::upstream::UpstreamManifest;

    /// Signs with HMAC-SHA256 in `x-sig`; `careless` accepts anything.
    struct Toy {
        careless: bool,
    }

    impl UpstreamConnector for Toy {
        fn manifest(&self) -> UpstreamManifest {
            UpstreamManifest::new("toy-platform", "0.1.0", "a toy platform")
        }
        fn verify(&self, r: &InboundRequest, _: Timestamp) -> Result<Verdict, Rejection> {
            if !self.careless {
                let sig = r
                    .header("x-sig")
                    .ok_or_else(|| Rejection::unauthorized("missing x-sig"))?;
                if !verify_hex(sig, &hmac_sha256_hex(b"k", &r.body)) {
                    return Err(Rejection::unauthorized("bad x-sig"));
                }
            }
            Ok(Verdict::accept(None))
        }
        fn decode(
            &self,
            r: &InboundRequest,
            _: Timestamp,
        ) -> Result<Vec<PlatformEvent>, AdapterError> {
            let v: serde_json::Value = serde_json::from_slice(&r.body)
                .map_err(|e| AdapterError::bad_input(e.to_string()))?;
            let text = v["text"].as_str().unwrap_or_default().to_string();
            Ok(vec![PlatformEvent::Message {
                customer: v["to"].as_str().unwrap_or_default().to_string(),
                platform_message_id: None,
                message: Box::new(Message::new("", Content::text(text))),
            }])
        }
        fn deliver(&self, d: &Delivery, _: Timestamp) -> Step {
            if self.careless && matches!(d.message.content, Content::EndSession { .. }) {
                return Step::fail(AdapterError::permanent("cannot end sessions"));
            }
            Step::request(
                HttpRequestSpec::post_json("https://toy.example/messages", &serde_json::json!({})),
                &(),
            )
        }
        fn resume(
            &self,
            _: crate::adapter::Continuation,
            _: ProviderResponse,
            _: Timestamp,
        ) -> Step {
            Step::delivered(Some("t-1".into()))
        }
    }

    fn kit(careless: bool) -> Report {
        UpstreamConformance::new(Toy { careless }, 1_700_000_000_000)
            .webhook(br#"{"to":"c:1","text":"hi"}"#, |r: &mut InboundRequest| {
                let sig = hmac_sha256_hex(b"k", &r.body);
                r.headers.push(("x-sig".into(), sig));
            })
            .run()
    }

    #[test]
    fn a_sound_connector_passes_and_a_careless_one_fails_where_it_is_careless() {
        kit(false).assert_passed();
        let report = kit(true);
        let failed: Vec<&str> = report.failures().iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            failed,
            vec![
                "verify refuses a missing signature",
                "verify refuses a tampered body",
                "verify refuses a wrong signature or token",
                "delivery of end of session runs to the end",
            ],
            "{report}"
        );
    }
}
