//! Webex end to end: a mock Webex API and a mock application around a real
//! `patchbay serve`.

use std::time::Duration;

use patchbay_plugin_sdk::signature::hmac_sha1_hex;
use serde_json::{Value, json};

use crate::harness::*;

const SECRET: &str = "webex-webhook-secret-e2e";
const TOKEN: &str = "webex-bot-token-e2e";
const BOT: &str = "PERSON_BOT";
const ALICE: &str = "PERSON_ALICE";
const ROOM: &str = "ROOM_SUPPORT";

struct Webex {
    app: Mock,
    webex: Mock,
    host: Host,
}

async fn setup() -> Webex {
    let app = Mock::start().await;
    let integration = Mock::start().await;
    let webex = Mock::start().await;
    webex.respond(
        "/v1/messages",
        Answer::new(200, &json!({"id": "MSG_SENT", "roomId": ROOM}).to_string()),
    );
    let mut options = HostOptions::new(&app.url("/patchbay"), &integration.url("/outbound"));
    options.extra_channel_toml = format!(
        r#"
[channels.webex]
adapter = "webex"
settings = {{ api_base_url = "{api}" }}
secrets = {{ bot_token = "{TOKEN}", webhook_secret = "{SECRET}" }}
"#,
        api = webex.url(""),
    );
    let host = Host::start(options);
    Webex { app, webex, host }
}

fn notification(resource: &str, id: &str, person: &str) -> Vec<u8> {
    json!({
        "id": "WEBHOOK_1", "name": "patchbay", "resource": resource, "event": "created",
        "createdBy": BOT, "ownedBy": "creator", "status": "active",
        "data": {"id": id, "roomId": ROOM, "personId": person},
    })
    .to_string()
    .into_bytes()
}

impl Webex {
    async fn notify(&self, body: Vec<u8>) -> reqwest::Response {
        let sig = hmac_sha1_hex(SECRET.as_bytes(), &body);
        self.host
            .post_raw(
                "/webhooks/webex",
                &[
                    ("content-type", "application/json"),
                    ("x-spark-signature", &sig),
                ],
                body,
            )
            .await
    }

    async fn reply(&self, content: Value) -> String {
        self.host
            .send_id(
                "webex",
                &json!({"conversation": {"id": ROOM}, "content": content}),
            )
            .await
    }
}

#[tokio::test]
async fn a_message_is_looked_up_and_reaches_the_application() {
    let s = setup().await;
    s.webex.respond(
        "/v1/messages/MSG_1",
        Answer::new(
            200,
            &json!({"id": "MSG_1", "roomId": ROOM, "roomType": "group", "personId": ALICE,
                    "personEmail": "alice@example.com", "markdown": "where is **order 42**?",
                    "text": "where is order 42?", "created": "2026-11-21T09:00:01.000Z"})
            .to_string(),
        ),
    );
    // The bot's own message first: acknowledged, never looked up or delivered.
    assert_eq!(
        s.notify(notification("messages", "MSG_OWN", BOT))
            .await
            .status(),
        200
    );
    assert_eq!(
        s.notify(notification("messages", "MSG_1", ALICE))
            .await
            .status(),
        200
    );
    // Webex retries when it misses the acknowledgement: delivered once.
    assert_eq!(
        s.notify(notification("messages", "MSG_1", ALICE))
            .await
            .status(),
        200
    );

    let got = s.app.wait_for(1).await;
    let msg = got[0].json();
    assert_eq!(msg["channel"], "webex");
    assert_eq!(msg["conversation"]["id"], ROOM);
    assert_eq!(msg["sender"]["id"], ALICE);
    assert_eq!(
        msg["content"],
        json!({"type": "text", "format": "markdown", "text": "where is **order 42**?"})
    );
    let lookup = s.webex.received_on("/v1/messages/MSG_1");
    assert_eq!(lookup.len(), 1);
    assert_eq!(
        lookup[0].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    s.host.idle().await;
    assert_eq!(
        s.app.received().len(),
        1,
        "own message or duplicate delivered"
    );
    assert!(s.webex.received_on("/v1/messages/MSG_OWN").is_empty());

    let forged = s
        .host
        .post_raw(
            "/webhooks/webex",
            &[("x-spark-signature", "00ff")],
            notification("messages", "MSG_2", ALICE),
        )
        .await;
    assert_eq!(forged.status(), 401);
}

#[tokio::test]
async fn a_card_submission_is_a_postback_and_the_reply_is_a_card() {
    let s = setup().await;
    s.webex.respond(
        "/v1/attachment/actions/ACTION_1",
        Answer::new(
            200,
            &json!({"id": "ACTION_1", "type": "submit", "messageId": "MSG_CARD",
                    "roomId": ROOM, "personId": ALICE, "inputs": {"payload": "SLOT_AM"}})
            .to_string(),
        ),
    );
    assert_eq!(
        s.notify(notification("attachmentActions", "ACTION_1", ALICE))
            .await
            .status(),
        200
    );
    let got = s.app.wait_for(1).await;
    assert_eq!(
        got[0].json()["content"],
        json!({"type": "postback", "payload": "SLOT_AM"})
    );

    let id = s
        .reply(
            json!({"type": "buttons", "text": "Anything else?", "buttons": [
            {"title": "No, thanks", "action": {"type": "postback", "payload": "DONE"}},
            {"title": "Track", "action": {"type": "link", "url": "https://track.example/42"}}]}),
        )
        .await;
    let sent = s.webex.wait_for_path("/v1/messages", 1).await;
    let body = sent[0].json();
    assert_eq!(body["roomId"], ROOM);
    assert_eq!(body["markdown"], "Anything else?");
    let card = &body["attachments"][0];
    assert_eq!(
        card["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(card["content"]["actions"][0]["data"]["payload"], "DONE");
    assert_eq!(
        card["content"]["actions"][1]["url"],
        "https://track.example/42"
    );

    let receipts = s.app.wait_for(2).await;
    let receipt = receipts[1].json();
    assert_eq!(receipt["content"]["status"], "Delivered");
    assert_eq!(receipt["content"]["message_id"], id.as_str());
    assert_eq!(receipt["content"]["provider_message_id"], "MSG_SENT");
}

#[tokio::test]
async fn rate_limited_send_is_retried_and_a_missing_room_fails_530() {
    let s = setup().await;
    s.webex.script_path(
        "/v1/messages",
        vec![
            Answer::new(429, r#"{"message":"Too Many Requests"}"#).header("retry-after", "1"),
            Answer::new(200, &json!({"id": "MSG_OK", "roomId": ROOM}).to_string()),
            Answer::new(
                404,
                r#"{"message":"Could not find a room with provided ID."}"#,
            ),
        ],
    );
    s.reply(json!({"type": "text", "text": "first"})).await;
    let sent = s.webex.wait_for_path("/v1/messages", 2).await;
    assert!(sent[1].at.duration_since(sent[0].at) >= Duration::from_millis(900));
    let first = s.app.wait_for(1).await;
    assert_eq!(first[0].json()["content"]["status"], "Delivered");
    assert_eq!(first[0].json()["content"]["provider_message_id"], "MSG_OK");

    s.reply(json!({"type": "text", "text": "second"})).await;
    let got = s.app.wait_for(2).await;
    let failed = got[1].json();
    assert_eq!(failed["content"]["status"], "Failed");
    assert_eq!(failed["content"]["reasons"][0]["code"], 530);
    s.host.idle().await;
    assert_eq!(
        s.webex.received_on("/v1/messages").len(),
        3,
        "404 is not retried"
    );
}

#[tokio::test]
async fn more_buttons_than_a_card_shows_go_out_as_numbered_text() {
    let s = setup().await;
    // Webex renders at most 5 actions on a card: 7 become a numbered menu…
    s.reply(json!({"type": "buttons", "text": "Pick a slot", "buttons": buttons(7)}))
        .await;
    let sent = s.webex.wait_for_path("/v1/messages", 1).await;
    let body = sent[0].json();
    assert!(body.get("attachments").is_none(), "no card: {body}");
    let text = body["markdown"]
        .as_str()
        .or(body["text"].as_str())
        .expect("text");
    assert!(text.contains("7. Slot 7"), "{text}");
    // …while 5 stay a card with 5 actions.
    s.reply(json!({"type": "buttons", "text": "Pick one", "buttons": buttons(5)}))
        .await;
    let sent = s.webex.wait_for_path("/v1/messages", 2).await;
    let card = &sent[1].json()["attachments"][0]["content"];
    assert_eq!(card["actions"].as_array().map(Vec::len), Some(5));
}

#[tokio::test]
async fn text_is_split_by_bytes_as_webex_counts_them() {
    let s = setup().await;
    // 3000 CJK characters are 9000 bytes: over Webex's 7439-byte limit,
    // though well under 7439 characters.
    let text = "語".repeat(3000);
    s.reply(json!({"type": "text", "text": text})).await;
    let sent = s.webex.wait_for_path("/v1/messages", 2).await;
    let parts: Vec<String> = sent
        .iter()
        .map(|r| r.json()["text"].as_str().expect("text").to_string())
        .collect();
    for part in &parts {
        assert!(part.len() <= 7439, "a {}-byte message", part.len());
    }
    assert_eq!(parts.concat(), text, "nothing lost, in order");
}

fn buttons(n: usize) -> Vec<Value> {
    (1..=n)
        .map(|i| json!({"title": format!("Slot {i}"), "action": {"type": "postback", "payload": format!("SLOT_{i}")}}))
        .collect()
}
