//! The widget's HTTP surface: its files, sessions (with CORS for the pages
//! allowed to embed it), its socket, and the trial page at `/`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use patchbay_adapter_webchat::Webchat;
use serde::Deserialize;
use serde_json::json;

use crate::runtime::Runtime;
use crate::server::error;

const WIDGET_JS: &str = include_str!("widget.js");
const WIDGET_CSS: &str = include_str!("widget.css");

/// The widget's routes for every web chat channel, and `/` when one of them
/// sets `demo_page`.
pub fn routes(rt: Arc<Runtime>, max_frame_bytes: usize) -> Router {
    let mut router = Router::new()
        .route("/webchat/{channel}/widget.js", get(widget_js))
        .route("/webchat/{channel}/widget.css", get(widget_css))
        .route(
            "/webchat/{channel}/session",
            axum::routing::post(move |state, path, headers, body| {
                session(state, path, headers, body, max_frame_bytes)
            })
            .options(preflight),
        )
        .route(
            "/webchat/{channel}/socket",
            get(move |state, path, headers, upgrade| {
                socket(state, path, headers, upgrade, max_frame_bytes)
            }),
        );
    let demo = rt
        .channels
        .values()
        .filter(|c| c.web.as_ref().is_some_and(|w| w.demo_page()))
        .map(|c| c.id.clone())
        .min();
    if let Some(channel) = demo {
        router = router.route("/", get(move |state| demo_page(state, channel.clone())));
    }
    router.with_state(rt)
}

/// Why a request for the widget is refused.
#[derive(Debug)]
enum Refused {
    /// Not a web chat channel: 404.
    NoChannel,
    /// A page not allowed to embed it: 403.
    Origin,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::NoChannel => error(StatusCode::NOT_FOUND, "no such web chat channel"),
            Refused::Origin => error(
                StatusCode::FORBIDDEN,
                "this page's origin may not use the chat; add it to the channel's allowed_origins",
            ),
        }
    }
}

/// The channel's web chat.
fn web_of(rt: &Runtime, channel: &str) -> Result<Arc<Webchat>, Refused> {
    rt.channels
        .get(channel)
        .and_then(|c| c.web.clone())
        .ok_or(Refused::NoChannel)
}

async fn widget_js(State(rt): State<Arc<Runtime>>, Path(channel): Path<String>) -> Response {
    if let Err(missing) = web_of(&rt, &channel) {
        return missing.into_response();
    }
    asset("text/javascript; charset=utf-8", WIDGET_JS)
}

async fn widget_css(State(rt): State<Arc<Runtime>>, Path(channel): Path<String>) -> Response {
    if let Err(missing) = web_of(&rt, &channel) {
        return missing.into_response();
    }
    asset("text/css; charset=utf-8", WIDGET_CSS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
            // Any page may load the file; what it may do is checked per request.
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        body,
    )
        .into_response()
}

/// `Origin` and `Host` of a request.
fn origin_and_host(headers: &HeaderMap) -> (Option<&str>, Option<&str>) {
    let get = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    (get(header::ORIGIN), get(header::HOST))
}

/// Whether the page calling may use this channel: its origin, to allow.
fn check_origin(web: &Webchat, headers: &HeaderMap) -> Result<Option<HeaderValue>, Refused> {
    match origin_and_host(headers) {
        (Some(origin), host) if web.origins().allows(origin, host) => {
            Ok(HeaderValue::from_str(origin).ok())
        }
        (Some(_), _) => Err(Refused::Origin),
        // Not a browser: nothing to allow or refuse by origin.
        (None, _) => Ok(None),
    }
}

/// CORS headers for an allowed page.
fn with_cors(mut response: Response, origin: Option<HeaderValue>) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type"),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
    response
}

async fn preflight(
    State(rt): State<Arc<Runtime>>,
    Path(channel): Path<String>,
    headers: HeaderMap,
) -> Response {
    let web = match web_of(&rt, &channel) {
        Ok(w) => w,
        Err(e) => return e.into_response(),
    };
    match check_origin(&web, &headers) {
        Ok(origin) => with_cors(StatusCode::NO_CONTENT.into_response(), origin),
        Err(refused) => refused.into_response(),
    }
}

/// What `POST /webchat/{channel}/session` takes: nothing (a new anonymous
/// visitor), a token to renew, or the site's JWT about its customer.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionRequest {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    site_jwt: Option<String>,
}

async fn session(
    State(rt): State<Arc<Runtime>>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    body: Bytes,
    max_frame_bytes: usize,
) -> Response {
    let web = match web_of(&rt, &channel) {
        Ok(w) => w,
        Err(e) => return e.into_response(),
    };
    let origin = match check_origin(&web, &headers) {
        Ok(o) => o,
        Err(refused) => return refused.into_response(),
    };
    let asked: SessionRequest = if body.iter().all(u8::is_ascii_whitespace) {
        SessionRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(a) => a,
            Err(e) => {
                let bad = error(
                    StatusCode::BAD_REQUEST,
                    format!("not a session request: {e}"),
                );
                return with_cors(bad, origin);
            }
        }
    };
    let now = rt.clock.timestamp();
    let sessions = web.sessions();
    let issued = match (asked.site_jwt, asked.token) {
        (Some(jwt), _) => sessions.from_site_jwt(&jwt, now),
        (None, Some(token)) => sessions.renew(&token, now),
        (None, None) => sessions.anonymous(&format!("{:032x}", rand::random::<u128>()), now),
    };
    let response = match issued {
        Ok(issued) => {
            tracing::info!(%channel, customer = %issued.customer.id, "web chat session issued");
            Json(json!({
                "token": issued.token,
                "customer": issued.customer,
                "expires_at": issued.expires_at.0,
                "title": web.title(),
                "texts": web.texts(),
                // The widget refuses larger files itself: a larger frame closes the socket.
                "max_message_bytes": max_frame_bytes,
            }))
            .into_response()
        }
        Err(rejection) => error(
            StatusCode::from_u16(rejection.status).unwrap_or(StatusCode::UNAUTHORIZED),
            rejection.message,
        ),
    };
    let mut response = with_cors(response, origin);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn socket(
    State(rt): State<Arc<Runtime>>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
    max_frame_bytes: usize,
) -> Response {
    let web = match web_of(&rt, &channel) {
        Ok(w) => w,
        Err(e) => return e.into_response(),
    };
    // Browsers send `Origin` on every WebSocket; CORS does not cover sockets,
    // so this check is what keeps other sites' pages out.
    if let Err(refused) = check_origin(&web, &headers) {
        return refused.into_response();
    }
    let Ok(permit) = rt.sockets.clone().try_acquire_owned() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many chats open; try again shortly",
        );
    };
    let (origin, host) = origin_and_host(&headers);
    let client = super::socket::Client {
        channel,
        origin: origin.map(str::to_string),
        host: host.map(str::to_string),
    };
    upgrade
        .max_message_size(max_frame_bytes)
        .on_upgrade(move |ws| async move {
            super::socket::run(rt, web, client, ws).await;
            drop(permit);
        })
}

/// A page to try the widget on, served by Patchbay itself.
async fn demo_page(State(rt): State<Arc<Runtime>>, channel: String) -> Response {
    let title = rt
        .channels
        .get(&channel)
        .and_then(|c| c.web.as_ref().map(|w| w.title().to_string()))
        .unwrap_or_default();
    let admin = rt.admin_console;
    let console_answers = rt.answered_in_console(&channel);
    let markup = maud::html! {
        (maud::DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Patchbay — try the web chat" }
                link rel="stylesheet" href={ "/webchat/" (channel) "/widget.css" };
            }
            body class="pb-demo" {
                main {
                    h1 { "Patchbay is running" }
                    p {
                        "This page embeds the web chat of channel " code { (channel) }
                        " (" (title) "). Write in the chat at the bottom right: the message is stored, "
                        "converted to Patchbay's canonical format and delivered to the channel's upstream."
                    }
                    @if console_answers {
                        p {
                            "Then answer it as the agent: open the " a href="/admin/conversations" { "admin console" }
                            " (its key is in the config), pick the conversation and reply."
                        }
                    } @else if admin {
                        p { "Watch the traffic in the " a href="/admin" { "admin console" } "." }
                    }
                    p {
                        "Embed the same widget on your site with one tag:"
                    }
                    pre {
                        "<script src=\"" (rt.public_url.trim_end_matches('/')) "/webchat/" (channel) "/widget.js\" async></script>"
                    }
                }
                script src={ "/webchat/" (channel) "/widget.js" } data-open="true" {}
            }
        }
    };
    let mut response = axum::response::Html(markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self' data: https: http:; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
