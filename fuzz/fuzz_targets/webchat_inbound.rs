#![no_main]
//! The web chat's `verify` and `parse_inbound` on any frame a widget could
//! send, with a valid session token.

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use patchbay_adapter_webchat::Webchat;
use patchbay_fuzz::{Framed, NOW, check, config};
use patchbay_plugin_sdk::adapter::Timestamp;

fn chat() -> &'static (Webchat, String) {
    static CHAT: OnceLock<(Webchat, String)> = OnceLock::new();
    CHAT.get_or_init(|| {
        let settings = serde_json::json!({"allowed_origins": ["https://shop.example"]});
        let secrets = [("session_secret", "fuzz-session-secret-0123456789abcdef")];
        let chat = Webchat::new(&config("chat", settings, &secrets)).expect("config");
        let token = chat
            .sessions()
            .anonymous("fuzz", Timestamp(NOW))
            .expect("session")
            .token;
        (chat, token)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Framed::parse(data) else {
        return;
    };
    let (chat, token) = chat();
    let mut request = input.request("https://gw.example/webchat/chat/socket");
    request
        .headers
        .push(("authorization".into(), format!("Bearer {token}")));
    check(chat, &request, false, b"{}");
});
