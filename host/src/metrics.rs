//! Prometheus metrics at `GET /metrics`, through the `metrics` facade.
//!
//! Counters and histograms are recorded where things happen (ingress,
//! workers, transport, containment); queue gauges are read from the store
//! when scraped. Labels are bounded: channel, upstream, queue, destination,
//! outcome and reason codes — never a conversation or message id.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `patchbay_webhooks_total` | counter | `source` (channel or upstream), `outcome` (`accepted`, `rejected`, `unavailable`) |
//! | `patchbay_webhook_ack_seconds` | histogram | `source` |
//! | `patchbay_deliveries_total` | counter | `upstream`, `outcome` (`delivered`, `retry`, `refused`), `reason` |
//! | `patchbay_provider_sends_total` | counter | `channel`, `outcome` (`sent`, `retry`, `failed`), `reason` |
//! | `patchbay_provider_request_seconds` | histogram | `channel` |
//! | `patchbay_retries_total` | counter | `queue` |
//! | `patchbay_dead_letters_total` | counter | `queue` |
//! | `patchbay_plugin_panics_total` | counter | `name` (channel or upstream) |
//! | `patchbay_destination_paused` | gauge (0/1) | `destination` |
//! | `patchbay_queue_jobs` | gauge | `queue`, `state` (`pending`, `dead`) |
//! | `patchbay_queue_oldest_due_seconds` | gauge | `queue` |
//! | `patchbay_store_commit_seconds` | histogram | `file` (`acks`, `database`), `synced` |

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use patchbay_plugin_sdk::error::{AdapterError, ErrorClass};

use crate::store::{Queue, Store};

/// Latency buckets, seconds: 1 ms to 30 s.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How often histogram observations are folded into their buckets.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process's recorder (once; later calls reuse it).
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .expect("non-empty buckets")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!(
                "a metrics recorder was already installed; /metrics shows Patchbay's own"
            );
        }
        describe();
        keep_up(handle.clone());
        handle
    })
}

/// The recorder keeps every histogram observation until an upkeep folds it
/// into the buckets; left to scrapes, a process nobody scrapes would hold
/// them all (memory growing with every webhook) and the first scrape would
/// fold hours of them at once. A thread of its own does it every second
/// (a scrape folds them too).
fn keep_up(handle: PrometheusHandle) {
    let started = std::thread::Builder::new()
        .name("patchbay-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                handle.run_upkeep();
            }
        });
    if let Err(e) = started {
        tracing::warn!(error = %e, "cannot start the metrics upkeep; scrapes will do it");
    }
}

/// Records how long a SQLite file's `COMMIT` took — its fsync when `synced`,
/// and SQLite's checkpoint when one fell due: the disk's latency as the
/// store meets it. `file` is `acks` (the acknowledgement log) or `database`.
pub fn store_commit(file: &'static str, synced: bool, took: Duration) {
    metrics::histogram!("patchbay_store_commit_seconds",
        "file" => file, "synced" => if synced { "true" } else { "false" })
    .record(took.as_secs_f64());
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(
        "patchbay_store_commit_seconds",
        Unit::Seconds,
        "SQLite commits by file (acks, database) and whether synced to disk"
    );
    describe_counter!(
        "patchbay_webhooks_total",
        "Webhooks received, by source and outcome"
    );
    describe_histogram!(
        "patchbay_webhook_ack_seconds",
        Unit::Seconds,
        "From a webhook's arrival to its acknowledgement (stored and committed)"
    );
    describe_counter!(
        "patchbay_deliveries_total",
        "Deliveries to upstreams, by outcome and reason"
    );
    describe_counter!(
        "patchbay_provider_sends_total",
        "Sends to channel providers, by outcome and reason"
    );
    describe_histogram!(
        "patchbay_provider_request_seconds",
        Unit::Seconds,
        "Requests to providers (sends, lookups, tokens)"
    );
    describe_counter!(
        "patchbay_retries_total",
        "Jobs released to run again, by queue"
    );
    describe_counter!(
        "patchbay_dead_letters_total",
        "Jobs given up (dead letters), by queue"
    );
    describe_counter!(
        "patchbay_plugin_panics_total",
        "Adapter or connector panics contained"
    );
    describe_gauge!(
        "patchbay_destination_paused",
        "1 while a destination is paused (breaker open)"
    );
    describe_gauge!("patchbay_queue_jobs", "Jobs by queue and state");
    describe_gauge!(
        "patchbay_queue_oldest_due_seconds",
        Unit::Seconds,
        "How long the oldest job that is due has waited, by queue"
    );
}

/// The exposition text: the recorded metrics, with queue gauges read from
/// `store` now.
pub async fn render(store: &dyn Store, now: i64) -> String {
    let handle = install();
    if let Ok(counts) = store.open_counts().await {
        for (queue, c) in counts {
            let queue = queue.as_str();
            metrics::gauge!("patchbay_queue_jobs", "queue" => queue, "state" => "pending")
                .set(c.pending as f64);
            metrics::gauge!("patchbay_queue_jobs", "queue" => queue, "state" => "dead")
                .set(c.dead as f64);
        }
    }
    for queue in Queue::ALL {
        let age = match store.oldest_due(queue, now).await {
            Ok(Some(at)) => (now - at).max(0) as f64 / 1e3,
            _ => 0.0,
        };
        metrics::gauge!("patchbay_queue_oldest_due_seconds", "queue" => queue.as_str()).set(age);
    }
    handle.run_upkeep();
    handle.render()
}

/// A bounded reason code for a failed delivery's message: `http_503` when
/// it names an HTTP status, else `timeout`, `connect` or `error`.
pub fn reason_code(reason: &str) -> String {
    if let Some(at) = reason.find("HTTP ") {
        let digits: String = reason[at + 5..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if digits.len() == 3 {
            return format!("http_{digits}");
        }
    }
    let lower = reason.to_ascii_lowercase();
    if lower.contains("timed out") || lower.contains("timeout") {
        "timeout".into()
    } else if lower.contains("connect") {
        "connect".into()
    } else {
        "error".into()
    }
}

/// An adapter error's class, as a reason code.
pub fn error_class(error: &AdapterError) -> &'static str {
    match error.class() {
        ErrorClass::Permanent => "permanent",
        ErrorClass::Transient => "transient",
        ErrorClass::RateLimited { .. } => "rate_limited",
        ErrorClass::AuthExpired => "auth_expired",
        ErrorClass::BadInput => "bad_input",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::{install, reason_code};

    /// The names of this process's threads.
    fn threads() -> Vec<String> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .map(|name| name.trim().to_string())
            .collect()
    }

    #[test]
    fn installing_the_recorder_starts_its_upkeep() {
        install();
        // Scrapes fold observations too, so what shows is the thread (which
        // names itself once it runs).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !threads().iter().any(|name| name == "patchbay-upkeep") {
            assert!(std::time::Instant::now() < deadline, "{:?}", threads());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    #[test]
    fn reason_codes_are_few() {
        assert_eq!(reason_code("application answered HTTP 503"), "http_503");
        assert_eq!(
            reason_code("application refused the message with HTTP 400"),
            "http_400"
        );
        assert_eq!(reason_code("operation timed out"), "timeout");
        assert_eq!(reason_code("error trying to connect: refused"), "connect");
        assert_eq!(reason_code("conversation c-123 is gone"), "error");
    }
}
