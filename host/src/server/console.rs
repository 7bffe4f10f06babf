//! The admin console at `/admin`: server-rendered HTML (maud, escaped by
//! construction), no script, nothing from a CDN.
//!
//! Authentication is the `[admin] key` from the config. Logging in sets a
//! session cookie — `HttpOnly`, `SameSite=Strict`, `Path=/admin`, `Secure`
//! when the public URL is https — holding its expiry and an HMAC of it under
//! a key derived from the admin key, so replicas sharing a config accept
//! each other's sessions and nothing is stored. Every state change is a POST
//! carrying a CSRF token (an HMAC of the session) and is refused without it.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, html};
use patchbay_plugin_sdk::adapter::Secret;
use serde::Deserialize;

use patchbay_plugin_sdk::message::{Content, Message, Participant};

use crate::channels::Origin;
use crate::runtime::Runtime;
use crate::store::{ConversationJob, JobState, Queue};
use crate::workers::outbound::OutboundJob;

const COOKIE: &str = "patchbay_admin";

/// The console's state: the runtime and the admin key.
struct Console {
    rt: Arc<Runtime>,
    key: Secret,
    session_ms: i64,
    secure: bool,
}

/// The console's routes, under `/admin`.
pub fn routes(rt: Arc<Runtime>, key: Secret, session_hours: u64) -> Router {
    let secure = rt.public_url.starts_with("https://");
    let console = Arc::new(Console {
        rt,
        key,
        session_ms: (session_hours.max(1) * 3_600_000) as i64,
        secure,
    });
    Router::new()
        .route("/admin", get(overview))
        .route("/admin/login", get(login_page).post(login))
        .route("/admin/logout", post(logout))
        .route("/admin/dead-letters", get(dead_letters))
        .route("/admin/dead-letters/{id}/replay", post(replay))
        .route("/admin/plugins", get(plugins))
        .route("/admin/conversations", get(conversations))
        .route(
            "/admin/conversations/{channel}/{conversation}",
            get(conversation).post(reply),
        )
        .route("/admin/style.css", get(style))
        .with_state(console)
}

impl Console {
    fn sign(&self, purpose: &str, value: &str) -> String {
        let key = format!("patchbay-admin-{purpose}:{}", self.key.expose());
        patchbay_plugin_sdk::signature::hmac_sha256_hex(key.as_bytes(), value.as_bytes())
    }

    /// A session cookie's value, valid until `until` (ms).
    fn session(&self, until: i64) -> String {
        format!("{until}.{}", self.sign("session", &until.to_string()))
    }

    /// The session in `headers`, if it is genuine and current.
    fn current(&self, headers: &HeaderMap) -> Option<String> {
        let value = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix(&format!("{COOKIE}=")))?;
        let (until, mac) = value.split_once('.')?;
        let expected = self.sign("session", until);
        let genuine =
            patchbay_plugin_sdk::signature::constant_time_eq(mac.as_bytes(), expected.as_bytes());
        let current = until.parse::<i64>().ok()? > self.rt.clock.now();
        (genuine && current).then(|| value.to_string())
    }

    fn csrf(&self, session: &str) -> String {
        self.sign("csrf", session)
    }

    fn cookie(&self, value: &str, max_age_secs: i64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{COOKIE}={value}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
        ))
        .expect("a cookie of ASCII")
    }
}

fn page(title: &str, csrf: Option<&str>, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Patchbay" }
                link rel="stylesheet" href="/admin/style.css";
            }
            body {
                header {
                    strong { "Patchbay" }
                    @if let Some(csrf) = csrf {
                        nav {
                            a href="/admin" { "Overview" }
                            a href="/admin/dead-letters" { "Dead letters" }
                            a href="/admin/plugins" { "Adapters" }
                            a href="/admin/conversations" { "Conversations" }
                            form method="post" action="/admin/logout" {
                                input type="hidden" name="csrf" value=(csrf);
                                button { "Log out" }
                            }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    };
    let mut response = markup.into_string().into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // Nothing from elsewhere, no scripts, no framing.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("console.css"),
    )
        .into_response()
}

async fn login_page() -> Response {
    login_form(None)
}

fn login_form(error: Option<&str>) -> Response {
    page(
        "Log in",
        None,
        html! {
            @if let Some(error) = error { p.error { (error) } }
            form method="post" action="/admin/login" {
                label { "Admin key " input type="password" name="key" autocomplete="current-password" autofocus; }
                button { "Log in" }
            }
        },
    )
}

#[derive(Deserialize)]
struct LoginForm {
    key: String,
}

async fn login(State(c): State<Arc<Console>>, Form(form): Form<LoginForm>) -> Response {
    let right = patchbay_plugin_sdk::signature::constant_time_eq(
        form.key.as_bytes(),
        c.key.expose().as_bytes(),
    );
    if !right {
        tracing::warn!("admin console: a login with a wrong key");
        let mut response = login_form(Some("That is not the admin key."));
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        return response;
    }
    let session = c.session(c.rt.clock.now() + c.session_ms);
    // `Redirect::to` answers 303 See Other: the browser GETs the page.
    let mut response = Redirect::to("/admin").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, c.cookie(&session, c.session_ms / 1000));
    response
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// Why a state change was refused.
enum Refused {
    /// No current session: log in first.
    NoSession,
    /// The form's CSRF token is missing or not this session's.
    BadToken,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::NoSession => Redirect::to("/admin/login").into_response(),
            Refused::BadToken => {
                (StatusCode::FORBIDDEN, "missing or wrong CSRF token").into_response()
            }
        }
    }
}

/// The session, if `headers` carry one and `form` its CSRF token.
fn authorised(c: &Console, headers: &HeaderMap, form: &CsrfForm) -> Result<String, Refused> {
    let session = c.current(headers).ok_or(Refused::NoSession)?;
    let token = c.csrf(&session);
    if !patchbay_plugin_sdk::signature::constant_time_eq(form.csrf.as_bytes(), token.as_bytes()) {
        return Err(Refused::BadToken);
    }
    Ok(session)
}

async fn logout(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(refused) = authorised(&c, &headers, &form) {
        return refused.into_response();
    }
    let mut response = Redirect::to("/admin/login").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, c.cookie("", 0));
    response
}

async fn overview(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let Some(session) = c.current(&headers) else {
        return Redirect::to("/admin/login").into_response();
    };
    let rt = &c.rt;
    let now = rt.clock.now();
    let counts = rt.store.counts().await.unwrap_or_default();
    let mut oldest = Vec::new();
    for queue in Queue::ALL {
        let age = rt.store.oldest_due(queue, now).await.ok().flatten();
        oldest.push(age.map(|at| (now - at).max(0)));
    }
    let waiting = rt
        .store
        .waiting_destinations(Queue::Deliver)
        .await
        .unwrap_or_default();
    let ready = rt.store.ready().await;
    let mut channels: Vec<_> = rt.channels.values().collect();
    channels.sort_by(|a, b| a.id.cmp(&b.id));
    let paused = |destination: &str| rt.destinations.is_paused(destination, now);
    page(
        "Overview",
        Some(&c.csrf(&session)),
        html! {
            section {
                h2 { "Store" }
                p {
                    (rt.store.backend()) ": "
                    @match &ready {
                        Ok(()) => span.ok { "commits" },
                        Err(e) => span.error { "cannot commit: " (e.to_string()) },
                    }
                }
            }
            section {
                h2 { "Queues" }
                table {
                    thead { tr { th { "queue" } th { "pending" } th { "done" } th { "dead" } th { "oldest due" } } }
                    tbody {
                        @for ((queue, count), age) in counts.iter().zip(&oldest) {
                            tr {
                                td { (queue.as_str()) }
                                td.num { (count.pending) }
                                td.num { (count.done) }
                                td.num {
                                    @if count.dead > 0 { a href="/admin/dead-letters" { (count.dead) } }
                                    @else { "0" }
                                }
                                td.num { @match age { Some(ms) => { (format!("{:.1} s", *ms as f64 / 1e3)) }, None => "—" } }
                            }
                        }
                    }
                }
            }
            section {
                h2 { "Channels" }
                table {
                    thead { tr { th { "channel" } th { "adapter" } th { "version" } th { "upstream" } th { "provider" } } }
                    tbody {
                        @for channel in &channels {
                            @let manifest = channel.adapter.manifest();
                            tr {
                                td { (channel.id) }
                                td { (manifest.name) " (" (channel.adapter_id) ")" }
                                td { (manifest.version) }
                                td {
                                    (channel.upstream)
                                    @if paused(&channel.upstream) { " " span.error { "paused" } }
                                }
                                td { @if paused(&channel.id) { span.error { "paused" } } @else { span.ok { "sending" } } }
                            }
                        }
                    }
                }
            }
            section {
                h2 { "Waiting for upstreams" }
                @if waiting.is_empty() { p { "No conversation waits." } }
                @else {
                    table {
                        thead { tr { th { "upstream" } th { "conversations waiting" } } }
                        tbody { @for (upstream, n) in &waiting { tr { td { (upstream) } td.num { (n) } } } }
                    }
                }
            }
        },
    )
}

async fn dead_letters(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let Some(session) = c.current(&headers) else {
        return Redirect::to("/admin/login").into_response();
    };
    let letters = c.rt.store.dead_letters(100).await.unwrap_or_default();
    let csrf = c.csrf(&session);
    page(
        "Dead letters",
        Some(&csrf),
        html! {
            @if letters.is_empty() { p { "Nothing was given up on." } }
            @else {
                table {
                    thead { tr { th { "id" } th { "queue" } th { "channel" } th { "attempts" } th { "last error" } th {} } }
                    tbody {
                        @for letter in &letters {
                            tr {
                                td.id { (letter.id) }
                                td { (letter.queue.as_str()) }
                                td { (letter.channel) }
                                td.num { (letter.attempts) }
                                td { (letter.last_error.as_deref().unwrap_or("")) }
                                td {
                                    form method="post" action={ "/admin/dead-letters/" (letter.id) "/replay" } {
                                        input type="hidden" name="csrf" value=(csrf);
                                        button { "Replay" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

async fn replay(
    State(c): State<Arc<Console>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(refused) = authorised(&c, &headers, &form) {
        return refused.into_response();
    }
    match c.rt.store.replay(&id, c.rt.clock.now()).await {
        Ok(true) => {
            tracing::info!(job = %id, "dead letter replayed from the admin console");
            c.rt.wake.inbound.notify_one();
            c.rt.wake.deliver.notify_one();
            c.rt.wake.outbound.notify_one();
            Redirect::to("/admin/dead-letters").into_response()
        }
        Ok(false) => (StatusCode::NOT_FOUND, "no dead letter with that id").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

/// Each channel's adapter: where it came from and its manifest.
async fn plugins(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let Some(session) = c.current(&headers) else {
        return Redirect::to("/admin/login").into_response();
    };
    let mut channels: Vec<_> = c.rt.channels.values().collect();
    channels.sort_by(|a, b| a.id.cmp(&b.id));
    page(
        "Adapters",
        Some(&c.csrf(&session)),
        html! {
            @for channel in &channels {
                @let manifest = channel.adapter.manifest();
                section {
                    h2 { (channel.id) }
                    table {
                        tr { th { "adapter" } td { (manifest.name) " (" (manifest.id) ") " (manifest.version) } }
                        tr {
                            th { "from" }
                            td {
                                @match &channel.origin {
                                    Origin::CompiledIn => "compiled in",
                                    Origin::Library { path, sha256, abi, .. } => {
                                        (path.display().to_string()) br;
                                        "sha256 " span.id { (sha256) } br;
                                        "ABI " (abi.0) "." (abi.1)
                                    }
                                }
                            }
                        }
                        tr { th { "wire versions" } td { (manifest.wire.min) "–" (manifest.wire.max) } }
                        tr {
                            th { "settings" }
                            td { (manifest.settings.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")) }
                        }
                        tr {
                            th { "secrets" }
                            td { (manifest.secrets.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")) }
                        }
                        tr {
                            th { "capabilities (as configured)" }
                            td { pre { (serde_json::to_string_pretty(&channel.capabilities).unwrap_or_default()) } }
                        }
                    }
                }
            }
        },
    )
}

/// Conversations with the newest traffic.
async fn conversations(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let Some(session) = c.current(&headers) else {
        return Redirect::to("/admin/login").into_response();
    };
    let recent =
        c.rt.store
            .recent_conversations(50)
            .await
            .unwrap_or_default();
    let now = c.rt.clock.now();
    page(
        "Recent conversations",
        Some(&c.csrf(&session)),
        html! {
            @if recent.is_empty() { p { "No conversation yet." } }
            @else {
                table {
                    thead { tr { th { "channel" } th { "conversation" } th { "messages and receipts" } th { "last" } } }
                    tbody {
                        @for conversation in &recent {
                            tr {
                                td { (conversation.channel) }
                                td.id {
                                    a href=(conversation_href(&conversation.channel, &conversation.conversation)) {
                                        (conversation.conversation)
                                    }
                                }
                                td.num { (conversation.jobs) }
                                td.num { (format!("{:.0} s ago", (now - conversation.last_at).max(0) as f64 / 1e3)) }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The console page of one conversation.
fn conversation_href(channel: &str, conversation: &str) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    format!(
        "/admin/conversations/{}/{}",
        utf8_percent_encode(channel, NON_ALPHANUMERIC),
        utf8_percent_encode(conversation, NON_ALPHANUMERIC)
    )
}

/// A line of a transcript: who, what, and how far it got.
struct Line {
    from_customer: bool,
    at: i64,
    text: String,
    state: JobState,
}

/// The messages of a conversation (receipts and typing left out).
fn transcript(jobs: Vec<ConversationJob>) -> Vec<Line> {
    jobs.into_iter()
        .filter_map(|job| {
            let (message, from_customer) = match job.queue {
                Queue::Deliver => (serde_json::from_slice::<Message>(&job.payload).ok()?, true),
                Queue::Outbound => (
                    serde_json::from_slice::<OutboundJob>(&job.payload)
                        .ok()?
                        .message,
                    false,
                ),
                Queue::Inbound => return None,
            };
            if matches!(
                message.content,
                Content::Receipt(_) | Content::Typing { .. }
            ) {
                return None;
            }
            Some(Line {
                from_customer,
                at: job.created_at,
                text: summary(&message.content),
                state: job.state,
            })
        })
        .collect()
}

/// One line saying what a message holds.
fn summary(content: &Content) -> String {
    match content {
        Content::Text { text, .. } => text.clone(),
        Content::Postback { payload, text } => match text {
            Some(text) => format!("picked “{text}” ({payload})"),
            None => format!("picked {payload}"),
        },
        Content::Attachments { attachments, text } => {
            let names: Vec<String> = attachments
                .iter()
                .map(|a| a.filename.clone().unwrap_or_else(|| "a file".into()))
                .collect();
            let text = text.as_deref().map(|t| format!("{t} ")).unwrap_or_default();
            format!("{text}[{}]", names.join(", "))
        }
        Content::Buttons { text, buttons } => {
            let titles: Vec<&str> = buttons.iter().map(|b| b.title.as_str()).collect();
            format!("{text} [{}]", titles.join(" | "))
        }
        Content::QuickReplies { text, replies } => {
            let titles: Vec<&str> = replies.iter().map(|r| r.title.as_str()).collect();
            format!("{text} [{}]", titles.join(" | "))
        }
        Content::ListPicker { title, items } => format!("{title} [{} items]", items.len()),
        Content::Carousel { cards } => format!("[{} cards]", cards.len()),
        Content::TimePicker { title, slots, .. } => format!("{title} [{} slots]", slots.len()),
        Content::RichLink { title, url, .. } => format!("{title} <{url}>"),
        Content::EndSession { .. } => "ended the conversation".into(),
        other => format!("[{}]", other.kind()),
    }
}

async fn conversation(
    State(c): State<Arc<Console>>,
    Path((channel, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some(session) = c.current(&headers) else {
        return Redirect::to("/admin/login").into_response();
    };
    let key = crate::workers::conversation_key(&channel, &id);
    let lines = match c.rt.store.conversation_jobs(&key, 200).await {
        Ok(jobs) => transcript(jobs),
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let csrf = c.csrf(&session);
    let now = c.rt.clock.now();
    let here = c.rt.answered_in_console(&channel);
    page(
        &format!("Conversation on {channel}"),
        Some(&csrf),
        html! {
            p.id { (id) }
            @if lines.is_empty() { p { "No message in the recent traffic." } }
            ol.transcript {
                @for line in &lines {
                    li class=(if line.from_customer { "customer" } else { "agent" }) {
                        span.who { @if line.from_customer { "customer" } @else { "agent" } }
                        span.text { (line.text) }
                        span.when {
                            (format!("{:.0} s ago", (now - line.at).max(0) as f64 / 1e3))
                            @if !line.from_customer && line.state != JobState::Done {
                                " · " (line.state.as_str())
                            }
                        }
                    }
                }
            }
            p { a href=(conversation_href(&channel, &id)) { "Refresh" } }
            @if here {
                form.reply method="post" action=(conversation_href(&channel, &id)) {
                    input type="hidden" name="csrf" value=(csrf);
                    label {
                        "Answer as the agent "
                        small { "(this channel's upstream is the console, for trials)" }
                        input type="text" name="text" required autofocus autocomplete="off";
                    }
                    button { "Send" }
                }
            } @else {
                p { "This channel's agent answers through its upstream, not here." }
            }
        },
    )
}

/// An agent's answer typed in the console.
#[derive(Debug, Deserialize)]
struct ReplyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    text: String,
}

async fn reply(
    State(c): State<Arc<Console>>,
    Path((channel, id)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<ReplyForm>,
) -> Response {
    let csrf = CsrfForm { csrf: form.csrf };
    if let Err(refused) = authorised(&c, &headers, &csrf) {
        return refused.into_response();
    }
    if !c.rt.answered_in_console(&channel) {
        return (
            StatusCode::FORBIDDEN,
            "this channel's upstream is not the console",
        )
            .into_response();
    }
    let text = form.text.trim();
    if text.is_empty() {
        return (StatusCode::BAD_REQUEST, "nothing to send").into_response();
    }
    let mut message = Message::new(id.clone(), Content::text(text));
    message.sender = Some(Participant {
        id: "console".into(),
        name: Some("Agent (console)".into()),
    });
    let job = match crate::server::api::outbound_job(&c.rt, &channel, message, "the admin console")
    {
        Ok((_, job)) => job,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    match c.rt.store.add(vec![job]).await {
        Ok(()) => {
            c.rt.wake.outbound.notify_one();
            Redirect::to(&conversation_href(&channel, &id)).into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}
