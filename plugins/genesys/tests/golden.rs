//! Golden fixtures for both Genesys connectors, both directions: the
//! platforms' documented webhook bodies in, the exact requests out.

use std::path::Path;

use patchbay_plugin_sdk::driver::{Driver, Next};
use patchbay_plugin_sdk::prelude::*;
use patchbay_plugin_sdk::signature::{base64_encode, hmac_sha1_hex, hmac_sha256};
use patchbay_plugin_sdk::upstream::{Delivery, PlatformEvent, UpstreamConnector, UpstreamFactory};
use patchbay_upstream_genesys::{MulticloudFactory, OpenMessagingFactory};
use serde_json::{Value, json};

const NOW: Timestamp = Timestamp(1_763_719_200_000);
const SIGNING: &str = "channel-secret";
const APP_SECRET: &str = "app-secret";
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

fn multicloud() -> Box<dyn UpstreamConnector> {
    MulticloudFactory
        .create(&config(
            json!({"api_url": "https://genesys.example/nexus/v3", "ccid": "ccid-1",
                   "channel_id": "sms-channel", "channel_ids": {"mail": "company.com"}}),
            &[("signing_secret", SIGNING), ("webhook_secret", APP_SECRET)],
        ))
        .expect("config")
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

fn multicloud_webhook(body: &[u8]) -> InboundRequest {
    let signature = format!("sha1={}", hmac_sha1_hex(APP_SECRET.as_bytes(), body));
    webhook(
        &[
            ("x-hub-signature", &signature),
            ("x-b3-traceid", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ],
        body,
    )
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

// ---- Multicloud ----

#[test]
fn multicloud_sms_webhook_is_acknowledged_with_its_id_and_decoded() {
    let connector = multicloud();
    let request = multicloud_webhook(&fixture("multicloud/sms_webhook.json"));
    let verdict = connector.verify(&request, NOW).expect("verify");
    assert_eq!(verdict.ack.status, 200);
    let ack: Value = serde_json::from_slice(&verdict.ack.body).expect("json ack");
    assert_eq!(ack, json!({"messageId": "1613474523265-0"}));
    assert_eq!(verdict.dedupe_key.as_deref(), Some("1613474523265-0"));
    let (customer, message) = decoded(connector.as_ref(), &request);
    assert_eq!(customer, "sms-main:+16504661149");
    assert_eq!(message.content, Content::text("Agent message text"));
    assert_eq!(
        message.provider_message_id.as_deref(),
        Some("1613474523265-0")
    );
    assert_eq!(
        message.trace.b3.as_deref().map(|b3| &b3[..32]),
        Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        "X-B3-TraceId is carried to the channel side"
    );
}

#[test]
fn multicloud_refuses_a_bad_signature_and_types_it_cannot_read() {
    let connector = multicloud();
    let body = fixture("multicloud/sms_webhook.json");
    let mut tampered = multicloud_webhook(&body);
    tampered.body.push(b' ');
    assert_eq!(connector.verify(&tampered, NOW).unwrap_err().status, 401);
    let unsigned = webhook(&[], &body);
    assert_eq!(connector.verify(&unsigned, NOW).unwrap_err().status, 401);
    let other = br#"{"channel":{"to":{"id":"sms-main:1"},"messageId":"m"},"type":"Typing"}"#;
    assert_eq!(
        connector
            .verify(&multicloud_webhook(other), NOW)
            .unwrap_err()
            .status,
        400
    );
}

#[test]
fn multicloud_email_webhook_keeps_subject_and_html() {
    let (customer, message) = decoded(
        multicloud().as_ref(),
        &multicloud_webhook(&fixture("multicloud/email_webhook.json")),
    );
    assert_eq!(customer, "mail:customer@example.com#<m1@example.com>");
    assert_eq!(message.content, Content::text("Plain text email body"));
    assert_eq!(message.context["email_subject"], json!("Subject"));
    assert_eq!(message.context["email_html"], json!("Html email body"));
    assert_eq!(
        message.context["email_reply_to"],
        json!("reply-to@company.com")
    );
}

#[test]
fn multicloud_customer_text_is_signed_with_ccid_and_trace_and_returns_genesys_id() {
    let connector = multicloud();
    let delivery = Delivery::new(
        "sms-main:+16504661149",
        customer_message("sms-main", Content::text("I need help")),
    );
    let (requests, outcome) = deliver(
        connector.as_ref(),
        &delivery,
        &[(
            200,
            r#"{"status":{"code":0},"data":{"ids":["1613473893265-0"]}}"#,
        )],
    );
    let [request] = requests.as_slice() else {
        panic!("one request")
    };
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.url,
        "https://genesys.example/nexus/v3/channels/sms-channel/messages"
    );
    assert_eq!(header(request, "x-ccid"), Some("ccid-1"));
    assert_eq!(
        header(request, "x-hub-signature"),
        Some(format!("sha1={}", hmac_sha1_hex(SIGNING.as_bytes(), &request.body)).as_str())
    );
    assert_eq!(
        header(request, "x-b3-traceid"),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(
        body(request),
        json!({"messages": [{
            "channel": {
                "from": {"id": "sms-main:+16504661149", "name": "Ada"},
                "to": {"id": "sms-channel"},
                "messageId": "0190163d-8694-739b-aea5-966c26f8ad91"
            },
            "type": "Text",
            "text": "I need help"
        }]})
    );
    assert_eq!(
        outcome.expect("delivered"),
        StepOutput::Delivered {
            provider_message_id: Some("1613473893265-0".into())
        }
    );
}

#[test]
fn multicloud_mail_goes_as_an_email_to_its_channel() {
    let mut message = customer_message("mail", Content::text("Plain"));
    message
        .context
        .insert("email_subject".into(), json!("Order 1"));
    message
        .context
        .insert("email_html".into(), json!("<p>Plain</p>"));
    let (requests, _) = deliver(
        multicloud().as_ref(),
        &Delivery::new("mail:a@example.com", message),
        &[(200, r#"{"status":{"code":0},"data":{"ids":["e-1"]}}"#)],
    );
    assert!(requests[0].url.ends_with("/channels/company.com/messages"));
    let entry = &body(&requests[0])["messages"][0];
    assert_eq!(entry["type"], json!("Email"));
    assert_eq!(entry["subject"], json!("Order 1"));
    assert_eq!(
        entry["content"],
        json!([{"type": "text", "text": "Plain"}, {"type": "html", "text": "<p>Plain</p>"}])
    );
}

#[test]
fn multicloud_receipts_name_genesys_id_with_numeric_reasons() {
    let connector = multicloud();
    let receipt =
        DeliveryReceipt::failed("pb-1", ReasonCode::INVALID_DESTINATION, "no such number");
    let message = customer_message("sms-main", Content::Receipt(receipt));
    let delivery = Delivery::new("sms-main:+16504661149", message.clone())
        .referring_to(Some("1613474523265-0".into()));
    let (requests, outcome) = deliver(
        connector.as_ref(),
        &delivery,
        &[(200, r#"{"status":{"code":0}}"#)],
    );
    assert_eq!(
        body(&requests[0]),
        json!({"messages": [{
            "channel": {
                "from": {"id": "sms-channel"},
                "to": {"id": "sms-main:+16504661149"},
                "messageId": "1613474523265-0"
            },
            "type": "Receipt",
            "status": "Failed",
            "reasons": [{"code": 530, "message": "no such number"}]
        }]})
    );
    assert!(outcome.is_ok());
    // Without Genesys' id there is nobody to tell; typing is not in the API.
    let unknown = Delivery::new("sms-main:+16504661149", message);
    assert_eq!(deliver(connector.as_ref(), &unknown, &[]).0.len(), 0);
    let typing = Delivery::new(
        "sms-main:+16504661149",
        customer_message("sms-main", Content::Typing { active: true }),
    );
    assert_eq!(deliver(connector.as_ref(), &typing, &[]).0.len(), 0);
}

#[test]
fn multicloud_failures_are_classified() {
    let connector = multicloud();
    let delivery = Delivery::new(
        "sms-main:+1",
        customer_message("sms-main", Content::text("x")),
    );
    let (_, outcome) = deliver(connector.as_ref(), &delivery, &[(503, "")]);
    assert_eq!(outcome.unwrap_err().class(), ErrorClass::Transient);
    let (_, outcome) = deliver(
        connector.as_ref(),
        &delivery,
        &[(200, r#"{"status":{"code":4001,"message":"bad"}}"#)],
    );
    let error = outcome.unwrap_err();
    assert!(!error.is_retryable());
    assert_eq!(error.reason(), ReasonCode::INVALID_STRUCTURE);
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
    let missing = MulticloudFactory
        .create(&config(
            json!({"api_url": "https://g.example", "ccid": "c", "channel_id": "x"}),
            &[],
        ))
        .err()
        .expect("refused");
    assert_eq!(missing.key, "secrets.signing_secret");
    let bad_url = OpenMessagingFactory
        .create(&config(
            json!({"api_url": "ftp://x", "login_url": "https://l", "integration_id": "i", "client_id": "c"}),
            &[("client_secret", "s"), ("webhook_secret", "w")],
        ))
        .err()
        .expect("refused");
    assert_eq!(bad_url.key, "settings.api_url");
}
