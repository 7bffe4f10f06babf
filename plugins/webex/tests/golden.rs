//! Golden fixtures and signature checks for the Webex adapter.

use std::path::{Path, PathBuf};

use patchbay_adapter_webex::Webex;
use patchbay_plugin_sdk::prelude::*;
use patchbay_plugin_sdk::testkit::conformance::Conformance;
use patchbay_plugin_sdk::testkit::{Harness, fixtures, request};
use serde_json::{Value, json};

const SECRET: &str = "webex-webhook-secret-for-tests";
const NOW: i64 = 1_763_719_200_000;

fn webex(settings: Value) -> Webex {
    let config = ChannelConfig {
        channel: "webex".into(),
        webhook_url: "https://gw.example/webhooks/webex".into(),
        settings,
        secrets: [
            ("bot_token".to_string(), Secret::new("webex-bot-token")),
            ("webhook_secret".to_string(), Secret::new(SECRET)),
        ]
        .into(),
    };
    Webex::new(&config).expect("config")
}

fn harness() -> Harness<Webex> {
    Harness::new(webex(json!({"api_base_url": "https://webex.example"})), NOW)
}

/// HMAC-SHA1 written with the `hmac` crate directly, not the SDK helper the
/// adapter uses, so a shared mistake cannot pass.
fn spark_signature(secret: &str, body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn sign(request: &mut InboundRequest) {
    let sig = spark_signature(SECRET, &request.body);
    request.headers.push(("x-spark-signature".into(), sig));
}

fn dir(kind: &str) -> PathBuf {
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
    assert!(ran >= 14, "outbound fixtures missing: {ran}");
}

fn notification() -> Vec<u8> {
    json!({"resource": "messages", "event": "created", "createdBy": "BOT",
           "data": {"id": "MSG1", "roomId": "ROOM", "personId": "ALICE"}})
    .to_string()
    .into_bytes()
}

#[test]
fn signatures_are_checked_over_the_exact_body() {
    let h = harness();
    let body = notification();
    let good = spark_signature(SECRET, &body);
    let req = |sig: Option<&str>, body: &[u8]| {
        let headers: Vec<(&str, &str)> =
            sig.map(|s| ("X-Spark-Signature", s)).into_iter().collect();
        request("POST", "https://gw.example/webhooks/webex", &headers, body)
    };
    let verdict = h.verify(&req(Some(&good), &body)).expect("accepted");
    assert_eq!(verdict.dedupe_key.as_deref(), Some("messages/created:MSG1"));
    // Upper-case hex is the same signature.
    h.verify(&req(Some(&good.to_uppercase()), &body))
        .expect("hex case does not matter");

    let mut tampered = body.clone();
    let at = tampered.len() - 3;
    tampered[at] ^= 0x01;
    let wrong_key = spark_signature("another-secret", &body);
    for (name, bad) in [
        ("tampered body", req(Some(&good), &tampered)),
        ("wrong secret", req(Some(&wrong_key), &body)),
        ("missing", req(None, &body)),
        ("garbage", req(Some("not-hex"), &body)),
    ] {
        assert_eq!(h.verify(&bad).expect_err(name).status, 401, "{name}");
    }
    // Signed but not a notification: refused as bad input, not stored.
    let junk = b"{\"hello\":1}";
    let signed = req(Some(&spark_signature(SECRET, junk)), junk);
    assert_eq!(h.verify(&signed).expect_err("junk").status, 400);
}

#[test]
fn a_configured_bot_id_wins_over_the_webhook_creator() {
    // The notification was created by "BOT", but the bot is "ALICE" here, so
    // her message is the bot's own and needs no lookup.
    let h = Harness::new(
        webex(json!({"api_base_url": "https://webex.example", "bot_person_id": "ALICE"})),
        NOW,
    );
    let mut req = request(
        "POST",
        "https://gw.example/webhooks/webex",
        &[],
        &notification(),
    );
    sign(&mut req);
    let run = h.inbound(&req, vec![]);
    assert!(run.requests.is_empty());
    assert_eq!(run.messages().expect("parsed").len(), 0);
    // With the default, the message is looked up with the bot token.
    let run = harness().inbound(&req, vec![]);
    let RequestSpec::Http(http) = &run.requests[0] else {
        panic!("http")
    };
    assert_eq!(http.url, "https://webex.example/v1/messages/MSG1");
    assert_eq!(http.method, "GET");
    assert!(
        http.headers
            .contains(&("authorization".into(), "Bearer webex-bot-token".into()))
    );
}

#[test]
fn config_errors_name_the_key() {
    let config = |settings: Value, secrets: &[(&str, &str)]| ChannelConfig {
        settings,
        secrets: secrets
            .iter()
            .map(|(k, v)| (k.to_string(), Secret::new(*v)))
            .collect(),
        ..Default::default()
    };
    let both = [("bot_token", "t"), ("webhook_secret", "s")];
    let cases = [
        (
            config(json!({"api_base_url": "ftp://x"}), &both),
            "settings.api_base_url",
        ),
        (
            config(json!({}), &[("bot_token", "t")]),
            "secrets.webhook_secret",
        ),
        (
            config(json!({}), &[("webhook_secret", "s")]),
            "secrets.bot_token",
        ),
        (config(json!({"bot": 1}), &both), "settings"),
    ];
    for (config, key) in cases {
        let err = Webex::new(&config).expect_err(key);
        assert!(err.key.starts_with(key), "{key}: {err}");
    }
}

#[test]
fn passes_the_conformance_kit() {
    let body = json!({"id": "wh1", "resource": "messages", "event": "created",
                      "createdBy": "bot-person", "data": {"id": "m1", "roomId": "r1",
                      "personId": "p1", "personEmail": "ann@example.com"}});
    Conformance::new(webex(json!({"api_base_url": "https://webex.example"})), NOW)
        .inbound(body.to_string().as_bytes(), sign)
        .conversation("room-1")
        .inbound_fixtures(dir("inbound"), sign)
        .outbound_fixtures(dir("outbound"))
        .run()
        .assert_passed();
}
