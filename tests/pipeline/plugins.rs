//! Shared-library adapters through a real `patchbay serve`: the example
//! Telegram adapter loaded from its `.so` by config, a mock Telegram Bot API
//! and a mock application; a panicking plugin beside a healthy channel; and
//! the `plugins` commands.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;
use crate::plugin_libs;

const TOKEN: &str = "123456:telegram-bot-token-e2e";
const SECRET: &str = "telegram-webhook-secret-e2e";
const CHAT: i64 = 4242;

fn library_toml(extra: &str) -> String {
    let telegram = plugin_libs::path("patchbay_telegram_example");
    let sha256 = patchbay_host::plugins::file_sha256(&telegram).expect("hash");
    format!(
        r#"
[plugins]
dirs = ["{dir}"]

[[plugin]]
path = "{telegram}"
sha256 = "{sha256}"
{extra}
"#,
        dir = plugin_libs::dir().display(),
        telegram = telegram.display(),
    )
}

struct Telegram {
    app: Mock,
    telegram: Mock,
    host: Host,
}

async fn setup(extra: &str) -> Telegram {
    let app = Mock::start().await;
    let integration = Mock::start().await;
    let telegram = Mock::start().await;
    for method in ["sendMessage", "answerCallbackQuery"] {
        telegram.respond(
            &format!("/bot{TOKEN}/{method}"),
            Answer::new(200, r#"{"ok":true,"result":{"message_id":501}}"#),
        );
    }
    let mut options = HostOptions::new(&app.url("/patchbay"), &integration.url("/outbound"));
    options.extra_channel_toml = format!(
        r#"
[channels.telegram]
adapter = "telegram"
settings = {{ api_base_url = "{api}" }}
secrets = {{ bot_token = "{TOKEN}", webhook_secret = "{SECRET}" }}
{libraries}
"#,
        api = telegram.url(""),
        libraries = library_toml(extra),
    );
    let host = Host::start(options);
    Telegram {
        app,
        telegram,
        host,
    }
}

impl Telegram {
    async fn update(&self, update: Value) -> reqwest::Response {
        self.host
            .post_raw(
                "/webhooks/telegram",
                &[("x-telegram-bot-api-secret-token", SECRET)],
                update.to_string().into_bytes(),
            )
            .await
    }
}

#[tokio::test]
async fn the_example_plugin_carries_a_message_in_and_a_reply_out() {
    let s = setup("").await;
    let update = json!({"update_id": 900001, "message": {"message_id": 11, "date": 1763719200,
        "from": {"id": CHAT, "is_bot": false, "first_name": "Ann"},
        "chat": {"id": CHAT, "type": "private"}, "text": "Where is my order?"}});
    assert_eq!(s.update(update.clone()).await.status(), 200);
    // Telegram redelivers an unacknowledged update: delivered once.
    assert_eq!(s.update(update).await.status(), 200);
    let got = s.app.wait_for(1).await;
    let msg = got[0].json();
    assert_eq!(msg["channel"], "telegram");
    assert_eq!(msg["conversation"]["id"], CHAT.to_string());
    assert_eq!(msg["sender"]["name"], "Ann");
    assert_eq!(
        msg["content"],
        json!({"type": "text", "text": "Where is my order?"})
    );
    assert_app_signature(&got[0]);

    let id = s
        .host
        .send_id(
            "telegram",
            &json!({"conversation": {"id": CHAT.to_string()},
                    "content": {"type": "buttons", "text": "Track it?", "buttons": [
                        {"title": "Yes", "action": {"type": "postback", "payload": "TRACK"}},
                        {"title": "Site", "action": {"type": "link", "url": "https://shop.example"}}]}}),
        )
        .await;
    let sent = s
        .telegram
        .wait_for_path(&format!("/bot{TOKEN}/sendMessage"), 1)
        .await;
    assert_eq!(
        sent[0].json(),
        json!({"chat_id": CHAT, "text": "Track it?", "reply_markup": {"inline_keyboard": [
            [{"text": "Yes", "callback_data": "TRACK"}],
            [{"text": "Site", "url": "https://shop.example"}]]}})
    );
    let receipts = s.app.wait_for(2).await;
    let receipt = receipts[1].json();
    assert_eq!(receipt["content"]["status"], "Delivered");
    assert_eq!(receipt["content"]["message_id"], id.as_str());
    assert_eq!(receipt["content"]["provider_message_id"], "501");

    // The customer presses the button: the spinner is answered, the payload
    // reaches the application.
    let press = json!({"update_id": 900002, "callback_query": {"id": "cbq-9",
        "from": {"id": CHAT, "is_bot": false, "first_name": "Ann"}, "chat_instance": "1",
        "message": {"message_id": 501, "date": 1763719260, "chat": {"id": CHAT, "type": "private"}},
        "data": "TRACK"}});
    assert_eq!(s.update(press).await.status(), 200);
    let got = s.app.wait_for(3).await;
    assert_eq!(
        got[2].json()["content"],
        json!({"type": "postback", "payload": "TRACK"})
    );
    let answered = s
        .telegram
        .received_on(&format!("/bot{TOKEN}/answerCallbackQuery"));
    assert_eq!(answered[0].json(), json!({"callback_query_id": "cbq-9"}));

    let forged = s
        .host
        .post_raw(
            "/webhooks/telegram",
            &[("x-telegram-bot-api-secret-token", "guess")],
            b"{\"update_id\": 1}".to_vec(),
        )
        .await;
    assert_eq!(forged.status(), 401);
    s.host.idle().await;
    assert_eq!(s.app.received().len(), 3);
}

#[tokio::test]
async fn a_panicking_plugin_leaves_the_other_channels_serving() {
    let panics = plugin_libs::path("misbehaving_panics");
    let s = setup(&format!(
        "[[plugin]]\npath = \"{}\"\n\n[channels.broken]\nadapter = \"panics\"\n",
        panics.display()
    ))
    .await;
    // Accepted and stored; parsing it panics inside the plugin, again and again.
    let res = s
        .host
        .post_raw("/webhooks/broken", &[], b"{\"n\": 1}".to_vec())
        .await;
    assert_eq!(res.status(), 200);
    // Every other channel keeps working, the compiled-in one and the plugin.
    assert_eq!(
        s.host
            .webhook(&json!({"message_id": "m-1", "conversation": {"id": "c"},
        "content": {"type": "text", "text": "still here"}}))
            .await
            .status(),
        200
    );
    let update = json!({"update_id": 900003, "message": {"message_id": 12, "date": 1763719200,
        "from": {"id": CHAT, "is_bot": false, "first_name": "Ann"},
        "chat": {"id": CHAT, "type": "private"}, "text": "and me"}});
    assert_eq!(s.update(update).await.status(), 200);
    let got = s.app.wait_for(2).await;
    let channels: Vec<Value> = got.iter().map(|r| r.json()["channel"].clone()).collect();
    assert!(channels.contains(&json!("web")) && channels.contains(&json!("telegram")));
    // The broken channel's webhook ends as a dead letter naming the panic,
    // once its retries (and the breaker) are through.
    let mut dead = String::new();
    for _ in 0..100 {
        let (_, out) = s.host.cli(&["dead-letters", "list", "--json"]);
        if out.contains("panicked") || out.contains("calls paused") {
            dead = out;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        dead.contains("\"channel\":\"broken\""),
        "no dead letter: {dead}"
    );
}

#[tokio::test]
async fn plugins_list_and_inspect_say_what_is_loaded_and_how() {
    let s = setup("").await;
    let (status, out) = s.host.cli(&["plugins", "list"]);
    assert!(status.success(), "{out}");
    let telegram = out.lines().find(|l| l.starts_with("telegram")).expect(&out);
    assert!(
        telegram.contains("libpatchbay_telegram_example"),
        "{telegram}"
    );
    assert!(telegram.contains("abi 1.0, wire 1..=1"), "{telegram}");
    let sms = out.lines().find(|l| l.starts_with("sms")).expect(&out);
    assert!(sms.contains("compiled-in"), "{sms}");
    let connector = out
        .lines()
        .find(|l| l.starts_with("genesys-3pm"))
        .expect(&out);
    assert!(connector.contains("compiled-in"), "{connector}");

    // A connector library says what it is.
    let connector = std::process::Command::new(env!("CARGO_BIN_EXE_patchbay"))
        .args(["plugins", "inspect"])
        .arg(plugin_libs::path("patchbay_upstream_genesys_3pm"))
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&connector.stdout);
    assert!(connector.status.success(), "{text}");
    assert!(text.contains("upstream  genesys-3pm"), "{text}");
    assert!(text.contains("receipts  yes"), "{text}");

    let library = plugin_libs::path("patchbay_telegram_example");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_patchbay"))
        .args(["plugins", "inspect"])
        .arg(&library)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // Operators read what each setting and secret is for, not just its name.
    assert!(
        text.contains("bot_token (required): the token @BotFather gave the bot"),
        "{text}"
    );
    assert!(
        text.contains("api_base_url (optional): the Bot API base URL"),
        "{text}"
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_patchbay"))
        .args(["plugins", "inspect", "--json"])
        .arg(&library)
        .output()
        .expect("run");
    assert!(out.status.success());
    let inspected: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(inspected["manifest"]["id"], "telegram");
    assert_eq!(inspected["abi"], json!({"major": 1, "minor": 0}));
    assert_eq!(
        inspected["sha256"],
        patchbay_host::plugins::file_sha256(&library).expect("hash")
    );

    let broken = plugin_libs::path("misbehaving_wrong_magic");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_patchbay"))
        .args(["plugins", "inspect"])
        .arg(&broken)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong magic"));
}

#[tokio::test]
async fn plugin_policy_errors_name_the_entry() {
    let s = setup("").await;
    let base = std::fs::read_to_string(&s.host.config).expect("config");
    let telegram = plugin_libs::path("patchbay_telegram_example");
    let sha256 = patchbay_host::plugins::file_sha256(&telegram).expect("hash");
    let outside = tempfile::tempdir().expect("dir");
    let copy = outside.path().join("libcopy.so");
    std::fs::copy(&telegram, &copy).expect("copy");
    let cases = [
        (
            base.replace(&sha256, &"0".repeat(64)),
            "plugin[0].sha256",
            "refusing to load it",
        ),
        (
            base.replace(&telegram.display().to_string(), &copy.display().to_string()),
            "plugin[0].path",
            "outside the plugin directories",
        ),
        (
            format!(
                "{base}\n[[plugin]]\npath = \"{}\"\n",
                plugin_libs::path("patchbay_adapter_sms").display()
            ),
            "plugin[1]",
            "already provided by a compiled-in adapter",
        ),
        (
            format!(
                "{base}\n[[plugin]]\npath = \"{}\"\n",
                plugin_libs::path("misbehaving_abi_v2").display()
            ),
            "plugin[1].path",
            "built for ABI 2",
        ),
    ];
    for (text, key, message) in cases {
        std::fs::write(&s.host.config, text).expect("write");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_patchbay"))
            .args(["check-config", "--config"])
            .arg(&s.host.config)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{stderr}");
        assert!(stderr.contains(key) && stderr.contains(message), "{stderr}");
        // `serve` refuses the same config the same way, saying so once.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_patchbay"))
            .args(["serve", "--config"])
            .arg(&s.host.config)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "serve: {stderr}");
        assert_eq!(stderr.matches(message).count(), 1, "{stderr}");
    }
    // Loaded under another name, the SMS library runs beside the compiled-in SMS.
    let renamed = format!(
        "{base}\n[[plugin]]\npath = \"{}\"\nname = \"sms-library\"\n",
        plugin_libs::path("patchbay_adapter_sms").display()
    );
    std::fs::write(&s.host.config, renamed).expect("write");
    let (status, out) = s.host.cli(&["plugins", "list"]);
    assert!(status.success(), "{out}");
    assert!(out.contains("sms-library"), "{out}");
}
