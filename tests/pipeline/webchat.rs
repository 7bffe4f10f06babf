//! The web chat channel over real HTTP and a real WebSocket: sessions and
//! origins, a customer's messages reaching the application once, replies
//! reaching the customer in order, and resuming after a dropped socket.
//! (`browser.rs` drives the widget itself in Chromium.)

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::harness::*;

const SESSION_SECRET: &str = "webchat-session-secret-for-tests-0123";
const SHOP: &str = "http://shop.test";

/// The `chat` web chat channel, for `HostOptions::extra_channel_toml`.
pub fn chat_channel(demo_page: bool) -> String {
    format!(
        r#"
[channels.chat]
adapter = "webchat"
upstream = "application"
secrets = {{ session_secret = "{SESSION_SECRET}" }}
settings = {{ allowed_origins = ["{SHOP}"], title = "Ask the shop", demo_page = {demo_page}, texts = {{ placeholder = "Ihre Nachricht…", send = "Senden" }} }}
"#
    )
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn session(host: &Host, origin: &str, body: Value) -> reqwest::Response {
    client()
        .post(format!("{}/webchat/chat/session", host.url))
        .header("origin", origin)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("session")
}

async fn connect(host: &Host, origin: &str) -> Result<Socket, u16> {
    let url = format!("{}/webchat/chat/socket", host.url.replacen("http", "ws", 1));
    let mut request = url.into_client_request().expect("request");
    request
        .headers_mut()
        .insert("origin", origin.parse().expect("origin"));
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("socket: {e}"),
    }
}

async fn send(socket: &mut Socket, frame: Value) {
    socket
        .send(Frame::text(frame.to_string()))
        .await
        .expect("send");
}

/// The next JSON frame that is not a read receipt's ack.
async fn next(socket: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(15), socket.next())
            .await
            .expect("a frame within 15 s")
            .expect("socket open")
            .expect("frame");
        if let Frame::Text(text) = frame {
            return serde_json::from_str(&text).expect("json frame");
        }
    }
}

async fn hello(socket: &mut Socket, token: &str, after: i64) {
    send(
        socket,
        json!({"type": "hello", "token": token, "after": after}),
    )
    .await;
    let ready = next(socket).await;
    assert_eq!(ready["type"], "ready", "{ready}");
}

fn text(client_id: &str, text: &str) -> Value {
    json!({"type": "send", "client_id": client_id, "content": {"type": "text", "text": text}})
}

/// Messages the application received from the `chat` channel (not
/// receipts or typing).
pub fn from_chat(app: &Mock) -> Vec<Value> {
    app.received()
        .iter()
        .map(Received::json)
        .filter(|m| m["channel"] == "chat")
        .filter(|m| !matches!(m["content"]["type"].as_str(), Some("receipt" | "typing")))
        .collect()
}

/// Waits (20 s at most) until the application has `count` messages from
/// the `chat` channel; returns them.
pub async fn wait_for_chat(app: &Mock, count: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let messages = from_chat(app);
        if messages.len() >= count {
            return messages;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the application got {messages:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn only_allowed_pages_get_sessions_and_sockets() {
    let app = Mock::start().await;
    let mut options = HostOptions::new(&app.url("/hook"), "http://127.0.0.1:9/unused");
    options.extra_channel_toml = chat_channel(false);
    let host = Host::start(options);

    let widget = client()
        .get(format!("{}/webchat/chat/widget.js", host.url))
        .send()
        .await
        .unwrap();
    assert_eq!(widget.status(), 200);
    assert!(
        widget.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let missing = client()
        .get(format!("{}/webchat/web/widget.js", host.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        missing.status(),
        404,
        "`web` is a client channel, not a web chat"
    );

    let allowed = session(&host, SHOP, json!({})).await;
    assert_eq!(allowed.status(), 200);
    assert_eq!(allowed.headers()["access-control-allow-origin"], SHOP);
    let issued = allowed.json_value().await;
    assert!(
        issued["customer"]["id"]
            .as_str()
            .unwrap()
            .starts_with("visitor-")
    );
    assert_eq!(issued["title"], "Ask the shop");
    assert_eq!(
        issued["texts"],
        json!({"placeholder": "Ihre Nachricht…", "send": "Senden"}),
        "only the words the config sets"
    );
    assert_eq!(
        issued["max_message_bytes"],
        64 * 1024,
        "the server's body limit"
    );
    let preflight = client()
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/webchat/chat/session", host.url),
        )
        .header("origin", SHOP)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(preflight.headers()["access-control-allow-origin"], SHOP);

    let evil = session(&host, "https://evil.test", json!({})).await;
    assert_eq!(evil.status(), 403);
    assert!(evil.headers().get("access-control-allow-origin").is_none());
    assert_eq!(connect(&host, "https://evil.test").await.err(), Some(403));

    // A forged token gets no socket conversation.
    let mut socket = connect(&host, SHOP).await.expect("socket");
    send(
        &mut socket,
        json!({"type": "hello", "token": "forged", "after": 0}),
    )
    .await;
    assert_eq!(next(&mut socket).await["type"], "expired");
    // Nor a renewal.
    assert_eq!(
        session(&host, SHOP, json!({"token": "forged"}))
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn a_customer_chats_and_a_dropped_socket_loses_and_repeats_nothing() {
    let app = Mock::start().await;
    let mut options = HostOptions::new(&app.url("/hook"), "http://127.0.0.1:9/unused");
    options.extra_channel_toml = chat_channel(false);
    let host = Host::start(options);
    let issued = session(&host, SHOP, json!({})).await.json_value().await;
    let token = issued["token"].as_str().unwrap().to_string();
    let customer = issued["customer"]["id"].as_str().unwrap().to_string();

    let mut socket = connect(&host, SHOP).await.expect("socket");
    hello(&mut socket, &token, 0).await;
    let metrics = client()
        .get(format!("{}/metrics", host.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("patchbay_webchat_sockets{channel=\"chat\"} 1"),
        "{metrics}"
    );
    send(&mut socket, text("m-1", "Is my order shipped?")).await;
    assert_eq!(
        next(&mut socket).await,
        json!({"type": "ack", "client_id": "m-1"})
    );
    app.wait_for(1).await;
    let first = &from_chat(&app)[0];
    assert_eq!(first["conversation"]["id"], customer.as_str());
    assert_eq!(first["sender"]["id"], customer.as_str());
    assert_eq!(
        first["content"],
        json!({"type": "text", "text": "Is my order shipped?"})
    );

    // A customer's rich content is refused, and says why.
    send(
        &mut socket,
        json!({"type": "send", "client_id": "m-x", "content": {"type": "carousel", "cards": []}}),
    )
    .await;
    let refused = next(&mut socket).await;
    assert_eq!(refused["type"], "rejected");
    assert!(
        refused["error"].as_str().unwrap().contains("carousel"),
        "{refused}"
    );

    // The application answers with buttons; the customer sees them.
    let buttons = json!({"conversation": {"id": customer}, "content": {"type": "buttons",
        "text": "It ships today. Track it?",
        "buttons": [{"title": "Track", "action": {"type": "postback", "payload": "track"}}]}});
    let reply_id = host.send_id("chat", &buttons).await;
    let shown = next(&mut socket).await;
    assert_eq!(shown["type"], "message");
    assert_eq!(shown["message"]["id"], reply_id.as_str());
    assert_eq!(shown["message"]["content"], buttons["content"]);
    let seen = shown["seq"].as_i64().unwrap();

    // The socket drops. Meanwhile the application writes twice more, and
    // the customer's click waits in the widget.
    drop(socket);
    for t in ["Anything else?", "We are here until 6pm."] {
        let reply =
            json!({"conversation": {"id": customer}, "content": {"type": "text", "text": t}});
        host.send_id("chat", &reply).await;
    }
    // Back: only what was not shown, in order.
    let mut socket = connect(&host, SHOP).await.expect("socket");
    hello(&mut socket, &token, seen).await;
    let a = next(&mut socket).await;
    let b = next(&mut socket).await;
    assert_eq!(a["message"]["content"]["text"], "Anything else?");
    assert_eq!(b["message"]["content"]["text"], "We are here until 6pm.");
    assert!(
        a["seq"].as_i64().unwrap() > seen
            && b["seq"].as_i64().unwrap() > a["seq"].as_i64().unwrap()
    );

    // The widget re-sends what it had not seen acknowledged (m-1 again, as
    // after a drop between store and ack) and the click.
    send(&mut socket, text("m-1", "Is my order shipped?")).await;
    assert_eq!(next(&mut socket).await["type"], "ack");
    send(&mut socket, json!({"type": "send", "client_id": "m-2", "content": {"type": "postback", "payload": "track", "text": "Track"}})).await;
    assert_eq!(
        next(&mut socket).await,
        json!({"type": "ack", "client_id": "m-2"})
    );
    wait_for_chat(&app, 2).await;
    host.idle().await;
    let messages = from_chat(&app);
    assert_eq!(
        messages.len(),
        2,
        "m-1 once, then the postback: {messages:?}"
    );
    assert_eq!(
        messages[1]["content"],
        json!({"type": "postback", "payload": "track", "text": "Track"})
    );
    // Each reply was reported delivered to the application.
    let delivered = app
        .received()
        .iter()
        .map(Received::json)
        .filter(|m| m["content"]["type"] == "receipt" && m["content"]["status"] == "Delivered")
        .count();
    assert_eq!(delivered, 3);
}

/// Logs in to the admin console; the session cookie.
async fn admin_session(host: &Host) -> String {
    use crate::operations::{ADMIN_KEY, browser, form};
    let login = browser()
        .post(format!("{}/admin/login", host.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("key", ADMIN_KEY)]))
        .send()
        .await
        .expect("console");
    assert_eq!(login.status(), 303);
    let cookie = login.headers()["set-cookie"].to_str().expect("cookie");
    cookie.split(';').next().unwrap_or_default().to_string()
}

async fn admin_get(host: &Host, cookie: &str, path: &str) -> String {
    let page = crate::operations::browser()
        .get(format!("{}{path}", host.url))
        .header("cookie", cookie)
        .send()
        .await
        .expect("console");
    assert_eq!(page.status(), 200, "{path}");
    page.text().await.expect("page")
}

async fn admin_post(
    host: &Host,
    cookie: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    crate::operations::browser()
        .post(format!("{}{path}", host.url))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(crate::operations::form(fields))
        .send()
        .await
        .expect("console")
}

/// A web chat answered by a person in the admin console: no application.
pub fn console_trial() -> String {
    format!(
        r#"
[admin]
key = "{key}"

[upstreams.console]
kind = "console"

[channels.chat]
adapter = "webchat"
upstream = "console"
secrets = {{ session_secret = "{SESSION_SECRET}" }}
settings = {{ allowed_origins = ["{SHOP}"], demo_page = true }}
"#,
        key = crate::operations::ADMIN_KEY
    )
}

#[tokio::test]
async fn without_an_application_the_console_answers_as_the_agent() {
    use crate::operations::csrf_of;
    let app = Mock::start().await;
    let mut options = HostOptions::new(&app.url("/hook"), "http://127.0.0.1:9/unused");
    options.extra_channel_toml = console_trial();
    let host = Host::start(options);
    let issued = session(&host, SHOP, json!({})).await.json_value().await;
    let token = issued["token"].as_str().unwrap().to_string();
    let customer = issued["customer"]["id"].as_str().unwrap().to_string();
    let mut socket = connect(&host, SHOP).await.expect("socket");
    hello(&mut socket, &token, 0).await;
    send(&mut socket, text("m-1", "Hello <b>there</b>")).await;
    assert_eq!(next(&mut socket).await["type"], "ack");
    host.idle().await;

    // The conversation is listed, and its page shows the message (escaped).
    let cookie = admin_session(&host).await;
    let listing = admin_get(&host, &cookie, "/admin/conversations").await;
    let href = format!("/admin/conversations/chat/{}", customer.replace('-', "%2D"));
    assert!(listing.contains(&href), "{listing}");
    let page = admin_get(&host, &cookie, &href).await;
    assert!(page.contains("Hello &lt;b&gt;there&lt;/b&gt;"), "{page}");
    assert!(page.contains("Answer as the agent"), "{page}");

    // A reply without the CSRF token is refused; with it, the customer gets it.
    let forged = admin_post(
        &host,
        &cookie,
        &href,
        &[("csrf", &"0".repeat(64)), ("text", "forged")],
    )
    .await;
    assert_eq!(forged.status(), 403);
    let csrf = csrf_of(&page);
    let answer = [("csrf", csrf.as_str()), ("text", "Hi! How can I help?")];
    let sent = admin_post(&host, &cookie, &href, &answer).await;
    assert_eq!(sent.status(), 303);
    let shown = next(&mut socket).await;
    assert_eq!(shown["type"], "message", "{shown}");
    assert_eq!(shown["message"]["content"]["text"], "Hi! How can I help?");
    assert_eq!(shown["message"]["sender"], "Agent (console)");
    host.idle().await;
    let page = admin_get(&host, &cookie, &href).await;
    assert!(page.contains("Hi! How can I help?"), "{page}");
    assert!(app.received().is_empty(), "no application is involved");
}

#[test]
fn a_console_upstream_needs_the_admin_console() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("patchbay.toml");
    // The trial's config without its [admin] table (its first two lines).
    let trial = console_trial();
    let without_admin: Vec<&str> = trial.trim_start().lines().skip(2).collect();
    std::fs::write(&config, without_admin.join("\n")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_patchbay"))
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("upstreams.console.kind") && stderr.contains("[admin]"),
        "{stderr}"
    );
}

#[tokio::test]
async fn open_sockets_have_a_cap_of_their_own() {
    let app = Mock::start().await;
    let mut options = HostOptions::new(&app.url("/hook"), "http://127.0.0.1:9/unused");
    options.extra_channel_toml = chat_channel(false);
    options.server_toml = "max_connections = 3".into();
    let host = Host::start(options);
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(connect(&host, SHOP).await.expect("a socket under the cap"));
    }
    // Upgraded sockets leave the connection cap (plain requests still work)…
    assert_eq!(session(&host, SHOP, json!({})).await.status(), 200);
    // …but not the sockets' own.
    assert_eq!(connect(&host, SHOP).await.err(), Some(503));
    drop(open.pop());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match connect(&host, SHOP).await {
            Ok(_) => break,
            Err(status) => {
                assert_eq!(status, 503);
                assert!(
                    std::time::Instant::now() < deadline,
                    "the closed socket's place was not freed"
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn behind_two_replicas_a_socket_gets_replies_the_other_replica_stored() {
    let database = crate::postgres::TestPostgres::start().await;
    let app = Mock::start().await;
    let replica = || {
        let mut options = HostOptions::new(&app.url("/hook"), "http://127.0.0.1:9/unused");
        options.extra_channel_toml = chat_channel(false);
        options.store_toml = Some(format!("url = \"{}\"\npool_size = 4", database.url()));
        Host::start(options)
    };
    let (a, b) = (replica(), replica());
    let issued = session(&a, SHOP, json!({})).await.json_value().await;
    let token = issued["token"].as_str().unwrap().to_string();
    let customer = issued["customer"]["id"].as_str().unwrap().to_string();
    // The customer is connected to A and writes through it…
    let mut socket = connect(&a, SHOP).await.expect("socket");
    hello(&mut socket, &token, 0).await;
    send(&mut socket, text("m-1", "Hi")).await;
    assert_eq!(next(&mut socket).await["type"], "ack");
    app.wait_for(1).await;
    // …and the application answers through B: the socket on A gets it.
    for t in ["one", "two"] {
        let reply =
            json!({"conversation": {"id": customer}, "content": {"type": "text", "text": t}});
        b.send_id("chat", &reply).await;
    }
    let first = next(&mut socket).await;
    let second = next(&mut socket).await;
    assert_eq!(first["message"]["content"]["text"], "one");
    assert_eq!(second["message"]["content"]["text"], "two");
}

#[tokio::test]
async fn a_site_signs_its_customer_in_with_its_own_jwt() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    const SITE_KEY: &str = "the-shops-own-jwt-key-0123456789abc";
    let app = Mock::start().await;
    let mut options = HostOptions::new(&app.url("/hook"), "http://127.0.0.1:9/unused");
    options.extra_channel_toml = chat_channel(false).replace(
        &format!("session_secret = \"{SESSION_SECRET}\""),
        &format!("session_secret = \"{SESSION_SECRET}\", site_jwt_secret = \"{SITE_KEY}\""),
    );
    let host = Host::start(options);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    let sign = |key: &str| {
        let claims = json!({"sub": "cust-42", "name": "Ann Lee", "exp": exp});
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(key.as_bytes()),
        )
        .unwrap()
    };
    let forged = session(
        &host,
        SHOP,
        json!({"site_jwt": sign("not-the-shops-key-0123456789abcdef")}),
    )
    .await;
    assert_eq!(forged.status(), 401);
    let issued = session(&host, SHOP, json!({"site_jwt": sign(SITE_KEY)})).await;
    assert_eq!(issued.status(), 200);
    let issued = issued.json_value().await;
    assert_eq!(
        issued["customer"],
        json!({"id": "cust-42", "name": "Ann Lee"})
    );
    let mut socket = connect(&host, SHOP).await.expect("socket");
    hello(&mut socket, issued["token"].as_str().unwrap(), 0).await;
    send(&mut socket, text("m-1", "It's Ann")).await;
    assert_eq!(next(&mut socket).await["type"], "ack");
    app.wait_for(1).await;
    let message = &from_chat(&app)[0];
    assert_eq!(message["conversation"]["id"], "cust-42");
    assert_eq!(
        message["sender"],
        json!({"id": "cust-42", "name": "Ann Lee"})
    );
}

#[tokio::test]
async fn a_web_chat_narrowed_by_config_degrades_like_any_channel() {
    let app = Mock::start().await;
    let mut options = HostOptions::new(&app.url("/hook"), "http://127.0.0.1:9/unused");
    options.extra_channel_toml = format!(
        "{}\n[channels.chat.capabilities.outbound]\nrich_types = [\"buttons\"]\n",
        chat_channel(false)
    );
    let host = Host::start(options);
    let issued = session(&host, SHOP, json!({})).await.json_value().await;
    let customer = issued["customer"]["id"].as_str().unwrap().to_string();
    let mut socket = connect(&host, SHOP).await.expect("socket");
    hello(&mut socket, issued["token"].as_str().unwrap(), 0).await;

    // A file from the customer reaches the application as an attachment.
    let file = json!({"type": "send", "client_id": "f-1", "content": {"type": "attachments",
        "attachments": [{"url": "data:text/plain;base64,aGk=", "filename": "note.txt",
                         "content_type": "text/plain", "size": 2}]}});
    send(&mut socket, file).await;
    assert_eq!(next(&mut socket).await["type"], "ack");
    app.wait_for(1).await;
    assert_eq!(
        from_chat(&app)[0]["content"]["attachments"][0]["filename"],
        "note.txt"
    );

    // A list picker this channel may not show arrives as numbered text…
    let picker = json!({"conversation": {"id": customer}, "content": {"type": "list_picker",
        "title": "Pick a store",
        "items": [{"title": "Downtown", "payload": "s1"}, {"title": "Airport", "payload": "s2"}]}});
    host.send_id("chat", &picker).await;
    let shown = next(&mut socket).await;
    assert_eq!(shown["message"]["content"]["type"], "text", "{shown}");
    let numbered = shown["message"]["content"]["text"].as_str().unwrap();
    assert!(
        numbered.contains("1") && numbered.contains("Downtown") && numbered.contains("Airport"),
        "{numbered}"
    );
    // …and the customer's "2" goes back as the choice.
    send(&mut socket, text("m-2", "2")).await;
    assert_eq!(next(&mut socket).await["type"], "ack");
    wait_for_chat(&app, 2).await;
    assert_eq!(from_chat(&app)[1]["content"]["type"], "postback");
    assert_eq!(from_chat(&app)[1]["content"]["payload"], "s2");
}
