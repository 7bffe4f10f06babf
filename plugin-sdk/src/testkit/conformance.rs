//! The conformance kit: one call that runs the checks every adapter must pass,
//! from the adapter author's own `cargo test`.
//!
//! ```
//! # #[cfg(feature = "testkit")] {
//! use patchbay_plugin_sdk::prelude::*;
//! use patchbay_plugin_sdk::signature::{hmac_sha256_hex, verify_hex};
//! use patchbay_plugin_sdk::testkit::conformance::Conformance;
//! # struct Toy;
//! # impl ChannelAdapter for Toy {
//! #   fn manifest(&self) -> Manifest {
//! #     Manifest::new("toy", "Toy", "0.1.0", ChannelCapabilities {
//! #       inbound: DirectionCapabilities::plain_text(100),
//! #       outbound: DirectionCapabilities::plain_text(100) }) }
//! #   fn verify(&self, r: &InboundRequest, _: Timestamp, _: &Resources) -> Result<Verdict, Rejection> {
//! #     let sig = r.header("x-sig").ok_or_else(|| Rejection::unauthorized("missing x-sig"))?;
//! #     if !verify_hex(sig, &hmac_sha256_hex(b"k", &r.body)) { return Err(Rejection::unauthorized("bad")); }
//! #     Ok(Verdict::accept(None)) }
//! #   fn parse_inbound(&self, r: &InboundRequest, _: Timestamp) -> Step {
//! #     Step::messages(vec![Message::new("c", Content::text(String::from_utf8_lossy(&r.body)))]) }
//! #   fn render_outbound(&self, m: &Message, _: Timestamp) -> Step { Step::delivered(None) }
//! # }
//! let report = Conformance::new(Toy, 1_700_000_000_000)
//!     .inbound(br#"{"text":"hi"}"#, |r: &mut InboundRequest| {
//!         let sig = hmac_sha256_hex(b"k", &r.body);
//!         r.headers.push(("x-sig".into(), sig));
//!     })
//!     .run();
//! report.assert_passed();
//! # }
//! ```
//!
//! The checks:
//! - **manifest**: id, name and version set; the id usable in configs; the
//!   wire range includes this SDK's version; setting and secret names unique;
//!   the manifest survives a JSON round trip.
//! - **verify**: the signed sample is accepted; without its signature, and
//!   with one byte of its body changed, it is refused with 401 or 403 (skip the
//!   second with [`Conformance::body_not_signed`] for providers that send a
//!   shared token instead of signing the body); and with any value the signer
//!   wrote (a header, a `?token=`, a signature field in the body) changed by
//!   one character, it is refused too.
//! - **unknown fields**: the sample with an extra field (JSON) or parameter
//!   (forms), signed again, is accepted and parses to as many messages.
//! - **outbound**: every kind the manifest declares — text, markdown, typing,
//!   attachments, each rich type, end of session — built at the declared
//!   limits renders without panicking or refusing, into well-formed requests.
//! - **round trips**: every parsed message survives a JSON round trip; the
//!   golden fixtures, if given, pass.

mod upstream;

pub use upstream::UpstreamConformance;

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use super::{Harness, fixtures, request};
use crate::adapter::{ChannelAdapter, InboundRequest, RequestSpec, Step, WIRE_VERSION};
use crate::capabilities::{Feature, RichType};
use crate::error::ErrorClass;
use crate::message::{
    Attachment, Button, Card, Content, ListItem, Message, QuickReply, TextFormat, TimeSlot,
};

type Signer = Box<dyn Fn(&mut InboundRequest)>;

/// The checks to run against one adapter; see the module docs.
pub struct Conformance<A> {
    harness: Harness<A>,
    sample: Option<(InboundRequest, Signer)>,
    body_signed: bool,
    conversation: String,
    inbound_fixtures: Vec<(PathBuf, Signer)>,
    outbound_fixtures: Vec<PathBuf>,
}

impl<A> std::fmt::Debug for Conformance<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conformance")
            .field("conversation", &self.conversation)
            .finish_non_exhaustive()
    }
}

/// How one check went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It passed.
    Passed,
    /// It did not apply; why.
    Skipped(String),
    /// It failed; what went wrong.
    Failed(String),
}

/// The result of [`Conformance::run`].
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Every check by name, in the order run.
    pub checks: Vec<(String, Outcome)>,
}

impl Report {
    /// The failed checks.
    pub fn failures(&self) -> Vec<&(String, Outcome)> {
        self.checks
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Failed(_)))
            .collect()
    }

    /// Panics listing every failed check.
    pub fn assert_passed(&self) {
        assert!(self.failures().is_empty(), "conformance failed:\n{self}");
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (name, outcome) in &self.checks {
            match outcome {
                Outcome::Passed => writeln!(f, "  ok    {name}")?,
                Outcome::Skipped(why) => writeln!(f, "  skip  {name}: {why}")?,
                Outcome::Failed(what) => writeln!(f, "  FAIL  {name}: {what}")?,
            }
        }
        Ok(())
    }
}

impl<A: ChannelAdapter> Conformance<A> {
    /// Checks for `adapter` with the clock fixed at `now_ms`.
    pub fn new(adapter: A, now_ms: i64) -> Self {
        Conformance {
            harness: Harness::new(adapter, now_ms),
            sample: None,
            body_signed: true,
            conversation: "conformance-conversation".into(),
            inbound_fixtures: Vec::new(),
            outbound_fixtures: Vec::new(),
        }
    }

    /// A genuine webhook body (content type guessed: JSON if it parses, else
    /// a form) and how the provider signs it. Without a sample the verify and
    /// unknown-field checks are skipped.
    pub fn inbound(self, body: &[u8], sign: impl Fn(&mut InboundRequest) + 'static) -> Self {
        let content_type = if serde_json::from_slice::<serde_json::Value>(body).is_ok() {
            "application/json"
        } else {
            "application/x-www-form-urlencoded"
        };
        let sample = request(
            "POST",
            "https://gateway.example/webhooks/conformance",
            &[("content-type", content_type)],
            body,
        );
        self.inbound_request(sample, sign)
    }

    /// Like [`Conformance::inbound`] with a whole request (URL, headers) given.
    pub fn inbound_request(
        mut self,
        unsigned: InboundRequest,
        sign: impl Fn(&mut InboundRequest) + 'static,
    ) -> Self {
        self.sample = Some((unsigned, Box::new(sign)));
        self
    }

    /// Makes `resource` available to `verify` (signing keys the host fetches).
    pub fn resource(mut self, name: &str, value: serde_json::Value) -> Self {
        self.harness = self.harness.with_resource(name, value);
        self
    }

    /// The provider authenticates webhooks with a shared token, not a
    /// signature over the body: skip the tampered-body check.
    pub fn body_not_signed(mut self) -> Self {
        self.body_signed = false;
        self
    }

    /// The conversation id outbound messages go to, in the provider's format
    /// (a phone number, an address, a chat id).
    pub fn conversation(mut self, id: impl Into<String>) -> Self {
        self.conversation = id.into();
        self
    }

    /// Also run the golden inbound fixtures in `dir` (see [`fixtures`]).
    pub fn inbound_fixtures(
        mut self,
        dir: impl Into<PathBuf>,
        sign: impl Fn(&mut InboundRequest) + 'static,
    ) -> Self {
        self.inbound_fixtures.push((dir.into(), Box::new(sign)));
        self
    }

    /// Also run the golden outbound fixtures in `dir`.
    pub fn outbound_fixtures(mut self, dir: impl Into<PathBuf>) -> Self {
        self.outbound_fixtures.push(dir.into());
        self
    }

    /// Runs every check; a panic inside one is that check's failure.
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
        check("verify accepts the signed sample", &|| {
            self.accepts_sample()
        });
        check("verify refuses a missing signature", &|| {
            self.refuses_unsigned()
        });
        check("verify refuses a tampered body", &|| {
            self.refuses_tampered()
        });
        check("verify refuses a wrong signature or token", &|| {
            self.refuses_forgeries()
        });
        check("unknown inbound fields are tolerated", &|| {
            self.tolerates_unknown_fields()
        });
        for (kind, message) in self.outbound_kinds() {
            check(&format!("outbound {kind} renders"), &|| {
                self.renders(&message)
            });
        }
        for (dir, sign) in &self.inbound_fixtures {
            check(&format!("inbound fixtures in {}", dir.display()), &|| {
                fixtures::run_inbound(&self.harness, dir, sign);
                Outcome::Passed
            });
        }
        for dir in &self.outbound_fixtures {
            check(&format!("outbound fixtures in {}", dir.display()), &|| {
                fixtures::run_outbound(&self.harness, dir);
                Outcome::Passed
            });
        }
        report
    }

    fn manifest(&self) -> Outcome {
        let m = self.harness.adapter.manifest();
        let id_ok = !m.id.is_empty()
            && m.id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !id_ok {
            return fail(format!(
                "id {:?} must be non-empty lowercase letters, digits and '-'",
                m.id
            ));
        }
        if m.name.trim().is_empty() || m.version.trim().is_empty() {
            return fail("name and version must be set");
        }
        if m.wire.min > m.wire.max || !m.wire.contains(WIRE_VERSION) {
            return fail(format!(
                "wire range {}..={} must include wire version {WIRE_VERSION}",
                m.wire.min, m.wire.max
            ));
        }
        for (what, specs) in [("secret", &m.secrets), ("setting", &m.settings)] {
            let mut seen = BTreeSet::new();
            for spec in specs {
                if spec.name.is_empty() || !seen.insert(&spec.name) {
                    return fail(format!("{what} name {:?} is empty or repeated", spec.name));
                }
            }
        }
        let outbound = &m.capabilities.outbound;
        if outbound.max_text_length == Some(0) || outbound.max_text_bytes == Some(0) {
            return fail("an outbound text limit is 0");
        }
        let json = serde_json::to_string(&m).map_err(|e| e.to_string());
        match json.and_then(|j| {
            serde_json::from_str::<crate::adapter::Manifest>(&j).map_err(|e| e.to_string())
        }) {
            Ok(back) if back == m => Outcome::Passed,
            Ok(_) => fail("the manifest changes through JSON"),
            Err(e) => fail(format!(
                "the manifest does not round-trip through JSON: {e}"
            )),
        }
    }

    fn signed_sample(&self) -> Option<InboundRequest> {
        let (unsigned, sign) = self.sample.as_ref()?;
        let mut signed = unsigned.clone();
        sign(&mut signed);
        Some(signed)
    }

    fn accepts_sample(&self) -> Outcome {
        let Some(signed) = self.signed_sample() else {
            return no_sample();
        };
        match self.harness.verify(&signed) {
            Ok(_) => match self.parse(&signed) {
                Ok(_) => Outcome::Passed,
                Err(e) => fail(e),
            },
            Err(r) => fail(format!("refused with {}: {}", r.status, r.message)),
        }
    }

    fn refuses_unsigned(&self) -> Outcome {
        let Some((unsigned, _)) = &self.sample else {
            return no_sample();
        };
        refused(self.harness.verify(unsigned))
    }

    fn refuses_tampered(&self) -> Outcome {
        if !self.body_signed {
            return Outcome::Skipped("the provider does not sign the body".into());
        }
        let Some(mut tampered) = self.signed_sample() else {
            return no_sample();
        };
        if !tamper(&mut tampered.body) {
            return Outcome::Skipped("the sample body has no letter or digit to change".into());
        }
        refused(self.harness.verify(&tampered))
    }

    /// Each value the signer wrote — a header, the part of the URL or of the
    /// body it changed (a `?token=`, a signature field) — changed by one
    /// character, one at a time, must be refused.
    fn refuses_forgeries(&self) -> Outcome {
        let (Some((unsigned, _)), Some(signed)) = (&self.sample, self.signed_sample()) else {
            return no_sample();
        };
        let forgeries = forgeries(unsigned, &signed);
        if forgeries.is_empty() {
            return Outcome::Skipped("the signer changes nothing in the request".into());
        }
        for (what, forged) in forgeries {
            if let Outcome::Failed(why) = refused(self.harness.verify(&forged)) {
                return fail(format!("with a wrong {what}: {why}"));
            }
        }
        Outcome::Passed
    }

    fn tolerates_unknown_fields(&self) -> Outcome {
        let Some((unsigned, sign)) = &self.sample else {
            return no_sample();
        };
        let mut extended = unsigned.clone();
        match serde_json::from_slice::<serde_json::Value>(&unsigned.body) {
            Ok(serde_json::Value::Object(mut map)) => {
                map.insert(
                    "patchbay_conformance_unknown".into(),
                    serde_json::json!({"nested": [1, "two", null]}),
                );
                extended.body = serde_json::Value::Object(map).to_string().into_bytes();
            }
            Ok(_) => return Outcome::Skipped("the sample is not a JSON object".into()),
            Err(_) => extended
                .body
                .extend_from_slice(b"&PatchbayConformanceUnknown=1"),
        }
        sign(&mut extended);
        let Some(signed) = self.signed_sample() else {
            return no_sample();
        };
        if let Err(r) = self.harness.verify(&extended) {
            return fail(format!("refused with {}: {}", r.status, r.message));
        }
        match (self.parse(&signed), self.parse(&extended)) {
            (Ok(a), Ok(b)) if a == b => Outcome::Passed,
            (Ok(a), Ok(b)) => fail(format!("{a} messages without the field, {b} with it")),
            (_, Err(e)) | (Err(e), _) => fail(e),
        }
    }

    /// Parses `request` to the end (no provider calls answered) and checks
    /// each message's JSON round trip; returns how many messages.
    fn parse(&self, request: &InboundRequest) -> Result<usize, String> {
        let run = self.harness.inbound(request, vec![]);
        let messages = match &run.outcome {
            Ok(_) => run.messages().map_err(|e| e.to_string())?,
            // A parse that needs provider lookups stops at the first request.
            Err(_) if !run.requests.is_empty() => return Ok(0),
            Err(e) => return Err(format!("parse_inbound failed: {e}")),
        };
        for message in messages {
            let json = serde_json::to_string(message).map_err(|e| e.to_string())?;
            let back: Message = serde_json::from_str(&json).map_err(|e| e.to_string())?;
            if &back != message {
                return Err(format!("message changes through JSON: {json}"));
            }
        }
        Ok(messages.len())
    }

    /// One message per kind the manifest declares, built at its limits.
    fn outbound_kinds(&self) -> Vec<(String, Message)> {
        let caps = self.harness.adapter.manifest().capabilities.outbound;
        let limits = caps.limits;
        // ASCII text: as many bytes as characters.
        let text_len = match (caps.max_text_length, caps.max_text_bytes) {
            (Some(chars), Some(bytes)) => chars.min(bytes),
            (chars, bytes) => chars.or(bytes).unwrap_or(500),
        }
        .min(2000);
        let title_len = limits.max_title_length.unwrap_or(20).min(40);
        let title = |i: usize| {
            let t = format!("Option {}", i + 1);
            t.chars().take(title_len.max(1)).collect::<String>()
        };
        let buttons = limits.max_buttons.unwrap_or(3).clamp(1, 10);
        let choices = limits.max_choices.unwrap_or(5).clamp(1, 10);
        let cards = limits.max_cards.unwrap_or(3).clamp(1, 10);
        let mut kinds = vec![
            ("text".to_string(), Content::text(long_text(text_len))),
            (
                "text with unicode".to_string(),
                Content::text("Grüße 👋 — \"quoted\" <b>&amp;</b>"),
            ),
        ];
        if caps.has(Feature::RichText) {
            kinds.push((
                "markdown".into(),
                Content::Text {
                    text: "**bold** _italic_ [link](https://example.com)\n\n- one\n- two".into(),
                    format: TextFormat::Markdown,
                },
            ));
        }
        if caps.has(Feature::Typing) {
            kinds.push(("typing".into(), Content::Typing { active: true }));
        }
        if caps.has(Feature::Attachments) {
            kinds.push((
                "attachments".into(),
                Content::Attachments {
                    attachments: vec![Attachment {
                        url: "data:text/plain;base64,aGVsbG8=".into(),
                        filename: Some("hello.txt".into()),
                        content_type: Some("text/plain".into()),
                        size: Some(5),
                    }],
                    text: Some("A file".into()),
                },
            ));
        }
        for rich in &caps.rich_types {
            let content = match rich {
                RichType::Buttons => Content::Buttons {
                    text: "Choose".into(),
                    buttons: (0..buttons)
                        .map(|i| {
                            if i % 2 == 0 {
                                Button::postback(title(i), format!("P{i}"))
                            } else {
                                Button::link(title(i), "https://example.com/x")
                            }
                        })
                        .collect(),
                },
                RichType::ListPicker => Content::ListPicker {
                    title: "Pick one".into(),
                    items: (0..choices)
                        .map(|i| ListItem {
                            title: title(i),
                            subtitle: Some("subtitle".into()),
                            image_url: None,
                            payload: format!("P{i}"),
                        })
                        .collect(),
                },
                RichType::Carousel => Content::Carousel {
                    cards: (0..cards)
                        .map(|i| Card {
                            title: title(i),
                            subtitle: Some("subtitle".into()),
                            image_url: Some("https://example.com/i.png".into()),
                            buttons: vec![Button::postback(title(0), format!("C{i}"))],
                        })
                        .collect(),
                },
                RichType::QuickReplies => Content::QuickReplies {
                    text: "Quick?".into(),
                    replies: (0..choices)
                        .map(|i| QuickReply {
                            title: title(i),
                            payload: format!("Q{i}"),
                        })
                        .collect(),
                },
                RichType::TimePicker => Content::TimePicker {
                    title: "When?".into(),
                    slots: (0..choices)
                        .map(|i| TimeSlot {
                            start: format!("2026-11-2{}T10:00:00Z", i % 10),
                            duration_minutes: Some(30),
                            payload: Some(format!("T{i}")),
                        })
                        .collect(),
                    timezone: Some("UTC".into()),
                },
                RichType::RichLink => Content::RichLink {
                    url: "https://example.com/article".into(),
                    title: "An article".into(),
                    image_url: Some("https://example.com/i.png".into()),
                    description: Some("About it".into()),
                },
            };
            kinds.push((rich.as_str().replace('_', " "), content));
        }
        kinds.push((
            "end of session".into(),
            Content::EndSession {
                reason: Some("agent".into()),
            },
        ));
        kinds
            .into_iter()
            .map(|(kind, content)| {
                let mut message = Message::new(self.conversation.clone(), content);
                message.id = "pb-conformance-1".into();
                message.channel = "conformance".into();
                (kind, message)
            })
            .collect()
    }

    fn renders(&self, message: &Message) -> Outcome {
        let step = self
            .harness
            .adapter
            .render_outbound(message, self.harness.now);
        match step {
            Step::Done { .. } => Outcome::Passed,
            Step::Fail { error } if error.class() == ErrorClass::Transient => Outcome::Passed,
            Step::Fail { error } => fail(format!("refused: {error}")),
            Step::Request { request, .. } => well_formed(&request),
        }
    }
}

fn well_formed(request: &RequestSpec) -> Outcome {
    match request {
        RequestSpec::Http(http) => {
            // The host answers GETs of `data:` URLs itself.
            let data = http.method == "GET" && crate::url::decode_data_url(&http.url).is_some();
            let url_ok =
                data || http.url.starts_with("https://") || http.url.starts_with("http://");
            if !url_ok || http.method.is_empty() {
                fail(format!("malformed request {} {}", http.method, http.url))
            } else {
                Outcome::Passed
            }
        }
        RequestSpec::Smtp(smtp) => {
            if smtp.to.is_empty() || smtp.message.is_empty() {
                fail("an SMTP request without recipients or message")
            } else {
                Outcome::Passed
            }
        }
        RequestSpec::Outbox(push) => {
            if push.conversation.is_empty() || push.body.is_empty() {
                fail("an outbox entry without conversation or body")
            } else {
                Outcome::Passed
            }
        }
    }
}

fn long_text(chars: usize) -> String {
    let words = "Patchbay conformance text, long enough to reach the declared limit. ";
    words.chars().cycle().take(chars.max(1)).collect()
}

/// Changes one letter or digit in the second half of `body`, keeping JSON
/// and forms well-formed so the signature is what fails.
fn tamper(body: &mut [u8]) -> bool {
    let start = body.len() / 2;
    let Some(i) = (start..body.len())
        .chain(0..start)
        .find(|&i| body[i].is_ascii_alphanumeric())
    else {
        return false;
    };
    body[i] = match body[i] {
        b'z' => b'a',
        b'Z' => b'A',
        b'9' => b'0',
        other => other + 1,
    };
    true
}

/// The signed request with one of the signer's values changed, for each value.
fn forgeries(unsigned: &InboundRequest, signed: &InboundRequest) -> Vec<(String, InboundRequest)> {
    let mut out = Vec::new();
    for (i, (name, value)) in signed.headers.iter().enumerate() {
        if unsigned
            .headers
            .iter()
            .any(|(n, v)| n == name && v == value)
        {
            continue;
        }
        let mut bytes = value.clone().into_bytes();
        if tamper(&mut bytes) {
            let mut forged = signed.clone();
            forged.headers[i].1 = String::from_utf8_lossy(&bytes).into_owned();
            out.push((format!("`{name}` header"), forged));
        }
    }
    let mut url = signed.url.clone().into_bytes();
    if let Some(span) = changed_span(unsigned.url.as_bytes(), &url)
        && tamper(&mut url[span])
    {
        let mut forged = signed.clone();
        forged.url = String::from_utf8_lossy(&url).into_owned();
        out.push(("token in the URL".into(), forged));
    }
    let mut body = signed.body.clone();
    if let Some(span) = changed_span(&unsigned.body, &body)
        && tamper(&mut body[span])
    {
        let mut forged = signed.clone();
        forged.body = body;
        out.push(("signature or token in the body".into(), forged));
    }
    out
}

/// Where `after` differs from `before`: the bytes between their common
/// prefix and common suffix, if any.
fn changed_span(before: &[u8], after: &[u8]) -> Option<std::ops::Range<usize>> {
    let prefix = before.iter().zip(after).take_while(|(a, b)| a == b).count();
    let room = before.len().min(after.len()) - prefix;
    let suffix = before
        .iter()
        .rev()
        .zip(after.iter().rev())
        .take(room)
        .take_while(|(a, b)| a == b)
        .count();
    let span = prefix..after.len() - suffix;
    (!span.is_empty()).then_some(span)
}

fn refused(verdict: Result<crate::adapter::Verdict, crate::error::Rejection>) -> Outcome {
    match verdict {
        Err(r) if r.status == 401 || r.status == 403 => Outcome::Passed,
        Err(r) => fail(format!(
            "refused with {} ({}); expected 401 or 403",
            r.status, r.message
        )),
        Ok(_) => fail("accepted"),
    }
}

fn no_sample() -> Outcome {
    Outcome::Skipped("no inbound sample given (Conformance::inbound)".into())
}

fn fail(message: impl Into<String>) -> Outcome {
    Outcome::Failed(message.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;
    use crate::signature::{hmac_sha256_hex, verify_hex};

    /// `careless` accepts anything and panics on buttons; otherwise it is sound.
    struct Toy {
        careless: bool,
    }

    impl ChannelAdapter for Toy {
        fn manifest(&self) -> Manifest {
            let mut outbound = DirectionCapabilities::plain_text(100);
            outbound.rich_types = [RichType::Buttons].into();
            Manifest::new(
                if self.careless { "Toy Adapter" } else { "toy" },
                "Toy",
                "0.1.0",
                ChannelCapabilities {
                    inbound: DirectionCapabilities::plain_text(100),
                    outbound,
                },
            )
        }

        fn verify(
            &self,
            r: &InboundRequest,
            _: Timestamp,
            _: &Resources,
        ) -> Result<Verdict, Rejection> {
            if self.careless {
                return Ok(Verdict::accept(None));
            }
            let sig = r
                .header("x-sig")
                .ok_or_else(|| Rejection::unauthorized("missing x-sig"))?;
            if !verify_hex(sig, &hmac_sha256_hex(b"key", &r.body)) {
                return Err(Rejection::unauthorized("bad signature"));
            }
            Ok(Verdict::accept(None))
        }

        fn parse_inbound(&self, r: &InboundRequest, _: Timestamp) -> Step {
            let Ok(body) = serde_json::from_slice::<serde_json::Value>(&r.body) else {
                return Step::fail(AdapterError::bad_input("not JSON"));
            };
            let text = body["text"].as_str().unwrap_or_default();
            Step::messages(vec![Message::new("c", Content::text(text))])
        }

        fn render_outbound(&self, m: &Message, _: Timestamp) -> Step {
            if self.careless && matches!(m.content, Content::Buttons { .. }) {
                panic!("buttons are hard");
            }
            Step::delivered(None)
        }
    }

    fn kit(careless: bool) -> Report {
        Conformance::new(Toy { careless }, 1_700_000_000_000)
            .inbound(br#"{"text":"hello world"}"#, |r: &mut InboundRequest| {
                let sig = hmac_sha256_hex(b"key", &r.body);
                r.headers.push(("x-sig".into(), sig));
            })
            .run()
    }

    #[test]
    fn a_sound_adapter_passes_every_check() {
        let report = kit(false);
        report.assert_passed();
        assert!(report.checks.len() >= 8, "{report}");
    }

    #[test]
    fn a_careless_adapter_fails_exactly_where_it_is_careless() {
        let report = kit(true);
        let failed: Vec<&str> = report
            .failures()
            .iter()
            .map(|(name, _)| name.as_str())
            .collect();
        assert_eq!(
            failed,
            [
                "manifest is valid",
                "verify refuses a missing signature",
                "verify refuses a tampered body",
                "verify refuses a wrong signature or token",
                "outbound buttons renders",
            ],
            "{report}"
        );
        assert!(report.to_string().contains("panicked: buttons are hard"));
    }

    /// Checks that a token is present in the body, not that it is right.
    struct PresenceOnly;

    impl ChannelAdapter for PresenceOnly {
        fn manifest(&self) -> Manifest {
            Toy { careless: false }.manifest()
        }
        fn verify(
            &self,
            r: &InboundRequest,
            _: Timestamp,
            _: &Resources,
        ) -> Result<Verdict, Rejection> {
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
            match body["token"].as_str() {
                Some(_) => Ok(Verdict::accept(None)),
                None => Err(Rejection::unauthorized("missing token")),
            }
        }
        fn parse_inbound(&self, r: &InboundRequest, now: Timestamp) -> Step {
            Toy { careless: false }.parse_inbound(r, now)
        }
        fn render_outbound(&self, _: &Message, _: Timestamp) -> Step {
            Step::delivered(None)
        }
    }

    #[test]
    fn an_adapter_that_accepts_any_token_fails() {
        let report = Conformance::new(PresenceOnly, 1_700_000_000_000)
            .inbound(br#"{"text":"hello world"}"#, |r: &mut InboundRequest| {
                let mut body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                body["token"] = "s3cret-shared-token".into();
                r.body = body.to_string().into_bytes();
            })
            .body_not_signed()
            .run();
        let failed: Vec<&str> = report.failures().iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            failed,
            ["verify refuses a wrong signature or token"],
            "{report}"
        );
        assert!(report.to_string().contains("token in the body"), "{report}");
    }

    #[test]
    fn the_changed_span_is_what_the_signer_wrote() {
        assert_eq!(changed_span(b"/hook", b"/hook?token=abc"), Some(5..15));
        assert_eq!(changed_span(b"a=1&b=2", b"a=1&sig=xy&b=2"), Some(4..11));
        assert_eq!(changed_span(b"same", b"same"), None);
    }

    #[test]
    fn tampering_keeps_the_body_well_formed() {
        let mut body = br#"{"text":"hello world"}"#.to_vec();
        assert!(tamper(&mut body));
        assert_ne!(body, br#"{"text":"hello world"}"#);
        assert!(serde_json::from_slice::<serde_json::Value>(&body).is_ok());
        assert!(!tamper(&mut b"{}".to_vec()));
    }
}
