//! A compiled-in adapter that panics in one operation per channel, inside a
//! real `serve` (in this process, so a test can compile the adapter in): each
//! panic is contained to its call, and the other channels keep flowing.

use std::sync::Arc;

use patchbay_plugin_sdk::prelude::*;
use serde_json::{Value, json};

use crate::harness::{Host, HostOptions, Mock, client};

/// The operations the test adapter can be told to panic in.
const OPERATIONS: [&str; 6] = [
    "verify",
    "parse_inbound",
    "render_outbound",
    "resume",
    "token",
    "resource",
];

#[derive(Debug)]
struct PanickyFactory;

impl AdapterFactory for PanickyFactory {
    fn manifest(&self) -> Manifest {
        let text = DirectionCapabilities::plain_text(1000);
        Manifest::new(
            "panicky",
            "Panics on request",
            "0.0.0",
            ChannelCapabilities {
                inbound: text.clone(),
                outbound: text,
            },
        )
        .with_auth_profiles(["bot"])
    }

    fn create(&self, config: &ChannelConfig) -> Result<Box<dyn ChannelAdapter>, ConfigError> {
        #[derive(serde::Deserialize)]
        struct Settings {
            panic_in: String,
            api: String,
        }
        let s: Settings = config.settings()?;
        Ok(Box::new(Panicky {
            panic_in: s.panic_in,
            api: s.api,
        }))
    }
}

/// A plain JSON channel that panics in `panic_in`.
struct Panicky {
    panic_in: String,
    api: String,
}

impl Panicky {
    fn maybe_panic(&self, operation: &str) {
        if self.panic_in == operation {
            panic!("test adapter panics in {operation}");
        }
    }
}

impl ChannelAdapter for Panicky {
    fn manifest(&self) -> Manifest {
        PanickyFactory.manifest()
    }

    fn verify(
        &self,
        request: &InboundRequest,
        _: Timestamp,
        resources: &Resources,
    ) -> Result<Verdict, Rejection> {
        self.maybe_panic("verify");
        if !self.resources().is_empty() && resources.get("keys").is_none() {
            return Err(Rejection::stale_resources("no keys yet"));
        }
        let body: Value = serde_json::from_slice(&request.body)
            .map_err(|_| Rejection::bad_request("not JSON"))?;
        Ok(Verdict::accept(body["id"].as_str().map(str::to_string)))
    }

    fn parse_inbound(&self, request: &InboundRequest, _: Timestamp) -> Step {
        self.maybe_panic("parse_inbound");
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let from = body["from"].as_str().unwrap_or("someone");
        let text = body["text"].as_str().unwrap_or_default();
        Step::messages(vec![Message::new(from, Content::text(text))])
    }

    fn render_outbound(&self, message: &Message, _: Timestamp) -> Step {
        self.maybe_panic("render_outbound");
        let mut request = HttpRequestSpec::post_json(
            format!("{}/send", self.api),
            &json!({"to": message.conversation.id}),
        );
        if self.panic_in == "token" {
            request.auth_profile = Some("bot".into());
        }
        Step::request(request, &())
    }

    fn resume(&self, _: Continuation, _: ProviderResponse, _: Timestamp) -> Step {
        self.maybe_panic("resume");
        Step::delivered(None)
    }

    fn resources(&self) -> Vec<ResourceSpec> {
        match self.panic_in.as_str() {
            "resource" => vec![ResourceSpec {
                name: "keys".into(),
                refresh_after_ms: 60_000,
            }],
            _ => vec![],
        }
    }

    fn fetch_resource(&self, _: &str, _: Timestamp) -> Step {
        self.maybe_panic("resource");
        Step::Done {
            output: StepOutput::Resource { value: json!({}) },
        }
    }

    fn token_request(&self, _: &str, _: Timestamp) -> Result<RequestSpec, AdapterError> {
        self.maybe_panic("token");
        Ok(HttpRequestSpec::get(format!("{}/token", self.api)).into())
    }
}

#[tokio::test]
async fn a_panic_in_any_operation_stays_in_its_call_while_other_channels_flow() {
    let app = Mock::start().await;
    let integration = Mock::start().await;
    let provider = Mock::start().await;
    let mut options = HostOptions::new(&app.url("/hook"), &integration.url("/send"));
    for operation in OPERATIONS {
        options.extra_channel_toml.push_str(&format!(
            "\n[channels.p-{operation}]\nadapter = \"panicky\"\n\
             settings = {{ panic_in = \"{operation}\", api = \"{}\" }}\n",
            provider.url(&format!("/{operation}"))
        ));
    }
    let host = Host::start_in_process(options, vec![("panicky", Arc::new(PanickyFactory))]).await;

    // Inbound: a panic in verify (or in fetching what verify needs) is a 503,
    // so the provider retries and nothing is stored; a panic in parsing comes
    // after the acknowledgement and fails that job only.
    for operation in OPERATIONS {
        let body = json!({"id": format!("evt-{operation}"), "from": "c-1", "text": operation});
        let res = client()
            .post(format!("{}/webhooks/p-{operation}", host.url))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("post");
        let expected = match operation {
            "verify" | "resource" => 503,
            _ => 200,
        };
        assert_eq!(res.status(), expected, "webhook to p-{operation}");
    }
    // Outbound: panics while rendering, resuming or fetching a token.
    for operation in ["render_outbound", "resume", "token"] {
        let message =
            json!({"conversation": {"id": "c-1"}, "content": {"type": "text", "text": "hi"}});
        let res = host
            .send_to(&format!("p-{operation}"), &message, None)
            .await;
        assert_eq!(res.status(), 202, "send on p-{operation}");
    }

    // Meanwhile the client channel works both ways.
    assert_eq!(
        host.webhook(
            &json!({"message_id": "good-1", "conversation": {"id": "c-9"},
        "content": {"type": "text", "text": "still here"}})
        )
        .await
        .status(),
        200
    );
    received_text(&app, "still here").await;
    // The panicky channels whose parsing is sound deliver too.
    for operation in ["render_outbound", "resume", "token"] {
        received_text(&app, operation).await;
    }
    let sent = host
        .send_to(
            "web",
            &json!({"conversation": {"id": "c-9"}, "content": {"type": "text", "text": "reply"}}),
            None,
        )
        .await;
    assert_eq!(sent.status(), 202);
    let out = integration.wait_for(1).await;
    assert_eq!(out[0].json()["content"]["text"], "reply");

    // Nothing from a panicking parse reached the application, and the host
    // still answers.
    assert!(
        app.received()
            .iter()
            .all(|r| r.json()["content"]["text"] != "parse_inbound")
    );
    let health = client()
        .get(format!("{}/healthz", host.url))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    // The send whose answer `resume` panicked on was made; the ones whose
    // rendering or token panicked never left.
    provider.wait_for_path("/resume/send", 1).await;
    assert!(provider.received_on("/render_outbound/send").is_empty());
    assert!(provider.received_on("/token/send").is_empty());
    assert!(provider.received_on("/token/token").is_empty());
}

/// Waits (up to 10 s) until the application has received a message with `text`.
async fn received_text(app: &Mock, text: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !app
        .received()
        .iter()
        .any(|r| r.json()["content"]["text"] == text)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the application never received {text:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
