//! `POST /webhooks/{channel}` (providers) and `POST /upstreams/{name}/webhook`
//! (platforms): verify, store durably, then acknowledge.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use patchbay_plugin_sdk::adapter::{InboundRequest, Resources, Timestamp, Verdict};
use patchbay_plugin_sdk::error::Rejection;
use patchbay_plugin_sdk::upstream::UpstreamConnector as _;

use super::error;
use crate::channels::Channel;
use crate::runtime::Runtime;
use crate::store::{NewJob, Queue};
use crate::upstreams::Speaks;
use crate::workers::inbound::platform_job_channel;
use crate::workers::new_id;

/// Verifies the webhook over its exact bytes, stores it (group commit) and only
/// then answers with the ack the provider expects. Duplicates get the same ack.
pub async fn webhook(
    State(rt): State<Arc<Runtime>>,
    Path(channel_id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = inbound_request(&rt, method, uri, headers, body);
    receive(&rt, &channel_id, request).await
}

/// Verifies a customer's request for `channel_id`, stores it, and answers
/// with its ack: what [`webhook`] does once the HTTP request is read, and
/// what the web chat socket does with each frame.
pub(crate) async fn receive(rt: &Runtime, channel_id: &str, request: InboundRequest) -> Response {
    let started = Instant::now();
    let Some(channel) = rt.channels.get(channel_id) else {
        return error(StatusCode::NOT_FOUND, "no such channel");
    };
    let resources = match rt.resources.current(&rt.transport, channel).await {
        Ok(r) => r,
        Err(_) => {
            // Logged by the cache; 503 makes the provider retry later.
            count(channel_id, "unavailable");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot verify requests for this channel right now",
            );
        }
    };
    let mut verdict = verify(channel, &request, &resources, rt.clock.timestamp());
    if let Err(rejection) = &verdict
        && rejection.stale_resources
        && let Some(fresh) = rt.resources.refresh_stale(&rt.transport, channel).await
    {
        verdict = verify(channel, &request, &fresh, rt.clock.timestamp());
    }
    let verdict = match verdict {
        Ok(v) => v,
        Err(rejection) => {
            tracing::warn!(channel = %channel_id, status = rejection.status, reason = %rejection.message, "webhook rejected");
            count(channel_id, "rejected");
            let status = StatusCode::from_u16(rejection.status).unwrap_or(StatusCode::UNAUTHORIZED);
            return error(status, rejection.message);
        }
    };
    accept(
        rt,
        channel_id,
        channel_id.to_string(),
        request,
        verdict,
        started,
    )
    .await
}

/// Verifies a platform's webhook with its upstream's connector, stores it
/// (to be decoded in arrival order with the channels' webhooks) and answers
/// with the body the platform expects.
pub async fn platform_webhook(
    State(rt): State<Arc<Runtime>>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let Some(upstream) = rt.upstreams.get(&name) else {
        return error(StatusCode::NOT_FOUND, "no such upstream");
    };
    let Speaks::Connector { connector, .. } = &upstream.speaks else {
        return error(
            StatusCode::NOT_FOUND,
            "this upstream is the application webhook; it sends with POST /v1/channels/{channel}/messages",
        );
    };
    let request = inbound_request(&rt, method, uri, headers, body);
    let verdict = match connector.verify(&request, rt.clock.timestamp()) {
        Ok(v) => v,
        Err(rejection) => {
            tracing::warn!(upstream = %name, status = rejection.status, reason = %rejection.message, "platform webhook rejected");
            count(&name, "rejected");
            let status = StatusCode::from_u16(rejection.status).unwrap_or(StatusCode::UNAUTHORIZED);
            return error(status, rejection.message);
        }
    };
    let job_channel = platform_job_channel(&name);
    accept(&rt, &name, job_channel, request, verdict, started).await
}

/// Counts a webhook from `source` (a channel or an upstream) by outcome.
fn count(source: &str, outcome: &'static str) {
    metrics::counter!("patchbay_webhooks_total", "source" => source.to_string(), "outcome" => outcome)
        .increment(1);
}

pub(crate) fn inbound_request(
    rt: &Runtime,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> InboundRequest {
    InboundRequest {
        method: method.to_string(),
        url: format!(
            "{}{}",
            rt.public_url.trim_end_matches('/'),
            uri.path_and_query().map_or(uri.path(), |pq| pq.as_str())
        ),
        headers: headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        body: body.to_vec(),
    }
}

/// Stores a verified request as an `inbound` job under `job_channel` (group
/// commit), then answers with the verdict's ack; 503 if it cannot be stored,
/// so the sender retries. Duplicates get the same ack.
async fn accept(
    rt: &Runtime,
    from: &str,
    job_channel: String,
    request: InboundRequest,
    verdict: Verdict,
    started: Instant,
) -> Response {
    if verdict.store {
        let payload = match serde_json::to_vec(&request) {
            Ok(p) => p,
            Err(e) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot encode request: {e}"),
                );
            }
        };
        let job = NewJob {
            id: new_id(),
            queue: Queue::Inbound,
            destination: job_channel.clone(),
            channel: job_channel,
            conversation_key: None,
            dedupe_key: verdict.dedupe_key.clone(),
            payload,
            run_at: rt.clock.now(),
        };
        // A redelivery is stored too and dropped when parsed: checking the
        // sender's id here would cost every acknowledgement a random read.
        match rt.store.accept(job).await {
            Ok(()) => rt.wake.inbound.notify_one(),
            Err(e) => {
                tracing::error!(from = %from, error = %e, "storing webhook failed");
                count(from, "unavailable");
                // 503 makes the sender retry; nothing was acknowledged.
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "cannot store the request right now",
                );
            }
        }
    }
    count(from, "accepted");
    metrics::histogram!("patchbay_webhook_ack_seconds", "source" => from.to_string())
        .record(started.elapsed().as_secs_f64());
    let ack = verdict.ack;
    let status = StatusCode::from_u16(ack.status).unwrap_or(StatusCode::OK);
    let mut response = (status, ack.body).into_response();
    if let Some(ct) = ack.content_type.and_then(|ct| ct.parse().ok()) {
        response.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    response
}

/// Runs the adapter's `verify` (behind `plugins::contained`: a panic is a
/// 503 rejection, so the provider retries).
fn verify(
    channel: &Channel,
    request: &InboundRequest,
    resources: &Resources,
    now: Timestamp,
) -> Result<Verdict, Rejection> {
    channel.adapter.verify(request, now, resources)
}
