//! The HTTP surface: provider webhooks, the application API, health.

mod api;
mod ingress;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::runtime::Runtime;

/// The router for a running host.
pub fn router(rt: Arc<Runtime>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/webhooks/{channel}", post(ingress::webhook))
        .route("/v1/channels/{channel}/messages", post(api::send_messages))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(CatchPanicLayer::new())
        .layer(TraceLayer::new_for_http())
        .with_state(rt)
}

/// A JSON error body: `{"error": "..."}`.
pub(crate) fn error(
    status: axum::http::StatusCode,
    message: impl Into<String>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        status,
        axum::Json(serde_json::json!({ "error": message.into() })),
    )
        .into_response()
}
