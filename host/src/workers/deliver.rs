//! Delivering canonical messages and receipts to the channel's upstream: the
//! application's webhook, or a platform through its connector.

use std::sync::Arc;

use patchbay_core::breaker::Verdict;
use patchbay_plugin_sdk::adapter::StepOutput;
use patchbay_plugin_sdk::capabilities::SystemMessageKey;
use patchbay_plugin_sdk::message::{
    AdjustmentAction, Content, Message, ReceiptStatus, TraceContext,
};
use patchbay_plugin_sdk::upstream::{Delivery, UpstreamConnector, customer_key};
use serde::Deserialize;
use tracing::Instrument as _;

use super::{Next, retry_at};
use crate::plugins::contained::Contained;
use crate::runtime::Runtime;
use crate::store::{Attempt, Job, Link};
use crate::transport::Transport;
use crate::upstreams::webhook::AppOutcome;
use crate::upstreams::{LinkScope, Speaks, Upstream, link_scope};

/// Only the trace headers are needed from the stored message.
#[derive(Deserialize)]
struct TraceOnly {
    #[serde(default)]
    trace: TraceContext,
}

/// Delivers one job to its upstream; retries 5xx and timeouts, dead-letters
/// refusals and exhausted retries. Failures feed the upstream's breaker:
/// while it is open they are the upstream's, not the message's.
pub async fn handle(rt: Arc<Runtime>, job: Job) {
    let trace = serde_json::from_slice::<TraceOnly>(&job.payload)
        .map(|t| t.trace)
        .unwrap_or_default();
    let span = tracing::info_span!(
        "deliver",
        job = %job.id,
        upstream = %job.destination,
        trace_id = crate::telemetry::trace_id(&trace)
    );
    deliver(rt, job, trace).instrument(span).await
}

async fn deliver(rt: Arc<Runtime>, job: Job, trace: TraceContext) {
    let Some(upstream) = rt.upstreams.get(&job.destination).cloned() else {
        rt.bury(&job, "upstream is no longer configured", vec![])
            .await;
        return;
    };
    let outcome = match &upstream.speaks {
        Speaks::Webhook { client, .. } => {
            let mut job = job;
            let payload = std::mem::take(&mut job.payload);
            let outcome = client.deliver(&job.id, payload, &trace, job.attempts).await;
            (job, outcome)
        }
        Speaks::Connector {
            connector,
            transport,
        } => {
            let outcome = to_platform(&rt, &upstream, connector, transport, &job).await;
            (job, outcome)
        }
        // The stored job is what the console shows: delivered as it is.
        Speaks::Console => (job, AppOutcome::Delivered),
    };
    settle(&rt, &upstream, outcome).await;
}

/// Records what became of a delivery.
async fn settle(rt: &Runtime, upstream: &Upstream, (job, outcome): (Job, AppOutcome)) {
    let (label, reason) = match &outcome {
        AppOutcome::Delivered => ("delivered", "ok".to_string()),
        AppOutcome::Retry { reason, .. } => ("retry", crate::metrics::reason_code(reason)),
        AppOutcome::Refused { reason } => ("refused", crate::metrics::reason_code(reason)),
    };
    metrics::counter!("patchbay_deliveries_total",
        "upstream" => upstream.name.clone(), "outcome" => label, "reason" => reason)
    .increment(1);
    match outcome {
        AppOutcome::Delivered => {
            tracing::info!(attempt = job.attempts, "delivered to the upstream");
            rt.destinations.succeeded(&job.destination);
            rt.completers.deliver.complete(job.id, vec![]);
        }
        AppOutcome::Retry {
            retry_after_ms,
            reason,
        } => {
            tracing::warn!(job = %job.id, upstream = %upstream.name, attempt = job.attempts, %reason, "delivery to the upstream failed");
            let verdict =
                rt.destinations
                    .failed(&job.destination, &job.id, retry_after_ms, rt.clock.now());
            match verdict {
                Verdict::Refunded { ready_at } => {
                    rt.retry(&job, ready_at, &reason, Attempt::Refunded).await
                }
                Verdict::Counted => {
                    match retry_at(
                        &upstream.retry,
                        job.attempts,
                        retry_after_ms,
                        rt.clock.now(),
                    ) {
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
            // It answered: the upstream is up, whatever it thinks of this one.
            rt.destinations.succeeded(&job.destination);
            tracing::warn!(job = %job.id, upstream = %upstream.name, %reason, "upstream refused a message; dead-lettered");
            rt.bury(&job, &reason, vec![]).await;
        }
    }
}

/// For a `Failed` receipt to a platform that takes no receipts: what to
/// tell the conversation instead, in the channel's own words and language —
/// the refusal's system message when fitting refused the message (a blocked
/// file type, say), else the channel's `channel_msg_failed` text.
fn failure_notice(
    rt: &Runtime,
    connector: &Contained<dyn UpstreamConnector>,
    message: &Message,
) -> Option<String> {
    let Content::Receipt(receipt) = &message.content else {
        return None;
    };
    if receipt.status != ReceiptStatus::Failed || connector.manifest().receipts {
        return None;
    }
    if let Some(refused) = receipt
        .adjustments
        .iter()
        .find(|a| a.action == AdjustmentAction::Refused)
    {
        return Some(refused.detail.clone());
    }
    let channel = rt.channels.get(&message.channel)?;
    Some(
        channel
            .system_messages
            .render(&channel.language, SystemMessageKey::ChannelMsgFailed, ""),
    )
}

/// Runs the connector's delivery of one message or receipt. The platform's
/// id for a customer's message is linked to Patchbay's; a receipt or a
/// button response is sent with the platform's id of the message it is
/// about.
async fn to_platform(
    rt: &Runtime,
    upstream: &Upstream,
    connector: &Contained<dyn UpstreamConnector>,
    transport: &Transport,
    job: &Job,
) -> AppOutcome {
    let message: Message = match serde_json::from_slice(&job.payload) {
        Ok(m) => m,
        Err(e) => {
            return AppOutcome::Refused {
                reason: format!("stored message is unreadable: {e}"),
            };
        }
    };
    let customer = customer_key(
        &message.channel,
        &message.conversation.id,
        message.conversation.thread_id.as_deref(),
    );
    let referring_to = match &message.content {
        Content::Receipt(receipt) => Some((LinkScope::Message, receipt.message_id.clone())),
        Content::Postback { .. } => Some((LinkScope::Structured, customer.clone())),
        _ => None,
    };
    let platform_id = match referring_to {
        Some((scope, key)) => match rt
            .store
            .linked(&link_scope(&upstream.name, scope), &key)
            .await
        {
            Ok(id) => id,
            Err(e) => {
                return AppOutcome::Retry {
                    retry_after_ms: None,
                    reason: format!("reading the upstream's ids failed: {e}"),
                };
            }
        },
        None => None,
    };
    if matches!(message.content, Content::Receipt(_)) && platform_id.is_none() {
        // A receipt for a message this platform did not send: nothing to tell it.
        return AppOutcome::Delivered;
    }
    let notice = failure_notice(rt, connector, &message);
    let delivery = Delivery::new(customer, message)
        .referring_to(platform_id)
        .with_notice(notice);
    let step = connector.deliver(&delivery, rt.clock.timestamp());
    let operations: &dyn UpstreamConnector = connector;
    let outcome = transport.drive(&upstream.name, operations, step).await;
    match outcome {
        Ok(StepOutput::Delivered {
            provider_message_id,
        }) => {
            if let Some(platform_id) = provider_message_id {
                let link = Link {
                    scope: link_scope(&upstream.name, LinkScope::Message),
                    key: delivery.message.id.clone(),
                    value: platform_id,
                };
                if let Err(e) = rt.store.link(vec![link], rt.clock.now()).await {
                    // Only a lookup aid: the platform has the message.
                    tracing::warn!(job = %job.id, error = %e, "recording the platform's id failed");
                }
            }
            AppOutcome::Delivered
        }
        Ok(other) => AppOutcome::Refused {
            reason: format!("connector returned {other:?} from deliver"),
        },
        // `settle` applies the upstream's retry schedule and breaker.
        Err(error) if error.is_retryable() => AppOutcome::Retry {
            retry_after_ms: error.retry_after_ms(),
            reason: error.message().to_string(),
        },
        Err(error) => AppOutcome::Refused {
            reason: error.message().to_string(),
        },
    }
}
