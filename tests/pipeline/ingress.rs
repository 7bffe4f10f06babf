//! Webhook ingress: signatures, size limits, duplicates, shutdown.

use serde_json::json;

use crate::harness::*;

fn body(id: &str) -> serde_json::Value {
    json!({"message_id": id, "conversation": {"id": "c"}, "content": {"type": "text", "text": "hi"}})
}

#[tokio::test]
async fn a_provider_event_sent_twice_reaches_the_application_once() {
    let app = Mock::start().await;
    let host = Host::start(HostOptions::new(
        &app.url("/hook"),
        "http://127.0.0.1:9/unused",
    ));
    let event = body("evt-dup");
    let (a, b) = tokio::join!(host.webhook(&event), host.webhook(&event));
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    app.wait_for(1).await;
    assert_eq!(
        host.webhook(&body("evt-dup")).await.status(),
        200,
        "a late retry is acknowledged too"
    );
    host.idle().await;
    assert_eq!(app.received().len(), 1);
    // Every acknowledged copy was stored; the redeliveries ended without messages.
    assert_eq!(host.counts()["inbound"]["done"], 3);
    assert_eq!(host.counts()["deliver"]["done"], 1);
}

#[tokio::test]
async fn wrong_signature_is_401_and_nothing_is_stored() {
    let app = Mock::start().await;
    let host = Host::start(HostOptions::new(
        &app.url("/hook"),
        "http://127.0.0.1:9/unused",
    ));
    let bytes = serde_json::to_vec(&body("evt-bad")).expect("json");
    let wrong = format!(
        "sha256={}",
        patchbay_plugin_sdk::signature::hmac_sha256_hex(b"not-the-secret", &bytes)
    );
    let res = host
        .post_raw(
            "/webhooks/web",
            &[("x-hub-signature-256", &wrong)],
            bytes.clone(),
        )
        .await;
    assert_eq!(res.status(), 401);
    let text = res.text().await.expect("body");
    assert!(!text.contains(CHANNEL_SECRET));
    let res = host.post_raw("/webhooks/web", &[], bytes).await;
    assert_eq!(res.status(), 401);
    host.idle().await;
    assert!(app.received().is_empty());
    let counts = host.counts();
    assert_eq!(
        counts["inbound"],
        json!({"pending": 0, "done": 0, "dead": 0})
    );
}

#[tokio::test]
async fn malformed_payload_is_400_and_unknown_channel_404() {
    let app = Mock::start().await;
    let host = Host::start(HostOptions::new(
        &app.url("/hook"),
        "http://127.0.0.1:9/unused",
    ));
    let bytes = b"{not json".to_vec();
    let sig = format!(
        "sha256={}",
        patchbay_plugin_sdk::signature::hmac_sha256_hex(CHANNEL_SECRET.as_bytes(), &bytes)
    );
    let res = host
        .post_raw("/webhooks/web", &[("x-hub-signature-256", &sig)], bytes)
        .await;
    assert_eq!(res.status(), 400);
    let res = host.post_raw("/webhooks/nope", &[], b"{}".to_vec()).await;
    assert_eq!(res.status(), 404);
    assert_eq!(host.counts()["inbound"]["pending"], 0);
}

#[tokio::test]
async fn oversized_body_is_413() {
    let app = Mock::start().await;
    let mut options = HostOptions::new(&app.url("/hook"), "http://127.0.0.1:9/unused");
    options.max_body_bytes = 1024;
    let host = Host::start(options);
    let big = json!({"message_id": "big", "conversation": {"id": "c"}, "content": {"type": "text", "text": "x".repeat(4096)}});
    let res = host.webhook(&big).await;
    assert_eq!(res.status(), 413);
    host.idle().await;
    assert!(app.received().is_empty());
    assert_eq!(host.counts()["inbound"]["pending"], 0);
}

#[tokio::test]
async fn sigterm_finishes_and_exits_cleanly() {
    let app = Mock::start().await;
    let mut host = Host::start(HostOptions::new(
        &app.url("/hook"),
        "http://127.0.0.1:9/unused",
    ));
    assert_eq!(host.webhook(&body("evt-term")).await.status(), 200);
    app.wait_for(1).await;
    let status = host.terminate();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn malformed_webhooks_are_refused_with_400_and_nothing_is_stored() {
    let app = Mock::start().await;
    let host = Host::start(HostOptions::new(
        &app.url("/hook"),
        "http://127.0.0.1:9/unused",
    ));
    let mut invalid_utf8 =
        br#"{"message_id": "m-1", "conversation": {"id": "c"}, "content": {"type": "text", "text": "caf"#
            .to_vec();
    invalid_utf8.extend_from_slice(&[0xC3, 0x28]);
    invalid_utf8.extend_from_slice(br#""}}"#);
    let deep = format!(
        r#"{{"message_id": "m-5", "conversation": {{"id": "c"}}, "content": {{"type": "text", "text": "x"}}, "context": {{"a": {}1{}}}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("invalid UTF-8 in the text", invalid_utf8),
        (
            "a lone surrogate escape",
            br#"{"message_id": "m-2", "conversation": {"id": "c"}, "content": {"type": "text", "text": "\ud800"}}"#.to_vec(),
        ),
        (
            "no conversation",
            br#"{"message_id": "m-3", "content": {"type": "text", "text": "hi"}}"#.to_vec(),
        ),
        (
            "a known kind missing its fields",
            br#"{"message_id": "m-4", "conversation": {"id": "c"}, "content": {"type": "buttons"}}"#.to_vec(),
        ),
        ("nesting beyond the parser's limit", deep.into_bytes()),
    ];
    for (what, bytes) in bodies {
        let sig = format!(
            "sha256={}",
            patchbay_plugin_sdk::signature::hmac_sha256_hex(CHANNEL_SECRET.as_bytes(), &bytes)
        );
        let res = host
            .post_raw("/webhooks/web", &[("x-hub-signature-256", &sig)], bytes)
            .await;
        assert_eq!(res.status(), 400, "{what}");
    }
    host.idle().await;
    let counts = host.counts();
    assert_eq!(counts["inbound"]["done"], 0, "{counts}");
    assert_eq!(counts["inbound"]["dead"], 0, "{counts}");
    assert!(app.received().is_empty());
}
