#![no_main]
//! Slack's `verify` and `parse_inbound` (events, interactions, commands) on
//! any body signed as Slack signs.

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use patchbay_adapter_slack::SlackFactory;
use patchbay_fuzz::{Framed, NOW, check, config};
use patchbay_plugin_sdk::adapter::{AdapterFactory, ChannelAdapter};
use patchbay_plugin_sdk::signature::hmac_sha256_hex;

const SECRET: &str = "fuzz-signing-secret";

fn adapter() -> &'static dyn ChannelAdapter {
    static ADAPTER: OnceLock<Box<dyn ChannelAdapter>> = OnceLock::new();
    ADAPTER
        .get_or_init(|| {
            let settings = serde_json::json!({"api_base_url": "https://slack.example/api", "bot_user_id": "U0BOT"});
            SlackFactory
                .create(&config(
                    "slack",
                    settings,
                    &[("signing_secret", SECRET), ("bot_token", "xoxb-fuzz")],
                ))
                .expect("config")
        })
        .as_ref()
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Framed::parse(data) else {
        return;
    };
    let mut request = input.request("https://gw.example/webhooks/slack");
    let ts = (NOW / 1000).to_string();
    let mut base = format!("v0:{ts}:").into_bytes();
    base.extend_from_slice(&request.body);
    let signature = format!("v0={}", hmac_sha256_hex(SECRET.as_bytes(), &base));
    request
        .headers
        .push(("x-slack-request-timestamp".into(), ts));
    request
        .headers
        .push(("x-slack-signature".into(), signature));
    check(
        adapter(),
        &request,
        false,
        br#"{"ok": true, "messages": []}"#,
    );
});
