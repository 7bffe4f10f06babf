//! Parsing stored webhooks into canonical messages.

use std::sync::Arc;

use tracing::Instrument as _;

use patchbay_core::menu::Menu;
use patchbay_plugin_sdk::adapter::{InboundRequest, StepOutput, Timestamp};
use patchbay_plugin_sdk::message::{Content, Message};

use super::{Next, conversation_key, deliver_job, guarded, new_id, next_after};
use crate::app::new_traceparent;
use crate::runtime::Runtime;
use crate::store::Job;
use crate::store::sqlite::now_ms;

/// Parses one stored webhook and queues its messages for the application, in
/// one transaction with marking the webhook done.
pub async fn handle(rt: Arc<Runtime>, job: Job) {
    let span = tracing::info_span!("inbound", job = %job.id, channel = %job.channel);
    run(rt, job).instrument(span).await
}

async fn run(rt: Arc<Runtime>, job: Job) {
    let Some(channel) = rt.channels.get(&job.channel).cloned() else {
        rt.bury(&job, "channel is no longer configured", vec![])
            .await;
        return;
    };
    let request: InboundRequest = match serde_json::from_slice(&job.payload) {
        Ok(r) => r,
        Err(e) => {
            rt.bury(&job, &format!("stored request is unreadable: {e}"), vec![])
                .await;
            return;
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
                &job,
                &format!("adapter returned {other:?} from parse_inbound"),
                vec![],
            )
            .await;
            return;
        }
        Err(error) => {
            tracing::warn!(error = %error, attempt = job.attempts, "parsing webhook failed");
            match next_after(&rt.outbound_retry, job.attempts, &error) {
                Next::RetryAt(at) => rt.retry(&job, at, error.message()).await,
                Next::GiveUp => rt.bury(&job, error.message(), vec![]).await,
            }
            return;
        }
    };
    let mut follow_ups = Vec::with_capacity(messages.len());
    for mut message in messages {
        message.id = new_id();
        message.channel = channel.id.clone();
        if message.trace.traceparent.is_none() && message.trace.b3.is_none() {
            message.trace.traceparent = Some(new_traceparent());
        }
        map_menu_reply(&rt, &mut message).await;
        match deliver_job(&message) {
            Ok(j) => follow_ups.push(j),
            Err(e) => tracing::error!(error = %e, "cannot encode message"),
        }
    }
    let count = follow_ups.len();
    match rt.store.complete(&job.id, follow_ups).await {
        Ok(()) => {
            rt.wake.deliver.notify_one();
            tracing::debug!(messages = count, "webhook parsed");
        }
        Err(e) => {
            tracing::error!(error = %e, "recording parsed messages failed; will retry after the lease")
        }
    }
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
