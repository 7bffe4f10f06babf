//! Golden fixtures: a directory of JSON files, each a provider request with the
//! canonical messages it must become, or a canonical message with the provider
//! requests it must become.
//!
//! Inbound fixture (`inbound/*.json`):
//!
//! ```json
//! {"content_type": "application/json",
//!  "headers": {"x-slack-retry-num": "1"},
//!  "body": {"type": "event_callback", "event": {"type": "message", "text": "hi"}},
//!  "responses": [],
//!  "expected": [{"conversation": {"id": "C1"}, "content": {"type": "text", "text": "hi"}}]}
//! ```
//!
//! A string `body` is sent byte for byte (form bodies); any other JSON is sent
//! compact. `responses` answer the provider requests the adapter makes while
//! parsing, in order. The test signs each request with a closure, so fixtures
//! hold no signatures and stay readable.
//!
//! Outbound fixture (`outbound/*.json`):
//!
//! ```json
//! {"message": {"conversation": {"id": "C1"}, "content": {"type": "text", "text": "hi"}},
//!  "responses": [{"status": 200, "body": {"ok": true, "ts": "1.2"}}],
//!  "requests": [{"method": "POST", "url": "https://slack.example/api/chat.postMessage",
//!                "headers": {"authorization": "Bearer xoxb-test"},
//!                "body": {"channel": "C1", "text": "hi"}}],
//!  "outcome": {"kind": "delivered", "provider_message_id": "1.2"}}
//! ```
//!
//! Requests are compared whole; a body that parses as JSON is compared as
//! JSON, any other as text. Run with `PATCHBAY_BLESS=1` to rewrite
//! `expected`, `requests` and `outcome` from what the adapter does now — then
//! read the diff before committing it.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Harness, Run};
use crate::adapter::{ChannelAdapter, InboundRequest, ProviderResponse, RequestSpec};
use crate::message::Message;

#[derive(Deserialize)]
struct InboundFixture {
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    headers: Map<String, Value>,
    body: Value,
    #[serde(default)]
    responses: Vec<FixtureResponse>,
}

#[derive(Deserialize)]
struct OutboundFixture {
    message: Message,
    #[serde(default)]
    responses: Vec<FixtureResponse>,
}

/// A scripted provider response in a fixture.
#[derive(Deserialize)]
struct FixtureResponse {
    #[serde(default = "ok")]
    status: u16,
    #[serde(default)]
    headers: Map<String, Value>,
    #[serde(default)]
    body: Value,
}

fn ok() -> u16 {
    200
}

impl FixtureResponse {
    fn into_response(self) -> ProviderResponse {
        ProviderResponse {
            status: self.status,
            headers: string_pairs(&self.headers),
            body: body_bytes(&self.body),
        }
    }
}

fn string_pairs(map: &Map<String, Value>) -> Vec<(String, String)> {
    map.iter()
        .map(|(k, v)| {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            (k.to_ascii_lowercase(), v)
        })
        .collect()
}

fn body_bytes(body: &Value) -> Vec<u8> {
    match body {
        Value::Null => Vec::new(),
        Value::String(raw) => raw.clone().into_bytes(),
        json => json.to_string().into_bytes(),
    }
}

/// The JSON files of `dir`, sorted; panics when there are none.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

fn read(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn bless() -> bool {
    std::env::var_os("PATCHBAY_BLESS").is_some()
}

/// Checks `actual` against `fixture[key]`, or rewrites it when blessing.
fn check(path: &Path, fixture: &mut Value, key: &str, actual: Value) -> bool {
    if bless() {
        fixture[key] = actual;
        return true;
    }
    assert_eq!(
        actual,
        fixture[key],
        "{}: `{key}` differs\nactual:\n{}",
        path.display(),
        serde_json::to_string_pretty(&actual).unwrap_or_default()
    );
    false
}

fn write(path: &Path, fixture: &Value) {
    let mut text = serde_json::to_string_pretty(fixture).unwrap_or_default();
    text.push('\n');
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// The request an inbound fixture describes, before signing.
pub fn inbound_request(path: &Path) -> InboundRequest {
    let fixture: InboundFixture = serde_json::from_value(read(path))
        .unwrap_or_else(|e| panic!("{}: not an inbound fixture: {e}", path.display()));
    let mut headers = string_pairs(&fixture.headers);
    if let Some(ct) = fixture.content_type {
        headers.push(("content-type".into(), ct));
    }
    InboundRequest {
        method: "POST".into(),
        url: fixture
            .url
            .unwrap_or_else(|| "https://gateway.example/webhooks/test".into()),
        headers,
        body: body_bytes(&fixture.body),
    }
}

/// Runs every inbound fixture in `dir`: sign, `verify` (must accept), parse, and
/// compare the messages with `expected` (and the adapter's requests with
/// `requests`, when the fixture has them). Returns how many ran.
pub fn run_inbound<A: ChannelAdapter>(
    harness: &Harness<A>,
    dir: &Path,
    sign: impl Fn(&mut InboundRequest),
) -> usize {
    let files = files(dir);
    for path in &files {
        let mut fixture = read(path);
        let mut request = inbound_request(path);
        sign(&mut request);
        if let Err(e) = harness.verify(&request) {
            panic!("{}: verify rejected the fixture: {e}", path.display());
        }
        let parsed: InboundFixture = serde_json::from_value(fixture.clone())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let responses = parsed
            .responses
            .into_iter()
            .map(FixtureResponse::into_response)
            .collect();
        let run = harness.inbound(&request, responses);
        let mut changed = false;
        if fixture.get("requests").is_some() || (bless() && !run.requests.is_empty()) {
            changed |= check(path, &mut fixture, "requests", requests_json(&run));
        }
        let messages = match run.messages() {
            Ok(m) => serde_json::to_value(m).unwrap_or_default(),
            Err(e) => json!({"error": e}),
        };
        changed |= check(path, &mut fixture, "expected", messages);
        if changed {
            write(path, &fixture);
        }
    }
    files.len()
}

/// Runs every outbound fixture in `dir`: render, answer with `responses`, and
/// compare the requests made and the outcome. Returns how many ran.
pub fn run_outbound<A: ChannelAdapter>(harness: &Harness<A>, dir: &Path) -> usize {
    let files = files(dir);
    for path in &files {
        let mut fixture = read(path);
        let parsed: OutboundFixture = serde_json::from_value(fixture.clone())
            .unwrap_or_else(|e| panic!("{}: not an outbound fixture: {e}", path.display()));
        let responses = parsed
            .responses
            .into_iter()
            .map(FixtureResponse::into_response)
            .collect();
        let run = harness.outbound(&parsed.message, responses);
        let mut changed = check(path, &mut fixture, "requests", requests_json(&run));
        let outcome = match &run.outcome {
            Ok(output) => serde_json::to_value(output).unwrap_or_default(),
            Err(e) => json!({"error": e}),
        };
        changed |= check(path, &mut fixture, "outcome", outcome);
        if changed {
            write(path, &fixture);
        }
    }
    files.len()
}

/// The requests of a run in fixture form: JSON bodies as JSON, others as text.
pub fn requests_json(run: &Run) -> Value {
    run.requests
        .iter()
        .map(|request| match request {
            RequestSpec::Http(http) => {
                let body = match serde_json::from_slice::<Value>(&http.body) {
                    Ok(json) => json,
                    Err(_) => Value::String(String::from_utf8_lossy(&http.body).into_owned()),
                };
                let headers: Map<String, Value> = http
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                let mut out = json!({
                    "method": http.method,
                    "url": http.url,
                    "headers": headers,
                    "body": body,
                });
                if let Some(profile) = &http.auth_profile {
                    out["auth_profile"] = Value::String(profile.clone());
                }
                out
            }
            RequestSpec::Smtp(smtp) => {
                let relay = &smtp.relay;
                json!({
                    "smtp": {"relay": {"host": relay.host, "port": relay.port,
                                       "security": relay.security, "username": relay.username,
                                       "password": relay.password.as_ref().map(|_| "***")},
                             "from": smtp.from, "to": smtp.to,
                             // One string per line keeps fixtures readable.
                             "message": String::from_utf8_lossy(&smtp.message)
                                 .split("\r\n")
                                 .collect::<Vec<_>>()}
                })
            }
            RequestSpec::Outbox(push) => json!({
                "outbox": {"conversation": push.conversation,
                           "body": serde_json::from_slice::<Value>(&push.body)
                               .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&push.body).into_owned()))}
            }),
        })
        .collect()
}
