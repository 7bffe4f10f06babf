#![no_main]
//! Twilio's `verify` and `parse_inbound` on any form body signed as Twilio
//! signs (over the URL and the sorted parameters).

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use patchbay_adapter_sms::{SmsFactory, signature};
use patchbay_fuzz::{Framed, check, config};
use patchbay_plugin_sdk::adapter::{AdapterFactory, ChannelAdapter};

const TOKEN: &str = "fuzz-auth-token";

fn adapter() -> &'static dyn ChannelAdapter {
    static ADAPTER: OnceLock<Box<dyn ChannelAdapter>> = OnceLock::new();
    ADAPTER
        .get_or_init(|| {
            let settings = serde_json::json!({
                "account_sid": "AC0000000000000000000000000000fuzz",
                "from": "+15005550006",
            });
            SmsFactory
                .create(&config("sms", settings, &[("auth_token", TOKEN)]))
                .expect("config")
        })
        .as_ref()
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Framed::parse(data) else {
        return;
    };
    let mut request = input.request("https://gw.example/webhooks/sms");
    let signed = signature(TOKEN, &request.url, &request.form());
    request.headers.push(("x-twilio-signature".into(), signed));
    check(adapter(), &request, false, b"{}");
});
