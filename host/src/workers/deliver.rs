//! Delivering canonical messages and receipts to the application.

use std::sync::Arc;

use patchbay_plugin_sdk::message::TraceContext;
use serde::Deserialize;

use patchbay_core::breaker::Verdict;

use super::{Next, retry_at};
use crate::app::AppOutcome;
use crate::runtime::Runtime;
use crate::store::{Attempt, Job};

/// Only the trace headers are needed from the stored message.
#[derive(Deserialize)]
struct TraceOnly {
    #[serde(default)]
    trace: TraceContext,
}

/// POSTs one message to the application; retries 5xx and timeouts, dead-letters
/// other refusals and exhausted retries. Failures feed the application's
/// breaker: while it is open they are the application's, not the message's.
pub async fn handle(rt: Arc<Runtime>, mut job: Job) {
    let trace = serde_json::from_slice::<TraceOnly>(&job.payload)
        .map(|t| t.trace)
        .unwrap_or_default();
    let payload = std::mem::take(&mut job.payload);
    let outcome = rt.app.deliver(&job.id, payload, &trace, job.attempts).await;
    match outcome {
        AppOutcome::Delivered => {
            rt.destinations.succeeded(&job.destination);
            rt.completers.deliver.complete(job.id, vec![]);
        }
        AppOutcome::Retry {
            retry_after_ms,
            reason,
        } => {
            tracing::warn!(job = %job.id, attempt = job.attempts, %reason, "delivery to the application failed");
            let verdict =
                rt.destinations
                    .failed(&job.destination, &job.id, retry_after_ms, rt.clock.now());
            match verdict {
                Verdict::Refunded { ready_at } => {
                    rt.retry(&job, ready_at, &reason, Attempt::Refunded).await
                }
                Verdict::Counted => {
                    match retry_at(&rt.app_retry, job.attempts, retry_after_ms, rt.clock.now()) {
                        Next::RetryAt(at) => rt.retry(&job, at, &reason, Attempt::Counted).await,
                        Next::GiveUp => {
                            rt.bury(&job, &format!("retries exhausted: {reason}"), vec![])
                                .await
                        }
                    }
                }
            }
        }
        AppOutcome::Refused { reason } => {
            // It answered: the application is up, whatever it thinks of this one.
            rt.destinations.succeeded(&job.destination);
            tracing::warn!(job = %job.id, %reason, "application refused a message; dead-lettered");
            rt.bury(&job, &reason, vec![]).await;
        }
    }
}
