//! Upstream connectors as shared libraries: the Genesys connectors answer
//! through the C ABI exactly as compiled in, and configs load them by kind.

use patchbay_host::config::Config;
use patchbay_host::plugins::{DynamicFactory, DynamicUpstreamFactory, Exports, open};
use patchbay_host::upstreams::{Speaks, build};
use patchbay_plugin_sdk::adapter::{
    ChannelConfig, InboundRequest, ProviderResponse, Secret, Step, Timestamp,
};
use patchbay_plugin_sdk::message::{Content, DeliveryReceipt, Message, ReasonCode};
use patchbay_plugin_sdk::signature::{base64_encode, hmac_sha1_hex, hmac_sha256};
use patchbay_plugin_sdk::upstream::{Delivery, UpstreamConnector, UpstreamFactory};
use serde_json::{Value, json};

use crate::plugin_libs;

const NOW: Timestamp = Timestamp(1_763_719_200_000);

fn config(settings: Value, secrets: &[(&str, &str)]) -> ChannelConfig {
    ChannelConfig {
        channel: "genesys".into(),
        webhook_url: "https://gw.example/upstreams/genesys/webhook".into(),
        settings,
        secrets: secrets
            .iter()
            .map(|(k, v)| (k.to_string(), Secret::new(*v)))
            .collect(),
    }
}

/// The same connector compiled in and through its library.
fn both(
    crate_name: &str,
    compiled: &dyn UpstreamFactory,
    config: &ChannelConfig,
) -> (Box<dyn UpstreamConnector>, Box<dyn UpstreamConnector>) {
    let lib = open(&plugin_libs::path(&format!(
        "patchbay_upstream_{crate_name}"
    )))
    .expect("loads");
    let Exports::Upstream(manifest) = &lib.exports else {
        panic!("{crate_name} must load as an upstream connector")
    };
    assert_eq!(*manifest, compiled.manifest());
    let library = DynamicUpstreamFactory::new(lib)
        .expect("a connector library")
        .create(config)
        .expect("instance");
    (compiled.create(config).expect("instance"), library)
}

fn signed(header: &str, value: String, body: &[u8]) -> InboundRequest {
    InboundRequest {
        method: "POST".into(),
        url: "https://gw.example/upstreams/genesys/webhook".into(),
        headers: vec![(header.into(), value)],
        body: body.to_vec(),
    }
}

fn message(content: Content) -> Message {
    let mut m = Message::new("+16504661149", content);
    m.id = "0190163d-8694-739b-aea5-966c26f8ad91".into();
    m.channel = "sms-main".into();
    m
}

/// Every operation, both ways, on the same inputs.
fn assert_parity(
    compiled: &dyn UpstreamConnector,
    library: &dyn UpstreamConnector,
    webhooks: &[InboundRequest],
    deliveries: &[Delivery],
    answer: &str,
) {
    for request in webhooks {
        assert_eq!(compiled.verify(request, NOW), library.verify(request, NOW));
        assert_eq!(compiled.decode(request, NOW), library.decode(request, NOW));
    }
    for delivery in deliveries {
        let (a, b) = (
            compiled.deliver(delivery, NOW),
            library.deliver(delivery, NOW),
        );
        assert_eq!(a, b);
        if let Step::Request { continuation, .. } = a {
            let response = ProviderResponse {
                status: 200,
                headers: vec![],
                body: answer.as_bytes().to_vec(),
            };
            assert_eq!(
                compiled.resume(continuation.clone(), response.clone(), NOW),
                library.resume(continuation, response, NOW)
            );
        }
    }
}

#[test]
fn multicloud_through_its_library_answers_as_compiled_in() {
    let config = config(
        json!({"api_url": "https://genesys.example/nexus/v3", "ccid": "c", "channel_id": "sms"}),
        &[("signing_secret", "s"), ("webhook_secret", "w")],
    );
    let (compiled, library) = both(
        "genesys_3pm",
        &patchbay_upstream_genesys_3pm::MulticloudFactory,
        &config,
    );
    let body =
        br#"{"channel":{"to":{"id":"sms-main:+1"},"messageId":"g-1"},"type":"Text","text":"hi"}"#;
    let good = signed(
        "x-hub-signature",
        format!("sha1={}", hmac_sha1_hex(b"w", body)),
        body,
    );
    let bad = signed("x-hub-signature", "sha1=00".into(), body);
    let receipt = DeliveryReceipt::failed("p-1", ReasonCode::INVALID_DESTINATION, "gone");
    assert_parity(
        compiled.as_ref(),
        library.as_ref(),
        &[good, bad],
        &[
            Delivery::new("sms-main:+1", message(Content::text("hello"))),
            Delivery::new("sms-main:+1", message(Content::Receipt(receipt)))
                .referring_to(Some("g-1".into())),
            Delivery::new("sms-main:+1", message(Content::Typing { active: true })),
        ],
        r#"{"status":{"code":0},"data":{"ids":["g-2"]}}"#,
    );
}

#[test]
fn open_messaging_through_its_library_answers_as_compiled_in() {
    let config = config(
        json!({"api_url": "https://api.example", "login_url": "https://login.example/oauth/token",
               "integration_id": "i-1", "client_id": "c"}),
        &[("client_secret", "cs"), ("webhook_secret", "w")],
    );
    let (compiled, library) = both(
        "genesys_cloud",
        &patchbay_upstream_genesys_cloud::OpenMessagingFactory,
        &config,
    );
    let body =
        br#"{"id":"q-1","channel":{"to":{"id":"sms-main:+1"}},"type":"Structured","text":"Pick",
        "content":[{"contentType":"QuickReply","quickReply":{"text":"A","payload":"a"}}]}"#;
    let good = signed(
        "x-hub-signature-256",
        format!("sha256={}", base64_encode(&hmac_sha256(b"w", body))),
        body,
    );
    assert_parity(
        compiled.as_ref(),
        library.as_ref(),
        &[good],
        &[
            Delivery::new("sms-main:+1", message(Content::text("hello"))),
            Delivery::new(
                "sms-main:+1",
                message(Content::Postback {
                    payload: "a".into(),
                    text: Some("1".into()),
                }),
            )
            .referring_to(Some("q-1".into())),
        ],
        r#"{"id":"gc-1"}"#,
    );
    assert_eq!(
        compiled.token_request("oauth", NOW),
        library.token_request("oauth", NOW)
    );
}

#[test]
fn egain_through_its_library_answers_as_compiled_in_and_registers_channels() {
    use patchbay_plugin_sdk::capabilities::{ChannelCapabilities, DirectionCapabilities};
    use patchbay_plugin_sdk::upstream::register::{ChannelProfile, Registration};

    let config = config(
        json!({"api_url": "https://hub.example/v3", "token_url": "https://hub.example/token",
               "client_id": "app", "account_address": "support@example.com",
               "callback_client_id": "hub"}),
        &[("client_secret", "s"), ("callback_client_secret", "cb")],
    );
    let (compiled, library) = both("egain", &patchbay_upstream_egain::EgainFactory, &config);
    let ask = InboundRequest {
        method: "POST".into(),
        url: "https://gw.example/upstreams/genesys/token".into(),
        headers: vec![],
        body: br#"{"clientId":"hub","clientSecret":"cb"}"#.to_vec(),
    };
    let issued = compiled.verify(&ask, NOW).expect("a token");
    assert_eq!(issued, library.verify(&ask, NOW).expect("a token"));
    let token: Value = serde_json::from_slice(&issued.ack.body).expect("json");
    let body = br#"{"messages":{"message":[{"id":"h-1","type":"text","recipient":{"address":"sms-main:+1"},"content":{"text":"hi"}}]}}"#;
    let callback = signed(
        "authorization",
        format!("Bearer {}", token["accessToken"].as_str().expect("token")),
        body,
    );
    let forged = signed("authorization", "Bearer x.y.z".into(), body);
    let receipt = DeliveryReceipt::failed("p-1", ReasonCode::INVALID_DESTINATION, "gone");
    assert_parity(
        compiled.as_ref(),
        library.as_ref(),
        &[callback, forged],
        &[
            Delivery::new("sms-main:+1", message(Content::text("hello"))),
            Delivery::new("sms-main:+1", message(Content::Receipt(receipt))),
        ],
        r#"{"messages":{"message":[{"id":"h-9"}]}}"#,
    );
    let registration = Registration::new(vec![ChannelProfile::new(
        "sms-main",
        "sms",
        ChannelCapabilities {
            inbound: DirectionCapabilities::plain_text(1600),
            outbound: DirectionCapabilities::plain_text(1600),
        },
        "en-US",
        Default::default(),
    )]);
    let (a, b) = (
        compiled.register(&registration, NOW),
        library.register(&registration, NOW),
    );
    assert_eq!(a, b);
    let Step::Request { continuation, .. } = a else {
        panic!("a registration starts by listing the Hub's channels")
    };
    let listed = ProviderResponse {
        status: 200,
        headers: vec![],
        body: br#"{"channel":[]}"#.to_vec(),
    };
    assert_eq!(
        compiled.resume(continuation.clone(), listed.clone(), NOW),
        library.resume(continuation, listed, NOW)
    );
}

#[test]
fn a_connector_library_is_not_an_adapter_and_configs_load_it_by_kind() {
    let path = plugin_libs::path("patchbay_upstream_genesys_3pm");
    let err = DynamicFactory::new(open(&path).expect("loads")).expect_err("not an adapter");
    assert!(err.message.contains("upstream connector"), "{err}");

    let dir = path.parent().expect("dir");
    let text = format!(
        r#"
[plugins]
dirs = ["{dir}"]
[[plugin]]
path = "{path}"
name = "genesys-3pm-lib"
[upstreams.genesys]
kind = "genesys-3pm-lib"
settings = {{ api_url = "https://genesys.example/nexus/v3", ccid = "c", channel_id = "sms" }}
secrets = {{ signing_secret = "s" }}
[channels.web]
adapter = "client-channel"
"#,
        dir = dir.display(),
        path = path.display(),
    );
    let config = Config::parse(&text, dir, &|_| None).expect("config");
    let upstreams = build(
        &config,
        "https://gw.example",
        &patchbay_host::clock::Clock::system(),
    )
    .expect("builds");
    let Speaks::Connector { connector, .. } = &upstreams["genesys"].speaks else {
        panic!("a connector")
    };
    assert_eq!(connector.manifest().kind, "genesys-3pm");

    // Loading it under the compiled-in kind is refused, naming the entry.
    let taken = text
        .replace("name = \"genesys-3pm-lib\"\n", "")
        .replace("genesys-3pm-lib", "genesys-3pm");
    let config = Config::parse(&taken, dir, &|_| None).expect("config");
    let err = build(
        &config,
        "https://gw.example",
        &patchbay_host::clock::Clock::system(),
    )
    .expect_err("kind taken");
    assert_eq!(err.key, "plugin[0]");
    assert!(err.message.contains("already taken"), "{err}");
}
