//! Golden fixtures for the Open Messaging connector, both directions:
//! Genesys Cloud's webhook bodies in, the exact requests out.

use std::path::Path;

use patchbay_plugin_sdk::driver::{Driver, Next};
use patchbay_plugin_sdk::prelude::*;
use patchbay_plugin_sdk::signature::{base64_encode, hmac_sha256};
use patchbay_plugin_sdk::testkit::conformance::UpstreamConformance;
use patchbay_plugin_sdk::upstream::{Delivery, PlatformEvent, UpstreamConnector, UpstreamFactory};
use patchbay_upstream_genesys_cloud::OpenMessagingFactory;
use serde_json::{Value, json};

const NOW: Timestamp = Timestamp(1_763_719_200_000);
const CLOUD_SECRET: &str = "open-messaging-webhook-secret";

fn fixture(path: &str) -> Vec<u8> {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

fn config(settings: Value, secrets: &[(&str, &str)]) -> ChannelConfig {
    ChannelConfig {
        channel: "genesys".into(),
        webhook_url: "https://gw.example/upstreams/genesys/webhook".into(),
        settings,
        secrets: secrets
            .iter()
            .map(|(k, v)| (k.to_string(), Secret::new(*v)))
            .collect(),
    }
}

fn open_messaging() -> Box<dyn UpstreamConnector> {
    OpenMessagingFactory
        .create(&config(
            json!({"api_url": "https://api.mypurecloud.test", "login_url": "https://login.mypurecloud.test/oauth/token",
                   "integration_id": "integration-1", "client_id": "client-1"}),
            &[("client_secret", "client-secret"), ("webhook_secret", CLOUD_SECRET)],
        ))
        .expect("config")
}

fn webhook(headers: &[(&str, &str)], body: &[u8]) -> InboundRequest {
    InboundRequest {
        method: "POST".into(),
        url: "https://gw.example/upstreams/genesys/webhook".into(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.to_vec(),
    }
}

fn cloud_webhook(body: &[u8]) -> InboundRequest {
    let signature = format!(
        "sha256={}",
        base64_encode(&hmac_sha256(CLOUD_SECRET.as_bytes(), body))
    );
    webhook(&[("x-hub-signature-256", &signature)], body)
}

/// The one message a webhook decodes to.
fn decoded(connector: &dyn UpstreamConnector, request: &InboundRequest) -> (String, Message) {
    connector.verify(request, NOW).expect("verify accepts");
    let events = connector.decode(request, NOW).expect("decode");
    match events.as_slice() {
        [
            PlatformEvent::Message {
                customer, message, ..
            },
        ] => (customer.clone(), (**message).clone()),
        other => panic!("expected one message, got {other:?}"),
    }
}

/// The requests a delivery makes, answering each with `answers` in turn.
fn deliver(
    connector: &dyn UpstreamConnector,
    delivery: &Delivery,
    answers: &[(u16, &str)],
) -> (Vec<HttpRequestSpec>, Result<StepOutput, AdapterError>) {
    let mut driver = Driver::new(connector.deliver(delivery, NOW));
    let mut requests = Vec::new();
    let mut answers = answers.iter();
    loop {
        match driver.advance() {
            Next::Request { request, .. } => {
                let RequestSpec::Http(http) = request else {
                    panic!("HTTP only")
                };
                requests.push(http);
                let (status, body) = answers.next().expect("an answer for each request");
                let response = ProviderResponse {
                    status: *status,
                    headers: vec![],
                    body: body.as_bytes().to_vec(),
                };
                driver.resume_with(|c| connector.resume(c, response, NOW));
            }
            Next::Finished(outcome) => return (requests, outcome),
        }
    }
}

fn header<'a>(request: &'a HttpRequestSpec, name: &str) -> Option<&'a str> {
    request
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn body(request: &HttpRequestSpec) -> Value {
    serde_json::from_slice(&request.body).expect("JSON body")
}

fn customer_message(channel: &str, content: Content) -> Message {
    let mut m = Message::new("+16504661149", content);
    m.id = "0190163d-8694-739b-aea5-966c26f8ad91".into();
    m.channel = channel.into();
    m.sender = Some(Participant {
        id: "+16504661149".into(),
        name: Some("Ada".into()),
    });
    m.trace.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
    m
}

// ---- Open Messaging ----

#[test]
fn open_messaging_webhooks_decode_to_canonical_content() {
    let connector = open_messaging();
    let cases: Vec<(&str, &str, Content)> = vec![
        (
            "text_webhook.json",
            "sms-main:+15550001",
            Content::text("How can I help?"),
        ),
        (
            "quick_replies_webhook.json",
            "sms-main:+15550001",
            Content::QuickReplies {
                text: "Which one?".into(),
                replies: vec![
                    QuickReply {
                        title: "Billing".into(),
                        payload: "billing".into(),
                    },
                    QuickReply {
                        title: "Support".into(),
                        payload: "support".into(),
                    },
                ],
            },
        ),
        (
            "card_webhook.json",
            "slack-main:C1#1700000000.0001",
            Content::Buttons {
                text: "Your order\nShipped".into(),
                buttons: vec![
                    Button::postback("Track", "track"),
                    Button::link("Open", "https://shop.example/o/1"),
                ],
            },
        ),
        (
            "carousel_webhook.json",
            "slack-main:C1",
            Content::Carousel {
                cards: vec![
                    Card {
                        title: "A".into(),
                        buttons: vec![Button::postback("Pick A", "a")],
                        ..Card::default()
                    },
                    Card {
                        title: "B".into(),
                        subtitle: Some("second".into()),
                        buttons: vec![Button::postback("Pick B", "b")],
                        ..Card::default()
                    },
                ],
            },
        ),
        (
            "date_picker_webhook.json",
            "sms-main:+15550001",
            Content::TimePicker {
                title: "Pick a time".into(),
                slots: vec![
                    TimeSlot {
                        start: "2026-11-22T09:00:00.000Z".into(),
                        duration_minutes: Some(30),
                        payload: None,
                    },
                    TimeSlot {
                        start: "2026-11-22T10:00:00.000Z".into(),
                        duration_minutes: Some(30),
                        payload: None,
                    },
                ],
                timezone: None,
            },
        ),
        (
            "attachment_webhook.json",
            "sms-main:+15550001",
            Content::Attachments {
                attachments: vec![Attachment {
                    url: "https://api.mypurecloud.com/media/m1".into(),
                    filename: Some("form.pdf".into()),
                    content_type: Some("application/pdf".into()),
                    size: Some(1024),
                }],
                text: Some("Here is the form".into()),
            },
        ),
        (
            "typing_webhook.json",
            "sms-main:+15550001",
            Content::Typing { active: true },
        ),
    ];
    for (file, customer, content) in cases {
        let request = cloud_webhook(&fixture(&format!("open_messaging/{file}")));
        let (got_customer, message) = decoded(connector.as_ref(), &request);
        assert_eq!(got_customer, customer, "{file}");
        assert_eq!(message.content, content, "{file}");
        message.content.validate().expect(file);
    }
    let (_, text) = decoded(
        connector.as_ref(),
        &cloud_webhook(&fixture("open_messaging/text_webhook.json")),
    );
    assert_eq!(
        text.sender.and_then(|s| s.name).as_deref(),
        Some("Agent Smith"),
        "nickName is read too"
    );
}

#[test]
fn open_messaging_receipts_come_back_with_numeric_reasons() {
    let connector = open_messaging();
    let request = cloud_webhook(&fixture("open_messaging/receipt_webhook.json"));
    connector.verify(&request, NOW).expect("verify");
    let events = connector.decode(&request, NOW).expect("decode");
    let [PlatformEvent::Receipt { receipt, .. }] = events.as_slice() else {
        panic!("one receipt: {events:?}")
    };
    assert_eq!(receipt.status, ReceiptStatus::Failed);
    assert_eq!(receipt.reasons[0].code, ReasonCode::RATE_LIMITED);
}

#[test]
fn open_messaging_verifies_base64_sha256_over_the_raw_body() {
    let connector = open_messaging();
    let body = fixture("open_messaging/text_webhook.json");
    let good = cloud_webhook(&body);
    assert_eq!(
        connector
            .verify(&good, NOW)
            .expect("verify")
            .dedupe_key
            .as_deref(),
        Some("5f2a8e9d4c1b3a7e6d0f9c8b7a6e5d4c")
    );
    let mut tampered = good.clone();
    tampered.body[10] ^= 1;
    assert_eq!(connector.verify(&tampered, NOW).unwrap_err().status, 401);
    let wrong_key = webhook(
        &[(
            "x-hub-signature-256",
            &format!("sha256={}", base64_encode(&hmac_sha256(b"other", &body))),
        )],
        &body,
    );
    assert_eq!(connector.verify(&wrong_key, NOW).unwrap_err().status, 401);
}

#[test]
fn open_messaging_customer_messages_typing_answers_and_receipts() {
    let connector = open_messaging();
    let base =
        "https://api.mypurecloud.test/api/v2/conversations/messages/integration-1/inbound/open";
    let customer = "sms-main:+15550001";

    let text = Delivery::new(customer, customer_message("sms-main", Content::text("hi")));
    let (requests, outcome) = deliver(connector.as_ref(), &text, &[(200, r#"{"id":"gc-1"}"#)]);
    assert_eq!(requests[0].url, format!("{base}/message"));
    assert_eq!(requests[0].auth_profile.as_deref(), Some("oauth"));
    assert_eq!(
        body(&requests[0]),
        json!({
            "channel": {
                "messageId": "0190163d-8694-739b-aea5-966c26f8ad91",
                "time": "2024-06-14T10:14:09.300Z",
                "from": {"id": customer, "idType": "Opaque", "nickname": "Ada"}
            },
            "text": "hi"
        })
    );
    assert_eq!(
        outcome.expect("ok"),
        StepOutput::Delivered {
            provider_message_id: Some("gc-1".into())
        }
    );

    let answer = Delivery::new(
        customer,
        customer_message(
            "sms-main",
            Content::Postback {
                payload: "support".into(),
                text: Some("2".into()),
            },
        ),
    )
    .referring_to(Some("qr-1".into()));
    let (requests, _) = deliver(connector.as_ref(), &answer, &[(200, r#"{"id":"gc-2"}"#)]);
    assert_eq!(requests[0].url, format!("{base}/structured/response"));
    let sent = body(&requests[0]);
    assert_eq!(sent["originatingMessageId"], json!("qr-1"));
    assert_eq!(
        sent["buttonResponse"],
        json!({"type": "QuickReply", "text": "2", "payload": "support"})
    );

    let typing = Delivery::new(
        customer,
        customer_message("sms-main", Content::Typing { active: true }),
    );
    let (requests, _) = deliver(connector.as_ref(), &typing, &[(202, "")]);
    assert_eq!(requests[0].url, format!("{base}/event"));
    assert_eq!(
        body(&requests[0])["events"],
        json!([{"eventType": "Typing", "typing": {"type": "On"}}])
    );

    let failed = DeliveryReceipt::failed("pb-7", ReasonCode::RATE_LIMITED, "slow");
    let receipt = Delivery::new(
        customer,
        customer_message("sms-main", Content::Receipt(failed)),
    )
    .referring_to(Some("gc-out-7".into()));
    let (requests, _) = deliver(connector.as_ref(), &receipt, &[(202, "")]);
    assert_eq!(requests[0].url, format!("{base}/receipt"));
    let sent = body(&requests[0]);
    assert_eq!(sent["id"], json!("gc-out-7"));
    assert_eq!(sent["status"], json!("Failed"));
    assert_eq!(
        sent["reasons"],
        json!([{"code": "RateLimited", "message": "slow"}])
    );
}

#[test]
fn open_messaging_asks_for_a_token_with_client_credentials() {
    let connector = open_messaging();
    let RequestSpec::Http(request) = connector.token_request("oauth", NOW).expect("token") else {
        panic!("http")
    };
    assert_eq!(request.url, "https://login.mypurecloud.test/oauth/token");
    assert_eq!(
        header(&request, "authorization"),
        Some(format!("Basic {}", base64_encode(b"client-1:client-secret")).as_str())
    );
    let token = connector
        .token_response(
            "oauth",
            ProviderResponse {
                status: 200,
                headers: vec![],
                body: br#"{"access_token":"t-1","token_type":"bearer","expires_in":86400}"#
                    .to_vec(),
            },
            NOW,
        )
        .expect("token");
    assert_eq!(token.token.expose(), "t-1");
}

#[test]
fn settings_and_secrets_at_fault_are_named() {
    let bad_url = OpenMessagingFactory
        .create(&config(
            json!({"api_url": "ftp://x", "login_url": "https://l", "integration_id": "i", "client_id": "c"}),
            &[("client_secret", "s"), ("webhook_secret", "w")],
        ))
        .err()
        .expect("refused");
    assert_eq!(bad_url.key, "settings.api_url");
}

#[test]
fn the_connector_passes_the_conformance_kit() {
    for file in [
        "text_webhook.json",
        "quick_replies_webhook.json",
        "receipt_webhook.json",
    ] {
        UpstreamConformance::new(open_messaging(), NOW.0)
            .webhook(&fixture(&format!("open_messaging/{file}")), |r| {
                let digest = hmac_sha256(CLOUD_SECRET.as_bytes(), &r.body);
                r.headers.push((
                    "X-Hub-Signature-256".into(),
                    format!("sha256={}", base64_encode(&digest)),
                ));
            })
            .answer(200, r#"{"id":"gc-1"}"#)
            .run()
            .assert_passed();
    }
}
