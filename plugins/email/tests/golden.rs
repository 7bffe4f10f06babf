//! Golden fixtures and authentication checks for the email adapter.

use std::path::{Path, PathBuf};

use patchbay_adapter_email::Email;
use patchbay_plugin_sdk::prelude::*;
use patchbay_plugin_sdk::testkit::conformance::Conformance;
use patchbay_plugin_sdk::testkit::{Harness, fixtures, request};
use serde_json::{Value, json};

const TOKEN: &str = "inbound-token-for-tests";
const MAILGUN_KEY: &str = "key-mailgun-signing-for-tests";
/// 2025-11-21 10:00:00 UTC, the Mailgun fixtures' timestamp.
const NOW: i64 = 1_763_719_200_000;

fn config(settings: Value, secrets: &[(&str, &str)]) -> ChannelConfig {
    ChannelConfig {
        channel: "email".into(),
        webhook_url: "https://gw.example/webhooks/email".into(),
        settings,
        secrets: secrets
            .iter()
            .map(|(k, v)| (k.to_string(), Secret::new(*v)))
            .collect(),
    }
}

fn settings(inbound: &str) -> Value {
    json!({
        "from": "Shop Support <support@shop.example>",
        "inbound": inbound,
        "smtp": {"host": "smtp.shop.example", "username": "patchbay"},
    })
}

fn harness(inbound: &str) -> Harness<Email> {
    let config = config(
        settings(inbound),
        &[
            ("inbound_token", TOKEN),
            ("mailgun_signing_key", MAILGUN_KEY),
            ("smtp_password", "smtp-secret"),
        ],
    );
    Harness::new(Email::new(&config).expect("config"), NOW)
}

fn dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind)
}

#[test]
fn inbound_mime_and_sendgrid_fixtures() {
    let bearer = |r: &mut InboundRequest| {
        r.headers
            .push(("authorization".into(), format!("Bearer {TOKEN}")));
    };
    let ran = fixtures::run_inbound(&harness("sendgrid"), &dir("inbound"), bearer);
    assert!(ran >= 8, "inbound fixtures missing: {ran}");
}

#[test]
fn inbound_mailgun_fixtures() {
    // Mailgun signs inside the form, so the fixtures carry their signatures.
    let ran = fixtures::run_inbound(&harness("mailgun"), &dir("inbound_mailgun"), |_| {});
    assert!(ran >= 3, "mailgun fixtures missing: {ran}");
}

#[test]
fn outbound_fixtures() {
    let ran = fixtures::run_outbound(&harness("sendgrid"), &dir("outbound"));
    assert!(ran >= 16, "outbound fixtures missing: {ran}");
}

fn mime() -> Vec<u8> {
    b"From: a@example.com\r\nTo: support@shop.example\r\nSubject: hi\r\nMessage-ID: <x.1@example.com>\r\n\r\nhello\r\n".to_vec()
}

#[test]
fn the_inbound_token_is_accepted_three_ways_and_nothing_else() {
    let h = harness("sendgrid");
    let url = "https://gw.example/webhooks/email";
    let ct = ("content-type", "message/rfc822");
    let basic = format!(
        "Basic {}",
        patchbay_plugin_sdk::signature::base64_encode(format!("sendgrid:{TOKEN}").as_bytes())
    );
    let bearer = format!("Bearer {TOKEN}");
    for (name, req) in [
        (
            "bearer",
            request("POST", url, &[ct, ("authorization", &bearer)], &mime()),
        ),
        (
            "basic",
            request("POST", url, &[ct, ("authorization", &basic)], &mime()),
        ),
        (
            "query",
            request("POST", &format!("{url}?token={TOKEN}"), &[ct], &mime()),
        ),
    ] {
        let verdict = h.verify(&req).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            verdict.dedupe_key.as_deref(),
            Some("message-id:x.1@example.com")
        );
    }
    let wrong = "Bearer not-the-token".to_string();
    for (name, req) in [
        (
            "wrong",
            request("POST", url, &[ct, ("authorization", &wrong)], &mime()),
        ),
        ("missing", request("POST", url, &[ct], &mime())),
        (
            "wrong query",
            request("POST", &format!("{url}?token=guess"), &[ct], &mime()),
        ),
    ] {
        assert_eq!(h.verify(&req).expect_err(name).status, 401, "{name}");
    }
    // Without a configured token, raw MIME is refused, not accepted unauthenticated.
    let open =
        Email::new(&config(settings("sendgrid"), &[("smtp_password", "p")])).expect("config");
    let h = Harness::new(open, NOW);
    let req = request("POST", url, &[ct, ("authorization", &bearer)], &mime());
    assert_eq!(h.verify(&req).expect_err("no token configured").status, 401);
}

/// Mailgun's scheme written with the `hmac` crate directly.
fn mailgun_signature(timestamp: &str, token: &str) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(MAILGUN_KEY.as_bytes()).expect("key");
    mac.update(format!("{timestamp}{token}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[test]
fn mailgun_signatures_and_timestamps_are_checked() {
    let h = harness("mailgun");
    let post = |timestamp: &str, token: &str, signature: &str, subject: &str| {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("from", "alice@example.com")
            .append_pair("subject", subject)
            .append_pair("body-plain", "hello")
            .append_pair("Message-Id", "<m.1@example.com>")
            .append_pair("timestamp", timestamp)
            .append_pair("token", token)
            .append_pair("signature", signature)
            .finish();
        request(
            "POST",
            "https://gw.example/webhooks/email",
            &[("content-type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        )
    };
    let now = (NOW / 1000).to_string();
    let good = mailgun_signature(&now, "tok1");
    h.verify(&post(&now, "tok1", &good, "hi")).expect("valid");
    // The signature covers timestamp and token, not the message: Mailgun's
    // design. A replayed token with another timestamp fails.
    let later = (NOW / 1000 + 60).to_string();
    let stale = (NOW / 1000 - 16 * 60).to_string();
    for (name, req) in [
        ("other timestamp", post(&later, "tok1", &good, "hi")),
        ("other token", post(&now, "tok2", &good, "hi")),
        (
            "stale",
            post(&stale, "tok1", &mailgun_signature(&stale, "tok1"), "hi"),
        ),
        ("missing", post(&now, "tok1", "", "hi")),
    ] {
        assert_eq!(h.verify(&req).expect_err(name).status, 401, "{name}");
    }
}

#[test]
fn bad_bodies_are_refused_before_storing() {
    let h = harness("sendgrid");
    let bearer = format!("Bearer {TOKEN}");
    let json = request(
        "POST",
        "https://gw.example/webhooks/email",
        &[
            ("content-type", "application/json"),
            ("authorization", &bearer),
        ],
        b"{}",
    );
    assert_eq!(h.verify(&json).expect_err("json").status, 400);
    // A message without a usable From parses to a clear error, not a panic.
    let req = request(
        "POST",
        "https://gw.example/webhooks/email",
        &[
            ("content-type", "message/rfc822"),
            ("authorization", &bearer),
        ],
        b"Subject: no sender\r\n\r\nbody",
    );
    let run = h.inbound(&req, vec![]);
    assert!(run.messages().is_err());
}

#[test]
fn config_errors_name_the_key() {
    let cases = [
        (
            json!({"from": "nobody", "smtp": {"host": "h"}}),
            vec![],
            "settings.from",
        ),
        (json!({"from": "a@b.example"}), vec![], "settings"),
        (
            json!({"from": "a@b.example", "smtp": {"host": ""}}),
            vec![],
            "settings.smtp.host",
        ),
        (
            json!({"from": "a@b.example", "smtp": {"host": "h", "username": "u"}}),
            vec![],
            "secrets.smtp_password",
        ),
        (
            json!({"from": "a@b.example", "inbound": "mailgun", "smtp": {"host": "h"}}),
            vec![],
            "secrets.mailgun_signing_key",
        ),
        (
            json!({"from": "a@b.example", "smtp": {"host": "h", "security": "ssl"}}),
            vec![],
            "settings",
        ),
        (
            json!({"from": "a@b.example", "smtp": {"host": "h"}}),
            vec![("inbound_token", " ")],
            "secrets.inbound_token",
        ),
    ];
    for (settings, secrets, key) in cases {
        let err = Email::new(&config(settings, &secrets)).expect_err(key);
        assert!(err.key.starts_with(key), "{key}: {err}");
    }
}

#[test]
fn default_ports_follow_the_security_mode() {
    for (security, port) in [("starttls", 587), ("tls", 465), ("none", 25)] {
        let h = Harness::new(
            Email::new(&config(
                json!({"from": "a@b.example", "smtp": {"host": "relay", "security": security}}),
                &[],
            ))
            .expect("config"),
            NOW,
        );
        let run = h.outbound(&Message::new("c@d.example", Content::text("hi")), vec![]);
        let RequestSpec::Smtp(smtp) = &run.requests[0] else {
            panic!("smtp")
        };
        assert_eq!(smtp.relay.port, port, "{security}");
    }
}

#[test]
fn passes_the_conformance_kit() {
    let bearer = |r: &mut InboundRequest| {
        r.headers
            .push(("authorization".into(), format!("Bearer {TOKEN}")));
    };
    let mime = b"From: Ann <ann@example.com>\r\nTo: support@shop.example\r\nSubject: Help\r\nMessage-ID: <m1@example.com>\r\n\r\nHello there\r\n";
    let sample = request(
        "POST",
        "https://gw.example/webhooks/email",
        &[("content-type", "message/rfc822")],
        mime,
    );
    Conformance::new(harness("sendgrid").adapter, NOW)
        .inbound_request(sample, bearer)
        // A shared token authenticates the post; the mail itself is not signed.
        .body_not_signed()
        .conversation("ann@example.com")
        .inbound_fixtures(dir("inbound"), bearer)
        .outbound_fixtures(dir("outbound"))
        .run()
        .assert_passed();
}

#[test]
fn a_mail_without_a_sender_is_refused_at_verify() {
    let h = harness("sendgrid");
    let no_from =
        b"To: support@shop.example\r\nSubject: hi\r\nMessage-ID: <x.2@example.com>\r\n\r\nhello\r\n";
    let req = request(
        "POST",
        "https://gw.example/webhooks/email",
        &[
            ("content-type", "message/rfc822"),
            ("authorization", &format!("Bearer {TOKEN}")),
        ],
        no_from,
    );
    let refused = h.verify(&req).expect_err("refused");
    assert_eq!(refused.status, 400, "{}", refused.message);
}
