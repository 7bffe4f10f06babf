//! Delivery to the application: retries, dead letters, crash recovery.

use serde_json::json;

use crate::harness::*;

fn body(id: &str) -> serde_json::Value {
    json!({"message_id": id, "conversation": {"id": "c"}, "content": {"type": "text", "text": id}})
}

#[tokio::test]
async fn application_503_then_200_is_delivered_exactly_once() {
    let app = Mock::start().await;
    app.script(&[(503, "{}"), (200, "{}")]);
    let host = Host::start(HostOptions::new(
        &app.url("/hook"),
        "http://127.0.0.1:9/unused",
    ));
    assert_eq!(host.webhook(&body("evt-503")).await.status(), 200);
    let got = app.wait_for(2).await;
    assert_eq!(got[0].body, got[1].body, "the same message is retried");
    assert_eq!(got[0].header("x-patchbay-attempt"), Some("1"));
    assert_eq!(got[1].header("x-patchbay-attempt"), Some("2"));
    settle().await;
    assert_eq!(app.received().len(), 2, "no delivery after the 200");
    assert_eq!(
        host.counts()["deliver"],
        json!({"pending": 0, "done": 1, "dead": 0})
    );
}

#[tokio::test]
async fn application_400_dead_letters_and_replay_delivers() {
    let app = Mock::start().await;
    app.script(&[(400, r#"{"error":"bad"}"#)]);
    let host = Host::start(HostOptions::new(
        &app.url("/hook"),
        "http://127.0.0.1:9/unused",
    ));
    assert_eq!(host.webhook(&body("evt-400")).await.status(), 200);
    app.wait_for(1).await;
    settle().await;
    assert_eq!(app.received().len(), 1, "a 4xx is not retried");
    let (status, out) = host.cli(&["dead-letters", "list", "--json"]);
    assert!(status.success());
    let letters: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["queue"], "deliver");
    assert!(
        letters[0]["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("400")
    );

    let id = letters[0]["id"].as_str().expect("id");
    let (status, _) = host.cli(&["dead-letters", "replay", id]);
    assert!(status.success());
    let got = app.wait_for(2).await;
    assert_eq!(got[1].body, got[0].body);
}

#[tokio::test]
async fn exhausted_retries_dead_letter() {
    let app = Mock::start().await;
    app.script(&[(500, "{}"); 5]);
    let host = Host::start(HostOptions::new(
        &app.url("/hook"),
        "http://127.0.0.1:9/unused",
    ));
    host.webhook(&body("evt-500")).await;
    app.wait_for(5).await;
    settle().await;
    assert_eq!(app.received().len(), 5, "max_attempts = 5");
    assert_eq!(host.counts()["deliver"]["dead"], 1);
}

#[tokio::test]
async fn acknowledged_webhook_survives_sigkill_before_delivery() {
    // The application is down at first: nothing can be delivered.
    let port = free_port();
    let app_url = format!("http://127.0.0.1:{port}/hook");
    let mut host = Host::start(HostOptions::new(&app_url, "http://127.0.0.1:9/unused"));
    assert_eq!(host.webhook(&body("evt-crash")).await.status(), 200);
    host.kill();

    let app = Mock::start_on(port).await;
    host.spawn();
    let got = app.wait_for(1).await;
    assert_eq!(got[0].json()["content"]["text"], "evt-crash");
    settle().await;
    assert_eq!(app.received().len(), 1);
}

#[tokio::test]
async fn outbound_retries_rate_limits_then_delivers() {
    let app = Mock::start().await;
    let integration = Mock::start().await;
    integration.script(&[(429, "{}"), (503, "{}")]);
    let host = Host::start(HostOptions::new(
        &app.url("/hook"),
        &integration.url("/out"),
    ));
    host.send(
        &json!({"conversation": {"id": "c"}, "content": {"type": "text", "text": "persist"}}),
        None,
    )
    .await;
    let sent = integration.wait_for(3).await;
    assert_eq!(sent[0].body, sent[2].body);
    let receipt = app.wait_for(1).await[0].json();
    assert_eq!(receipt["content"]["status"], "Delivered");
}
