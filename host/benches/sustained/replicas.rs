//! The replicas scenario (`PATCHBAY_BENCH_SCENARIO=replicas`): one replica
//! on SQLite, then one, two and three replicas on one PostgreSQL, each
//! under the same closed-loop load of signed webhooks with random event ids
//! (connections spread over the replicas, as a load balancer spreads them),
//! on databases pre-filled with the same retention window. For each: accepted
//! webhooks/s, acknowledgement latency, and how long after the load stopped
//! the application had every message. PostgreSQL runs durably (`fsync=on`,
//! `synchronous_commit=on`), on this machine, beside everything else.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "../../../tests/support/postgres.rs"]
mod test_postgres;

use super::support::Server;
use super::{App, Bodies, LoadResult, closed_multi, line, wait_delivered};

/// Runs the scenario; `bare` is the bare handler's rate in this run.
pub async fn run(
    client: &reqwest::Client,
    app: &App,
    hook: &str,
    secs: u64,
    prefill: usize,
    connections: usize,
    bare: f64,
) {
    let load = Duration::from_secs(secs);
    let report = |name: &str, r: &LoadResult, drained: Option<f64>| {
        line(
            name,
            r,
            &format!(
                "{:.2} × bare; every message at the application {}",
                r.per_sec / bare,
                drained.map_or("NOT within 10 min".to_string(), |s| format!(
                    "{s:.1} s after the load stopped"
                ))
            ),
        )
    };

    // One replica on SQLite, on the queue scenario's pre-filled file.
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("bench.db");
    super::prefill_database(&db, dir.path(), hook, prefill);
    let host = super::start_patchbay(dir.path(), &db, hook);
    let (result, drained) = measure(
        client,
        app,
        std::slice::from_ref(&host.1),
        connections,
        load,
        "sqlite",
    )
    .await;
    report("1 replica, SQLite", &result, drained);
    stop(host);

    // PostgreSQL: one database, pre-filled once, then 1, 2, 3 replicas.
    let database = test_postgres::TestPostgres::start_durable().await;
    let started = Instant::now();
    drop(start_replica(dir.path(), database.url(), hook, 0));
    prefill_postgres(database.url(), prefill).await;
    println!(
        "(PostgreSQL pre-filled in {:.0} s)",
        started.elapsed().as_secs_f64()
    );
    for replicas in 1..=3 {
        let hosts: Vec<Server> = (0..replicas)
            .map(|i| start_replica(dir.path(), database.url(), hook, i))
            .collect();
        let urls: Vec<String> = hosts.iter().map(|h| h.1.clone()).collect();
        let tag = format!("pg{replicas}");
        let (result, drained) = measure(client, app, &urls, connections, load, &tag).await;
        let plural = if replicas > 1 { "s" } else { "" };
        report(
            &format!("{replicas} replica{plural}, PostgreSQL"),
            &result,
            drained,
        );
        hosts.into_iter().for_each(stop);
    }
}

/// SIGTERM and wait: a replica finishes and records what it holds, so the
/// next round does not wait for its leases.
fn stop(server: Server) {
    let _ = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status();
    let mut server = server;
    let _ = server.0.wait();
}

/// Closed-loop load over `urls` for `load`; then how long until the
/// application had every accepted message (`None`: not within 10 minutes).
async fn measure(
    client: &reqwest::Client,
    app: &App,
    urls: &[String],
    connections: usize,
    load: Duration,
    tag: &str,
) -> (LoadResult, Option<f64>) {
    let urls: Vec<String> = urls.iter().map(|u| format!("{u}/webhooks/bench")).collect();
    let (before, _, _) = app.stats().await;
    let result = closed_multi(client, &urls, connections, load, &Bodies::webhooks(tag)).await;
    let stopped = Instant::now();
    let drained = wait_delivered(app, before + result.ok as u64)
        .await
        .then(|| stopped.elapsed().as_secs_f64());
    (result, drained)
}

fn start_replica(dir: &Path, url: &str, hook: &str, i: usize) -> Server {
    let store = format!("url = \"{url}\"");
    super::serve(&super::config(
        dir,
        &format!("replica-{i}.toml"),
        &store,
        hook,
    ))
}

/// The same retention window as the SQLite pre-fill: `n` finished webhooks
/// with their event ids, and `n` finished deliveries, spread over 72 hours.
async fn prefill_postgres(url: &str, n: usize) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let window = 72 * 3600 * 1000_i64;
    let n = n as i64;
    let random_bigint = "('x' || md5(random()::text))::bit(64)::bigint";
    client
        .execute(
            "INSERT INTO jobs (id, queue, channel, destination, dedupe_key, state, attempts,
                               run_at, created_at, updated_at, payload)
             SELECT format('%s-prefill-in-%s', t, i), 'inbound', 'bench', 'bench',
                    'pre-' || md5(random()::text), 'done', 1, t, t, t,
                    convert_to(repeat(md5(random()::text), 22), 'UTF8')
             FROM (SELECT i, $1::bigint - $2::bigint + i * ($2::bigint / $3::bigint) AS t
                   FROM generate_series(0, $3::bigint - 1) i) s",
            &[&now, &window, &n],
        )
        .await
        .expect("prefill inbound");
    client
        .execute(
            "INSERT INTO jobs (id, queue, channel, destination, conversation_key, state, attempts,
                               run_at, created_at, updated_at, payload)
             SELECT format('%s-prefill-out-%s', t, i), 'deliver', 'bench', 'application',
                    'bench' || chr(31) || 'c-' || (i % 500), 'done', 1, t, t, t,
                    convert_to(repeat(md5(random()::text), 12), 'UTF8')
             FROM (SELECT i, $1::bigint - $2::bigint + i * ($2::bigint / $3::bigint) AS t
                   FROM generate_series(0, $3::bigint - 1) i) s",
            &[&now, &window, &n],
        )
        .await
        .expect("prefill deliver");
    client
        .execute(
            &format!(
                "INSERT INTO dedupe (slot, check_hash, seen_at)
                 SELECT {random_bigint}, {random_bigint}, created_at FROM jobs WHERE queue = 'inbound'
                 ON CONFLICT DO NOTHING"
            ),
            &[],
        )
        .await
        .expect("prefill dedupe");
    client
        .batch_execute("VACUUM ANALYZE")
        .await
        .expect("vacuum");
}
