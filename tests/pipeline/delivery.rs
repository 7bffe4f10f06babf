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
    host.idle().await;
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
    host.idle().await;
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
    host.idle().await;
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
    host.idle().await;
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

#[tokio::test]
async fn after_an_outage_every_message_arrives_once_in_order_and_every_conversation_resumes() {
    let app = Mock::start().await;
    app.respond("/hook", Answer::new(503, "{}"));
    let host = Host::start(HostOptions::new(
        &app.url("/hook"),
        "http://127.0.0.1:9/unused",
    ));
    // 50 conversations, 4 messages each, interleaved, while the application is down.
    let (conversations, per_conversation) = (50, 4);
    for seq in 0..per_conversation {
        for conv in 0..conversations {
            let event = json!({"message_id": format!("evt-{conv}-{seq}"),
                               "conversation": {"id": format!("conv-{conv}")},
                               "content": {"type": "text", "text": format!("{seq}")}});
            assert_eq!(host.webhook(&event).await.status(), 200);
        }
    }
    // The outage lasts 20 s: far longer than the harness's retry budget
    // (5 attempts, 50–200 ms apart), which an outage must not use up.
    tokio::time::sleep(std::time::Duration::from_secs(20)).await;
    let during = app.received().len();
    app.clear("/hook");
    let recovered = std::time::Instant::now();

    let total = conversations * per_conversation;
    let delivered = loop {
        let ok: Vec<Received> = app
            .received()
            .into_iter()
            .filter(|r| r.status == 200)
            .collect();
        if ok.len() >= total {
            break ok;
        }
        assert!(
            recovered.elapsed() < std::time::Duration::from_secs(60),
            "only {} of {total} delivered after recovery",
            ok.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    host.idle().await;
    let ok_count = app.received().iter().filter(|r| r.status == 200).count();
    assert_eq!(ok_count, total, "each message delivered exactly once");
    // Paused, not hammered: a few hundred attempts at most during 20 s (a
    // probe per second or so, plus the first failures), not one per job per retry.
    assert!(during < 200, "{during} attempts during the outage");

    let mut next: std::collections::HashMap<String, u64> = Default::default();
    let mut first_after: std::collections::HashMap<String, std::time::Duration> =
        Default::default();
    for r in &delivered {
        let m = r.json();
        let conv = m["conversation"]["id"]
            .as_str()
            .expect("conversation")
            .to_string();
        let seq: u64 = m["content"]["text"]
            .as_str()
            .expect("text")
            .parse()
            .expect("seq");
        let expected = next.entry(conv.clone()).or_insert(0);
        assert_eq!(seq, *expected, "{conv} delivered out of order");
        *expected += 1;
        first_after
            .entry(conv)
            .or_insert_with(|| r.at.saturating_duration_since(recovered));
    }
    assert_eq!(next.len(), conversations);
    // A behaviour bound, not a speed target: paused destinations are probed
    // at least every second, so every conversation moves within a few
    // seconds; per-job backoff after 20 s of failures would take far longer.
    let slowest = first_after.values().max().expect("conversations");
    assert!(
        *slowest < std::time::Duration::from_secs(5),
        "a conversation resumed {slowest:?} after recovery"
    );
    assert_eq!(host.counts()["deliver"]["dead"], 0);
}

#[tokio::test]
async fn an_application_retry_after_date_pauses_deliveries_until_then() {
    let app = Mock::start().await;
    // "Come back in 2 s", as an HTTP-date (whole seconds, so up to 3 s away).
    let at = std::time::SystemTime::now() + std::time::Duration::from_secs(3);
    app.script_path(
        "/hook",
        vec![Answer::new(503, "{}").header("retry-after", &httpdate::fmt_http_date(at))],
    );
    let host = Host::start(HostOptions::new(
        &app.url("/hook"),
        "http://127.0.0.1:9/unused",
    ));
    assert_eq!(host.webhook(&body("evt-later")).await.status(), 200);
    let got = app.wait_for(2).await;
    let waited = got[1].at.duration_since(got[0].at);
    assert!(
        waited >= std::time::Duration::from_secs(1),
        "the date was honoured, not ignored: retried after {waited:?}"
    );
    assert_eq!(got[1].status, 200);
}

#[tokio::test]
async fn an_application_redirect_is_not_followed_and_the_message_waits_for_the_right_url() {
    let app = Mock::start().await;
    // What a load balancer sending http to https does; followed, the POST
    // would become a GET of `/moved` without the message, answered 200.
    app.script_path(
        "/hook",
        vec![Answer::new(302, "").header("location", &app.url("/moved?token=s3cret"))],
    );
    let host = Host::start(HostOptions {
        json_log_file: true,
        ..HostOptions::new(&app.url("/hook"), "http://127.0.0.1:9/unused")
    });
    assert_eq!(host.webhook(&body("evt-302")).await.status(), 200);
    let got = app.wait_for(2).await;
    assert_eq!(
        got.iter()
            .map(|r| (r.path.as_str(), r.status))
            .collect::<Vec<_>>(),
        [("/hook", 302), ("/hook", 200)],
        "retried where configured, never sent to the redirect"
    );
    assert_eq!(got[0].body, got[1].body);
    assert_eq!(got[1].header("x-patchbay-attempt"), Some("2"));
    host.idle().await;
    assert_eq!(
        host.counts()["deliver"],
        json!({"pending": 0, "done": 1, "dead": 0})
    );
    let logs: String = host.log_lines().iter().map(|l| l.to_string()).collect();
    assert!(
        logs.contains("Patchbay does not follow redirects") && !logs.contains("s3cret"),
        "{logs}"
    );
}
