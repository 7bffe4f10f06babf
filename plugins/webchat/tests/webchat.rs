//! The web chat adapter without a host: sessions, site JWTs, origins, and the
//! widget's wire format both ways.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use patchbay_adapter_webchat::{Webchat, WebchatFactory};
use patchbay_plugin_sdk::prelude::*;
use patchbay_plugin_sdk::testkit::conformance::Conformance;
use serde_json::{Value, json};

const NOW: Timestamp = Timestamp(1_790_000_000_000);
const SESSION_SECRET: &str = "session-secret-for-tests-0123456789";
const SITE_SECRET: &str = "site-secret-for-tests-0123456789abcd";
const SITE_PRIVATE: &str = include_str!("fixtures/site-test-only.key");
const SITE_PUBLIC: &str = include_str!("fixtures/site-test-only.pub");

fn config(settings: Value, secrets: &[(&str, &str)]) -> ChannelConfig {
    ChannelConfig {
        channel: "web".into(),
        webhook_url: "https://gateway.example/webhooks/web".into(),
        settings,
        secrets: secrets
            .iter()
            .map(|(k, v)| (k.to_string(), Secret::new(*v)))
            .collect(),
    }
}

fn webchat() -> Webchat {
    Webchat::new(&config(
        json!({"allowed_origins": ["https://shop.example"]}),
        &[("session_secret", SESSION_SECRET)],
    ))
    .expect("config")
}

fn frame(token: &str, body: Value) -> InboundRequest {
    InboundRequest {
        method: "POST".into(),
        url: "https://gateway.example/webhooks/web".into(),
        headers: vec![
            ("authorization".into(), format!("Bearer {token}")),
            ("origin".into(), "https://shop.example".into()),
            ("host".into(), "gateway.example".into()),
        ],
        body: body.to_string().into_bytes(),
    }
}

fn text(client_id: &str, text: &str) -> Value {
    json!({"client_id": client_id, "content": {"type": "text", "text": text}})
}

fn site_jwt(key: &EncodingKey, algorithm: Algorithm, claims: Value) -> String {
    jsonwebtoken::encode(&Header::new(algorithm), &claims, key).expect("sign")
}

#[test]
fn an_anonymous_session_names_a_fresh_visitor_until_it_expires() {
    let chat = webchat();
    let issued = chat.sessions().anonymous("a1b2", NOW).expect("issued");
    assert_eq!(issued.customer.id, "visitor-a1b2");
    assert_eq!(issued.expires_at, Timestamp(NOW.0 + 24 * 3600 * 1000));
    let sessions = chat.sessions();
    assert_eq!(
        sessions.check(&issued.token, NOW).expect("valid").id,
        "visitor-a1b2"
    );
    let later = Timestamp(issued.expires_at.0);
    assert_eq!(
        sessions
            .check(&issued.token, later)
            .expect_err("expired")
            .status,
        401
    );
    // Renewal keeps the customer and moves the expiry.
    let hour_later = Timestamp(NOW.0 + 3_600_000);
    let renewed = sessions.renew(&issued.token, hour_later).expect("renewed");
    assert_eq!(renewed.customer.id, "visitor-a1b2");
    assert!(renewed.expires_at > issued.expires_at);
    assert!(
        sessions.renew(&issued.token, later).is_err(),
        "an expired token renews nothing"
    );
}

#[test]
fn a_token_of_another_channel_or_altered_is_refused() {
    let chat = webchat();
    let other = Webchat::new(&ChannelConfig {
        channel: "other".into(),
        ..config(json!({}), &[("session_secret", SESSION_SECRET)])
    })
    .expect("config");
    let foreign = other.sessions().anonymous("x", NOW).expect("issued").token;
    assert_eq!(
        chat.sessions()
            .check(&foreign, NOW)
            .expect_err("foreign")
            .status,
        401
    );
    let mut altered = chat.sessions().anonymous("x", NOW).expect("issued").token;
    altered.pop();
    altered.push('A');
    assert!(chat.sessions().check(&altered, NOW).is_err());
}

#[test]
fn a_site_signed_jwt_names_the_sites_customer_hs256() {
    let chat = Webchat::new(&config(
        json!({"site_jwt_issuer": "https://shop.example"}),
        &[
            ("session_secret", SESSION_SECRET),
            ("site_jwt_secret", SITE_SECRET),
        ],
    ))
    .expect("config");
    let key = EncodingKey::from_secret(SITE_SECRET.as_bytes());
    let exp = NOW.as_secs() + 300;
    let good = site_jwt(
        &key,
        Algorithm::HS256,
        json!({"sub": "cust-42", "name": "Ann", "iss": "https://shop.example", "exp": exp}),
    );
    let issued = chat.sessions().from_site_jwt(&good, NOW).expect("accepted");
    assert_eq!(issued.customer.id, "cust-42");
    assert_eq!(issued.customer.name.as_deref(), Some("Ann"));

    let wrong_key = site_jwt(
        &EncodingKey::from_secret(b"another-secret-another-secret-xx"),
        Algorithm::HS256,
        json!({"sub": "cust-42", "iss": "https://shop.example", "exp": exp}),
    );
    let wrong_iss = site_jwt(
        &key,
        Algorithm::HS256,
        json!({"sub": "cust-42", "iss": "https://evil.example", "exp": exp}),
    );
    let expired = site_jwt(
        &key,
        Algorithm::HS256,
        json!({"sub": "cust-42", "iss": "https://shop.example", "exp": NOW.as_secs()}),
    );
    let no_sub = site_jwt(
        &key,
        Algorithm::HS256,
        json!({"iss": "https://shop.example", "exp": exp}),
    );
    for (what, jwt) in [
        ("wrong key", wrong_key),
        ("wrong issuer", wrong_iss),
        ("expired", expired),
        ("no sub", no_sub),
    ] {
        let refused = chat.sessions().from_site_jwt(&jwt, NOW).expect_err(what);
        assert_eq!(refused.status, 401, "{what}");
        assert!(!refused.message.contains(SITE_SECRET));
    }
}

#[test]
fn a_site_signed_jwt_names_the_sites_customer_rs256() {
    let chat = Webchat::new(&config(
        json!({"site_jwt_public_key": SITE_PUBLIC, "site_jwt_audience": "patchbay", "require_site_jwt": true}),
        &[("session_secret", SESSION_SECRET)],
    ))
    .expect("config");
    let key = EncodingKey::from_rsa_pem(SITE_PRIVATE.as_bytes()).expect("key");
    let exp = NOW.as_secs() + 300;
    let good = site_jwt(
        &key,
        Algorithm::RS256,
        json!({"sub": "cust-7", "aud": "patchbay", "exp": exp}),
    );
    assert_eq!(
        chat.sessions()
            .from_site_jwt(&good, NOW)
            .expect("accepted")
            .customer
            .id,
        "cust-7"
    );
    let wrong_aud = site_jwt(
        &key,
        Algorithm::RS256,
        json!({"sub": "cust-7", "aud": "else", "exp": exp}),
    );
    assert_eq!(
        chat.sessions()
            .from_site_jwt(&wrong_aud, NOW)
            .expect_err("aud")
            .status,
        401
    );
    // An HS256 token "signed" with the public key is the classic confusion: refused.
    let confused = site_jwt(
        &EncodingKey::from_secret(SITE_PUBLIC.as_bytes()),
        Algorithm::HS256,
        json!({"sub": "cust-7", "aud": "patchbay", "exp": exp}),
    );
    assert_eq!(
        chat.sessions()
            .from_site_jwt(&confused, NOW)
            .expect_err("alg")
            .status,
        401
    );
    // This channel wants the site's sign-in: no anonymous visitors.
    assert_eq!(
        chat.sessions()
            .anonymous("v", NOW)
            .expect_err("anonymous")
            .status,
        401
    );
}

#[test]
fn only_allowed_pages_and_patchbays_own_may_embed_the_widget() {
    let chat = webchat();
    let origins = chat.origins();
    assert!(origins.allows("https://shop.example", Some("gateway.example")));
    assert!(origins.allows("HTTPS://Shop.Example/", None));
    assert!(!origins.allows("https://evil.example", Some("gateway.example")));
    assert!(
        !origins.allows("http://shop.example", None),
        "the scheme counts"
    );
    // A page Patchbay serves itself (the demo page) is same-origin.
    assert!(origins.allows("http://127.0.0.1:8080", Some("127.0.0.1:8080")));
}

#[test]
fn a_broken_config_names_the_setting() {
    let short =
        Webchat::new(&config(json!({}), &[("session_secret", "short")])).expect_err("short");
    assert_eq!(short.key, "secrets.session_secret");
    assert!(
        !short.message.contains("short"),
        "the secret is not repeated"
    );
    let bad_origin = Webchat::new(&config(
        json!({"allowed_origins": ["https://ok.example", "shop.example/path"]}),
        &[("session_secret", SESSION_SECRET)],
    ))
    .expect_err("origin");
    assert_eq!(bad_origin.key, "settings.allowed_origins[1]");
    let both = Webchat::new(&config(
        json!({"site_jwt_public_key": SITE_PUBLIC}),
        &[
            ("session_secret", SESSION_SECRET),
            ("site_jwt_secret", SITE_SECRET),
        ],
    ))
    .expect_err("both");
    assert_eq!(both.key, "settings.site_jwt_public_key");
    let pem = Webchat::new(&config(
        json!({"site_jwt_public_key": "not a key"}),
        &[("session_secret", SESSION_SECRET)],
    ))
    .expect_err("pem");
    assert_eq!(pem.key, "settings.site_jwt_public_key");
    let require = Webchat::new(&config(
        json!({"require_site_jwt": true}),
        &[("session_secret", SESSION_SECRET)],
    ))
    .expect_err("require");
    assert_eq!(require.key, "settings.require_site_jwt");
    let texts = Webchat::new(&config(
        json!({"texts": {"sned": "Senden"}}),
        &[("session_secret", SESSION_SECRET)],
    ))
    .expect_err("texts");
    assert!(texts.message.contains("sned"), "{texts}");
    let unknown = Webchat::new(&config(
        json!({"allowed_origin": []}),
        &[("session_secret", SESSION_SECRET)],
    ))
    .expect_err("unknown");
    assert!(unknown.message.contains("allowed_origin"), "{unknown}");
}

#[test]
fn verify_wants_a_session_an_allowed_page_and_a_customers_message() {
    let chat = webchat();
    let token = chat.sessions().anonymous("v1", NOW).expect("issued").token;
    let none = Resources::default();
    let verdict = chat
        .verify(&frame(&token, text("m-1", "hi")), NOW, &none)
        .expect("accepted");
    assert_eq!(
        verdict.dedupe_key.as_deref(),
        Some("visitor-v1/m-1"),
        "dedupe per customer"
    );
    assert!(verdict.store);

    let mut anonymous = frame(&token, text("m-1", "hi"));
    anonymous.headers.retain(|(k, _)| k != "authorization");
    assert_eq!(
        chat.verify(&anonymous, NOW, &none)
            .expect_err("no token")
            .status,
        401
    );

    let mut foreign_page = frame(&token, text("m-1", "hi"));
    foreign_page.headers[1].1 = "https://evil.example".into();
    assert_eq!(
        chat.verify(&foreign_page, NOW, &none)
            .expect_err("origin")
            .status,
        403
    );

    let expired = Timestamp(NOW.0 + 25 * 3600 * 1000);
    assert_eq!(
        chat.verify(&frame(&token, text("m-1", "hi")), expired, &none)
            .expect_err("expired")
            .status,
        401
    );

    for (what, body) in [
        (
            "a carousel",
            json!({"client_id": "m-2", "content": {"type": "carousel", "cards": []}}),
        ),
        (
            "no client id",
            json!({"content": {"type": "text", "text": "hi"}}),
        ),
        ("empty text", text("m-3", "  ")),
        (
            "a delivered receipt",
            json!({"client_id": "m-4", "content": {"type": "receipt", "message_id": "x", "status": "Delivered"}}),
        ),
        ("not JSON", Value::String("hello".into())),
    ] {
        let refused = chat
            .verify(&frame(&token, body), NOW, &none)
            .expect_err(what);
        assert_eq!(refused.status, 400, "{what}: {}", refused.message);
    }
}

fn parsed(chat: &Webchat, request: &InboundRequest, now: Timestamp) -> Vec<Message> {
    match chat.parse_inbound(request, now) {
        Step::Done {
            output: StepOutput::Messages { messages },
        } => messages,
        other => panic!("not messages: {other:?}"),
    }
}

#[test]
fn a_customers_message_becomes_canonical_even_after_the_session_ends() {
    let chat = Webchat::new(&config(
        json!({}),
        &[
            ("session_secret", SESSION_SECRET),
            ("site_jwt_secret", SITE_SECRET),
        ],
    ))
    .expect("config");
    let jwt = site_jwt(
        &EncodingKey::from_secret(SITE_SECRET.as_bytes()),
        Algorithm::HS256,
        json!({"sub": "cust-9", "name": "Bo", "exp": NOW.as_secs() + 60}),
    );
    let token = chat
        .sessions()
        .from_site_jwt(&jwt, NOW)
        .expect("issued")
        .token;
    let postback = json!({"client_id": "m-7", "content": {"type": "postback", "payload": "yes", "text": "Yes"}});
    // Parsed from the store a week later: the session's end does not matter.
    let later = Timestamp(NOW.0 + 7 * 24 * 3600 * 1000);
    let messages = parsed(&chat, &frame(&token, postback), later);
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m.conversation.id, "cust-9");
    assert_eq!(m.channel, "web");
    assert_eq!(
        m.sender,
        Some(Participant {
            id: "cust-9".into(),
            name: Some("Bo".into())
        })
    );
    assert_eq!(m.provider_message_id.as_deref(), Some("m-7"));
    assert_eq!(
        m.content,
        Content::Postback {
            payload: "yes".into(),
            text: Some("Yes".into())
        }
    );
    // A read receipt reaches the application as one.
    let read = json!({"client_id": "r-1", "content": {"type": "receipt", "message_id": "out-1", "status": "Read"}});
    let receipt = parsed(&chat, &frame(&token, read), later);
    assert!(
        matches!(&receipt[0].content, Content::Receipt(r) if r.status == ReceiptStatus::Read && r.message_id == "out-1")
    );
}

#[test]
fn a_reply_becomes_an_outbox_entry_with_its_content_unchanged() {
    let chat = webchat();
    let mut reply = Message::new(
        "visitor-v1",
        Content::Buttons {
            text: "Pick one".into(),
            buttons: vec![
                Button::postback("Yes", "yes"),
                Button::link("Docs", "https://docs.example"),
            ],
        },
    );
    reply.id = "out-1".into();
    let Step::Request {
        request: RequestSpec::Outbox(push),
        continuation,
    } = chat.render_outbound(&reply, NOW)
    else {
        panic!("not an outbox entry");
    };
    assert_eq!(push.conversation, "visitor-v1");
    let entry: Value = serde_json::from_slice(&push.body).expect("json");
    assert_eq!(entry["id"], "out-1");
    assert_eq!(
        entry["content"],
        serde_json::to_value(&reply.content).expect("content")
    );
    assert_eq!(entry["timestamp"], NOW.to_rfc3339());
    let stored = ProviderResponse {
        status: 200,
        headers: vec![],
        body: br#"{"seq": 41}"#.to_vec(),
    };
    match chat.resume(continuation, stored, NOW) {
        Step::Done {
            output: StepOutput::Delivered {
                provider_message_id,
            },
        } => {
            assert_eq!(provider_message_id.as_deref(), Some("41"));
        }
        other => panic!("not delivered: {other:?}"),
    }
}

#[test]
fn passes_the_conformance_kit() {
    let chat = webchat();
    let token = chat
        .sessions()
        .anonymous("conformance", NOW)
        .expect("issued")
        .token;
    let sign = move |r: &mut InboundRequest| {
        r.headers
            .push(("authorization".into(), format!("Bearer {token}")));
    };
    Conformance::new(
        WebchatFactory
            .create(&config(json!({}), &[("session_secret", SESSION_SECRET)]))
            .expect("adapter"),
        NOW.0,
    )
    .inbound(text("m-1", "hi").to_string().as_bytes(), sign)
    .body_not_signed()
    .conversation("visitor-conformance")
    .run()
    .assert_passed();
}
