//! The sustained benchmark: what a gateway lives through, not a burst into an
//! empty database.
//!
//! ```text
//! cargo bench -p patchbay-host --bench sustained
//! # shorter phases while iterating (the defaults are the documented run):
//! PATCHBAY_BENCH_SECS=20 PATCHBAY_BENCH_PREFILL=200000 cargo bench -p patchbay-host --bench sustained
//! # the writer's share for workers ([store] background_rows_per_turn):
//! PATCHBAY_BENCH_BACKGROUND_ROWS=512 cargo bench -p patchbay-host --bench sustained
//! # deliveries in flight to the application ([application] concurrency, 32):
//! PATCHBAY_BENCH_APP_CONCURRENCY=128 cargo bench -p patchbay-host --bench sustained
//! # another build of `patchbay` (say, the previous release) under the same load:
//! PATCHBAY_BENCH_BIN=/tmp/patchbay-before cargo bench -p patchbay-host --bench sustained
//! # the acknowledgement log on another device (a symlink beside the database):
//! PATCHBAY_BENCH_ACKS_DIR=/mnt/fast cargo bench -p patchbay-host --bench sustained
//! # the processes' logs, appended to a file (`RUST_LOG` as for `patchbay serve`):
//! PATCHBAY_BENCH_LOG=/tmp/bench.log RUST_LOG=info,patchbay_host::store=debug cargo bench -p patchbay-host --bench sustained
//! ```
//!
//! Six processes: this one (the load generator), a bare handler that only
//! answers 200, a bare durable handler, a bare relay, the application, and `patchbay serve`. The application is
//! `benches/app.js` on Node.js (as many real ones are): it verifies each
//! delivery's signature, parses it, answers 200 (503 while "down") and counts.
//! Without `node` on the PATH (or with `PATCHBAY_BENCH_APP=rust`) a Rust
//! application that only counts stands in; the report says which ran. Patchbay runs durably (WAL,
//! `synchronous=FULL`, every webhook committed before its 200) on a database
//! already holding a retention window: `PATCHBAY_BENCH_PREFILL` (1,000,000)
//! finished webhooks with their random event ids, and as many finished
//! deliveries. Webhooks carry random event ids, as providers send them, over
//! 500 conversations.
//!
//! Phases, each reported on its own line:
//! 1. **application capacity**: the load generator POSTs deliveries straight
//!    to the application — what it can take on this machine, in this run;
//! 2. **bare handler**: `PATCHBAY_BENCH_SECS` (60) s of closed-loop load —
//!    the limit of acceptance;
//! 3. **bare durable handler**: a third of that, against a handler that
//!    appends each body to a file and answers once it is synced (a group
//!    commit, one `fdatasync` for all waiting), storing nothing else — the
//!    limit of durable acceptance on this machine's disk;
//!    **bare relay**: as long, through a relay that forwards each
//!    webhook to the application and answers once it has, storing nothing —
//!    the limit of end-to-end delivery on this machine;
//! 4. **patchbay, full load**: the same load as 2; accepted requests/s, ack
//!    latency, and messages the application received per second meanwhile;
//! 5. **patchbay, half load**: open loop at half the rate phase 4 accepted;
//!    ack latency;
//! 6. **end to end**: open loop at 80% of the lesser of the application's
//!    capacity and phase 4's rate, until every message is delivered;
//! 7. **backlog**: the application goes down; `PATCHBAY_BENCH_BACKLOG`
//!    (100,000) webhooks are accepted, then ingest is measured for
//!    `PATCHBAY_BENCH_SECS / 3` s with them waiting;
//! 8. **recovery**: the application comes back; how fast the backlog drains
//!    and how long after recovery every conversation had its next delivery.
//!
//! Before phase 4 the report gives what the disk under the database allows:
//! the median time of a synced 16 KB append, the floor of every group commit.
//!
//! Patchbay's resident memory is sampled every second throughout; for the
//! full-load, end-to-end and drain phases the report adds its CPU time per
//! message by thread and the bytes it wrote for the disk per message.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use patchbay_plugin_sdk::signature::hmac_sha256_hex;

mod support;
use support::{Server, bare_server, bench_main, block_on, env_usize, serve_announced, spawn};

#[path = "sustained/replicas.rs"]
mod replicas;

const SECRET: &str = "bench-channel-secret";
const APP_SECRET: &str = "bench-app-secret";
const CONVERSATIONS: usize = 500;

fn main() {
    // Re-executed as the bare handler or as the application.
    match std::env::var("PATCHBAY_BENCH_ROLE").as_deref() {
        Ok("bare") => return bare_server(),
        Ok("app") => return app_server(),
        Ok("relay") => return relay_server(),
        Ok("durable") => return durable_server(),
        _ => {}
    }
    bench_main(run);
}

// ---- the two helper processes --------------------------------------------

/// The application: `POST /hook` answers 200 (503 while down) and counts;
/// `/control/{down,up,stats}` steer it. After `up`, it notes when each
/// conversation first got a delivery.
#[derive(Default)]
struct AppState {
    down: AtomicBool,
    received: AtomicU64,
    up_at: Mutex<Option<Instant>>,
    resumed: Mutex<HashMap<String, Duration>>,
}

fn app_server() {
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    block_on(async {
        let state = Arc::new(AppState::default());
        let hook = |State(s): State<Arc<AppState>>, body: axum::body::Bytes| async move {
            if s.down.load(Ordering::Relaxed) {
                return StatusCode::SERVICE_UNAVAILABLE;
            }
            s.received.fetch_add(1, Ordering::Relaxed);
            let up_at = *s.up_at.lock().expect("lock");
            if let Some(up_at) = up_at
                && let Some(conv) = conversation_of(&body)
            {
                s.resumed
                    .lock()
                    .expect("lock")
                    .entry(conv)
                    .or_insert_with(|| up_at.elapsed());
            }
            StatusCode::OK
        };
        let down = |State(s): State<Arc<AppState>>| async move {
            s.down.store(true, Ordering::SeqCst);
        };
        let up = |State(s): State<Arc<AppState>>| async move {
            s.resumed.lock().expect("lock").clear();
            *s.up_at.lock().expect("lock") = Some(Instant::now());
            s.down.store(false, Ordering::SeqCst);
        };
        let stats = |State(s): State<Arc<AppState>>| async move {
            let resumed = s.resumed.lock().expect("lock");
            let slowest = resumed.values().max().copied().unwrap_or_default();
            format!(
                "{} {} {}",
                s.received.load(Ordering::Relaxed),
                resumed.len(),
                slowest.as_millis()
            )
        };
        let router = axum::Router::new()
            .route("/hook", post(hook))
            .route("/control/down", post(down))
            .route("/control/up", post(up))
            .route("/control/stats", get(stats))
            .with_state(state);
        serve_announced(router).await;
    });
}

/// The bare durable handler: appends each request's body to the file
/// `PATCHBAY_BENCH_DURABLE_FILE` names and answers 200 once it is on the
/// disk, one `fdatasync` for every body waiting (a group commit). What
/// accepting durably costs with nothing else done — no signature, no event
/// id, no database: the limit of any gateway that acknowledges only what it
/// has stored, on this machine's disk.
fn durable_server() {
    use std::io::Write;
    use tokio::sync::{mpsc, oneshot};
    let path = std::env::var("PATCHBAY_BENCH_DURABLE_FILE").expect("PATCHBAY_BENCH_DURABLE_FILE");
    let mut file = std::fs::File::create(path).expect("durable file");
    let (tx, mut rx) = mpsc::channel::<(axum::body::Bytes, oneshot::Sender<()>)>(4096);
    std::thread::spawn(move || {
        let (mut waiting, mut bytes) = (Vec::new(), Vec::new());
        while rx.blocking_recv_many(&mut waiting, 512) > 0 {
            bytes.clear();
            for (body, _) in &waiting {
                bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
                bytes.extend_from_slice(body);
            }
            file.write_all(&bytes).expect("append");
            file.sync_data().expect("sync");
            for (_, stored) in waiting.drain(..) {
                let _ = stored.send(());
            }
        }
    });
    let accept = move |body: axum::body::Bytes| {
        let tx = tx.clone();
        async move {
            let (stored, on_disk) = oneshot::channel();
            match tx.send((body, stored)).await {
                Ok(()) if on_disk.await.is_ok() => axum::http::StatusCode::OK,
                _ => axum::http::StatusCode::SERVICE_UNAVAILABLE,
            }
        }
    };
    block_on(serve_announced(axum::Router::new().fallback(accept)));
}

/// The bare relay: forwards each request's body to the application (whose
/// hook `PATCHBAY_BENCH_RELAY_TO` names), signed as Patchbay signs a
/// delivery, and answers 200 once the application has. An end-to-end gateway
/// that stores, verifies and converts nothing: the limit of what any
/// gateway delivers on this machine, beside the application and the load.
fn relay_server() {
    use axum::http::StatusCode;
    let to = std::env::var("PATCHBAY_BENCH_RELAY_TO").expect("PATCHBAY_BENCH_RELAY_TO");
    let client = patchbay_host::transport::app_client(Duration::from_secs(30));
    let forward = move |body: axum::body::Bytes| {
        let (client, to) = (client.clone(), to.clone());
        async move {
            let sig = format!("sha256={}", hmac_sha256_hex(APP_SECRET.as_bytes(), &body));
            let answer = client
                .post(to)
                .header("content-type", "application/json")
                .header("x-hub-signature-256", sig)
                .body(body)
                .send()
                .await;
            match answer {
                Ok(r) if r.status().is_success() => StatusCode::OK,
                _ => StatusCode::BAD_GATEWAY,
            }
        }
    };
    block_on(serve_announced(axum::Router::new().fallback(forward)));
}

/// The conversation id of a canonical message, found without parsing JSON
/// (the application's own cost should stay small).
fn conversation_of(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find(r#""conversation":{"id":""#)? + 23;
    let end = text[start..].find('"')? + start;
    Some(text[start..end].to_string())
}

// ---- the run --------------------------------------------------------------

struct App {
    server: Server,
    client: reqwest::Client,
}

impl App {
    async fn control(&self, what: &str) {
        self.client
            .post(format!("{}/control/{what}", self.server.1))
            .send()
            .await
            .expect("app control");
    }

    /// Received, conversations resumed since `up`, the slowest's wait (ms).
    async fn stats(&self) -> (u64, usize, u64) {
        let text = self
            .client
            .get(format!("{}/control/stats", self.server.1))
            .send()
            .await
            .expect("app stats")
            .text()
            .await
            .expect("text");
        let mut parts = text.split(' ').map(|p| p.parse::<u64>().unwrap_or(0));
        let mut next = || parts.next().unwrap_or(0);
        (next(), next() as usize, next())
    }
}

/// The Node.js application if `node` runs, else the Rust one.
fn application() -> (Server, &'static str) {
    let node = std::env::var("PATCHBAY_BENCH_APP").as_deref() != Ok("rust")
        && Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if node {
        let mut cmd = Command::new("node");
        cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/app.js"));
        (
            spawn(cmd),
            "benches/app.js on Node.js (verifies signatures, parses JSON)",
        )
    } else {
        (helper("app"), "the Rust stand-in (counts only)")
    }
}

fn helper(role: &str) -> Server {
    helper_with(role, &[])
}

fn helper_with(role: &str, env: &[(&str, &str)]) -> Server {
    let mut cmd = Command::new(std::env::current_exe().expect("exe"));
    cmd.env("PATCHBAY_BENCH_ROLE", role)
        .envs(env.iter().copied());
    spawn(cmd)
}

async fn run() {
    let secs = env_usize("PATCHBAY_BENCH_SECS", 60) as u64;
    let prefill = env_usize("PATCHBAY_BENCH_PREFILL", 1_000_000);
    let backlog = env_usize("PATCHBAY_BENCH_BACKLOG", 100_000);
    let connections = env_usize("PATCHBAY_BENCH_CONCURRENCY", 32);
    let full = Duration::from_secs(secs);
    let client = patchbay_host::transport::http_client(Duration::from_secs(30));

    println!(
        "sustained load: {secs} s phases, {connections} connections, random event ids over \
         {CONVERSATIONS} conversations, database pre-filled with {prefill} finished webhooks \
         (and their event ids) and {prefill} finished deliveries; loopback, 2 processes besides this one"
    );

    let (server, kind) = application();
    println!("application: {kind}");
    let app = App {
        server,
        client: client.clone(),
    };
    let hook = format!("{}/hook", app.server.1);

    // 1. The application's own capacity, with the same client and connections.
    let capacity = closed_loop(
        &client,
        &hook,
        connections,
        Duration::from_secs(10.min(secs)),
        &Bodies::Delivery,
    )
    .await;
    line("application alone (capacity)", &capacity, "");

    // 2. The limits, each a process of its own under the same load: the
    // bare handler; durable acceptance (appended and synced, nothing else);
    // end to end (a relay that forwards each webhook to the application and
    // answers once it has, storing nothing).
    let limit = |role: &'static str, env: Vec<(&'static str, String)>, secs: Duration| {
        let client = client.clone();
        async move {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let helper = helper_with(role, &env);
            let url = format!("{}/webhooks/bench", helper.1);
            closed_loop(&client, &url, connections, secs, &Bodies::webhooks(role)).await
        }
    };
    let bare_result = limit("bare", vec![], full).await;
    line("bare handler", &bare_result, "");

    let scratch = tempfile::tempdir().expect("tempdir");
    let file = scratch.path().join("durable.log").display().to_string();
    let durable_result = limit(
        "durable",
        vec![("PATCHBAY_BENCH_DURABLE_FILE", file)],
        full / 3,
    )
    .await;
    drop(scratch);
    line(
        "bare durable handler (appends, syncs, answers)",
        &durable_result,
        &format!("{:.2} × bare", durable_result.per_sec / bare_result.per_sec),
    );

    let (received_before, _, _) = app.stats().await;
    let relay_result = limit(
        "relay",
        vec![("PATCHBAY_BENCH_RELAY_TO", hook.clone())],
        full / 3,
    )
    .await;
    let (received_after, _, _) = app.stats().await;
    line(
        "bare relay (to the application, storing nothing)",
        &relay_result,
        &format!(
            "{} delivered; {:.2} × the application's capacity",
            received_after - received_before,
            relay_result.per_sec / capacity.per_sec
        ),
    );

    if std::env::var("PATCHBAY_BENCH_SCENARIO").as_deref() == Ok("replicas") {
        replicas::run(
            &client,
            &app,
            &hook,
            secs,
            prefill,
            connections,
            bare_result.per_sec,
        )
        .await;
        return;
    }

    // Patchbay on a database that already holds a retention window.
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("bench.db");
    let started = Instant::now();
    prefill_database(&db, dir.path(), &hook, prefill);
    println!(
        "(pre-filled {} in {:.0} s: {} MB)",
        db.display(),
        started.elapsed().as_secs_f64(),
        std::fs::metadata(&db).map(|m| m.len() >> 20).unwrap_or(0)
    );
    println!(
        "(the disk: a synced 16 KB append takes {:.2} ms, the median of 300 — the floor of every group commit)",
        synced_append(dir.path()).as_secs_f64() * 1e3
    );
    if let Some(elsewhere) = std::env::var_os("PATCHBAY_BENCH_ACKS_DIR") {
        acks_elsewhere(&db, Path::new(&elsewhere));
    }
    let host = start_patchbay(dir.path(), &db, &hook);
    let pid = host.0.id();
    let memory = Memory::sample(pid);
    let url = format!("{}/webhooks/bench", host.1);

    // 3. Full load.
    let (received_before, _, _) = app.stats().await;
    let start = Instant::now();
    let cpu = Cpu::now(pid);
    let pb_full = closed_loop(&client, &url, connections, full, &Bodies::webhooks("full")).await;
    let full_cpu = Cpu::now(pid).report(&cpu, start.elapsed().as_secs_f64(), pb_full.ok as u64);
    let (received_after, _, _) = app.stats().await;
    let e2e = (received_after - received_before) as f64 / start.elapsed().as_secs_f64();
    line(
        "patchbay, full load",
        &pb_full,
        &format!(
            "{:.2} × bare = {:.2} × bare durable; application received {e2e:.0}/s = {:.2} × its capacity",
            pb_full.per_sec / bare_result.per_sec,
            pb_full.per_sec / durable_result.per_sec,
            e2e / capacity.per_sec
        ),
    );
    println!("{:<58} {full_cpu}", "  (accepted, full load)");
    wait_delivered(&app, received_before + pb_full.ok as u64).await;

    // 4. Half load, open loop.
    let half_rate = pb_full.per_sec / 2.0;
    let pb_half = open_loop(
        &client,
        &url,
        half_rate,
        full / 3,
        &Bodies::webhooks("half"),
    )
    .await;
    line(
        &format!("patchbay, half load ({half_rate:.0}/s offered)"),
        &pb_half,
        "",
    );
    let (received, _, _) = app.stats().await;
    let e2e_start = Instant::now();
    let cpu = Cpu::now(pid);
    let e2e_offered = open_loop(
        &client,
        &url,
        capacity.per_sec.min(pb_full.per_sec) * 0.8,
        full / 3,
        &Bodies::webhooks("e2e"),
    )
    .await;
    let reached = wait_delivered(&app, received + e2e_offered.ok as u64).await;
    let e2e_rate = e2e_offered.ok as f64 / e2e_start.elapsed().as_secs_f64();
    let e2e_cpu = Cpu::now(pid).report(
        &cpu,
        e2e_start.elapsed().as_secs_f64(),
        e2e_offered.ok as u64,
    );
    line(
        "patchbay, end to end (80% of the lesser capacity offered)",
        &e2e_offered,
        &format!(
            "{} {} delivered; {e2e_rate:.0} messages/s end to end = {:.2} × the application's capacity = {:.2} × the bare relay",
            if reached { "all" } else { "NOT all" },
            e2e_offered.ok,
            e2e_rate / capacity.per_sec,
            e2e_rate / relay_result.per_sec
        ),
    );
    println!("{:<58} {e2e_cpu}", "  (accepted and delivered)");

    // 5. The application goes down; a backlog piles up.
    app.control("down").await;
    let fill = closed_loop_count(
        &client,
        &url,
        connections,
        backlog,
        &Bodies::webhooks("fill"),
    )
    .await;
    line(
        &format!("patchbay, {backlog} accepted, application down"),
        &fill,
        "",
    );
    let with_backlog = closed_loop(
        &client,
        &url,
        connections,
        full / 3,
        &Bodies::webhooks("backlog"),
    )
    .await;
    line(
        "patchbay, with that backlog waiting",
        &with_backlog,
        &format!(
            "{:.2} × the rate while it piled up from none",
            with_backlog.per_sec / fill.per_sec
        ),
    );
    // Let parsing catch up so the drain below is deliveries only.
    tokio::time::sleep(Duration::from_secs(5)).await;

    // 6. Recovery.
    let (received, _, _) = app.stats().await;
    let waiting = (fill.ok + with_backlog.ok) as u64;
    app.control("up").await;
    let up = Instant::now();
    let cpu = Cpu::now(pid);
    let drained = wait_delivered(&app, received + waiting).await;
    let drain_secs = up.elapsed().as_secs_f64();
    let drain_cpu = Cpu::now(pid).report(&cpu, drain_secs, waiting);
    let (_, resumed, slowest_ms) = app.stats().await;
    println!(
        "{:<58} {} {waiting} in {drain_secs:.1} s = {:.0} messages/s = {:.2} × the end-to-end rate; \
         {resumed} conversations resumed, the last {:.2} s after recovery",
        "patchbay, backlog drained",
        if drained { "all" } else { "NOT all of" },
        waiting as f64 / drain_secs,
        waiting as f64 / drain_secs / e2e_rate,
        slowest_ms as f64 / 1e3
    );
    println!("{:<58} {drain_cpu}", "  (delivered)");
    let (first, peak, last) = memory.finish();
    // Heap apart from mapped files (the binary's pages, SQLite's shared
    // WAL index): what would grow with a leak.
    let anon = status_mb(pid, "RssAnon:").unwrap_or(0);
    let files = status_mb(pid, "RssFile:").unwrap_or(0) + status_mb(pid, "RssShmem:").unwrap_or(0);
    println!(
        "{:<58} {first} MB at start, {peak} MB at most, {last} MB at the end \
         ({anon} MB heap, {files} MB mapped files)",
        "patchbay resident memory"
    );
    drop(host);
}

fn line(name: &str, r: &LoadResult, tail: &str) {
    println!(
        "{name:<58} {:>8.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms  errors {:>5}  {tail}",
        r.per_sec,
        r.p50.as_secs_f64() * 1e3,
        r.p99.as_secs_f64() * 1e3,
        r.errors
    );
}

/// Waits (up to 10 minutes) until the application has received `target`
/// messages in all; false if it did not.
async fn wait_delivered(app: &App, target: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(600);
    while Instant::now() < deadline {
        if app.stats().await.0 >= target {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

// ---- the database ---------------------------------------------------------

/// Writes the config `name` in `dir`: the bench channel, the application,
/// and `store` as the `[store]` table's keys.
fn config(dir: &Path, name: &str, store: &str, app_hook: &str) -> PathBuf {
    let config = dir.join(name);
    let concurrency = std::env::var("PATCHBAY_BENCH_APP_CONCURRENCY")
        .map(|n| format!("concurrency = {n}"))
        .unwrap_or_default();
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
[store]
{store}
[application]
webhook_url = "{app_hook}"
secret = "{APP_SECRET}"
{concurrency}
[log]
level = "error"
[channels.bench]
adapter = "client-channel"
settings = {{ webhook_url = "http://127.0.0.1:9/unused" }}
secrets = {{ signing_secret = "{SECRET}" }}
"#
        ),
    )
    .expect("config");
    config
}

/// `patchbay serve` on `config` (`PATCHBAY_BENCH_BIN` names another build).
fn serve(config: &Path) -> Server {
    let bin = std::env::var_os("PATCHBAY_BENCH_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_patchbay").into());
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--config"]).arg(config);
    spawn(cmd)
}

/// Patchbay on the SQLite file `db`, with the product's writer tuning
/// unless the run asks for another.
fn start_patchbay(dir: &Path, db: &Path, app_hook: &str) -> Server {
    let store = format!("path = \"{}\"\n{}", db.display(), support::store_tuning());
    serve(&config(dir, "bench.toml", &store, app_hook))
}

/// What the disk under the database allows: the median time of a 16 KB
/// append synced to the disk (`fdatasync`), about what a group commit of
/// fifteen webhooks writes to the acknowledgement log.
fn synced_append(dir: &Path) -> Duration {
    use std::io::Write;
    let path = dir.join("synced-append.probe");
    let mut file = std::fs::File::create(&path).expect("probe file");
    let block = vec![7u8; 16 * 1024];
    let mut times: Vec<Duration> = (0..300)
        .map(|_| {
            let t = Instant::now();
            file.write_all(&block).expect("probe write");
            file.sync_data().expect("probe sync");
            t.elapsed()
        })
        .collect();
    drop(file);
    let _ = std::fs::remove_file(&path);
    times.sort();
    times[times.len() / 2]
}

/// Puts the acknowledgement log of `db` in `dir` (another device, say): the
/// log's name beside the database becomes a symlink to a file there, and
/// SQLite keeps the log's WAL beside its target. The log holds nothing yet
/// (the pre-fill wrote the main database only).
fn acks_elsewhere(db: &Path, dir: &Path) {
    let name = format!("{}.acks", db.file_name().expect("name").to_string_lossy());
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(db.with_file_name(format!("{name}{suffix}")));
        let _ = std::fs::remove_file(dir.join(format!("{name}{suffix}")));
    }
    std::os::unix::fs::symlink(dir.join(&name), db.with_file_name(&name)).expect("symlink");
    println!("(the acknowledgement log in {})", dir.display());
}

/// Lets the binary under test create its schema, then fills it with `n`
/// finished webhooks (random event ids, as a retention window of real
/// traffic leaves them) and `n` finished deliveries, through SQL that both
/// the current and the previous schema accept.
fn prefill_database(db: &Path, dir: &Path, app_hook: &str, n: usize) {
    drop(start_patchbay(dir, db, app_hook));
    let conn = rusqlite::Connection::open(db).expect("open");
    conn.execute_batch(
        "PRAGMA journal_mode = wal; PRAGMA synchronous = off; PRAGMA cache_size = -262144;",
    )
    .expect("pragmas");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let window = 72 * 3600 * 1000_i64;
    let has_table = |name: &str| -> bool {
        conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = ?1)",
            [name],
            |r| r.get(0),
        )
        .expect("schema")
    };
    // Schema 2 keeps payloads apart and event ids as hashes; schema 1 had
    // both in `jobs`.
    let (has_payloads, has_dedupe) = (has_table("payloads"), has_table("dedupe"));
    let payload_column = if has_payloads { "" } else { ", payload" };
    let payload_value = |bytes: u32| {
        if has_payloads {
            String::new()
        } else {
            format!(", randomblob({bytes})")
        }
    };
    let tx = conn.unchecked_transaction().expect("begin");
    // Jobs in time order over the window, as they would have been written.
    tx.execute(
        &format!(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?1)
             INSERT INTO jobs (id, queue, channel, dedupe_key, state, run_at, created_at, updated_at{payload_column})
             SELECT printf('%016x-prefill-in-%d', ?2 - ?3 + i * ?3 / ?1, i), 'inbound', 'bench',
                    'pre-' || lower(hex(randomblob(16))), 'done',
                    ?2 - ?3 + i * ?3 / ?1, ?2 - ?3 + i * ?3 / ?1, ?2 - ?3 + i * ?3 / ?1{}
             FROM n",
            payload_value(700)
        ),
        rusqlite::params![n as i64, now, window],
    )
    .expect("prefill inbound");
    tx.execute(
        &format!(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?1)
             INSERT INTO jobs (id, queue, channel, conversation_key, state, run_at, created_at, updated_at{payload_column})
             SELECT printf('%016x-prefill-out-%d', ?2 - ?3 + i * ?3 / ?1, i), 'deliver', 'bench',
                    'bench' || char(31) || 'c-' || (i % 500), 'done',
                    ?2 - ?3 + i * ?3 / ?1, ?2 - ?3 + i * ?3 / ?1, ?2 - ?3 + i * ?3 / ?1{}
             FROM n",
            payload_value(400)
        ),
        rusqlite::params![n as i64, now, window],
    )
    .expect("prefill deliver");
    if has_payloads {
        tx.execute(
            "INSERT INTO payloads (seq, payload)
             SELECT seq, randomblob(CASE queue WHEN 'inbound' THEN 700 ELSE 400 END) FROM jobs",
            [],
        )
        .expect("prefill payloads");
    }
    if has_dedupe {
        // The event ids above, as the store keeps them (their hashes are as
        // random as these).
        tx.execute(
            "INSERT OR IGNORE INTO dedupe (slot, check_hash, seen_at)
             SELECT random(), random(), created_at FROM jobs WHERE queue = 'inbound'",
            [],
        )
        .expect("prefill dedupe");
    }
    tx.commit().expect("commit");
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .expect("checkpoint");
}

// ---- load -----------------------------------------------------------------

/// What the load generator sends.
#[derive(Clone)]
enum Bodies {
    /// Signed client-channel webhooks with random event ids.
    Webhooks(String),
    /// A canonical message, as Patchbay would deliver it.
    Delivery,
}

impl Bodies {
    fn webhooks(prefix: &str) -> Bodies {
        Bodies::Webhooks(prefix.to_string())
    }

    fn make(&self, i: usize) -> (Vec<u8>, String) {
        match self {
            Bodies::Webhooks(prefix) => {
                let body = format!(
                    r#"{{"message_id":"{prefix}-{:032x}","conversation":{{"id":"c-{}"}},"content":{{"type":"text","text":"load test message {i}"}}}}"#,
                    rand::random::<u128>(),
                    i % CONVERSATIONS
                )
                .into_bytes();
                let sig = format!("sha256={}", hmac_sha256_hex(SECRET.as_bytes(), &body));
                (body, sig)
            }
            Bodies::Delivery => {
                let body = format!(
                    r#"{{"id":"{:032x}","channel":"bench","conversation":{{"id":"c-{}"}},"content":{{"type":"text","text":"load test message {i}"}}}}"#,
                    rand::random::<u128>(),
                    i % CONVERSATIONS
                )
                .into_bytes();
                let sig = format!("sha256={}", hmac_sha256_hex(APP_SECRET.as_bytes(), &body));
                (body, sig)
            }
        }
    }
}

#[derive(Debug, Default)]
struct LoadResult {
    per_sec: f64,
    ok: usize,
    errors: usize,
    p50: Duration,
    p99: Duration,
}

impl LoadResult {
    fn from(mut latencies: Vec<Duration>, ok: usize, errors: usize, elapsed: Duration) -> Self {
        latencies.sort();
        let pct = |p: f64| {
            latencies
                .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        LoadResult {
            per_sec: ok as f64 / elapsed.as_secs_f64(),
            ok,
            errors,
            p50: pct(0.50),
            p99: pct(0.99),
        }
    }
}

async fn send(client: &reqwest::Client, url: &str, (body, sig): (Vec<u8>, String)) -> bool {
    client
        .post(url)
        .header("content-type", "application/json")
        .header("x-hub-signature-256", sig)
        .body(body)
        .send()
        .await
        .map(|r| r.status().is_success())
        .unwrap_or(false)
}

/// `connections` senders, each sending its next request when the last is
/// answered, until `duration` has passed.
async fn closed_loop(
    client: &reqwest::Client,
    url: &str,
    connections: usize,
    duration: Duration,
    bodies: &Bodies,
) -> LoadResult {
    closed(client, url, connections, Some(duration), usize::MAX, bodies).await
}

/// [`closed_loop`] with the connections spread over `urls` (one replica each,
/// in turn), as a load balancer spreads them.
async fn closed_multi(
    client: &reqwest::Client,
    urls: &[String],
    connections: usize,
    duration: Duration,
    bodies: &Bodies,
) -> LoadResult {
    closed_over(
        client,
        urls,
        connections,
        Some(duration),
        usize::MAX,
        bodies,
    )
    .await
}

/// The same until `count` requests were accepted.
async fn closed_loop_count(
    client: &reqwest::Client,
    url: &str,
    connections: usize,
    count: usize,
    bodies: &Bodies,
) -> LoadResult {
    closed(client, url, connections, None, count, bodies).await
}

async fn closed(
    client: &reqwest::Client,
    url: &str,
    connections: usize,
    duration: Option<Duration>,
    count: usize,
    bodies: &Bodies,
) -> LoadResult {
    closed_over(
        client,
        &[url.to_string()],
        connections,
        duration,
        count,
        bodies,
    )
    .await
}

async fn closed_over(
    client: &reqwest::Client,
    urls: &[String],
    connections: usize,
    duration: Option<Duration>,
    count: usize,
    bodies: &Bodies,
) -> LoadResult {
    let bodies = Arc::new(bodies.clone());
    let next = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for connection in 0..connections {
        let (client, url, bodies, next, accepted) = (
            client.clone(),
            urls[connection % urls.len()].clone(),
            bodies.clone(),
            next.clone(),
            accepted.clone(),
        );
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            loop {
                if duration.is_some_and(|d| start.elapsed() >= d)
                    || accepted.load(Ordering::Relaxed) >= count
                {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                let ok = send(&client, &url, bodies.make(i)).await;
                latencies.push(t.elapsed());
                if ok {
                    accepted.fetch_add(1, Ordering::Relaxed);
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        });
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    while let Some(done) = tasks.join_next().await {
        let (l, e) = done.expect("sender");
        latencies.extend(l);
        errors += e;
    }
    LoadResult::from(
        latencies,
        accepted.load(Ordering::Relaxed),
        errors,
        start.elapsed(),
    )
}

/// Requests sent at `rate` per second, on schedule whatever the answers
/// take (latency measured from when each was due), for `duration`.
async fn open_loop(
    client: &reqwest::Client,
    url: &str,
    rate: f64,
    duration: Duration,
    bodies: &Bodies,
) -> LoadResult {
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut i = 0;
    while start.elapsed() < duration {
        let due = start + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let (client, url, request) = (client.clone(), url.to_string(), bodies.make(i));
        tasks.spawn(async move {
            let ok = send(&client, &url, request).await;
            (due.elapsed(), ok)
        });
        i += 1;
    }
    let mut latencies = Vec::with_capacity(i);
    let (mut ok, mut errors) = (0, 0);
    while let Some(done) = tasks.join_next().await {
        let (latency, accepted) = done.expect("sender");
        latencies.push(latency);
        if accepted {
            ok += 1;
        } else {
            errors += 1;
        }
    }
    LoadResult::from(latencies, ok, errors, start.elapsed())
}

// ---- memory ---------------------------------------------------------------

/// Samples a process's resident memory every second.
struct Memory {
    samples: Arc<Mutex<Vec<u64>>>,
    stop: Arc<AtomicBool>,
}

impl Memory {
    fn sample(pid: u32) -> Memory {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (samples.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                if let Some(mb) = rss_mb(pid) {
                    s.lock().expect("lock").push(mb);
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        Memory { samples, stop }
    }

    /// First, highest and last sample, MB.
    fn finish(self) -> (u64, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let s = self.samples.lock().expect("lock");
        (
            s.first().copied().unwrap_or(0),
            s.iter().max().copied().unwrap_or(0),
            s.last().copied().unwrap_or(0),
        )
    }
}

/// CPU time, from `/proc`: Patchbay's threads by kind, and the machine's;
/// and the bytes Patchbay sent towards the disk.
#[derive(Clone, Default)]
struct Cpu {
    /// Clock ticks of the live threads per kind: the server's runtime, the
    /// workers', the main database's writer, the acknowledgement log's writer.
    threads: HashMap<&'static str, u64>,
    /// Patchbay's resident memory, MB.
    rss: u64,
    /// Patchbay's ticks, all threads, those that ended included (a
    /// blocking thread idle for 10 s ends, taking its ticks out of the sum
    /// over the threads alive), and of them in the kernel.
    process: u64,
    kernel: u64,
    /// The machine's busy and idle ticks over all cores.
    busy: u64,
    idle: u64,
    /// Bytes Patchbay wrote for the disk (`write_bytes` less
    /// `cancelled_write_bytes`: temporary files deleted unwritten).
    written: u64,
}

/// The ticks `kind`'s threads spent between `before` and `after`.
fn spent_alive(after: &Cpu, before: &Cpu, kind: &str) -> u64 {
    let alive = |cpu: &Cpu| cpu.threads.get(kind).copied().unwrap_or(0);
    alive(after).saturating_sub(alive(before))
}

impl Cpu {
    fn now(pid: u32) -> Cpu {
        let mut cpu = Cpu::default();
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for task in tasks.flatten() {
                let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                    continue;
                };
                // `pid (comm) state ...`: the name may hold spaces, so split
                // at the last parenthesis; utime and stime are fields 14, 15.
                let Some((head, rest)) = stat.rsplit_once(") ") else {
                    continue;
                };
                let name = head.split_once(" (").map_or("", |(_, n)| n);
                let fields: Vec<&str> = rest.split_whitespace().collect();
                let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
                let (Some(user), Some(system)) = (ticks(11), ticks(12)) else {
                    continue;
                };
                let kind = match name {
                    "patchbay-store" => "main writer",
                    "patchbay-acks" => "ack writer",
                    // The workers' runtime, its blocking pool with it.
                    "patchbay-worker" => "workers",
                    // The server's runtime and its blocking pool (the
                    // store's reads for requests).
                    n if n.starts_with("tokio-") => "server",
                    // Counted as the rest of the process's time.
                    _ => continue,
                };
                *cpu.threads.entry(kind).or_default() += user + system;
            }
        }
        if let Some(fields) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.to_owned()))
        {
            let fields: Vec<u64> = fields
                .split_whitespace()
                .map(|f| f.parse().unwrap_or(0))
                .collect();
            // The process's utime and stime (fields 14, 15), ended threads' in.
            let (user, system) = (fields[11], fields[12]);
            cpu.process = user + system;
            cpu.kernel = system;
        }
        if let Some(line) = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| s.lines().next().map(str::to_owned))
        {
            let v: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|f| f.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal
            cpu.idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            cpu.busy = v.iter().take(8).sum::<u64>() - cpu.idle;
        }
        if let Ok(io) = std::fs::read_to_string(format!("/proc/{pid}/io")) {
            let field = |name: &str| {
                io.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            };
            cpu.written = field("write_bytes:").saturating_sub(field("cancelled_write_bytes:"));
        }
        cpu.rss = rss_mb(pid).unwrap_or(0);
        cpu
    }

    /// What was spent since `before`, per `messages`: a line for the report.
    fn report(&self, before: &Cpu, secs: f64, messages: u64) -> String {
        const TICK_US: f64 = 10_000.0; // USER_HZ is 100 on Linux
        let named = ["server", "workers", "main writer", "ack writer"];
        let total = self.process.saturating_sub(before.process);
        // A kind's time is its live threads' at each sample; the rest of the
        // process's (threads not named, and time that left with threads that
        // ended between the samples) is "other".
        let spent = |kind: &str| match kind {
            "other threads" => {
                total.saturating_sub(named.iter().map(|k| spent_alive(self, before, k)).sum())
            }
            _ => spent_alive(self, before, kind),
        };
        let kinds = [
            "server",
            "workers",
            "main writer",
            "ack writer",
            "other threads",
        ];
        let per = |ticks: u64| ticks as f64 * TICK_US / messages.max(1) as f64;
        let busy = (self.busy - before.busy) as f64;
        let idle = (self.idle - before.idle) as f64;
        let mut line = format!(
            "patchbay {:.2} cores, {:.0} µs CPU/message (",
            total as f64 * TICK_US / 1e6 / secs,
            per(total)
        );
        for (i, kind) in kinds.iter().enumerate() {
            if i > 0 {
                line.push_str(", ");
            }
            line.push_str(&format!("{kind} {:.0}", per(spent(kind))));
        }
        line.push_str(&format!(
            "; {:.0}% in the kernel); {:.1} KB written/message; machine {:.0}% idle; \
             resident {} MB",
            100.0 * (self.kernel - before.kernel) as f64 / total.max(1) as f64,
            self.written.saturating_sub(before.written) as f64 / 1e3 / messages.max(1) as f64,
            100.0 * idle / (busy + idle).max(1.0),
            self.rss
        ));
        line
    }
}

fn rss_mb(pid: u32) -> Option<u64> {
    status_mb(pid, "VmRSS:")
}

/// A memory figure of `/proc/<pid>/status` (`VmRSS:`, `RssAnon:`, …), MB.
fn status_mb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024)
}
