//! Hostile clients at the connection level: half-sent requests at shutdown,
//! idle and half-sent connections, slow bodies, more connections than allowed.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

fn body(id: &str) -> serde_json::Value {
    json!({"message_id": id, "conversation": {"id": "c"}, "content": {"type": "text", "text": id}})
}

async fn connect(host: &Host) -> TcpStream {
    let addr = host.url.trim_start_matches("http://");
    TcpStream::connect(addr).await.expect("connect")
}

/// Reads until the server closes the connection; true if it did within `within`.
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A 408 or similar before closing is fine.
            Ok(Ok(_)) => continue,
        }
    }
}

const HALF_HEADERS: &[u8] = b"POST /webhooks/web HTTP/1.1\r\nhost: x\r\ncontent-ty";
const HALF_BODY: &[u8] =
    b"POST /webhooks/web HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 400\r\n\r\n{\"message_id\":";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_half_sent_requests_open_exits_within_the_grace_period_and_loses_nothing() {
    let app = Mock::start().await;
    let mut host = Host::start(HostOptions::new(
        &app.url("/hook"),
        "http://127.0.0.1:9/unused",
    ));
    let mut half_headers = connect(&host).await;
    half_headers.write_all(HALF_HEADERS).await.expect("write");
    let mut half_body = connect(&host).await;
    half_body.write_all(HALF_BODY).await.expect("write");
    let _idle = connect(&host).await;

    // Webhooks keep coming while the stop begins.
    let sender = {
        let url = host.url.clone();
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0.. {
                let id = format!("evt-{i}");
                match post_webhook(&url, &body(&id)).await {
                    Some(200) => acknowledged.push(id),
                    Some(_) => {}
                    None => break,
                }
            }
            acknowledged
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = Instant::now();
    let status = tokio::task::block_in_place(|| host.terminate());
    let took = stopping.elapsed();
    assert!(status.success(), "exit status {status:?}");
    // shutdown_grace_secs = 5 in the test config; a margin for a busy machine.
    assert!(took < Duration::from_secs(15), "took {took:?} to stop");
    let acknowledged = sender.await.expect("sender");
    assert!(!acknowledged.is_empty());

    // Restarted, every acknowledged webhook reaches the application.
    host.spawn();
    host.idle().await;
    let received: std::collections::HashSet<String> = app
        .received()
        .iter()
        .filter_map(|r| r.json()["content"]["text"].as_str().map(str::to_string))
        .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !received.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged but never delivered: {lost:?}"
    );
}

/// POSTs a signed webhook; the status, or `None` once the server is gone.
async fn post_webhook(url: &str, body: &serde_json::Value) -> Option<u16> {
    let bytes = serde_json::to_vec(body).expect("body");
    let sig = format!(
        "sha256={}",
        patchbay_plugin_sdk::signature::hmac_sha256_hex(CHANNEL_SECRET.as_bytes(), &bytes)
    );
    let res = client()
        .post(format!("{url}/webhooks/web"))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", sig)
        .body(bytes)
        .send()
        .await
        .ok()?;
    Some(res.status().as_u16())
}

#[tokio::test]
async fn idle_and_half_sent_connections_are_closed_while_requests_go_on() {
    let app = Mock::start().await;
    let mut options = HostOptions::new(&app.url("/hook"), "http://127.0.0.1:9/unused");
    options.server_toml = "header_timeout_ms = 500\nrequest_timeout_ms = 1000\n".into();
    let host = Host::start(options);

    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(connect(&host).await);
    }
    let mut half_headers = connect(&host).await;
    half_headers.write_all(HALF_HEADERS).await.expect("write");
    let mut half_body = connect(&host).await;
    half_body.write_all(HALF_BODY).await.expect("write");

    // Normal traffic is served meanwhile.
    for i in 0..5 {
        assert_eq!(
            host.webhook(&body(&format!("during-{i}"))).await.status(),
            200
        );
    }
    for stream in &mut idle {
        assert!(
            closed_by_server(stream, Duration::from_secs(10)).await,
            "an idle connection stayed open"
        );
    }
    assert!(closed_by_server(&mut half_headers, Duration::from_secs(10)).await);
    // A body that stops arriving is answered 408 and nothing is stored.
    let mut answer = String::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        half_body.read_to_string(&mut answer),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    host.idle().await;
    assert_eq!(host.counts()["inbound"]["done"], 5);
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let app = Mock::start().await;
    let mut options = HostOptions::new(&app.url("/hook"), "http://127.0.0.1:9/unused");
    options.server_toml = "max_connections = 4\nheader_timeout_ms = 500\n".into();
    let host = Host::start(options);
    // Four idle connections take every slot…
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(connect(&host).await);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    // …so a webhook waits until the header timeout frees one, then succeeds.
    let res = host.webhook(&body("after-the-idle-ones")).await;
    assert_eq!(res.status(), 200);
    for stream in &mut idle {
        assert!(closed_by_server(stream, Duration::from_secs(10)).await);
    }
}

/// `check-config` and `serve` on configs that misuse a secret, given each way
/// a secret can be: the error names the key, exits 78, and never shows it.
#[test]
fn config_mistakes_never_print_the_secret() {
    const SECRET: &str = "Sup3r-Secret-Api-Key-0123456789";
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("key.txt"), SECRET).expect("write");
    let base = |api_keys: &str, level: &str| {
        format!(
            "[application]\nwebhook_url = \"http://127.0.0.1:9/hook\"\nsecret = \"app-secret\"\n{api_keys}\n\
             [store]\npath = \"{}\"\n[log]\nlevel = \"{level}\"\n",
            dir.path().join("patchbay.db").display()
        )
    };
    let cases = [
        (
            base(&format!("api_keys = \"{SECRET}\""), "info"),
            "application.api_keys",
        ),
        (
            base("api_keys = \"${PATCHBAY_TEST_KEY}\"", "info"),
            "application.api_keys",
        ),
        (
            base("api_keys_file = \"key.txt\"", "info"),
            "application.api_keys",
        ),
        (
            base(&format!("api_keys = [\"{SECRET}\""), "info"),
            "(syntax)",
        ),
        (
            base(&format!("api_keys = [\"{SECRET}\"]"), "inf"),
            "log.level",
        ),
    ];
    for (i, (text, key)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("case{i}.toml"));
        std::fs::write(&path, text).expect("write");
        for command in ["check-config", "serve"] {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_patchbay"))
                .args([command, "--config"])
                .arg(&path)
                .env("PATCHBAY_TEST_KEY", SECRET)
                .output()
                .expect("run");
            let shown = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(out.status.code(), Some(78), "case {i} {command}: {shown}");
            assert!(
                shown.contains(key),
                "case {i} {command} names {key}: {shown}"
            );
            assert!(
                !shown.contains(SECRET),
                "case {i} {command} shows the secret: {shown}"
            );
        }
    }
}
