//! What operators watch: health endpoints and Prometheus metrics.

use serde_json::json;

use crate::harness::*;

/// The value of the sample named `name` whose labels include all `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn health_endpoints_say_whether_the_store_commits() {
    let app = Mock::start().await;
    let host = Host::start(HostOptions::new(
        &app.url("/hook"),
        "http://127.0.0.1:9/unused",
    ));
    let live = client()
        .get(format!("{}/livez", host.url))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    for path in ["/readyz", "/healthz"] {
        let ready = client()
            .get(format!("{}{path}", host.url))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), 200, "{path}");
        assert_eq!(
            ready.json_value().await,
            json!({"ready": true, "store": "sqlite"})
        );
    }
}

#[tokio::test]
async fn metrics_count_webhooks_deliveries_and_dead_letters_with_bounded_labels() {
    let app = Mock::start().await;
    // The first delivery is refused for good: a dead letter.
    app.script(&[(400, "{}")]);
    let host = Host::start(HostOptions::new(
        &app.url("/hook"),
        "http://127.0.0.1:9/unused",
    ));
    for id in ["m-1", "m-2"] {
        let body = json!({"message_id": id, "conversation": {"id": "c"}, "content": {"type": "text", "text": id}});
        assert_eq!(host.webhook(&body).await.status(), 200);
    }
    let forged = host
        .post_raw(
            "/webhooks/web",
            &[("x-hub-signature-256", "sha256=00")],
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(forged.status(), 401);
    app.wait_for(2).await;
    host.idle().await;

    let answer = client()
        .get(format!("{}/metrics", host.url))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(
        answer.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = answer.text().await.unwrap();
    let webhooks = |outcome| {
        sample(
            &text,
            "patchbay_webhooks_total",
            &[("source", "web"), ("outcome", outcome)],
        )
    };
    assert_eq!(webhooks("accepted"), Some(2.0), "{text}");
    assert_eq!(webhooks("rejected"), Some(1.0));
    assert_eq!(
        sample(
            &text,
            "patchbay_webhook_ack_seconds_count",
            &[("source", "web")]
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            "patchbay_deliveries_total",
            &[("outcome", "refused"), ("reason", "http_400")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "patchbay_deliveries_total",
            &[("outcome", "delivered")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "patchbay_dead_letters_total",
            &[("queue", "deliver")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "patchbay_queue_jobs",
            &[("queue", "deliver"), ("state", "dead")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "patchbay_queue_jobs",
            &[("queue", "deliver"), ("state", "pending")]
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            "patchbay_queue_oldest_due_seconds",
            &[("queue", "deliver")]
        ),
        Some(0.0)
    );
    // No label carries a conversation or message id.
    assert!(!text.contains("m-1") && !text.contains("\"c\""), "{text}");
}

/// The log lines (JSON) that carry `trace_id`, in the event or in a span.
fn traced<'a>(lines: &'a [serde_json::Value], trace_id: &str) -> Vec<&'a str> {
    lines
        .iter()
        .filter(|l| {
            l["trace_id"] == trace_id
                || l["span"]["trace_id"] == trace_id
                || l["spans"]
                    .as_array()
                    .is_some_and(|spans| spans.iter().any(|s| s["trace_id"] == trace_id))
        })
        .filter_map(|l| l["message"].as_str())
        .collect()
}

#[tokio::test]
async fn one_message_can_be_followed_through_the_logs_by_its_trace_id() {
    let app = Mock::start().await;
    let provider = Mock::start().await;
    let mut options = HostOptions::new(&app.url("/hook"), &provider.url("/outbound"));
    options.json_log_file = true;
    let host = Host::start(options);

    // In: a customer's webhook, traced from its parsing to its delivery.
    let body = json!({"message_id": "m-in", "conversation": {"id": "c"}, "content": {"type": "text", "text": "hi"}});
    assert_eq!(host.webhook(&body).await.status(), 200);
    let delivered = app.wait_for(1).await;
    let traceparent = delivered[0]
        .header("traceparent")
        .expect("traceparent")
        .to_string();
    let inbound_trace = traceparent.split('-').nth(1).unwrap().to_string();

    // Out: the application's reply with its own trace.
    let reply_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let res = client()
        .post(format!("{}/v1/channels/web/messages", host.url))
        .header("authorization", format!("Bearer {API_KEY}"))
        .header("content-type", "application/json")
        .header(
            "traceparent",
            format!("00-{reply_trace}-00f067aa0ba902b7-01"),
        )
        .body(
            json!({"conversation": {"id": "c"}, "content": {"type": "text", "text": "hello"}})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    provider.wait_for(1).await;
    host.idle().await;

    let lines = host.log_lines();
    let inbound = traced(&lines, &inbound_trace);
    assert!(inbound.contains(&"message parsed"), "{inbound:?}");
    assert!(
        inbound.contains(&"delivered to the upstream"),
        "{inbound:?}"
    );
    let outbound = traced(&lines, reply_trace);
    assert!(
        outbound.contains(&"message from the application"),
        "{outbound:?}"
    );
    assert!(outbound.contains(&"sent to the provider"), "{outbound:?}");
    // The delivery receipt for the reply travels under the reply's trace too.
    assert!(
        outbound
            .iter()
            .filter(|m| **m == "delivered to the upstream")
            .count()
            >= 1,
        "{outbound:?}"
    );
}
