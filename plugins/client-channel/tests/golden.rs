//! Golden fixtures: signed integration-layer requests → canonical JSON, and
//! canonical outbound → the request sent to the integration layer.

use std::path::Path;

use patchbay_adapter_client_channel::ClientChannel;
use patchbay_plugin_sdk::prelude::*;
use patchbay_plugin_sdk::signature::{hmac_sha1_hex, hmac_sha256_hex};
use patchbay_plugin_sdk::testkit::{Harness, json_response, request};
use serde_json::{Value, json};

const SECRET: &str = "s3cr3t-for-tests";
const NOW: i64 = 1_763_719_200_000;

fn adapter() -> Harness<ClientChannel> {
    let config = ChannelConfig {
        channel: "web".into(),
        webhook_url: "https://gw.example/webhooks/web".into(),
        settings: json!({"webhook_url": "http://127.0.0.1:9/out"}),
        secrets: [("signing_secret".to_string(), Secret::new(SECRET))].into(),
    };
    Harness::new(ClientChannel::new(&config).expect("config"), NOW)
}

fn signed(body: &[u8]) -> InboundRequest {
    let sig = format!("sha256={}", hmac_sha256_hex(SECRET.as_bytes(), body));
    request(
        "POST",
        "https://gw.example/webhooks/web",
        &[("X-Hub-Signature-256", &sig)],
        body,
    )
}

#[test]
fn inbound_fixtures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inbound");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("fixtures") {
        let path = entry.expect("entry").path();
        let fixture: Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        let body = serde_json::to_vec(&fixture["body"]).expect("body");
        let h = adapter();
        let req = signed(&body);
        let verdict = h
            .verify(&req)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            verdict.dedupe_key.as_deref(),
            fixture["body"]["message_id"].as_str()
        );
        let run = h.inbound(&req, vec![]);
        assert!(run.requests.is_empty());
        let messages = run
            .messages()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            serde_json::to_value(&messages[0]).expect("ser"),
            fixture["expected"],
            "{}",
            path.display()
        );
        seen += 1;
    }
    assert!(seen >= 8, "fixtures missing: {seen}");
}

#[test]
fn sha1_signature_is_accepted_too() {
    let body =
        br#"{"message_id":"e","conversation":{"id":"c"},"content":{"type":"text","text":"x"}}"#;
    let sig = format!("sha1={}", hmac_sha1_hex(SECRET.as_bytes(), body));
    let req = request(
        "POST",
        "https://gw/webhooks/web",
        &[("X-Hub-Signature", &sig)],
        body,
    );
    assert!(adapter().verify(&req).is_ok());
}

#[test]
fn bad_requests_are_rejected_before_storage() {
    let body =
        br#"{"message_id":"e","conversation":{"id":"c"},"content":{"type":"text","text":"x"}}"#;
    let good = signed(body);
    let mut tampered = good.clone();
    tampered.body[30] ^= 1;
    let mut wrong_key = good.clone();
    wrong_key.headers[0].1 = format!("sha256={}", hmac_sha256_hex(b"other", body));
    let mut unknown_algo = good.clone();
    unknown_algo.headers[0].1 = format!("md5={}", hmac_sha256_hex(SECRET.as_bytes(), body));
    let missing = request("POST", "https://gw/webhooks/web", &[], body);
    let no_id = signed(br#"{"conversation":{"id":"c"},"content":{"type":"text","text":"x"}}"#);
    let empty_id = signed(
        br#"{"message_id":"","conversation":{"id":"c"},"content":{"type":"text","text":"x"}}"#,
    );
    let not_an_object = signed(br#"["message_id"]"#);
    let not_json = signed(b"hello");
    let no_content = signed(br#"{"message_id":"e","conversation":{"id":"c"}}"#);
    let table = [
        (tampered, 401, "signature"),
        (wrong_key, 401, "signature"),
        (unknown_algo, 401, "signature"),
        (missing, 401, "X-Hub-Signature"),
        (no_id, 400, "\"message_id\""),
        (empty_id, 400, "\"message_id\""),
        (not_an_object, 400, "not a JSON object"),
        (not_json, 400, "not JSON"),
        (no_content, 400, "not a canonical message"),
    ];
    for (req, status, says) in table {
        let err = adapter().verify(&req).expect_err("must reject");
        assert_eq!(err.status, status, "{}", err.message);
        assert!(err.message.contains(says), "{}", err.message);
        assert!(!err.message.contains(SECRET));
    }
}

#[test]
fn the_message_id_is_the_dedupe_key_and_the_provider_id_whether_text_or_number() {
    for (body, id) in [
        (
            &br#"{"message_id":"evt-9","conversation":{"id":"c"},"content":{"type":"text","text":"x"},"context":{"page":"/pricing"}}"#[..],
            "evt-9",
        ),
        (
            &br#"{"conversation":{"id":"c"},"message_id":42,"content":{"type":"text","text":"x"},"context":{"page":"/pricing"}}"#[..],
            "42",
        ),
    ] {
        let req = signed(body);
        let verdict = adapter().verify(&req).expect("accepted");
        assert_eq!(verdict.dedupe_key.as_deref(), Some(id));
        let run = adapter().inbound(&req, vec![]);
        let messages = run.messages().expect("parsed");
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].provider_message_id.as_deref(), Some(id));
        assert_eq!(messages[0].conversation.id, "c");
        assert_eq!(messages[0].context["page"], json!("/pricing"));
    }
}

#[test]
fn malformed_canonical_content_fails_as_bad_input() {
    let req = signed(
        br#"{"message_id":"e","conversation":{"id":"c"},"content":{"type":"buttons","text":1}}"#,
    );
    let err = adapter().inbound(&req, vec![]).outcome.expect_err("bad");
    assert_eq!(err.class(), ErrorClass::BadInput);
}

#[test]
fn outbound_is_the_signed_canonical_message() {
    let mut msg = Message::new(
        "c-1",
        Content::Carousel {
            cards: vec![Card {
                title: "Pro".into(),
                buttons: vec![Button::postback("Choose", "PRO")],
                ..Default::default()
            }],
        },
    );
    msg.id = "pb-1".into();
    msg.channel = "web".into();
    let run = adapter().outbound(
        &msg,
        vec![json_response(200, &json!({"message_id": "il-77"}))],
    );
    assert_eq!(
        run.outcome,
        Ok(StepOutput::Delivered {
            provider_message_id: Some("il-77".into())
        })
    );
    let RequestSpec::Http(req) = &run.requests[0] else {
        panic!("http")
    };
    assert_eq!(
        (req.method.as_str(), req.url.as_str()),
        ("POST", "http://127.0.0.1:9/out")
    );
    let body: Value = serde_json::from_slice(&req.body).expect("json");
    assert_eq!(
        body,
        json!({"id":"pb-1","channel":"web","conversation":{"id":"c-1"},
        "content":{"type":"carousel","cards":[{"title":"Pro","buttons":[{"title":"Choose","action":{"type":"postback","payload":"PRO"}}]}]}})
    );
    let header = |n: &str| {
        req.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        header("x-hub-signature-256"),
        Some(format!(
            "sha256={}",
            hmac_sha256_hex(SECRET.as_bytes(), &req.body)
        ))
    );
    assert_eq!(
        header("x-hub-signature"),
        Some(format!(
            "sha1={}",
            hmac_sha1_hex(SECRET.as_bytes(), &req.body)
        ))
    );
}

#[test]
fn outbound_errors_are_classified() {
    let msg = Message::new("c", Content::text("x"));
    let mut limited = json_response(429, &json!({}));
    limited.headers.push(("retry-after".into(), "3".into()));
    let table = [
        (
            limited,
            ErrorClass::RateLimited {
                retry_after_ms: Some(3000),
            },
            ReasonCode::RATE_LIMITED,
        ),
        (
            json_response(503, &json!({})),
            ErrorClass::Transient,
            ReasonCode::GENERAL,
        ),
        (
            json_response(404, &json!({})),
            ErrorClass::Permanent,
            ReasonCode::INVALID_DESTINATION,
        ),
        (
            json_response(400, &json!({})),
            ErrorClass::Permanent,
            ReasonCode::INVALID_STRUCTURE,
        ),
    ];
    for (response, class, reason) in table {
        let err = adapter()
            .outbound(&msg, vec![response])
            .outcome
            .expect_err("fails");
        assert_eq!((err.class(), err.reason()), (class, reason));
    }
}

#[test]
fn config_errors_name_the_key() {
    let base = ChannelConfig {
        channel: "web".into(),
        ..Default::default()
    };
    let err = ClientChannel::new(&base).expect_err("no settings");
    assert!(err.to_string().contains("webhook_url"), "{err}");
    let bad_url = ChannelConfig {
        settings: json!({"webhook_url": "ftp://x"}),
        ..base.clone()
    };
    assert_eq!(
        ClientChannel::new(&bad_url).expect_err("url").key,
        "settings.webhook_url"
    );
    let no_secret = ChannelConfig {
        settings: json!({"webhook_url": "http://x"}),
        ..base
    };
    assert_eq!(
        ClientChannel::new(&no_secret).expect_err("secret").key,
        "secrets.signing_secret"
    );
}

#[test]
fn passes_the_conformance_kit() {
    let sign = |r: &mut InboundRequest| {
        let sig = format!("sha256={}", hmac_sha256_hex(SECRET.as_bytes(), &r.body));
        r.headers.push(("x-hub-signature-256".into(), sig));
    };
    patchbay_plugin_sdk::testkit::conformance::Conformance::new(adapter().adapter, NOW)
        .inbound(
            br#"{"message_id":"m-1","conversation":{"id":"c-1"},"content":{"type":"text","text":"hi"}}"#,
            sign,
        )
        .conversation("c-1")
        .run()
        .assert_passed();
}
