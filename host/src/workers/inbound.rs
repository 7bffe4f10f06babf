//! Parsing stored webhooks into canonical messages.

use std::sync::Arc;

use tracing::Instrument as _;

use patchbay_core::menu::Menu;
use patchbay_plugin_sdk::adapter::{InboundRequest, StepOutput, Timestamp};
use patchbay_plugin_sdk::message::{Content, Message};

use super::{Next, conversation_key, deliver_job, guarded, new_id, next_after};
use crate::app::new_traceparent;
use crate::runtime::Runtime;
use crate::store::sqlite::now_ms;
use crate::store::{Job, NewJob};

/// Parses a batch of stored webhooks in arrival order and records all their
/// messages in one store operation (each webhook marked done together with its
/// messages), so a burst costs one commit rather than one per webhook.
pub async fn handle_batch(rt: Arc<Runtime>, jobs: Vec<Job>) {
    let mut done = Vec::with_capacity(jobs.len());
    for job in jobs {
        let span = tracing::info_span!("inbound", job = %job.id, channel = %job.channel);
        if let Some(follow_ups) = parse(&rt, &job).instrument(span).await {
            done.push((job.id, follow_ups));
        }
    }
    if done.is_empty() {
        return;
    }
    let count = done.len();
    match rt.store.complete_many(done).await {
        Ok(()) => {
            rt.wake.deliver.notify_one();
            tracing::debug!(webhooks = count, "webhooks parsed");
        }
        Err(e) => {
            tracing::error!(error = %e, "recording parsed messages failed; will retry after the lease")
        }
    }
}

/// Parses one webhook into `deliver` jobs; on failure schedules a retry or
/// dead-letters it and returns `None`.
async fn parse(rt: &Runtime, job: &Job) -> Option<Vec<NewJob>> {
    let Some(channel) = rt.channels.get(&job.channel).cloned() else {
        rt.bury(job, "channel is no longer configured", vec![])
            .await;
        return None;
    };
    let request: InboundRequest = match serde_json::from_slice(&job.payload) {
        Ok(r) => r,
        Err(e) => {
            rt.bury(job, &format!("stored request is unreadable: {e}"), vec![])
                .await;
            return None;
        }
    };
    let adapter = channel.adapter.clone();
    let step = guarded("parse_inbound", || {
        adapter.parse_inbound(&request, Timestamp(now_ms()))
    });
    let outcome = rt
        .transport
        .drive(&channel.id, adapter.as_ref(), step)
        .await;
    let messages = match outcome {
        Ok(StepOutput::Messages { messages }) => messages,
        Ok(other) => {
            rt.bury(
                job,
                &format!("adapter returned {other:?} from parse_inbound"),
                vec![],
            )
            .await;
            return None;
        }
        Err(error) => {
            tracing::warn!(error = %error, attempt = job.attempts, "parsing webhook failed");
            match next_after(&rt.outbound_retry, job.attempts, &error) {
                Next::RetryAt(at) => rt.retry(job, at, error.message()).await,
                Next::GiveUp => rt.bury(job, error.message(), vec![]).await,
            }
            return None;
        }
    };
    let mut follow_ups = Vec::with_capacity(messages.len());
    for mut message in messages {
        message.id = new_id();
        message.channel = channel.id.clone();
        if message.trace.traceparent.is_none() && message.trace.b3.is_none() {
            message.trace.traceparent = Some(new_traceparent());
        }
        map_menu_reply(rt, &mut message).await;
        match deliver_job(&message) {
            Ok(j) => follow_ups.push(j),
            Err(e) => tracing::error!(error = %e, "cannot encode message"),
        }
    }
    Some(follow_ups)
}

/// A customer's "2" after a menu that was degraded to numbers becomes the
/// postback of item 2, as if they had pressed the button.
async fn map_menu_reply(rt: &Runtime, message: &mut Message) {
    let Content::Text { text, .. } = &message.content else {
        return;
    };
    let key = conversation_key(&message.channel, &message.conversation.id);
    let menu = match rt.store.menu(&key).await {
        Ok(Some(menu)) => menu,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "reading menu failed; passing the reply as text");
            return;
        }
    };
    let Ok(menu) = serde_json::from_str::<Menu>(&menu) else {
        return;
    };
    if let Some(option) = menu.resolve(text) {
        message.content = Content::Postback {
            payload: option.payload.clone(),
            text: Some(text.clone()),
        };
    }
}
