//! Golden fixtures for the DMS connector, both directions, and the token
//! matrix Pega's own SDK checks.

use std::path::Path;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use patchbay_plugin_sdk::prelude::*;
use patchbay_plugin_sdk::testkit::PlatformHarness;
use patchbay_plugin_sdk::testkit::conformance::UpstreamConformance;
use patchbay_plugin_sdk::upstream::{Delivery, PlatformEvent, UpstreamConnector, UpstreamFactory};
use patchbay_upstream_pega_dms::PegaDmsFactory;
use serde_json::{Value, json};

const NOW_MS: i64 = 1_763_719_200_000;
const SECRET: &str = "dms-jwt-secret";
const CONNECTION: &str = "conn-123";
const CUSTOMER: &str = "teams:a:1";

fn connector() -> Box<dyn UpstreamConnector> {
    PegaDmsFactory
        .create(&ChannelConfig {
            channel: "pega".into(),
            webhook_url: "https://gw.example/upstreams/pega/webhook".into(),
            settings: json!({"dms_url": "https://incoming.dms.example/messages", "connection_id": CONNECTION}),
            secrets: [("jwt_secret".to_string(), Secret::new(SECRET))].into(),
        })
        .expect("config")
}

fn harness() -> PlatformHarness<Box<dyn UpstreamConnector>> {
    PlatformHarness::new(connector(), NOW_MS)
}

fn token(iss: &str, iat_secs: i64, secret: &str, alg: Algorithm) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        &json!({"iss": iss, "iat": iat_secs}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

fn call(body: &[u8], token: &str) -> InboundRequest {
    InboundRequest {
        method: "POST".into(),
        url: "https://gw.example/upstreams/pega/webhook".into(),
        headers: vec![("authorization".into(), format!("Bearer {token}"))],
        body: body.to_vec(),
    }
}

fn good_token() -> String {
    token(CONNECTION, NOW_MS / 1000 - 10, SECRET, Algorithm::HS256)
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .expect(name)
}

fn decoded(name: &str) -> (String, Message) {
    let events = harness()
        .webhook(&call(&fixture(name), &good_token()))
        .expect(name);
    match events.as_slice() {
        [
            PlatformEvent::Message {
                customer, message, ..
            },
        ] => (customer.clone(), (**message).clone()),
        other => panic!("{name}: one message expected, got {other:?}"),
    }
}

#[test]
fn dms_calls_decode_to_canonical_content() {
    let cases = [
        (
            "text_with_attachment.json",
            Content::Attachments {
                attachments: vec![Attachment {
                    url: "https://dms.example/files/form.pdf".into(),
                    filename: Some("form.pdf".into()),
                    content_type: Some("application/pdf".into()),
                    size: Some(2048),
                }],
                text: Some("Here is the form\nFill it in please".into()),
            },
        ),
        (
            "menu.json",
            Content::ListPicker {
                title: "How can we help?".into(),
                items: vec![
                    ListItem {
                        title: "Billing".into(),
                        subtitle: None,
                        image_url: Some("https://dms.example/b.png".into()),
                        payload: "BILLING".into(),
                    },
                    ListItem {
                        title: "Support".into(),
                        subtitle: None,
                        image_url: None,
                        payload: "SUPPORT".into(),
                    },
                ],
            },
        ),
        (
            "link_button.json",
            Content::Buttons {
                text: "Track your order".into(),
                buttons: vec![Button::link("Open", "https://shop.example/o/1")],
            },
        ),
        (
            "carousel.json",
            Content::Carousel {
                cards: vec![
                    Card {
                        title: "Plan A".into(),
                        subtitle: Some("cheap".into()),
                        image_url: Some("https://dms.example/a.png".into()),
                        buttons: vec![Button::postback("Choose A", "A")],
                    },
                    Card {
                        title: "Plan B".into(),
                        buttons: vec![Button::link("Details", "https://shop.example/b")],
                        ..Card::default()
                    },
                ],
            },
        ),
        ("typing.json", Content::Typing { active: true }),
        ("end_session.json", Content::EndSession { reason: None }),
        ("wait_time.json", Content::text("Estimated wait: 5")),
    ];
    for (name, content) in cases {
        let (customer, message) = decoded(name);
        assert_eq!(customer, CUSTOMER, "{name}");
        assert_eq!(message.content, content, "{name}");
        message.content.validate().expect(name);
    }
    let (_, text) = decoded("text_with_attachment.json");
    assert_eq!(text.sender.and_then(|s| s.name).as_deref(), Some("Ann"));
}

#[test]
fn accepted_calls_are_answered_success_and_unknown_types_ignored() {
    let h = harness();
    let verdict = h
        .verify(&call(&fixture("menu.json"), &good_token()))
        .expect("verify");
    assert_eq!(verdict.ack.body, b"success");
    assert_eq!(verdict.dedupe_key.as_deref(), Some("dms-2"));
    let unknown = br#"{"type": "survey", "customer_id": "teams:a:1"}"#;
    assert_eq!(h.webhook(&call(unknown, &good_token())), Ok(vec![]));
}

#[test]
fn the_token_matrix_is_refused_with_403() {
    let h = harness();
    let body = fixture("typing.json");
    let now = NOW_MS / 1000;
    for (what, token) in [
        (
            "expired",
            token(CONNECTION, now - 301, SECRET, Algorithm::HS256),
        ),
        (
            "from the future",
            token(CONNECTION, now + 120, SECRET, Algorithm::HS256),
        ),
        (
            "wrong issuer",
            token("other", now, SECRET, Algorithm::HS256),
        ),
        (
            "wrong secret",
            token(CONNECTION, now, "other-secret", Algorithm::HS256),
        ),
        ("HS512", token(CONNECTION, now, SECRET, Algorithm::HS512)),
        (
            "alg none",
            format!(
                "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
                patchbay_plugin_sdk::signature::base64_encode(
                    format!(r#"{{"iss":"{CONNECTION}","iat":{now}}}"#).as_bytes()
                )
                .trim_end_matches('=')
            ),
        ),
    ] {
        let refused = h.verify(&call(&body, &token)).expect_err(what);
        assert_eq!(refused.status, 403, "{what}");
    }
    let mut unsigned = call(&body, "x");
    unsigned.headers.clear();
    assert_eq!(h.verify(&unsigned).expect_err("no token").status, 403);
    // A fresh token at the edge of the window is still accepted.
    let edge = token(CONNECTION, now - 300, SECRET, Algorithm::HS256);
    h.verify(&call(&body, &edge)).expect("300 s old");
}

fn customer_message(content: Content) -> Message {
    let mut m = Message::new("a:1", content);
    m.id = "0190163d-8694-739b-aea5-966c26f8ad91".into();
    m.channel = "teams".into();
    m.sender = Some(Participant {
        id: "29:1".into(),
        name: Some("Ada".into()),
    });
    m
}

/// The one request a delivery makes: its JSON body and its token's claims.
fn sent(content: Content) -> Option<(Value, Value)> {
    let run = harness().deliver(
        &Delivery::new(CUSTOMER, customer_message(content)),
        vec![ProviderResponse {
            status: 200,
            headers: vec![],
            body: vec![],
        }],
    );
    assert!(run.outcome.is_ok(), "{:?}", run.outcome);
    let RequestSpec::Http(request) = run.requests.first()? else {
        panic!("HTTP")
    };
    assert_eq!(request.url, "https://incoming.dms.example/messages");
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("connection_id").as_deref(), Some(CONNECTION));
    let bearer = header("authorization").expect("authorization");
    let token = bearer.strip_prefix("Bearer ").expect("bearer");
    let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
    validation.validate_exp = false;
    validation.required_spec_claims = Default::default();
    let claims = jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()),
        &validation,
    )
    .expect("a token DMS accepts")
    .claims;
    Some((serde_json::from_slice(&request.body).expect("json"), claims))
}

#[test]
fn customer_messages_go_to_dms_with_a_fresh_token() {
    let (body, claims) = sent(Content::text("hello")).expect("a request");
    assert_eq!(claims, json!({"iss": CONNECTION, "iat": NOW_MS / 1000}));
    assert_eq!(
        body,
        json!({"type": "text", "customer_id": CUSTOMER, "customer_name": "Ada",
               "message_id": "0190163d-8694-739b-aea5-966c26f8ad91", "text": ["hello"]})
    );
    let (postback, _) = sent(Content::Postback {
        payload: "BILLING".into(),
        text: Some("Billing".into()),
    })
    .expect("a request");
    assert_eq!(postback["postback"], json!("BILLING"));
    assert_eq!(postback["text"], json!(["Billing"]));
    let (files, _) = sent(Content::Attachments {
        attachments: vec![Attachment {
            url: "https://files.example/a.png".into(),
            ..Attachment::default()
        }],
        text: None,
    })
    .expect("a request");
    assert_eq!(
        files["attachments"],
        json!([{"url": "https://files.example/a.png"}])
    );
    assert_eq!(files["text"], json!([]));
    let (typing, _) = sent(Content::Typing { active: true }).expect("a request");
    assert_eq!(
        typing,
        json!({"type": "typing_indicator", "customer_id": CUSTOMER})
    );
    let (end, _) = sent(Content::EndSession { reason: None }).expect("a request");
    assert_eq!(
        end,
        json!({"type": "customer_end_session", "customer_id": CUSTOMER})
    );
    let (context, _) = sent(Content::ContextData {
        data: [("tier".to_string(), json!("gold"))].into(),
    })
    .expect("a request");
    assert_eq!(context["context_data"], json!({"tier": "gold"}));
}

#[test]
fn no_receipts_in_dms_but_a_failure_is_told_in_the_conversation() {
    let failed =
        DeliveryReceipt::failed("p-1", ReasonCode::INVALID_DESTINATION, "user left the team");
    let (body, _) = sent(Content::Receipt(failed)).expect("a request");
    assert_eq!(body["type"], json!("text"));
    assert_eq!(
        body["text"],
        json!(["[Patchbay] A message could not be delivered to the customer: user left the team"])
    );
    assert_eq!(
        sent(Content::Receipt(DeliveryReceipt::delivered("p-2"))),
        None
    );
}

#[test]
fn the_connector_passes_the_conformance_kit() {
    UpstreamConformance::new(connector(), NOW_MS)
        .webhook(&fixture("menu.json"), |r| {
            let token = good_token();
            r.headers
                .push(("Authorization".into(), format!("Bearer {token}")));
        })
        // The token covers the caller, not the body.
        .body_not_signed()
        .answer(200, "")
        .run()
        .assert_passed();
}

#[test]
fn a_failure_notice_from_the_host_is_told_in_the_channels_words() {
    let failed = DeliveryReceipt::failed("p-1", ReasonCode::INVALID_DESTINATION, "gone");
    let delivery = Delivery::new(CUSTOMER, customer_message(Content::Receipt(failed))).with_notice(
        Some("Message could not be delivered. Please try again after some time.".into()),
    );
    let run = harness().deliver(
        &delivery,
        vec![ProviderResponse {
            status: 200,
            headers: vec![],
            body: vec![],
        }],
    );
    let RequestSpec::Http(request) = &run.requests[0] else {
        panic!("HTTP")
    };
    let body: Value = serde_json::from_slice(&request.body).expect("json");
    assert_eq!(
        body["text"],
        json!(["Message could not be delivered. Please try again after some time."])
    );
}
