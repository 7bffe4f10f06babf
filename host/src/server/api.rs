//! `POST /v1/channels/{channel}/messages`: the application sends messages.
//!
//! Authenticated with `Authorization: Bearer <api key>` (or `X-Api-Key`). The
//! body is one canonical message, or `{"messages": [...]}`. The answer, once the
//! messages are stored, is `202 {"ids": [...]}`. With an `Idempotency-Key`, a
//! repeated request stores nothing and gets the first answer again (`200`, with
//! `Idempotent-Replayed: true`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use patchbay_plugin_sdk::message::Message;
use patchbay_plugin_sdk::signature::constant_time_eq;
use serde_json::{Value, json};

use super::error;
use patchbay_plugin_sdk::signature::auth_credentials;

use crate::runtime::Runtime;
use crate::store::{NewJob, Remembered};
use crate::upstreams::{Speaks, Upstream};
use crate::workers::new_id;
use crate::workers::outbound::OutboundJob;

/// Whether the request carries an API key of `upstream` (a `webhook` upstream).
fn authorised(upstream: &Upstream, headers: &HeaderMap) -> bool {
    let Speaks::Webhook { api_keys, .. } = &upstream.speaks else {
        return false;
    };
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| auth_credentials(v, "Bearer"))
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()));
    let Some(presented) = presented else {
        return false;
    };
    // Check every key so timing does not reveal which one matched.
    api_keys.iter().fold(false, |ok, key| {
        constant_time_eq(key.expose().as_bytes(), presented.trim().as_bytes()) | ok
    })
}

/// The application's body: one canonical message, or `{"messages": [...]}`,
/// each valid — or why not, naming the message at fault.
pub fn parse_messages(body: &[u8]) -> Result<Vec<Message>, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let items = match value {
        Value::Object(mut o) if o.contains_key("messages") => match o.remove("messages") {
            Some(Value::Array(items)) if !items.is_empty() => items,
            _ => return Err("\"messages\" must be a non-empty array".into()),
        },
        single => vec![single],
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let message: Message =
                serde_json::from_value(item).map_err(|e| format!("messages[{i}]: {e}"))?;
            message
                .validate()
                .map_err(|e| format!("messages[{i}]: {e}"))?;
            Ok(message)
        })
        .collect()
}

/// Gives a message for a customer its id, channel and trace (a new one if
/// it has none) and makes its `outbound` job; returns the id too. `from`
/// says who wrote it, for the log.
pub(crate) fn outbound_job(
    rt: &Runtime,
    channel_id: &str,
    mut message: Message,
    from: &str,
) -> Result<(String, NewJob), serde_json::Error> {
    message.id = new_id();
    message.channel = channel_id.to_string();
    crate::upstreams::webhook::ensure_trace(&mut message.trace);
    tracing::info!(
        message_id = %message.id,
        channel = %channel_id,
        trace_id = crate::telemetry::trace_id(&message.trace),
        "message from {from}"
    );
    let id = message.id.clone();
    Ok((id, OutboundJob::queue(message, rt.clock.now())?))
}

/// Stores outbound messages for a channel.
pub async fn send_messages(
    State(rt): State<Arc<Runtime>>,
    Path(channel_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Keys are per upstream: the application behind one channel cannot send
    // on another upstream's channels.
    let Some(channel) = rt.channels.get(&channel_id) else {
        return if rt.upstreams.values().any(|u| authorised(u, &headers)) {
            error(StatusCode::NOT_FOUND, "no such channel")
        } else {
            error(StatusCode::UNAUTHORIZED, "missing or unknown API key")
        };
    };
    let upstream = rt.upstreams.get(&channel.upstream);
    if !upstream.is_some_and(|u| authorised(u, &headers)) {
        return error(StatusCode::UNAUTHORIZED, "missing or unknown API key");
    }
    let messages = match parse_messages(&body) {
        Ok(messages) => messages,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let trace_header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut jobs = Vec::with_capacity(messages.len());
    let mut ids = Vec::with_capacity(messages.len());
    for mut message in messages {
        if message.trace.is_empty() {
            message.trace.traceparent = trace_header("traceparent");
            message.trace.tracestate = trace_header("tracestate");
            message.trace.b3 = trace_header("b3");
        }
        match outbound_job(&rt, &channel_id, message, "the application") {
            Ok((id, job)) => {
                ids.push(id);
                jobs.push(job);
            }
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
    let answer = json!({ "ids": ids }).to_string();
    let stored = match headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
        Some(key) if !key.is_empty() => rt.store.remember(&channel_id, key, &answer, jobs).await,
        _ => rt.store.add(jobs).await.map(|()| Remembered::New),
    };
    match stored {
        Ok(Remembered::New) => {
            rt.wake.outbound.notify_one();
            (
                StatusCode::ACCEPTED,
                [("content-type", "application/json")],
                answer,
            )
                .into_response()
        }
        Ok(Remembered::Existing(previous)) => (
            StatusCode::OK,
            [
                ("content-type", "application/json"),
                ("idempotent-replayed", "true"),
            ],
            previous,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(channel = %channel_id, error = %e, "storing outbound messages failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot store the messages right now",
            )
        }
    }
}
