//! Every first-party adapter's golden fixtures give the same results through
//! its shared library as compiled in. The fixtures hold what the compiled-in
//! adapter produces (its own golden tests check that), so passing them here
//! is parity; the client channel's fixtures are compared run for run.

use std::path::PathBuf;

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use patchbay_host::plugins::{DynamicFactory, open};
use patchbay_plugin_sdk::abi::{ABI_MAJOR, ABI_MINOR};
use patchbay_plugin_sdk::prelude::*;
use patchbay_plugin_sdk::signature::{hmac_sha1_hex, hmac_sha256_hex};
use patchbay_plugin_sdk::testkit::{Harness, fixtures, json_response};
use serde_json::{Value, json};

use crate::plugin_libs;

const NOW: i64 = 1_763_719_200_000;

/// An instance of first-party adapter `name` from its shared library.
fn dynamic(name: &str, config: &ChannelConfig) -> Box<dyn ChannelAdapter> {
    let lib = open(&plugin_libs::path(&format!("patchbay_adapter_{name}"))).expect("loads");
    assert_eq!(lib.abi, (ABI_MAJOR, ABI_MINOR));
    DynamicFactory::new(lib)
        .expect("adapter")
        .create(config)
        .expect("instance")
}

fn config(channel: &str, settings: Value, secrets: &[(&str, &str)]) -> ChannelConfig {
    ChannelConfig {
        channel: channel.into(),
        webhook_url: format!("https://gw.example/webhooks/{channel}"),
        settings,
        secrets: secrets
            .iter()
            .map(|(k, v)| (k.to_string(), Secret::new(*v)))
            .collect(),
    }
}

fn fixture_dir(adapter: &str, kind: &str) -> PathBuf {
    plugin_libs::workspace()
        .join("plugins")
        .join(adapter)
        .join("tests/fixtures")
        .join(kind)
}

#[test]
fn sms() {
    // The configuration of plugins/sms/tests/golden.rs.
    let token = "twilio-auth-token-for-tests";
    let adapter = dynamic(
        "sms",
        &config(
            "sms",
            json!({"account_sid": "AC0000000000000000000000000000test",
                   "from": "+15005550006", "api_base_url": "https://twilio.example"}),
            &[("auth_token", token)],
        ),
    );
    let h = Harness::new(adapter, NOW);
    let sign = |r: &mut InboundRequest| {
        let params: Vec<(String, String)> = form_urlencoded::parse(&r.body).into_owned().collect();
        let sig = patchbay_adapter_sms::signature(token, &r.url, &params);
        r.headers.push(("x-twilio-signature".into(), sig));
    };
    assert!(fixtures::run_inbound(&h, &fixture_dir("sms", "inbound"), sign) >= 12);
    assert!(fixtures::run_outbound(&h, &fixture_dir("sms", "outbound")) >= 8);
}

#[test]
fn webex() {
    // The configuration of plugins/webex/tests/golden.rs.
    let secret = "webex-webhook-secret-for-tests";
    let adapter = dynamic(
        "webex",
        &config(
            "webex",
            json!({"api_base_url": "https://webex.example"}),
            &[("bot_token", "webex-bot-token"), ("webhook_secret", secret)],
        ),
    );
    let h = Harness::new(adapter, NOW);
    let sign = |r: &mut InboundRequest| {
        let sig = hmac_sha1_hex(secret.as_bytes(), &r.body);
        r.headers.push(("x-spark-signature".into(), sig));
    };
    assert!(fixtures::run_inbound(&h, &fixture_dir("webex", "inbound"), sign) >= 13);
    assert!(fixtures::run_outbound(&h, &fixture_dir("webex", "outbound")) >= 14);
}

#[test]
fn slack() {
    // The configuration of plugins/slack/tests/golden.rs.
    let secret = "slack-signing-secret-for-tests";
    let adapter = dynamic(
        "slack",
        &config(
            "slack",
            json!({"api_base_url": "https://slack.example/api", "bot_user_id": "U0BOT"}),
            &[("signing_secret", secret), ("bot_token", "xoxb-test-token")],
        ),
    );
    let h = Harness::new(adapter, NOW);
    let sign = |r: &mut InboundRequest| {
        let ts = (NOW / 1000).to_string();
        let mut base = format!("v0:{ts}:").into_bytes();
        base.extend_from_slice(&r.body);
        let sig = format!("v0={}", hmac_sha256_hex(secret.as_bytes(), &base));
        r.headers.push(("x-slack-request-timestamp".into(), ts));
        r.headers.push(("x-slack-signature".into(), sig));
    };
    assert!(fixtures::run_inbound(&h, &fixture_dir("slack", "inbound"), sign) >= 13);
    assert!(fixtures::run_outbound(&h, &fixture_dir("slack", "outbound")) >= 17);
}

#[test]
fn teams() {
    // The configuration and test keys of plugins/teams/tests/golden.rs.
    let keys = plugin_libs::workspace().join("plugins/teams/tests/keys");
    let app_id = "bot-app-id";
    let adapter = dynamic(
        "teams",
        &config(
            "teams",
            json!({
                "app_id": app_id,
                "openid_metadata_url": "https://login.example/v1/.well-known/openidconfiguration",
                "token_url": "https://login.example/oauth2/v2.0/token",
                "service_url": "https://smba.example/teams/",
                "service_url_prefixes": ["https://smba.example/"],
            }),
            &[("app_password", "app-password-for-tests")],
        ),
    );
    let jwks: Value = serde_json::from_slice(&std::fs::read(keys.join("jwks.json")).expect("jwks"))
        .expect("json");
    let h = Harness::new(adapter, NOW).with_resource(patchbay_adapter_teams::KEYS_RESOURCE, jwks);
    let der = std::fs::read(keys.join("test.der")).expect("key");
    let sign = |r: &mut InboundRequest| {
        let body: Value = serde_json::from_slice(&r.body).expect("json");
        let now = NOW / 1000;
        let claims = json!({"iss": "https://api.botframework.com", "aud": app_id,
                            "exp": now + 3600, "nbf": now - 60,
                            "serviceurl": body["serviceUrl"]});
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("test-key-1".into());
        let token = encode(&header, &claims, &EncodingKey::from_rsa_der(&der)).expect("sign");
        r.headers
            .push(("authorization".into(), format!("Bearer {token}")));
    };
    assert!(fixtures::run_inbound(&h, &fixture_dir("teams", "inbound"), sign) >= 12);
    assert!(fixtures::run_outbound(&h, &fixture_dir("teams", "outbound")) >= 19);
}

#[test]
fn email() {
    // The configuration of plugins/email/tests/golden.rs.
    let token = "inbound-token-for-tests";
    let harness = |inbound: &str| {
        let adapter = dynamic(
            "email",
            &config(
                "email",
                json!({"from": "Shop Support <support@shop.example>", "inbound": inbound,
                       "smtp": {"host": "smtp.shop.example", "username": "patchbay"}}),
                &[
                    ("inbound_token", token),
                    ("mailgun_signing_key", "key-mailgun-signing-for-tests"),
                    ("smtp_password", "smtp-secret"),
                ],
            ),
        );
        Harness::new(adapter, NOW)
    };
    let bearer = |r: &mut InboundRequest| {
        r.headers
            .push(("authorization".into(), format!("Bearer {token}")));
    };
    let sendgrid = harness("sendgrid");
    assert!(fixtures::run_inbound(&sendgrid, &fixture_dir("email", "inbound"), bearer) >= 8);
    let mailgun = harness("mailgun");
    assert!(fixtures::run_inbound(&mailgun, &fixture_dir("email", "inbound_mailgun"), |_| {}) >= 3);
    assert!(fixtures::run_outbound(&sendgrid, &fixture_dir("email", "outbound")) >= 16);
}

#[test]
fn client_channel() {
    // Its fixtures predate the SDK's fixture format, so both ways of loading
    // run side by side and must agree run for run.
    let secret = "s3cr3t-for-tests";
    let config = config(
        "web",
        json!({"webhook_url": "http://127.0.0.1:9/out"}),
        &[("signing_secret", secret)],
    );
    let compiled = Harness::new(
        patchbay_adapter_client_channel::ClientChannel::new(&config).expect("config"),
        NOW,
    );
    let loaded = Harness::new(dynamic("client_channel", &config), NOW);
    let files = fixtures::files(&fixture_dir("client-channel", "inbound"));
    for path in &files {
        let fixture: Value =
            serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json");
        let body = serde_json::to_vec(&fixture["body"]).expect("body");
        let sig = format!("sha256={}", hmac_sha256_hex(secret.as_bytes(), &body));
        let request = patchbay_plugin_sdk::testkit::request(
            "POST",
            "https://gw.example/webhooks/web",
            &[("x-hub-signature-256", &sig)],
            &body,
        );
        assert_eq!(
            compiled.verify(&request),
            loaded.verify(&request),
            "{}",
            path.display()
        );
        let run = loaded.inbound(&request, vec![]);
        assert_eq!(
            compiled.inbound(&request, vec![]),
            run,
            "{}",
            path.display()
        );
        let messages = run.messages().expect("messages");
        let message = serde_json::to_value(&messages[0]).expect("ser");
        assert_eq!(message, fixture["expected"], "{}", path.display());
        // Outbound: the parsed message, sent back, renders the same request.
        let answer = || vec![json_response(200, &json!({"message_id": "il-1"}))];
        assert_eq!(
            compiled.outbound(&messages[0], answer()),
            loaded.outbound(&messages[0], answer()),
            "{}",
            path.display()
        );
    }
    assert!(files.len() >= 8);
}

#[test]
fn config_errors_and_rejections_cross_the_boundary_intact() {
    let lib = open(&plugin_libs::path("patchbay_adapter_sms")).expect("library loads");
    assert_eq!(lib.adapter_manifest().map(|m| m.id.as_str()), Some("sms"));
    let factory = DynamicFactory::new(lib).expect("an adapter library");
    let bad = config(
        "sms",
        json!({"account_sid": "XX1", "from": "+1"}),
        &[("auth_token", "t")],
    );
    let Err(err) = factory.create(&bad) else {
        panic!("a bad config must be refused")
    };
    assert_eq!(err.key, "settings.account_sid");

    let adapter = factory
        .create(&config(
            "sms",
            json!({"account_sid": "AC1", "from": "+1"}),
            &[("auth_token", "t")],
        ))
        .expect("instance");
    let forged = InboundRequest {
        method: "POST".into(),
        url: "https://gw.example/webhooks/sms".into(),
        headers: vec![("x-twilio-signature".into(), "AAAA".into())],
        body: b"MessageSid=SM1".to_vec(),
    };
    let rejection = adapter
        .verify(&forged, Timestamp(NOW), &Resources::none())
        .expect_err("forged");
    assert_eq!(rejection.status, 401);
}
