//! Delivering canonical messages and receipts to the application.

use std::sync::Arc;

use patchbay_plugin_sdk::message::TraceContext;
use serde::Deserialize;

use super::{Next, retry_at};
use crate::app::AppOutcome;
use crate::runtime::Runtime;
use crate::store::Job;

/// Only the trace headers are needed from the stored message.
#[derive(Deserialize)]
struct TraceOnly {
    #[serde(default)]
    trace: TraceContext,
}

/// POSTs one message to the application; retries 5xx and timeouts with
/// backoff, dead-letters other refusals and exhausted retries.
pub async fn handle(rt: Arc<Runtime>, mut job: Job) {
    let trace = serde_json::from_slice::<TraceOnly>(&job.payload)
        .map(|t| t.trace)
        .unwrap_or_default();
    let payload = std::mem::take(&mut job.payload);
    let outcome = rt.app.deliver(&job.id, payload, &trace, job.attempts).await;
    match outcome {
        AppOutcome::Delivered => {
            if let Err(e) = rt.store.complete(&job.id, vec![]).await {
                tracing::error!(job = %job.id, error = %e, "recording delivery failed");
            }
        }
        AppOutcome::Retry {
            retry_after_ms,
            reason,
        } => {
            tracing::warn!(job = %job.id, attempt = job.attempts, %reason, "delivery to the application failed");
            match retry_at(&rt.app_retry, job.attempts, retry_after_ms) {
                Next::RetryAt(at) => rt.retry(&job, at, &reason).await,
                Next::GiveUp => {
                    rt.bury(&job, &format!("retries exhausted: {reason}"), vec![])
                        .await
                }
            }
        }
        AppOutcome::Refused { reason } => {
            tracing::warn!(job = %job.id, %reason, "application refused a message; dead-lettered");
            rt.bury(&job, &reason, vec![]).await;
        }
    }
}
