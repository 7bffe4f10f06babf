//! Sending application messages to providers.
//!
//! The job payload is an [`OutboundJob`]: the message plus progress, so a message
//! split into parts resumes after the last part the provider accepted.

use std::sync::Arc;

use tracing::Instrument as _;

use patchbay_core::fit::{Target, fit};
use patchbay_plugin_sdk::adapter::StepOutput;
use patchbay_plugin_sdk::message::{
    Adjustment, Content, DeliveryReceipt, Message, Reason, ReasonCode, ReceiptStatus,
};
use serde::{Deserialize, Serialize};

use patchbay_core::breaker::Verdict;

use super::{Next, conversation_key, deliver_job, new_id, next_after};
use crate::runtime::Runtime;
use crate::store::{Attempt, Job, NewJob, Queue};

/// A queued outbound message and how far its sending got.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboundJob {
    /// The message as the application sent it.
    pub message: Message,
    /// Parts the provider has accepted.
    #[serde(default)]
    pub parts_done: usize,
    /// The provider's ids of those parts.
    #[serde(default)]
    pub provider_ids: Vec<String>,
}

impl OutboundJob {
    /// The `outbound` job sending `message` (its id and channel set), due at
    /// `now`, behind what its conversation has waiting.
    pub fn queue(message: Message, now: i64) -> Result<NewJob, serde_json::Error> {
        let (id, channel) = (message.id.clone(), message.channel.clone());
        let conversation = conversation_key(&channel, &message.conversation.id);
        let payload = serde_json::to_vec(&OutboundJob {
            message,
            parts_done: 0,
            provider_ids: vec![],
        })?;
        Ok(NewJob {
            id,
            queue: Queue::Outbound,
            destination: channel.clone(),
            channel,
            conversation_key: Some(conversation),
            dedupe_key: None,
            payload,
            run_at: now,
        })
    }
}

/// Fits, renders and sends one message, then queues its receipt.
pub async fn handle(rt: Arc<Runtime>, job: Job) {
    let span = tracing::info_span!(
        "outbound",
        job = %job.id,
        channel = %job.channel,
        trace_id = tracing::field::Empty
    );
    run(rt, job).instrument(span).await
}

async fn run(rt: Arc<Runtime>, job: Job) {
    let mut state: OutboundJob = match serde_json::from_slice(&job.payload) {
        Ok(s) => s,
        Err(e) => {
            rt.bury(&job, &format!("stored message is unreadable: {e}"), vec![])
                .await;
            return;
        }
    };
    let message = state.message.clone();
    tracing::Span::current().record("trace_id", crate::telemetry::trace_id(&message.trace));
    let Some(channel) = rt.channels.get(&job.channel).cloned() else {
        let receipt = receipt(
            &message,
            failed(
                ReasonCode::INVALID_DESTINATION,
                "channel is no longer configured",
            ),
            None,
            vec![],
            &rt,
        );
        rt.bury(&job, "channel is no longer configured", receipt)
            .await;
        return;
    };
    let target = Target {
        capabilities: &channel.capabilities.outbound,
        system_messages: &channel.system_messages,
        language: &channel.language,
    };
    let fitted = fit(&message.content, target);
    if let Some(refusal) = &fitted.refusal {
        let follow = receipt(
            &message,
            failed(refusal.reason, &refusal.message),
            None,
            fitted.adjustments.clone(),
            &rt,
        );
        finish(&rt, &job, follow).await;
        return;
    }
    if fitted.parts.is_empty() {
        let detail = fitted
            .adjustments
            .first()
            .map_or("nothing to send".to_string(), |a| a.detail.clone());
        let follow = receipt(
            &message,
            failed(ReasonCode::UNSUPPORTED, &detail),
            None,
            fitted.adjustments.clone(),
            &rt,
        );
        finish(&rt, &job, follow).await;
        return;
    }
    if state.parts_done == 0 && !matches!(message.content, Content::Typing { .. }) {
        remember_menu(&rt, &message, fitted.menu.as_ref()).await;
    }

    let adapter = channel.adapter.clone();
    for (index, part) in fitted.parts.iter().enumerate().skip(state.parts_done) {
        let mut part_message = message.clone();
        part_message.content = part.clone();
        if fitted.parts.len() > 1 {
            part_message.id = format!("{}.{}", message.id, index + 1);
        }
        let step = adapter.render_outbound(&part_message, rt.clock.timestamp());
        match rt
            .transport
            .drive(&channel.id, adapter.as_ref(), step)
            .await
        {
            Ok(StepOutput::Delivered {
                provider_message_id,
            }) => {
                state.parts_done = index + 1;
                state.provider_ids.extend(provider_message_id);
                if state.parts_done < fitted.parts.len()
                    && let Ok(payload) = serde_json::to_vec(&state)
                    && let Err(e) = rt.store.save_progress(&job.id, payload).await
                {
                    tracing::warn!(error = %e, "saving progress failed; parts may repeat on retry");
                }
            }
            Ok(other) => {
                let why = format!("adapter returned {other:?} from render_outbound");
                let follow = receipt(
                    &message,
                    failed(ReasonCode::GENERAL, &why),
                    None,
                    fitted.adjustments.clone(),
                    &rt,
                );
                rt.bury(&job, &why, follow).await;
                return;
            }
            Err(error) => {
                tracing::warn!(error = %error, attempt = job.attempts, "sending to the provider failed");
                let outcome = if error.is_retryable() {
                    "retry"
                } else {
                    "failed"
                };
                metrics::counter!("patchbay_provider_sends_total",
                    "channel" => job.channel.clone(), "outcome" => outcome,
                    "reason" => crate::metrics::error_class(&error))
                .increment(1);
                if !error.is_retryable() || error.is_auth_expired() {
                    // The provider answered (or only our token is stale).
                    rt.destinations.succeeded(&job.destination);
                } else if let Verdict::Refunded { ready_at } = rt.destinations.failed(
                    &job.destination,
                    &job.id,
                    error.retry_after_ms(),
                    rt.clock.now(),
                ) {
                    rt.retry(&job, ready_at, error.message(), Attempt::Refunded)
                        .await;
                    return;
                }
                match next_after(&rt.outbound_retry, job.attempts, &error, rt.clock.now()) {
                    Next::RetryAt(at) => {
                        rt.retry(&job, at, error.message(), Attempt::Counted).await
                    }
                    Next::GiveUp => {
                        let follow = receipt(
                            &message,
                            failed(error.reason(), error.message()),
                            state.provider_ids.first().cloned(),
                            fitted.adjustments.clone(),
                            &rt,
                        );
                        rt.bury(&job, error.message(), follow).await;
                    }
                }
                return;
            }
        }
    }
    let delivered = DeliveryReceipt {
        message_id: message.id.clone(),
        provider_message_id: state.provider_ids.first().cloned(),
        status: ReceiptStatus::Delivered,
        reasons: vec![],
        adjustments: fitted.adjustments,
    };
    let follow = receipt_job(&rt, &message, delivered);
    tracing::info!(attempt = job.attempts, "sent to the provider");
    metrics::counter!("patchbay_provider_sends_total",
        "channel" => job.channel.clone(), "outcome" => "sent", "reason" => "ok")
    .increment(1);
    rt.destinations.succeeded(&job.destination);
    finish(&rt, &job, follow).await;
}

async fn finish(rt: &Runtime, job: &Job, follow_ups: Vec<NewJob>) {
    rt.completers.outbound.complete(job.id.clone(), follow_ups);
}

async fn remember_menu(rt: &Runtime, message: &Message, menu: Option<&patchbay_core::menu::Menu>) {
    let key = conversation_key(&message.channel, &message.conversation.id);
    let json = menu.and_then(|m| serde_json::to_string(m).ok());
    if let Err(e) = rt
        .store
        .set_menu(&key, json.as_deref(), rt.clock.now())
        .await
    {
        tracing::warn!(error = %e, "recording the degraded menu failed");
    }
}

fn failed(code: ReasonCode, message: &str) -> (ReceiptStatus, Vec<Reason>) {
    (
        ReceiptStatus::Failed,
        vec![Reason {
            code,
            message: Some(message.to_string()),
        }],
    )
}

fn receipt(
    message: &Message,
    (status, reasons): (ReceiptStatus, Vec<Reason>),
    provider_message_id: Option<String>,
    adjustments: Vec<Adjustment>,
    rt: &Runtime,
) -> Vec<NewJob> {
    receipt_job(
        rt,
        message,
        DeliveryReceipt {
            message_id: message.id.clone(),
            provider_message_id,
            status,
            reasons,
            adjustments,
        },
    )
}

/// A `deliver` job taking a receipt to the channel's upstream.
fn receipt_job(rt: &Runtime, message: &Message, receipt: DeliveryReceipt) -> Vec<NewJob> {
    let Some(upstream) = rt.upstream_of(&message.channel) else {
        tracing::warn!(channel = %message.channel, "no upstream for this channel's receipt; dropped");
        return vec![];
    };
    let mut m = Message::new(message.conversation.id.clone(), Content::Receipt(receipt));
    m.id = new_id();
    m.channel = message.channel.clone();
    m.conversation = message.conversation.clone();
    m.trace = message.trace.clone();
    match deliver_job(&m, upstream, rt.clock.now()) {
        Ok(job) => vec![job],
        Err(e) => {
            tracing::error!(error = %e, "cannot encode receipt");
            vec![]
        }
    }
}
