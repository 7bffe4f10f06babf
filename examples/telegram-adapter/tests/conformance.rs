//! The adapter's own tests, as a third party would write them: the SDK's
//! conformance kit, golden fixtures, and configuration errors.

use std::path::{Path, PathBuf};

use patchbay_plugin_sdk::prelude::*;
use patchbay_plugin_sdk::testkit::conformance::Conformance;
use patchbay_telegram_example::Telegram;
use serde_json::json;

const SECRET: &str = "telegram-webhook-secret_for-tests";
const NOW: i64 = 1_763_719_200_000;

fn config(settings: serde_json::Value, webhook_secret: &str) -> ChannelConfig {
    ChannelConfig {
        channel: "telegram".into(),
        webhook_url: "https://gw.example/webhooks/telegram".into(),
        settings,
        secrets: [
            (
                "bot_token".to_string(),
                Secret::new("123456:bot-token-for-tests"),
            ),
            ("webhook_secret".to_string(), Secret::new(webhook_secret)),
        ]
        .into(),
    }
}

fn telegram() -> Telegram {
    Telegram::new(&config(
        json!({"api_base_url": "https://telegram.example"}),
        SECRET,
    ))
    .expect("config")
}

fn sign(request: &mut InboundRequest) {
    request
        .headers
        .push(("x-telegram-bot-api-secret-token".into(), SECRET.into()));
}

fn dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind)
}

#[test]
fn passes_the_conformance_kit() {
    let update = json!({"update_id": 1, "message": {"message_id": 1, "date": 1763719200,
        "from": {"id": 5, "is_bot": false, "first_name": "Ann"},
        "chat": {"id": 5, "type": "private"}, "text": "hello"}});
    let report = Conformance::new(telegram(), NOW)
        .inbound(update.to_string().as_bytes(), sign)
        // Telegram sends a shared secret, it does not sign the body.
        .body_not_signed()
        .conversation("5")
        .inbound_fixtures(dir("inbound"), sign)
        .outbound_fixtures(dir("outbound"))
        .run();
    println!("{report}");
    report.assert_passed();
}

#[test]
fn a_wrong_secret_is_refused_without_echoing_it() {
    let h = patchbay_plugin_sdk::testkit::Harness::new(telegram(), NOW);
    let request = patchbay_plugin_sdk::testkit::request(
        "POST",
        "https://gw.example/webhooks/telegram",
        &[("x-telegram-bot-api-secret-token", "guess")],
        br#"{"update_id": 1}"#,
    );
    let rejection = h.verify(&request).expect_err("refused");
    assert_eq!(rejection.status, 401);
    assert!(!rejection.message.contains("guess") && !rejection.message.contains(SECRET));
}

#[test]
fn the_token_never_appears_in_errors() {
    let h = patchbay_plugin_sdk::testkit::Harness::new(telegram(), NOW);
    let message = Message::new("5", Content::text("hi"));
    let unauthorized = patchbay_plugin_sdk::testkit::json_response(
        401,
        &json!({"ok": false, "error_code": 401, "description": "Unauthorized"}),
    );
    let run = h.outbound(&message, vec![unauthorized]);
    let error = run.outcome.expect_err("refused");
    assert!(error.message().contains("secrets.bot_token"), "{error}");
    assert!(!error.message().contains("bot-token-for-tests"), "{error}");
}

#[test]
fn bad_configs_name_the_key() {
    let bad_secret = Telegram::new(&config(json!({}), "spaces are not allowed"));
    assert_eq!(
        bad_secret.expect_err("refused").key,
        "secrets.webhook_secret"
    );
    let bad_url = Telegram::new(&config(json!({"api_base_url": "ftp://x"}), SECRET));
    assert_eq!(bad_url.expect_err("refused").key, "settings.api_base_url");
    let unknown = Telegram::new(&config(json!({"api_base_ur": "https://x"}), SECRET));
    assert!(
        unknown
            .expect_err("refused")
            .message
            .contains("api_base_ur")
    );
}
