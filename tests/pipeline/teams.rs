//! Microsoft Teams end to end: one mock plays the Bot Framework (OpenID
//! metadata, signing keys, token endpoint, connector) around a real `patchbay
//! serve`. Tokens are minted with the test-only key pair of the Teams adapter.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use crate::harness::*;

const APP_ID: &str = "e2e-bot-app-id";
const CONVERSATION: &str = "a:1PersonalChat";
const ACTIVITIES: &str = "/v3/conversations/a%3A1PersonalChat/activities";

fn key_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/teams/tests/keys")
        .join(name)
}

fn key_set(name: &str) -> String {
    std::fs::read_to_string(key_file(name)).expect("jwks")
}

struct Teams {
    app: Mock,
    bf: Mock,
    host: Host,
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

async fn setup() -> Teams {
    let app = Mock::start().await;
    let integration = Mock::start().await;
    let bf = Mock::start().await;
    bf.respond(
        "/openid",
        Answer::new(200, &json!({"jwks_uri": bf.url("/keys")}).to_string()),
    );
    bf.respond("/keys", Answer::new(200, &key_set("jwks.json")));
    bf.respond(
        "/token",
        Answer::new(
            200,
            r#"{"token_type":"Bearer","expires_in":3600,"access_token":"tok-1"}"#,
        ),
    );
    bf.respond(ACTIVITIES, Answer::new(201, r#"{"id":"act-1"}"#));
    let mut options = HostOptions::new(&app.url("/patchbay"), &integration.url("/outbound"));
    options.extra_channel_toml = format!(
        r#"
[channels.teams]
adapter = "teams"
secrets = {{ app_password = "e2e-app-password" }}
[channels.teams.settings]
app_id = "{APP_ID}"
openid_metadata_url = "{openid}"
token_url = "{token}"
service_url = "{service}"
service_url_prefixes = ["{service}"]
"#,
        openid = bf.url("/openid"),
        token = bf.url("/token"),
        service = bf.url("/"),
    );
    let host = Host::start(options);
    Teams { app, bf, host }
}

impl Teams {
    fn token(&self, kid: &str, key: &str, audience: &str) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.into());
        let claims = json!({
            "iss": "https://api.botframework.com",
            "aud": audience,
            "exp": now_secs() + 600,
            "nbf": now_secs() - 60,
            "serviceurl": self.bf.url("/"),
        });
        let der = std::fs::read(key_file(key)).expect("key");
        encode(&header, &claims, &EncodingKey::from_rsa_der(&der)).expect("sign")
    }

    async fn activity(&self, activity: &Value, token: &str) -> reqwest::Response {
        let auth = format!("Bearer {token}");
        self.host
            .post_raw(
                "/webhooks/teams",
                &[("authorization", &auth)],
                serde_json::to_vec(activity).expect("body"),
            )
            .await
    }

    fn message(&self, id: &str, text: &str) -> Value {
        json!({"type": "message", "id": id, "channelId": "msteams", "serviceUrl": self.bf.url("/"),
               "from": {"id": "29:ann", "name": "Ann"}, "recipient": {"id": "28:bot", "name": "Bot"},
               "conversation": {"id": CONVERSATION, "tenantId": "t-1"}, "text": text})
    }

    async fn reply(&self, content: Value) -> String {
        let message = json!({"conversation": {"id": CONVERSATION},
                             "context": {"teams_service_url": self.bf.url("/")},
                             "content": content});
        self.host.send_id("teams", &message).await
    }
}

#[tokio::test]
async fn inbound_activity_with_a_valid_token_reaches_the_application() {
    let t = setup().await;
    let token = t.token("test-key-1", "test.der", APP_ID);
    let res = t
        .activity(&t.message("m-1", "Where is my order?"), &token)
        .await;
    assert_eq!(res.status(), 200);
    let got = t.app.wait_for(1).await;
    let msg = got[0].json();
    assert_eq!(msg["channel"], "teams");
    assert_eq!(
        msg["content"],
        json!({"type": "text", "text": "Where is my order?"})
    );
    assert_eq!(msg["context"]["teams_service_url"], t.bf.url("/"));
    // The keys were fetched through the metadata document, once.
    assert_eq!(t.bf.received_on("/openid").len(), 1);

    // The same activity again is acknowledged and dropped.
    assert_eq!(
        t.activity(&t.message("m-1", "Where is my order?"), &token)
            .await
            .status(),
        200
    );
    t.host.idle().await;
    assert_eq!(t.app.received().len(), 1);
}

#[tokio::test]
async fn a_token_for_another_bot_is_refused_and_nothing_stored() {
    let t = setup().await;
    let token = t.token("test-key-1", "test.der", "some-other-bot");
    let res = t.activity(&t.message("m-2", "hi"), &token).await;
    assert_eq!(res.status(), 401);
    let missing = t
        .host
        .post_raw(
            "/webhooks/teams",
            &[],
            serde_json::to_vec(&t.message("m-3", "hi")).expect("b"),
        )
        .await;
    assert_eq!(missing.status(), 401);
    t.host.idle().await;
    assert!(t.app.received().is_empty());
    assert_eq!(t.host.counts()["inbound"]["pending"], 0);
}

#[tokio::test]
async fn rotated_signing_keys_are_fetched_again() {
    let t = setup().await;
    let old = t.token("test-key-1", "test.der", APP_ID);
    assert_eq!(
        t.activity(&t.message("m-1", "one"), &old).await.status(),
        200
    );
    // Microsoft rotates: the published set now holds only the new key.
    t.bf.respond("/keys", Answer::new(200, &key_set("other_jwks.json")));
    let new = t.token("other-key", "other.der", APP_ID);
    assert_eq!(
        t.activity(&t.message("m-2", "two"), &new).await.status(),
        200
    );
    assert_eq!(t.bf.received_on("/keys").len(), 2);
    t.app.wait_for(2).await;
}

#[tokio::test]
async fn reply_uses_a_cached_client_credentials_token() {
    let t = setup().await;
    let first = t
        .reply(
            json!({"type": "quick_replies", "text": "Helpful?", "replies": [
            {"title": "Yes", "payload": "Y"}, {"title": "No", "payload": "N"}]}),
        )
        .await;
    t.reply(json!({"type": "text", "text": "thanks"})).await;
    let sent = t.bf.wait_for_path(ACTIVITIES, 2).await;
    assert!(
        sent.iter()
            .all(|r| r.header("authorization") == Some("Bearer tok-1"))
    );
    let activity = sent[0].json();
    assert_eq!(activity["type"], "message");
    assert_eq!(
        activity["suggestedActions"]["actions"][1],
        json!({"type": "imBack", "title": "No", "value": "No"})
    );
    assert_eq!(t.bf.received_on("/token").len(), 1, "the token is cached");
    let token_form = String::from_utf8(t.bf.received_on("/token")[0].body.clone()).expect("utf8");
    assert!(token_form.contains("grant_type=client_credentials"));

    let receipts = t.app.wait_for(2).await;
    let first_receipt = receipts
        .iter()
        .map(|r| r.json())
        .find(|r| r["content"]["message_id"] == first.as_str())
        .expect("receipt");
    assert_eq!(first_receipt["content"]["status"], "Delivered");
    assert_eq!(first_receipt["content"]["provider_message_id"], "act-1");
}

#[tokio::test]
async fn a_tapped_suggested_action_reaches_the_application_as_its_postback() {
    let t = setup().await;
    // Suggested actions are imBack: Teams posts the title as the customer's text.
    t.reply(
        json!({"type": "quick_replies", "text": "Helpful?", "replies": [
        {"title": "Yes", "payload": "HELPFUL_YES"}, {"title": "No", "payload": "HELPFUL_NO"}]}),
    )
    .await;
    let sent = t.bf.wait_for_path(ACTIVITIES, 1).await;
    assert_eq!(
        sent[0].json()["suggestedActions"]["actions"][0]["type"],
        "imBack"
    );
    let token = t.token("test-key-1", "test.der", APP_ID);
    let res = t.activity(&t.message("m-tap", "No"), &token).await;
    assert_eq!(res.status(), 200);
    let postback = t
        .app
        .wait_for(2)
        .await
        .into_iter()
        .map(|r| r.json())
        .find(|m| m["content"]["type"] == "postback")
        .expect("the tap arrives as a postback");
    assert_eq!(
        postback["content"],
        json!({"type": "postback", "payload": "HELPFUL_NO", "text": "No"})
    );
}

#[tokio::test]
async fn a_refused_token_is_refreshed_once_and_the_send_repeated() {
    let t = setup().await;
    t.bf.script_path(
        "/token",
        vec![
            Answer::new(200, r#"{"expires_in":3600,"access_token":"tok-stale"}"#),
            Answer::new(200, r#"{"expires_in":3600,"access_token":"tok-fresh"}"#),
        ],
    );
    t.bf.script_path(ACTIVITIES, vec![Answer::new(401, "")]);
    t.reply(json!({"type": "text", "text": "hello"})).await;
    let sent = t.bf.wait_for_path(ACTIVITIES, 2).await;
    assert_eq!(sent[0].header("authorization"), Some("Bearer tok-stale"));
    assert_eq!(sent[1].header("authorization"), Some("Bearer tok-fresh"));
    let receipts = t.app.wait_for(1).await;
    assert_eq!(receipts[0].json()["content"]["status"], "Delivered");
}

#[tokio::test]
async fn rate_limit_is_honoured_then_delivered() {
    let t = setup().await;
    t.bf.script_path(
        ACTIVITIES,
        vec![Answer::new(429, "").header("retry-after", "1")],
    );
    t.reply(json!({"type": "text", "text": "hello"})).await;
    let sent = t.bf.wait_for_path(ACTIVITIES, 2).await;
    let gap = sent[1].at.duration_since(sent[0].at);
    assert!(gap >= Duration::from_millis(900), "retried after {gap:?}");
    let receipts = t.app.wait_for(1).await;
    assert_eq!(receipts[0].json()["content"]["status"], "Delivered");
}

#[tokio::test]
async fn bot_removed_from_conversation_is_a_failed_receipt_530() {
    let t = setup().await;
    t.bf.respond(
        ACTIVITIES,
        Answer::new(403, r#"{"error":{"code":"BotNotInConversationRoster"}}"#),
    );
    let id = t.reply(json!({"type": "text", "text": "hello"})).await;
    let receipts = t.app.wait_for(1).await;
    let receipt = &receipts[0].json()["content"];
    assert_eq!(receipt["status"], "Failed");
    assert_eq!(receipt["message_id"], id.as_str());
    assert_eq!(receipt["reasons"][0]["code"], 530);
}
