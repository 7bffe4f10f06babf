//! Liveness, readiness and metrics, for load balancers, orchestrators and
//! Prometheus.
//!
//! - `/livez`: the process answers HTTP.
//! - `/readyz` (and `/healthz`): the store commits a write now. A replica
//!   that cannot commit acknowledges nothing, so a load balancer should stop
//!   sending it webhooks: it answers 503 with the reason.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::runtime::Runtime;

/// How long a readiness check waits for the store.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) async fn live() -> &'static str {
    "ok"
}

pub(super) async fn ready(State(rt): State<Arc<Runtime>>) -> Response {
    let backend = rt.store.backend();
    match tokio::time::timeout(CHECK_TIMEOUT, rt.store.ready()).await {
        Ok(Ok(())) => {
            axum::Json(serde_json::json!({ "ready": true, "store": backend })).into_response()
        }
        Ok(Err(e)) => not_ready(backend, &e.to_string()),
        Err(_) => not_ready(backend, "the store did not answer within 2 s"),
    }
}

/// Prometheus exposition text (see [`crate::metrics`]).
pub(super) async fn metrics(State(rt): State<Arc<Runtime>>) -> Response {
    let text = crate::metrics::render(rt.store.as_ref(), rt.clock.now()).await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

fn not_ready(backend: &str, reason: &str) -> Response {
    tracing::warn!(store = backend, reason, "not ready");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(serde_json::json!({ "ready": false, "store": backend, "error": reason })),
    )
        .into_response()
}
