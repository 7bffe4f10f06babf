//! eGain end to end: an email customer (mail posted to `patchbay serve`,
//! replies over real SMTP) and a mock Conversation Hub: channel registration,
//! OAuth to the Hub, the Hub's callbacks with tokens Patchbay issues.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;
use crate::smtp_server::SmtpServer;

const INBOUND_TOKEN: &str = "inbound-token-egain";
const CALLBACK_ID: &str = "hub-callbacks";
const CALLBACK_SECRET: &str = "hub-callback-secret-e2e";
const CUSTOMER: &str = "email:alice@example.com";
const MESSAGES: &str = "/v3/conversations/messages";

struct Egain {
    hub: Mock,
    smtp: SmtpServer,
    host: Host,
}

async fn setup() -> Egain {
    setup_with("", |_| ()).await
}

/// With `upstream_toml` added to `[upstreams.egain]`, and the Hub prepared
/// before Patchbay starts.
async fn setup_with(upstream_toml: &str, prepare: impl FnOnce(&Mock)) -> Egain {
    let app = Mock::start().await;
    let integration = Mock::start().await;
    let hub = Mock::start().await;
    let smtp = SmtpServer::start().await;
    hub.respond(
        "/oauth2/token",
        Answer::new(
            200,
            r#"{"access_token":"hub-token-1","token_type":"Bearer","expires_in":3600}"#,
        ),
    );
    hub.respond(
        MESSAGES,
        Answer::new(202, r#"{"messages":{"message":[{"id":"hub-m-1"}]}}"#),
    );
    prepare(&hub);
    let mut options = HostOptions::new(&app.url("/patchbay"), &integration.url("/outbound"));
    options.extra_channel_toml = format!(
        r#"
[upstreams.egain]
kind = "egain"
secrets = {{ client_secret = "app-secret", callback_client_secret = "{CALLBACK_SECRET}" }}
{upstream_toml}
[upstreams.egain.settings]
api_url = "{api}"
token_url = "{token}"
client_id = "patchbay-app"
account_address = "support@shop.example"
callback_client_id = "{CALLBACK_ID}"
token_lifetime_secs = 2

[channels.email]
adapter = "email"
upstream = "egain"
secrets = {{ inbound_token = "{INBOUND_TOKEN}" }}
[channels.email.settings]
from = "Shop Support <support@shop.example>"
inbound = "sendgrid"
smtp = {{ host = "127.0.0.1", port = {port}, security = "none", hello_name = "gw.shop.example" }}
[channels.email.capabilities.outbound.attachments]
block = ["exe"]
"#,
        api = hub.url("/v3"),
        token = hub.url("/oauth2/token"),
        port = smtp.addr.port(),
    );
    let host = Host::start(options);
    Egain { hub, smtp, host }
}

impl Egain {
    /// A token from Patchbay's token endpoint, as the Hub fetches one.
    async fn token(&self) -> String {
        let res = self
            .host
            .post_raw(
                "/upstreams/egain/token",
                &[],
                json!({"clientId": CALLBACK_ID, "clientSecret": CALLBACK_SECRET})
                    .to_string()
                    .into_bytes(),
            )
            .await;
        assert_eq!(res.status(), 200);
        let answer = res.json_value().await;
        answer["accessToken"].as_str().expect("token").to_string()
    }

    /// The Hub's callback carrying `message`.
    async fn callback(&self, token: &str, message: Value) -> reqwest::Response {
        self.host
            .post_raw(
                "/upstreams/egain/webhook",
                &[("authorization", &format!("Bearer {token}"))],
                json!({"messages": {"message": [message]}})
                    .to_string()
                    .into_bytes(),
            )
            .await
    }
}

fn agent_text(id: &str, text: &str) -> Value {
    json!({"id": id, "type": "text", "sender": {"type": "egain_agent", "name": "Ann"},
           "recipient": {"type": "customer", "address": CUSTOMER}, "content": {"text": text}})
}

#[tokio::test]
async fn sync_creates_the_channel_from_the_config_and_a_second_run_changes_nothing() {
    let s = setup().await;
    s.hub.script_path(
        "/v3/channels",
        vec![
            Answer::new(200, r#"{"channel": []}"#),
            Answer::new(201, r#"{"id": "ch-1"}"#),
        ],
    );
    let (status, out) = s.host.cli_async(&["upstreams", "sync", "egain"]).await;
    assert!(status.success(), "{out}");
    assert!(out.contains("email: created (id ch-1)"), "{out}");
    let calls = s.hub.received_on("/v3/channels");
    assert_eq!(calls.len(), 2, "a list, then one creation");
    assert_eq!(
        calls[0].header("authorization"),
        Some("Bearer hub-token-1"),
        "the manage token"
    );
    let created = calls[1].json();
    assert_eq!(created["type"], json!("custom.patchbay.email"));
    let outbound = &created["restrictions"]["outbound"];
    assert_eq!(
        outbound["attachmentPolicy"]["extensions"],
        json!(["exe"]),
        "the config's narrowing: {outbound}"
    );
    assert_eq!(outbound["attachmentPolicy"]["type"], json!("block"));
    let texts = created["l10nProperties"][0]["properties"]
        .as_array()
        .expect("texts")
        .clone();
    assert!(
        texts.contains(&json!({"name": "msg_hub_blocked_file_extension",
        "value": "Attachment file type '{0}' is not allowed."}))
    );
    let token_form =
        String::from_utf8_lossy(&s.hub.received_on("/oauth2/token")[0].body).to_string();
    assert!(
        token_form.contains("scope=app.conversation.conversationmgr.manage"),
        "{token_form}"
    );

    // The Hub now holds that channel: the second run only reads.
    let mut held = created.clone();
    held["id"] = json!("ch-1");
    s.hub.script_path(
        "/v3/channels",
        vec![Answer::new(200, &json!({"channel": [held]}).to_string())],
    );
    let (status, out) = s.host.cli_async(&["upstreams", "sync", "egain"]).await;
    assert!(status.success(), "{out}");
    assert!(out.contains("email: unchanged (id ch-1)"), "{out}");
    assert_eq!(s.hub.received_on("/v3/channels").len(), 3);

    // A copy narrower than the config is not widened without --widen.
    let mut narrower = created;
    narrower["id"] = json!("ch-1");
    narrower["restrictions"]["outbound"]["maxTextLength"] = json!(100);
    s.hub.script_path(
        "/v3/channels",
        vec![Answer::new(
            200,
            &json!({"channel": [narrower]}).to_string(),
        )],
    );
    let (status, out) = s.host.cli_async(&["upstreams", "sync", "egain"]).await;
    assert_eq!(status.code(), Some(3), "{out}");
    assert!(out.contains("email: held"), "{out}");
    assert!(out.contains("(widens)"), "{out}");
    assert_eq!(
        s.hub.received_on("/v3/channels").len(),
        4,
        "nothing written"
    );
}

#[tokio::test]
async fn an_email_customer_and_an_agent_talk_through_the_hub() {
    let s = setup().await;
    let mail = String::from(
        "From: Alice Martin <alice@example.com>\r\nTo: support@shop.example\r\n\
         Subject: Where is my order?\r\nMessage-ID: <m1@mail.example.com>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nWhere is my order?\r\n",
    );
    let res = s
        .host
        .post_raw(
            "/webhooks/email",
            &[
                ("content-type", "message/rfc822"),
                ("authorization", &format!("Bearer {INBOUND_TOKEN}")),
            ],
            mail.into_bytes(),
        )
        .await;
    assert_eq!(res.status(), 200);
    let sent = s.hub.wait_for_path(MESSAGES, 1).await;
    assert_eq!(sent[0].header("authorization"), Some("Bearer hub-token-1"));
    let message = &sent[0].json()["messages"]["message"][0];
    assert_eq!(message["type"], json!("text"));
    // The customer key names the mail thread, so a reply is threaded.
    let customer = message["sender"]["address"]
        .as_str()
        .expect("address")
        .to_string();
    assert_eq!(customer, format!("{CUSTOMER}#m1@mail.example.com"));
    assert_eq!(
        message["recipient"]["address"],
        json!("support@shop.example")
    );
    assert!(
        message["content"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("Where is my order?")),
        "{message}"
    );
    let form = String::from_utf8_lossy(&s.hub.received_on("/oauth2/token")[0].body).to_string();
    assert!(form.contains("client_id=patchbay-app"), "{form}");

    // The agent answers; the customer gets a mail.
    let token = s.token().await;
    let mut reply = agent_text("hub-a-1", "It ships today.");
    reply["recipient"]["address"] = json!(customer);
    let res = s.callback(&token, reply).await;
    assert_eq!(res.status(), 200);
    let mails = s.smtp.wait_for(1).await;
    assert_eq!(mails[0].to, vec!["alice@example.com".to_string()]);
    assert!(mails[0].data.contains("It ships today."));
    assert_eq!(
        mails[0].header("In-Reply-To").as_deref(),
        Some("<m1@mail.example.com>")
    );

    // A forged token is refused and nothing is stored.
    let before = s.host.counts();
    let res = s
        .callback("forged.token.value", agent_text("hub-a-2", "x"))
        .await;
    assert_eq!(res.status(), 401);
    assert_eq!(s.host.counts(), before);
}

#[tokio::test]
async fn an_expired_token_gets_401_and_the_hub_fetches_a_new_one() {
    let s = setup().await;
    let token = s.token().await;
    // Tokens live 2 s in this config.
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    let res = s
        .callback(&token, agent_text("hub-e-1", "Still there?"))
        .await;
    assert_eq!(res.status(), 401, "expired");
    let fresh = s.token().await;
    let res = s
        .callback(&fresh, agent_text("hub-e-1", "Still there?"))
        .await;
    assert_eq!(res.status(), 200);
    let mails = s.smtp.wait_for(1).await;
    assert!(mails[0].data.contains("Still there?"));
    s.host.idle().await;
    assert_eq!(s.smtp.accepted().len(), 1, "delivered once");
}

#[tokio::test]
async fn a_blocked_attachment_is_refused_in_the_channels_words() {
    let s = setup().await;
    let token = s.token().await;
    let file = json!({"id": "hub-f-1", "type": "text", "recipient": {"address": CUSTOMER},
        "content": {"text": "Run this", "attachments": [
            {"url": s.hub.url("/assets/setup.exe"), "name": "setup.exe", "contentType": "application/octet-stream"}]}});
    assert_eq!(s.callback(&token, file).await.status(), 200);
    let told = s.hub.wait_for_path(MESSAGES, 1).await;
    let message = &told[0].json()["messages"]["message"][0];
    assert_eq!(message["type"], json!("error"), "{message}");
    assert_eq!(
        message["content"]["text"],
        json!("Attachment file type 'exe' is not allowed.")
    );
    assert_eq!(message["sender"]["address"], json!(CUSTOMER));
    s.host.idle().await;
    assert!(s.smtp.accepted().is_empty(), "nothing mailed");
}

#[tokio::test]
async fn sync_on_start_registers_the_channels_while_serving_goes_on() {
    let s = setup_with("sync_on_start = true", |hub| {
        hub.script_path(
            "/v3/channels",
            vec![
                Answer::new(200, r#"{"channel": []}"#),
                Answer::new(201, r#"{"id": "ch-9"}"#),
            ],
        );
    })
    .await;
    let calls = s.hub.wait_for_path("/v3/channels", 2).await;
    assert_eq!(calls[1].json()["type"], json!("custom.patchbay.email"));
    // Serving meanwhile: a token is issued.
    assert!(!s.token().await.is_empty());
}
