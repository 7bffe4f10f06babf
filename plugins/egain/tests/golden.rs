//! Golden fixtures for the Conversation Hub connector, both directions; the
//! callback token matrix; channel registration.

use std::path::Path;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use patchbay_plugin_sdk::capabilities::{
    AttachmentPolicy, ChannelCapabilities, DirectionCapabilities, Feature, RichType,
    SystemMessageKey, SystemMessages,
};
use patchbay_plugin_sdk::prelude::*;
use patchbay_plugin_sdk::testkit::PlatformHarness;
use patchbay_plugin_sdk::testkit::conformance::UpstreamConformance;
use patchbay_plugin_sdk::upstream::register::{
    ChannelProfile, RegisterAction, Registration, RegistrationReport,
};
use patchbay_plugin_sdk::upstream::{Delivery, PlatformEvent, UpstreamConnector, UpstreamFactory};
use patchbay_upstream_egain::EgainFactory;
use serde_json::{Value, json};

const NOW_MS: i64 = 1_763_719_200_000;
const CALLBACK_ID: &str = "hub-callbacks";
const CALLBACK_SECRET: &str = "callback-secret";
const CUSTOMER: &str = "mail:ada@example.com";
const API: &str = "https://api.egain.example/conversation/conversationmgr/v3";

fn connector_with(scheme: &str) -> Box<dyn UpstreamConnector> {
    EgainFactory
        .create(&ChannelConfig {
            channel: "egain".into(),
            webhook_url: "https://gw.example/upstreams/egain/webhook".into(),
            settings: json!({
                "api_url": API,
                "token_url": "https://auth.egain.example/oauth2/token",
                "client_id": "patchbay-app",
                "account_address": "support@example.com",
                "callback_auth": scheme,
                "callback_client_id": CALLBACK_ID,
            }),
            secrets: [
                ("client_secret".to_string(), Secret::new("app-secret")),
                (
                    "callback_client_secret".to_string(),
                    Secret::new(CALLBACK_SECRET),
                ),
            ]
            .into(),
        })
        .expect("config")
}

fn connector() -> Box<dyn UpstreamConnector> {
    connector_with("token")
}

fn harness_at(now_ms: i64) -> PlatformHarness<Box<dyn UpstreamConnector>> {
    PlatformHarness::new(connector(), now_ms)
}

fn harness() -> PlatformHarness<Box<dyn UpstreamConnector>> {
    harness_at(NOW_MS)
}

fn post(path: &str, body: &[u8], authorization: Option<String>) -> InboundRequest {
    InboundRequest {
        method: "POST".into(),
        url: format!("https://gw.example/upstreams/egain/{path}"),
        headers: authorization
            .map(|a| vec![("authorization".into(), a)])
            .unwrap_or_default(),
        body: body.to_vec(),
    }
}

/// A token from the connector's own endpoint, issued at `NOW_MS`.
fn issued_token() -> String {
    let ask = json!({"clientId": CALLBACK_ID, "clientSecret": CALLBACK_SECRET}).to_string();
    let verdict = harness()
        .verify(&post("token", ask.as_bytes(), None))
        .expect("a token");
    assert!(!verdict.store, "a token request is never stored");
    let answer: Value = serde_json::from_slice(&verdict.ack.body).expect("json");
    assert_eq!(answer["tokenType"], json!("Bearer"));
    assert_eq!(answer["expiresIn"], json!(3600));
    answer["accessToken"].as_str().expect("token").to_string()
}

fn callback(body: &[u8]) -> InboundRequest {
    post("webhook", body, Some(format!("Bearer {}", issued_token())))
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .expect(name)
}

fn decoded(name: &str) -> Vec<(String, Message)> {
    harness()
        .webhook(&callback(&fixture(name)))
        .expect(name)
        .into_iter()
        .map(|event| match event {
            PlatformEvent::Message {
                customer, message, ..
            } => (customer, *message),
            other => panic!("{name}: a message expected, got {other:?}"),
        })
        .collect()
}

#[test]
fn hub_callbacks_decode_to_canonical_content() {
    let cases = [
        (
            "text_with_attachment.json",
            Content::Attachments {
                attachments: vec![Attachment {
                    url: "https://hub.example/assets/form.pdf".into(),
                    filename: Some("form.pdf".into()),
                    content_type: Some("application/pdf".into()),
                    size: Some(2048),
                }],
                text: Some("Here is the form".into()),
            },
        ),
        (
            "listpicker.json",
            Content::ListPicker {
                title: "How can we help?".into(),
                items: vec![
                    ListItem {
                        title: "Billing".into(),
                        subtitle: Some("Invoices and payments".into()),
                        image_url: None,
                        payload: "BILLING".into(),
                    },
                    ListItem {
                        title: "Support".into(),
                        subtitle: None,
                        image_url: Some("https://hub.example/s.png".into()),
                        payload: "Support".into(),
                    },
                ],
            },
        ),
        (
            "quickreply.json",
            Content::QuickReplies {
                text: "Was this helpful?".into(),
                replies: vec![
                    QuickReply {
                        title: "Yes".into(),
                        payload: "YES".into(),
                    },
                    QuickReply {
                        title: "No".into(),
                        payload: "No".into(),
                    },
                ],
            },
        ),
        (
            "timepicker.json",
            Content::TimePicker {
                title: "Pick a time for a call".into(),
                slots: vec![
                    TimeSlot {
                        start: "2026-11-24T09:00:00Z".into(),
                        duration_minutes: Some(30),
                        payload: None,
                    },
                    TimeSlot {
                        start: "2026-11-24T10:00:00Z".into(),
                        duration_minutes: Some(30),
                        payload: Some("SLOT-2".into()),
                    },
                ],
                timezone: Some("Europe/Paris".into()),
            },
        ),
        (
            "richlink.json",
            Content::RichLink {
                url: "https://shop.example/orders/1".into(),
                title: "Your order".into(),
                image_url: Some("https://shop.example/o.png".into()),
                description: Some("Shipped today".into()),
            },
        ),
    ];
    for (name, content) in cases {
        let messages = decoded(name);
        let [(customer, message)] = messages.as_slice() else {
            panic!("{name}: one message expected, got {messages:?}");
        };
        assert_eq!(customer, CUSTOMER, "{name}");
        assert_eq!(message.content, content, "{name}");
        message.content.validate().expect(name);
    }
    let text = &decoded("text_with_attachment.json")[0].1;
    assert_eq!(
        text.sender.as_ref().and_then(|s| s.name.as_deref()),
        Some("Ann")
    );
    assert_eq!(text.provider_message_id.as_deref(), Some("hub-1"));
}

#[test]
fn one_callback_may_carry_several_messages_and_unknown_types_are_ignored() {
    let contents: Vec<Content> = decoded("typing_and_end.json")
        .into_iter()
        .map(|(_, m)| m.content)
        .collect();
    assert_eq!(
        contents,
        vec![
            Content::Typing { active: true },
            Content::Typing { active: false },
            Content::EndSession { reason: None },
        ]
    );
    let verdict = harness()
        .verify(&callback(&fixture("typing_and_end.json")))
        .expect("verify");
    assert_eq!(verdict.ack.status, 200);
    assert_eq!(
        verdict.dedupe_key.as_deref(),
        Some("hub-6,hub-7,hub-8,hub-9")
    );
}

fn foreign_token(audience: &str, secret: &str, exp_secs: i64) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"aud": audience, "iat": NOW_MS / 1000, "exp": exp_secs}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

#[test]
fn callbacks_need_a_live_token_from_patchbay_and_get_401_otherwise() {
    let body = fixture("richlink.json");
    let token = issued_token();
    let with = |t: &str| post("webhook", &body, Some(format!("Bearer {t}")));
    harness().verify(&with(&token)).expect("a fresh token");
    // Still good a second before it expires, refused from then on: the Hub
    // fetches a new one on 401.
    harness_at(NOW_MS + 3_599_000)
        .verify(&with(&token))
        .expect("within its lifetime");
    let expired = harness_at(NOW_MS + 3_600_000)
        .verify(&with(&token))
        .expect_err("expired");
    assert_eq!(
        (expired.status, expired.message.as_str()),
        (401, "token expired")
    );
    let later = NOW_MS / 1000 + 600;
    for (what, request) in [
        ("no authorization", post("webhook", &body, None)),
        (
            "wrong secret",
            with(&foreign_token("egain", "guess", later)),
        ),
        (
            "another upstream's",
            with(&foreign_token("other", CALLBACK_SECRET, later)),
        ),
        ("not a token", with("abc")),
        (
            "Basic instead",
            post(
                "webhook",
                &body,
                Some(format!(
                    "Basic {}",
                    patchbay_plugin_sdk::signature::base64_encode(
                        format!("{CALLBACK_ID}:{CALLBACK_SECRET}").as_bytes()
                    )
                )),
            ),
        ),
    ] {
        let refused = harness().verify(&request).expect_err(what);
        assert_eq!(refused.status, 401, "{what}");
    }
}

#[test]
fn the_token_endpoint_wants_the_callback_clients_credentials() {
    for ask in [
        json!({"clientId": CALLBACK_ID, "clientSecret": "guess"}),
        json!({"clientId": "someone", "clientSecret": CALLBACK_SECRET}),
    ] {
        let refused = harness()
            .verify(&post("token", ask.to_string().as_bytes(), None))
            .expect_err("wrong credentials");
        assert_eq!(refused.status, 401);
        assert!(!refused.message.contains(CALLBACK_SECRET));
    }
    let unreadable = harness()
        .verify(&post("token", b"grant_type=client_credentials", None))
        .expect_err("not JSON");
    assert_eq!(unreadable.status, 400);
}

#[test]
fn basic_auth_callbacks_are_checked_against_the_callback_client() {
    let h = PlatformHarness::new(connector_with("basic"), NOW_MS);
    let body = fixture("richlink.json");
    let basic = |id: &str, secret: &str| {
        let pair = format!("{id}:{secret}");
        Some(format!(
            "Basic {}",
            patchbay_plugin_sdk::signature::base64_encode(pair.as_bytes())
        ))
    };
    h.verify(&post("webhook", &body, basic(CALLBACK_ID, CALLBACK_SECRET)))
        .expect("the right pair");
    let refused = h
        .verify(&post("webhook", &body, basic(CALLBACK_ID, "guess")))
        .expect_err("wrong secret");
    assert_eq!(refused.status, 401);
    let ask = json!({"clientId": CALLBACK_ID, "clientSecret": CALLBACK_SECRET}).to_string();
    let no_endpoint = h
        .verify(&post("token", ask.as_bytes(), None))
        .expect_err("no token endpoint with Basic");
    assert_eq!(no_endpoint.status, 404);
}

fn customer_message(content: Content) -> Message {
    let mut m = Message::new("ada@example.com", content);
    m.id = "0190163d-8694-739b-aea5-966c26f8ad91".into();
    m.channel = "mail".into();
    m.sender = Some(Participant {
        id: "ada@example.com".into(),
        name: Some("Ada".into()),
    });
    m
}

fn accepted(body: Value) -> ProviderResponse {
    ProviderResponse {
        status: 202,
        headers: vec![],
        body: body.to_string().into_bytes(),
    }
}

/// The one request a delivery makes, as JSON, and the delivery's outcome.
fn sent_with(delivery: Delivery) -> Option<(Value, Result<StepOutput, AdapterError>)> {
    let run = harness().deliver(
        &delivery,
        vec![accepted(
            json!({"messages": {"message": [{"id": "hub-77"}]}}),
        )],
    );
    let RequestSpec::Http(request) = run.requests.first()? else {
        panic!("HTTP")
    };
    assert_eq!(request.url, format!("{API}/conversations/messages"));
    assert_eq!(request.auth_profile.as_deref(), Some("messaging"));
    Some((
        serde_json::from_slice(&request.body).expect("json"),
        run.outcome,
    ))
}

fn sent(content: Content) -> Option<Value> {
    sent_with(Delivery::new(CUSTOMER, customer_message(content))).map(|(body, _)| body)
}

#[test]
fn customer_messages_go_to_the_hub_in_its_envelope() {
    let (body, outcome) = sent_with(Delivery::new(
        CUSTOMER,
        customer_message(Content::text("hello")),
    ))
    .expect("a request");
    assert_eq!(
        body,
        json!({
            "metadata": {"attributes": [{"name": "patchbay_channel", "value": "mail"}]},
            "messages": {"message": [{
                "id": "0190163d-8694-739b-aea5-966c26f8ad91",
                "type": "text",
                "createdDate": "2025-11-21T10:00:00.000Z",
                "sender": {"type": "customer", "address": CUSTOMER, "name": "Ada"},
                "recipient": {"address": "support@example.com"},
                "content": {"text": "hello"},
            }]},
        })
    );
    assert_eq!(
        outcome,
        Ok(StepOutput::Delivered {
            provider_message_id: Some("hub-77".into())
        })
    );
    let postback = sent_with(
        Delivery::new(
            CUSTOMER,
            customer_message(Content::Postback {
                payload: "BILLING".into(),
                text: Some("Billing".into()),
            }),
        )
        .referring_to(Some("hub-2".into())),
    )
    .expect("a request")
    .0;
    let message = &postback["messages"]["message"][0];
    assert_eq!(message["inReplyTo"], json!("hub-2"));
    assert_eq!(
        message["content"],
        json!({"text": "Billing", "postback": "BILLING"})
    );
    let files = sent(Content::Attachments {
        attachments: vec![Attachment {
            url: "https://files.example/a.png".into(),
            filename: Some("a.png".into()),
            ..Attachment::default()
        }],
        text: None,
    })
    .expect("a request");
    assert_eq!(
        files["messages"]["message"][0]["content"],
        json!({"attachments": [{"url": "https://files.example/a.png", "name": "a.png"}]})
    );
    for (content, kind) in [
        (Content::Typing { active: true }, "typing.start"),
        (Content::Typing { active: false }, "typing.end"),
        (Content::EndSession { reason: None }, "conversation.end"),
    ] {
        let body = sent(content).expect("a request");
        assert_eq!(body["messages"]["message"][0]["type"], json!(kind));
        assert_eq!(body["messages"]["message"][0].get("content"), None);
    }
    let info = sent(Content::ContextData {
        data: [("tier".to_string(), json!("gold"))].into(),
    })
    .expect("a request");
    assert_eq!(
        info["messages"]["message"][0]["type"],
        json!("customer.info")
    );
    assert_eq!(
        info["messages"]["message"][0]["content"],
        json!({"attributes": [{"name": "tier", "value": "gold"}]})
    );
}

#[test]
fn no_receipts_in_the_hub_but_a_failure_is_told_to_the_agent() {
    let failed = DeliveryReceipt::failed("p-1", ReasonCode::NOT_ALLOWED, "refused");
    let (body, _) = sent_with(
        Delivery::new(CUSTOMER, customer_message(Content::Receipt(failed)))
            .with_notice(Some("Attachment file type 'exe' is not allowed.".into())),
    )
    .expect("a request");
    assert_eq!(body["messages"]["message"][0]["type"], json!("error"));
    assert_eq!(
        body["messages"]["message"][0]["content"]["text"],
        json!("Attachment file type 'exe' is not allowed.")
    );
    assert_eq!(
        sent(Content::Receipt(DeliveryReceipt::delivered("p-2"))),
        None
    );
}

#[test]
fn a_refused_send_is_classified_like_any_api_error() {
    let run = harness().deliver(
        &Delivery::new(CUSTOMER, customer_message(Content::text("hi"))),
        vec![ProviderResponse {
            status: 400,
            headers: vec![],
            body: br#"{"code":"400-143","developerMessage":"Required attribute is missing in the request body"}"#.to_vec(),
        }],
    );
    let error = run.outcome.expect_err("400");
    assert_eq!(error.class(), ErrorClass::Permanent);
}

fn mail_profile(max_text: usize, rich: &[RichType]) -> ChannelProfile {
    let mut texts = SystemMessages::default();
    texts.0.insert(
        "fr-FR".into(),
        [(
            SystemMessageKey::BlockedFileExtension,
            "Le type de fichier '{0}' n'est pas autorisé.".to_string(),
        )]
        .into(),
    );
    ChannelProfile::new(
        "mail",
        "email",
        ChannelCapabilities {
            inbound: DirectionCapabilities::plain_text(max_text)
                .with_features([Feature::Attachments]),
            outbound: DirectionCapabilities::plain_text(max_text)
                .with_features([Feature::Attachments, Feature::RichText])
                .with_rich_types(rich.iter().copied())
                .with_attachments(
                    AttachmentPolicy::any()
                        .with_max_size(10_000_000)
                        .blocking(["exe"]),
                ),
        },
        "en-US",
        texts,
    )
}

fn ok(status: u16, body: Value) -> ProviderResponse {
    ProviderResponse {
        status,
        headers: vec![],
        body: if body.is_null() {
            vec![]
        } else {
            body.to_string().into_bytes()
        },
    }
}

fn report(run: patchbay_plugin_sdk::testkit::Run) -> RegistrationReport {
    RegistrationReport::from_output(run.outcome.expect("registered")).expect("a report")
}

fn http(request: &RequestSpec) -> &HttpRequestSpec {
    match request {
        RequestSpec::Http(h) => h,
        other => panic!("HTTP expected, got {other:?}"),
    }
}

#[test]
fn registration_creates_the_channel_from_patchbays_model_then_leaves_it() {
    let h = harness();
    let registration = Registration::new(vec![mail_profile(10_000, &[RichType::ListPicker])]);
    let run = h.register(
        &registration,
        vec![
            ok(200, json!({"channel": []})),
            ok(201, json!({"id": "ch-1"})),
        ],
    );
    let requests: Vec<&HttpRequestSpec> = run.requests.iter().map(http).collect();
    assert_eq!(
        requests
            .iter()
            .map(|r| (r.method.as_str(), r.url.as_str(), r.auth_profile.as_deref()))
            .collect::<Vec<_>>(),
        vec![
            ("GET", format!("{API}/channels").as_str(), Some("manage")),
            ("POST", format!("{API}/channels").as_str(), Some("manage")),
        ]
    );
    let created: Value = serde_json::from_slice(&requests[1].body).expect("json");
    assert_eq!(created["type"], json!("custom.patchbay.mail"));
    assert_eq!(
        created["restrictions"]["outbound"],
        json!({
            "maxTextLength": 10000,
            "features": ["attachments", "richText"],
            "richMessageTypes": ["listpicker"],
            "attachmentPolicy": {"enabled": true, "maxSize": 10000000, "type": "block", "extensions": ["exe"]},
            "systemMessages": true,
            "midChatAuth": false,
        })
    );
    assert_eq!(
        created["restrictions"]["inbound"]["features"],
        json!(["attachments"])
    );
    let languages: Vec<&str> = created["l10nProperties"]
        .as_array()
        .expect("l10n")
        .iter()
        .map(|l| l["language"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(languages, ["en-US", "fr-FR"]);
    let french = &created["l10nProperties"][1]["properties"];
    assert!(
        french.as_array().expect("properties").contains(&json!({
            "name": "msg_hub_blocked_file_extension",
            "value": "Le type de fichier '{0}' n'est pas autorisé."
        })),
        "{french}"
    );
    let first = report(run);
    assert_eq!(first.channels[0].action, RegisterAction::Created);
    assert_eq!(first.channels[0].platform_id.as_deref(), Some("ch-1"));

    // The Hub now holds what was sent: a second run reads and writes nothing.
    let mut held = created.clone();
    held["id"] = json!("ch-1");
    held["created"] = json!("2026-11-21T10:00:00Z");
    let again = h.register(&registration, vec![ok(200, json!({"channel": [held]}))]);
    assert_eq!(again.requests.len(), 1);
    let second = report(again);
    assert_eq!(second.channels[0].action, RegisterAction::Unchanged);
    assert!(second.channels[0].changes.is_empty());
}

#[test]
fn registration_never_widens_silently() {
    let h = harness();
    let hub_copy = {
        let run = h.register(
            &Registration::new(vec![mail_profile(2_000, &[])]),
            vec![
                ok(200, json!({"channel": []})),
                ok(201, json!({"id": "ch-1"})),
            ],
        );
        let mut copy: Value = serde_json::from_slice(&http(&run.requests[1]).body).expect("json");
        copy["id"] = json!("ch-1");
        copy
    };
    let wider = Registration::new(vec![mail_profile(10_000, &[RichType::RichLink])]);
    let held = h.register(
        &wider,
        vec![ok(200, json!({"channel": [hub_copy.clone()]}))],
    );
    assert_eq!(held.requests.len(), 1, "nothing written");
    let outcome = &report(held).channels[0];
    assert_eq!(outcome.action, RegisterAction::Held);
    assert!(
        outcome
            .widenings
            .iter()
            .any(|w| w == "outbound.maxTextLength: 2000 → 10000"),
        "{outcome:?}"
    );
    assert!(
        outcome
            .widenings
            .iter()
            .any(|w| w.starts_with("outbound.richMessageTypes")),
        "{outcome:?}"
    );

    let dry = h.register(
        &wider.clone().widening(true).dry_run(true),
        vec![ok(200, json!({"channel": [hub_copy.clone()]}))],
    );
    assert_eq!(dry.requests.len(), 1, "a dry run only reads");
    assert_eq!(report(dry).channels[0].action, RegisterAction::WouldUpdate);

    let widened = h.register(
        &wider.widening(true),
        vec![
            ok(200, json!({"channel": [hub_copy.clone()]})),
            ok(204, Value::Null),
        ],
    );
    let put = http(&widened.requests[1]);
    assert_eq!(
        (put.method.as_str(), put.url.as_str()),
        ("PUT", format!("{API}/channels/ch-1").as_str())
    );
    assert_eq!(report(widened).channels[0].action, RegisterAction::Updated);

    // Narrowing needs no permission.
    let narrower = h.register(
        &Registration::new(vec![mail_profile(1_000, &[])]),
        vec![
            ok(200, json!({"channel": [hub_copy]})),
            ok(204, Value::Null),
        ],
    );
    let outcome = report(narrower).channels[0].clone();
    assert_eq!(outcome.action, RegisterAction::Updated, "{outcome:?}");
    assert!(outcome.widenings.is_empty(), "{outcome:?}");
}

#[test]
fn a_failed_channel_write_fails_the_registration_naming_the_channel() {
    let run = harness().register(
        &Registration::new(vec![mail_profile(1_000, &[])]),
        vec![
            ok(200, json!({"channel": []})),
            ok(
                400,
                json!({"code": "400-143", "developerMessage": "Required attribute is missing"}),
            ),
        ],
    );
    let error = run.outcome.expect_err("refused");
    assert!(error.message().contains("mail"), "{error:?}");
}

#[test]
fn the_connector_passes_the_conformance_kit() {
    let token = issued_token();
    UpstreamConformance::new(connector(), NOW_MS)
        .webhook(&fixture("listpicker.json"), move |r| {
            r.headers
                .push(("Authorization".into(), format!("Bearer {token}")));
        })
        // The token covers the caller, not the body.
        .body_not_signed()
        .answer(202, r#"{"messages": {"message": [{"id": "hub-1"}]}}"#)
        .run()
        .assert_passed();
}
