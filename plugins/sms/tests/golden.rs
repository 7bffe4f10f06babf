//! Golden fixtures and Twilio's published signature vectors for the SMS adapter.

use std::path::{Path, PathBuf};

use patchbay_adapter_sms::{Sms, signature};
use patchbay_plugin_sdk::prelude::*;
use patchbay_plugin_sdk::testkit::conformance::Conformance;
use patchbay_plugin_sdk::testkit::{Harness, fixtures, request};
use serde_json::{Value, json};

const TOKEN: &str = "twilio-auth-token-for-tests";
const NOW: i64 = 1_763_719_200_000;

fn sms(settings: Value) -> Sms {
    let config = ChannelConfig {
        channel: "sms".into(),
        webhook_url: "https://gw.example/webhooks/sms".into(),
        settings,
        secrets: [("auth_token".to_string(), Secret::new(TOKEN))].into(),
    };
    Sms::new(&config).expect("config")
}

fn harness() -> Harness<Sms> {
    Harness::new(
        sms(json!({"account_sid": "AC0000000000000000000000000000test",
                   "from": "+15005550006", "api_base_url": "https://twilio.example"})),
        NOW,
    )
}

fn params(body: &[u8]) -> Vec<(String, String)> {
    form_pairs(std::str::from_utf8(body).expect("utf8"))
}

fn form_pairs(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Percent-decoding written out here so the test does not share the adapter's parser.
fn decode(text: &str) -> String {
    let bytes = text.replace('+', " ").into_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 3 <= bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("hex");
            out.push(u8::from_str_radix(hex, 16).expect("hex"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("utf8")
}

fn sign(request: &mut InboundRequest) {
    let sig = signature(TOKEN, &request.url, &params(&request.body));
    request.headers.push(("x-twilio-signature".into(), sig));
}

fn dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind)
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn inbound_fixtures() {
    let ran = fixtures::run_inbound(&harness(), &dir("inbound"), sign);
    assert!(ran >= 12, "inbound fixtures missing: {ran}");
}

#[test]
fn outbound_fixtures() {
    let ran = fixtures::run_outbound(&harness(), &dir("outbound"));
    assert!(ran >= 8, "outbound fixtures missing: {ran}");
}

/// The examples of Twilio's "Webhooks security" page and its SDKs' tests.
#[test]
fn twilios_published_signature_vectors() {
    let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
    let docs = pairs(&[
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+12349013030"),
        ("Digits", "1234"),
        ("From", "+12349013030"),
        ("To", "+18005551212"),
    ]);
    assert_eq!(
        signature("12345", url, &docs),
        "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    );
    let older_docs = pairs(&[
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+14158675309"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
    ]);
    assert_eq!(
        signature("12345", url, &older_docs),
        "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    );
    // The Go SDK's vector, parameters given unsorted.
    let sdk = pairs(&[
        ("Digits", "1234"),
        ("CallSid", "CA1234567890ABCDE"),
        ("To", "+18005551212"),
        ("Caller", "+14158675309"),
        ("From", "+14158675309"),
        ("ReasonConferenceEnded", "test"),
        ("Reason", "Participant"),
    ]);
    assert_eq!(
        signature("12345", url, &sdk),
        "vOEb5UThFn24KEfnOFLQY2AE5FY="
    );
}

#[test]
fn the_published_example_verifies_as_a_request() {
    let body = "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212&MessageSid=CA1234567890ABCDE";
    let params = params(body.as_bytes());
    let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
    let sig = signature("12345", url, &params);
    let config = ChannelConfig {
        settings: json!({"account_sid": "AC1", "from": "+1"}),
        secrets: [("auth_token".to_string(), Secret::new("12345"))].into(),
        ..Default::default()
    };
    let h = Harness::new(Sms::new(&config).expect("config"), NOW);
    let req = request(
        "POST",
        url,
        &[("X-Twilio-Signature", &sig)],
        body.as_bytes(),
    );
    let verdict = h.verify(&req).expect("verifies");
    assert_eq!(verdict.ack.content_type.as_deref(), Some("text/xml"));
    assert!(String::from_utf8_lossy(&verdict.ack.body).contains("<Response/>"));

    // Tampered body, another URL (a proxy rewriting it), a wrong token: refused.
    let mut tampered = req.clone();
    tampered.body = body.replace("Digits=1234", "Digits=9999").into_bytes();
    let mut moved = req.clone();
    moved.url = "https://internal:8080/webhooks/sms".into();
    let mut wrong = req.clone();
    wrong.headers[0].1 = signature("54321", url, &params);
    let missing = request("POST", url, &[], body.as_bytes());
    for (name, bad) in [
        ("tampered", tampered),
        ("moved", moved),
        ("wrong token", wrong),
        ("missing", missing),
    ] {
        assert_eq!(h.verify(&bad).expect_err(name).status, 401, "{name}");
    }
}

#[test]
fn status_callbacks_and_messages_dedupe_separately() {
    let h = harness();
    let mut message = request(
        "POST",
        "https://gw.example/webhooks/sms",
        &[],
        b"MessageSid=SM1&From=%2B1&To=%2B2&Body=hi&SmsStatus=received",
    );
    sign(&mut message);
    let mut delivered = request(
        "POST",
        "https://gw.example/webhooks/sms?patchbay_message_id=pb-1",
        &[],
        b"MessageSid=SM1&MessageStatus=delivered&To=%2B1",
    );
    sign(&mut delivered);
    assert_eq!(
        h.verify(&message).expect("message").dedupe_key.as_deref(),
        Some("message:SM1")
    );
    assert_eq!(
        h.verify(&delivered).expect("status").dedupe_key.as_deref(),
        Some("status:SM1:delivered")
    );
}

#[test]
fn a_messaging_service_replaces_the_from_number() {
    let h = Harness::new(
        sms(
            json!({"account_sid": "AC1", "messaging_service_sid": "MG1", "status_callbacks": false}),
        ),
        NOW,
    );
    let mut msg = Message::new("+14155550100", Content::text("hi"));
    msg.id = "pb-9".into();
    let run = h.outbound(&msg, vec![]);
    let RequestSpec::Http(http) = &run.requests[0] else {
        panic!("http")
    };
    let form = params(&http.body);
    assert!(form.contains(&("MessagingServiceSid".into(), "MG1".into())));
    assert!(
        !form
            .iter()
            .any(|(k, _)| k == "From" || k == "StatusCallback")
    );
}

#[test]
fn config_errors_name_the_key() {
    let config = |settings: Value| ChannelConfig {
        settings,
        secrets: [("auth_token".to_string(), Secret::new("t"))].into(),
        ..Default::default()
    };
    let cases = [
        (
            json!({"account_sid": "XX1", "from": "+1"}),
            "settings.account_sid",
        ),
        (json!({"account_sid": "AC1"}), "settings.from"),
        (
            json!({"account_sid": "AC1", "from": "+1", "api_base_url": "x"}),
            "settings.api_base_url",
        ),
    ];
    for (settings, key) in cases {
        assert_eq!(Sms::new(&config(settings)).expect_err(key).key, key);
    }
}

#[test]
fn passes_the_conformance_kit() {
    Conformance::new(harness().adapter, NOW)
        .inbound(
            b"MessageSid=SM1&AccountSid=AC0000000000000000000000000000test&From=%2B14155550100&To=%2B15005550006&Body=hi&NumMedia=0",
            sign,
        )
        .conversation("+14155550100")
        .inbound_fixtures(dir("inbound"), sign)
        .outbound_fixtures(dir("outbound"))
        .run()
        .assert_passed();
}

#[test]
fn a_message_webhook_parsing_would_refuse_is_refused_at_verify() {
    let h = harness();
    for body in [
        // No From: there is no one to answer.
        &b"MessageSid=SM2&To=%2B2&Body=hi&SmsStatus=received"[..],
        // The legacy SmsSid alone: no MessageSid to name the message.
        &b"SmsSid=SM3&From=%2B1&To=%2B2&Body=hi"[..],
    ] {
        let mut req = request("POST", "https://gw.example/webhooks/sms", &[], body);
        sign(&mut req);
        let refused = h.verify(&req).expect_err("refused");
        assert_eq!(refused.status, 400, "{}", refused.message);
    }
}

/// Found by fuzzing (sms_inbound): a status callback without `To` became a
/// receipt with an empty conversation id.
#[test]
fn a_status_callback_without_a_recipient_is_refused_at_verify() {
    let mut req = request(
        "POST",
        "https://gw.example/webhooks/sms?patchbay_message_id=pb-42",
        &[],
        b"SmsSid=SM9&MessageSid=SM9&MessageStatus=delivered&ToSmsSid=x&From=%2B1",
    );
    sign(&mut req);
    let refused = harness().verify(&req).expect_err("refused");
    assert_eq!(refused.status, 400, "{}", refused.message);
    assert_eq!(
        harness().inbound(&req, vec![]).messages().expect("parsed"),
        &[]
    );
}
