//! Golden fixtures for the Multicloud connector, both directions: Genesys'
//! documented webhook bodies in, the exact requests out.

use std::path::Path;

use patchbay_plugin_sdk::driver::{Driver, Next};
use patchbay_plugin_sdk::prelude::*;
use patchbay_plugin_sdk::signature::hmac_sha1_hex;
use patchbay_plugin_sdk::testkit::conformance::UpstreamConformance;
use patchbay_plugin_sdk::upstream::{Delivery, PlatformEvent, UpstreamConnector, UpstreamFactory};
use patchbay_upstream_genesys_3pm::MulticloudFactory;
use serde_json::{Value, json};

const NOW: Timestamp = Timestamp(1_763_719_200_000);
const SIGNING: &str = "channel-secret";
const APP_SECRET: &str = "app-secret";

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
}

#[test]
fn the_connector_passes_the_conformance_kit() {
    UpstreamConformance::new(multicloud(), NOW.0)
        .webhook(&fixture("multicloud/sms_webhook.json"), |r| {
            let signature = format!("sha1={}", hmac_sha1_hex(APP_SECRET.as_bytes(), &r.body));
            r.headers.push(("X-Hub-Signature".into(), signature));
        })
        .answer(200, r#"{"status":{"code":0},"data":{"ids":["g-1"]}}"#)
        .run()
        .assert_passed();
}

#[test]
fn multicloud_attachments_are_uploaded_then_sent_as_rich_media() {
    let connector = multicloud();
    let content = Content::Attachments {
        attachments: vec![Attachment {
            url: "https://files.example/receipt.pdf?sig=1".into(),
            filename: None,
            content_type: Some("application/pdf".into()),
            size: None,
        }],
        text: Some("my receipt".into()),
    };
    let delivery = Delivery::new(
        "sms-main:+16504661149",
        customer_message("sms-main", content),
    );
    let upload_answer = r#"{"status":{"code":0},"data":{"mediaId":"bb4a","url":"genesys://nexus/bb4a","filename":"receipt.pdf","mimetype":"application/pdf","length":7}}"#;
    let (requests, outcome) = deliver(
        connector.as_ref(),
        &delivery,
        &[
            (200, "%PDF-1.7"),
            (200, upload_answer),
            (200, r#"{"status":{"code":0},"data":{"ids":["g-9"]}}"#),
        ],
    );
    let [fetch, upload, send] = requests.as_slice() else {
        panic!("fetch, upload, send: {requests:?}")
    };
    assert_eq!(fetch.method, "GET");
    assert_eq!(fetch.url, "https://files.example/receipt.pdf?sig=1");
    assert_eq!(
        upload.url,
        "https://genesys.example/nexus/v3/channels/sms-channel/media"
    );
    let content_type = header(upload, "content-type").expect("content type");
    let boundary = content_type
        .strip_prefix("multipart/form-data; boundary=")
        .expect("multipart");
    let multipart = String::from_utf8(upload.body.clone()).expect("utf8");
    assert!(multipart.starts_with(&format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"receipt.pdf\"\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.7\r\n--{boundary}--")), "{multipart}");
    assert_eq!(header(upload, "x-ccid"), Some("ccid-1"));
    assert_eq!(
        header(upload, "x-hub-signature"),
        Some(format!("sha1={}", hmac_sha1_hex(SIGNING.as_bytes(), &upload.body)).as_str())
    );
    let entry = &body(send)["messages"][0];
    assert_eq!(entry["type"], json!("RichMedia"));
    assert_eq!(entry["text"], json!("my receipt"));
    assert_eq!(
        entry["content"],
        json!([{"url": "genesys://nexus/bb4a", "filename": "receipt.pdf", "mimetype": "application/pdf"}])
    );
    assert_eq!(
        entry["channel"]["from"]["id"],
        json!("sms-main:+16504661149")
    );
    assert_eq!(
        outcome.expect("delivered"),
        StepOutput::Delivered {
            provider_message_id: Some("g-9".into())
        }
    );
    // A file that cannot be fetched fails the message, not silently.
    let (_, outcome) = deliver(connector.as_ref(), &delivery, &[(404, "")]);
    assert!(!outcome.unwrap_err().is_retryable());
}
