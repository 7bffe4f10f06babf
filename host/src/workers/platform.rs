//! Stored platform webhooks → `outbound` jobs for customers' channels.
//!
//! The inbound worker hands webhooks stored under `upstream:<name>` here, in
//! arrival order with the channels' own, so an agent's messages keep their
//! order; deduplication on the platform's id is the inbound worker's.

use patchbay_plugin_sdk::adapter::InboundRequest;
use patchbay_plugin_sdk::message::{Content, Message};
use patchbay_plugin_sdk::upstream::{PlatformEvent, UpstreamConnector as _};

use super::outbound::OutboundJob;
use super::{new_id, next_after};
use crate::runtime::{Runtime, persist};
use crate::store::{Job, Link, Outcome};
use crate::upstreams::webhook::ensure_trace;
use crate::upstreams::{LinkScope, Speaks, Upstream, conversation_of, link_scope};

/// Decodes one stored webhook of `upstream` into outbound jobs, or says why
/// it must wait or be given up.
pub async fn decode(rt: &Runtime, job: &Job, upstream: &str) -> Outcome {
    let Some(upstream) = rt.upstreams.get(upstream).cloned() else {
        return Outcome::Dead("upstream is no longer configured".into());
    };
    let Speaks::Connector { connector, .. } = &upstream.speaks else {
        return Outcome::Dead("upstream no longer has a connector".into());
    };
    let request: InboundRequest = match serde_json::from_slice(&job.payload) {
        Ok(r) => r,
        Err(e) => return Outcome::Dead(format!("stored request is unreadable: {e}")),
    };
    let events = match connector.decode(&request, rt.clock.timestamp()) {
        Ok(events) => events,
        Err(error) => {
            tracing::warn!(error = %error, attempt = job.attempts, "decoding platform webhook failed");
            return next_after(&upstream.retry, job.attempts, &error, rt.clock.now())
                .outcome(error.message());
        }
    };
    let mut jobs = Vec::new();
    let mut links = Vec::new();
    for event in events {
        match event {
            PlatformEvent::Message {
                customer,
                platform_message_id,
                message,
            } => {
                let message = match addressed(rt, &upstream, &customer, *message) {
                    Ok(m) => m,
                    Err(why) => return Outcome::Dead(why),
                };
                // Typing is not a message: the platform expects no receipt for it.
                let receipted = !matches!(message.content, Content::Typing { .. });
                if let Some(platform_id) = platform_message_id.filter(|_| receipted) {
                    if message.content.rich_type().is_some() {
                        // What the customer's answer will name.
                        links.push(Link {
                            scope: link_scope(&upstream.name, LinkScope::Structured),
                            key: customer,
                            value: platform_id.clone(),
                        });
                    }
                    links.push(Link {
                        scope: link_scope(&upstream.name, LinkScope::Message),
                        key: message.id.clone(),
                        value: platform_id,
                    });
                }
                match OutboundJob::queue(message, rt.clock.now()) {
                    Ok(j) => jobs.push(j),
                    Err(e) => tracing::error!(error = %e, "cannot encode message"),
                }
            }
            PlatformEvent::Receipt { customer, receipt } => {
                tracing::info!(
                    upstream = %upstream.name,
                    customer = customer.as_deref().unwrap_or(""),
                    platform_message = %receipt.message_id,
                    status = ?receipt.status,
                    reasons = ?receipt.reasons,
                    "platform receipt for a customer message"
                );
            }
            _ => {}
        }
    }
    if !links.is_empty() {
        let now = rt.clock.now();
        let linked = persist("recording upstream links", || {
            rt.store.link(links.clone(), now)
        })
        .await;
        if let Err(e) = linked {
            return Outcome::Retry {
                run_at: rt.clock.now() + 1_000,
                error: format!("recording links failed: {e}"),
            };
        }
    }
    Outcome::Done(jobs)
}

/// Gives a platform's message its channel, conversation and id, or says why
/// it cannot go anywhere.
fn addressed(
    rt: &Runtime,
    upstream: &Upstream,
    customer: &str,
    mut message: Message,
) -> Result<Message, String> {
    let (channel, conversation) = conversation_of(customer)
        .ok_or_else(|| format!("customer {customer:?} is not a key Patchbay gave out"))?;
    match rt.channels.get(&channel) {
        Some(c) if c.upstream == upstream.name => {}
        Some(_) => {
            return Err(format!(
                "customer {customer:?} is on channel {channel}, which is not served by upstream {}",
                upstream.name
            ));
        }
        None => return Err(format!("customer {customer:?} names no configured channel")),
    }
    message.id = new_id();
    message.channel = channel;
    message.conversation = conversation;
    ensure_trace(&mut message.trace);
    message
        .validate()
        .map_err(|e| format!("connector produced an invalid message: {e}"))?;
    Ok(message)
}
