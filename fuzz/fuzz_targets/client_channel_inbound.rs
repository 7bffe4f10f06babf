#![no_main]
//! The client channel's `verify` and `parse_inbound` on any signed body.

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use patchbay_adapter_client_channel::ClientChannelFactory;
use patchbay_fuzz::{Framed, check, config};
use patchbay_plugin_sdk::adapter::{AdapterFactory, ChannelAdapter};
use patchbay_plugin_sdk::signature::hmac_sha256_hex;

const SECRET: &str = "fuzz-signing-secret";

fn adapter() -> &'static dyn ChannelAdapter {
    static ADAPTER: OnceLock<Box<dyn ChannelAdapter>> = OnceLock::new();
    ADAPTER
        .get_or_init(|| {
            let settings = serde_json::json!({"webhook_url": "https://il.example/out"});
            ClientChannelFactory
                .create(&config("web", settings, &[("signing_secret", SECRET)]))
                .expect("config")
        })
        .as_ref()
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Framed::parse(data) else {
        return;
    };
    let mut request = input.request("https://gw.example/webhooks/web");
    let signature = format!(
        "sha256={}",
        hmac_sha256_hex(SECRET.as_bytes(), &request.body)
    );
    request
        .headers
        .push(("x-hub-signature-256".into(), signature));
    check(adapter(), &request, false, b"{}");
});
