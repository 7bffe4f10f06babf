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
    // Both files' commits are timed: the log's (each synced) and the
    // database's parsed records and deliveries (synced or not).
    let commits = |file, synced| {
        sample(
            &text,
            "patchbay_store_commit_seconds_count",
            &[("file", file), ("synced", synced)],
        )
        .unwrap_or(0.0)
    };
    assert!(commits("acks", "true") >= 1.0, "{text}");
    assert_eq!(commits("acks", "false"), 0.0, "the log syncs every commit");
    assert!(
        commits("database", "true") + commits("database", "false") >= 2.0,
        "{text}"
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

pub const ADMIN_KEY: &str = "admin-key-for-tests-0123";

/// A client that shows redirects instead of following them.
pub fn browser() -> reqwest::Client {
    patchbay_host::transport::install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// A form body.
pub fn form(fields: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

pub fn csrf_of(page: &str) -> String {
    let at = page.find(r#"name="csrf" value=""#).expect("a CSRF field") + 19;
    page[at..at + 64].to_string()
}

#[tokio::test]
async fn the_admin_console_logs_in_shows_a_dead_letter_and_replays_it() {
    let app = Mock::start().await;
    app.script(&[(400, r#"{"error":"bad"}"#)]);
    let mut options = HostOptions::new(&app.url("/hook"), "http://127.0.0.1:9/unused");
    options.extra_channel_toml = format!("[admin]\nkey = \"{ADMIN_KEY}\"\n");
    let host = Host::start(options);
    let body = json!({"message_id": "m-dead", "conversation": {"id": "c"}, "content": {"type": "text", "text": "<b>hi</b>"}});
    assert_eq!(host.webhook(&body).await.status(), 200);
    app.wait_for(1).await;
    host.idle().await;

    let web = browser();
    let url = |path: &str| format!("{}{path}", host.url);
    let away = web.get(url("/admin")).send().await.unwrap();
    assert_eq!(away.status(), 303);
    assert_eq!(away.headers()["location"], "/admin/login");

    let wrong = web
        .post(url("/admin/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("key", "not-the-key")]))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());

    let login = web
        .post(url("/admin/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("key", ADMIN_KEY)]))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let session = cookie.split(';').next().unwrap().to_string();

    let overview = web
        .get(url("/admin"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(overview.status(), 200);
    let csp = overview.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let page = overview.text().await.unwrap();
    assert!(
        page.contains("client-channel") && page.contains("sqlite"),
        "{page}"
    );

    let listing = web
        .get(url("/admin/dead-letters"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let letters: Vec<serde_json::Value> = host
        .cli(&["dead-letters", "list", "--json"])
        .1
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let id = letters[0]["id"].as_str().unwrap();
    assert!(listing.contains(id), "{listing}");
    assert!(listing.contains("HTTP 400"), "{listing}");
    let token = csrf_of(&listing);
    let replay = url(&format!("/admin/dead-letters/{id}/replay"));

    // A state change without the token, or without the session, is refused.
    let forged = web
        .post(&replay)
        .header("cookie", &session)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf", "0".repeat(64).as_str())]))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let stranger = web
        .post(&replay)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf", token.as_str())]))
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status(), 303, "to the login page");
    assert_eq!(app.received().len(), 1, "nothing replayed yet");

    let replayed = web
        .post(&replay)
        .header("cookie", &session)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf", token.as_str())]))
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 303);
    let got = app.wait_for(2).await;
    assert_eq!(got[1].json()["content"]["text"], "<b>hi</b>");
    host.idle().await;
    let after = web
        .get(url("/admin/dead-letters"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!after.contains(id), "delivered, so no longer a dead letter");

    let get = |path: &'static str| {
        let (web, session, url) = (web.clone(), session.clone(), url(path));
        async move {
            let page = web.get(url).header("cookie", session).send().await.unwrap();
            assert_eq!(page.status(), 200);
            page.text().await.unwrap()
        }
    };
    let adapters = get("/admin/plugins").await;
    assert!(
        adapters.contains("compiled in") && adapters.contains("signing_secret"),
        "{adapters}"
    );
    assert!(
        !adapters.contains("channel-secret-for-tests"),
        "no secret values"
    );
    let conversations = get("/admin/conversations").await;
    assert!(
        conversations.contains("<a href=\"/admin/conversations/web/c\">c</a>"),
        "{conversations}"
    );
}

#[tokio::test]
async fn without_an_admin_key_there_is_no_console() {
    let app = Mock::start().await;
    let host = Host::start(HostOptions::new(
        &app.url("/hook"),
        "http://127.0.0.1:9/unused",
    ));
    let answer = browser()
        .get(format!("{}/admin", host.url))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);
}
