#![no_main]
//! The email adapter's `verify` and `parse_inbound` on any raw MIME message or
//! SendGrid form (the MIME path: headers, encodings, multipart, quoting).

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use patchbay_adapter_email::EmailFactory;
use patchbay_fuzz::{Framed, check, config};
use patchbay_plugin_sdk::adapter::{AdapterFactory, ChannelAdapter};

const TOKEN: &str = "fuzz-inbound-token";

fn adapter() -> &'static dyn ChannelAdapter {
    static ADAPTER: OnceLock<Box<dyn ChannelAdapter>> = OnceLock::new();
    ADAPTER
        .get_or_init(|| {
            let settings = serde_json::json!({
                "from": "Shop Support <support@shop.example>",
                "inbound": "sendgrid",
                "smtp": {"host": "smtp.shop.example"},
            });
            EmailFactory
                .create(&config("email", settings, &[("inbound_token", TOKEN)]))
                .expect("config")
        })
        .as_ref()
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Framed::parse(data) else {
        return;
    };
    let mut request = input.request("https://gw.example/webhooks/email");
    request
        .headers
        .push(("authorization".into(), format!("Bearer {TOKEN}")));
    check(adapter(), &request, false, b"");
});
