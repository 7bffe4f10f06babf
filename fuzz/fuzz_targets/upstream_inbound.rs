#![no_main]
//! The upstream connectors' `verify` and `decode` on any body signed as each
//! platform signs (the first byte picks Multicloud, Genesys Cloud, Pega DMS
//! or eGain): what `verify` accepts, `decode` reads, into valid messages.

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use patchbay_fuzz::{NOW, check_platform, config};
use patchbay_plugin_sdk::adapter::InboundRequest;
use patchbay_plugin_sdk::signature::{base64_encode, hmac_sha1_hex, hmac_sha256};
use patchbay_plugin_sdk::upstream::{UpstreamConnector, UpstreamFactory};

const SECRET: &str = "fuzz-webhook-secret";

fn connectors() -> &'static [Box<dyn UpstreamConnector>; 4] {
    static CONNECTORS: OnceLock<[Box<dyn UpstreamConnector>; 4]> = OnceLock::new();
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
        let pega = patchbay_upstream_pega_dms::PegaDmsFactory
            .create(&config(
                "pega",
                serde_json::json!({"dms_url": "https://dms.example/messages", "connection_id": "conn"}),
                &[("jwt_secret", SECRET)],
            ))
            .expect("config");
        let egain = patchbay_upstream_egain::EgainFactory
            .create(&config(
                "egain",
                serde_json::json!({"api_url": "https://hub.example/v3", "token_url": "https://hub.example/token",
                                   "client_id": "c", "account_address": "a", "callback_client_id": "hub"}),
                &[("client_secret", "cs"), ("callback_client_secret", SECRET)],
            ))
            .expect("config");
        [multicloud, cloud, pega, egain]
    })
}

/// An HS256 JWT under the shared secret.
fn jwt(claims: &serde_json::Value) -> String {
    let header = base64url(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = base64url(claims.to_string().as_bytes());
    let signing_input = format!("{header}.{payload}");
    let signature = base64url(&hmac_sha256(SECRET.as_bytes(), signing_input.as_bytes()));
    format!("{signing_input}.{signature}")
}

/// A DMS token for the connection, issued at the targets' fixed clock.
fn pega_token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| jwt(&serde_json::json!({"iss": "conn", "iat": NOW / 1000})))
}

/// A callback token as Patchbay issues it to the eGain Hub, still live.
fn egain_token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| {
        jwt(&serde_json::json!({"aud": "egain", "iat": NOW / 1000, "exp": NOW / 1000 + 3600}))
    })
}

fn base64url(bytes: &[u8]) -> String {
    base64_encode(bytes)
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let which = usize::from(pick % 4);
    let (header, signature) = match which {
        0 => (
            "x-hub-signature",
            format!("sha1={}", hmac_sha1_hex(SECRET.as_bytes(), body)),
        ),
        1 => {
            let digest = hmac_sha256(SECRET.as_bytes(), body);
            (
                "x-hub-signature-256",
                format!("sha256={}", base64_encode(&digest)),
            )
        }
        2 => ("authorization", format!("Bearer {}", pega_token())),
        _ => ("authorization", format!("Bearer {}", egain_token())),
    };
    let request = InboundRequest {
        method: "POST".into(),
        url: "https://gw.example/upstreams/genesys/webhook".into(),
        headers: vec![(header.into(), signature)],
        body: body.to_vec(),
    };
    check_platform(connectors()[which].as_ref(), &request);
});
