#![no_main]
//! Webex's `verify` and `parse_inbound` on any signed notification, with any
//! answer to the lookup it makes (the second part of the input).

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use patchbay_adapter_webex::WebexFactory;
use patchbay_fuzz::{Framed, check, config};
use patchbay_plugin_sdk::adapter::{AdapterFactory, ChannelAdapter};
use patchbay_plugin_sdk::signature::hmac_sha1_hex;

const SECRET: &str = "fuzz-webhook-secret";

fn adapter() -> &'static dyn ChannelAdapter {
    static ADAPTER: OnceLock<Box<dyn ChannelAdapter>> = OnceLock::new();
    ADAPTER
        .get_or_init(|| {
            let settings = serde_json::json!({"api_base_url": "https://webex.example", "bot_person_id": "bot"});
            WebexFactory
                .create(&config(
                    "webex",
                    settings,
                    &[("bot_token", "fuzz-bot-token"), ("webhook_secret", SECRET)],
                ))
                .expect("config")
        })
        .as_ref()
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Framed::parse(data) else {
        return;
    };
    // The body is the notification, then (after a NUL) the lookup's answer.
    let (notification, lookup) = match input.body.iter().position(|b| *b == 0) {
        Some(i) => (&input.body[..i], &input.body[i + 1..]),
        None => (input.body, &b"{}"[..]),
    };
    let mut request = input.request("https://gw.example/webhooks/webex");
    request.body = notification.to_vec();
    let signed = hmac_sha1_hex(SECRET.as_bytes(), &request.body);
    request.headers.push(("x-spark-signature".into(), signed));
    check(adapter(), &request, false, lookup);
});
