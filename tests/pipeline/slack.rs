//! Slack end to end: a mock Slack Web API and a mock application around a real
//! `patchbay serve`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use patchbay_plugin_sdk::signature::hmac_sha256_hex;
use serde_json::{Value, json};

use crate::harness::*;

const SIGNING_SECRET: &str = "slack-signing-secret-e2e";
const BOT_TOKEN: &str = "xoxb-e2e-token";

struct Slack {
    app: Mock,
    api: Mock,
    host: Host,
}

async fn setup() -> Slack {
    let app = Mock::start().await;
    let integration = Mock::start().await;
    let api = Mock::start().await;
    let mut options = HostOptions::new(&app.url("/patchbay"), &integration.url("/outbound"));
    options.extra_channel_toml = format!(
        r#"
[channels.slack]
adapter = "slack"
settings = {{ api_base_url = "{api}", bot_user_id = "U0BOT" }}
secrets = {{ signing_secret = "{SIGNING_SECRET}", bot_token = "{BOT_TOKEN}" }}
"#,
        api = api.url("/api"),
    );
    let host = Host::start(options);
    Slack { app, api, host }
}

impl Slack {
    /// POSTs `body` to the Slack webhook, signed as Slack signs.
    async fn event(&self, body: &Value, extra: &[(&str, &str)]) -> reqwest::Response {
        let bytes = serde_json::to_vec(body).expect("body");
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs()
            .to_string();
        let mut base = format!("v0:{ts}:").into_bytes();
        base.extend_from_slice(&bytes);
        let signature = format!("v0={}", hmac_sha256_hex(SIGNING_SECRET.as_bytes(), &base));
        let mut headers = vec![
            ("x-slack-request-timestamp", ts.as_str()),
            ("x-slack-signature", signature.as_str()),
        ];
        headers.extend_from_slice(extra);
        self.host.post_raw("/webhooks/slack", &headers, bytes).await
    }

    async fn reply(&self, content: Value) -> String {
        self.host
            .send_id(
                "slack",
                &json!({"conversation": {"id": "D024BE91L"}, "content": content}),
            )
            .await
    }
}

fn message_event(event_id: &str, text: &str) -> Value {
    json!({"type": "event_callback", "team_id": "T1", "event_id": event_id,
           "event": {"type": "message", "channel": "D024BE91L", "user": "U2147483697",
                     "text": text, "ts": "1763719199.000100"}})
}

#[tokio::test]
async fn url_verification_is_answered_with_the_challenge() {
    let s = setup().await;
    let res = s
        .event(
            &json!({"type": "url_verification", "token": "t", "challenge": "c-123"}),
            &[],
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json_value().await["challenge"], "c-123");
    s.host.idle().await;
    assert!(s.app.received().is_empty(), "a handshake is not a message");
}

#[tokio::test]
async fn inbound_text_reaches_the_application_once_despite_slack_retries() {
    let s = setup().await;
    let body = message_event("Ev0001", "Where is <https://shop.example/o/42|order 42>?");
    assert_eq!(s.event(&body, &[]).await.status(), 200);
    let retried = s
        .event(
            &body,
            &[
                ("x-slack-retry-num", "1"),
                ("x-slack-retry-reason", "http_timeout"),
            ],
        )
        .await;
    assert_eq!(retried.status(), 200);

    let got = s.app.wait_for(1).await;
    assert_app_signature(&got[0]);
    let msg = got[0].json();
    assert_eq!(msg["channel"], "slack");
    assert_eq!(msg["conversation"]["id"], "D024BE91L");
    assert_eq!(
        msg["content"],
        json!({"type": "text", "text": "Where is order 42 (https://shop.example/o/42)?"})
    );
    assert_eq!(msg["sender"]["id"], "U2147483697");
    s.host.idle().await;
    assert_eq!(s.app.received().len(), 1, "the retry must be dropped");
}

#[tokio::test]
async fn a_wrong_signature_is_refused() {
    let s = setup().await;
    let res = s
        .host
        .post_raw(
            "/webhooks/slack",
            &[
                ("x-slack-request-timestamp", "1531420618"),
                ("x-slack-signature", "v0=00"),
            ],
            serde_json::to_vec(&message_event("Ev9", "x")).expect("body"),
        )
        .await;
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn reply_is_posted_with_block_kit_and_acknowledged_by_a_receipt() {
    let s = setup().await;
    s.api.script_path(
        "/api/chat.postMessage",
        vec![Answer::new(
            200,
            r#"{"ok":true,"channel":"D024BE91L","ts":"1763719300.000200"}"#,
        )],
    );
    let id = s
        .reply(
            json!({"type": "buttons", "text": "How can we help?", "buttons": [
            {"title": "Billing", "action": {"type": "postback", "payload": "BILLING"}},
            {"title": "Docs", "action": {"type": "link", "url": "https://docs.example"}}]}),
        )
        .await;

    let sent = s.api.wait_for_path("/api/chat.postMessage", 1).await;
    assert_eq!(
        sent[0].header("authorization"),
        Some(format!("Bearer {BOT_TOKEN}").as_str())
    );
    let body = sent[0].json();
    assert_eq!(body["channel"], "D024BE91L");
    assert_eq!(body["text"], "How can we help?");
    assert_eq!(body["blocks"][1]["type"], "actions");
    assert_eq!(body["blocks"][1]["elements"][0]["value"], "BILLING");
    assert_eq!(
        body["blocks"][1]["elements"][1]["url"],
        "https://docs.example"
    );

    let receipts = s.app.wait_for(1).await;
    let receipt = &receipts[0].json()["content"];
    assert_eq!(receipt["status"], "Delivered");
    assert_eq!(receipt["message_id"], id.as_str());
    assert_eq!(receipt["provider_message_id"], "1763719300.000200");
}

#[tokio::test]
async fn rate_limit_is_waited_out_then_delivered() {
    let s = setup().await;
    s.api.script_path(
        "/api/chat.postMessage",
        vec![
            Answer::new(429, r#"{"ok":false,"error":"ratelimited"}"#).header("retry-after", "1"),
            Answer::new(200, r#"{"ok":true,"ts":"1763719300.000300"}"#),
        ],
    );
    s.reply(json!({"type": "text", "text": "hello"})).await;
    let sent = s.api.wait_for_path("/api/chat.postMessage", 2).await;
    let gap = sent[1].at.duration_since(sent[0].at);
    assert!(
        gap >= Duration::from_millis(900),
        "Retry-After: 1 must be honoured, retried after {gap:?}"
    );
    let receipts = s.app.wait_for(1).await;
    assert_eq!(receipts[0].json()["content"]["status"], "Delivered");
}

#[tokio::test]
async fn a_permanent_slack_error_becomes_a_failed_receipt() {
    let s = setup().await;
    s.api.respond(
        "/api/chat.postMessage",
        Answer::new(200, r#"{"ok":false,"error":"channel_not_found"}"#),
    );
    let id = s.reply(json!({"type": "text", "text": "anyone?"})).await;
    let receipts = s.app.wait_for(1).await;
    let receipt = &receipts[0].json()["content"];
    assert_eq!(receipt["status"], "Failed");
    assert_eq!(receipt["message_id"], id.as_str());
    assert_eq!(receipt["reasons"][0]["code"], 530);
    s.host.idle().await;
    assert_eq!(
        s.api.received_on("/api/chat.postMessage").len(),
        1,
        "a permanent error is not retried"
    );
}

#[tokio::test]
async fn typing_is_dropped_and_reported_because_slack_bots_cannot_type() {
    let s = setup().await;
    let id = s.reply(json!({"type": "typing"})).await;
    let receipts = s.app.wait_for(1).await;
    let receipt = &receipts[0].json()["content"];
    assert_eq!(receipt["message_id"], id.as_str());
    assert_eq!(receipt["adjustments"][0]["action"], "dropped");
    assert!(s.api.received().is_empty());
}
