#![no_main]
//! The Genesys connectors' `verify` and `decode` on any body signed as each
//! platform signs (the first byte picks Multicloud or Cloud): what `verify`
//! accepts, `decode` reads, into valid messages.

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use patchbay_fuzz::{check_platform, config};
use patchbay_plugin_sdk::adapter::InboundRequest;
use patchbay_plugin_sdk::signature::{base64_encode, hmac_sha1_hex, hmac_sha256};
use patchbay_plugin_sdk::upstream::{UpstreamConnector, UpstreamFactory};

const SECRET: &str = "fuzz-webhook-secret";

fn connectors() -> &'static [Box<dyn UpstreamConnector>; 2] {
    static CONNECTORS: OnceLock<[Box<dyn UpstreamConnector>; 2]> = OnceLock::new();
    CONNECTORS.get_or_init(|| {
        let multicloud = patchbay_upstream_genesys_3pm::MulticloudFactory
            .create(&config(
                "genesys",
                serde_json::json!({"api_url": "https://genesys.example/nexus/v3", "ccid": "c", "channel_id": "ch"}),
                &[("signing_secret", "s"), ("webhook_secret", SECRET)],
            ))
            .expect("config");
        let cloud = patchbay_upstream_genesys_cloud::OpenMessagingFactory
            .create(&config(
                "cloud",
                serde_json::json!({"api_url": "https://api.example", "login_url": "https://login.example/oauth/token",
                                   "integration_id": "i", "client_id": "c"}),
                &[("client_secret", "cs"), ("webhook_secret", SECRET)],
            ))
            .expect("config");
        [multicloud, cloud]
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let cloud = pick % 2 == 1;
    let (header, signature) = if cloud {
        let digest = hmac_sha256(SECRET.as_bytes(), body);
        ("x-hub-signature-256", format!("sha256={}", base64_encode(&digest)))
    } else {
        ("x-hub-signature", format!("sha1={}", hmac_sha1_hex(SECRET.as_bytes(), body)))
    };
    let request = InboundRequest {
        method: "POST".into(),
        url: "https://gw.example/upstreams/genesys/webhook".into(),
        headers: vec![(header.into(), signature)],
        body: body.to_vec(),
    };
    check_platform(connectors()[usize::from(cloud)].as_ref(), &request);
});
