//! One customer's socket.
//!
//! Frames are JSON. The widget opens with `{"type":"hello","token":…,"after":n}`
//! (`after`: the last outbox position it has shown) and is answered `ready`,
//! then every outbox entry after `n` as `{"type":"message","seq":…,"message":…}`,
//! then new entries as they are stored. It sends
//! `{"type":"send","client_id":…,"content":…}`; each is verified and stored as a
//! webhook is, then answered `ack` (stored), `retry` (not stored: send it again
//! later) or `rejected` (never will be), with the `client_id`. A widget keeps
//! what it sent until the `ack` and sends it again after reconnecting; the
//! `client_id` makes that safe.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message as Frame, Utf8Bytes, WebSocket};
use axum::http::StatusCode;
use patchbay_adapter_webchat::{Customer, Webchat};
use patchbay_plugin_sdk::adapter::InboundRequest;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::runtime::Runtime;
use crate::server::ingress;

/// Where a socket came from.
#[derive(Debug)]
pub(super) struct Client {
    pub channel: String,
    pub origin: Option<String>,
    pub host: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum FromWidget {
    Hello {
        token: String,
        #[serde(default)]
        after: i64,
    },
    Send {
        client_id: String,
        content: Value,
    },
    Ping,
}

/// How long a socket may stay silent before the widget's hello.
const HELLO_WITHIN: Duration = Duration::from_secs(10);
/// How often a socket looks for entries stored by another replica.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// Entries sent per read.
const PAGE: u32 = 100;
/// How often an idle socket is pinged, so proxies and load balancers in
/// between do not close it as idle (browsers answer pings themselves).
const PING_EVERY: Duration = Duration::from_secs(25);

pub(super) async fn run(rt: Arc<Runtime>, web: Arc<Webchat>, client: Client, mut ws: WebSocket) {
    let Some((token, customer, mut after)) = hello(&rt, &web, &mut ws).await else {
        return;
    };
    tracing::debug!(channel = %client.channel, customer = %customer.id, after, "web chat socket open");
    let _open = OpenSocket::count(&client.channel);
    let mut changed = rt.outboxes.subscribe();
    let ready = json!({"type": "ready", "customer": customer});
    if send_json(&mut ws, &ready).await.is_err() {
        return;
    }
    let mut poll = tokio::time::interval(POLL_EVERY);
    let mut keepalive =
        tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    // Whether the outbox may hold entries the widget has not had: at first,
    // when this process stored one for this conversation (or news was
    // missed), and at each poll for what other replicas stored — not after
    // every frame, nor on other conversations' news.
    let mut stale = true;
    loop {
        if stale {
            match forward(&rt, &client.channel, &customer.id, after, &mut ws).await {
                Ok(last) => after = last,
                Err(()) => return,
            }
            stale = false;
        }
        tokio::select! {
            frame = ws.recv() => {
                let Some(Ok(frame)) = frame else { return };
                let text = match frame {
                    Frame::Text(text) => text,
                    Frame::Close(_) => return,
                    _ => continue,
                };
                let answer = match serde_json::from_str::<FromWidget>(&text) {
                    Ok(FromWidget::Send { client_id, content }) => {
                        receive(&rt, &client, &token, client_id, content).await
                    }
                    Ok(FromWidget::Ping) => json!({"type": "pong"}),
                    Ok(FromWidget::Hello { .. }) => json!({"type": "error", "error": "already said hello"}),
                    Err(e) => json!({"type": "error", "error": format!("unreadable frame: {e}")}),
                };
                if send_json(&mut ws, &answer).await.is_err() {
                    return;
                }
            }
            news = changed.recv() => match news {
                Ok(news) => stale = news.0 == client.channel && news.1 == customer.id,
                Err(RecvError::Lagged(_)) => stale = true,
                Err(RecvError::Closed) => return,
            },
            _ = poll.tick() => stale = true,
            _ = keepalive.tick() => {
                if ws.send(Frame::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Counts a socket in `patchbay_webchat_sockets` while it lives.
struct OpenSocket(String);

impl OpenSocket {
    fn count(channel: &str) -> OpenSocket {
        metrics::gauge!("patchbay_webchat_sockets", "channel" => channel.to_string())
            .increment(1.0);
        OpenSocket(channel.to_string())
    }
}

impl Drop for OpenSocket {
    fn drop(&mut self) {
        metrics::gauge!("patchbay_webchat_sockets", "channel" => self.0.clone()).decrement(1.0);
    }
}

/// Waits for the widget's hello and checks its session.
async fn hello(rt: &Runtime, web: &Webchat, ws: &mut WebSocket) -> Option<(String, Customer, i64)> {
    let first = tokio::time::timeout(HELLO_WITHIN, ws.recv()).await;
    let Ok(Some(Ok(Frame::Text(text)))) = first else {
        return None;
    };
    let (token, after) = match serde_json::from_str::<FromWidget>(&text) {
        Ok(FromWidget::Hello { token, after }) => (token, after.max(0)),
        _ => {
            let _ = send_json(ws, &json!({"type": "error", "error": "expected hello"})).await;
            return None;
        }
    };
    match web.sessions().check(&token, rt.clock.timestamp()) {
        Ok(customer) => Some((token, customer, after)),
        Err(rejection) => {
            let refusal = json!({"type": "expired", "error": rejection.message});
            let _ = send_json(ws, &refusal).await;
            None
        }
    }
}

/// Sends the entries after `after`; returns the last position sent.
async fn forward(
    rt: &Runtime,
    channel: &str,
    conversation: &str,
    mut after: i64,
    ws: &mut WebSocket,
) -> Result<i64, ()> {
    loop {
        let entries = match rt.outboxes.read(channel, conversation, after, PAGE).await {
            Ok(entries) => entries,
            Err(e) => {
                // Read again at the next tick; nothing is lost.
                tracing::warn!(%channel, error = %e, "reading a web chat outbox failed");
                return Ok(after);
            }
        };
        let full = entries.len() == PAGE as usize;
        for (seq, body) in entries {
            let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let frame = json!({"type": "message", "seq": seq, "message": message});
            send_json(ws, &frame).await?;
            after = seq;
        }
        if !full {
            return Ok(after);
        }
    }
}

/// Verifies and stores one message from the widget, as a webhook.
async fn receive(
    rt: &Runtime,
    client: &Client,
    token: &str,
    client_id: String,
    content: Value,
) -> Value {
    let body = json!({"client_id": client_id, "content": content});
    let mut headers = vec![
        ("authorization".to_string(), format!("Bearer {token}")),
        ("content-type".to_string(), "application/json".to_string()),
    ];
    if let Some(origin) = &client.origin {
        headers.push(("origin".into(), origin.clone()));
    }
    if let Some(host) = &client.host {
        headers.push(("host".into(), host.clone()));
    }
    let request = InboundRequest {
        method: "POST".into(),
        url: format!(
            "{}/webchat/{}/socket",
            rt.public_url.trim_end_matches('/'),
            client.channel
        ),
        headers,
        body: body.to_string().into_bytes(),
    };
    let response = ingress::receive(rt, &client.channel, request).await;
    let status = response.status();
    if status.is_success() {
        return json!({"type": "ack", "client_id": client_id});
    }
    let reason = error_text(response).await;
    match status {
        StatusCode::UNAUTHORIZED => {
            json!({"type": "expired", "client_id": client_id, "error": reason})
        }
        s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
            json!({"type": "retry", "client_id": client_id, "error": reason})
        }
        _ => json!({"type": "rejected", "client_id": client_id, "error": reason}),
    }
}

/// The `error` of a JSON error response.
async fn error_text(response: axum::response::Response) -> String {
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default()
}

async fn send_json(ws: &mut WebSocket, value: &Value) -> Result<(), ()> {
    ws.send(Frame::Text(Utf8Bytes::from(value.to_string())))
        .await
        .map_err(drop)
}
