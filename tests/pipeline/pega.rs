//! Pega DMS end to end: a Teams customer (a mock Bot Framework) and a mock
//! DMS around a real `patchbay serve`, JWT both ways.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde_json::{Value, json};

use crate::harness::*;

const APP_ID: &str = "pega-e2e-bot";
const CONVERSATION: &str = "a:1PegaChat";
const ACTIVITIES: &str = "/v3/conversations/a%3A1PegaChat/activities";
const CONNECTION: &str = "conn-e2e";
const JWT_SECRET: &str = "dms-jwt-secret-e2e";
const CUSTOMER: &str = "teams:a:1PegaChat";

fn key_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/teams/tests/keys")
        .join(name)
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

struct Pega {
    dms: Mock,
    bf: Mock,
    host: Host,
}

async fn setup() -> Pega {
    let app = Mock::start().await;
    let integration = Mock::start().await;
    let dms = Mock::start().await;
    let bf = Mock::start().await;
    bf.respond(
        "/openid",
        Answer::new(200, &json!({"jwks_uri": bf.url("/keys")}).to_string()),
    );
    bf.respond(
        "/keys",
        Answer::new(
            200,
            &std::fs::read_to_string(key_file("jwks.json")).expect("jwks"),
        ),
    );
    bf.respond(
        "/token",
        Answer::new(
            200,
            r#"{"token_type":"Bearer","expires_in":3600,"access_token":"tok-1"}"#,
        ),
    );
    bf.respond(ACTIVITIES, Answer::new(201, r#"{"id":"act-1"}"#));
    dms.respond("/messages", Answer::new(200, ""));
    let mut options = HostOptions::new(&app.url("/patchbay"), &integration.url("/outbound"));
    options.extra_channel_toml = format!(
        r#"
[upstreams.pega]
kind = "pega-dms"
settings = {{ dms_url = "{dms}", connection_id = "{CONNECTION}" }}
secrets = {{ jwt_secret = "{JWT_SECRET}" }}

[channels.teams]
adapter = "teams"
upstream = "pega"
secrets = {{ app_password = "e2e-app-password" }}
[channels.teams.settings]
app_id = "{APP_ID}"
openid_metadata_url = "{openid}"
token_url = "{token}"
service_url = "{service}"
service_url_prefixes = ["{service}"]
[channels.teams.system_messages."en-US"]
channel_msg_failed = "Teams could not deliver that message."
"#,
        dms = dms.url("/messages"),
        openid = bf.url("/openid"),
        token = bf.url("/token"),
        service = bf.url("/"),
    );
    let host = Host::start(options);
    Pega { dms, bf, host }
}

impl Pega {
    /// A customer's activity, signed as the Bot Framework signs.
    async fn customer(&self, activity: Value) -> reqwest::Response {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("test-key-1".into());
        let claims = json!({"iss": "https://api.botframework.com", "aud": APP_ID,
            "exp": now_secs() + 600, "nbf": now_secs() - 60, "serviceurl": self.bf.url("/")});
        let der = std::fs::read(key_file("test.der")).expect("key");
        let token = encode(&header, &claims, &EncodingKey::from_rsa_der(&der)).expect("sign");
        self.host
            .post_raw(
                "/webhooks/teams",
                &[("authorization", &format!("Bearer {token}"))],
                serde_json::to_vec(&activity).expect("body"),
            )
            .await
    }

    fn activity(&self, id: &str, extra: Value) -> Value {
        let mut activity = json!({"type": "message", "id": id, "channelId": "msteams",
            "serviceUrl": self.bf.url("/"), "from": {"id": "29:ann", "name": "Ann"},
            "recipient": {"id": "28:bot", "name": "Bot"},
            "conversation": {"id": CONVERSATION, "tenantId": "t-1"}});
        if let (Some(a), Some(e)) = (activity.as_object_mut(), extra.as_object()) {
            a.extend(e.clone());
        }
        activity
    }

    /// A DMS call with a token minted `age` seconds ago for `iss`.
    async fn dms_call(&self, body: &Value, iss: &str, age: i64, secret: &str) -> reqwest::Response {
        let token = encode(
            &Header::new(Algorithm::HS256),
            &json!({"iss": iss, "iat": now_secs() - age}),
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("sign");
        self.host
            .post_raw(
                "/upstreams/pega/webhook",
                &[("authorization", &format!("Bearer {token}"))],
                serde_json::to_vec(body).expect("body"),
            )
            .await
    }
}

/// The claims of a token Patchbay sent DMS, checked as DMS checks them.
fn dms_claims(r: &Received) -> Value {
    assert_eq!(r.header("connection_id"), Some(CONNECTION));
    let token = r
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .expect("bearer token");
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_exp = false;
    validation.required_spec_claims = ["iss".to_string()].into();
    validation.set_issuer(&[CONNECTION]);
    decode::<Value>(
        token,
        &DecodingKey::from_secret(JWT_SECRET.as_bytes()),
        &validation,
    )
    .expect("a token DMS accepts")
    .claims
}

#[tokio::test]
async fn a_teams_customer_and_a_pega_agent_talk_with_jwt_both_ways() {
    let p = setup().await;
    let hello = p.activity("m-1", json!({"text": "Where is my order?"}));
    assert_eq!(p.customer(hello).await.status(), 200);
    let to_dms = p.dms.wait_for_path("/messages", 1).await;
    let claims = dms_claims(&to_dms[0]);
    assert!((now_secs() - claims["iat"].as_i64().expect("iat")).abs() < 60);
    let body = to_dms[0].json();
    assert_eq!(body["type"], json!("text"));
    assert_eq!(body["customer_id"], json!(CUSTOMER));
    assert_eq!(body["text"], json!(["Where is my order?"]));
    assert_eq!(body["customer_name"], json!("Ann"));

    // The bot offers a menu: Teams shows it, DMS is answered "success".
    let menu = json!({"type": "menu", "customer_id": CUSTOMER, "message_id": "dms-menu-1",
        "title": "How can we help?", "items": [{"text": "Billing", "payload": "BILLING"},
                                               {"text": "Support", "payload": "SUPPORT"}]});
    let ack = p.dms_call(&menu, CONNECTION, 5, JWT_SECRET).await;
    assert_eq!(ack.status(), 200);
    assert_eq!(ack.text().await.expect("body"), "success");
    let shown = p.bf.wait_for_path(ACTIVITIES, 1).await;
    let activity = shown[0].body.clone();
    let activity = String::from_utf8_lossy(&activity);
    assert!(
        activity.contains("Billing") && activity.contains("Support"),
        "{activity}"
    );

    // The customer picks "Support": DMS gets it as a postback.
    let choice = p.activity("m-2", json!({"value": {"payload": "SUPPORT"}}));
    assert_eq!(p.customer(choice).await.status(), 200);
    let to_dms = p.dms.wait_for_path("/messages", 2).await;
    let postback = to_dms[1].json();
    assert_eq!(postback["postback"], json!("SUPPORT"));
    dms_claims(&to_dms[1]);

    // The agent ends the session: delivered to the channel (Teams shows
    // nothing for it), and no receipt goes back to DMS.
    let end = json!({"type": "csr_end_session", "customer_id": CUSTOMER});
    assert_eq!(
        p.dms_call(&end, CONNECTION, 1, JWT_SECRET).await.status(),
        200
    );
    p.host.idle().await;
    assert_eq!(p.dms.received_on("/messages").len(), 2);
    // Teams has no end-of-session display: the menu stays the only activity.
    assert_eq!(p.bf.received_on(ACTIVITIES).len(), 1);
}

#[tokio::test]
async fn forged_expired_or_foreign_tokens_are_403_and_nothing_is_stored() {
    let p = setup().await;
    let text =
        json!({"type": "text", "customer_id": CUSTOMER, "message_id": "dms-x", "text": ["hi"]});
    for (what, iss, age, secret) in [
        ("expired", CONNECTION, 301, JWT_SECRET),
        ("wrong issuer", "another-connection", 1, JWT_SECRET),
        ("forged", CONNECTION, 1, "not-the-secret"),
    ] {
        let res = p.dms_call(&text, iss, age, secret).await;
        assert_eq!(res.status(), 403, "{what}");
    }
    let unsigned = p
        .host
        .post_raw(
            "/upstreams/pega/webhook",
            &[],
            serde_json::to_vec(&text).expect("body"),
        )
        .await;
    assert_eq!(unsigned.status(), 403);
    assert_eq!(p.host.counts()["inbound"]["pending"], json!(0));
    assert_eq!(p.host.counts()["inbound"]["done"], json!(0));
    assert!(p.bf.received_on(ACTIVITIES).is_empty());
}

#[tokio::test]
async fn a_message_teams_cannot_deliver_is_told_to_dms_in_the_channels_words() {
    let p = setup().await;
    p.bf.script_path(
        ACTIVITIES,
        vec![Answer::new(
            404,
            r#"{"error":{"code":"ConversationNotFound"}}"#,
        )],
    );
    let text = json!({"type": "text", "customer_id": CUSTOMER, "message_id": "dms-t-1", "text": ["Are you there?"]});
    assert_eq!(
        p.dms_call(&text, CONNECTION, 1, JWT_SECRET).await.status(),
        200
    );
    let to_dms = p.dms.wait_for_path("/messages", 1).await;
    dms_claims(&to_dms[0]);
    let body = to_dms[0].json();
    assert_eq!(body["customer_id"], json!(CUSTOMER));
    assert_eq!(
        body["text"],
        json!(["Teams could not deliver that message."])
    );
}
