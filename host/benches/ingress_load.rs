//! Ingress load benchmark: signed webhooks into `patchbay serve` over loopback,
//! against the same load on a bare handler that only answers 200.
//!
//! ```text
//! cargo bench -p patchbay-host --bench ingress_load
//! PATCHBAY_BENCH_REQUESTS=50000 PATCHBAY_BENCH_CONCURRENCY=128 cargo bench -p patchbay-host --bench ingress_load
//! # how much of the cost is delivering to the application at the same time:
//! PATCHBAY_BENCH_APP_CONCURRENCY=1 cargo bench -p patchbay-host --bench ingress_load
//! ```
//!
//! Both servers run as separate processes; the load generator and a mock
//! application (answering 200, so the host's workers deliver while it accepts)
//! run in this one. Patchbay runs with durability on: WAL, `synchronous=FULL`,
//! every request committed before its 200.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use patchbay_plugin_sdk::signature::hmac_sha256_hex;

mod support;
use support::{env_usize, spawn};

const SECRET: &str = "bench-channel-secret";

fn main() {
    // Re-executed as the bare server.
    if std::env::var("PATCHBAY_BENCH_BARE").is_ok() {
        bare_server();
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass nothing useful.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

fn bare_server() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!(
            "patchbay listening on http://{}",
            listener.local_addr().expect("addr")
        );
        let app = axum::Router::new().fallback(|_body: axum::body::Bytes| async { "" });
        axum::serve(listener, app).await.expect("serve");
    });
}

async fn run() {
    let requests = env_usize("PATCHBAY_BENCH_REQUESTS", 20_000);
    let concurrency = env_usize("PATCHBAY_BENCH_CONCURRENCY", 64);

    // The application: answers 200 to every delivery.
    let app = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind app");
    let app_addr = app.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(
            app,
            axum::Router::new().fallback(|_b: axum::body::Bytes| async { "" }),
        )
        .await
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("bench.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
[store]
path = "{}"
[application]
webhook_url = "http://{app_addr}/hook"
secret = "bench-app-secret"
concurrency = {app_concurrency}
[log]
level = "warn"
[channels.bench]
adapter = "client-channel"
settings = {{ webhook_url = "http://127.0.0.1:9/unused" }}
secrets = {{ signing_secret = "{SECRET}" }}
"#,
            dir.path().join("bench.db").display(),
            app_concurrency = env_usize("PATCHBAY_BENCH_APP_CONCURRENCY", 32),
        ),
    )
    .expect("config");

    println!(
        "ingress load: {requests} signed webhooks, {concurrency} concurrent connections, loopback"
    );
    println!(
        "{:<28} {:>12} {:>10} {:>10} {:>10}",
        "target", "requests/s", "p50 ms", "p99 ms", "errors"
    );

    let bare = {
        let mut cmd = Command::new(std::env::current_exe().expect("exe"));
        cmd.env("PATCHBAY_BENCH_BARE", "1");
        spawn(cmd)
    };
    let bare_result = load(
        &format!("{}/webhooks/bench", bare.1),
        requests,
        concurrency,
        "bare",
    )
    .await;
    drop(bare);
    report("bare handler (200 only)", &bare_result);

    let host = {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_patchbay"));
        cmd.args(["serve", "--config"]).arg(&config);
        spawn(cmd)
    };
    let host_result = load(
        &format!("{}/webhooks/bench", host.1),
        requests,
        concurrency,
        "pb",
    )
    .await;
    report("patchbay serve (durable)", &host_result);
    drop(host);
    println!(
        "ratio: patchbay / bare = {:.2}",
        host_result.per_sec / bare_result.per_sec.max(f64::MIN_POSITIVE)
    );
}

struct LoadResult {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
    errors: usize,
}

fn report(name: &str, r: &LoadResult) {
    println!(
        "{name:<28} {:>12.0} {:>10.2} {:>10.2} {:>10}",
        r.per_sec,
        r.p50.as_secs_f64() * 1e3,
        r.p99.as_secs_f64() * 1e3,
        r.errors
    );
}

async fn load(url: &str, requests: usize, concurrency: usize, prefix: &str) -> LoadResult {
    let client = patchbay_host::transport::http_client(Duration::from_secs(30));
    // Bodies and signatures are prepared up front so only the server is measured.
    let prepared: Arc<Vec<(Vec<u8>, String)>> = Arc::new(
        (0..requests)
            .map(|i| {
                let body = format!(
                    r#"{{"message_id":"{prefix}-{i}","conversation":{{"id":"c-{}"}},"content":{{"type":"text","text":"load test message {i}"}}}}"#,
                    i % 500
                )
                .into_bytes();
                let sig = format!("sha256={}", hmac_sha256_hex(SECRET.as_bytes(), &body));
                (body, sig)
            })
            .collect(),
    );
    // Warm up connections.
    for _ in 0..concurrency.min(8) {
        let _ = client
            .get(url.replace("/webhooks/bench", "/healthz"))
            .send()
            .await;
    }
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, url, prepared, next) = (
            client.clone(),
            url.to_string(),
            prepared.clone(),
            next.clone(),
        );
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((body, sig)) = prepared.get(i) else {
                    break;
                };
                let t = Instant::now();
                let ok = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-hub-signature-256", sig)
                    .body(body.clone())
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false);
                latencies.push(t.elapsed());
                if !ok {
                    errors += 1;
                }
            }
            (latencies, errors)
        });
    }
    let mut latencies = Vec::with_capacity(requests);
    let mut errors = 0;
    while let Some(done) = tasks.join_next().await {
        let (l, e) = done.expect("task");
        latencies.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    LoadResult {
        per_sec: requests as f64 / elapsed.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
        errors,
    }
}
