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
    browser
        .find(Locator::Css("input[name=key]"))
        .await
        .unwrap()
        .send_keys(ADMIN_KEY)
        .await
        .unwrap();
    browser
        .find(Locator::Css("main button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait()
        .for_element(Locator::Css("main h1"))
        .await
        .unwrap();
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
    // …and the dead letter is gone from the page.
    browser.refresh().await.unwrap();
    let page = browser.source().await.unwrap();
    assert!(page.contains("Nothing was given up on."), "{page}");
    browser.close().await.unwrap();
}
