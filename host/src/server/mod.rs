//! The HTTP surface: provider webhooks, the application API, health.

pub mod api;
pub mod connections;
mod console;
mod health;
pub(crate) mod ingress;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::config::AdminConfig;
use crate::runtime::Runtime;

/// The router for a running host. A request whose body has not arrived and
/// been answered within `request_timeout` gets 408 (nothing was acknowledged).
/// With `admin`, the admin console is served at `/admin`.
pub fn router(
    rt: Arc<Runtime>,
    max_body_bytes: usize,
    request_timeout: Duration,
    admin: Option<&AdminConfig>,
) -> Router {
    let mut app = Router::new()
        .route("/webhooks/{channel}", post(ingress::webhook))
        .route("/upstreams/{name}/webhook", post(ingress::platform_webhook))
        // A platform that fetches tokens from Patchbay (eGain) calls this;
        // its connector answers and nothing is stored.
        .route("/upstreams/{name}/token", post(ingress::platform_webhook))
        .route("/v1/channels/{channel}/messages", post(api::send_messages))
        .route("/livez", get(health::live))
        .route("/readyz", get(health::ready))
        .route("/healthz", get(health::ready))
        .route("/metrics", get(health::metrics))
        .with_state(rt.clone());
    app = app.merge(crate::webchat::routes(rt.clone(), max_body_bytes));
    if let Some(admin) = admin {
        app = app.merge(console::routes(rt, admin.key.clone(), admin.session_hours));
    }
    app.layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .layer(CatchPanicLayer::new())
        .layer(TraceLayer::new_for_http())
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
