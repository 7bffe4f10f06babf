//! End-to-end throughput with the same adapter loaded each way: the
//! client-channel adapter compiled in, and the same adapter loaded from its
//! optimised `.so` through `[[plugin]]`. Both directions are timed to the
//! far end:
//! - inbound: signed webhooks into `patchbay serve` until the mock
//!   application has received every canonical message;
//! - outbound: replies through the application API until the mock
//!   integration layer has received every rendered request.
//!
//! ```text
//! cargo bench -p patchbay-host --bench plugin_e2e
//! PATCHBAY_BENCH_MESSAGES=10000 PATCHBAY_BENCH_ROUNDS=5 cargo bench -p patchbay-host --bench plugin_e2e
//! ```
//!
//! Rounds alternate between the two hosts; the median round is reported.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use patchbay_plugin_sdk::signature::hmac_sha256_hex;

#[path = "../../tests/plugin_libs.rs"]
mod plugin_libs;
mod support;
use support::{Server, bench_main, counter, env_usize, median, spawn};

const SECRET: &str = "bench-channel-secret";
const API_KEY: &str = "bench-api-key-0123456789";

fn main() {
    bench_main(run);
}

fn start(
    dir: &std::path::Path,
    name: &str,
    app: &str,
    integration: &str,
    plugin: Option<&std::path::Path>,
) -> Server {
    let (adapter, libraries) = match plugin {
        None => ("client-channel".to_string(), String::new()),
        Some(lib) => (
            "client-channel-library".to_string(),
            format!(
                "[plugins]\ndirs = [\"{}\"]\n[[plugin]]\npath = \"{}\"\nname = \"client-channel-library\"\n",
                lib.parent().expect("dir").display(),
                lib.display()
            ),
        ),
    };
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
[store]
path = "{db}"
[application]
webhook_url = "{app}/hook"
secret = "bench-app-secret"
api_keys = ["{API_KEY}"]
[log]
level = "warn"
[channels.bench]
adapter = "{adapter}"
settings = {{ webhook_url = "{integration}/out" }}
secrets = {{ signing_secret = "{SECRET}" }}
{libraries}
"#,
            db = dir.join(format!("{name}.db")).display(),
        ),
    )
    .expect("config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_patchbay"));
    cmd.args(["serve", "--config"]).arg(&config);
    spawn(cmd)
}

async fn run() {
    let messages = env_usize("PATCHBAY_BENCH_MESSAGES", 5_000);
    let rounds = env_usize("PATCHBAY_BENCH_ROUNDS", 3).max(1);
    let concurrency = env_usize("PATCHBAY_BENCH_CONCURRENCY", 32);
    let library = plugin_libs::release("patchbay-adapter-client-channel");
    let dir = tempfile::tempdir().expect("tempdir");

    println!(
        "plugin e2e: {messages} messages each way, {concurrency} concurrent, {rounds} rounds, loopback"
    );
    let mut results: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for (i, plugin) in [None, Some(library.as_path())].into_iter().enumerate() {
            let (app, delivered) = counter().await;
            let (integration, sent) = counter().await;
            let name = format!("r{round}-{i}");
            let host = start(dir.path(), &name, &app, &integration, plugin);
            let inbound = inbound(&host.1, &name, messages, concurrency, &delivered).await;
            let outbound = outbound(&host.1, messages, concurrency, &sent).await;
            results[i].push((inbound, outbound));
        }
    }
    println!(
        "{:<16} {:>18} {:>18}",
        "adapter", "inbound msgs/s", "outbound msgs/s"
    );
    let medians: Vec<(f64, f64)> = results
        .iter()
        .map(|r| (median(r.iter().map(|x| x.0)), median(r.iter().map(|x| x.1))))
        .collect();
    for (name, (i, o)) in ["compiled-in", "shared-library"].iter().zip(&medians) {
        println!("{name:<16} {i:>18.0} {o:>18.0}");
    }
    let diff = |a: f64, b: f64| (b - a) / a * 100.0;
    println!(
        "shared-library vs compiled-in: inbound {:+.1}%, outbound {:+.1}%",
        diff(medians[0].0, medians[1].0),
        diff(medians[0].1, medians[1].1)
    );
}

/// Messages per second from the first webhook to the last delivery.
async fn inbound(
    host: &str,
    prefix: &str,
    messages: usize,
    concurrency: usize,
    delivered: &AtomicUsize,
) -> f64 {
    let bodies: Vec<(Vec<u8>, String)> = (0..messages)
        .map(|i| {
            let body = format!(
                r#"{{"message_id":"{prefix}-{i}","conversation":{{"id":"c-{}"}},"content":{{"type":"text","text":"load test message {i}"}}}}"#,
                i % 500
            )
            .into_bytes();
            let sig = format!("sha256={}", hmac_sha256_hex(SECRET.as_bytes(), &body));
            (body, sig)
        })
        .collect();
    let url = format!("{host}/webhooks/bench");
    let start = Instant::now();
    fire(concurrency, bodies, move |client, (body, sig)| {
        client
            .post(&url)
            .header("content-type", "application/json")
            .header("x-hub-signature-256", sig)
            .body(body)
    })
    .await;
    wait_for(delivered, messages).await;
    messages as f64 / start.elapsed().as_secs_f64()
}

/// Messages per second from the first API call to the last provider request.
async fn outbound(host: &str, messages: usize, concurrency: usize, sent: &AtomicUsize) -> f64 {
    let bodies: Vec<Vec<u8>> = (0..messages)
        .map(|i| {
            format!(
                r#"{{"conversation":{{"id":"c-{}"}},"content":{{"type":"text","text":"reply {i}"}}}}"#,
                i % 500
            )
            .into_bytes()
        })
        .collect();
    let url = format!("{host}/v1/channels/bench/messages");
    let start = Instant::now();
    fire(concurrency, bodies, move |client, body| {
        client
            .post(&url)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {API_KEY}"))
            .body(body)
    })
    .await;
    wait_for(sent, messages).await;
    messages as f64 / start.elapsed().as_secs_f64()
}

async fn fire<T: Send + 'static>(
    concurrency: usize,
    items: Vec<T>,
    request: impl Fn(&reqwest::Client, T) -> reqwest::RequestBuilder + Send + Sync + 'static,
) {
    let client = patchbay_host::transport::http_client(Duration::from_secs(30));
    let queue = Arc::new(std::sync::Mutex::new(items));
    let request = Arc::new(request);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, queue, request) = (client.clone(), queue.clone(), request.clone());
        tasks.spawn(async move {
            loop {
                let Some(item) = queue.lock().expect("queue").pop() else {
                    break;
                };
                let res = request(&client, item).send().await.expect("send");
                assert!(res.status().is_success(), "{}", res.status());
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task");
    }
}

async fn wait_for(count: &AtomicUsize, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while count.load(Ordering::Relaxed) < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} arrived",
            count.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
