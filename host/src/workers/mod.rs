//! Background workers: one loop per queue, leasing jobs from the store and
//! running them with bounded concurrency.
//!
//! | worker | queue | does |
//! |---|---|---|
//! | [`inbound`] | `inbound` | adapter `parse_inbound` (+ provider calls) → canonical messages → `deliver` jobs |
//! | [`deliver`] | `deliver` | to the channel's upstream: the application webhook (signed) or a platform's connector; retry or dead-letter |
//! | [`outbound`] | `outbound` | fit (core) → `render_outbound` → provider; receipt → `deliver` |
//! | [`platform`] | `inbound` (platform webhooks) | connector `decode` → `outbound` jobs for customers' channels |
//! | [`retention`] | all | deletes finished jobs older than `keep_done_hours` |
//!
//! `deliver` and `outbound` workers hand finished jobs to a
//! [`completions::Completer`], which records them in groups.
//!
//! On shutdown a loop stops claiming and waits for its in-flight jobs. A job a
//! crash interrupted is leased again after restart (SQLite releases leases at open).

pub mod completions;
pub mod deliver;
pub mod inbound;
pub mod outbound;
pub mod platform;
pub mod retention;
pub mod threads;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use patchbay_core::breaker::Admit;
use patchbay_core::retry::{RetryDecision, RetryPolicy};
use patchbay_plugin_sdk::error::AdapterError;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::runtime::Runtime;
use crate::store::{Job, NewJob, Queue, Want};

/// Longest sleep between polls when nothing is due.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// Runs `handle` on jobs of `queue` bound for `destinations` until
/// `shutdown` turns true, at most `concurrency` at a time. A destination whose
/// breaker is open is not claimed from (one probe when its pause ends).
pub async fn run_queue<F, Fut>(
    rt: Arc<Runtime>,
    queue: Queue,
    destinations: Vec<String>,
    concurrency: usize,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
    handle: F,
) where
    F: Fn(Arc<Runtime>, Job) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let concurrency = concurrency.max(1);
    let mut inflight = JoinSet::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        let free = concurrency - inflight.len();
        let mut claimed = 0;
        let mut paused_until: Option<i64> = None;
        let mut open = Vec::new();
        if free > 0 {
            let now = rt.clock.now();
            rt.destinations.refresh(now).await;
            let (wants, probes) = wants(&rt, &destinations, free, now, &mut paused_until);
            open = wants.iter().map(|w| w.destination.clone()).collect();
            if !wants.is_empty() {
                match rt.store.claim(queue, wants, now, rt.lease_ms).await {
                    Ok(jobs) => {
                        claimed = jobs.len();
                        for destination in probes {
                            if !jobs.iter().any(|j| j.destination == destination) {
                                rt.destinations.probe_unused(&destination, now);
                            }
                        }
                        for job in jobs {
                            inflight.spawn(handle(rt.clone(), job));
                        }
                    }
                    Err(e) => {
                        for destination in probes {
                            rt.destinations.probe_unused(&destination, now);
                        }
                        tracing::error!(queue = queue.as_str(), error = %e, "claiming jobs failed")
                    }
                }
            }
        }
        if claimed > 0 && claimed == free {
            // Saturated: claim again once a quarter of the slots are free, so a busy
            // queue costs one claim per few jobs rather than one per finished job.
            let refill_at = concurrency - (concurrency / 4).max(1);
            while inflight.len() > refill_at {
                tokio::select! {
                    _ = inflight.join_next() => {}
                    _ = shutdown.changed() => break,
                }
            }
            continue;
        }
        if claimed > 0 {
            continue;
        }
        let sleep = idle_sleep(&rt, queue, open, paused_until).await;
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
            Some(_) = inflight.join_next(), if !inflight.is_empty() => {}
            _ = shutdown.changed() => {}
        }
    }
    while inflight.join_next().await.is_some() {}
    tracing::debug!(queue = queue.as_str(), "worker stopped");
}

/// What to claim: for each destination its breaker admits, a share of the
/// `free` slots (one for a probe); and which of them are probes. Records in
/// `paused_until` when the first paused destination may be asked again.
fn wants(
    rt: &Runtime,
    destinations: &[String],
    free: usize,
    now: i64,
    paused_until: &mut Option<i64>,
) -> (Vec<Want>, Vec<String>) {
    let mut admitted: Vec<(String, Admit)> = Vec::with_capacity(destinations.len());
    for destination in destinations {
        match rt.destinations.admit(destination, now) {
            Admit::Paused { until } => {
                if let Some(until) = until {
                    *paused_until = Some(paused_until.map_or(until, |p| p.min(until)));
                }
            }
            admit => admitted.push((destination.clone(), admit)),
        }
    }
    let probes = admitted.iter().filter(|(_, a)| *a == Admit::Probe).count();
    let open = admitted.len() - probes;
    let share = free.saturating_sub(probes).div_ceil(open.max(1)).max(1) as u32;
    let probing = admitted
        .iter()
        .filter(|(_, a)| *a == Admit::Probe)
        .map(|(d, _)| d.clone())
        .collect();
    let wants = admitted
        .into_iter()
        .map(|(destination, admit)| Want {
            destination,
            limit: if admit == Admit::Probe { 1 } else { share },
        })
        .collect();
    (wants, probing)
}

/// How long an idle loop may sleep: until the next job of an open destination
/// falls due or a paused one may be probed, at most [`IDLE_POLL`] (wake-ups
/// cover new work).
pub(crate) async fn idle_sleep(
    rt: &Runtime,
    queue: Queue,
    destinations: Vec<String>,
    paused_until: Option<i64>,
) -> Duration {
    let now = rt.clock.now();
    let due: Option<i64> = rt
        .store
        .next_due(queue, destinations, now)
        .await
        .unwrap_or_default();
    match [due, paused_until].into_iter().flatten().min() {
        Some(at) => Duration::from_millis((at - now).clamp(1, IDLE_POLL.as_millis() as i64) as u64),
        None => IDLE_POLL,
    }
}

/// Runs the loop `start` makes until it returns (it does on shutdown). If it
/// panics — a bug, since adapters' panics are contained — the panic is logged
/// and a new loop started a second later, unless `stop` has turned true.
pub async fn supervise<F, Fut>(name: &'static str, mut stop: watch::Receiver<bool>, start: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        match tokio::spawn(start()).await {
            Ok(()) => return,
            Err(e) if e.is_panic() => {
                tracing::error!(worker = name, "worker loop panicked; starting it again");
            }
            Err(_) => return,
        }
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(RESTART_AFTER) => {}
            _ = stop.changed() => return,
        }
    }
}

/// How long a panicked worker loop waits before it starts again.
const RESTART_AFTER: Duration = Duration::from_secs(1);

/// What to do with a job after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Retry at this time (ms since the epoch).
    RetryAt(i64),
    /// Give up.
    GiveUp,
}

impl Next {
    /// The outcome of a webhook whose parsing failed with `error`.
    pub fn outcome(self, error: &str) -> crate::store::Outcome {
        match self {
            Next::RetryAt(run_at) => crate::store::Outcome::Retry {
                run_at,
                error: error.to_string(),
            },
            Next::GiveUp => crate::store::Outcome::Dead(error.to_string()),
        }
    }
}

/// Applies the retry policy to an adapter error that happened at `now`.
pub fn next_after(policy: &RetryPolicy, attempts: u32, error: &AdapterError, now: i64) -> Next {
    if !error.is_retryable() {
        return Next::GiveUp;
    }
    if error.is_auth_expired() && attempts < policy.max_attempts {
        // The token was dropped from the cache; try again at once with a new one.
        return Next::RetryAt(now);
    }
    retry_at(policy, attempts, error.retry_after_ms(), now)
}

/// The retry time for an attempt that failed at `now`, or give up.
pub fn retry_at(
    policy: &RetryPolicy,
    attempts: u32,
    retry_after_ms: Option<u64>,
    now: i64,
) -> Next {
    match policy.after_failure(attempts, rand::random::<f64>(), retry_after_ms) {
        RetryDecision::RetryIn(d) => Next::RetryAt(now + d.as_millis() as i64),
        RetryDecision::GiveUp => Next::GiveUp,
    }
}

/// The key that orders jobs of one conversation.
pub fn conversation_key(channel: &str, conversation: &str) -> String {
    format!("{channel}\u{1f}{conversation}")
}

/// A `deliver` job for a message to `upstream`, due at `now`.
pub fn deliver_job(
    message: &patchbay_plugin_sdk::message::Message,
    upstream: &str,
    now: i64,
) -> Result<NewJob, serde_json::Error> {
    Ok(NewJob {
        id: message.id.clone(),
        queue: Queue::Deliver,
        channel: message.channel.clone(),
        destination: upstream.to_string(),
        conversation_key: Some(conversation_key(&message.channel, &message.conversation.id)),
        dedupe_key: None,
        payload: serde_json::to_vec(message)?,
        run_at: now,
    })
}

/// A new message id (UUIDv7: sortable by time).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use tokio::sync::watch;

    use super::supervise;

    #[tokio::test(start_paused = true)]
    async fn a_worker_loop_that_panics_is_started_again() {
        let (_stop_tx, stop) = watch::channel(false);
        let starts = Arc::new(AtomicU32::new(0));
        let counted = starts.clone();
        supervise("test", stop, move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                assert!(n >= 2, "the loop's bug, twice");
            }
        })
        .await;
        assert_eq!(starts.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn no_restart_once_stopping() {
        let (stop_tx, stop) = watch::channel(false);
        stop_tx.send(true).expect("send");
        let starts = Arc::new(AtomicU32::new(0));
        let counted = starts.clone();
        supervise("test", stop, move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { panic!("a bug") }
        })
        .await;
        assert_eq!(starts.load(Ordering::SeqCst), 1);
    }
}
