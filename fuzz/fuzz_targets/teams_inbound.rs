#![no_main]
//! Teams' `verify` (its token checks refuse anything unsigned) and
//! `parse_inbound` on any activity: a signed token cannot be minted here, so
//! parsing runs whatever `verify` says.

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use patchbay_adapter_teams::TeamsFactory;
use patchbay_fuzz::{Framed, check, config};
use patchbay_plugin_sdk::adapter::{AdapterFactory, ChannelAdapter};

fn adapter() -> &'static dyn ChannelAdapter {
    static ADAPTER: OnceLock<Box<dyn ChannelAdapter>> = OnceLock::new();
    ADAPTER
        .get_or_init(|| {
            let settings = serde_json::json!({
                "app_id": "fuzz-app",
                "service_url": "https://smba.example/teams/",
                "service_url_prefixes": ["https://smba.example/"],
            });
            TeamsFactory
                .create(&config(
                    "teams",
                    settings,
                    &[("app_password", "fuzz-password")],
                ))
                .expect("config")
        })
        .as_ref()
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Framed::parse(data) else {
        return;
    };
    let mut request = input.request("https://gw.example/webhooks/teams");
    request
        .headers
        .push(("authorization".into(), "Bearer e30.e30.c2ln".into()));
    check(adapter(), &request, true, b"{}");
});
