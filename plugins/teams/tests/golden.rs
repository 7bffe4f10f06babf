//! Golden fixtures and token validation for the Teams adapter. Tokens are
//! minted with a throwaway RSA key pair under `tests/keys` (test-only keys).

use std::path::{Path, PathBuf};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use patchbay_adapter_teams::{KEYS_RESOURCE, Teams};
use patchbay_plugin_sdk::prelude::*;
use patchbay_plugin_sdk::testkit::{Harness, fixtures, json_response, request};
use serde_json::{Value, json};

const APP_ID: &str = "bot-app-id";
const NOW: i64 = 1_763_719_200_000;
const SERVICE_URL: &str = "https://smba.example/amer/";

fn path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(rel)
}

fn json_file(rel: &str) -> Value {
    serde_json::from_slice(&std::fs::read(path(rel)).expect("read")).expect("json")
}

fn teams() -> Teams {
    let config = ChannelConfig {
        channel: "teams".into(),
        webhook_url: "https://gw.example/webhooks/teams".into(),
        settings: json!({
            "app_id": APP_ID,
            "openid_metadata_url": "https://login.example/v1/.well-known/openidconfiguration",
            "token_url": "https://login.example/oauth2/v2.0/token",
            "service_url": "https://smba.example/teams/",
            "service_url_prefixes": ["https://smba.example/"],
        }),
        secrets: [(
            "app_password".to_string(),
            Secret::new("app-password-for-tests"),
        )]
        .into(),
    };
    Teams::new(&config).expect("config")
}

fn harness() -> Harness<Teams> {
    Harness::new(teams(), NOW).with_resource(KEYS_RESOURCE, json_file("keys/jwks.json"))
}

struct Token {
    key: &'static str,
    kid: &'static str,
    claims: Value,
}

impl Token {
    fn valid(service_url: &str) -> Self {
        let now = NOW / 1000;
        Token {
            key: "keys/test.der",
            kid: "test-key-1",
            claims: json!({
                "iss": "https://api.botframework.com",
                "aud": APP_ID,
                "exp": now + 3600,
                "nbf": now - 60,
                "serviceurl": service_url,
            }),
        }
    }

    fn with(mut self, claim: &str, value: Value) -> Self {
        self.claims[claim] = value;
        self
    }

    fn mint(&self) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.into());
        let der = std::fs::read(path(self.key)).expect("key");
        encode(&header, &self.claims, &EncodingKey::from_rsa_der(&der)).expect("sign")
    }
}

fn bearer(request: &mut InboundRequest, token: &Token) {
    request
        .headers
        .push(("authorization".into(), format!("Bearer {}", token.mint())));
}

fn activity(service_url: &str) -> Vec<u8> {
    activity_on("msteams", service_url)
}

fn activity_on(channel_id: &str, service_url: &str) -> Vec<u8> {
    json!({"type": "message", "id": "1", "channelId": channel_id, "serviceUrl": service_url, "text": "hi",
           "conversation": {"id": "a:1"}, "from": {"id": "29:1"}})
    .to_string()
    .into_bytes()
}

#[test]
fn inbound_fixtures() {
    let ran = fixtures::run_inbound(&harness(), &path("fixtures/inbound"), |req| {
        let body: Value = serde_json::from_slice(&req.body).expect("json");
        let service_url = body["serviceUrl"].as_str().expect("serviceUrl").to_string();
        bearer(req, &Token::valid(&service_url));
    });
    assert!(ran >= 12, "inbound fixtures missing: {ran}");
}

#[test]
fn outbound_fixtures() {
    let ran = fixtures::run_outbound(&harness(), &path("fixtures/outbound"));
    assert!(ran >= 19, "outbound fixtures missing: {ran}");
}

#[test]
fn a_valid_token_is_accepted_within_the_skew() {
    let h = harness();
    let mut ok = request(
        "POST",
        "https://gw/webhooks/teams",
        &[],
        &activity(SERVICE_URL),
    );
    bearer(&mut ok, &Token::valid(SERVICE_URL));
    let verdict = h.verify(&ok).expect("valid");
    assert_eq!(verdict.dedupe_key.as_deref(), Some("activity:1"));

    // Expired four minutes ago: still inside the five minutes of skew.
    let mut late = request(
        "POST",
        "https://gw/webhooks/teams",
        &[],
        &activity(SERVICE_URL),
    );
    bearer(
        &mut late,
        &Token::valid(SERVICE_URL).with("exp", json!(NOW / 1000 - 240)),
    );
    assert!(h.verify(&late).is_ok());
    // Trailing slashes do not matter.
    let mut slash = request(
        "POST",
        "https://gw/webhooks/teams",
        &[],
        &activity("https://smba.example/amer"),
    );
    bearer(&mut slash, &Token::valid(SERVICE_URL));
    assert!(h.verify(&slash).is_ok());
}

#[test]
fn bad_tokens_are_rejected() {
    let now = NOW / 1000;
    let cases: Vec<(&str, Option<Token>, Vec<u8>)> = vec![
        ("missing token", None, activity(SERVICE_URL)),
        (
            "expired",
            Some(Token::valid(SERVICE_URL).with("exp", json!(now - 301))),
            activity(SERVICE_URL),
        ),
        (
            "not yet valid",
            Some(Token::valid(SERVICE_URL).with("nbf", json!(now + 301))),
            activity(SERVICE_URL),
        ),
        (
            "wrong audience",
            Some(Token::valid(SERVICE_URL).with("aud", json!("another-bot"))),
            activity(SERVICE_URL),
        ),
        (
            "wrong issuer",
            Some(Token::valid(SERVICE_URL).with("iss", json!("https://evil.example"))),
            activity(SERVICE_URL),
        ),
        (
            "wrong key under a known kid",
            Some(Token {
                key: "keys/other.der",
                ..Token::valid(SERVICE_URL)
            }),
            activity(SERVICE_URL),
        ),
        (
            "tampered serviceUrl",
            Some(Token::valid(SERVICE_URL)),
            activity("https://attacker.example/"),
        ),
        (
            "no serviceurl claim",
            Some(Token::valid(SERVICE_URL).with("serviceurl", Value::Null)),
            activity(SERVICE_URL),
        ),
    ];
    let h = harness();
    for (name, token, body) in cases {
        let mut req = request("POST", "https://gw/webhooks/teams", &[], &body);
        if let Some(token) = &token {
            bearer(&mut req, token);
        }
        let err = h.verify(&req).expect_err(name);
        assert_eq!(err.status, 401, "{name}: {}", err.message);
        assert!(!err.stale_resources, "{name}");
    }
    let garbage = request(
        "POST",
        "https://gw/webhooks/teams",
        &[("authorization", "Bearer x")],
        b"{not json",
    );
    assert_eq!(h.verify(&garbage).expect_err("garbage").status, 400);
}

#[test]
fn an_unknown_key_asks_the_host_to_refresh_the_key_set() {
    let token = Token {
        key: "keys/other.der",
        kid: "other-key",
        ..Token::valid(SERVICE_URL)
    };
    let mut req = request(
        "POST",
        "https://gw/webhooks/teams",
        &[],
        &activity(SERVICE_URL),
    );
    bearer(&mut req, &token);
    let err = harness().verify(&req).expect_err("unknown kid");
    assert!(err.stale_resources);
    // After the rotation the new key set has it.
    let rotated =
        Harness::new(teams(), NOW).with_resource(KEYS_RESOURCE, json_file("keys/other_jwks.json"));
    assert!(rotated.verify(&req).is_ok());
}

#[test]
fn the_key_set_is_fetched_through_the_openid_metadata() {
    let run = harness().fetch_resource(
        KEYS_RESOURCE,
        vec![
            json_response(
                200,
                &json!({"issuer": "https://api.botframework.com",
                                       "jwks_uri": "https://login.example/v1/keys"}),
            ),
            json_response(200, &json_file("keys/jwks.json")),
        ],
    );
    let urls: Vec<String> = run
        .requests
        .iter()
        .map(|r| match r {
            RequestSpec::Http(h) => h.url.clone(),
            _ => String::new(),
        })
        .collect();
    assert_eq!(
        urls,
        [
            "https://login.example/v1/.well-known/openidconfiguration",
            "https://login.example/v1/keys"
        ]
    );
    assert_eq!(
        run.outcome,
        Ok(StepOutput::Resource {
            value: json_file("keys/jwks.json")
        })
    );
}

#[test]
fn card_actions_get_the_invoke_response() {
    let body = json!({"type": "invoke", "name": "adaptiveCard/action", "id": "9",
        "channelId": "msteams", "serviceUrl": SERVICE_URL, "conversation": {"id": "a:1"},
        "value": {"action": {"type": "Action.Execute", "verb": "ok", "data": {"payload": "OK"}}}});
    let mut req = request(
        "POST",
        "https://gw/webhooks/teams",
        &[],
        body.to_string().as_bytes(),
    );
    bearer(&mut req, &Token::valid(SERVICE_URL));
    let verdict = harness().verify(&req).expect("verify");
    let ack: Value = serde_json::from_slice(&verdict.ack.body).expect("json");
    assert_eq!(ack["statusCode"], 200);
    assert_eq!(ack["type"], "application/vnd.microsoft.activity.message");
    assert!(verdict.store);
}

#[test]
fn client_credentials_token() {
    let t = teams();
    let RequestSpec::Http(req) = t.token_request("bot", Timestamp(NOW)).expect("request") else {
        panic!("http")
    };
    assert_eq!(req.url, "https://login.example/oauth2/v2.0/token");
    let form = String::from_utf8(req.body).expect("utf8");
    assert!(form.contains("grant_type=client_credentials"));
    assert!(form.contains("client_id=bot-app-id"));
    assert!(form.contains("scope=https%3A%2F%2Fapi.botframework.com%2F.default"));
    let token = t
        .token_response(
            "bot",
            json_response(
                200,
                &json!({"token_type": "Bearer", "expires_in": 3599, "access_token": "eyJ0"}),
            ),
            Timestamp(NOW),
        )
        .expect("token");
    assert_eq!(token.token.expose(), "eyJ0");
    assert_eq!(token.expires_at, Timestamp(NOW + 3_599_000));
    let refused = t
        .token_response(
            "bot",
            json_response(401, &json!({"error": "invalid_client"})),
            Timestamp(NOW),
        )
        .expect_err("refused");
    assert!(!refused.is_retryable());
    assert!(refused.message().contains("secrets.app_password"));
    assert!(!refused.message().contains("app-password-for-tests"));
}

#[test]
fn passes_the_conformance_kit() {
    let sign = |req: &mut InboundRequest| bearer(req, &Token::valid(SERVICE_URL));
    patchbay_plugin_sdk::testkit::conformance::Conformance::new(teams(), NOW)
        .resource(KEYS_RESOURCE, json_file("keys/jwks.json"))
        .inbound(&activity(SERVICE_URL), sign)
        // The Bot Framework token authenticates the sender, not the body.
        .body_not_signed()
        .conversation("a:1")
        .inbound_fixtures(path("fixtures/inbound"), move |req| {
            let body: Value = serde_json::from_slice(&req.body).expect("json");
            let service_url = body["serviceUrl"].as_str().expect("serviceUrl").to_string();
            bearer(req, &Token::valid(&service_url));
        })
        .outbound_fixtures(path("fixtures/outbound"))
        .run()
        .assert_passed();
}

#[test]
fn a_key_signs_only_for_the_channels_it_is_endorsed_for() {
    // The test key is endorsed for msteams only.
    let token = Token::valid(SERVICE_URL);
    let mut teams_activity = request(
        "POST",
        "https://gw/webhooks/teams",
        &[],
        &activity(SERVICE_URL),
    );
    bearer(&mut teams_activity, &token);
    assert!(harness().verify(&teams_activity).is_ok());
    let mut webchat = request(
        "POST",
        "https://gw/webhooks/teams",
        &[],
        &activity_on("webchat", SERVICE_URL),
    );
    bearer(&mut webchat, &token);
    let err = harness()
        .verify(&webchat)
        .expect_err("not endorsed for webchat");
    assert_eq!(err.status, 401);
    assert!(err.message.contains("not endorsed"), "{}", err.message);
}

#[test]
fn a_key_endorsed_only_for_webchat_is_refused_for_teams() {
    let mut keys = json_file("keys/jwks.json");
    keys["keys"][0]["endorsements"] = json!(["webchat"]);
    let harness = Harness::new(teams(), NOW).with_resource(KEYS_RESOURCE, keys);
    let mut req = request(
        "POST",
        "https://gw/webhooks/teams",
        &[],
        &activity(SERVICE_URL),
    );
    bearer(&mut req, &Token::valid(SERVICE_URL));
    let err = harness.verify(&req).expect_err("endorsed for webchat only");
    assert_eq!(err.status, 401);
}

#[test]
fn an_activity_without_a_conversation_is_refused_at_verify() {
    let mut body: Value = serde_json::from_slice(&activity(SERVICE_URL)).expect("json");
    body.as_object_mut().expect("object").remove("conversation");
    let mut req = request(
        "POST",
        "https://gw/webhooks/teams",
        &[],
        body.to_string().as_bytes(),
    );
    bearer(&mut req, &Token::valid(SERVICE_URL));
    let refused = harness().verify(&req).expect_err("refused");
    assert_eq!(refused.status, 400, "{}", refused.message);
}
