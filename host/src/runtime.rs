//! What every part of a running host shares.

use std::sync::Arc;

use patchbay_core::retry::RetryPolicy;
use tokio::sync::Notify;

use crate::channels::Channels;
use crate::clock::Clock;
use crate::destinations::Destinations;
use crate::resources::ResourceCache;
use crate::store::{Attempt, Job, NewJob, Outcome, Store, StoreError};
use crate::transport::Transport;
use crate::upstreams::Upstreams;
use crate::webchat::Outboxes;
use crate::workers::completions::Completer;

/// Wakes a queue's worker when new work is stored.
#[derive(Debug, Default, Clone)]
pub struct Wakers {
    /// The inbound (parse) worker.
    pub inbound: Arc<Notify>,
    /// The application delivery worker.
    pub deliver: Arc<Notify>,
    /// The outbound (provider) worker.
    pub outbound: Arc<Notify>,
}

/// The shared state of a running host.
pub struct Runtime {
    /// Durable queues.
    pub store: Arc<dyn Store>,
    /// Configured channels.
    pub channels: Channels,
    /// Provider requests.
    pub transport: Transport,
    /// Adapters' verification documents (signing keys).
    pub resources: ResourceCache,
    /// What sits behind Patchbay, by name.
    pub upstreams: Upstreams,
    /// Retries towards providers.
    pub outbound_retry: RetryPolicy,
    /// How long a worker holds a job.
    pub lease_ms: i64,
    /// The public base URL.
    pub public_url: String,
    /// Worker wake-ups.
    pub wake: Wakers,
    /// Breakers of each upstream and of each channel's provider.
    pub destinations: Destinations,
    /// Where finished jobs are handed in, per queue.
    pub completers: Completers,
    /// The time every worker and handler reads.
    pub clock: Clock,
    /// Web chat conversations' outboxes (also in `transport`).
    pub outboxes: Outboxes,
    /// Whether the admin console is served (the trial page links to it).
    pub admin_console: bool,
    /// Open web chat sockets: once upgraded a socket leaves the server's
    /// connection cap, so sockets have a cap of their own (the same size).
    pub sockets: Arc<tokio::sync::Semaphore>,
}

/// The [`Completer`] of each queue whose workers run jobs concurrently.
#[derive(Debug)]
pub struct Completers {
    /// For `deliver` jobs.
    pub deliver: Completer,
    /// For `outbound` jobs.
    pub outbound: Completer,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("channels", &self.channels.keys().collect::<Vec<_>>())
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Whether the configured `channel`'s upstream is the console: its
    /// agent answers in the admin console.
    pub fn answered_in_console(&self, channel: &str) -> bool {
        self.channels
            .get(channel)
            .and_then(|c| self.upstreams.get(&c.upstream))
            .is_some_and(|u| matches!(u.speaks, crate::upstreams::Speaks::Console))
    }

    /// The upstream a channel's messages and receipts go to; for a channel no
    /// longer configured, the only upstream if there is one.
    pub fn upstream_of(&self, channel: &str) -> Option<&str> {
        match self.channels.get(channel) {
            Some(c) => Some(c.upstream.as_str()),
            None if self.upstreams.len() == 1 => self.upstreams.keys().next().map(String::as_str),
            None => None,
        }
    }

    /// Schedules a job to run again; a failing store is retried a while (the
    /// lease expiring brings the job back anyway).
    pub async fn retry(&self, job: &Job, run_at: i64, error: &str, attempt: Attempt) {
        metrics::counter!("patchbay_retries_total", "queue" => job.queue.as_str()).increment(1);
        let scheduled = persist("scheduling a retry", || {
            self.store.retry(&job.id, run_at, error, attempt)
        })
        .await;
        if let Err(e) = scheduled {
            tracing::error!(job = %job.id, error = %e, "scheduling a retry failed");
        }
    }

    /// Carries out what parsing a claimed `inbound` job came to: its
    /// follow-ups to record, or its retry or dead letter (done here).
    pub async fn settle(&self, job: &Job, outcome: Outcome) -> Option<Vec<NewJob>> {
        match outcome {
            Outcome::Done(follow_ups) => Some(follow_ups),
            Outcome::Retry { run_at, error } => {
                self.retry(job, run_at, &error, Attempt::Counted).await;
                None
            }
            Outcome::Dead(error) => {
                self.bury(job, &error, vec![]).await;
                None
            }
        }
    }

    /// Dead-letters a job with follow-ups such as a `Failed` receipt.
    pub async fn bury(&self, job: &Job, error: &str, follow_ups: Vec<NewJob>) {
        tracing::warn!(job = %job.id, queue = job.queue.as_str(), channel = %job.channel, %error, "dead-lettered");
        metrics::counter!("patchbay_dead_letters_total", "queue" => job.queue.as_str())
            .increment(1);
        let notify = !follow_ups.is_empty();
        let buried = persist("dead-lettering", || {
            self.store.bury(&job.id, error, follow_ups.clone())
        })
        .await;
        match buried {
            Ok(()) if notify => self.wake.deliver.notify_one(),
            Ok(()) => {}
            Err(e) => tracing::error!(job = %job.id, error = %e, "dead-lettering failed"),
        }
    }
}

/// Runs a store write until it succeeds, backing off from 50 ms to 2 s, for up
/// to [`PERSIST_FOR`]. A worker's write that fails (a full disk, an I/O error)
/// is retried in place: the job stays leased meanwhile, so nothing newer of
/// its conversation overtakes it, and once the store recovers the job goes on
/// at once instead of waiting out its lease.
pub async fn persist<T, F, Fut>(what: &str, mut write: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let started = std::time::Instant::now();
    let mut delay = std::time::Duration::from_millis(50);
    loop {
        match write().await {
            Ok(v) => return Ok(v),
            Err(StoreError::Closed) => return Err(StoreError::Closed),
            Err(e) if started.elapsed() >= PERSIST_FOR => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "{what} failed; trying again");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(2));
            }
        }
    }
}

/// How long [`persist`] keeps trying.
pub const PERSIST_FOR: std::time::Duration = std::time::Duration::from_secs(30);
