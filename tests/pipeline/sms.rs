//! SMS (Twilio) end to end: a mock Twilio API and a mock application around a
//! real `patchbay serve`.

use std::time::Duration;

use patchbay_adapter_sms::signature;
use serde_json::{Value, json};

use crate::harness::*;

const ACCOUNT: &str = "AC0000000000000000000000000000e2e";
const AUTH_TOKEN: &str = "twilio-auth-token-e2e";
const CUSTOMER: &str = "+14155550100";

struct Sms {
    app: Mock,
    twilio: Mock,
    host: Host,
}

fn messages_path() -> String {
    format!("/2010-04-01/Accounts/{ACCOUNT}/Messages.json")
}

async fn setup() -> Sms {
    let app = Mock::start().await;
    let integration = Mock::start().await;
    let twilio = Mock::start().await;
    twilio.respond(
        &messages_path(),
        Answer::new(201, r#"{"sid":"SM0001","status":"queued"}"#),
    );
    let mut options = HostOptions::new(&app.url("/patchbay"), &integration.url("/outbound"));
    options.extra_channel_toml = format!(
        r#"
[channels.sms]
adapter = "sms"
settings = {{ account_sid = "{ACCOUNT}", from = "+15005550006", api_base_url = "{api}" }}
secrets = {{ auth_token = "{AUTH_TOKEN}" }}
"#,
        api = twilio.url(""),
    );
    let host = Host::start(options);
    Sms { app, twilio, host }
}

fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace('+', "%2B").replace(' ', "+")))
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

impl Sms {
    /// POSTs a form to `path` (with query) signed as Twilio signs it, for the
    /// URL Twilio would have called.
    async fn twilio_post(&self, path_and_query: &str, pairs: &[(&str, &str)]) -> reqwest::Response {
        let url = format!("{}{path_and_query}", self.host.url);
        let params: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let sig = signature(AUTH_TOKEN, &url, &params);
        client()
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-twilio-signature", sig)
            .body(form(pairs))
            .send()
            .await
            .expect("post")
    }

    async fn reply(&self, text: &str) -> String {
        self.host
            .send_id(
                "sms",
                &json!({"conversation": {"id": CUSTOMER}, "content": {"type": "text", "text": text}}),
            )
            .await
    }
}

#[tokio::test]
async fn inbound_sms_reaches_the_application_and_is_answered_with_twiml() {
    let s = setup().await;
    let res = s
        .twilio_post(
            "/webhooks/sms",
            &[
                ("MessageSid", "SM100"),
                ("From", CUSTOMER),
                ("To", "+15005550006"),
                ("Body", "Hello there"),
                ("NumMedia", "0"),
                ("SmsStatus", "received"),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/xml")
    );
    assert!(res.text().await.expect("body").contains("<Response/>"));
    let got = s.app.wait_for(1).await;
    let msg = got[0].json();
    assert_eq!(msg["channel"], "sms");
    assert_eq!(msg["conversation"]["id"], CUSTOMER);
    assert_eq!(
        msg["content"],
        json!({"type": "text", "text": "Hello there"})
    );

    let forged = s
        .host
        .post_raw(
            "/webhooks/sms",
            &[("x-twilio-signature", "AAAA")],
            form(&[("MessageSid", "SM101")]),
        )
        .await;
    assert_eq!(forged.status(), 401);
}

#[tokio::test]
async fn reply_then_status_callback_becomes_a_failed_receipt_530() {
    let s = setup().await;
    let id = s.reply("Your order shipped").await;
    let sent = s.twilio.wait_for_path(&messages_path(), 1).await;
    let body = String::from_utf8(sent[0].body.clone()).expect("utf8");
    assert!(body.contains("To=%2B14155550100"), "{body}");
    assert!(body.contains("Body=Your+order+shipped"), "{body}");
    assert!(
        sent[0]
            .header("authorization")
            .is_some_and(|a| a.starts_with("Basic "))
    );
    let callback = body
        .split('&')
        .find_map(|p| p.strip_prefix("StatusCallback="))
        .expect("StatusCallback");
    let callback = callback
        .replace("%3A", ":")
        .replace("%2F", "/")
        .replace("%3F", "?")
        .replace("%3D", "=");
    let path = callback
        .strip_prefix(&s.host.url)
        .expect("callback points at this host");
    assert!(path.contains(&id), "{path}");

    // Accepted by Twilio: a Delivered receipt for the hand-over.
    let first = s.app.wait_for(1).await;
    assert_eq!(first[0].json()["content"]["status"], "Delivered");

    let res = s
        .twilio_post(
            path,
            &[
                ("MessageSid", "SM0001"),
                ("MessageStatus", "undelivered"),
                ("ErrorCode", "30003"),
                ("To", CUSTOMER),
                ("From", "+15005550006"),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    let got = s.app.wait_for(2).await;
    let receipt = got[1].json();
    assert_eq!(receipt["content"]["type"], "receipt");
    assert_eq!(receipt["content"]["status"], "Failed");
    assert_eq!(receipt["content"]["message_id"], id.as_str());
    assert_eq!(receipt["content"]["reasons"][0]["code"], 530);
}

#[tokio::test]
async fn rate_limited_send_is_retried_then_delivered() {
    let s = setup().await;
    s.twilio.script_path(
        &messages_path(),
        vec![
            Answer::new(429, r#"{"code":20429,"message":"Too Many Requests"}"#)
                .header("retry-after", "1"),
        ],
    );
    s.reply("hello").await;
    let sent = s.twilio.wait_for_path(&messages_path(), 2).await;
    assert!(sent[1].at.duration_since(sent[0].at) >= Duration::from_millis(900));
    let receipts: Vec<Value> = s.app.wait_for(1).await.iter().map(|r| r.json()).collect();
    assert_eq!(receipts[0]["content"]["status"], "Delivered");
    assert_eq!(receipts[0]["content"]["provider_message_id"], "SM0001");
}
