//! Genesys upstreams end to end: customers on Slack and SMS, agents on a mock
//! Genesys Multicloud and a mock Genesys Cloud, around a real `patchbay serve`.

use std::time::{SystemTime, UNIX_EPOCH};

use patchbay_adapter_sms::signature as twilio_signature;
use patchbay_plugin_sdk::signature::{base64_encode, hmac_sha1_hex, hmac_sha256, hmac_sha256_hex};
use serde_json::{Value, json};

use crate::harness::*;

const SLACK_SECRET: &str = "slack-signing-secret-genesys";
const CHANNEL_SECRET_3PM: &str = "genesys-channel-secret";
const APP_SECRET_3PM: &str = "genesys-app-secret";
const CLOUD_WEBHOOK_SECRET: &str = "genesys-cloud-webhook-secret";
const ACCOUNT: &str = "AC0000000000000000000000000000gen";
const AUTH_TOKEN: &str = "twilio-auth-token-genesys";
const CUSTOMER_PHONE: &str = "+14155550111";

/// A host with Slack on Multicloud and SMS on Genesys Cloud.
struct Setup {
    genesys: Mock,
    cloud: Mock,
    slack: Mock,
    twilio: Mock,
    host: Host,
}

fn twilio_messages() -> String {
    format!("/2010-04-01/Accounts/{ACCOUNT}/Messages.json")
}

const CLOUD_BASE: &str = "/api/v2/conversations/messages/integration-1/inbound/open";

async fn setup() -> Setup {
    setup_with_slack_port(None).await
}

/// With Slack's API on `port` (nothing listens there until a test starts a
/// mock on it), or on a mock of its own.
async fn setup_with_slack_port(port: Option<u16>) -> Setup {
    let app = Mock::start().await;
    let integration = Mock::start().await;
    let genesys = Mock::start().await;
    let cloud = Mock::start().await;
    let slack = Mock::start().await;
    let slack_url = match port {
        Some(port) => format!("http://127.0.0.1:{port}/api"),
        None => slack.url("/api"),
    };
    let twilio = Mock::start().await;
    genesys.respond(
        "/nexus/v3/channels/slack-channel/messages",
        Answer::new(200, r#"{"status":{"code":0},"data":{"ids":["g-1"]}}"#),
    );
    slack.respond(
        "/api/chat.postMessage",
        Answer::new(
            200,
            r#"{"ok":true,"channel":"D1","ts":"1763719300.000200"}"#,
        ),
    );
    twilio.respond(
        &twilio_messages(),
        Answer::new(201, r#"{"sid":"SM0002","status":"queued"}"#),
    );
    cloud.respond(
        "/oauth/token",
        Answer::new(200, r#"{"access_token":"token-1","expires_in":86400}"#),
    );
    cloud.respond(
        &format!("{CLOUD_BASE}/message"),
        Answer::new(200, r#"{"id":"gc-in-1"}"#),
    );
    cloud.respond(
        &format!("{CLOUD_BASE}/structured/response"),
        Answer::new(200, r#"{"id":"gc-in-2"}"#),
    );
    let mut options = HostOptions::new(&app.url("/patchbay"), &integration.url("/outbound"));
    options.extra_channel_toml = format!(
        r#"
[upstreams.genesys]
kind = "genesys-3pm"
retry = {{ max_attempts = 5, base_delay_ms = 50, max_delay_ms = 200 }}
settings = {{ api_url = "{genesys}", ccid = "ccid-e2e", channel_id = "slack-channel" }}
secrets = {{ signing_secret = "{CHANNEL_SECRET_3PM}", webhook_secret = "{APP_SECRET_3PM}" }}

[upstreams.cloud]
kind = "genesys-open-messaging"
retry = {{ max_attempts = 5, base_delay_ms = 50, max_delay_ms = 200 }}
settings = {{ api_url = "{cloud}", login_url = "{cloud}/oauth/token", integration_id = "integration-1", client_id = "client-e2e" }}
secrets = {{ client_secret = "client-secret-e2e", webhook_secret = "{CLOUD_WEBHOOK_SECRET}" }}

[channels.slack]
adapter = "slack"
upstream = "genesys"
settings = {{ api_base_url = "{slack}", bot_user_id = "U0BOT" }}
secrets = {{ signing_secret = "{SLACK_SECRET}", bot_token = "xoxb-genesys" }}

[channels.sms]
adapter = "sms"
upstream = "cloud"
settings = {{ account_sid = "{ACCOUNT}", from = "+15005550006", api_base_url = "{twilio}" }}
secrets = {{ auth_token = "{AUTH_TOKEN}" }}
"#,
        genesys = genesys.url("/nexus/v3"),
        cloud = cloud.url(""),
        slack = slack_url,
        twilio = twilio.url(""),
    );
    let host = Host::start(options);
    Setup {
        genesys,
        cloud,
        slack,
        twilio,
        host,
    }
}

impl Setup {
    async fn slack_message(&self, event_id: &str, text: &str) -> reqwest::Response {
        let body = json!({"type": "event_callback", "team_id": "T1", "event_id": event_id,
            "event": {"type": "message", "channel": "D1", "user": "U2", "text": text,
                      "ts": "1763719199.000100"}});
        let bytes = serde_json::to_vec(&body).expect("body");
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs()
            .to_string();
        let mut base = format!("v0:{ts}:").into_bytes();
        base.extend_from_slice(&bytes);
        let signature = format!("v0={}", hmac_sha256_hex(SLACK_SECRET.as_bytes(), &base));
        self.host
            .post_raw(
                "/webhooks/slack",
                &[
                    ("x-slack-request-timestamp", ts.as_str()),
                    ("x-slack-signature", signature.as_str()),
                ],
                bytes,
            )
            .await
    }

    /// An agent's message from Multicloud, signed with the app secret.
    async fn agent_3pm(&self, message_id: &str, customer: &str, text: &str) -> reqwest::Response {
        let body = json!({"channel": {"id": "slack-channel", "type": "custom",
            "from": {"id": "slack-channel"}, "to": {"id": customer}, "messageId": message_id},
            "type": "Text", "text": text});
        let bytes = serde_json::to_vec(&body).expect("body");
        let signature = format!("sha1={}", hmac_sha1_hex(APP_SECRET_3PM.as_bytes(), &bytes));
        self.host
            .post_raw(
                "/upstreams/genesys/webhook",
                &[
                    ("x-hub-signature", signature.as_str()),
                    ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
                ],
                bytes,
            )
            .await
    }

    /// An agent's message from Genesys Cloud, signed as Open Messaging signs.
    async fn agent_cloud(&self, body: &Value) -> reqwest::Response {
        let bytes = serde_json::to_vec(body).expect("body");
        let signature = format!(
            "sha256={}",
            base64_encode(&hmac_sha256(CLOUD_WEBHOOK_SECRET.as_bytes(), &bytes))
        );
        self.host
            .post_raw(
                "/upstreams/cloud/webhook",
                &[("x-hub-signature-256", signature.as_str())],
                bytes,
            )
            .await
    }

    async fn customer_sms(&self, sid: &str, text: &str) -> reqwest::Response {
        let url = format!("{}/webhooks/sms", self.host.url);
        let pairs = [
            ("MessageSid", sid),
            ("AccountSid", ACCOUNT),
            ("From", CUSTOMER_PHONE),
            ("To", "+15005550006"),
            ("Body", text),
        ];
        let params: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        client()
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header(
                "x-twilio-signature",
                twilio_signature(AUTH_TOKEN, &url, &params),
            )
            .body(body)
            .send()
            .await
            .expect("post")
    }
}

#[tokio::test]
async fn slack_customer_and_multicloud_agent_talk_both_ways_with_receipts() {
    let s = setup().await;
    assert_eq!(
        s.slack_message("Ev1", "my order is late").await.status(),
        200
    );

    // The customer's message reaches Genesys, signed, with the contact centre id.
    let path = "/nexus/v3/channels/slack-channel/messages";
    let to_genesys = s.genesys.wait_for_path(path, 1).await;
    let sent = &to_genesys[0];
    assert_eq!(sent.header("x-ccid"), Some("ccid-e2e"));
    assert_eq!(
        sent.header("x-hub-signature"),
        Some(
            format!(
                "sha1={}",
                hmac_sha1_hex(CHANNEL_SECRET_3PM.as_bytes(), &sent.body)
            )
            .as_str()
        )
    );
    let entry = &sent.json()["messages"][0];
    assert_eq!(entry["type"], json!("Text"));
    assert_eq!(entry["text"], json!("my order is late"));
    let customer = entry["channel"]["from"]["id"]
        .as_str()
        .expect("customer key")
        .to_string();
    assert_eq!(customer, "slack:D1", "a direct message, not a thread");
    assert!(sent.header("x-b3-traceid").is_some(), "trace id carried");

    // The agent answers; Patchbay acknowledges with the id Genesys knows.
    let ack = s
        .agent_3pm("1613474523265-0", &customer, "On its way!")
        .await;
    assert_eq!(ack.status(), 200);
    let ack: Value = serde_json::from_slice(&ack.bytes().await.expect("ack")).expect("ack json");
    assert_eq!(ack, json!({"messageId": "1613474523265-0"}));

    let posted = s.slack.wait_for_path("/api/chat.postMessage", 1).await;
    let slack_body = posted[0].json();
    assert_eq!(slack_body["channel"], json!("D1"));
    assert_eq!(slack_body["text"], json!("On its way!"));

    // Slack's acceptance goes back to Genesys as a receipt naming its id.
    let to_genesys = s.genesys.wait_for_path(path, 2).await;
    let receipt = &to_genesys[1].json()["messages"][0];
    assert_eq!(receipt["type"], json!("Receipt"));
    assert_eq!(receipt["status"], json!("Delivered"));
    assert_eq!(receipt["channel"]["messageId"], json!("1613474523265-0"));
    assert_eq!(receipt["channel"]["to"]["id"], json!(customer));
    assert_eq!(
        to_genesys[1].header("x-b3-traceid"),
        Some("80f198ee56343ba864fe8b2a57d3eff7"),
        "the agent message's trace comes back with its receipt"
    );

    // A redelivery of the same webhook is acknowledged alike and sent once.
    let again = s
        .agent_3pm("1613474523265-0", &customer, "On its way!")
        .await;
    assert_eq!(again.status(), 200);
    s.host.idle().await;
    assert_eq!(s.slack.received_on("/api/chat.postMessage").len(), 1);
}

#[tokio::test]
async fn a_platform_webhook_with_a_bad_signature_is_401_and_nothing_is_stored() {
    let s = setup().await;
    let body =
        br#"{"channel":{"to":{"id":"slack:D1"},"messageId":"m-1"},"type":"Text","text":"x"}"#;
    let res = s
        .host
        .post_raw(
            "/upstreams/genesys/webhook",
            &[(
                "x-hub-signature",
                "sha1=0000000000000000000000000000000000000000",
            )],
            body.to_vec(),
        )
        .await;
    assert_eq!(res.status(), 401);
    let res = s
        .host
        .post_raw("/upstreams/cloud/webhook", &[], body.to_vec())
        .await;
    assert_eq!(res.status(), 401);
    let res = s
        .host
        .post_raw("/upstreams/nowhere/webhook", &[], body.to_vec())
        .await;
    assert_eq!(res.status(), 404);
    assert_eq!(s.host.counts()["inbound"]["pending"], json!(0));
    assert_eq!(s.host.counts()["inbound"]["done"], json!(0));
}

#[tokio::test]
async fn genesys_answering_503_is_retried_with_the_same_ids_and_delivered_once() {
    let s = setup().await;
    let path = "/nexus/v3/channels/slack-channel/messages";
    s.genesys.script_path(
        path,
        vec![
            Answer::new(503, r#"{"status":{"code":503,"message":"busy"}}"#),
            Answer::new(503, ""),
        ],
    );
    assert_eq!(s.slack_message("Ev2", "hello?").await.status(), 200);
    let tries = s.genesys.wait_for_path(path, 3).await;
    let ids: Vec<Value> = tries
        .iter()
        .map(|r| r.json()["messages"][0]["channel"]["messageId"].clone())
        .collect();
    assert!(ids[0].is_string());
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "same id on every try: {ids:?}"
    );
    assert_eq!(
        tries.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![503, 503, 200]
    );
    s.host.idle().await;
    assert_eq!(
        s.genesys.received_on(path).len(),
        3,
        "delivered once, no more"
    );
}

#[tokio::test]
async fn sms_customer_and_genesys_cloud_with_oauth_and_a_degraded_quick_reply() {
    let s = setup().await;
    // The first message call is refused once: the token is fetched again.
    s.cloud.script_path(
        &format!("{CLOUD_BASE}/message"),
        vec![Answer::new(401, r#"{"message":"token expired"}"#)],
    );
    assert_eq!(s.customer_sms("SM-in-1", "hello").await.status(), 200);
    let sent = s
        .cloud
        .wait_for_path(&format!("{CLOUD_BASE}/message"), 2)
        .await;
    assert_eq!(sent[0].status, 401);
    assert_eq!(sent[1].status, 200);
    assert_eq!(sent[1].header("authorization"), Some("Bearer token-1"));
    let body = sent[1].json();
    let customer = format!("sms:{CUSTOMER_PHONE}");
    assert_eq!(body["channel"]["from"]["id"], json!(customer));
    assert_eq!(body["channel"]["from"]["idType"], json!("Opaque"));
    assert_eq!(body["text"], json!("hello"));
    assert_eq!(
        sent[0].json()["channel"],
        body["channel"],
        "the retry carries the same messageId and time"
    );
    let tokens = s.cloud.received_on("/oauth/token");
    assert_eq!(tokens.len(), 2, "one token, then a fresh one after the 401");

    // The bot offers quick replies; SMS shows them as numbers.
    let offer = json!({"id": "qr-1", "channel": {"to": {"id": customer}, "time": "2026-12-02T00:00:00.000Z"},
    "type": "Structured", "text": "Which one?", "direction": "Outbound",
    "content": [
        {"contentType": "QuickReply", "quickReply": {"text": "Billing", "payload": "billing", "action": "Message"}},
        {"contentType": "QuickReply", "quickReply": {"text": "Support", "payload": "support", "action": "Message"}}
    ]});
    assert_eq!(s.agent_cloud(&offer).await.status(), 200);
    let texts = s.twilio.wait_for_path(&twilio_messages(), 1).await;
    let sms_body: Vec<(String, String)> = form_urlencoded::parse(&texts[0].body)
        .into_owned()
        .collect();
    let text = &sms_body.iter().find(|(k, _)| k == "Body").expect("Body").1;
    assert!(
        text.contains("Which one?") && text.contains("2") && text.contains("Support"),
        "{text}"
    );

    // The customer's "2" reaches Genesys as the button response to that offer.
    assert_eq!(s.customer_sms("SM-in-2", "2").await.status(), 200);
    let answers = s
        .cloud
        .wait_for_path(&format!("{CLOUD_BASE}/structured/response"), 1)
        .await;
    let answer = answers[0].json();
    assert_eq!(answer["originatingMessageId"], json!("qr-1"));
    assert_eq!(answer["buttonResponse"]["payload"], json!("support"));
    assert_eq!(answer["buttonResponse"]["type"], json!("QuickReply"));

    // The delivered offer is reported to Genesys with its id.
    let receipts = s
        .cloud
        .wait_for_path(&format!("{CLOUD_BASE}/receipt"), 1)
        .await;
    let receipt = receipts[0].json();
    assert_eq!(receipt["id"], json!("qr-1"));
    assert_eq!(receipt["status"], json!("Delivered"));
    assert_eq!(
        s.cloud.received_on("/oauth/token").len(),
        2,
        "the token is cached"
    );

    // The agent types: SMS shows no typing, and Genesys gets no receipt for it.
    let typing = json!({"id": "ev-1", "channel": {"to": {"id": customer}, "time": "2026-12-02T00:00:02.000Z"},
        "type": "Event", "events": [{"eventType": "Typing", "typing": {"type": "On", "duration": 5000}}]});
    assert_eq!(s.agent_cloud(&typing).await.status(), 200);
    s.host.idle().await;
    assert_eq!(
        s.cloud.received_on(&format!("{CLOUD_BASE}/receipt")).len(),
        1
    );
    assert_eq!(s.twilio.received_on(&twilio_messages()).len(), 1);
}

#[tokio::test]
async fn an_acknowledged_platform_webhook_survives_sigkill() {
    // Slack is unreachable: the agent's message can only be stored.
    let port = free_port();
    let mut s = setup_with_slack_port(Some(port)).await;
    let customer = "slack:D1";
    assert_eq!(
        s.agent_3pm("g-kill-1", customer, "still there?")
            .await
            .status(),
        200
    );
    s.host.kill();
    let slack = Mock::start_on(port).await;
    slack.respond(
        "/api/chat.postMessage",
        Answer::new(
            200,
            r#"{"ok":true,"channel":"D1","ts":"1763719300.000300"}"#,
        ),
    );
    s.host.spawn();
    let posted = slack.wait_for_path("/api/chat.postMessage", 1).await;
    assert_eq!(posted[0].json()["text"], json!("still there?"));
    s.host.idle().await;
    assert_eq!(slack.received_on("/api/chat.postMessage").len(), 1);
    // Its receipt reaches Genesys with Genesys' id.
    let receipts = s
        .genesys
        .wait_for_path("/nexus/v3/channels/slack-channel/messages", 1)
        .await;
    assert_eq!(
        receipts[0].json()["messages"][0]["channel"]["messageId"],
        json!("g-kill-1")
    );
}

#[tokio::test]
async fn a_platform_cannot_reach_another_upstreams_channel() {
    let s = setup().await;
    // `sms` sends to the Cloud upstream: Multicloud may not write to it.
    let customer = format!("sms:{CUSTOMER_PHONE}");
    let ack = s
        .agent_3pm("g-cross-1", &customer, "hello from elsewhere")
        .await;
    assert_eq!(ack.status(), 200, "signed and well formed: acknowledged");
    s.host.idle().await;
    assert_eq!(s.host.counts()["inbound"]["dead"], json!(1));
    assert!(s.twilio.received_on(&twilio_messages()).is_empty());
    let (status, out) = s.host.cli(&["dead-letters", "list"]);
    assert!(status.success());
    assert!(out.contains("not served by upstream genesys"), "{out}");
}
