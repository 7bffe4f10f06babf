//! Messages both ways, every kind, receipts, degradation and menus.

use serde_json::{Value, json};

use crate::harness::*;

fn inbound(id: &str, content: Value) -> Value {
    json!({"message_id": id, "conversation": {"id": "conv-1"}, "sender": {"id": "cust-1", "name": "Ann"}, "content": content})
}

async fn setup(extra: &str) -> (Mock, Mock, Host) {
    let app = Mock::start().await;
    let integration = Mock::start().await;
    let mut options = HostOptions::new(&app.url("/patchbay"), &integration.url("/outbound"));
    options.extra_channel_toml = extra.to_string();
    let host = Host::start(options);
    (app, integration, host)
}

#[tokio::test]
async fn text_both_ways_with_delivered_receipt() {
    let (app, integration, host) = setup("").await;

    let res = host
        .webhook(&inbound("evt-1", json!({"type": "text", "text": "Hello"})))
        .await;
    assert_eq!(res.status(), 200);
    let got = app.wait_for(1).await;
    assert_eq!(got[0].path, "/patchbay");
    assert_app_signature(&got[0]);
    let msg = got[0].json();
    assert_eq!(msg["content"], json!({"type": "text", "text": "Hello"}));
    assert_eq!(msg["channel"], "web");
    assert_eq!(msg["sender"]["name"], "Ann");
    assert_eq!(msg["provider_message_id"], "evt-1");
    assert_eq!(got[0].header("x-patchbay-message-id"), msg["id"].as_str());
    let traceparent = got[0].header("traceparent").expect("traceparent");
    assert_eq!(traceparent.len(), 55, "{traceparent}");

    integration.script(&[(200, r#"{"message_id":"il-42"}"#)]);
    let res = host
        .send(&json!({"conversation": {"id": "conv-1"}, "content": {"type": "text", "text": "Hi Ann"}}), None)
        .await;
    assert_eq!(res.status(), 202);
    let ids: Value = res.json_value().await;
    let id = ids["ids"][0].as_str().expect("id").to_string();

    let sent = integration.wait_for(1).await;
    assert_eq!(sent[0].path, "/outbound");
    let out = sent[0].json();
    assert_eq!(out["id"], id.as_str());
    assert_eq!(out["content"], json!({"type": "text", "text": "Hi Ann"}));
    // The integration layer can dedupe retries on a header, not only the body.
    assert_eq!(sent[0].header("x-patchbay-message-id"), Some(id.as_str()));
    assert_eq!(
        sent[0].header("x-hub-signature-256"),
        Some(
            format!(
                "sha256={}",
                patchbay_plugin_sdk::signature::hmac_sha256_hex(
                    CHANNEL_SECRET.as_bytes(),
                    &sent[0].body
                )
            )
            .as_str()
        )
    );

    let got = app.wait_for(2).await;
    let receipt = got[1].json();
    assert_eq!(receipt["content"]["type"], "receipt");
    assert_eq!(receipt["content"]["status"], "Delivered");
    assert_eq!(receipt["content"]["message_id"], id.as_str());
    assert_eq!(receipt["content"]["provider_message_id"], "il-42");
}

#[tokio::test]
async fn every_inbound_kind_reaches_the_application_in_order() {
    let (app, _integration, host) = setup("").await;
    let kinds = [
        json!({"type": "typing", "active": true}),
        json!({"type": "attachments", "attachments": [{"url": "https://f.example/a.png", "filename": "a.png", "size": 10}]}),
        json!({"type": "postback", "payload": "PLAN_PRO"}),
        json!({"type": "context_data", "data": {"tier": "gold"}}),
        json!({"type": "end_session", "reason": "customer left"}),
    ];
    for (i, content) in kinds.iter().enumerate() {
        let res = host
            .webhook(&inbound(&format!("evt-{i}"), content.clone()))
            .await;
        assert_eq!(res.status(), 200);
    }
    let got = app.wait_for(kinds.len()).await;
    let contents: Vec<Value> = got.iter().map(|r| r.json()["content"].clone()).collect();
    assert_eq!(contents, kinds.to_vec());
}

#[tokio::test]
async fn outbound_rich_kinds_go_natively_when_the_channel_supports_them() {
    let (app, integration, host) = setup("").await;
    let kinds = [
        json!({"type": "typing", "active": true}),
        json!({"type": "attachments", "attachments": [{"url": "https://f.example/r.pdf", "filename": "r.pdf"}]}),
        json!({"type": "end_session"}),
        json!({"type": "list_picker", "title": "Pick", "items": [{"title": "A", "payload": "a"}]}),
    ];
    for content in &kinds {
        let res = host
            .send(
                &json!({"conversation": {"id": "conv-2"}, "content": content}),
                None,
            )
            .await;
        assert_eq!(res.status(), 202);
    }
    let sent = integration.wait_for(kinds.len()).await;
    let contents: Vec<Value> = sent.iter().map(|r| r.json()["content"].clone()).collect();
    assert_eq!(
        contents,
        kinds.to_vec(),
        "order kept within the conversation"
    );
    let receipts = app.wait_for(kinds.len()).await;
    assert!(
        receipts
            .iter()
            .all(|r| r.json()["content"]["status"] == "Delivered")
    );
}

#[tokio::test]
async fn provider_failure_becomes_a_failed_receipt_with_reason_code() {
    let (app, integration, host) = setup("").await;
    integration.script(&[(404, r#"{"error":"no such conversation"}"#)]);
    let res = host
        .send(
            &json!({"conversation": {"id": "gone"}, "content": {"type": "text", "text": "x"}}),
            None,
        )
        .await;
    let id = res.json_value().await["ids"][0]
        .as_str()
        .expect("id")
        .to_string();
    let got = app.wait_for(1).await;
    let receipt = &got[0].json()["content"];
    assert_eq!(receipt["status"], "Failed");
    assert_eq!(receipt["message_id"], id.as_str());
    assert_eq!(receipt["reasons"][0]["code"], 530);
    host.idle().await;
    assert_eq!(
        integration.received().len(),
        1,
        "a permanent failure is not retried"
    );
}

#[tokio::test]
async fn degraded_carousel_and_list_picker_and_numeric_reply() {
    let narrow = r#"
[channels.web.capabilities.outbound]
rich_types = []
max_text_length = 500
"#;
    let (app, integration, host) = setup(narrow).await;
    let carousel = json!({"conversation": {"id": "conv-3"}, "content": {"type": "carousel", "cards": [
        {"title": "Basic", "subtitle": "$10", "buttons": [
            {"title": "Choose Basic", "action": {"type": "postback", "payload": "PLAN_BASIC"}},
            {"title": "Details", "action": {"type": "link", "url": "https://example.com/basic"}}]},
        {"title": "Pro", "buttons": [{"title": "Choose Pro", "action": {"type": "postback", "payload": "PLAN_PRO"}}]}]}});
    assert_eq!(host.send(&carousel, None).await.status(), 202);
    let sent = integration.wait_for(1).await;
    assert_eq!(
        sent[0].json()["content"],
        json!({"type": "text", "text": "Basic - $10\n1. Choose Basic\nDetails: https://example.com/basic\n\nPro\n2. Choose Pro"})
    );
    let receipt = app.wait_for(1).await[0].json();
    assert_eq!(receipt["content"]["status"], "Delivered");
    assert_eq!(receipt["content"]["adjustments"][0]["subject"], "carousel");
    assert_eq!(receipt["content"]["adjustments"][0]["action"], "converted");

    // The customer answers "2": the application gets Pro's postback.
    host.webhook(&json!({"message_id": "evt-r1", "conversation": {"id": "conv-3"}, "content": {"type": "text", "text": "2"}})).await;
    let got = app.wait_for(2).await;
    assert_eq!(
        got[1].json()["content"],
        json!({"type": "postback", "payload": "PLAN_PRO", "text": "2"})
    );

    let list = json!({"conversation": {"id": "conv-3"}, "content": {"type": "list_picker", "title": "Topic?", "items": [
        {"title": "Billing", "payload": "BILLING"}, {"title": "Support", "payload": "SUPPORT"}]}});
    host.send(&list, None).await;
    let sent = integration.wait_for(2).await;
    assert_eq!(
        sent[1].json()["content"],
        json!({"type": "text", "text": "Topic?\n1. Billing\n2. Support"})
    );
    app.wait_for(3).await;
    host.webhook(&json!({"message_id": "evt-r2", "conversation": {"id": "conv-3"}, "content": {"type": "text", "text": "1"}})).await;
    let got = app.wait_for(4).await;
    assert_eq!(got[3].json()["content"]["payload"], "BILLING");
    // Text that is not a choice stays text.
    host.webhook(&json!({"message_id": "evt-r3", "conversation": {"id": "conv-3"}, "content": {"type": "text", "text": "7"}})).await;
    let got = app.wait_for(5).await;
    assert_eq!(
        got[4].json()["content"],
        json!({"type": "text", "text": "7"})
    );
}

#[tokio::test]
async fn blocked_attachment_is_refused_with_system_message() {
    let narrow = r#"
[channels.web.capabilities.outbound.attachments]
block = ["exe"]
"#;
    let (app, integration, host) = setup(narrow).await;
    let msg = json!({"conversation": {"id": "c"}, "content": {"type": "attachments", "attachments": [{"url": "https://f/setup.exe", "filename": "setup.exe"}]}});
    host.send(&msg, None).await;
    let receipt = app.wait_for(1).await[0].json();
    assert_eq!(receipt["content"]["status"], "Failed");
    assert_eq!(
        receipt["content"]["reasons"][0],
        json!({"code": 350, "message": "Attachment file type 'exe' is not allowed."})
    );
    host.idle().await;
    assert!(integration.received().is_empty());
}

#[tokio::test]
async fn idempotency_key_stores_once() {
    let (_app, integration, host) = setup("").await;
    let msg = json!({"conversation": {"id": "c"}, "content": {"type": "text", "text": "once"}});
    let first = host.send(&msg, Some("key-1")).await;
    assert_eq!(first.status(), 202);
    let first = first.json_value().await;
    let second = host.send(&msg, Some("key-1")).await;
    assert_eq!(second.status(), 200);
    assert_eq!(
        second
            .headers()
            .get("idempotent-replayed")
            .map(|v| v.to_str().unwrap_or("")),
        Some("true")
    );
    assert_eq!(second.json_value().await, first);
    integration.wait_for(1).await;
    host.idle().await;
    assert_eq!(integration.received().len(), 1);
}

#[tokio::test]
async fn api_rejects_bad_keys_and_bad_messages() {
    let (_app, _integration, host) = setup("").await;
    let res = client()
        .post(format!("{}/v1/channels/web/messages", host.url))
        .header("authorization", "Bearer wrong-key-0123456789")
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 401);
    // The scheme is case-insensitive, as HTTP says.
    let res = client()
        .post(format!("{}/v1/channels/web/messages", host.url))
        .header("authorization", format!("bearer {API_KEY}"))
        .header("content-type", "application/json")
        .body(r#"{"conversation": {"id": "c"}, "content": {"type": "text", "text": "hi"}}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 202);
    let res = host
        .send(
            &json!({"conversation": {"id": "c"}, "content": {"type": "buttons", "text": 5}}),
            None,
        )
        .await;
    assert_eq!(res.status(), 400);
    assert!(
        res.json_value().await["error"]
            .as_str()
            .unwrap_or("")
            .contains("buttons")
    );
    let res = client()
        .post(format!("{}/v1/channels/nope/messages", host.url))
        .header("authorization", format!("Bearer {API_KEY}"))
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 404);
}
