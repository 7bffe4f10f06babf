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
use crate::store::{NewJob, Queue, Remembered};
use crate::workers::outbound::OutboundJob;
use crate::workers::{conversation_key, new_id};

fn authorised(rt: &Runtime, headers: &HeaderMap) -> bool {
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| auth_credentials(v, "Bearer"))
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()));
    let Some(presented) = presented else {
        return false;
    };
    // Check every key so timing does not reveal which one matched.
    rt.api_keys.iter().fold(false, |ok, key| {
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

/// Stores outbound messages for a channel.
pub async fn send_messages(
    State(rt): State<Arc<Runtime>>,
    Path(channel_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorised(&rt, &headers) {
        return error(StatusCode::UNAUTHORIZED, "missing or unknown API key");
    }
    if !rt.channels.contains_key(&channel_id) {
        return error(StatusCode::NOT_FOUND, "no such channel");
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
    for (i, mut message) in messages.into_iter().enumerate() {
        message.id = new_id();
        message.channel = channel_id.clone();
        if message.trace.is_empty() {
            message.trace.traceparent = trace_header("traceparent");
            message.trace.tracestate = trace_header("tracestate");
            message.trace.b3 = trace_header("b3");
        }
        let conv = conversation_key(&channel_id, &message.conversation.id);
        ids.push(message.id.clone());
        let payload = OutboundJob {
            message,
            parts_done: 0,
            provider_ids: vec![],
        };
        let payload = match serde_json::to_vec(&payload) {
            Ok(p) => p,
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
        jobs.push(NewJob {
            id: ids[i].clone(),
            queue: Queue::Outbound,
            channel: channel_id.clone(),
            destination: channel_id.clone(),
            conversation_key: Some(conv),
            dedupe_key: None,
            payload,
            run_at: rt.clock.now(),
        });
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
