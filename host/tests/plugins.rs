//! Adapters loaded from their shared libraries behave exactly like the
//! compiled-in ones: the same golden fixtures pass through the C ABI.
//!
//! The libraries are built once per run with `cargo build` into their own
//! target directory (the workspace build links the adapters into the host and
//! turns their entry points off).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use patchbay_host::plugins::{DynamicFactory, open};
use patchbay_plugin_sdk::abi::{ABI_MAJOR, ABI_MINOR};
use patchbay_plugin_sdk::prelude::*;
use patchbay_plugin_sdk::signature::hmac_sha1_hex;
use patchbay_plugin_sdk::testkit::{Harness, fixtures};
use serde_json::{Value, json};

const NOW: i64 = 1_763_719_200_000;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// Builds the first-party adapter libraries (once) and returns their directory.
fn libraries() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = workspace().join("target/plugin-libs");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(workspace())
            .args(["build", "--quiet", "--target-dir"])
            .arg(&target)
            .args(["-p", "patchbay-adapter-sms", "-p", "patchbay-adapter-webex"])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the adapter libraries failed");
        target.join("debug")
    })
}

fn library(name: &str) -> PathBuf {
    libraries().join(format!(
        "{}patchbay_adapter_{name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

fn create(name: &str, config: &ChannelConfig) -> Box<dyn ChannelAdapter> {
    let lib = open(&library(name)).expect("library loads");
    assert_eq!(lib.abi, (ABI_MAJOR, ABI_MINOR));
    DynamicFactory::new(lib).create(config).expect("instance")
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
    workspace()
        .join("plugins")
        .join(adapter)
        .join("tests/fixtures")
        .join(kind)
}

#[test]
fn sms_fixtures_are_identical_through_the_shared_library() {
    // The same configuration as plugins/sms/tests/golden.rs.
    let token = "twilio-auth-token-for-tests";
    let adapter = create(
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
fn webex_fixtures_are_identical_through_the_shared_library() {
    // The same configuration as plugins/webex/tests/golden.rs.
    let secret = "webex-webhook-secret-for-tests";
    let adapter = create(
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
fn config_errors_and_rejections_cross_the_boundary_intact() {
    let lib = open(&library("sms")).expect("library loads");
    assert_eq!(lib.manifest.id, "sms");
    let factory = DynamicFactory::new(lib);
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

#[test]
fn a_library_without_the_entry_point_is_refused_with_a_clear_message() {
    // The host binary's own dependencies are not Patchbay adapters.
    let not_a_plugin = std::env::current_exe().expect("exe");
    let err = open(&not_a_plugin).expect_err("refused");
    assert!(
        err.message.contains("cannot be loaded") || err.message.contains("patchbay_adapter_abi_v1"),
        "{err}"
    );
    let missing = open(Path::new("/nonexistent/libnothing.so")).expect_err("missing");
    assert!(missing.to_string().contains("/nonexistent/libnothing.so"));
}
