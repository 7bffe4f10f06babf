//! Ingress burst benchmark: signed webhooks into `patchbay serve` over
//! loopback, against the same load on a bare handler that only answers 200.
//! A burst into an empty database; `benches/sustained.rs` is the measure of
//! what a gateway lives through.
//!
//! ```text
//! cargo bench -p patchbay-host --bench ingress_load
//! PATCHBAY_BENCH_ROUNDS=5 PATCHBAY_BENCH_REQUESTS=50000 cargo bench -p patchbay-host --bench ingress_load
//! # the writer's share for workers ([store] background_rows_per_turn):
//! PATCHBAY_BENCH_BACKGROUND_ROWS=512 cargo bench -p patchbay-host --bench ingress_load
//! # random event ids, as providers send (the default numbers them):
//! PATCHBAY_BENCH_RANDOM_IDS=1 cargo bench -p patchbay-host --bench ingress_load
//! # another build of `patchbay` (say, the previous commit's) under the same load:
//! PATCHBAY_BENCH_BIN=/tmp/patchbay-before cargo bench -p patchbay-host --bench ingress_load
//! ```
//!
//! Both servers run as separate processes; the load generator and a mock
//! application (answering 200, so the host's workers deliver while it accepts)
//! run in this one. Patchbay runs with durability on: WAL, `synchronous=FULL`,
//! every request committed before its 200. Besides acknowledgements, each round
//! reports when the application had received every accepted message, so what
//! accepting fast costs the delivery behind it stays visible. Rounds alternate
//! bare and Patchbay (a fresh database each); the medians are compared, and so
//! are the rounds pair by pair.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use patchbay_plugin_sdk::signature::hmac_sha256_hex;

mod support;
use support::{bare_server, bench_main, counter, env_usize, median, spawn};

const SECRET: &str = "bench-channel-secret";

fn main() {
    // Re-executed as the bare server.
    if std::env::var("PATCHBAY_BENCH_BARE").is_ok() {
        bare_server();
        return;
    }
    bench_main(run);
}

async fn run() {
    let requests = env_usize("PATCHBAY_BENCH_REQUESTS", 20_000);
    let concurrency = env_usize("PATCHBAY_BENCH_CONCURRENCY", 64);
    let rounds = env_usize("PATCHBAY_BENCH_ROUNDS", 3).max(1);

    // The application: answers 200 to every delivery, counting them.
    let (app, delivered) = counter().await;

    println!(
        "ingress load: {requests} signed webhooks, {concurrency} concurrent connections, {rounds} rounds, loopback"
    );
    println!(
        "{:<34} {:>11} {:>8} {:>8} {:>7} {:>18}",
        "target", "requests/s", "p50 ms", "p99 ms", "errors", "all delivered in"
    );
    let (mut bare_results, mut host_results) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let bare = {
            let mut cmd = Command::new(std::env::current_exe().expect("exe"));
            cmd.env("PATCHBAY_BENCH_BARE", "1");
            spawn(cmd)
        };
        let result = load(&bare.1, requests, concurrency, &format!("bare{round}")).await;
        drop(bare);
        report(
            &format!("bare handler (200 only), round {round}"),
            &result,
            None,
        );
        bare_results.push(result);

        // A fresh database each round.
        let dir = tempfile::tempdir().expect("tempdir");
        let host = {
            let bin = std::env::var_os("PATCHBAY_BENCH_BIN")
                .unwrap_or_else(|| env!("CARGO_BIN_EXE_patchbay").into());
            let mut cmd = Command::new(bin);
            cmd.args(["serve", "--config"])
                .arg(write_config(dir.path(), &app));
            spawn(cmd)
        };
        delivered.store(0, Ordering::Relaxed);
        let start = Instant::now();
        let result = load(&host.1, requests, concurrency, &format!("pb{round}")).await;
        // Accepted is not the end: every message must also reach the application.
        let accepted = requests - result.errors;
        let deadline = Instant::now() + Duration::from_secs(300);
        while delivered.load(Ordering::Relaxed) < accepted && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let drained = (delivered.load(Ordering::Relaxed) >= accepted).then(|| start.elapsed());
        drop(host);
        report(
            &format!("patchbay serve (durable), round {round}"),
            &result,
            Some(drained),
        );
        host_results.push(result);
    }
    let bare = LoadResult::median(&bare_results);
    let host = LoadResult::median(&host_results);
    report("bare handler, median", &bare, None);
    report("patchbay serve, median", &host, None);
    println!(
        "ratio: patchbay / bare = {:.2} (medians of {rounds} rounds)",
        host.per_sec / bare.per_sec.max(f64::MIN_POSITIVE)
    );
    // Each Patchbay round ran right after its bare round, so the pair saw the
    // same machine: the median of the pairs' ratios is steadier when the
    // machine's speed drifts between rounds.
    let paired = median(
        bare_results
            .iter()
            .zip(&host_results)
            .map(|(b, h)| h.per_sec / b.per_sec.max(f64::MIN_POSITIVE)),
    );
    println!("ratio, round by round: median {paired:.2}");
}

/// The host's config for one round: durability on, the client-channel adapter.
fn write_config(dir: &Path, app: &str) -> PathBuf {
    let config = dir.join("bench.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
[store]
path = "{}"
{rows}
[application]
webhook_url = "{app}/hook"
secret = "bench-app-secret"
concurrency = {app_concurrency}
[log]
level = "warn"
[channels.bench]
adapter = "client-channel"
settings = {{ webhook_url = "http://127.0.0.1:9/unused" }}
secrets = {{ signing_secret = "{SECRET}" }}
"#,
            dir.join("bench.db").display(),
            app_concurrency = env_usize("PATCHBAY_BENCH_APP_CONCURRENCY", 32),
            // The product's default unless the run asks for another.
            rows = support::store_tuning(),
        ),
    )
    .expect("config");
    config
}

struct LoadResult {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
    errors: usize,
}

impl LoadResult {
    /// The median of each figure over rounds.
    fn median(results: &[LoadResult]) -> LoadResult {
        let secs = |f: fn(&LoadResult) -> Duration| {
            Duration::from_secs_f64(median(results.iter().map(|r| f(r).as_secs_f64())))
        };
        LoadResult {
            per_sec: median(results.iter().map(|r| r.per_sec)),
            p50: secs(|r| r.p50),
            p99: secs(|r| r.p99),
            errors: results.iter().map(|r| r.errors).sum(),
        }
    }
}

/// One line; `drained` is `Some` for Patchbay: when the application had every
/// accepted message (`None` inside: not within the deadline).
fn report(name: &str, r: &LoadResult, drained: Option<Option<Duration>>) {
    let drained = match drained {
        None => String::new(),
        Some(Some(d)) => format!("{:.2} s", d.as_secs_f64()),
        Some(None) => "not within 300 s".into(),
    };
    println!(
        "{name:<34} {:>11.0} {:>8.2} {:>8.2} {:>7} {:>18}",
        r.per_sec,
        r.p50.as_secs_f64() * 1e3,
        r.p99.as_secs_f64() * 1e3,
        r.errors,
        drained
    );
}

async fn load(base: &str, requests: usize, concurrency: usize, prefix: &str) -> LoadResult {
    let url = format!("{base}/webhooks/bench");
    let client = patchbay_host::transport::http_client(Duration::from_secs(30));
    // Providers' event ids are random; numbered ones sort close together, which
    // spares the dedupe index most of its page writes.
    let random_ids = std::env::var_os("PATCHBAY_BENCH_RANDOM_IDS").is_some();
    // Bodies and signatures are prepared up front so only the server is measured.
    let prepared: Arc<Vec<(Vec<u8>, String)>> = Arc::new(
        (0..requests)
            .map(|i| {
                let id = if random_ids {
                    format!("{prefix}-{:032x}", rand::random::<u128>())
                } else {
                    format!("{prefix}-{i}")
                };
                let body = format!(
                    r#"{{"message_id":"{id}","conversation":{{"id":"c-{}"}},"content":{{"type":"text","text":"load test message {i}"}}}}"#,
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
        let _ = client.get(format!("{base}/healthz")).send().await;
    }
    let next = Arc::new(AtomicUsize::new(0));
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
                let i = next.fetch_add(1, Ordering::Relaxed);
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
