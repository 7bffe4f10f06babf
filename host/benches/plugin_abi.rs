//! The cost of the shared-library path per message: the client-channel
//! adapter compiled in against the same adapter loaded from its optimised
//! `.so`, for `verify` + `parse_inbound` of a signed webhook and for
//! `render_outbound` of a reply.
//!
//! ```text
//! cargo bench -p patchbay-host --bench plugin_abi
//! ```

use criterion::{Criterion, criterion_group, criterion_main};
use patchbay_plugin_sdk::prelude::*;
use patchbay_plugin_sdk::signature::hmac_sha256_hex;
use serde_json::json;

#[path = "../../tests/plugin_libs.rs"]
mod plugin_libs;

const SECRET: &str = "bench-channel-secret";

fn adapters() -> Vec<(&'static str, Box<dyn ChannelAdapter>)> {
    let config = ChannelConfig {
        channel: "bench".into(),
        webhook_url: "https://gw.example/webhooks/bench".into(),
        settings: json!({"webhook_url": "http://127.0.0.1:9/out"}),
        secrets: [("signing_secret".to_string(), Secret::new(SECRET))].into(),
    };
    let compiled = patchbay_adapter_client_channel::ClientChannelFactory
        .create(&config)
        .expect("compiled-in");
    let library =
        patchbay_host::plugins::open(&plugin_libs::release("patchbay-adapter-client-channel"))
            .expect("library");
    let dynamic = patchbay_host::plugins::DynamicFactory::new(library)
        .expect("an adapter library")
        .create(&config)
        .expect("shared library");
    vec![("compiled-in", compiled), ("shared-library", dynamic)]
}

fn bench(c: &mut Criterion) {
    let body = br#"{"message_id":"m-1","conversation":{"id":"c-1"},"sender":{"id":"u-1","name":"Ann"},"content":{"type":"text","text":"Where is my order? It was due yesterday."}}"#;
    let sig = format!("sha256={}", hmac_sha256_hex(SECRET.as_bytes(), body));
    let request = patchbay_plugin_sdk::testkit::request(
        "POST",
        "https://gw.example/webhooks/bench",
        &[
            ("x-hub-signature-256", &sig),
            ("content-type", "application/json"),
        ],
        body,
    );
    let mut reply = Message::new(
        "c-1",
        Content::Buttons {
            text: "It ships today. Anything else?".into(),
            buttons: vec![
                Button::postback("No, thanks", "DONE"),
                Button::link("Track", "https://track.example/42"),
            ],
        },
    );
    reply.id = "pb-1".into();
    reply.channel = "bench".into();
    let now = Timestamp(1_763_719_200_000);
    let resources = Resources::none();

    let mut inbound = c.benchmark_group("verify+parse");
    for (name, adapter) in adapters() {
        inbound.bench_function(name, |b| {
            b.iter(|| {
                adapter.verify(&request, now, &resources).expect("verified");
                std::hint::black_box(adapter.parse_inbound(&request, now))
            })
        });
    }
    inbound.finish();
    let mut outbound = c.benchmark_group("render");
    for (name, adapter) in adapters() {
        outbound.bench_function(name, |b| {
            b.iter(|| std::hint::black_box(adapter.render_outbound(&reply, now)))
        });
    }
    outbound.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
