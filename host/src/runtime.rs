//! What every part of a running host shares.

use std::sync::Arc;

use patchbay_core::retry::RetryPolicy;
use patchbay_plugin_sdk::adapter::Secret;
use tokio::sync::Notify;

use crate::app::AppClient;
use crate::channels::Channels;
use crate::resources::ResourceCache;
use crate::store::{Job, NewJob, Store};
use crate::transport::Transport;

/// Wakes a queue's worker when new work is stored.
#[derive(Debug, Default)]
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
    /// Application webhook.
    pub app: AppClient,
    /// Retries towards the application.
    pub app_retry: RetryPolicy,
    /// Retries towards providers.
    pub outbound_retry: RetryPolicy,
    /// How long a worker holds a job.
    pub lease_ms: i64,
    /// The public base URL.
    pub public_url: String,
    /// Keys accepted on the application API.
    pub api_keys: Vec<Secret>,
    /// Worker wake-ups.
    pub wake: Wakers,
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
    /// Schedules a job to run again; store failures are logged (the lease
    /// expiring brings the job back anyway).
    pub async fn retry(&self, job: &Job, run_at: i64, error: &str) {
        if let Err(e) = self.store.retry(&job.id, run_at, error).await {
            tracing::error!(job = %job.id, error = %e, "scheduling a retry failed");
        }
    }

    /// Dead-letters a job with follow-ups such as a `Failed` receipt.
    pub async fn bury(&self, job: &Job, error: &str, follow_ups: Vec<NewJob>) {
        tracing::warn!(job = %job.id, queue = job.queue.as_str(), channel = %job.channel, %error, "dead-lettered");
        let notify = !follow_ups.is_empty();
        match self.store.bury(&job.id, error, follow_ups).await {
            Ok(()) if notify => self.wake.deliver.notify_one(),
            Ok(()) => {}
            Err(e) => tracing::error!(job = %job.id, error = %e, "dead-lettering failed"),
        }
    }
}
