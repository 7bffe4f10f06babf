//! Several `patchbay serve` replicas on one PostgreSQL, behind the test's own
//! round-robin "load balancer": a replica killed mid-load, the database
//! restarted under load. Every acknowledged message arrives, in order per
//! conversation; a repeat carries the same `X-Patchbay-Message-Id`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::RwLock;

use patchbay_plugin_sdk::signature::hmac_sha256_hex;

use crate::harness::*;
use crate::postgres::TestPostgres;

/// Replicas on one database: short leases, so a killed replica's jobs pass
/// to the others within seconds.
fn replica(app: &Mock, provider: &Mock, url: &str) -> Host {
    let mut options = HostOptions::new(&app.url("/hook"), &provider.url("/outbound"));
    options.store_toml = Some(format!("url = \"{url}\"\nlease_secs = 3\npool_size = 8"));
    Host::start(options)
}

/// The replicas' URLs, some of them down for a while.
struct Balancer {
    urls: RwLock<Vec<Option<String>>>,
    next: AtomicUsize,
    client: reqwest::Client,
}

impl Balancer {
    fn new(hosts: &[&Host]) -> Arc<Balancer> {
        Arc::new(Balancer {
            urls: RwLock::new(hosts.iter().map(|h| Some(h.url.clone())).collect()),
            next: AtomicUsize::new(0),
            client: client(),
        })
    }

    /// Sends `request` to the next replica up; on a connection error or a
    /// 5xx, to the next one, as a load balancer retries (with the same
    /// event id or idempotency key, so nothing is stored twice).
    async fn send(&self, path: &str, headers: &[(&str, String)], body: &[u8]) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let urls: Vec<String> = self.urls.read().await.iter().flatten().cloned().collect();
            let url = &urls[self.next.fetch_add(1, Ordering::Relaxed) % urls.len()];
            let mut request = self
                .client
                .post(format!("{url}{path}"))
                .header("content-type", "application/json")
                .body(body.to_vec());
            for (name, value) in headers {
                request = request.header(*name, value);
            }
            match request.send().await {
                Ok(answer) if answer.status().as_u16() < 500 => return answer.status().as_u16(),
                _ => {
                    assert!(
                        Instant::now() < deadline,
                        "no replica accepted {path} for 60 s"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn webhook(&self, body: &Value) -> u16 {
        let bytes = serde_json::to_vec(body).expect("body");
        let signature = format!(
            "sha256={}",
            hmac_sha256_hex(CHANNEL_SECRET.as_bytes(), &bytes)
        );
        self.send(
            "/webhooks/web",
            &[("x-hub-signature-256", signature)],
            &bytes,
        )
        .await
    }

    async fn api_send(&self, message: &Value, key: &str) -> u16 {
        let bytes = serde_json::to_vec(message).expect("body");
        self.send(
            "/v1/channels/web/messages",
            &[
                ("authorization", format!("Bearer {API_KEY}")),
                ("idempotency-key", key.to_string()),
            ],
            &bytes,
        )
        .await
    }
}

/// Sends `per_conversation` webhooks and as many API messages in each of
/// `conversations`, one conversation's in order (each acknowledged before
/// the next), conversations concurrently, round-robin over the replicas.
async fn load(balancer: Arc<Balancer>, conversations: usize, per_conversation: usize, tag: &str) {
    let mut tasks = tokio::task::JoinSet::new();
    for conv in 0..conversations {
        let (balancer, tag) = (balancer.clone(), tag.to_string());
        tasks.spawn(async move {
            for seq in 0..per_conversation {
                let event = json!({"message_id": format!("{tag}-evt-{conv}-{seq}"),
                                   "conversation": {"id": format!("{tag}-conv-{conv}")},
                                   "content": {"type": "text", "text": format!("{seq}")}});
                assert_eq!(balancer.webhook(&event).await, 200);
                let reply = json!({"conversation": {"id": format!("{tag}-conv-{conv}")},
                                   "content": {"type": "text", "text": format!("{seq}")}});
                let key = format!("{tag}-send-{conv}-{seq}");
                assert_eq!(balancer.api_send(&reply, &key).await, 202);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a conversation's load");
    }
}

/// Each conversation's texts in the order they arrived, repeats of the
/// message just before collapsed; checks that a repeat is the same message
/// (`X-Patchbay-Message-Id`, or the body's id).
fn arrivals(
    received: &[Received],
    conversation: impl Fn(&Value) -> String,
    id: impl Fn(&Received) -> String,
) -> BTreeMap<String, Vec<u64>> {
    let mut by_conversation: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    for r in received {
        let body = r.json();
        let Some(text) = body["content"]["text"].as_str() else {
            continue; // receipts
        };
        let seq: u64 = text.parse().expect("a numbered text");
        by_conversation
            .entry(conversation(&body))
            .or_default()
            .push((seq, id(r)));
    }
    let mut ids_of: HashMap<(String, u64), String> = HashMap::new();
    by_conversation
        .into_iter()
        .map(|(conv, got)| {
            let mut order: Vec<u64> = Vec::new();
            for (seq, id) in got {
                let first = ids_of
                    .entry((conv.clone(), seq))
                    .or_insert_with(|| id.clone());
                assert_eq!(*first, id, "a repeat of {conv}/{seq} as another message");
                if order.last() != Some(&seq) {
                    order.push(seq);
                }
            }
            (conv, order)
        })
        .collect()
}

async fn wait_for_all(mock: &Mock, path: &str, count: impl Fn(&[Received]) -> usize, want: usize) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got = count(&mock.received_on(path));
        if got >= want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {got} of {want} arrived at {path}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Distinct numbered messages received.
fn distinct(received: &[Received], conversation: impl Fn(&Value) -> String) -> usize {
    received
        .iter()
        .filter_map(|r| {
            let body = r.json();
            let text = body["content"]["text"].as_str()?.to_string();
            Some((conversation(&body), text))
        })
        .collect::<std::collections::HashSet<_>>()
        .len()
}

fn assert_in_order(
    arrived: &BTreeMap<String, Vec<u64>>,
    conversations: usize,
    per: usize,
    side: &str,
) {
    assert_eq!(arrived.len(), conversations, "conversations at the {side}");
    for (conv, order) in arrived {
        let expected: Vec<u64> = (0..per as u64).collect();
        assert_eq!(
            order, &expected,
            "{conv} at the {side}: out of order or missing"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_lose_nothing_and_keep_order_when_one_is_killed_mid_load() {
    let database = TestPostgres::start().await;
    let app = Mock::start().await;
    let provider = Mock::start().await;
    let mut hosts = [
        replica(&app, &provider, database.url()),
        replica(&app, &provider, database.url()),
        replica(&app, &provider, database.url()),
    ];
    let balancer = Balancer::new(&hosts.iter().collect::<Vec<_>>());
    let (conversations, per) = (40, 30);

    let loading = tokio::spawn(load(balancer.clone(), conversations, per, "k"));
    // A third of the way in, SIGKILL one replica; bring it back later.
    wait_for_all(&app, "/hook", |r| r.len(), conversations * per / 3).await;
    hosts[1].kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    balancer.urls.write().await[1] = None;
    tokio::time::sleep(Duration::from_secs(3)).await;
    hosts[1].spawn();
    balancer.urls.write().await[1] = Some(hosts[1].url.clone());
    loading.await.expect("load");

    let application_conversation =
        |b: &Value| b["conversation"]["id"].as_str().unwrap_or("").to_string();
    wait_for_all(
        &app,
        "/hook",
        |r| distinct(r, application_conversation),
        conversations * per,
    )
    .await;
    wait_for_all(
        &provider,
        "/outbound",
        |r| distinct(r, application_conversation),
        conversations * per,
    )
    .await;
    let delivered = app.received_on("/hook");
    let message_id = |r: &Received| r.header("x-patchbay-message-id").unwrap_or("").to_string();
    assert_in_order(
        &arrivals(&delivered, application_conversation, message_id),
        conversations,
        per,
        "application",
    );
    let sent = provider.received_on("/outbound");
    let body_id = |r: &Received| r.json()["id"].as_str().unwrap_or("").to_string();
    assert_in_order(
        &arrivals(&sent, application_conversation, body_id),
        conversations,
        per,
        "provider",
    );
    for r in &delivered {
        assert_app_signature(r);
    }
    hosts[0].idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_restart_under_load_answers_503_and_loses_nothing_acknowledged() {
    let mut database = TestPostgres::start().await;
    let app = Mock::start().await;
    let provider = Mock::start().await;
    let hosts = [
        replica(&app, &provider, database.url()),
        replica(&app, &provider, database.url()),
    ];
    let (conversations, per) = (20, 20);
    // Webhooks straight at the replicas, counting what each one answered.
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::new()));
    let refused = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let http = client();
    for conv in 0..conversations {
        let http = http.clone();
        let (urls, acknowledged, refused) = (
            hosts.iter().map(|h| h.url.clone()).collect::<Vec<_>>(),
            acknowledged.clone(),
            refused.clone(),
        );
        tasks.spawn(async move {
            let mut seq = 0;
            let mut attempt = 0;
            while seq < per {
                attempt += 1;
                let event = json!({"message_id": format!("evt-{conv}-{seq}"),
                                   "conversation": {"id": format!("conv-{conv}")},
                                   "content": {"type": "text", "text": format!("{seq}")}});
                let bytes = serde_json::to_vec(&event).unwrap();
                let signature = format!(
                    "sha256={}",
                    hmac_sha256_hex(CHANNEL_SECRET.as_bytes(), &bytes)
                );
                let answer = http
                    .post(format!("{}/webhooks/web", urls[attempt % urls.len()]))
                    .header("content-type", "application/json")
                    .header("x-hub-signature-256", signature)
                    .body(bytes)
                    .send()
                    .await
                    .expect("the replica answers");
                match answer.status().as_u16() {
                    200 => {
                        acknowledged.lock().unwrap().push((conv, seq));
                        seq += 1;
                    }
                    503 => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    other => panic!("unexpected {other}"),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }
    // A third of the way in, the database goes down for 3 s.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acknowledged.lock().unwrap().len() < conversations * per / 3 {
        assert!(Instant::now() < deadline, "load never got going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    database.stop();
    let down = client()
        .get(format!("{}/readyz", hosts[0].url))
        .send()
        .await
        .expect("readyz");
    assert_eq!(down.status(), 503, "not ready without a database");
    tokio::time::sleep(Duration::from_secs(3)).await;
    database.restart();
    while let Some(done) = tasks.join_next().await {
        done.expect("a conversation's load");
    }
    assert!(
        refused.load(Ordering::Relaxed) > 0,
        "no 503 while the database was down"
    );
    let conversation = |b: &Value| b["conversation"]["id"].as_str().unwrap_or("").to_string();
    wait_for_all(
        &app,
        "/hook",
        |r| distinct(r, conversation),
        conversations * per,
    )
    .await;
    let message_id = |r: &Received| r.header("x-patchbay-message-id").unwrap_or("").to_string();
    assert_in_order(
        &arrivals(&app.received_on("/hook"), conversation, message_id),
        conversations,
        per,
        "application",
    );
    let ready = client()
        .get(format!("{}/readyz", hosts[1].url))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200, "ready again");

    // The inspection commands read the shared database and say so.
    hosts[0].idle().await;
    let counts = hosts[1].counts();
    assert_eq!(counts["store"], "postgresql");
    assert_eq!(counts["inbound"]["done"], (conversations * per) as u64);
    assert_eq!(counts["deliver"]["done"], (conversations * per) as u64);
    let (status, out) = hosts[0].cli(&["dead-letters", "list"]);
    assert!(status.success());
    assert!(out.starts_with("store: postgresql 127.0.0.1:"), "{out}");
    assert!(!out.contains("password"), "{out}");
}
