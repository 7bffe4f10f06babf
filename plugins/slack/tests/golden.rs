//! Golden fixtures and signature vectors for the Slack adapter.

use std::path::Path;

use patchbay_adapter_slack::Slack;
use patchbay_plugin_sdk::prelude::*;
use patchbay_plugin_sdk::signature::hmac_sha256_hex;
use patchbay_plugin_sdk::testkit::conformance::Conformance;
use patchbay_plugin_sdk::testkit::{Harness, fixtures, request};
use serde_json::{Value, json};

const SECRET: &str = "slack-signing-secret-for-tests";
const NOW: i64 = 1_763_719_200_000;

fn slack(secret: &str, settings: Value) -> Slack {
    let config = ChannelConfig {
        channel: "slack".into(),
        webhook_url: "https://gw.example/webhooks/slack".into(),
        settings,
        secrets: [
            ("signing_secret".to_string(), Secret::new(secret)),
            ("bot_token".to_string(), Secret::new("xoxb-test-token")),
        ]
        .into(),
    };
    Slack::new(&config).expect("config")
}

fn harness() -> Harness<Slack> {
    Harness::new(
        slack(
            SECRET,
            json!({"api_base_url": "https://slack.example/api", "bot_user_id": "U0BOT"}),
        ),
        NOW,
    )
}

fn sign_at(request: &mut InboundRequest, secret: &str, ts_secs: i64) {
    let ts = ts_secs.to_string();
    let mut base = format!("v0:{ts}:").into_bytes();
    base.extend_from_slice(&request.body);
    let signature = format!("v0={}", hmac_sha256_hex(secret.as_bytes(), &base));
    request
        .headers
        .push(("x-slack-request-timestamp".into(), ts));
    request
        .headers
        .push(("x-slack-signature".into(), signature));
}

fn sign(request: &mut InboundRequest) {
    sign_at(request, SECRET, NOW / 1000);
}

fn dir(kind: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind)
}

#[test]
fn inbound_fixtures() {
    let ran = fixtures::run_inbound(&harness(), &dir("inbound"), sign);
    assert!(ran >= 13, "inbound fixtures missing: {ran}");
}

#[test]
fn outbound_fixtures() {
    let ran = fixtures::run_outbound(&harness(), &dir("outbound"));
    assert!(ran >= 17, "outbound fixtures missing: {ran}");
}

/// The worked example in Slack's "Verifying requests from Slack".
#[test]
fn slacks_documented_signature_example_verifies() {
    let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    let request = request(
        "POST",
        "https://gw.example/webhooks/slack",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Slack-Request-Timestamp", "1531420618"),
            (
                "X-Slack-Signature",
                "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
            ),
        ],
        body.as_bytes(),
    );
    let adapter = slack("8f742231b10e8888abcd99yyyzzz85a5", json!({}));
    let h = Harness::new(adapter, 1_531_420_618_000 + 30_000);
    let verdict = h.verify(&request).expect("Slack's example must verify");
    assert!(verdict.store);

    // One bit off anywhere, or a stale clock, and it fails.
    let mut tampered = request.clone();
    tampered.body[10] ^= 1;
    assert_eq!(h.verify(&tampered).expect_err("tampered").status, 401);
    let late = Harness::new(
        slack("8f742231b10e8888abcd99yyyzzz85a5", json!({})),
        1_531_420_618_000 + 301_000,
    );
    assert_eq!(late.verify(&request).expect_err("stale").status, 401);
}

#[test]
fn bad_requests_are_rejected() {
    let body = br#"{"type":"event_callback","event_id":"Ev1","event":{"type":"message"}}"#;
    let good = {
        let mut r = request("POST", "https://gw/webhooks/slack", &[], body);
        sign(&mut r);
        r
    };
    assert!(harness().verify(&good).is_ok());

    let mut tampered = good.clone();
    tampered.body[5] ^= 1;
    let mut wrong_key = request("POST", "https://gw/webhooks/slack", &[], body);
    sign_at(&mut wrong_key, "another-secret", NOW / 1000);
    let mut stale = request("POST", "https://gw/webhooks/slack", &[], body);
    sign_at(&mut stale, SECRET, NOW / 1000 - 301);
    let mut future = request("POST", "https://gw/webhooks/slack", &[], body);
    sign_at(&mut future, SECRET, NOW / 1000 + 301);
    let missing = request("POST", "https://gw/webhooks/slack", &[], body);
    let mut not_json = request("POST", "https://gw/webhooks/slack", &[], b"{oops");
    sign(&mut not_json);
    let table = [
        ("tampered", tampered, 401),
        ("wrong key", wrong_key, 401),
        ("stale timestamp", stale, 401),
        ("future timestamp", future, 401),
        ("missing signature", missing, 401),
        ("not json", not_json, 400),
    ];
    for (name, req, status) in table {
        let err = harness().verify(&req).expect_err(name);
        assert_eq!(err.status, status, "{name}: {}", err.message);
        assert!(!err.message.contains(SECRET), "{name}");
    }
}

#[test]
fn url_verification_is_answered_and_not_stored() {
    let body = br#"{"token":"t","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let mut req = request("POST", "https://gw/webhooks/slack", &[], body);
    sign(&mut req);
    let verdict = harness().verify(&req).expect("verify");
    assert!(!verdict.store);
    let ack: Value = serde_json::from_slice(&verdict.ack.body).expect("json");
    assert_eq!(
        ack["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
    assert_eq!(
        verdict.ack.content_type.as_deref(),
        Some("application/json")
    );
}

#[test]
fn a_retried_event_has_the_same_dedupe_key() {
    let body = br#"{"type":"event_callback","event_id":"Ev0RETRY","event":{"type":"message","channel":"D1","user":"U1","text":"hi","ts":"1.1"}}"#;
    let mut first = request("POST", "https://gw/webhooks/slack", &[], body);
    sign(&mut first);
    let mut retry = request(
        "POST",
        "https://gw/webhooks/slack",
        &[
            ("X-Slack-Retry-Num", "1"),
            ("X-Slack-Retry-Reason", "http_timeout"),
        ],
        body,
    );
    sign(&mut retry);
    let h = harness();
    let a = h.verify(&first).expect("first").dedupe_key;
    let b = h.verify(&retry).expect("retry").dedupe_key;
    assert_eq!(a, b);
    assert_eq!(a.as_deref(), Some("event:Ev0RETRY"));
}

#[test]
fn attachments_as_links_when_configured() {
    let adapter = slack(
        SECRET,
        json!({"api_base_url": "https://slack.example/api", "attachments": "links"}),
    );
    assert!(
        !adapter
            .manifest()
            .capabilities
            .outbound
            .has(Feature::Attachments)
    );
    let msg = Message::new(
        "D1",
        Content::Attachments {
            attachments: vec![Attachment {
                url: "https://files.example/a.pdf".into(),
                filename: Some("a.pdf".into()),
                content_type: None,
                size: None,
            }],
            text: Some("here".into()),
        },
    );
    let run = Harness::new(adapter, NOW).outbound(&msg, vec![]);
    let RequestSpec::Http(http) = &run.requests[0] else {
        panic!("http")
    };
    let body: Value = serde_json::from_slice(&http.body).expect("json");
    assert_eq!(body["text"], "here\n<https://files.example/a.pdf|a.pdf>");
}

#[test]
fn config_errors_name_the_key() {
    let config = ChannelConfig {
        channel: "slack".into(),
        settings: json!({"api_base_url": "ftp://nope"}),
        secrets: [
            ("signing_secret".to_string(), Secret::new("s")),
            ("bot_token".to_string(), Secret::new("t")),
        ]
        .into(),
        ..Default::default()
    };
    assert_eq!(
        Slack::new(&config).expect_err("bad url").key,
        "settings.api_base_url"
    );
    let config = ChannelConfig {
        secrets: [("signing_secret".to_string(), Secret::new("s"))].into(),
        ..Default::default()
    };
    assert_eq!(
        Slack::new(&config).expect_err("no token").key,
        "secrets.bot_token"
    );
}

#[test]
fn passes_the_conformance_kit() {
    let body = json!({"type": "event_callback", "team_id": "T1", "event_id": "Ev1",
                      "event": {"type": "message", "channel": "C1", "user": "U1",
                                "text": "hello", "ts": "1.000100"}});
    Conformance::new(harness().adapter, NOW)
        .inbound(body.to_string().as_bytes(), sign)
        .conversation("C1")
        .inbound_fixtures(dir("inbound"), sign)
        .outbound_fixtures(dir("outbound"))
        .run()
        .assert_passed();
}

/// Found by fuzzing (slack_inbound): a slash command with an empty
/// `channel_id` became a message with an empty conversation id.
#[test]
fn a_command_without_a_channel_yields_no_message() {
    let mut req = request(
        "POST",
        "https://gw.example/webhooks/slack",
        &[("content-type", "application/x-www-form-urlencoded")],
        b"team_id=T1&channel_id=&user_id=U2&command=%2Fhelp&text=now&trigger_id=1.2.3",
    );
    sign(&mut req);
    let h = harness();
    assert!(h.verify(&req).expect("verifies").store);
    let run = h.inbound(&req, vec![]);
    for message in run.messages().expect("parsed") {
        message.validate().expect("valid");
    }
    assert!(run.messages().expect("parsed").is_empty());
}
