//! The admin console in a real headless Chromium, driven through
//! chromedriver (WebDriver): log in, see a dead letter, replay it, see it
//! delivered. Needs `chromium` and `chromedriver` (Debian: `apt-get install
//! chromium chromium-driver`; `.ci/run` installs them); without them the test
//! fails and says so. With `PATCHBAY_SCREENSHOTS=1` it saves the README's
//! screenshots under `docs/screenshots/`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::harness::*;
use crate::webchat::{from_chat, wait_for_chat};

const ADMIN_KEY: &str = "admin-key-for-the-browser-test";

/// chromedriver on a free port, stopped when dropped.
struct Chromedriver {
    child: Child,
    port: u16,
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver() -> Chromedriver {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "the browser test needs chromedriver and Chromium ({e}); \
                 Debian: apt-get install chromium chromium-driver"
            )
        });
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Chromedriver { child, port }
}

async fn browser(driver: &Chromedriver) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--disable-background-networking", "--window-size=1200,800"]}),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a Chromium session")
}

/// Logs in on the console's login page, which the browser shows.
async fn log_in(browser: &Client, key: &str) {
    browser
        .find(Locator::Css("input[name=key]"))
        .await
        .expect("the login form")
        .send_keys(key)
        .await
        .expect("typing the key");
    browser
        .find(Locator::Css("main button"))
        .await
        .expect("the login button")
        .click()
        .await
        .expect("clicking");
    browser
        .wait()
        .for_element(Locator::Css("main h1"))
        .await
        .expect("a console page");
}

async fn screenshot(browser: &Client, name: &str) {
    if std::env::var_os("PATCHBAY_SCREENSHOTS").is_none() {
        return;
    }
    let png = browser.screenshot().await.expect("screenshot");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
    std::fs::create_dir_all(&dir).expect("screenshots dir");
    std::fs::write(dir.join(name), png).expect("save screenshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_replays_a_dead_letter_in_the_console() {
    let app = Mock::start().await;
    app.script(&[(400, r#"{"error":"unknown customer"}"#)]);
    let mut options = HostOptions::new(&app.url("/hook"), "http://127.0.0.1:9/unused");
    options.extra_channel_toml = format!("[admin]\nkey = \"{ADMIN_KEY}\"\n");
    let host = Host::start(options);
    for (id, text) in [("m-1", "Where is my order?"), ("m-2", "Thanks!")] {
        let body = json!({"message_id": id, "conversation": {"id": format!("c-{id}")},
                          "content": {"type": "text", "text": text}});
        assert_eq!(host.webhook(&body).await.status(), 200);
    }
    app.wait_for(2).await;
    host.idle().await;

    let driver = chromedriver();
    let browser = browser(&driver).await;
    // Not logged in: the console sends the browser to its login page.
    browser.goto(&format!("{}/admin", host.url)).await.unwrap();
    assert!(
        browser
            .current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/admin/login")
    );
    log_in(&browser, ADMIN_KEY).await;
    assert_eq!(browser.current_url().await.unwrap().path(), "/admin");
    let overview = browser.source().await.unwrap();
    assert!(overview.contains("client-channel"), "{overview}");
    screenshot(&browser, "console-overview.png").await;

    browser
        .find(Locator::LinkText("Dead letters"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let row = browser.find(Locator::Css("main tbody tr")).await.unwrap();
    let text = row.text().await.unwrap();
    assert!(text.contains("HTTP 400"), "{text}");
    screenshot(&browser, "console-dead-letters.png").await;
    row.find(Locator::Css("button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The replay is delivered (the application now answers 200)…
    let got = app.wait_for(3).await;
    assert_eq!(
        got[2].json()["content"]["text"],
        got[0].json()["content"]["text"]
    );
    host.idle().await;
    // …and the dead letter is gone from the page (once the replay's
    // redirect has loaded: a refresh during it reads an empty page).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        browser
            .wait()
            .for_element(Locator::Css("main h1"))
            .await
            .unwrap();
        let page = browser.source().await.unwrap();
        if page.contains("Nothing was given up on.") {
            break;
        }
        assert!(Instant::now() < deadline, "{page}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        browser.refresh().await.unwrap();
    }
    browser.close().await.unwrap();
}

/// A TCP relay in front of Patchbay whose open connections the test can cut,
/// as a flaky network would (new connections still go through).
struct Relay {
    port: u16,
    open: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Relay {
    async fn start(to: &str) -> Relay {
        let target = to.trim_start_matches("http://").to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let handles = open.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                handles.lock().expect("relay").push(task.abort_handle());
            }
        });
        Relay { port, open }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Drops every connection open now.
    fn cut(&self) {
        for task in self.open.lock().expect("relay").drain(..) {
            task.abort();
        }
    }
}

/// Waits until `count` elements match `css`; returns their texts.
async fn wait_for_count(browser: &Client, css: &str, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = browser.find_all(Locator::Css(css)).await.expect("find");
        if found.len() >= count {
            let mut texts = Vec::new();
            for element in found {
                texts.push(element.text().await.expect("text"));
            }
            return texts;
        }
        assert!(
            Instant::now() < deadline,
            "{count} × {css} not shown within 20 s (found {})",
            found.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_chats_in_the_widget_and_a_dropped_connection_loses_nothing() {
    let app = Mock::start().await;
    let mut options = HostOptions::new(&app.url("/hook"), "http://127.0.0.1:9/unused");
    options.extra_channel_toml = crate::webchat::chat_channel(true);
    let host = Host::start(options);
    let relay = Relay::start(&host.url).await;

    let driver = chromedriver();
    let browser = browser(&driver).await;
    // The trial page Patchbay serves at / embeds the widget, opened.
    browser.goto(&format!("{}/", relay.url())).await.unwrap();
    let input = browser
        .wait()
        .for_element(Locator::Css(".pb-input"))
        .await
        .unwrap();
    // The widget speaks the channel's words (the config's `texts`).
    browser
        .wait()
        .for_element(Locator::XPath(
            "//button[contains(@class,'pb-send') and text()='Senden']",
        ))
        .await
        .unwrap();
    assert_eq!(
        input.attr("placeholder").await.unwrap().as_deref(),
        Some("Ihre Nachricht…")
    );
    input.send_keys("Is my order shipped?\n").await.unwrap();
    let first = &wait_for_chat(&app, 1).await[0];
    assert_eq!(
        first["content"],
        json!({"type": "text", "text": "Is my order shipped?"})
    );
    let customer = first["conversation"]["id"].as_str().unwrap().to_string();

    // The application answers with buttons; the customer clicks one.
    let buttons = json!({"conversation": {"id": customer}, "content": {"type": "buttons",
        "text": "It ships today. Track it?",
        "buttons": [{"title": "Track", "action": {"type": "postback", "payload": "track"}},
                    {"title": "Help page", "action": {"type": "link", "url": "https://shop.test/help"}}]}});
    host.send_id("chat", &buttons).await;
    wait_for_count(&browser, ".pb-agent button.pb-choice", 1).await;
    browser
        .find(Locator::XPath(
            "//button[contains(@class,'pb-choice') and text()='Track']",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let postback = &wait_for_chat(&app, 2).await[1];
    assert_eq!(
        postback["content"],
        json!({"type": "postback", "payload": "track", "text": "Track"})
    );

    // The connection drops. While it is down the application answers and
    // the customer writes; neither is lost nor repeated once it is back.
    relay.cut();
    let late = json!({"conversation": {"id": customer}, "content": {"type": "text", "text": "Tracking: ZX-42."}});
    host.send_id("chat", &late).await;
    input.send_keys("Thank you!\n").await.unwrap();
    let shown = wait_for_count(&browser, ".pb-agent .pb-bubble", 2).await;
    assert_eq!(shown, ["It ships today. Track it?", "Tracking: ZX-42."]);
    let messages = wait_for_chat(&app, 3).await;
    assert_eq!(messages[2]["content"]["text"], "Thank you!");
    host.idle().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(from_chat(&app).len(), 3, "nothing twice");
    assert_eq!(
        browser
            .find_all(Locator::Css(".pb-agent .pb-bubble"))
            .await
            .unwrap()
            .len(),
        2,
        "nothing shown twice"
    );

    // Typing, then a picture and a file.
    let typing =
        json!({"conversation": {"id": customer}, "content": {"type": "typing", "active": true}});
    host.send_id("chat", &typing).await;
    browser
        .wait()
        .for_element(Locator::Css(".pb-typing:not([hidden])"))
        .await
        .unwrap();
    let pixel = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
    let files = json!({"conversation": {"id": customer}, "content": {"type": "attachments",
        "text": "Your receipt:",
        "attachments": [{"url": pixel, "content_type": "image/png", "filename": "dot.png"},
                        {"url": "https://shop.test/r/42.pdf", "filename": "receipt-42.pdf"},
                        {"url": "javascript:alert(1)", "filename": "trap.html"}]}});
    host.send_id("chat", &files).await;
    wait_for_count(&browser, ".pb-agent img.pb-image", 1).await;
    let links = wait_for_count(&browser, ".pb-agent a.pb-file-link", 2).await;
    assert_eq!(links, ["receipt-42.pdf", "trap.html"]);
    let hrefs = browser
        .execute(
            "return [...document.querySelectorAll('a.pb-file-link')].map(a => a.getAttribute('href'))",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        hrefs,
        json!(["https://shop.test/r/42.pdf", null]),
        "no javascript: link"
    );
    let typing_shown = browser
        .find_all(Locator::Css(".pb-typing:not([hidden])"))
        .await
        .unwrap();
    assert!(
        typing_shown.is_empty(),
        "a message ends the typing indicator"
    );

    // Every rich type, shown natively (and pictured for the README).
    let rich = [
        json!({"type": "quick_replies", "text": "How was your delivery?",
               "replies": [{"title": "Great", "payload": "5"}, {"title": "Late", "payload": "2"}]}),
        json!({"type": "list_picker", "title": "Pick a store",
               "items": [{"title": "Downtown", "subtitle": "Open until 8pm", "payload": "s1"},
                         {"title": "Airport", "subtitle": "Open 24h", "payload": "s2"}]}),
        json!({"type": "time_picker", "title": "Book a pickup",
               "slots": [{"start": "2026-12-03T10:00:00Z", "duration_minutes": 30},
                         {"start": "2026-12-03T14:00:00Z", "duration_minutes": 30}]}),
        json!({"type": "carousel", "cards": [
               {"title": "Trail shoe", "subtitle": "€89",
                "buttons": [{"title": "Buy", "action": {"type": "postback", "payload": "buy-1"}}]},
               {"title": "Road shoe", "subtitle": "€99",
                "buttons": [{"title": "Buy", "action": {"type": "postback", "payload": "buy-2"}}]}]}),
    ];
    for content in &rich {
        host.send_id(
            "chat",
            &json!({"conversation": {"id": customer}, "content": content}),
        )
        .await;
    }
    wait_for_count(&browser, ".pb-card", 2).await;
    assert_eq!(
        wait_for_count(&browser, ".pb-quick-replies .pb-choice", 2).await,
        ["Great", "Late"]
    );
    let stores = wait_for_count(&browser, ".pb-list .pb-choice", 2).await;
    assert!(
        stores[0].contains("Downtown") && stores[0].contains("Open until 8pm"),
        "{stores:?}"
    );
    wait_for_count(&browser, ".pb-slots .pb-choice", 2).await;
    screenshot(&browser, "webchat-widget.png").await;
    // A pick answers with its payload.
    browser
        .find(Locator::XPath(
            "//div[contains(@class,'pb-list')]/button[contains(.,'Airport')]",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let picked = &wait_for_chat(&app, 4).await[3];
    assert_eq!(picked["content"]["payload"], "s2");

    // After a reload the answered choices stay answered, the picks marked.
    browser.refresh().await.unwrap();
    wait_for_count(&browser, ".pb-list .pb-choice", 2).await;
    let choices = browser
        .execute(
            "return [...document.querySelectorAll('button.pb-choice')]
                 .map(b => [b.textContent, b.disabled, b.classList.contains('pb-picked')])",
            vec![],
        )
        .await
        .unwrap();
    let choices = choices.as_array().unwrap();
    // (disabled, picked) of the choice whose text starts with `label`.
    let state = |label: &str| {
        let choice = choices
            .iter()
            .find(|c| c[0].as_str().unwrap().starts_with(label))
            .unwrap_or_else(|| panic!("no {label} in {choices:?}"));
        (choice[1].as_bool().unwrap(), choice[2].as_bool().unwrap())
    };
    assert_eq!(state("Track"), (true, true));
    assert_eq!(state("Airport"), (true, true));
    assert_eq!(state("Downtown"), (true, false));
    assert_eq!(state("Great"), (false, false), "not answered yet");
    browser.close().await.unwrap();
}

/// What the README's first section walks a newcomer through, on
/// `examples/patchbay.toml` as shipped: open the page Patchbay serves, write
/// in the chat, see the message in the admin console, answer it there as the
/// agent, and see the answer in the chat (after reloading the page, too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_chats_on_the_example_config_and_answers_in_the_console() {
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/patchbay.toml");
    let example = std::fs::read_to_string(example).expect("the example config");
    let admin_key = example
        .lines()
        .find_map(|l| l.strip_prefix("key = \""))
        .and_then(|l| l.split('"').next())
        .expect("the example's admin key")
        .to_string();
    let host = Host::start_with_config(|dir| {
        example
            .replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"")
            .replace(
                "path = \"patchbay.db\"",
                &format!("path = \"{}\"", dir.join("patchbay.db").display()),
            )
    });
    let driver = chromedriver();
    let browser = browser(&driver).await;

    browser.goto(&format!("{}/", host.url)).await.unwrap();
    let input = browser
        .wait()
        .for_element(Locator::Css(".pb-input"))
        .await
        .unwrap();
    input.send_keys("Hello, is anyone there?\n").await.unwrap();
    // Sent: the widget shows it without the "sending" look once stored.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !browser
        .find_all(Locator::Css(".pb-me.pb-sending"))
        .await
        .unwrap()
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the message was not acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    screenshot(&browser, "webchat-demo-page.png").await;

    // The admin console lists the conversation; its page shows the message.
    browser.goto(&format!("{}/admin", host.url)).await.unwrap();
    log_in(&browser, &admin_key).await;
    browser
        .goto(&format!("{}/admin/conversations", host.url))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let link = loop {
        if let Ok(link) = browser.find(Locator::Css("main td.id a")).await {
            break link;
        }
        assert!(Instant::now() < deadline, "no conversation listed");
        tokio::time::sleep(Duration::from_millis(200)).await;
        browser.refresh().await.unwrap();
    };
    link.click().await.unwrap();
    let transcript = browser
        .find(Locator::Css("ol.transcript"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        transcript.contains("Hello, is anyone there?"),
        "{transcript}"
    );
    browser
        .find(Locator::Css("form.reply input[name=text]"))
        .await
        .unwrap()
        .send_keys("Hi! I'm here — how can I help?")
        .await
        .unwrap();
    browser
        .find(Locator::Css("form.reply button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The answer is sent to the customer (the transcript shows it done).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let page = browser.source().await.unwrap();
        if page.contains("how can I help?") && !page.contains("· pending") {
            break;
        }
        assert!(Instant::now() < deadline, "the answer was not sent");
        tokio::time::sleep(Duration::from_millis(200)).await;
        browser.refresh().await.unwrap();
    }
    screenshot(&browser, "console-conversation.png").await;

    // Back on the page (a reload): the transcript is kept and the answer,
    // stored while the customer was away, arrives once.
    browser.goto(&format!("{}/", host.url)).await.unwrap();
    let shown = wait_for_count(&browser, ".pb-agent .pb-bubble", 1).await;
    assert_eq!(shown, ["Hi! I'm here — how can I help?"]);
    assert_eq!(
        wait_for_count(&browser, ".pb-me .pb-bubble", 1).await,
        ["Hello, is anyone there?"]
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        browser
            .find_all(Locator::Css(".pb-agent .pb-bubble"))
            .await
            .unwrap()
            .len(),
        1,
        "shown once"
    );
    screenshot(&browser, "webchat-answered.png").await;
    browser.close().await.unwrap();
}
